//! `ssl pretrain simclr | moco-v2 | moco-v3 | byol | mae | inpainting | rotation | autoencoder |
//! supervised` on tiny
//! models: the run directory, resume, evaluate/embed, fine-tuning and pictures, own probe
//! folders, and clear errors.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::Path;
use std::process::{Command, Output};

/// A tiny backbone and heads, 16 px shapes, a few steps.
fn tiny(method: &str, extra: &str) -> String {
    tiny_run(method, "[model.backbone]\ndepth = \"18\"\nbase_width = 4\nsmall_images = true\n", extra)
}

/// A run of a few steps of batch 16 on 16 px shapes with the `model` tables given, a short
/// probe, and `extra` tables.
fn tiny_run(method: &str, model: &str, extra: &str) -> String {
    format!(
        r#"
method = "{method}"
[train]
steps = 6
log_every = 2
checkpoint_every = 3
progress = false
deterministic = true
[train.schedule]
warmup_steps = 1
[data]
image_size = 16
batch_size = 16
[data.shapes]
image_size = 16
train_per_class = 4
test_per_class = 2
{model}
[eval.linear_probe]
epochs = 3
{extra}
"#
    )
}

fn ssl(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ssl")).args(args).current_dir(cwd).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

fn summary(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn every_vision_method_pretrains_and_reports_the_contract_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let heads = "hidden_dim = 16\nout_dim = 8\n";
    for (method, model) in [
        ("simclr", heads),
        ("moco-v2", "queue_size = 16\nout_dim = 8\n"),
        ("moco-v3", heads),
        ("byol", heads),
        ("rotation", ""),
        ("supervised", ""),
    ] {
        let extra = if model.is_empty() { String::new() } else { format!("[model]\n{model}") };
        let cfg = write(tmp.path(), &format!("{method}.toml"), &tiny(method, &extra));
        let o = ssl(&["pretrain", method, "--config", &cfg, "--out", method], tmp.path());
        assert!(o.status.success(), "{method}: {}", stderr(&o));
        let s = summary(&tmp.path().join(method));
        assert_eq!(s["method"], method);
        assert_eq!(s["steps"], 6);
        for key in
            ["linear_probe_acc", "knn_acc", "random_init_linear_probe_acc", "raw_input_linear_probe_acc"]
        {
            let v = s["eval"][key].as_f64().unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&v), "{method}: eval.{key} = {v}");
        }
        let table = String::from_utf8_lossy(&o.stdout);
        assert!(table.contains("random-init") && table.contains(method), "{table}");
    }
}

