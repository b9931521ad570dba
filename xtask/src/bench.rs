//! `cargo xtask bench <suite>`: the benchmark suites, measured through the programs users run.
//!
//! - `throughput` trains every method of `ssl methods` for a fixed number of steps at its bench
//!   config (the method's default run: model, input size and batch of its embedded default
//!   dataset, with checkpoints off; [`bench_config`]) and reads the trainer's own timing from
//!   `summary.json`: steady samples/s and the median and p90 step time after a warm-up tenth,
//!   peak host memory.
//! - `data` runs each modality crate's data example (`vision_data`, `audio_data`, `text_data`):
//!   the input pipelines alone (image decode + two views, WAV read + log-mel, tokenisation), on
//!   one thread and on all.
//! - `quality` pretrains methods at a fixed budget on their embedded default sets and reports the
//!   evaluation of `summary.json` beside its random-init and raw-feature baselines.
//! - `micro` runs the criterion micro-benchmarks (`cargo bench --workspace`).
//!
//! Each suite prints a Markdown table and writes `results.json`, `results.md` and a PNG chart
//! into `target/bench/<suite>-<device>-<unix time>/` (or `--out`), with every run directory and
//! log, so a number can be traced back to the config that produced it.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::tasks::{self, CargoStep};
use crate::vs_pytorch;

/// The suites of `cargo xtask bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Suite {
    /// Training throughput of every method at its bench config.
    Throughput,
    /// The input pipelines alone.
    Data,
    /// Pretrain at a fixed budget, then probe, beside the baselines.
    Quality,
    /// `throughput`, `data` and `quality`, one after the other.
    All,
    /// The criterion micro-benchmarks of the hot kernels (`cargo bench --workspace`).
    Micro,
    /// Data-parallel training: one process against `ssl launch --nproc 2` (with synchronised
    /// BatchNorm on and off where the method has it), job throughput side by side.
    Dist,
}

impl Suite {
    fn name(self) -> &'static str {
        match self {
            Suite::Throughput => "throughput",
            Suite::Data => "data",
            Suite::Quality => "quality",
            Suite::All => "all",
            Suite::Micro => "micro",
            Suite::Dist => "dist",
        }
    }
}

/// What `cargo xtask bench` was asked for.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The suite to run.
    #[arg(value_enum)]
    pub suite: Suite,
    /// `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// A short version of each suite: a few minutes on 2 CPU cores in all.
    #[arg(long)]
    pub quick: bool,
    /// Also run the PyTorch reference implementations, interleaved with ours, for ratio columns.
    #[arg(long)]
    pub vs_pytorch: bool,
    /// The results folder (default: `target/bench/<suite>-<device>-<unix time>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Methods to run (comma-separated; default: every method of `ssl methods`, or one per
    /// modality with `--quick` for `quality`).
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    /// Extra arguments for `cargo bench` (`micro` only).
    #[arg(last = true, value_name = "CARGO_BENCH_ARGS")]
    pub args: Vec<String>,
}

/// Timed steps of `throughput` (the first tenth is the trainer's warm-up).
pub fn throughput_steps(quick: bool) -> u64 {
    if quick {
        10
    } else {
        40
    }
}

/// Methods `quality --quick` trains: one per modality.
pub const QUICK_QUALITY: [&str; 4] = ["simclr", "bert", "wav2vec2", "clip"];

/// Optimiser steps of `quality --quick` (the full suite uses each method's default budget).
pub const QUICK_QUALITY_STEPS: u64 = 40;

/// The bench config of `method`: its default run with checkpoints only at the end, no
/// progress bar, a record every 5 steps and, on CUDA, bf16 autocast.
pub fn bench_config(method: &str, device: &str, threads: Option<usize>) -> String {
    let mut cfg = format!(
        "# cargo xtask bench: the default run of `{method}`, checkpoints only at the end.\n\
         method = \"{method}\"\n[train]\ncheckpoint_every = 0\nlog_every = 5\nprogress = false\n"
    );
    if device.starts_with("cuda") {
        cfg.push_str("precision = \"bf16\"\n");
    }
    if let Some(t) = threads {
        let _ = writeln!(cfg, "threads = {t}");
    }
    cfg
}

/// The method names of `ssl methods` output (the first word of each line), without the
/// `synthetic` test method.
pub fn parse_methods(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|m| *m != "synthetic")
        .map(str::to_string)
        .collect()
}

