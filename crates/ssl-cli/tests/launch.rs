//! `ssl launch`: a data-parallel job of several processes on loopback (Gloo).

use std::path::Path;
use std::process::{Command, Output};

fn ssl(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ssl"))
        .args(args)
        .current_dir(cwd)
        .env("GLOO_SOCKET_IFNAME", "lo")
        .env("SSL_DIST_TIMEOUT", "60")
        .output()
        .expect("run ssl")
}

#[test]
fn two_processes_write_one_run_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = ssl(
        tmp.path(),
        &[
            "launch",
            "--nproc",
            "2",
            "--",
            "pretrain",
            "synthetic",
            "--steps",
            "6",
            "--no-eval",
            "--out",
            "run",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("data-parallel: 2 processes"), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("run/summary.json")).expect("summary"))
            .expect("json");
    assert_eq!(summary["steps"], 6);
    assert_eq!(summary["world_size"], 2);
    let (one, job) =
        (summary["samples_per_sec"].as_f64().unwrap_or(0.0), summary["job_samples_per_sec"].as_f64());
    // serde_json's default float parsing may be one ulp off the written value.
    let job = job.unwrap_or(-1.0);
    assert!((job - 2.0 * one).abs() <= 1e-12 * job.abs(), "{job} vs 2 x {one}");
    // Rank 1 wrote nothing beside rank 0's run directory.
    let entries: Vec<_> = std::fs::read_dir(tmp.path()).expect("cwd").collect();
    assert_eq!(entries.len(), 1);
    let records = std::fs::read_to_string(tmp.path().join("run/metrics.jsonl")).expect("metrics");
    assert_eq!(records.lines().count(), 1, "{records}");
}

#[test]
fn a_failing_rank_fails_the_launch_by_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = ssl(tmp.path(), &["launch", "--nproc", "2", "--", "pretrain", "no-such-method"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("of 2 failed"), "{stderr}");
    let out = ssl(tmp.path(), &["launch", "--nproc", "0", "--", "methods"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--nproc"));
}

/// A 2-process run resumed from its step-4 checkpoint ends with the weights of the
/// uninterrupted 2-process run, byte for byte.
#[test]
fn a_two_process_run_resumes_bit_identically() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = tmp.path().join("c.toml");
    std::fs::write(&cfg, "[train]\ncheckpoint_every = 4\nkeep_last = 5\n").expect("config");
    let cfg = cfg.to_str().expect("utf-8 path");
    let launch = |extra: &[&str]| {
        let mut args = vec!["launch", "--nproc", "2", "--", "pretrain", "synthetic", "--config", cfg];
        args.extend(["--steps", "8", "--no-eval"]);
        args.extend(extra);
        let out = ssl(tmp.path(), &args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    launch(&["--out", "whole"]);
    launch(&["--out", "resumed", "--resume", "whole/checkpoints/step-00000004"]);
    let weights = |run: &str| {
        std::fs::read(tmp.path().join(run).join("checkpoints/step-00000008/model.safetensors"))
            .expect("weights")
    };
    assert!(weights("whole") == weights("resumed"), "the resumed run's weights differ");
}
