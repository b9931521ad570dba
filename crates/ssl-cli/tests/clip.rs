//! `ssl pretrain clip` end to end with a tiny model: the run directory and the contract's
//! summary keys, evaluate and embed (images and texts) on the checkpoint, a user's manifest,
//! zero-shot folder and templates, and the errors bad pairs get.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

const TINY: &str = r#"
method = "clip"
[train]
steps = 3
log_every = 1
checkpoint_every = 3
progress = false
deterministic = true
[train.schedule]
warmup_steps = 1
[data]
batch_size = 8
vocab_size = 300
[data.transform]
size = 16
[data.scenes]
image_size = 16
train_pairs = 64
test_pairs = 12
zero_shot_per_class = 2
[model]
embed_dim = 8
micro_batches = 2
[model.image]
kind = "vit"
image_size = 16
patch_size = 4
dim = 16
depth = 1
heads = 2
[model.text]
context_length = 12
width = 16
depth = 1
heads = 2
"#;

fn ssl(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ssl")).args(args).current_dir(cwd).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn png(path: &Path, rgb: [u8; 3]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(20, 18, image::Rgb(rgb)).save(path).unwrap();
}

#[test]
fn embedded_run_writes_the_contract_keys_then_evaluates_and_embeds() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("tiny.toml"), TINY).unwrap();
    let o = ssl(&["pretrain", "clip", "--config", "tiny.toml", "--out", "run"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let run = tmp.path().join("run");
    for f in ["config.toml", "metrics.jsonl", "summary.json", "tokenizer.json"] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    for k in ["method", "steps", "samples_per_sec", "final_loss", "device"] {
        assert!(!s[k].is_null(), "summary lacks {k}");
    }
    let e = &s["eval"];
    for k in [
        "zero_shot_acc",
        "zero_shot_chance",
        "i2t_recall_at_1",
        "i2t_recall_at_5",
        "i2t_recall_at_10",
        "t2i_recall_at_1",
        "t2i_recall_at_5",
        "t2i_recall_at_10",
        "random_init_zero_shot_acc",
    ] {
        let v = e[k].as_f64().unwrap_or_else(|| panic!("eval lacks {k}: {e}"));
        assert!((0.0..=1.0).contains(&v), "{k} = {v}");
    }
    assert_eq!(e["zero_shot_chance"].as_f64(), Some(1.0 / 16.0));
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("logit_scale") && metrics.contains("i2t_accuracy"), "{metrics}");

    // A few-shot label-efficiency curve of the image tower on the held-out classes.
    let o = ssl(&["evaluate", "run", "--label-budget", "1,all", "--seeds", "2"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = out["eval"]["label_efficiency"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    // 2 images per held-out class: one labelled, one to test.
    assert_eq!(rows[1]["labels_per_class"].as_f64(), Some(1.0), "{out}");
    assert!(rows[0]["baseline"]["random_init"]["mean_acc"].is_number(), "{out}");
    assert!(run.join("label_efficiency.png").exists());

    // evaluate on a user's zero-shot folder with templates.
    png(&tmp.path().join("zs/red_disk/a.png"), [230, 20, 20]);
    png(&tmp.path().join("zs/blue_square/b.png"), [20, 20, 230]);
    std::fs::write(tmp.path().join("t.txt"), "a {}\na small {}\n").unwrap();
    let o =
        ssl(&["evaluate", "--checkpoint", "run", "--zero-shot", "zs", "--templates", "t.txt"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(out["eval"]["zero_shot_classes"].as_u64(), Some(2));
    std::fs::write(tmp.path().join("bad.txt"), "a photo\n").unwrap();
    let o =
        ssl(&["evaluate", "--checkpoint", "run", "--zero-shot", "zs", "--templates", "bad.txt"], tmp.path());
    assert!(!o.status.success() && stderr(&o).contains("bad.txt"), "{}", stderr(&o));

    // embed images and texts.
    let o = ssl(&["embed", "--checkpoint", "run", "--data", "zs", "--output", "img.safetensors"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let t = ssl_core::tch::Tensor::read_safetensors(tmp.path().join("img.safetensors")).unwrap();
    let z = &t.iter().find(|(n, _)| n == "embeddings").unwrap().1;
    assert_eq!(z.size(), [2, 8]);
    std::fs::write(tmp.path().join("texts.txt"), "a red disk\na blue square\nthe star is green\n").unwrap();
    let o = ssl(
        &["embed", "--checkpoint", "run", "--data", "texts.txt", "--output", "txt.safetensors"],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let t = ssl_core::tch::Tensor::read_safetensors(tmp.path().join("txt.safetensors")).unwrap();
    let z = &t.iter().find(|(n, _)| n == "embeddings").unwrap().1;
    assert_eq!(z.size(), [3, 8]);
    let norms = z.norm_scalaropt_dim(2, [1], false);
    assert!((norms - 1.0).abs().max().double_value(&[]) < 1e-4);
    let listed = std::fs::read_to_string(tmp.path().join("txt.safetensors.files.txt")).unwrap();
    assert_eq!(listed.lines().nth(2), Some("the star is green"));
    // NumPy output: the same embeddings, labels beside them.
    let o = ssl(&["embed", "--checkpoint", "run", "--data", "texts.txt", "--output", "txt.npy"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let n = ssl_core::tch::Tensor::read_npy(tmp.path().join("txt.npy")).unwrap();
    assert!(n.allclose(z, 1e-6, 1e-6, false));
    let labels = ssl_core::tch::Tensor::read_npy(tmp.path().join("txt.npy.labels.npy")).unwrap();
    assert_eq!(labels.size(), [3]);
    assert!(tmp.path().join("txt.npy.files.txt").is_file());
}

#[test]
fn a_manifest_trains_and_bad_pairs_are_named_without_a_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rows = String::from("filepath,title\n");
    for i in 0..10 {
        let (rgb, name) = if i % 2 == 0 { ([230, 20, 20], "red") } else { ([20, 20, 230], "blue") };
        png(&tmp.path().join(format!("img/{i}.png")), rgb);
        rows.push_str(&format!("img/{i}.png,a {name} picture\n"));
    }
    std::fs::write(tmp.path().join("pairs.csv"), &rows).unwrap();
    std::fs::write(tmp.path().join("tiny.toml"), TINY).unwrap();
    let args = |out: &'static str, data: &'static str| {
        vec![
            "pretrain",
            "clip",
            "--config",
            "tiny.toml",
            "--data",
            data,
            "--pairs",
            "pairs.csv",
            "--out",
            out,
        ]
    };
    let o = ssl(&args("ok", "pairs.csv"), tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("ok/summary.json")).unwrap()).unwrap();
    assert_eq!(s["eval"]["retrieval_pairs"].as_u64(), Some(10));
    assert_eq!((s["training_pairs"].as_u64(), s["skipped_pairs"].as_u64()), (Some(10), Some(0)));
    assert!(s["eval"]["zero_shot_acc"].is_null());

    rows.push_str("img/missing.png,a lost picture\n");
    std::fs::write(tmp.path().join("broken.csv"), &rows).unwrap();
    let o = ssl(&args("bad", "broken.csv"), tmp.path());
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("broken.csv:12") && err.contains("missing.png"), "{err}");
    assert!(!tmp.path().join("bad").exists());
    // With skip_bad the broken pair is left out and counted.
    std::fs::write(tmp.path().join("skip.toml"), format!("{TINY}[data.manifest]\nskip_bad = true\n"))
        .unwrap();
    let o = ssl(
        &["pretrain", "clip", "--config", "skip.toml", "--data", "broken.csv", "--no-eval", "--out", "skip"],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("skip/summary.json")).unwrap()).unwrap();
    assert_eq!((s["training_pairs"].as_u64(), s["skipped_pairs"].as_u64()), (Some(10), Some(1)));
    std::fs::write(tmp.path().join("empty.jsonl"), "{\"image\": \"img/0.png\"}\n").unwrap();
    let o = ssl(&args("bad", "empty.jsonl"), tmp.path());
    assert!(stderr(&o).contains("missing field `caption`"), "{}", stderr(&o));
    assert!(!tmp.path().join("bad").exists());
}
