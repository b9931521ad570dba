//! `cargo xtask reliability`: exact resume under hard kills, a memory soak, fuzzing.
//!
//! For one method of each modality (`xtask/reliability/<method>.toml`: tiny, deterministic CPU
//! runs with a checkpoint every 2 steps), an uninterrupted reference run is compared with runs
//! that are killed with SIGKILL and resumed with `--resume`:
//! - the first kill of each method lands while a checkpoint is being written, after at least
//!   one checkpoint is complete (the harness polls for the checkpoint's temporary folder and
//!   kills the moment it appears), so the previous checkpoint must survive it;
//! - the others land at a pseudo-random step (seeded by the trial; the harness watches
//!   `metrics.jsonl`, which gets a record every step).
//!
//! After the kill the run is resumed from its newest checkpoint (which must load: checksums
//! verified; a kill before the first checkpoint restarts from scratch), and the final weights
//! (`model.safetensors`, byte for byte) and `metrics.jsonl` (every field but the measurements
//! of the machine, `samples_per_sec` and `host_memory_mib`) must equal the reference's.
//!
//! The soak trains the tiny `synthetic` model for thousands of steps (3 000 with `--quick`,
//! 20 000 otherwise; `xtask/reliability/soak.toml`) and reads the resident memory every step
//! record carries (`host_memory_mib`): the median of the last fifth of the records may exceed
//! that of the second fifth (after the allocator's warm-up) by at most [`SOAK_BOUND_MIB`].
//!
//! Without `--quick`, the fuzz targets then run ([`crate::fuzz`], `--fuzz-seconds` each).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// The methods checked, one per modality.
pub const METHODS: [&str; 4] = ["simclr", "bert", "wav2vec2", "clip"];

/// Options of `cargo xtask reliability`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReliabilityArgs {
    /// Kills per method (the first during a checkpoint write).
    #[arg(long, default_value_t = 5)]
    pub kills: usize,
    /// One kill during a checkpoint write and one at random, per method (CI).
    #[arg(long)]
    pub quick: bool,
    /// Methods to check (comma-separated; default: one per modality).
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    /// Seconds per fuzz target (not with --quick; 0 skips fuzzing).
    #[arg(long, default_value_t = 60)]
    pub fuzz_seconds: u64,
}

/// How much the resident memory may grow over the soak, in MiB.
pub const SOAK_BOUND_MIB: f64 = 16.0;

/// Soak steps.
pub fn soak_steps(quick: bool) -> u64 {
    if quick {
        3_000
    } else {
        20_000
    }
}

/// The growth of resident memory over a soak, in MiB: the median of the last fifth of the
/// samples minus the median of the second fifth. `None` with fewer than 10 samples.
pub fn memory_growth_mib(samples: &[f64]) -> Option<f64> {
    if samples.len() < 10 {
        return None;
    }
    let fifth = samples.len() / 5;
    let median = |xs: &[f64]| {
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Some(median(&samples[samples.len() - fifth..]) - median(&samples[fifth..2 * fifth]))
}

/// Runs the soak; returns (steps, growth in MiB, first and last resident MiB).
fn soak(repo: &Path, ssl: &Path, work: &Path, quick: bool) -> Result<(u64, f64, f64, f64)> {
    let steps = soak_steps(quick);
    let out = work.join("soak");
    let config = repo.join("xtask/reliability/soak.toml");
    println!("reliability: soak, {steps} steps of `synthetic`");
    let status = Command::new(ssl)
        .args(["pretrain", "synthetic", "--no-eval", "--force", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .args(["--steps", &steps.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("starting ssl")?;
    if !status.success() {
        bail!("the soak run failed ({status}): `ssl pretrain synthetic --config {}`", config.display());
    }
    let text = fs::read_to_string(out.join("metrics.jsonl")).context("reading the soak's metrics.jsonl")?;
    let rss: Vec<f64> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["host_memory_mib"].as_f64())
        .collect();
    let growth = memory_growth_mib(&rss).context("the soak logged too few records with host_memory_mib")?;
    Ok((steps, growth, rss[0], rss[rss.len() - 1]))
}

/// A pseudo-random fraction in `[0, 1)` from `seed` (splitmix64), for kill times.
pub fn fraction(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) as f64 / (u64::MAX as f64 + 1.0)
}

/// `metrics.jsonl` without the fields that measure the machine (`samples_per_sec`,
/// `host_memory_mib`), one value per record.
pub fn comparable_metrics(text: &str) -> Result<Vec<Value>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).with_context(|| format!("metrics line `{l}`"))?;
            if let Some(o) = v.as_object_mut() {
                o.remove("samples_per_sec");
                o.remove("host_memory_mib");
            }
            Ok(v)
        })
        .collect()
}

