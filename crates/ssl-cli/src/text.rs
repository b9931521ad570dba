//! `ssl pretrain bert | gpt`, and `ssl evaluate` / `ssl finetune` / `ssl embed` /
//! `ssl generate` on their checkpoints: one generic driver over [`TextMethod`].
//!
//! A run trains a tokenizer on its corpus (or loads `data.tokenizer`), packs the corpus into
//! blocks (the embedded grammar in memory; a user's files into a cached, memory-mapped token
//! file), pretrains, then scores the held-out split (GPT: perplexity; BERT: masked accuracy,
//! each against its unigram baseline), probes and fine-tunes on labelled text, and writes the
//! model in the Hugging Face layout (`hf/`) beside the checkpoints.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use ssl_core::checkpoint::{self, LoadedCheckpoint};
use ssl_core::data::{BatchBuilder, DataLoader, Dataset, LoaderConfig, RandomSampler};
use ssl_core::eval::{extract_features, probe_encoder, EvalConfig, FinetuneConfig};
use ssl_core::optim::OptimizerConfig;
use ssl_core::tch::{Device, Tensor};
use ssl_core::trainer::TrainConfig;
use ssl_core::Objective;
use ssl_text::batches::{LmBatches, MlmBatches};
use ssl_text::bert::{Bert, BertConfig};
use ssl_text::corpus::{read_documents, read_labelled_jsonl, Utf8Policy};
use ssl_text::eval::{
    bert_masked_accuracy, gpt_perplexity, labelled_tensors, unigram_counts, unigram_perplexity,
};
use ssl_text::generate::{generate, GenerateConfig};
use ssl_text::gpt::{Gpt, GptConfig};
use ssl_text::grammar::{self, GrammarConfig, Split, CLASSES};
use ssl_text::pack::{pack, Layout};
use ssl_text::tokenizer::{TextTokenizer, TokenizerKind};
use ssl_text::tokens::{default_cache_dir, load_or_build, BuildSpec, TokenBlocks};

use crate::run;
use crate::PretrainArgs;

/// What the generic driver needs of a text method.
pub trait TextMethod: Objective + Sized + 'static {
    /// The CLI name.
    const NAME: &'static str;
    /// Its tokenizer.
    const KIND: TokenizerKind;
    /// Steps of the default run on the embedded corpus (about 3.5 minutes on 2 CPU cores).
    const DEFAULT_STEPS: u64;
    /// The `[model]` table.
    type Config: Serialize + DeserializeOwned + Clone;
    /// Batches from token blocks.
    type Builder: BatchBuilder<Vec<u32>, Batch = Self::Batch> + 'static;

    /// The model of a run: the paper's base size on a user's corpus, a small one on the
    /// embedded corpus.
    fn model_defaults(embedded: bool) -> Self::Config;
    /// Sets the vocabulary, special ids and context length from the tokenizer and blocks.
    fn fit(cfg: &mut Self::Config, tokenizer: &TextTokenizer, block_len: usize);
    /// The model's vocabulary size.
    fn vocab_size(cfg: &Self::Config) -> i64;
    /// Checks the config.
    fn validate(cfg: &Self::Config) -> ssl_core::Result<()>;
    /// Builds the model.
    fn build(cfg: &Self::Config, device: Device) -> ssl_core::Result<Self>;
    /// How blocks are laid out.
    fn layout(tokenizer: &TextTokenizer) -> Result<Layout>;
    /// The batch builder.
    fn builder(cfg: &Self::Config, tokenizer: &TextTokenizer) -> ssl_core::Result<Self::Builder>;
    /// The recipe's optimiser (`short`: the default run's).
    fn optimizer(short: bool) -> OptimizerConfig;
    /// Held-out language-model metrics with their unigram baselines.
    fn held_out(
        &self,
        cfg: &RunConfig<Self>,
        sets: &HeldOut<'_>,
        device: Device,
    ) -> Result<serde_json::Value>;
    /// Writes the model in the Hugging Face layout.
    fn save_hf(&self, dir: &Path) -> ssl_core::Result<()>;
    /// The encoder as `(encoder, variables)` for fine-tuning.
    fn encoder_parts(&self) -> (&dyn ssl_core::Encoder, &ssl_core::tch::nn::VarStore) {
        (self.encoder(), self.var_store())
    }
}

/// The held-out split and what the baselines need.
pub struct HeldOut<'a> {
    /// Held-out blocks.
    pub blocks: &'a TokenBlocks,
    /// Unigram counts of the training blocks.
    pub counts: &'a [u64],
    /// The tokenizer.
    pub tokenizer: &'a TextTokenizer,
}