/// One `throughput` row from a run's `summary.json` and `config.toml`.
pub fn throughput_row(method: &str, summary: &Value, config: &toml::Value) -> Value {
    let data = config.get("data");
    let int = |v: Option<&toml::Value>| v.and_then(toml::Value::as_integer);
    let image = int(data.and_then(|d| d.get("image_size")))
        .or_else(|| int(data.and_then(|d| d.get("transform").and_then(|t| t.get("size")))));
    let input = if let Some(s) = image {
        format!("{s}x{s} px")
    } else if let Some(l) = int(data.and_then(|d| d.get("block_len"))) {
        format!("{l} tokens")
    } else if let Some(c) = int(data.and_then(|d| d.get("crop").and_then(|c| c.get("crop_len")))) {
        format!("{c} samples")
    } else {
        "-".into()
    };
    json!({
        "method": method,
        "batch": int(data.and_then(|d| d.get("batch_size"))),
        "input": input,
        "samples_per_sec": summary["steady_samples_per_sec"],
        "step_time_median_s": summary["step_time_median_s"],
        "step_time_p90_s": summary["step_time_p90_s"],
        "peak_host_memory_bytes": summary["peak_host_memory_bytes"],
        "device": summary["device"],
        "steps": summary["steps"],
    })
}

fn num(v: &Value, digits: usize) -> String {
    v.as_f64().map_or("-".into(), |x| format!("{x:.digits$}"))
}

/// The Markdown table of `throughput` rows.
pub fn throughput_table(rows: &[Value]) -> String {
    let mut t = String::from(
        "| method | batch | input | samples/s | step median (ms) | step p90 (ms) | peak host memory (MiB) |\n\
         |---|---:|---|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let ms = |k: &str| r[k].as_f64().map_or("-".into(), |s| format!("{:.1}", s * 1e3));
        let mib =
            r["peak_host_memory_bytes"].as_f64().map_or("-".into(), |b| format!("{:.0}", b / 1048576.0));
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r["method"].as_str().unwrap_or("?"),
            r["batch"].as_i64().map_or("-".into(), |b| b.to_string()),
            r["input"].as_str().unwrap_or("-"),
            num(&r["samples_per_sec"], 1),
            ms("step_time_median_s"),
            ms("step_time_p90_s"),
            mib,
        );
    }
    t
}

/// The evaluation keys `quality` reports, by method family: (metric, our key, baselines).
pub fn quality_keys(method: &str) -> (&'static str, &'static str, Vec<&'static str>) {
    match method {
        "gpt" => ("perplexity (lower is better)", "perplexity", vec!["unigram_perplexity"]),
        "bert" => ("linear probe", "linear_probe_acc", vec!["random_init_linear_probe_acc"]),
        "wav2vec2" | "cpc" => (
            "linear probe",
            "linear_probe_acc",
            vec!["random_init_linear_probe_acc", "logmel_linear_probe_acc"],
        ),
        "clip" => ("zero-shot", "zero_shot_acc", vec!["zero_shot_chance"]),
        _ => (
            "linear probe",
            "linear_probe_acc",
            vec!["random_init_linear_probe_acc", "raw_input_linear_probe_acc"],
        ),
    }
}

/// One `quality` row from a run's `summary.json`.
pub fn quality_row(method: &str, summary: &Value) -> Value {
    let (metric, key, baselines) = quality_keys(method);
    let e = &summary["eval"];
    let base: serde_json::Map<String, Value> =
        baselines.iter().map(|b| (b.to_string(), e[*b].clone())).collect();
    json!({
        "method": method,
        "steps": summary["steps"],
        "metric": metric,
        "value": e[key],
        "knn_acc": e["knn_acc"],
        "baselines": base,
        "wall_seconds": summary["wall_seconds"],
    })
}

/// The Markdown table of `quality` rows.
pub fn quality_table(rows: &[Value]) -> String {
    let mut t =
        String::from("| method | steps | metric | ours | kNN | baselines |\n|---|---:|---|---:|---:|---|\n");
    for r in rows {
        let base: Vec<String> = r["baselines"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| format!("{k} {}", num(v, 3))).collect())
            .unwrap_or_default();
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} |",
            r["method"].as_str().unwrap_or("?"),
            r["steps"],
            r["metric"].as_str().unwrap_or("?"),
            num(&r["value"], 3),
            num(&r["knn_acc"], 3),
            base.join(", "),
        );
    }
    t
}