/// MAE on a 16 px ViT: the contract keys, fine-tuning against random init, the pictures.
#[test]
fn mae_pretrains_fine_tunes_draws_and_embeds() {
    let tmp = tempfile::tempdir().unwrap();
    let model = r#"
[model]
decoder_dim = 16
decoder_depth = 1
decoder_heads = 2
[model.encoder]
image_size = 16
patch_size = 4
dim = 32
depth = 2
heads = 2
"#;
    let cfg = tiny_run("mae", model, "[finetune]\nepochs = 1\nbatch_size = 8\ntrain_subset = 16\n");
    let cfg = write(tmp.path(), "mae.toml", &cfg);
    let o = ssl(&["pretrain", "mae", "--config", &cfg, "--out", "run"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&tmp.path().join("run"));
    for key in [
        "linear_probe_acc",
        "knn_acc",
        "random_init_linear_probe_acc",
        "finetune_acc",
        "random_init_finetune_acc",
    ] {
        let v = s["eval"][key].as_f64().unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&v), "eval.{key} = {v}");
    }
    let png = image::open(tmp.path().join("run/reconstructions.png")).unwrap();
    // 8 held-out images (rows) by 4 columns of 16 px tiles with 1 px borders.
    assert_eq!((png.width(), png.height()), (4 * 17 + 1, 8 * 17 + 1));
    let o = ssl(&["embed", "--checkpoint", "run", "--output", "emb.safetensors"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    // `ssl finetune` with layer-wise decay, a frozen first epoch and the random-init baseline,
    // saving the fine-tuned model.
    let ft =
        ["finetune", "run", "--epochs", "2", "--freeze-epochs", "1", "--train-subset", "16", "--baseline"];
    let o = ssl(&[&ft[..], &["--layer-decay", "0.75", "--out", "ft"]].concat(), tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in ["finetune_acc", "random_init_finetune_acc"] {
        let v = report["eval"][key].as_f64().unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&v), "eval.{key} in {report}");
    }
    assert_eq!(report["eval"]["config"]["layer_decay"], 0.75);
    assert_eq!(report["eval"]["config"]["freeze_epochs"], 1);
    assert_eq!(report["eval"]["config"]["batch_size"], 8, "the run's [finetune] table fills the rest");
    let ft_dir = tmp.path().join("ft");
    assert_eq!(summary(&ft_dir)["eval"]["finetune_acc"], report["eval"]["finetune_acc"]);
    let classes = std::fs::read_to_string(ft_dir.join("classes.txt")).unwrap();
    assert_eq!(classes.lines().count(), 8, "{classes}");
    let head = ssl_core::tch::Tensor::read_safetensors(ft_dir.join("head.safetensors")).unwrap();
    let shape = |name: &str| head.iter().find(|(n, _)| n == name).map(|(_, t)| t.size());
    assert_eq!((shape("weight"), shape("bias")), (Some(vec![8, 32]), Some(vec![8])));
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The saved model is a checkpoint of the method: its encoder embeds differently from the
    // pretrained one.
    let o = ssl(&["embed", "ft", "--output", "emb-ft.safetensors"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let read = |f: &str| {
        let t = ssl_core::tch::Tensor::read_safetensors(tmp.path().join(f)).unwrap();
        t.into_iter().find(|(n, _)| n == "embeddings").unwrap().1
    };
    let (before, after) = (read("emb.safetensors"), read("emb-ft.safetensors"));
    assert_eq!(before.size(), after.size());
    assert!(!before.allclose(&after, 1e-4, 1e-4, false), "fine-tuning left the encoder unchanged");
    // An existing --out is not overwritten without --force; a bad flag leaves nothing behind.
    let o = ssl(&[&ft[..], &["--out", "ft"]].concat(), tmp.path());
    assert!(!o.status.success() && stderr(&o).contains("--out"), "{}", stderr(&o));
    // --force never replaces the directory of the checkpoint it reads, nor the working one.
    for out in ["run", "."] {
        let o = ssl(&[&ft[..], &["--out", out, "--force"]].concat(), tmp.path());
        assert!(!o.status.success() && stderr(&o).contains("choose another --out"), "{}", stderr(&o));
    }
    assert!(tmp.path().join("run/checkpoints").exists());
    let o = ssl(&[&ft[..], &["--layer-decay", "1.5", "--out", "ft2"]].concat(), tmp.path());
    assert!(!o.status.success() && stderr(&o).contains("finetune.layer_decay"), "{}", stderr(&o));
    assert!(!tmp.path().join("ft2").exists());
    let o = ssl(&["finetune", "run", "--epochs", "2", "--freeze-epochs", "2", "--out", "ft2"], tmp.path());
    assert!(!o.status.success() && stderr(&o).contains("finetune.freeze_epochs"), "{}", stderr(&o));
    // A ViT built for another image size than the data's is refused before anything is written.
    let bad = write(
        tmp.path(),
        "bad.toml",
        &std::fs::read_to_string(&cfg).unwrap().replace("[data]\nimage_size = 16", "[data]\nimage_size = 32"),
    );
    let o = ssl(&["pretrain", "mae", "--config", &bad, "--out", "bad"], tmp.path());
    assert!(!o.status.success() && stderr(&o).contains("model.encoder.image_size"), "{}", stderr(&o));
    assert!(!tmp.path().join("bad").exists());
}

/// Inpainting (random patches) and the denoising autoencoder: the contract keys and their
/// pictures, after and during training; an autoencoder built for another size than the data's is refused up front.
#[test]
fn inpainting_and_autoencoder_pretrain_and_draw() {
    let tmp = tempfile::tempdir().unwrap();
    let backbone = "[model.backbone]\ndepth = \"18\"\nbase_width = 4\nsmall_images = true\n";
    for (method, model, columns) in [
        (
            "inpainting",
            "[model]\ndecoder_width = 8\n[model.mask]\nkind = \"patches\"\npatch_size = 4\nratio = 0.25\n",
            4,
        ),
        ("autoencoder", "[model]\nimage_size = 16\ndecoder_width = 8\n", 3),
    ] {
        let cfg = write(
            tmp.path(),
            &format!("{method}.toml"),
            &tiny_run(method, &format!("{backbone}{model}"), "[pictures]\nevery = 3\n"),
        );
        let o = ssl(&["pretrain", method, "--config", &cfg, "--out", method], tmp.path());
        assert!(o.status.success(), "{method}: {}", stderr(&o));
        let s = summary(&tmp.path().join(method));
        let v = s["eval"]["linear_probe_acc"].as_f64().unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&v), "{method}: {s}");
        let png = image::open(tmp.path().join(method).join("reconstructions.png")).unwrap();
        assert_eq!((png.width(), png.height()), (columns * 17 + 1, 8 * 17 + 1), "{method}");
        // Drawn during training too, every 3 of the 6 steps (the last one is reconstructions.png).
        let during: Vec<_> = std::fs::read_dir(tmp.path().join(method).join("pictures"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(during, ["step-00000003.png"], "{method}");
    }
    let bad = write(
        tmp.path(),
        "bad.toml",
        &tiny_run("autoencoder", &format!("{backbone}[model]\nimage_size = 32\n"), ""),
    );
    let o = ssl(&["pretrain", "autoencoder", "--config", &bad, "--out", "bad"], tmp.path());
    assert!(!o.status.success() && stderr(&o).contains("model.image_size"), "{}", stderr(&o));
    assert!(!tmp.path().join("bad").exists());
}

#[test]
fn a_run_resumes_evaluates_and_embeds() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), "c.toml", &tiny("moco-v2", "[model]\nqueue_size = 16\nout_dim = 8\n"));
    let o = ssl(&["pretrain", "moco-v2", "--config", &cfg, "--out", "run", "--no-eval"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ssl(
        &["pretrain", "moco-v2", "--config", &cfg, "--steps", "9", "--resume", "run", "--no-eval"],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(summary(&tmp.path().join("run"))["steps"], 9);
    let o = ssl(&["eval", "--checkpoint", "run"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["step"], 9);
    // A label-efficiency curve: one row per budget, each beside its baselines.
    let o =
        ssl(&["eval", "--checkpoint", "run", "--label-budget", "1,2,50%,all", "--seeds", "2"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = report["eval"]["label_efficiency"].as_array().unwrap();
    let budgets: Vec<&str> = rows.iter().map(|r| r["budget"].as_str().unwrap()).collect();
    assert_eq!(budgets, ["1", "2", "50%", "all"]);
    let seeds: Vec<u64> = rows.iter().map(|r| r["seeds"].as_u64().unwrap()).collect();
    assert_eq!(seeds, [2, 2, 2, 1]);
    assert_eq!(rows[0]["labels_per_class"].as_f64(), Some(1.0));
    for r in rows {
        for k in ["mean_acc", "std_acc"] {
            assert!((0.0..=1.0).contains(&r[k].as_f64().unwrap()), "{r}");
            assert!(
                r["baseline"]["random_init"][k].is_number() && r["baseline"]["raw_input"][k].is_number(),
                "{r}"
            );
        }
    }
    assert!(stderr(&o).contains("labels/class"), "{}", stderr(&o));
    let png = image::open(tmp.path().join("run/label_efficiency.png")).unwrap();
    assert!(png.width() > 100 && png.height() > 100);
    // With --finetune both encoders are also fine-tuned on every subset.
    // The same budget twice: the pretrained weights are put back after each fine-tuning, so
    // the second starts where the first did and ends the same.
    let o = ssl(&["eval", "run", "--label-budget", "2,2", "--seeds", "2", "--finetune"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ft_rows = report["eval"]["label_efficiency"].as_array().unwrap();
    let row = &ft_rows[0];
    assert_eq!(row["finetune"]["accs"].as_array().map(Vec::len), Some(2), "{row}");
    assert!(row["baseline"]["random_init_finetune"]["mean_acc"].is_number(), "{row}");
    assert_eq!(row["finetune"], ft_rows[1]["finetune"]);
    assert_eq!(row["mean_acc"], rows[1]["mean_acc"], "the probe is the one without --finetune");
    let o = ssl(&["eval", "--checkpoint", "run", "--label-budget", "0"], tmp.path());
    assert!(!o.status.success() && stderr(&o).contains("--label-budget"), "{}", stderr(&o));
    let o = ssl(&["embed", "--checkpoint", "run", "--output", "emb.safetensors"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let t = ssl_core::tch::Tensor::read_safetensors(tmp.path().join("emb.safetensors")).unwrap();
    let emb = &t.iter().find(|(n, _)| n == "embeddings").unwrap().1;
    assert_eq!(emb.size(), [16, 32]);
}

/// A labelled folder of PNGs drawn from the shapes, one sub-folder per class.
fn image_folder(root: &Path, per_class: usize) {
    use ssl_core::data::Dataset;
    let cfg = ssl_vision::shapes::ShapesConfig {
        image_size: 16,
        num_classes: 2,
        train_per_class: per_class,
        ..Default::default()
    };
    let ds = ssl_vision::shapes::Shapes::new(&cfg, ssl_vision::shapes::Split::Train).unwrap();
    for i in 0..ds.len() {
        let (img, label) = ds.get(i).unwrap();
        let dir = root.join(format!("class{label}"));
        std::fs::create_dir_all(&dir).unwrap();
        let rgb = image::RgbImage::from_fn(16, 16, |x, y| {
            image::Rgb(img.get_pixel(x, y).0.map(|v| (v * 255.0).round() as u8))
        });
        rgb.save(dir.join(format!("{i}.png"))).unwrap();
    }
}

#[test]
fn folders_train_and_probe() {
    let tmp = tempfile::tempdir().unwrap();
    image_folder(&tmp.path().join("train"), 10);
    image_folder(&tmp.path().join("test"), 3);
    let cfg = write(tmp.path(), "c.toml", &tiny("simclr", "[model]\nhidden_dim = 16\nout_dim = 8\n"));
    let args = [
        "pretrain",
        "simclr",
        "--config",
        &cfg,
        "--data",
        "train",
        "--probe-train",
        "train",
        "--probe-test",
        "test",
        "--out",
        "run",
    ];
    let o = ssl(&args, tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&tmp.path().join("run"));
    assert!(s["eval"]["linear_probe_acc"].as_f64().is_some(), "{s}");
    // An unreadable file is named and nothing is left behind; with skip_bad it is counted.
    std::fs::write(tmp.path().join("train/class0/broken.png"), b"not a png").unwrap();
    let args = ["pretrain", "simclr", "--config", &cfg, "--data", "train", "--out", "run2"];
    let o = ssl(&args, tmp.path());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("broken.png"), "{}", stderr(&o));
    assert!(!tmp.path().join("run2").exists());
    let skip = write(
        tmp.path(),
        "skip.toml",
        &tiny("simclr", "[model]\nhidden_dim = 16\nout_dim = 8\n")
            .replace("[data]\n", "[data]\nskip_bad = true\n"),
    );
    let o = ssl(
        &["pretrain", "simclr", "--config", &skip, "--data", "train", "--out", "run2", "--no-eval"],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("skipped 1 unreadable image"), "{}", stderr(&o));
}

#[test]
fn bad_inputs_fail_clearly_and_leave_no_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("empty")).unwrap();
    let cases: Vec<(String, Vec<&str>, &str)> = vec![
        (tiny("moco-v2", "[model]\nqueue_size = 1000\n"), vec![], "model.queue_size"),
        (tiny("simclr", "[model]\ntemperature = 0.0\n"), vec![], "model.temperature"),
        (tiny("simclr", "[model]\nhiden_dim = 3\n"), vec![], "hiden_dim"),
        (tiny("byol", ""), vec!["--data", "empty"], "empty"),
        (tiny("byol", ""), vec!["--data", "nowhere"], "nowhere"),
        (tiny("simclr", ""), vec!["--batch-size", "1"], "data.batch_size"),
        (tiny("byol", "").replace("method = \"byol\"", "method = \"simclr\""), vec![], "does not match"),
    ];
    for (i, (toml, extra, needle)) in cases.iter().enumerate() {
        let cfg = write(tmp.path(), &format!("bad{i}.toml"), toml);
        let method = toml.lines().find_map(|l| l.strip_prefix("method = ")).unwrap().trim_matches('"');
        let method = if *needle == "does not match" { "byol" } else { method };
        let out = format!("run{i}");
        let mut args = vec!["pretrain", method, "--config", &cfg, "--out", &out];
        args.extend(extra.iter());
        let o = ssl(&args, tmp.path());
        assert!(!o.status.success(), "case {i} was accepted");
        let err = stderr(&o);
        assert!(err.contains(needle), "case {i}: the error does not name {needle}: {err}");
        assert!(!tmp.path().join(&out).exists(), "{out} was created for a bad input");
    }
}

#[test]
fn init_from_continues_from_weights_and_refuses_another_method_or_architecture() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), "c.toml", &tiny("simclr", ""));
    let o = ssl(&["pretrain", "simclr", "--config", &cfg, "--out", "a", "--no-eval"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    // Continued pretraining: the checkpoint's weights, a fresh schedule of this run's steps.
    let o = ssl(
        &["pretrain", "simclr", "--config", &cfg, "--init-from", "a", "--out", "b", "--no-eval"],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("initialised from"), "{}", stderr(&o));
    assert_eq!(summary(&tmp.path().join("b"))["steps"], 6);
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(tmp.path().join("b/metrics.jsonl")).unwrap().lines().next().unwrap(),
    )
    .unwrap();
    assert_eq!(first["step"], 2);
    // Another method.
    let moco = write(tmp.path(), "m.toml", &tiny("moco-v2", "[model]\nqueue_size = 16\n"));
    let o = ssl(&["pretrain", "moco-v2", "--config", &moco, "--init-from", "a", "--out", "c"], tmp.path());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("written by `simclr`, not `moco-v2`"), "{}", stderr(&o));
    // Another architecture: the first mismatched tensor, with both shapes.
    let wide = write(
        tmp.path(),
        "w.toml",
        &tiny_run("simclr", "[model.backbone]\ndepth = \"18\"\nbase_width = 8\nsmall_images = true\n", ""),
    );
    let o = ssl(&["pretrain", "simclr", "--config", &wide, "--init-from", "a", "--out", "d"], tmp.path());
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("shape mismatch for `")
            && err.contains("the model has [")
            && err.contains("the checkpoint ["),
        "{err}"
    );
    assert!(!tmp.path().join("c").exists() && !tmp.path().join("d").exists());
}