impl TextMethod for Bert {
    const NAME: &'static str = Bert::NAME;
    const KIND: TokenizerKind = TokenizerKind::WordPiece;
    const DEFAULT_STEPS: u64 = 1400;
    type Config = BertConfig;
    type Builder = MlmBatches;

    fn model_defaults(embedded: bool) -> BertConfig {
        if embedded {
            BertConfig { dim: 128, depth: 4, heads: 4, mlp_dim: 512, ..BertConfig::small() }
        } else {
            BertConfig::default()
        }
    }
    fn fit(cfg: &mut BertConfig, tokenizer: &TextTokenizer, block_len: usize) {
        cfg.vocab_size = tokenizer.vocab_size() as i64;
        cfg.pad_id = i64::from(tokenizer.specials().pad);
        cfg.max_len = cfg.max_len.max(block_len as i64);
    }
    fn vocab_size(cfg: &BertConfig) -> i64 {
        cfg.vocab_size
    }
    fn validate(cfg: &BertConfig) -> ssl_core::Result<()> {
        cfg.validate()
    }
    fn build(cfg: &BertConfig, device: Device) -> ssl_core::Result<Self> {
        Bert::new(cfg, device)
    }
    fn layout(tokenizer: &TextTokenizer) -> Result<Layout> {
        let s = tokenizer.specials();
        match (s.cls, s.sep) {
            (Some(cls), Some(sep)) => Ok(Layout::Bert { cls, sep, pad: s.pad }),
            _ => bail!("the tokenizer has no [CLS]/[SEP] tokens: BERT needs a WordPiece tokenizer"),
        }
    }
    fn builder(cfg: &BertConfig, tokenizer: &TextTokenizer) -> ssl_core::Result<MlmBatches> {
        MlmBatches::new(cfg.masking.clone(), tokenizer)
    }
    fn optimizer(short: bool) -> OptimizerConfig {
        // BERT: Adam(0.9, 0.999), weight decay 0.01, lr 1e-4 at batch 256; small models
        // trained briefly take a larger rate.
        OptimizerConfig {
            lr: if short { 1e-3 } else { 1e-4 },
            weight_decay: 0.01,
            betas: (0.9, 0.999),
            eps: 1e-6,
            ..Default::default()
        }
    }
    fn held_out(
        &self,
        cfg: &RunConfig<Self>,
        sets: &HeldOut<'_>,
        device: Device,
    ) -> Result<serde_json::Value> {
        let batches = Self::builder(&cfg.model, sets.tokenizer)?;
        let (acc, unigram, n) = bert_masked_accuracy(
            self,
            sets.blocks,
            &batches,
            sets.counts,
            sets.tokenizer,
            cfg.train.seed,
            cfg.eval.batch_size,
            device,
        )?;
        Ok(serde_json::json!({
            "masked_accuracy": acc,
            "unigram_masked_accuracy": unigram,
            "masked_tokens": n,
        }))
    }
    fn save_hf(&self, dir: &Path) -> ssl_core::Result<()> {
        ssl_text::hf::save_bert(self, dir)
    }
}

impl TextMethod for Gpt {
    const NAME: &'static str = Gpt::NAME;
    const KIND: TokenizerKind = TokenizerKind::ByteLevelBpe;
    const DEFAULT_STEPS: u64 = 1400;
    type Config = GptConfig;
    type Builder = LmBatches;