/// The Markdown table of `data` rows (`pipeline`, `unit`, `threads`, `per_sec`).
pub fn data_table(rows: &[Value]) -> String {
    let mut t = String::from("| pipeline | threads | throughput | per thread |\n|---|---:|---:|---:|\n");
    for r in rows {
        let threads = r["threads"].as_f64().unwrap_or(1.0).max(1.0);
        let unit = r["unit"].as_str().unwrap_or("items");
        let per = r["per_sec"].as_f64().unwrap_or(f64::NAN);
        let _ = writeln!(
            t,
            "| {} | {threads} | {per:.0} {unit}/s | {:.0} {unit}/s |",
            r["pipeline"].as_str().unwrap_or("?"),
            per / threads,
        );
    }
    t
}

/// Runs `cargo xtask bench`.
pub fn bench(repo: &Path, args: &BenchArgs) -> Result<()> {
    if args.suite == Suite::Micro {
        return tasks::setup_then(repo, &tasks::bench_step(&args.args));
    }
    if !args.args.is_empty() {
        bail!("arguments after `--` go to `cargo bench` and are for the `micro` suite only");
    }
    if !(args.device == "cpu" || args.device == "cuda" || args.device.starts_with("cuda:")) {
        bail!("--device must be cpu, cuda or cuda:N, not `{}`", args.device);
    }
    tasks::setup_step(repo)?;
    CargoStep::new("build", &["build", "--release", "-p", "ssl-cli", "--bin", "ssl"], &[]).run(repo)?;
    let suites: &[Suite] = match args.suite {
        Suite::All => &[Suite::Throughput, Suite::Data, Suite::Quality],
        ref s => std::slice::from_ref(s),
    };
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let device_tag = args.device.replace(':', "");
    let root = match &args.out {
        Some(o) => o.clone(),
        None => repo.join("target/bench").join(format!("{}-{device_tag}-{secs}", args.suite.name())),
    };
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let python = if args.vs_pytorch { vs_pytorch::find_python(repo) } else { None };
    let python = python.as_deref();
    let mut markdown = String::new();
    let mut all = serde_json::Map::new();
    for &suite in suites {
        let dir = if suites.len() > 1 { root.join(suite.name()) } else { root.clone() };
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let started = Instant::now();
        let (rows, table) = match suite {
            Suite::Throughput => {
                let rows = throughput(repo, &dir, args, python)?;
                let mut table = throughput_table(&rows);
                if rows.iter().any(|r| r.get("achieved_gflops").is_some()) {
                    let _ = write!(
                        table,
                        "\nModel FLOPs of the transformer methods (PaLM's count, see xtask/src/flops.rs; MFU against the same device's large-matmul rate):\n\n{}",
                        flops_table(&rows)
                    );
                }
                let compared: Vec<Value> = rows.iter().filter_map(|r| r.get("vs_pytorch").cloned()).collect();
                if !compared.is_empty() {
                    let _ = write!(
                        table,
                        "\nSide by side with PyTorch {} (the model step alone: one fixed batch, {} intra-op threads, A B rounds, medians):\n\n{}",
                        crate::libtorch::REQUIRED,
                        compared[0]["threads"],
                        vs_pytorch::table(&compared, "method", "samples/s")
                    );
                    let bars: Vec<(String, f64)> = compared
                        .iter()
                        .map(|r| {
                            (
                                r["method"].as_str().unwrap_or("?").to_string(),
                                r["ratio"].as_f64().unwrap_or(0.0),
                            )
                        })
                        .collect();
                    ssl_plot::bar_chart(
                        &dir.join("vs_pytorch.png"),
                        "ours / PyTorch, model step",
                        "ratio of samples/s",
                        &bars,
                    )?;
                }
                let bars: Vec<(String, f64)> = rows
                    .iter()
                    .map(|r| {
                        (
                            r["method"].as_str().unwrap_or("?").to_string(),
                            r["samples_per_sec"].as_f64().unwrap_or(0.0),
                        )
                    })
                    .collect();
                let title = format!("training throughput ({})", args.device);
                ssl_plot::bar_chart(
                    &dir.join("throughput.png"),
                    &title,
                    "samples / s (after warm-up)",
                    &bars,
                )?;
                (rows, table)
            }
            Suite::Data => {
                let rows = data(repo, &dir, args, python)?;
                let bars: Vec<(String, f64)> = rows
                    .iter()
                    .map(|r| {
                        let label = format!("{} x{}", r["pipeline"].as_str().unwrap_or("?"), r["threads"]);
                        let per = r["per_sec"].as_f64().unwrap_or(0.0)
                            / r["threads"].as_f64().unwrap_or(1.0).max(1.0);
                        (label, per)
                    })
                    .collect();
                ssl_plot::bar_chart(&dir.join("data.png"), "input pipelines", "items / s per thread", &bars)?;
                let mut table = data_table(&rows);
                let compared: Vec<Value> = rows.iter().filter_map(|r| r.get("vs_pytorch").cloned()).collect();
                if !compared.is_empty() {
                    let _ = write!(
                        table,
                        "\nSide by side with torchvision (PIL decode + torchvision.transforms.v2 with SimCLR's parameters; A B rounds, medians):\n\n{}",
                        vs_pytorch::table(&compared, "pipeline", "images/s")
                    );
                }
                (rows, table)
            }
            Suite::Quality => {
                let rows = quality(repo, &dir, args)?;
                let bars: Vec<(String, f64)> = rows
                    .iter()
                    .filter(|r| r["metric"] != "perplexity (lower is better)")
                    .map(|r| {
                        (r["method"].as_str().unwrap_or("?").to_string(), r["value"].as_f64().unwrap_or(0.0))
                    })
                    .collect();
                if !bars.is_empty() {
                    ssl_plot::bar_chart(
                        &dir.join("quality.png"),
                        "quality (probe / zero-shot accuracy)",
                        "accuracy",
                        &bars,
                    )?;
                }
                let table = quality_table(&rows);
                (rows, table)
            }
            Suite::Dist => {
                let rows = dist(repo, &dir, args)?;
                let table = dist_table(&rows);
                (rows, table)
            }
            Suite::All | Suite::Micro => unreachable!("expanded above"),
        };
        let header = format!(
            "## {} ({}{}, {:.0} s)\n\n",
            suite.name(),
            args.device,
            if args.quick { ", quick" } else { "" },
            started.elapsed().as_secs_f64()
        );
        let md = format!("{header}{table}\n");
        fs::write(dir.join("results.md"), &md).with_context(|| format!("writing {}", dir.display()))?;
        let doc = json!({ "suite": suite.name(), "device": args.device, "quick": args.quick, "rows": rows });
        fs::write(dir.join("results.json"), serde_json::to_vec_pretty(&doc)?)?;
        println!("\n{md}");
        markdown.push_str(&md);
        all.insert(suite.name().into(), doc);
    }
    if suites.len() > 1 {
        fs::write(root.join("results.md"), &markdown)?;
        fs::write(root.join("results.json"), serde_json::to_vec_pretty(&Value::Object(all))?)?;
    }
    println!("bench: results in {}", root.display());
    Ok(())
}

