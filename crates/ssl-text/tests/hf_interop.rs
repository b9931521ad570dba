//! Our BERT and GPT-2 forward passes against `transformers` on tiny random checkpoints written by
//! `tests/fixtures/make_hf_fixtures.py` (see its docstring to regenerate them), and the round
//! trip through our own HF export.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ssl_core::tch::{Device, Tensor};
use ssl_text::hf;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn expected(dir: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(dir.join("expected.safetensors")).unwrap().into_iter().collect()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn bert_logits(model: &ssl_text::bert::Bert, ids: &Tensor) -> Tensor {
    let h = model.hidden_states(ids, false).unwrap();
    model.mlm_logits(&h).unwrap()
}

#[test]
fn bert_matches_transformers_within_1e_4() {
    let dir = fixture("bert");
    let want = expected(&dir);
    let model = hf::load_bert(&dir, Device::Cpu).unwrap();
    let got = bert_logits(&model, &want["input_ids"]);
    assert_eq!(got.size(), want["logits"].size());
    let diff = max_diff(&got, &want["logits"]);
    assert!(diff < 1e-4, "max |logit difference| {diff}");
    // The logits are not trivially small: a mapping mistake would show.
    assert!(want["logits"].abs().max().double_value(&[]) > 1.0);
}

#[test]
fn gpt2_matches_transformers_within_1e_4() {
    let dir = fixture("gpt2");
    let want = expected(&dir);
    let model = hf::load_gpt2(&dir, Device::Cpu).unwrap();
    let got = model.logits(&want["input_ids"], false).unwrap();
    let diff = max_diff(&got, &want["logits"]);
    assert!(diff < 1e-4, "max |logit difference| {diff}");
    assert!(want["logits"].abs().max().double_value(&[]) > 1.0);
}

/// Exporting what we loaded gives back the fixture's tensors, name for name.
#[test]
fn export_round_trips_the_hf_files() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["bert", "gpt2"] {
        let dir = fixture(name);
        let out = tmp.path().join(name);
        if name == "bert" {
            hf::save_bert(&hf::load_bert(&dir, Device::Cpu).unwrap(), &out).unwrap();
        } else {
            hf::save_gpt2(&hf::load_gpt2(&dir, Device::Cpu).unwrap(), &out).unwrap();
        }
        let original: HashMap<String, Tensor> =
            Tensor::read_safetensors(dir.join("model.safetensors")).unwrap().into_iter().collect();
        let ours: HashMap<String, Tensor> =
            Tensor::read_safetensors(out.join("model.safetensors")).unwrap().into_iter().collect();
        let mut a: Vec<&String> = original.keys().collect();
        let mut b: Vec<&String> = ours.keys().collect();
        a.sort();
        b.sort();
        assert_eq!(a, b, "{name}");
        for (k, t) in &original {
            assert_eq!(max_diff(t, &ours[k]), 0.0, "{name}: {k}");
        }
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["vocab_size"], 99);
    }
}

#[test]
fn bad_folders_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let err = hf::load_bert(tmp.path(), Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");
    // A config whose shapes disagree with the weights names the tensor.
    let dir = tmp.path().join("wrong");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(fixture("gpt2").join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("gpt2").join("config.json")).unwrap()).unwrap();
    cfg["vocab_size"] = 100.into();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let err = hf::load_gpt2(&dir, Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("embed.tokens"), "{err}");
}

#[test]
fn a_pre_ln_bert_is_not_exported_as_hf_bert() {
    use ssl_core::blocks::NormPlacement;
    use ssl_text::bert::{Bert, BertConfig};
    let cfg = BertConfig { norm_placement: NormPlacement::Pre, ..BertConfig::tiny() };
    let model = Bert::new(&cfg, Device::Cpu).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let err = hf::save_bert(&model, tmp.path()).unwrap_err();
    assert!(err.to_string().contains("post-LN"), "{err}");
    assert!(!tmp.path().join("model.safetensors").exists());
}
