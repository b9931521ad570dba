//! BERT and GPT behaviour: padding, initialisation, the MLM head's scope, and learning on the
//! embedded grammar.
#![allow(clippy::unwrap_used)]

use ssl_core::data::{DataLoader, LoaderConfig, RandomSampler};
use ssl_core::tch::{Device, IndexOp, Kind, Tensor};
use ssl_core::trainer::{TrainConfig, Trainer};
use ssl_core::{Encoder, Objective};
use ssl_text::batches::{LmBatches, MlmBatches};
use ssl_text::bert::{Bert, BertConfig};
use ssl_text::eval::{gpt_perplexity, unigram_counts, unigram_perplexity};
use ssl_text::gpt::{Gpt, GptConfig};
use ssl_text::grammar::{documents, GrammarConfig, Split};
use ssl_text::pack::{pack, Layout};
use ssl_text::tokenizer::{TextTokenizer, TokenizerKind};
use ssl_text::tokens::TokenBlocks;

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn padding_changes_neither_real_outputs_nor_pooled_vectors() {
    ssl_core::tch::manual_seed(0);
    let bert = Bert::new(&BertConfig { vocab_size: 30, ..BertConfig::tiny() }, Device::Cpu).unwrap();
    let gpt = Gpt::new(&GptConfig { vocab_size: 30, ..GptConfig::tiny() }, Device::Cpu).unwrap();
    let short = Tensor::from_slice(&[2i64, 7, 8, 9, 3]).view([1, 5]);
    // BERT pads with 0, the tiny GPT with 1.
    for (enc, pad) in [(&bert as &dyn Encoder, 0i64), (&gpt as &dyn Encoder, 1)] {
        let padded =
            Tensor::cat(&[short.shallow_clone(), Tensor::full([1, 3], pad, (Kind::Int64, Device::Cpu))], 1);
        let a = enc.encode(&short, false);
        let b = enc.encode(&padded, false);
        assert!(max_diff(&a, &b) < 1e-5, "pad {pad}");
    }
    let h = bert.hidden_states(&short, false).unwrap();
    let padded = Tensor::cat(&[short.shallow_clone(), Tensor::zeros([1, 3], (Kind::Int64, Device::Cpu))], 1);
    let hp = bert.hidden_states(&padded, false).unwrap();
    assert!(max_diff(&h, &hp.i((.., ..5))) < 1e-5);
}

#[test]
fn gpt_follows_gpt2_initialisation_and_ties_its_output() {
    ssl_core::tch::manual_seed(1);
    let cfg = GptConfig { vocab_size: 500, dim: 64, depth: 4, heads: 4, mlp_dim: 256, ..GptConfig::tiny() };
    let gpt = Gpt::new(&cfg, Device::Cpu).unwrap();
    let v = gpt.var_store().variables();
    let std = |n: &str| v[n].std(true).double_value(&[]);
    assert!((std("embed.tokens") - 0.02).abs() < 0.002);
    assert!((std("decoder.blocks.0.attn.qkv.weight") - 0.02).abs() < 0.002);
    let residual = 0.02 / (2.0 * 4.0f64).sqrt();
    assert!(
        (std("decoder.blocks.3.mlp.fc2.weight") - residual).abs() < 0.001,
        "{}",
        std("decoder.blocks.3.mlp.fc2.weight")
    );
    assert_eq!(v["decoder.blocks.0.attn.qkv.bias"].abs().max().double_value(&[]), 0.0);
    // No separate output matrix: the logits are the tied embedding's.
    assert!(!v.keys().any(|k| k.contains("head")));
    // Weight decay applies to matrices only.
    assert!(gpt.no_weight_decay("decoder.norm.weight", &[64]));
    assert!(!gpt.no_weight_decay("embed.tokens", &[500, 64]));
}

#[test]
fn gpt_loss_ignores_padding_targets_and_bert_scores_masked_positions_only() {
    ssl_core::tch::manual_seed(2);
    let gpt = Gpt::new(&GptConfig { vocab_size: 30, ..GptConfig::tiny() }, Device::Cpu).unwrap();
    let ids = Tensor::from_slice(&[5i64, 6, 7, 1, 1]).view([1, 5]);
    let (loss, n) = gpt.lm_loss(&ids, false).unwrap();
    let (short, m) = gpt.lm_loss(&ids.i((.., ..3)), false).unwrap();
    assert_eq!((n, m), (2, 2));
    assert!((loss.double_value(&[]) - short.double_value(&[])).abs() < 1e-5);

    let bert = Bert::new(&BertConfig { vocab_size: 30, ..BertConfig::tiny() }, Device::Cpu).unwrap();
    let inputs = Tensor::from_slice(&[2i64, 4, 8, 4, 3]).view([1, 5]);
    let labels = Tensor::from_slice(&[-100i64, 7, -100, 9, -100]).view([1, 5]);
    let (loss, _, count) = bert.mlm_loss(&inputs, &labels, false).unwrap();
    assert_eq!(count.double_value(&[]), 2.0);
    let logits = bert.mlm_logits(&bert.hidden_states(&inputs, false).unwrap()).unwrap();
    let manual = logits.i((0, &[1i64, 3][..])).cross_entropy_for_logits(&Tensor::from_slice(&[7i64, 9]));
    assert!((loss.double_value(&[]) - manual.double_value(&[])).abs() < 1e-5);
}