/// The release `ssl` binary.
fn ssl_binary(repo: &Path) -> PathBuf {
    repo.join("target/release/ssl")
}

/// Runs the `ssl` binary with `args`, its output to `log`; fails naming the log.
fn run_ssl(repo: &Path, args: &[&str], log: &Path) -> Result<()> {
    let file = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let status = Command::new(ssl_binary(repo))
        .args(args)
        .stdout(file.try_clone()?)
        .stderr(file)
        .current_dir(repo)
        .status()
        .context("starting target/release/ssl")?;
    if !status.success() {
        bail!("`ssl {}` failed ({status}); its output is in {}", args.join(" "), log.display());
    }
    Ok(())
}

fn methods(repo: &Path, args: &BenchArgs, quick_default: Option<&[&str]>) -> Result<Vec<String>> {
    if !args.methods.is_empty() {
        return Ok(args.methods.clone());
    }
    if let Some(quick) = quick_default.filter(|_| args.quick) {
        return Ok(quick.iter().map(|m| m.to_string()).collect());
    }
    let out = Command::new(ssl_binary(repo)).arg("methods").output().context("running `ssl methods`")?;
    Ok(parse_methods(&String::from_utf8_lossy(&out.stdout)))
}

/// One bench training run: `ssl [LAUNCHER...] pretrain METHOD --config C --steps N --no-eval`.
struct BenchRun<'a> {
    method: &'a str,
    config: &'a Path,
    steps: &'a str,
    run: &'a Path,
    device: &'a str,
}

