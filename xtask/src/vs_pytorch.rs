//! `cargo xtask bench ... --vs-pytorch`: the PyTorch reference implementations in
//! `bench/pytorch/`, run interleaved with ours (A B A B) on the same machine.
//!
//! - `throughput`: for every method, `ssl pretrain --repeat-batch` (ours) and
//!   `bench/pytorch/ssl_bench.py run` (the reference, built from our run's resolved
//!   `config.toml`) alternate; both train one fixed batch with the same architecture,
//!   optimiser, batch, precision and intra-op thread count, so only the model step is compared.
//!   The ratio is ours over PyTorch of the median samples/s across rounds.
//! - `data`: the vision example's JPEGs go through `bench/pytorch/data_images.py`
//!   (PIL decode + torchvision transforms with SimCLR's parameters), one thread, interleaved
//!   with our example.
//!
//! The reference needs a Python with torch 2.11 (`SSL_BENCH_PYTHON`, `.venv/bin/python` in the
//! repository, then `python3` and `python`); without one the comparison is skipped with a
//! line saying how to install it.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::python::{choose_python_torch, probe_python};

/// The install line printed when no Python with torch 2.11 is found.
pub const INSTALL_HINT: &str =
    "python3 -m venv .venv && .venv/bin/pip install torch==2.11.0 torchvision==0.26.0";

/// Interpreters tried for the reference, in order.
pub fn candidates(repo: &Path) -> Vec<String> {
    let mut c = Vec::new();
    if let Some(p) = std::env::var_os("SSL_BENCH_PYTHON") {
        c.push(p.to_string_lossy().into_owned());
    }
    let venv = repo.join(".venv/bin/python");
    if venv.exists() {
        c.push(venv.display().to_string());
    }
    c.extend(crate::python::PYTHONS.iter().map(|p| p.to_string()));
    c
}

/// The first interpreter with torch 2.11, or `None` after printing why and how to get one.
pub fn find_python(repo: &Path) -> Option<String> {
    let names = candidates(repo);
    let probes: Vec<(&str, crate::python::Probe)> =
        names.iter().map(|p| (p.as_str(), probe_python(p))).collect();
    let (found, notes) = choose_python_torch(&probes);
    match found {
        Some(p) => {
            println!("bench --vs-pytorch: using {} (torch {})", p.python, crate::libtorch::REQUIRED);
            Some(p.python)
        }
        None => {
            println!(
                "bench --vs-pytorch: no Python with torch {} found; skipping the comparison.",
                crate::libtorch::REQUIRED
            );
            for n in notes {
                println!("  {n}");
            }
            println!("  to compare, install it: `{INSTALL_HINT}` (or point SSL_BENCH_PYTHON at one), then run this again.");
            None
        }
    }
}

/// Rounds of A B per method.
pub fn rounds(quick: bool) -> usize {
    if quick {
        2
    } else {
        3
    }
}

/// The median of `xs` (the mean of the middle two for an even count); NaN when empty.
pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One comparison row from the rounds' samples/s and the two parameter counts.
pub fn comparison(
    method: &str,
    ours: &[f64],
    reference: &[f64],
    params: (Option<u64>, Option<u64>),
) -> Value {
    let (a, b) = (median(ours), median(reference));
    json!({
        "method": method,
        "ours_samples_per_sec": a,
        "pytorch_samples_per_sec": b,
        "ratio": if b > 0.0 { a / b } else { f64::NAN },
        "ours_rounds": ours,
        "pytorch_rounds": reference,
        "ours_parameters": params.0,
        "pytorch_parameters": params.1,
    })
}

/// The Markdown table of comparison rows: `what` names the first column, `unit` the rates
/// (`samples/s`); the parameter column (with a mismatch called out) only where rows have counts.
pub fn table(rows: &[Value], what: &str, unit: &str) -> String {
    let with_params = rows.iter().any(|r| r["ours_parameters"].is_u64());
    let mut t = format!(
        "| {what} |{} ours ({unit}) | PyTorch ({unit}) | ours / PyTorch |\n",
        if with_params { " parameters |" } else { "" }
    );
    t.push_str(if with_params { "|---|---:|---:|---:|---:|\n" } else { "|---|---:|---:|---:|\n" });
    for r in rows {
        let params = match (r["ours_parameters"].as_u64(), r["pytorch_parameters"].as_u64()) {
            _ if !with_params => String::new(),
            (Some(a), Some(b)) if a == b => format!(" {a} |"),
            (Some(a), Some(b)) => format!(" {a} vs {b} (differ) |"),
            _ => " - |".into(),
        };
        let f = |k: &str| r[k].as_f64().map_or("-".into(), |x| format!("{x:.1}"));
        let ratio = r["ratio"].as_f64().map_or("-".into(), |x| format!("{x:.2}x"));
        let _ = writeln!(
            t,
            "| {} |{params} {} | {} | {ratio} |",
            r["method"].as_str().unwrap_or("?"),
            f("ours_samples_per_sec"),
            f("pytorch_samples_per_sec")
        );
    }
    t
}

fn read_json(path: &Path) -> Result<Value> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Runs `python bench/pytorch/<script> <argv> --json <out>`, its output to `log`; returns the
/// JSON it wrote. `what` names it in errors.
fn python_json(
    repo: &Path,
    python: &str,
    script: &str,
    argv: &[String],
    out: &Path,
    log: &Path,
    what: &str,
) -> Result<Value> {
    let file = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let status = Command::new(python)
        .arg(repo.join("bench/pytorch").join(script))
        .args(argv)
        .arg("--json")
        .arg(out)
        .stdout(file.try_clone()?)
        .stderr(file)
        .current_dir(repo)
        .status()
        .with_context(|| format!("starting {python}"))?;
    if !status.success() {
        bail!("{what} failed ({status}); its output is in {}", log.display());
    }
    read_json(out)
}

