//! `ssl pretrain wav2vec2 | cpc` end to end with tiny models: the run directory and the summary
//! keys of the contract, evaluate / finetune / embed on the checkpoint, WAV folders at other
//! sample rates, and the errors bad audio gets.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use ssl_audio::wav::{write_wav, WavFormat, Waveform};

/// A tiny model on a small embedded set: seconds per run.
fn tiny(method: &str) -> String {
    let model = match method {
        "wav2vec2" => {
            "dim = 16\ndepth = 1\nheads = 2\nmlp_dim = 32\npos_conv_kernel = 8\npos_conv_groups = 4\nfinal_dim = 8\ndistractors = 5\n[model.quantizer]\nentries = 8\n"
        }
        _ => "context_dim = 8\nsteps = 3\nnegatives = 8\n",
    };
    format!(
        r#"
method = "{method}"
[train]
steps = 4
log_every = 2
checkpoint_every = 4
progress = false
deterministic = true
[train.schedule]
warmup_steps = 1
[data]
batch_size = 4
probe_train_clips = 20
[data.synth]
train_clips = 40
test_clips = 20
classes = 4
[eval.linear_probe]
epochs = 3
[eval.knn]
ks = [3]
[finetune]
epochs = 1
batch_size = 8
[model]
{model}[model.conv]
channels = 8
"#
    )
}

fn ssl(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ssl")).args(args).current_dir(cwd).output().unwrap()
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

/// A tone of `freq` Hz for `secs` seconds at `rate`.
fn tone(path: &Path, freq: f32, secs: f32, rate: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let n = (secs * rate as f32) as usize;
    let samples =
        (0..n).map(|i| 0.5 * (std::f32::consts::TAU * freq * i as f32 / rate as f32).sin()).collect();
    write_wav(path, &Waveform { samples, sample_rate: rate }, WavFormat::Pcm16).unwrap();
}

#[test]
fn cpc_runs_end_to_end_and_its_checkpoint_evaluates_fine_tunes_and_embeds() {
    let tmp = tempfile::tempdir().unwrap();
    let o = pretrain("cpc", tmp.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&tmp.path().join("cpc"));
    for key in [
        "linear_probe_acc",
        "knn_acc",
        "random_init_linear_probe_acc",
        "logmel_linear_probe_acc",
        "finetune_acc",
        "random_init_finetune_acc",
    ] {
        let v = s["eval"][key].as_f64().unwrap_or_else(|| panic!("eval.{key} missing: {s}"));
        assert!((0.0..=1.0).contains(&v), "{key} = {v}");
    }
    for key in ["method", "steps", "samples_per_sec", "final_loss", "device"] {
        assert!(!s[key].is_null(), "{key} missing: {s}");
    }
    let metrics = std::fs::read_to_string(tmp.path().join("cpc/metrics.jsonl")).unwrap();
    assert!(metrics.lines().count() >= 2 && metrics.contains("\"accuracy\""), "{metrics}");
    let o = ssl(&["evaluate", "--checkpoint", "cpc", "--label-budget", "1,all", "--seeds", "2"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(report["eval"]["logmel_linear_probe_acc"].as_f64().is_some(), "{report}");
    let rows = report["eval"]["label_efficiency"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows[0]["baseline"]["logmel"]["mean_acc"].is_number(), "{report}");
    let o = ssl(&["finetune", "cpc", "--epochs", "1", "--baseline", "--out", "ft"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    // The fine-tuned model is saved with its classes; `ssl evaluate` reads it back.
    let classes = std::fs::read_to_string(tmp.path().join("ft/classes.txt")).unwrap();
    let head = ssl_core::tch::Tensor::read_safetensors(tmp.path().join("ft/head.safetensors")).unwrap();
    let bias = &head.iter().find(|(n, _)| n == "bias").unwrap().1;
    assert_eq!(bias.size(), [classes.lines().count() as i64]);
    let o = ssl(&["evaluate", "ft"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ssl(&["embed", "--checkpoint", "cpc", "--output", "z.safetensors"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let z = ssl_core::tch::Tensor::read_safetensors(tmp.path().join("z.safetensors")).unwrap();
    let emb = &z.iter().find(|(n, _)| n == "embeddings").unwrap().1;
    assert_eq!(emb.size(), [20, 8]);
}

#[test]
fn wav2vec2_trains_on_wav_folders_at_other_rates_and_probes_labelled_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("unlabelled");
    for (i, rate) in [8_000u32, 22_050, 44_100, 16_000, 48_000, 11_025].iter().enumerate() {
        tone(&data.join(format!("sub/{i}.wav")), 200.0 + 50.0 * i as f32, 0.6 + 0.1 * i as f32, *rate);
    }
    for split in ["train", "test"] {
        for (class, freq) in [("low", 300.0), ("high", 2000.0)] {
            for i in 0..4 {
                tone(
                    &tmp.path().join(format!("{split}/{class}/{i}.wav")),
                    freq + 20.0 * i as f32,
                    0.5,
                    22_050,
                );
            }
        }
    }
    let o = pretrain(
        "wav2vec2",
        tmp.path(),
        &["--data", data.to_str().unwrap(), "--probe-train", "train", "--probe-test", "test", "--steps", "2"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&tmp.path().join("wav2vec2"));
    assert_eq!(s["steps"], 2);
    assert!(s["eval"]["logmel_linear_probe_acc"].as_f64().is_some(), "{s}");
    let metrics = std::fs::read_to_string(tmp.path().join("wav2vec2/metrics.jsonl")).unwrap();
    assert!(metrics.contains("code_perplexity") && metrics.contains("masked_share"), "{metrics}");
    let o = ssl(
        &["embed", "--checkpoint", "wav2vec2", "--data", "unlabelled", "--output", "u.safetensors"],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let files = std::fs::read_to_string(tmp.path().join("u.safetensors.files.txt")).unwrap();
    assert_eq!(files.lines().count(), 6);
}

#[test]
fn bad_audio_is_a_clear_error_naming_the_file_and_leaves_no_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("clips");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("not-audio.wav"), "this is text").unwrap();
    let o = pretrain("cpc", tmp.path(), &["--data", data.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not-audio.wav"), "{}", stderr(&o));
    assert!(!tmp.path().join("cpc").exists(), "a run directory was left behind");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = pretrain("cpc", tmp.path(), &["--data", empty.to_str().unwrap()]);
    assert!(!o.status.success() && stderr(&o).contains("no .wav files"), "{}", stderr(&o));
    // Labelled folders need a class per sub-folder.
    tone(&tmp.path().join("ok/a.wav"), 440.0, 0.5, 16_000);
    let o = pretrain("cpc", tmp.path(), &["--probe-train", "ok", "--probe-test", "ok"]);
    assert!(!o.status.success() && stderr(&o).contains("sub-folder per class"), "{}", stderr(&o));
    assert!(!tmp.path().join("cpc").exists(), "a run directory was left behind");
}