impl BenchRun<'_> {
    /// Trains (output to `log`), then returns the run's `summary.json` and resolved
    /// `config.toml`; the checkpoint is removed (the config and summary are kept).
    fn pretrain(&self, repo: &Path, launcher: &[&str], log: &Path) -> Result<(Value, toml::Value)> {
        let (cfg_s, run_s) = (self.config.display().to_string(), self.run.display().to_string());
        let mut argv: Vec<&str> = launcher.to_vec();
        argv.extend([
            "pretrain",
            self.method,
            "--config",
            &cfg_s,
            "--steps",
            self.steps,
            "--no-eval",
            "--force",
            "--out",
            &run_s,
            "--device",
            self.device,
        ]);
        run_ssl(repo, &argv, log)?;
        let summary = read_json(&self.run.join("summary.json"))?;
        let config_path = self.run.join("config.toml");
        let config: toml::Value = fs::read_to_string(&config_path)
            .with_context(|| format!("reading {}", config_path.display()))?
            .parse()
            .with_context(|| format!("parsing {}", config_path.display()))?;
        let _ = fs::remove_dir_all(self.run.join("checkpoints"));
        Ok((summary, config))
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn throughput(repo: &Path, dir: &Path, args: &BenchArgs, python: Option<&str>) -> Result<Vec<Value>> {
    let steps = throughput_steps(args.quick).to_string();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rows = Vec::new();
    for method in methods(repo, args, None)? {
        let cfg = dir.join(format!("{method}.toml"));
        fs::write(&cfg, bench_config(&method, &args.device, None))?;
        let run = dir.join("runs").join(&method);
        let log = dir.join(format!("{method}.log"));
        println!("bench throughput: {method} ({steps} steps)");
        let bench =
            BenchRun { method: &method, config: &cfg, steps: &steps, run: &run, device: &args.device };
        let (summary, config) = bench.pretrain(repo, &[], &log)?;
        let mut row = throughput_row(&method, &summary, &config);
        if let Some(flops) = crate::flops::training_flops_per_sample(&method, &config) {
            row["model_gflops_per_sample"] = json!(flops / 1e9);
            if let Some(rate) = row["samples_per_sec"].as_f64() {
                row["achieved_gflops"] = json!(flops * rate / 1e9);
            }
        }
        if let Some(python) = python {
            let job = vs_pytorch::Job {
                method: &method,
                dir,
                steps: throughput_steps(args.quick),
                device: &args.device,
                threads,
                rounds: vs_pytorch::rounds(args.quick),
            };
            let config = bench_config(&method, &args.device, Some(threads));
            let mut vs = vs_pytorch::throughput_method(repo, python, &job, &config, |argv, log| {
                run_ssl(repo, argv, log)
            })?;
            vs["threads"] = json!(threads);
            row["vs_pytorch"] = vs;
        }
        rows.push(row);
    }
    if rows.iter().any(|r| r.get("achieved_gflops").is_some()) {
        let peak = matmul_peak(repo, dir, &args.device, threads)?;
        for row in &mut rows {
            if let Some(achieved) = row["achieved_gflops"].as_f64() {
                row["peak_gflops"] = json!(peak);
                row["mfu"] = json!(achieved / peak);
            }
        }
    }
    Ok(rows)
}

/// The methods of the `dist` suite: the two whose contrastive loss gathers embeddings across
/// processes and whose recipe synchronises BatchNorm (`--quick`: SimCLR alone).
pub const DIST_METHODS: [&str; 2] = ["simclr", "moco-v3"];

/// `dist`: each method for the throughput suite's steps in one process, then in two
/// (`ssl launch --nproc 2`, the same per-process batch, so twice the global batch), with
/// synchronised BatchNorm on and off when the method's recipe has it on. Rows carry the job's
/// samples/s (rank 0's rate times the processes) and the ratio to the one-process run.
fn dist(repo: &Path, dir: &Path, args: &BenchArgs) -> Result<Vec<Value>> {
    let steps = throughput_steps(args.quick).to_string();
    let methods: Vec<String> = if !args.methods.is_empty() {
        args.methods.clone()
    } else if args.quick {
        vec![DIST_METHODS[0].to_string()]
    } else {
        DIST_METHODS.iter().map(|m| m.to_string()).collect()
    };
    let mut rows = Vec::new();
    for method in methods {
        let (summary, config) = dist_run(repo, dir, args, &method, &steps, 1, None)?;
        let single_rate = job_rate(&summary);
        let synced = config.get("train").and_then(|t| t.get("sync_batchnorm")).and_then(toml::Value::as_bool);
        let two: &[Option<bool>] = if synced == Some(true) { &[Some(true), Some(false)] } else { &[None] };
        rows.push(dist_row(&method, 1, None, &summary, &config, single_rate));
        for &sync in two {
            let (summary, config) = dist_run(repo, dir, args, &method, &steps, 2, sync)?;
            rows.push(dist_row(&method, 2, sync, &summary, &config, single_rate));
        }
    }
    Ok(rows)
}

/// One `dist` run: `nproc` processes, `train.sync_batchnorm` set when `sync` says so.
fn dist_run(
    repo: &Path,
    dir: &Path,
    args: &BenchArgs,
    method: &str,
    steps: &str,
    nproc: usize,
    sync: Option<bool>,
) -> Result<(Value, toml::Value)> {
    let tag = match sync {
        None => format!("{nproc}proc"),
        Some(on) => format!("{nproc}proc-syncbn-{}", if on { "on" } else { "off" }),
    };
    let mut cfg_text = bench_config(method, &args.device, None);
    if let Some(on) = sync {
        let _ = writeln!(cfg_text, "sync_batchnorm = {on}");
    }
    let cfg = dir.join(format!("{method}-{tag}.toml"));
    fs::write(&cfg, cfg_text)?;
    let run = dir.join("runs").join(format!("{method}-{tag}"));
    println!("bench dist: {method}, {tag} ({steps} steps)");
    let nproc_s = nproc.to_string();
    let launcher: &[&str] = if nproc > 1 { &["launch", "--nproc", &nproc_s, "--"] } else { &[] };
    let bench = BenchRun { method, config: &cfg, steps, run: &run, device: &args.device };
    bench.pretrain(repo, launcher, &dir.join(format!("{method}-{tag}.log")))
}

/// The job's samples/s: rank 0's steady rate times the processes.
fn job_rate(summary: &Value) -> Option<f64> {
    let world = summary["world_size"].as_f64().unwrap_or(1.0);
    summary["steady_samples_per_sec"].as_f64().map(|r| r * world)
}

fn dist_row(
    method: &str,
    nproc: usize,
    sync: Option<bool>,
    summary: &Value,
    config: &toml::Value,
    single_rate: Option<f64>,
) -> Value {
    let rate = job_rate(summary);
    json!({
        "method": method,
        "processes": nproc,
        "sync_batchnorm": sync,
        "batch_per_process": config.get("data").and_then(|d| d.get("batch_size")).and_then(toml::Value::as_integer),
        "job_samples_per_sec": rate,
        "vs_one_process": rate.zip(single_rate).map(|(r, s)| r / s),
        "final_loss": summary["final_loss"],
        "device": summary["device"],
    })
}

/// The Markdown table of `dist` rows.
pub fn dist_table(rows: &[Value]) -> String {
    let mut t = String::from(
        "| method | processes | batch per process | sync BatchNorm | job samples/s | vs 1 process | final loss |\n|---|---:|---:|---|---:|---:|---:|\n",
    );
    for r in rows {
        let sync = match r["sync_batchnorm"].as_bool() {
            Some(true) => "on",
            Some(false) => "off",
            None => "default",
        };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {sync} | {} | {} | {} |",
            r["method"].as_str().unwrap_or("?"),
            r["processes"],
            r["batch_per_process"],
            num(&r["job_samples_per_sec"], 1),
            num(&r["vs_one_process"], 2),
            num(&r["final_loss"], 4),
        );
    }
    t
}