    fn model_defaults(embedded: bool) -> GptConfig {
        if embedded {
            GptConfig { dim: 128, depth: 4, heads: 4, mlp_dim: 512, ..GptConfig::small() }
        } else {
            GptConfig::default()
        }
    }
    fn fit(cfg: &mut GptConfig, tokenizer: &TextTokenizer, block_len: usize) {
        let s = tokenizer.specials();
        cfg.vocab_size = tokenizer.vocab_size() as i64;
        cfg.eos_id = s.eos.map_or(cfg.eos_id, i64::from);
        cfg.pad_id = Some(i64::from(s.pad)).filter(|&p| p != cfg.eos_id);
        cfg.max_len = cfg.max_len.max(block_len as i64);
    }
    fn vocab_size(cfg: &GptConfig) -> i64 {
        cfg.vocab_size
    }
    fn validate(cfg: &GptConfig) -> ssl_core::Result<()> {
        cfg.validate()
    }
    fn build(cfg: &GptConfig, device: Device) -> ssl_core::Result<Self> {
        Gpt::new(cfg, device)
    }
    fn layout(tokenizer: &TextTokenizer) -> Result<Layout> {
        let s = tokenizer.specials();
        match s.eos {
            Some(eos) if s.pad != eos => Ok(Layout::Gpt { eos, pad: s.pad }),
            Some(_) => bail!("the tokenizer has no padding token distinct from <|endoftext|>; add `<|pad|>`"),
            None => bail!("the tokenizer has no <|endoftext|> token: GPT needs a byte-level BPE tokenizer"),
        }
    }
    fn builder(_cfg: &GptConfig, _tokenizer: &TextTokenizer) -> ssl_core::Result<LmBatches> {
        Ok(LmBatches)
    }
    fn optimizer(short: bool) -> OptimizerConfig {
        // GPT-2/3: AdamW(0.9, 0.95), weight decay 0.1 on matrices, lr 6e-4 for 124M.
        OptimizerConfig {
            lr: if short { 1e-3 } else { 6e-4 },
            weight_decay: 0.1,
            betas: (0.9, 0.95),
            eps: 1e-8,
            ..Default::default()
        }
    }
    fn held_out(
        &self,
        cfg: &RunConfig<Self>,
        sets: &HeldOut<'_>,
        device: Device,
    ) -> Result<serde_json::Value> {
        let pad = cfg.model.pad_id.map(|p| p as u32);
        let ppl = gpt_perplexity(self, sets.blocks, cfg.eval.batch_size, device)?;
        let unigram = unigram_perplexity(sets.counts, sets.blocks, pad);
        Ok(serde_json::json!({ "perplexity": ppl, "unigram_perplexity": unigram }))
    }
    fn save_hf(&self, dir: &Path) -> ssl_core::Result<()> {
        ssl_text::hf::save_gpt2(self, dir)
    }
}

/// Where the text comes from and how it is cut: the `[data]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// A text file or folder (`.txt`/`.text`: documents separated by blank lines; `.jsonl`: a
    /// `text` field per line); absent: the embedded grammar.
    pub corpus: Option<PathBuf>,
    /// A `tokenizer.json` to use; absent: one is trained on the corpus and saved in the run.
    pub tokenizer: Option<PathBuf>,
    /// Vocabulary size of a trained tokenizer.
    pub vocab_size: usize,
    /// Documents the tokenizer is trained on (the first ones; 0: all).
    pub tokenizer_documents: usize,
    /// Tokens per training block (and the length probes cut texts to).
    pub block_len: usize,
    /// Blocks per batch.
    pub batch_size: usize,
    /// Invalid UTF-8 in the corpus: an error naming the file and byte offset, or replaced.
    pub utf8: Utf8Policy,
    /// Where token files are cached (default: `$SSL_CACHE_DIR`, the XDG cache, or `~/.cache`).
    pub cache_dir: Option<PathBuf>,
    /// Blocks of a user's corpus held out for perplexity / masked accuracy.
    pub held_out_blocks: usize,
    /// Labelled JSONL (`text`, `label`) the probes train on.
    pub probe_train: Option<PathBuf>,
    /// Labelled JSONL the probes are scored on.
    pub probe_test: Option<PathBuf>,
    /// Labelled training documents of the embedded corpus the probes and fine-tuning use.
    pub probe_train_documents: usize,
    /// The embedded corpus.
    pub grammar: GrammarConfig,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            corpus: None,
            tokenizer: None,
            vocab_size: 8192,
            tokenizer_documents: 100_000,
            block_len: 128,
            batch_size: 64,
            utf8: Utf8Policy::Strict,
            cache_dir: None,
            held_out_blocks: 500,
            probe_train: None,
            probe_test: None,
            probe_train_documents: 2000,
            grammar: GrammarConfig::default(),
        }
    }
}

impl DataConfig {
    /// Probes on the labelled JSONL files `train` and `test` when both are given (the flags
    /// `--probe-train` / `--probe-test`), replacing the configured probe data.
    fn use_probe_files(&mut self, train: Option<&Path>, test: Option<&Path>) {
        if let (Some(train), Some(test)) = (train, test) {
            self.probe_train = Some(train.to_path_buf());
            self.probe_test = Some(test.to_path_buf());
        }
    }

    fn validate(&self) -> Result<()> {
        if self.block_len < 8 {
            bail!("invalid config: data.block_len must be at least 8, got {}", self.block_len);
        }
        if self.batch_size < 1 {
            bail!("invalid config: data.batch_size must be at least 1");
        }
        if self.probe_train.is_some() != self.probe_test.is_some() {
            bail!("invalid config: data.probe_train and data.probe_test go together");
        }
        if self.corpus.is_none() {
            self.grammar.validate()?;
            if self.probe_train_documents < 2 || self.probe_train_documents > self.grammar.train_documents {
                bail!(
                    "invalid config: data.probe_train_documents must be in 2..={} (data.grammar.train_documents)",
                    self.grammar.train_documents
                );
            }
        }
        Ok(())
    }
}

