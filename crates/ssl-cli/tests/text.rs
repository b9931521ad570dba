//! `ssl pretrain bert | gpt` end to end with tiny models: the run directory, the summary keys of
//! the contract, the Hugging Face export, evaluate / finetune / embed / generate on the
//! checkpoint, a user's corpus and labelled JSONL, and the errors bad inputs get.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

/// A tiny model on a small embedded corpus: seconds per run.
fn tiny(method: &str) -> String {
    format!(
        r#"
method = "{method}"
[train]
steps = 6
log_every = 3
checkpoint_every = 6
progress = false
deterministic = true
[train.schedule]
warmup_steps = 1
[data]
vocab_size = 300
block_len = 32
batch_size = 8
probe_train_documents = 40
[data.grammar]
train_documents = 200
test_documents = 40
[model]
dim = 16
depth = 1
heads = 2
mlp_dim = 32
[eval.linear_probe]
epochs = 3
[finetune]
epochs = 1
batch_size = 16
"#
    )
}

fn ssl(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ssl"))
        .args(args)
        .current_dir(cwd)
        .env("SSL_CACHE_DIR", cwd.join("cache"))
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn summary(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap()
}

fn pretrain(method: &str, dir: &Path, extra: &[&str]) -> Output {
    let cfg = dir.join(format!("{method}.toml"));
    std::fs::write(&cfg, tiny(method)).unwrap();
    let mut args = vec!["pretrain", method, "--config", cfg.to_str().unwrap(), "--out", method];
    args.extend_from_slice(extra);
    ssl(&args, dir)
}

#[test]
fn gpt_runs_end_to_end_and_generates() {
    let tmp = tempfile::tempdir().unwrap();
    let o = pretrain("gpt", tmp.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = tmp.path().join("gpt");
    for f in [
        "config.toml",
        "metrics.jsonl",
        "tokenizer.json",
        "hf/model.safetensors",
        "hf/config.json",
        "hf/tokenizer.json",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let s = summary(&run);
    for key in [
        "perplexity",
        "unigram_perplexity",
        "linear_probe_acc",
        "knn_acc",
        "random_init_linear_probe_acc",
        "finetune_acc",
        "random_init_finetune_acc",
    ] {
        assert!(s["eval"][key].as_f64().is_some(), "eval.{key} missing: {s}");
    }
    let o = ssl(
        &["generate", "--checkpoint", "gpt", "--prompt", "the soup", "--max-new-tokens", "5", "--seed", "1"],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.starts_with("the soup"), "{text}");
    let again = ssl(
        &[
            "generate",
            "--checkpoint",
            "gpt",
            "--prompt",
            "the soup",
            "--max-new-tokens",
            "5",
            "--seed",
            "1",
            "--no-cache",
        ],
        tmp.path(),
    );
    assert_eq!(String::from_utf8_lossy(&again.stdout), text, "the cache changed the sample");
}

#[test]
fn bert_runs_end_to_end_and_its_checkpoint_evaluates_fine_tunes_and_embeds() {
    let tmp = tempfile::tempdir().unwrap();
    let o = pretrain("bert", tmp.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&tmp.path().join("bert"));
    for key in ["masked_accuracy", "unigram_masked_accuracy", "linear_probe_acc", "finetune_acc"] {
        assert!(s["eval"][key].as_f64().is_some(), "eval.{key} missing: {s}");
    }
    let o = ssl(&["evaluate", "--checkpoint", "bert", "--label-budget", "2,all"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(report["eval"]["linear_probe_acc"].as_f64().is_some());
    let rows = report["eval"]["label_efficiency"].as_array().unwrap();
    assert_eq!(rows[0]["seeds"].as_u64(), Some(3));
    assert!(rows[1]["baseline"]["bag_of_words"]["mean_acc"].is_number(), "{report}");
    let o = ssl(&["finetune", "bert", "--epochs", "1", "--out", "ft"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let ft = summary(&tmp.path().join("ft"));
    assert_eq!(ft["method"], "bert");
    assert!(ft["eval"]["finetune_acc"].as_f64().is_some(), "{ft}");
    assert!(tmp.path().join("ft/head.safetensors").exists());
    let o = ssl(&["embed", "--checkpoint", "bert", "--output", "z.safetensors"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(tmp.path().join("z.safetensors").exists());
    // A BERT checkpoint cannot generate.
    let o = ssl(&["generate", "--checkpoint", "bert"], tmp.path());
    assert!(!o.status.success() && stderr(&o).contains("gpt"), "{}", stderr(&o));
}

#[test]
fn a_user_corpus_and_labelled_jsonl_train_and_probe() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus.txt");
    let doc = "the cat sat on the mat .\nit was happy .\n\nthe dog ran in the park .\n\n";
    std::fs::write(&corpus, doc.repeat(60)).unwrap();
    let (train, test) = (tmp.path().join("train.jsonl"), tmp.path().join("test.jsonl"));
    let lines = |n: usize| {
        (0..n)
            .map(|i| {
                format!(
                    "{{\"text\": \"the {} sat .\", \"label\": \"{}\"}}\n",
                    ["cat", "dog"][i % 2],
                    ["a", "b"][i % 2]
                )
            })
            .collect::<String>()
    };
    std::fs::write(&train, lines(20)).unwrap();
    std::fs::write(&test, lines(10)).unwrap();
    let args = [
        "--data",
        corpus.to_str().unwrap(),
        "--probe-train",
        train.to_str().unwrap(),
        "--probe-test",
        test.to_str().unwrap(),
    ];
    let o = pretrain("bert", tmp.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("tokenised"), "{}", stderr(&o));
    let s = summary(&tmp.path().join("bert"));
    assert!(s["eval"]["linear_probe_acc"].as_f64().is_some(), "{s}");
    // The second run maps the cached token file.
    let o = pretrain("bert", tmp.path(), &[&args[..], &["--force"]].concat());
    assert!(o.status.success() && stderr(&o).contains("cached"), "{}", stderr(&o));
}

#[test]
fn bad_text_inputs_are_clear_errors_and_leave_no_run() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.txt");
    std::fs::write(&bad, b"fine text\n\xff\xfe more\n").unwrap();
    let o = pretrain("gpt", tmp.path(), &["--data", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("bad.txt") && err.contains("byte offset 10"), "{err}");
    assert!(!tmp.path().join("gpt").exists(), "a run directory was left behind");
    let empty = tmp.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let o = pretrain("gpt", tmp.path(), &["--data", empty.to_str().unwrap()]);
    assert!(!o.status.success() && stderr(&o).contains("empty.txt"), "{}", stderr(&o));
    // A tokenizer of the other kind is refused by name.
    let o = pretrain("bert", tmp.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg = tmp.path().join("mixed.toml");
    let tok = tmp.path().join("bert/tokenizer.json");
    let text = tiny("gpt").replace("[data]\n", &format!("[data]\ntokenizer = {:?}\n", tok.to_str().unwrap()));
    std::fs::write(&cfg, text).unwrap();
    let o = ssl(&["pretrain", "gpt", "--config", cfg.to_str().unwrap(), "--out", "mixed"], tmp.path());
    assert!(!o.status.success() && stderr(&o).contains("ByteLevelBpe"), "{}", stderr(&o));
    // A checkpoint whose tokenizer was replaced by one of another size.
    let small = tmp.path().join("small.toml");
    std::fs::write(&small, tiny("bert").replace("vocab_size = 300", "vocab_size = 100")).unwrap();
    let o = ssl(
        &["pretrain", "bert", "--config", small.to_str().unwrap(), "--out", "small", "--no-eval"],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::copy(tmp.path().join("small/tokenizer.json"), &tok).unwrap();
    let o = ssl(&["evaluate", "--checkpoint", "bert"], tmp.path());
    assert!(!o.status.success() && stderr(&o).contains("do not belong together"), "{}", stderr(&o));
}