/// What one method's comparison needs from the bench.
pub struct Job<'a> {
    /// The method.
    pub method: &'a str,
    /// The folder for configs, runs and logs.
    pub dir: &'a Path,
    /// Optimiser steps per run.
    pub steps: u64,
    /// `cpu`, `cuda`, `cuda:N`.
    pub device: &'a str,
    /// Intra-op threads on both sides.
    pub threads: usize,
    /// A B rounds.
    pub rounds: usize,
}

/// Interleaves ours (`ssl pretrain --repeat-batch`, through `run_ours(argv, log)`) and the
/// reference for one method; returns the comparison row.
pub fn throughput_method(
    repo: &Path,
    python: &str,
    job: &Job<'_>,
    config_toml: &str,
    run_ours: impl Fn(&[&str], &Path) -> Result<()>,
) -> Result<Value> {
    let Job { method, dir, steps, device, threads, rounds } = *job;
    let dir = dir.join("vs-pytorch");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let cfg = dir.join(format!("{method}.toml"));
    fs::write(&cfg, config_toml)?;
    let (mut ours, mut reference, mut params) = (Vec::new(), Vec::new(), (None, None));
    for round in 0..rounds {
        let run = dir.join("runs").join(format!("{method}-{round}"));
        let (cfg_s, run_s, steps_s) =
            (cfg.display().to_string(), run.display().to_string(), steps.to_string());
        let argv = [
            "pretrain",
            method,
            "--config",
            &cfg_s,
            "--steps",
            &steps_s,
            "--no-eval",
            "--force",
            "--repeat-batch",
            "--out",
            &run_s,
            "--device",
            device,
        ];
        println!("bench throughput --vs-pytorch: {method} round {} (ours)", round + 1);
        run_ours(&argv, &dir.join(format!("{method}-{round}.log")))?;
        let summary = read_json(&run.join("summary.json"))?;
        let _ = fs::remove_dir_all(run.join("checkpoints"));
        ours.push(summary["steady_samples_per_sec"].as_f64().unwrap_or(f64::NAN));
        params.0 = summary["parameters"].as_u64();

        println!("bench throughput --vs-pytorch: {method} round {} (PyTorch)", round + 1);
        let argv: Vec<String> = vec![
            "run".into(),
            method.into(),
            "--config".into(),
            run.join("config.toml").display().to_string(),
            "--steps".into(),
            steps.to_string(),
            "--threads".into(),
            threads.to_string(),
            "--device".into(),
            device.into(),
        ];
        let out = dir.join(format!("{method}-{round}-pytorch.json"));
        let log = dir.join(format!("{method}-{round}-pytorch.log"));
        let r = python_json(repo, python, "ssl_bench.py", &argv, &out, &log, "the PyTorch reference")?;
        reference.push(r["samples_per_sec"].as_f64().unwrap_or(f64::NAN));
        params.1 = r["parameters"].as_u64();
    }
    Ok(comparison(method, &ours, &reference, params))
}

/// The data comparison: our vision example and the torchvision pipeline on the same JPEGs,
/// one thread each, interleaved. `run_ours(images, round)` runs our example on the folder and
/// returns its one-thread images/s.
pub fn data_images(
    repo: &Path,
    python: &str,
    dir: &Path,
    quick: bool,
    run_ours: impl Fn(&Path, usize) -> Result<f64>,
) -> Result<Value> {
    let images: PathBuf = dir.join("images");
    let (mut ours, mut reference) = (Vec::new(), Vec::new());
    for round in 0..rounds(quick) {
        println!("bench data --vs-pytorch: images round {} (ours)", round + 1);
        ours.push(run_ours(&images, round)?);
        println!("bench data --vs-pytorch: images round {} (torchvision)", round + 1);
        let out = dir.join(format!("torchvision-{round}.json"));
        let log = dir.join(format!("torchvision-{round}.log"));
        let argv = [images.display().to_string()];
        let r = python_json(repo, python, "data_images.py", &argv, &out, &log, "the torchvision pipeline")?;
        reference.push(r["per_sec"].as_f64().unwrap_or(f64::NAN));
    }
    Ok(comparison("image decode + 2 SimCLR views, 1 thread", &ours, &reference, (None, None)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_skip_non_finite_values() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, f64::NAN, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn comparison_rows_give_the_ratio_of_medians_and_flag_parameter_mismatches() {
        let row = comparison("simclr", &[110.0, 90.0, 100.0], &[50.0, 50.0, 60.0], (Some(10), Some(10)));
        assert_eq!(row["ratio"], 2.0);
        let t = table(&[row], "method", "samples/s");
        assert!(t.contains("| simclr | 10 | 100.0 | 50.0 | 2.00x |"), "{t}");
        let odd = comparison("mae", &[1.0], &[1.0], (Some(10), Some(12)));
        assert!(table(&[odd], "method", "samples/s").contains("10 vs 12 (differ)"));
        let data = comparison("decode", &[3.0], &[2.0], (None, None));
        let t = table(&[data], "pipeline", "images/s");
        assert!(
            t.contains("| pipeline | ours (images/s) |") && t.contains("| decode | 3.0 | 2.0 | 1.50x |"),
            "{t}"
        );
    }

    #[test]
    fn an_explicit_interpreter_comes_first() {
        std::env::set_var("SSL_BENCH_PYTHON", "/opt/py/bin/python");
        let c = candidates(Path::new("/nonexistent"));
        std::env::remove_var("SSL_BENCH_PYTHON");
        assert_eq!(c[0], "/opt/py/bin/python");
        assert!(c.contains(&"python3".to_string()));
    }
}
