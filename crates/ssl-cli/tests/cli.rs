//! The `ssl` command as a user meets it: the run directory it writes, and its errors.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::Path;
use std::process::{Command, Output};

const TINY: &str = r#"
[train]
steps = 12
log_every = 4
checkpoint_every = 6
progress = false
deterministic = true

[train.schedule]
warmup_steps = 2

[data]
num_classes = 3
dim = 8
latent_dim = 2
train_per_class = 16
test_per_class = 8
repr_dim = 16
proj_dim = 8
batch_size = 8

[eval.linear_probe]
epochs = 5
"#;

fn ssl(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ssl")).args(args).current_dir(cwd).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tiny_config(dir: &Path) -> String {
    let p = dir.join("tiny.toml");
    std::fs::write(&p, TINY).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn pretrain_writes_the_contract_run_directory_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_config(tmp.path());
    let o = ssl(&["pretrain", "synthetic", "--config", &cfg, "--out", "run"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let run = tmp.path().join("run");
    for f in ["config.toml", "metrics.jsonl", "summary.json", "checkpoints/step-00000012/state.json"] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    for key in ["method", "steps", "samples_per_sec", "final_loss", "device"] {
        assert!(summary.get(key).is_some(), "summary lacks {key}: {summary}");
    }
    for key in ["linear_probe_acc", "knn_acc", "random_init_linear_probe_acc", "raw_input_linear_probe_acc"] {
        let v = summary["eval"][key].as_f64().unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&v), "eval.{key} = {v}");
    }
    assert_eq!(summary["steps"], 12);
    let first_line: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().next().unwrap(),
    )
    .unwrap();
    for key in ["step", "loss", "lr", "samples_per_sec", "host_memory_mib"] {
        assert!(first_line.get(key).is_some(), "metrics.jsonl lacks {key}");
    }
    // Step-time statistics and peak memory, and the loss and learning-rate curves.
    let (median, p90) =
        (summary["step_time_median_s"].as_f64().unwrap(), summary["step_time_p90_s"].as_f64().unwrap());
    assert!(median > 0.0 && p90 > 0.0, "{summary}");
    assert!(summary["peak_host_memory_bytes"].as_u64().unwrap_or(0) > 1 << 20, "{summary}");
    // The tiny synthetic MLP: hundreds of trainable values.
    assert!((100..1_000_000).contains(&summary["parameters"].as_u64().unwrap_or(0)), "{summary}");
    let curves = image::open(run.join("training_curves.png")).unwrap();
    assert_eq!((curves.width(), curves.height()), (ssl_plot::WIDTH, 2 * ssl_plot::HEIGHT));

    // A second run into the same directory is refused...
    let o = ssl(&["pretrain", "synthetic", "--config", &cfg, "--out", "run"], tmp.path());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
    // ...but it can be resumed for more steps, in place.
    let o = ssl(
        &["pretrain", "synthetic", "--config", &cfg, "--steps", "18", "--resume", "run", "--no-eval"],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(run.join("checkpoints/step-00000018").exists());

    let o = ssl(&["evaluate", "--checkpoint", "run"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["step"], 18);

    let o = ssl(&["embed", "--checkpoint", "run", "--output", "emb.safetensors"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(tmp.path().join("emb.safetensors").exists());
}

#[test]
fn bad_inputs_fail_clearly_and_leave_no_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        ("[train]\nstepz = 3\n", "stepz"),
        ("[train]\nsteps = \"many\"\n", "steps"),
        ("[train.optimizer]\nlr = -1.0\n", "optimizer.lr"),
        ("[data]\nbatch_size = 1\n", "data.batch_size"),
        ("[eval.knn]\nks = []\n", "eval.knn.ks"),
    ];
    for (i, (toml, needle)) in cases.iter().enumerate() {
        let cfg = tmp.path().join(format!("bad{i}.toml"));
        std::fs::write(&cfg, toml).unwrap();
        let out = format!("run{i}");
        let o = ssl(&["pretrain", "synthetic", "--config", cfg.to_str().unwrap(), "--out", &out], tmp.path());
        assert!(!o.status.success(), "{toml} was accepted");
        let err = stderr(&o);
        assert!(err.contains(needle), "error for {toml:?} does not name {needle}: {err}");
        assert!(!tmp.path().join(&out).exists(), "{out} was created for a bad config");
    }
    let o = ssl(&["pretrain", "synthetic", "--config", "missing.toml", "--out", "r"], tmp.path());
    assert!(stderr(&o).contains("missing.toml"));
    let o = ssl(&["pretrain", "synthetic", "--zero-shot", "zs", "--out", "r"], tmp.path());
    assert!(stderr(&o).contains("--zero-shot, --pairs and --templates score clip"), "{}", stderr(&o));
    let o = ssl(&["pretrain", "nonsense", "--out", "r"], tmp.path());
    assert!(stderr(&o).contains("unknown method"), "{}", stderr(&o));
    let o = ssl(&["pretrain", "synthetic", "--device", "gpu", "--out", "r"], tmp.path());
    assert!(stderr(&o).contains("device"), "{}", stderr(&o));
    let o = ssl(&["evaluate", "--checkpoint", "nowhere"], tmp.path());
    assert!(stderr(&o).contains("nowhere"), "{}", stderr(&o));
    assert!(!tmp.path().join("r").exists());
}