fn grammar_text() -> (Vec<String>, Vec<String>) {
    let grammar = GrammarConfig { train_documents: 600, test_documents: 60, ..GrammarConfig::default() };
    let text = |split| -> Vec<String> { documents(&grammar, split).into_iter().map(|d| d.text).collect() };
    (text(Split::Train), text(Split::Test))
}

fn quick_training(steps: u64) -> (TrainConfig, LoaderConfig) {
    let mut train_cfg = TrainConfig {
        steps,
        log_every: steps,
        progress: false,
        grad_clip_norm: Some(1.0),
        deterministic: true,
        ..Default::default()
    };
    train_cfg.optimizer.lr = 5e-3;
    train_cfg.schedule.warmup_steps = 10;
    (train_cfg, LoaderConfig { batch_size: 16, drop_last: true, prefetch: 1, seed: 0 })
}

/// A tiny GPT learns the grammar in a hundred steps: held-out perplexity falls below half the
/// unigram baseline's.
#[test]
fn a_tiny_gpt_learns_the_grammar() {
    let (train_text, test_text) = grammar_text();
    let (train_cfg, loader_cfg) = quick_training(150);
    let tok = TextTokenizer::train(TokenizerKind::ByteLevelBpe, train_text.iter(), 400).unwrap();
    let s = *tok.specials();
    let layout = Layout::Gpt { eos: s.eos.unwrap(), pad: s.pad };
    let blocks = |t: &[String]| {
        TokenBlocks::from_vec(pack(&tok.encode_batch(t).unwrap(), layout, 32).unwrap(), 32).unwrap()
    };
    let (train, test) = (blocks(&train_text), blocks(&test_text));
    let cfg = GptConfig {
        vocab_size: tok.vocab_size() as i64,
        pad_id: Some(i64::from(s.pad)),
        eos_id: i64::from(s.eos.unwrap()),
        ..GptConfig::tiny()
    };
    ssl_core::rng::seed_torch(0, "init", &[]);
    let mut gpt = Gpt::new(&cfg, Device::Cpu).unwrap();
    let loader = DataLoader::new(train.clone(), LmBatches, RandomSampler::new(0), loader_cfg).unwrap();
    Trainer::new(train_cfg).fit(&mut gpt, &loader).unwrap();
    let ppl = gpt_perplexity(&gpt, &test, 32, Device::Cpu).unwrap();
    let unigram =
        unigram_perplexity(&unigram_counts(&train, tok.vocab_size(), Some(s.pad)), &test, Some(s.pad));
    assert!(ppl < 0.5 * unigram, "perplexity {ppl} vs unigram {unigram}");
}

/// A tiny BERT's MLM loss falls well below chance (`ln V`) in a hundred steps.
#[test]
fn a_tiny_bert_learns_the_token_statistics() {
    let (train_text, _) = grammar_text();
    let (train_cfg, loader_cfg) = quick_training(100);
    let tok = TextTokenizer::train(TokenizerKind::WordPiece, train_text.iter(), 400).unwrap();
    let s = *tok.specials();
    let layout = Layout::Bert { cls: s.cls.unwrap(), sep: s.sep.unwrap(), pad: s.pad };
    let train = TokenBlocks::from_vec(pack(&tok.encode_batch(&train_text).unwrap(), layout, 32).unwrap(), 32)
        .unwrap();
    let cfg = BertConfig {
        vocab_size: tok.vocab_size() as i64,
        pad_id: i64::from(s.pad),
        dropout: 0.0,
        ..BertConfig::tiny()
    };
    ssl_core::rng::seed_torch(0, "init", &[]);
    let mut bert = Bert::new(&cfg, Device::Cpu).unwrap();
    let batches = MlmBatches::new(cfg.masking.clone(), &tok).unwrap();
    let loader = DataLoader::new(train, batches, RandomSampler::new(0), loader_cfg).unwrap();
    let report = Trainer::new(train_cfg).fit(&mut bert, &loader).unwrap();
    let start = (tok.vocab_size() as f64).ln();
    assert!(report.final_loss < 0.8 * start, "final MLM loss {} vs ln V {start}", report.final_loss);
}