/// The device's matmul peak in GFLOP/s (the `matmul_peak` example: bf16 on CUDA, as the
/// throughput runs there, fp32 on CPU).
fn matmul_peak(repo: &Path, dir: &Path, device: &str, threads: usize) -> Result<f64> {
    let threads = threads.to_string();
    let mut extra = vec!["--device", device, "--threads", &threads];
    if device.starts_with("cuda") {
        extra.push("--bf16");
    }
    println!("bench throughput: matmul peak ({device})");
    let lines = run_example(repo, "ssl-core", "matmul_peak", &extra, &dir.join("matmul_peak.log"))?;
    lines.first().and_then(|l| l["gflops"].as_f64()).context("the matmul_peak example printed no rate")
}

/// The Markdown table of the transformer methods' model FLOPs (rows with `achieved_gflops`).
pub fn flops_table(rows: &[Value]) -> String {
    let mut t = String::from(
        "| method | model GFLOP / sample | achieved GFLOP/s | matmul peak GFLOP/s | MFU |\n|---|---:|---:|---:|---:|\n",
    );
    for r in rows.iter().filter(|r| r.get("achieved_gflops").is_some()) {
        let mfu = r["mfu"].as_f64().map_or("-".into(), |m| format!("{:.1}%", 100.0 * m));
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {mfu} |",
            r["method"].as_str().unwrap_or("?"),
            num(&r["model_gflops_per_sample"], 3),
            num(&r["achieved_gflops"], 1),
            num(&r["peak_gflops"], 1),
        );
    }
    t
}