/// A text run's whole configuration, as `config.toml` stores it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound = "")]
pub struct RunConfig<M: TextMethod> {
    /// The method's name.
    pub method: String,
    /// The trainer.
    #[serde(default)]
    pub train: TrainConfig,
    /// The data.
    #[serde(default)]
    pub data: DataConfig,
    /// The model.
    pub model: M::Config,
    /// The probes.
    #[serde(default)]
    pub eval: EvalConfig,
    /// Fine-tuning with a linear head on the labelled training split, after the probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finetune: Option<FinetuneConfig>,
}

/// Fine-tuning of a run: the BERT paper's GLUE recipe (AdamW, 3 epochs, batch 32, lr in
/// {2, 3, 5}e-5 for BERT-base, linear warm-up over the first 10%, weight decay 0.01); the small
/// default model takes a larger rate.
fn finetune_defaults(embedded: bool) -> FinetuneConfig {
    FinetuneConfig {
        epochs: 3,
        lr: if embedded { 1e-4 } else { 5e-5 },
        weight_decay: 0.01,
        batch_size: 32,
        warmup_fraction: 0.1,
        ..Default::default()
    }
}

fn default_config<M: TextMethod>(embedded: bool) -> RunConfig<M> {
    let mut data = DataConfig::default();
    if embedded {
        data.vocab_size = 1000;
        data.block_len = 64;
        data.batch_size = 32;
    }
    let mut train = TrainConfig {
        steps: M::DEFAULT_STEPS,
        log_every: 10,
        checkpoint_every: 200,
        keep_last: 2,
        grad_clip_norm: Some(1.0),
        optimizer: M::optimizer(embedded),
        ..Default::default()
    };
    train.schedule.warmup_steps = train.steps / 10;
    RunConfig {
        method: M::NAME.to_string(),
        train,
        data,
        model: M::model_defaults(embedded),
        eval: EvalConfig::default(),
        finetune: Some(finetune_defaults(embedded)),
    }
}

fn resolve_config<M: TextMethod>(args: &PretrainArgs) -> Result<RunConfig<M>> {
    let embedded = args.data.is_none();
    let (mut cfg, _): (RunConfig<M>, _) = run::run_config(args, default_config::<M>(embedded), M::NAME)?;
    if let Some(d) = &args.data {
        cfg.data.corpus = Some(d.clone());
    }
    cfg.data.use_probe_files(args.probe_train.as_deref(), args.probe_test.as_deref());
    if let Some(seed) = args.seed {
        cfg.train.seed = seed;
    }
    if let Some(bs) = args.batch_size {
        cfg.data.batch_size = bs;
    }
    if args.lossy_utf8 {
        cfg.data.utf8 = Utf8Policy::Lossy;
    }
    run::apply_train_flags(args, &mut cfg.train)?;
    cfg.data.validate()?;
    cfg.eval.validate()?;
    if let Some(ft) = &cfg.finetune {
        ft.validate()?;
    }
    Ok(cfg)
}

/// The tokenizer of a run: `data.tokenizer`, or one trained on the corpus's documents.
fn tokenizer<M: TextMethod>(data: &DataConfig, docs: &[String]) -> Result<TextTokenizer> {
    let tok = match &data.tokenizer {
        Some(path) => TextTokenizer::load(path)?,
        None => {
            let n = if data.tokenizer_documents == 0 {
                docs.len()
            } else {
                data.tokenizer_documents.min(docs.len())
            };
            eprintln!("training a {:?} tokenizer ({} tokens) on {n} documents", M::KIND, data.vocab_size);
            TextTokenizer::train(M::KIND, docs[..n].iter(), data.vocab_size)?
        }
    };
    if tok.kind() != M::KIND {
        bail!(
            "`{}` needs a {:?} tokenizer, {} is {:?}",
            M::NAME,
            M::KIND,
            describe(&data.tokenizer),
            tok.kind()
        );
    }
    Ok(tok)
}

fn describe(path: &Option<PathBuf>) -> String {
    path.as_ref().map_or("the trained one".to_string(), |p| p.display().to_string())
}

/// Training and held-out blocks.
struct Blocks {
    train: TokenBlocks,
    held_out: TokenBlocks,
}

