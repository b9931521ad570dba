//! `cargo xtask fuzz`: the cargo-fuzz targets of `fuzz/` (every parser and decoder of user
//! files the project owns), each run for a while from its committed seeds.
//!
//! The targets need a nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz
//! (`cargo install cargo-fuzz`); without them the command says so and fails. Corpora grow in
//! `fuzz/corpus/<target>` (git-ignored) and are reused by the next run; a crash leaves its input
//! in `fuzz/artifacts/<target>/` and fails the command.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// The fuzz targets, in run order.
pub const TARGETS: [&str; 6] = ["wav", "image", "pairs_manifest", "text_corpus", "checkpoint_meta", "config"];

/// Options of `cargo xtask fuzz`.
#[derive(Debug, Clone, clap::Args)]
pub struct FuzzArgs {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Targets to run (comma-separated; default: all).
    #[arg(long, value_delimiter = ',')]
    pub targets: Vec<String>,
}

/// What one target's run reported.
#[derive(Debug, Clone, PartialEq)]
pub struct FuzzRun {
    /// The target.
    pub target: String,
    /// Inputs executed (libFuzzer's `Done N runs`).
    pub runs: Option<u64>,
    /// Seconds it ran.
    pub seconds: f64,
}

/// The executions libFuzzer reports on its last `Done N runs in S second(s)` line.
pub fn parse_runs(output: &str) -> Option<u64> {
    output.lines().rev().find_map(|l| l.trim().strip_prefix("Done ")?.split_whitespace().next()?.parse().ok())
}

fn nightly_cargo() -> Command {
    // Through rustup's proxy (not `$CARGO`, which is the stable toolchain running xtask).
    let mut c = Command::new("cargo");
    c.arg("+nightly").env_remove("RUSTUP_TOOLCHAIN").env_remove("CARGO");
    c
}

/// Checks the nightly toolchain and cargo-fuzz, saying how to install what is missing.
fn check_tools() -> Result<()> {
    let nightly = nightly_cargo().arg("--version").output();
    if !nightly.is_ok_and(|o| o.status.success()) {
        bail!("cargo xtask fuzz needs a nightly toolchain: `rustup toolchain install nightly`");
    }
    let fuzz = nightly_cargo().args(["fuzz", "--version"]).output();
    if !fuzz.is_ok_and(|o| o.status.success()) {
        bail!("cargo xtask fuzz needs cargo-fuzz: `cargo install cargo-fuzz`");
    }
    Ok(())
}

/// Runs `cargo xtask fuzz`.
pub fn fuzz(repo: &Path, args: &FuzzArgs) -> Result<Vec<FuzzRun>> {
    let start = Instant::now();
    println!("==> fuzz: {} s per target", args.seconds);
    check_tools()?;
    crate::tasks::setup_step(repo)?;
    let targets: Vec<String> = if args.targets.is_empty() {
        TARGETS.iter().map(|t| t.to_string()).collect()
    } else {
        args.targets.clone()
    };
    for t in &targets {
        if !TARGETS.contains(&t.as_str()) {
            bail!("no fuzz target `{t}` (have: {})", TARGETS.join(", "));
        }
    }
    let mut runs = Vec::new();
    for target in &targets {
        let corpus = repo.join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
        let seeds = repo.join("fuzz/seeds").join(target);
        let began = Instant::now();
        println!("==> fuzz {target}: {} s", args.seconds);
        let out = nightly_cargo()
            .args(["fuzz", "run", "--release", target])
            .arg(&corpus)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={}", args.seconds))
            .args(["-rss_limit_mb=4096", "-max_len=65536", "-print_final_stats=1"])
            .current_dir(repo)
            .output()
            .with_context(|| format!("running cargo fuzz run {target}"))?;
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let log = repo.join("target/fuzz-logs");
        std::fs::create_dir_all(&log)?;
        std::fs::write(log.join(format!("{target}.log")), &text)?;
        if !out.status.success() {
            let tail: Vec<&str> = text.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
            bail!(
                "fuzz target `{target}` failed ({}): the input is under fuzz/artifacts/{target}/; the log is target/fuzz-logs/{target}.log\n{}",
                out.status,
                tail.join("\n")
            );
        }
        let run = FuzzRun {
            target: target.clone(),
            runs: parse_runs(&text),
            seconds: began.elapsed().as_secs_f64(),
        };
        println!(
            "<== fuzz {target}: {} inputs in {:.0} s, no crash",
            run.runs.map_or("?".into(), |r| r.to_string()),
            run.seconds
        );
        runs.push(run);
    }
    println!("<== fuzz: {} targets, no crash, in {:.0} s", runs.len(), start.elapsed().as_secs_f64());
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_come_from_libfuzzers_last_done_line() {
        let out = "#2\tINITED cov: 10\n#1024\tpulse\nDone 48213 runs in 61 second(s)\nstat::number_of_executed_units: 48213\n";
        assert_eq!(parse_runs(out), Some(48213));
        assert_eq!(parse_runs("nothing"), None);
    }

    #[test]
    fn every_target_has_a_source_and_seeds() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).expect("fuzz/Cargo.toml");
        for t in TARGETS {
            assert!(fuzz.join(format!("fuzz_targets/{t}.rs")).exists(), "{t}: no source");
            assert!(manifest.contains(&format!("name = \"{t}\"")), "{t}: not in fuzz/Cargo.toml");
            let seeds = std::fs::read_dir(fuzz.join("seeds").join(t)).map_or(0, |d| d.count());
            assert!(seeds > 0, "{t}: no seeds");
        }
    }
}