fn quality(repo: &Path, dir: &Path, args: &BenchArgs) -> Result<Vec<Value>> {
    let mut rows = Vec::new();
    for method in methods(repo, args, Some(&QUICK_QUALITY))? {
        let run = dir.join("runs").join(&method);
        let log = dir.join(format!("{method}.log"));
        let run_s = run.display().to_string();
        let steps = QUICK_QUALITY_STEPS.to_string();
        let mut argv = vec!["pretrain", &method, "--force", "--out", &run_s, "--device", &args.device];
        if args.quick {
            argv.extend(["--steps", &steps]);
        }
        println!("bench quality: {method}{}", if args.quick { " (quick)" } else { " (default budget)" });
        run_ssl(repo, &argv, &log)?;
        rows.push(quality_row(&method, &read_json(&run.join("summary.json"))?));
        let _ = fs::remove_dir_all(run.join("checkpoints"));
    }
    Ok(rows)
}

/// The crates with a data-pipeline example, and its name, in suite order.
pub const DATA_EXAMPLES: [(&str, &str); 3] =
    [("ssl-vision", "vision_data"), ("ssl-audio", "audio_data"), ("ssl-text", "text_data")];

/// Runs a crate's data example with `extra` arguments after `--json`; returns its JSON lines.
fn run_example(repo: &Path, krate: &str, example: &str, extra: &[&str], log: &Path) -> Result<Vec<Value>> {
    let mut argv = vec!["run", "--release", "-q", "-p", krate, "--example", example, "--", "--json"];
    argv.extend_from_slice(extra);
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(&argv)
        .current_dir(repo)
        .output()
        .with_context(|| format!("running the {example} example of {krate}"))?;
    fs::write(log, [&out.stdout[..], &out.stderr[..]].concat())?;
    if !out.status.success() {
        bail!("the {example} example of {krate} failed ({}); see {}", out.status, log.display());
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|line| serde_json::from_str(line).with_context(|| format!("{krate} printed `{line}`")))
        .collect()
}