fn blocks<M: TextMethod>(data: &DataConfig, tok: &TextTokenizer) -> Result<Blocks> {
    let layout = M::layout(tok)?;
    match &data.corpus {
        None => {
            let pack_split = |split| -> Result<TokenBlocks> {
                let texts: Vec<String> =
                    grammar::documents(&data.grammar, split).into_iter().map(|d| d.text).collect();
                let ids = tok.encode_batch(&texts)?;
                Ok(TokenBlocks::from_vec(pack(&ids, layout, data.block_len)?, data.block_len)?)
            };
            Ok(Blocks { train: pack_split(Split::Train)?, held_out: pack_split(Split::Test)? })
        }
        Some(corpus) => {
            let cache = data.cache_dir.clone().unwrap_or_else(default_cache_dir);
            let spec = BuildSpec {
                corpus,
                tokenizer: tok,
                layout,
                block_len: data.block_len,
                utf8: data.utf8,
                cache_dir: &cache,
            };
            let (all, meta, cached) = load_or_build(&spec)?;
            eprintln!(
                "{} blocks of {} tokens from {} documents ({}; {})",
                all.len(),
                data.block_len,
                meta.documents,
                if cached { "cached" } else { "tokenised" },
                cache.display()
            );
            let held = data.held_out_blocks.min(all.len() / 10);
            if held == 0 || all.len() - held < 1 {
                bail!("{}: too little text ({} blocks) to hold some out", corpus.display(), all.len());
            }
            let (train, held_out) = all.split_tail(held)?;
            Ok(Blocks { train, held_out })
        }
    }
}

/// Labelled `(ids, labels)` train and test tensors for the probes.
struct ProbeSets {
    train: (Tensor, Tensor),
    test: (Tensor, Tensor),
    classes: Vec<String>,
}

fn probe_sets<M: TextMethod>(data: &DataConfig, tok: &TextTokenizer) -> Result<Option<ProbeSets>> {
    let layout = M::layout(tok)?;
    let len = data.block_len;
    match (&data.probe_train, &data.probe_test, &data.corpus) {
        (Some(train), Some(test), _) => {
            let tr = read_labelled_jsonl(train, data.utf8, None)?;
            let te = read_labelled_jsonl(test, data.utf8, Some(&tr.classes))?;
            Ok(Some(ProbeSets {
                train: labelled_tensors(&tr.texts, &tr.labels, tok, layout, len)?,
                test: labelled_tensors(&te.texts, &te.labels, tok, layout, len)?,
                classes: tr.classes,
            }))
        }
        (None, None, None) => {
            let split = |split, n: Option<usize>| -> Result<(Tensor, Tensor)> {
                let mut docs = grammar::documents(&data.grammar, split);
                if let Some(n) = n {
                    docs.truncate(n);
                }
                let texts: Vec<String> = docs.iter().map(|d| d.text.clone()).collect();
                let labels: Vec<i64> = docs.iter().map(|d| d.label).collect();
                Ok(labelled_tensors(&texts, &labels, tok, layout, len)?)
            };
            Ok(Some(ProbeSets {
                train: split(Split::Train, Some(data.probe_train_documents))?,
                test: split(Split::Test, None)?,
                classes: CLASSES.iter().map(|c| c.to_string()).collect(),
            }))
        }
        _ => Ok(None),
    }
}

fn build<M: TextMethod>(cfg: &RunConfig<M>, device: Device) -> Result<M> {
    ssl_core::rng::seed_torch(cfg.train.seed, "init", &[]);
    Ok(M::build(&cfg.model, device)?)
}