/// The newest complete checkpoint folder of a run (`checkpoints/step-N`), if any.
fn newest_checkpoint(run: &Path) -> Option<PathBuf> {
    let mut steps: Vec<PathBuf> = fs::read_dir(run.join("checkpoints"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("step-")))
        .collect();
    steps.sort();
    steps.pop()
}

/// Whether a checkpoint is being written (its hidden temporary folder exists).
fn writing_checkpoint(run: &Path) -> bool {
    fs::read_dir(run.join("checkpoints")).is_ok_and(|d| {
        d.filter_map(|e| e.ok())
            .any(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(".step-") && n.contains(".tmp-")))
    })
}

struct Harness {
    ssl: PathBuf,
    work: PathBuf,
    config: PathBuf,
    method: String,
}

impl Harness {
    fn command(&self, out: &Path, extra: &[&str]) -> Command {
        let mut c = Command::new(&self.ssl);
        c.args(["pretrain", &self.method, "--config"])
            .arg(&self.config)
            .arg("--out")
            .arg(out)
            .args(["--no-eval"])
            .args(extra)
            .env("SSL_CACHE_DIR", self.work.join("cache"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    fn run(&self, out: &Path, extra: &[&str]) -> Result<()> {
        let status = self.command(out, extra).status().context("starting ssl")?;
        if !status.success() {
            bail!(
                "`ssl pretrain {} --out {} {}` failed ({status})",
                self.method,
                out.display(),
                extra.join(" ")
            );
        }
        Ok(())
    }

    fn spawn(&self, out: &Path) -> Result<Child> {
        self.command(out, &["--force"]).spawn().context("starting ssl")
    }
}

/// What one killed-and-resumed trial found.
#[derive(Debug)]
pub struct Trial {
    /// Whether the kill landed during a checkpoint write.
    pub during_write: bool,
    /// The newest complete checkpoint after the kill (0: none).
    pub killed_after_step: u64,
    /// Whether the run had finished before the kill landed (nothing to resume).
    pub finished_first: bool,
    /// Final weights and metrics equal to the reference's.
    pub identical: bool,
}

fn step_of(checkpoint: &Path) -> u64 {
    checkpoint
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("step-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// When a checkpoint's weights were written, with the file's identity: a rewrite changes it.
fn checkpoint_stamp(checkpoint: &Path) -> Result<(std::time::SystemTime, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(checkpoint.join("model.safetensors")).context("reading a checkpoint's metadata")?;
    Ok((m.modified()?, m.ino()))
}

/// Lines of a run's `metrics.jsonl` so far (one per step: the configs log every step).
fn logged_steps(run: &Path) -> usize {
    fs::read_to_string(run.join("metrics.jsonl")).map_or(0, |t| t.lines().count())
}

fn trial(h: &Harness, reference: &(Vec<u8>, Vec<Value>), steps: u64, index: usize) -> Result<Trial> {
    let out = h.work.join(format!("{}-kill-{index}", h.method));
    let _ = fs::remove_dir_all(&out);
    let during_write = index == 0;
    let mut child = h.spawn(&out)?;
    // A random step in 1..steps, or (first trial) the first checkpoint write after one
    // checkpoint is complete, so that the kill tests that the previous one stays loadable.
    let target = 1 + (fraction(index as u64 * 7919 + 17) * (steps.saturating_sub(1)) as f64) as usize;
    let mut caught_write = false;
    let finished_first = loop {
        if child.try_wait()?.is_some() {
            break true;
        }
        if during_write {
            if newest_checkpoint(&out).is_some() && writing_checkpoint(&out) {
                caught_write = true;
                break false;
            }
        } else if logged_steps(&out) >= target {
            break false;
        }
        std::thread::sleep(Duration::from_micros(if during_write { 50 } else { 500 }));
    };
    if !finished_first {
        child.kill().context("sending SIGKILL")?;
    }
    child.wait()?;
    let newest = newest_checkpoint(&out);
    let killed_after_step = newest.as_deref().map_or(0, step_of);
    if !finished_first {
        match &newest {
            // Resume from the newest checkpoint; loading it verifies its checksums.
            Some(ck) => {
                let written = checkpoint_stamp(ck)?;
                h.run(&out, &["--resume", &out.display().to_string()])?;
                // A resume continues after the checkpoint: had it restarted from scratch, the
                // checkpoint would have been written again.
                if checkpoint_stamp(ck)? != written {
                    bail!("{}: the run was not resumed from {} (it was rewritten)", h.method, ck.display());
                }
            }
            None => h.run(&out, &["--force"])?,
        }
    }
    let identical = compare(&out, reference)?;
    Ok(Trial { during_write: caught_write, killed_after_step, finished_first, identical })
}

fn final_state(run: &Path) -> Result<(Vec<u8>, Vec<Value>)> {
    let newest = newest_checkpoint(run).with_context(|| format!("{} has no checkpoint", run.display()))?;
    let weights = fs::read(newest.join("model.safetensors")).context("reading the final weights")?;
    let metrics =
        comparable_metrics(&fs::read_to_string(run.join("metrics.jsonl")).context("metrics.jsonl")?)?;
    Ok((weights, metrics))
}

fn compare(run: &Path, reference: &(Vec<u8>, Vec<Value>)) -> Result<bool> {
    let (weights, metrics) = final_state(run)?;
    Ok(weights == reference.0 && metrics == reference.1)
}

/// Runs `cargo xtask reliability`.
pub fn reliability(repo: &Path, args: &ReliabilityArgs) -> Result<()> {
    let start = Instant::now();
    println!("==> reliability");
    crate::tasks::setup_step(repo)?;
    crate::tasks::CargoStep::new("build", &["build", "-p", "ssl-cli", "--bin", "ssl"], &[]).run(repo)?;
    let methods: Vec<String> = if args.methods.is_empty() {
        METHODS.iter().map(|m| m.to_string()).collect()
    } else {
        args.methods.clone()
    };
    let kills = if args.quick { 2 } else { args.kills.max(1) };
    let work = repo.join("target/reliability");
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let mut trials = Vec::new();
    for method in &methods {
        let config = repo.join("xtask/reliability").join(format!("{method}.toml"));
        if !config.exists() {
            bail!("no reliability config for `{method}`: {} is missing", config.display());
        }
        let h = Harness {
            ssl: repo.join("target/debug/ssl"),
            work: work.clone(),
            config,
            method: method.clone(),
        };
        let reference_dir = work.join(format!("{method}-reference"));
        h.run(&reference_dir, &["--force"])?;
        let reference = final_state(&reference_dir)?;
        let steps = reference.1.len() as u64;
        for i in 0..kills {
            let mut r = trial(&h, &reference, steps, i)?;
            // The kill during a checkpoint write polls for a short window: try again if missed.
            for _ in 0..4 {
                if i != 0 || r.during_write {
                    break;
                }
                r = trial(&h, &reference, steps, i)?;
            }
            if i == 0 && !r.during_write {
                bail!("{method}: no kill landed during a checkpoint write in 5 tries");
            }
            println!(
                "reliability: {method} kill {i}: {} after step {}, resumed: {}",
                if r.finished_first {
                    "finished before the kill".to_string()
                } else if r.during_write {
                    "killed during a checkpoint write".to_string()
                } else {
                    "killed".to_string()
                },
                r.killed_after_step,
                if r.identical { "identical" } else { "DIFFERENT" }
            );
            trials.push(r);
        }
    }
    let killed = trials.iter().filter(|t| !t.finished_first).count();
    let during = trials.iter().filter(|t| t.during_write).count();
    let identical = trials.iter().filter(|t| t.identical).count();
    println!(
        "reliability: {} trials, {killed} killed ({during} during a checkpoint write), {identical} identical to the uninterrupted run",
        trials.len()
    );
    if identical != trials.len() {
        bail!("{} resumed run(s) differ from the uninterrupted run", trials.len() - identical);
    }
    let (steps, growth, first, last) = soak(repo, &repo.join("target/debug/ssl"), &work, args.quick)?;
    println!(
        "reliability: soak of {steps} steps: resident memory {first:.0} MiB at the first record, {last:.0} MiB at the last, grew {growth:+.1} MiB (bound {SOAK_BOUND_MIB} MiB)"
    );
    if growth > SOAK_BOUND_MIB {
        bail!("resident memory grew {growth:.1} MiB over {steps} steps (bound {SOAK_BOUND_MIB} MiB): a leak");
    }
    if !args.quick && args.fuzz_seconds > 0 {
        let fuzz = crate::fuzz::FuzzArgs { seconds: args.fuzz_seconds, targets: Vec::new() };
        crate::fuzz::fuzz(repo, &fuzz)?;
    }
    println!("<== reliability: ok in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_growth_compares_the_last_fifth_with_the_second() {
        let flat: Vec<f64> = (0..100).map(|i| 150.0 + ((i * 37) % 5) as f64 * 0.1).collect();
        assert!(memory_growth_mib(&flat).unwrap().abs() < 1.0);
        // A first fifth of warm-up growth does not count; a steady leak does.
        let warm: Vec<f64> = (0..100).map(|i| if i < 20 { 100.0 + i as f64 * 5.0 } else { 200.0 }).collect();
        assert_eq!(memory_growth_mib(&warm), Some(0.0));
        let leak: Vec<f64> = (0..100).map(|i| 150.0 + i as f64 * 0.5).collect();
        assert!(memory_growth_mib(&leak).unwrap() > 25.0);
        assert_eq!(memory_growth_mib(&[1.0; 9]), None);
    }

    #[test]
    fn fractions_are_spread_and_deterministic() {
        let f: Vec<f64> = (0..100).map(fraction).collect();
        assert!(f.iter().all(|x| (0.0..1.0).contains(x)));
        assert_eq!(fraction(3), fraction(3));
        let mean = f.iter().sum::<f64>() / 100.0;
        assert!((0.35..0.65).contains(&mean), "{mean}");
    }

    #[test]
    fn metrics_comparison_ignores_machine_measurements_only() {
        let a =
            comparable_metrics("{\"step\":1,\"loss\":0.5,\"samples_per_sec\":10,\"host_memory_mib\":80}\n")
                .unwrap();
        let b =
            comparable_metrics("{\"step\":1,\"loss\":0.5,\"samples_per_sec\":99,\"host_memory_mib\":90}\n\n")
                .unwrap();
        let c = comparable_metrics("{\"step\":1,\"loss\":0.50001,\"samples_per_sec\":10}\n").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn every_method_has_a_config() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("reliability");
        for m in METHODS {
            let text = fs::read_to_string(dir.join(format!("{m}.toml"))).expect(m);
            let v: toml::Value = text.parse().expect("toml");
            assert_eq!(v["method"].as_str(), Some(m));
            assert_eq!(
                v["train"]["deterministic"].as_bool(),
                Some(true),
                "{m}: resumes are compared bit for bit"
            );
        }
    }
}