fn data(repo: &Path, dir: &Path, args: &BenchArgs, python: Option<&str>) -> Result<Vec<Value>> {
    let quick: &[&str] = if args.quick { &["--quick"] } else { &[] };
    let mut rows = Vec::new();
    for (krate, example) in DATA_EXAMPLES {
        println!("bench data: {krate}");
        rows.extend(run_example(repo, krate, example, quick, &dir.join(format!("{krate}.log")))?);
    }
    if let Some(python) = python {
        let vs = vs_pytorch::data_images(repo, python, dir, args.quick, |images, round| {
            let images = images.display().to_string();
            let mut extra = vec!["--images", &images, "--one-thread"];
            extra.extend_from_slice(quick);
            let log = dir.join(format!("ssl-vision-{round}.log"));
            let lines = run_example(repo, "ssl-vision", "vision_data", &extra, &log)?;
            lines
                .iter()
                .find(|r| r["threads"] == 1)
                .and_then(|r| r["per_sec"].as_f64())
                .with_context(|| format!("no one-thread line in {}", log.display()))
        })?;
        if let Some(row) = rows.first_mut() {
            row["vs_pytorch"] = vs;
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_come_from_ssl_methods_without_synthetic() {
        let listing = "simclr       SimCLR\nsynthetic    test\nbert         BERT\n\n";
        assert_eq!(parse_methods(listing), ["simclr", "bert"]);
    }

    #[test]
    fn dist_rows_make_one_table_line_each() {
        let rows = [
            json!({"method": "simclr", "processes": 1, "batch_per_process": 64, "sync_batchnorm": null,
                   "job_samples_per_sec": 100.0, "vs_one_process": 1.0, "final_loss": 5.1}),
            json!({"method": "simclr", "processes": 2, "batch_per_process": 64, "sync_batchnorm": false,
                   "job_samples_per_sec": 150.0, "vs_one_process": 1.5, "final_loss": 5.2}),
        ];
        let t = dist_table(&rows);
        assert_eq!(t.lines().count(), 4, "{t}");
        assert!(t.contains("| simclr | 1 | 64 | default | 100.0 | 1.00 | 5.1000 |"), "{t}");
        assert!(t.contains("| simclr | 2 | 64 | off | 150.0 | 1.50 | 5.2000 |"), "{t}");
    }

    #[test]
    fn bench_configs_are_valid_toml_and_use_bf16_on_cuda_only() {
        let cpu: toml::Value = bench_config("mae", "cpu", None).parse().expect("toml");
        assert_eq!(cpu["method"].as_str(), Some("mae"));
        assert_eq!(cpu["train"]["checkpoint_every"].as_integer(), Some(0));
        assert!(cpu["train"].get("precision").is_none());
        let cuda: toml::Value = bench_config("mae", "cuda:0", Some(4)).parse().expect("toml");
        assert_eq!(cuda["train"]["precision"].as_str(), Some("bf16"));
        assert_eq!(cuda["train"]["threads"].as_integer(), Some(4));
    }

    #[test]
    fn throughput_rows_read_the_summary_and_the_config() {
        let summary = json!({
            "steady_samples_per_sec": 512.0, "step_time_median_s": 0.25, "step_time_p90_s": 0.3,
            "peak_host_memory_bytes": 104857600u64, "device": "cpu", "steps": 40,
        });
        let vision: toml::Value = "[data]\nimage_size = 32\nbatch_size = 128\n".parse().unwrap();
        let audio: toml::Value = "[data]\nbatch_size = 16\n[data.crop]\ncrop_len = 16000\n".parse().unwrap();
        let row = throughput_row("simclr", &summary, &vision);
        assert_eq!((row["batch"].as_i64(), row["input"].as_str()), (Some(128), Some("32x32 px")));
        assert_eq!(throughput_row("cpc", &summary, &audio)["input"], "16000 samples");
        let clip: toml::Value = "[data]\nbatch_size = 128\n[data.transform]\nsize = 32\n".parse().unwrap();
        assert_eq!(throughput_row("clip", &summary, &clip)["input"], "32x32 px");
        let table = throughput_table(&[row]);
        assert!(table.contains("| simclr | 128 | 32x32 px | 512.0 | 250.0 | 300.0 | 100 |"), "{table}");
    }

    #[test]
    fn quality_rows_pick_each_family_s_metric() {
        let s = json!({"steps": 5, "eval": {"linear_probe_acc": 0.5, "knn_acc": 0.4,
            "random_init_linear_probe_acc": 0.2, "raw_input_linear_probe_acc": 0.1}});
        let row = quality_row("simclr", &s);
        assert_eq!(row["value"], 0.5);
        assert_eq!(row["baselines"]["random_init_linear_probe_acc"], 0.2);
        let table = quality_table(&[row]);
        assert!(table.contains("| simclr | 5 | linear probe | 0.500 | 0.400 |"), "{table}");
        assert_eq!(quality_keys("gpt").1, "perplexity");
        assert_eq!(quality_keys("clip").1, "zero_shot_acc");
    }

    #[test]
    fn the_flops_table_lists_transformer_rows_only() {
        let rows = [
            json!({"method": "gpt", "model_gflops_per_sample": 0.25, "achieved_gflops": 50.0, "peak_gflops": 200.0, "mfu": 0.25}),
            json!({"method": "simclr"}),
        ];
        let t = flops_table(&rows);
        assert!(t.contains("| gpt | 0.250 | 50.0 | 200.0 | 25.0% |"), "{t}");
        assert!(!t.contains("simclr"));
    }

    #[test]
    fn data_rows_report_per_thread_throughput() {
        let rows = [json!({"pipeline": "tokenise", "unit": "tokens", "threads": 2, "per_sec": 1000.0})];
        assert!(data_table(&rows).contains("| tokenise | 2 | 1000 tokens/s | 500 tokens/s |"));
    }
}