pub fn pretrain<M: TextMethod>(args: &PretrainArgs) -> Result<()> {
    let mut cfg = resolve_config::<M>(args)?;
    let device = run::resolve_device(None, cfg.train.device)?;
    // Documents for the tokenizer (all checks on the inputs happen before the run directory).
    let docs: Option<Vec<String>> = match (&cfg.data.tokenizer, &cfg.data.corpus) {
        (Some(_), _) => None,
        (None, None) => {
            Some(grammar::documents(&cfg.data.grammar, Split::Train).into_iter().map(|d| d.text).collect())
        }
        (None, Some(corpus)) => Some(read_documents(corpus, cfg.data.utf8)?),
    };
    let tok = tokenizer::<M>(&cfg.data, docs.as_deref().unwrap_or(&[]))?;
    let blocks = blocks::<M>(&cfg.data, &tok)?;
    drop(docs);
    M::fit(&mut cfg.model, &tok, cfg.data.block_len);
    M::validate(&cfg.model)?;
    let loader_cfg =
        LoaderConfig { batch_size: cfg.data.batch_size, drop_last: true, prefetch: 2, seed: cfg.train.seed };
    if blocks.train.len() < cfg.data.batch_size {
        bail!(
            "the corpus gives {} training blocks, fewer than one batch of {}: lower data.batch_size or data.block_len",
            blocks.train.len(),
            cfg.data.batch_size
        );
    }
    let loader = DataLoader::new(
        blocks.train.clone(),
        M::builder(&cfg.model, &tok)?,
        RandomSampler::new(cfg.train.seed),
        loader_cfg,
    )?;
    let user_data = cfg.data.corpus.is_some();
    run::resolve_steps(args, &mut cfg.train, loader.batches_per_epoch(), user_data, 10, 10)?;
    let probe = if args.no_eval { None } else { probe_sets::<M>(&cfg.data, &tok)? };
    let mut objective = build(&cfg, device)?;
    run::init_weights(args, M::NAME, objective.var_store())?;
    let dir = run::prepare_run_dir(args)?;
    let tok_path = std::fs::canonicalize(&dir)?.join("tokenizer.json");
    tok.save(&tok_path)?;
    cfg.data.tokenizer = Some(tok_path);
    run::write_config(&dir, &cfg)?;
    eprintln!(
        "training `{}` for {} steps of {} blocks of {} tokens ({} training blocks, vocabulary {}) on {device:?}; run directory {}",
        M::NAME,
        cfg.train.steps,
        cfg.data.batch_size,
        cfg.data.block_len,
        blocks.train.len(),
        tok.vocab_size(),
        dir.display()
    );
    let report = run::trainer(args, cfg.train.clone(), &dir)?
        .config_snapshot(serde_json::to_value(&cfg)?)
        .fit(&mut objective, &loader)
        .context("training failed")?;
    if run::secondary_rank() {
        return Ok(());
    }
    let hf_dir = dir.join("hf");
    let exported = match objective.save_hf(&hf_dir) {
        Ok(()) => {
            tok.save(&hf_dir.join("tokenizer.json"))?;
            true
        }
        Err(e) => {
            eprintln!("no Hugging Face export: {e}");
            false
        }
    };

    let mut summary = run::training_summary(&dir, M::NAME, &report)?;
    summary["tokens_per_sec"] = serde_json::json!(report.samples_per_sec * cfg.data.block_len as f64);
    if !args.no_eval {
        let counts = unigram_counts(&blocks.train, tok.vocab_size(), Some(tok.specials().pad));
        let held = HeldOut { blocks: &blocks.held_out, counts: &counts, tokenizer: &tok };
        eprintln!("scoring {} held-out blocks", blocks.held_out.len());
        let mut eval = objective.held_out(&cfg, &held, device)?;
        match &probe {
            Some(sets) => {
                let probes = evaluation(&cfg, &objective, sets, device)?;
                if let (Some(e), Some(p)) = (eval.as_object_mut(), probes.as_object()) {
                    e.extend(p.clone());
                }
            }
            None => {
                eprintln!("no labelled data to probe on: pass --probe-train FILE --probe-test FILE (JSONL)")
            }
        }
        summary["eval"] = eval;
    }
    run::write_summary(&dir, &summary)?;
    print_table(&summary);
    eprintln!("summary: {}", dir.join("summary.json").display());
    if exported {
        eprintln!("Hugging Face export: {}", hf_dir.display());
    }
    Ok(())
}

/// Probes the trained encoder and the same encoder untrained; with a `[finetune]` table, then
/// fine-tunes both (the trained one last: it is changed).
fn evaluation<M: TextMethod>(
    cfg: &RunConfig<M>,
    trained: &M,
    sets: &ProbeSets,
    device: Device,
) -> Result<serde_json::Value> {
    let ((tx, ty), (vx, vy)) = (&sets.train, &sets.test);
    eprintln!(
        "probing on {} labelled train / {} held-out texts ({} classes)",
        ty.size()[0],
        vy.size()[0],
        sets.classes.len()
    );
    let ours = probe_encoder(trained.encoder(), tx, ty, vx, vy, &cfg.eval, device)?;
    let untrained = build(cfg, device)?;
    let random = probe_encoder(untrained.encoder(), tx, ty, vx, vy, &cfg.eval, device)?;
    let mut summary = run::eval_summary(&ours, &random, None);
    if let Some(ft) = &cfg.finetune {
        eprintln!("fine-tuning the untrained and the trained encoder ({} epochs)", ft.epochs);
        let random = fine_tune(&untrained, sets, ft, device)?.report;
        let ours = fine_tune(trained, sets, ft, device)?.report;
        summary["finetune_acc"] = ours.top1.into();
        summary["random_init_finetune_acc"] = random.top1.into();
        summary["finetune"] = serde_json::to_value(&ours)?;
    }
    Ok(summary)
}

/// Term frequencies of token ids `[N, T]` over a vocabulary of `vocab`, padding left out:
/// `[N, vocab]`, each row summing to 1 (the bag-of-words baseline).
fn bag_of_words(ids: &Tensor, vocab: i64, pad: i64) -> Tensor {
    let real = ids.ne(pad).to_kind(ssl_core::tch::Kind::Float);
    let counts = Tensor::zeros([ids.size()[0], vocab], (ssl_core::tch::Kind::Float, ids.device()))
        .scatter_add(1, &ids.clamp(0, vocab - 1), &real);
    &counts / counts.sum_dim_intlist(1, true, ssl_core::tch::Kind::Float).clamp_min(1.0)
}

fn fine_tune<M: TextMethod>(
    model: &M,
    sets: &ProbeSets,
    ft: &FinetuneConfig,
    device: Device,
) -> Result<ssl_core::eval::Finetuned> {
    let ((tx, ty), (vx, vy)) = (&sets.train, &sets.test);
    let (encoder, vars) = model.encoder_parts();
    Ok(ssl_core::eval::finetune_with_head(encoder, vars, tx, ty, vx, vy, ft, device)?)
}

fn print_table(summary: &serde_json::Value) {
    let num = |v: &serde_json::Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.3}"));
    let e = &summary["eval"];
    println!(
        "{:<6} {:>6} {:>10} {:>8} {:>8} {:>12} {:>11} {:>12}",
        "method", "steps", "tokens/s", "linear", "kNN", "random-init", "fine-tuned", "ft-random"
    );
    println!(
        "{:<6} {:>6} {:>10.0} {:>8} {:>8} {:>12} {:>11} {:>12}",
        summary["method"].as_str().unwrap_or("?"),
        summary["steps"],
        summary["tokens_per_sec"].as_f64().unwrap_or(f64::NAN),
        num(&e["linear_probe_acc"]),
        num(&e["knn_acc"]),
        num(&e["random_init_linear_probe_acc"]),
        num(&e["finetune_acc"]),
        num(&e["random_init_finetune_acc"]),
    );
    if e.get("perplexity").is_some() {
        println!("held-out perplexity {} (unigram {})", num(&e["perplexity"]), num(&e["unigram_perplexity"]));
    }
    if e.get("masked_accuracy").is_some() {
        println!(
            "held-out masked-token accuracy {} (most frequent token {})",
            num(&e["masked_accuracy"]),
            num(&e["unigram_masked_accuracy"])
        );
    }
}

/// The run config, model and tokenizer of a checkpoint; the tokenizer must match the model's
/// vocabulary.
fn restore<M: TextMethod>(
    ck: &LoadedCheckpoint,
    device: Option<&str>,
) -> Result<(RunConfig<M>, M, TextTokenizer, Device)> {
    let cfg: RunConfig<M> = serde_json::from_value(ck.meta.config.clone()).with_context(|| {
        format!("checkpoint {}: its stored config is not a `{}` run config", ck.path.display(), M::NAME)
    })?;
    let device = run::resolve_device(device, cfg.train.device)?;
    let Some(tok_path) = &cfg.data.tokenizer else {
        bail!("checkpoint {}: its config names no tokenizer", ck.path.display());
    };
    let tok = TextTokenizer::load(tok_path)
        .with_context(|| format!("the tokenizer of checkpoint {}", ck.path.display()))?;
    if tok.vocab_size() as i64 != M::vocab_size(&cfg.model) {
        bail!(
            "tokenizer {} has {} tokens but checkpoint {} was trained with {}: they do not belong together",
            tok_path.display(),
            tok.vocab_size(),
            ck.path.display(),
            M::vocab_size(&cfg.model)
        );
    }
    let objective = build(&cfg, device)?;
    checkpoint::restore_variables(objective.var_store(), &ck.model, &ck.path.join("model.safetensors"))?;
    Ok((cfg, objective, tok, device))
}

pub fn evaluate<M: TextMethod>(ck: LoadedCheckpoint, eval_args: &crate::EvaluateArgs) -> Result<()> {
    let args = &eval_args.run;
    let (mut cfg, objective, tok, device) = restore::<M>(&ck, args.device.as_deref())?;
    cfg.data.use_probe_files(args.probe_train.as_deref(), args.probe_test.as_deref());
    let Some(sets) = probe_sets::<M>(&cfg.data, &tok)? else {
        bail!("no labelled data to probe on: pass --probe-train FILE --probe-test FILE (JSONL)");
    };
    let ft = cfg.finetune.take().unwrap_or_else(|| finetune_defaults(cfg.data.corpus.is_none()));
    let mut report = evaluation(&cfg, &objective, &sets, device)?;
    if eval_args.budget.label_budget.is_some() {
        let ((tx, ty), (vx, vy)) = (&sets.train, &sets.test);
        let untrained = build(&cfg, device)?;
        let (vocab, pad) = (tok.vocab_size() as i64, i64::from(tok.specials().pad));
        let ((trained_encoder, trained_vars), (untrained_encoder, untrained_vars)) =
            (objective.encoder_parts(), untrained.encoder_parts());
        let inputs = run::LabelInputs {
            trained: run::Tunable { encoder: trained_encoder, vars: trained_vars },
            untrained: run::Tunable { encoder: untrained_encoder, vars: untrained_vars },
            train: (tx, ty),
            test: (vx, vy),
            raw: ("bag_of_words", bag_of_words(tx, vocab, pad), bag_of_words(vx, vocab, pad)),
            finetune: ft,
        };
        if let Some(rows) = run::label_efficiency(&eval_args.budget, &ck.path, inputs, &cfg.eval, device)? {
            report["label_efficiency"] = rows;
        }
    }
    let out = serde_json::json!({ "checkpoint": ck.path, "step": ck.meta.step, "eval": report });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

pub fn finetune<M: TextMethod>(ck: LoadedCheckpoint, args: &crate::FinetuneArgs) -> Result<()> {
    let (mut cfg, objective, tok, device) = restore::<M>(&ck, args.run.device.as_deref())?;
    cfg.data.use_probe_files(args.run.probe_train.as_deref(), args.run.probe_test.as_deref());
    let mut ft = cfg.finetune.clone().unwrap_or_else(|| finetune_defaults(cfg.data.corpus.is_none()));
    run::apply_finetune_flags(&mut ft, args)?;
    let Some(sets) = probe_sets::<M>(&cfg.data, &tok)? else {
        bail!("no labelled data to fine-tune on: pass --probe-train FILE --probe-test FILE (JSONL)");
    };
    let job = run::FinetuneJob {
        ck: &ck,
        ft: &ft,
        args,
        inputs: format!("{} labelled texts", sets.train.1.size()[0]),
        classes: &sets.classes,
    };
    run::finetune_report(job, &objective, || build(&cfg, device), |m| fine_tune(m, &sets, &ft, device))
}

/// Writes the representations of a text file or folder's documents (labels -1), or of the
/// embedded held-out split, to a safetensors file: `embeddings` `[N, D]` and `labels` `[N]`.
pub fn embed<M: TextMethod>(
    ck: LoadedCheckpoint,
    device: Option<&str>,
    data: Option<&Path>,
    output: &Path,
) -> Result<()> {
    let (cfg, objective, tok, device) = restore::<M>(&ck, device)?;
    let layout = M::layout(&tok)?;
    let (x, y) = match data {
        None => {
            let docs = grammar::documents(&cfg.data.grammar, Split::Test);
            let texts: Vec<String> = docs.iter().map(|d| d.text.clone()).collect();
            let labels: Vec<i64> = docs.iter().map(|d| d.label).collect();
            labelled_tensors(&texts, &labels, &tok, layout, cfg.data.block_len)?
        }
        Some(path) => {
            let texts = read_documents(path, cfg.data.utf8)?;
            let labels = vec![-1i64; texts.len()];
            labelled_tensors(&texts, &labels, &tok, layout, cfg.data.block_len)?
        }
    };
    let z = extract_features(objective.encoder(), &x, cfg.eval.batch_size, device)?;
    run::write_embeddings(&z, &y, None, output)
}

/// `ssl generate`: text from a GPT checkpoint.
pub fn generate_text(ck: LoadedCheckpoint, args: &crate::GenerateArgs) -> Result<()> {
    let (_cfg, model, tok, _device) = restore::<Gpt>(&ck, args.device.as_deref())?;
    let prompt = tok.encode(&args.prompt)?;
    let cfg = GenerateConfig {
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
        use_cache: !args.no_cache,
        stop_at_eos: true,
    };
    let new = generate(&model, &prompt, &cfg)?;
    println!("{}{}", args.prompt, tok.decode(&new)?);
    Ok(())
}
