//! The commands that drive cargo after setup: `test`, `demo`, `ci` and `bench`.
//!
//! Each is a list of [`CargoStep`]s, plain data, so that the tidy test below can check that
//! `.ci/run` runs the same commands as `cargo xtask ci`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::libtorch::{self, REQUIRED};

/// The method `cargo xtask demo` pretrains.
///
/// SimCLR on the embedded shapes: the project's main job.
pub const DEFAULT_METHOD: &str = "simclr";

/// One cargo invocation with a name for headers and errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CargoStep {
    /// Short name: `fmt`, `clippy`, `doc`, `test`, ...
    pub name: &'static str,
    /// Arguments after `cargo`.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(&'static str, &'static str)>,
}

impl CargoStep {
    /// A step named `name`: `cargo <args> <extra>`.
    pub fn new(name: &'static str, args: &[&str], extra: &[String]) -> Self {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(extra.iter().cloned());
        CargoStep { name, args: all, env: Vec::new() }
    }

    /// `cargo <args>`, as a shell would show it (without the environment).
    pub fn command_line(&self) -> String {
        format!("cargo {}", self.args.join(" "))
    }

    /// Runs the step in `repo`, streaming its output, and fails if cargo does.
    pub fn run(&self, repo: &Path) -> Result<()> {
        let start = Instant::now();
        let env: String = self.env.iter().map(|(k, v)| format!("{k}=\"{v}\" ")).collect();
        println!("==> {}: {env}{}", self.name, self.command_line());
        let status = Command::new(cargo())
            .args(&self.args)
            .envs(self.env.iter().copied())
            .current_dir(repo)
            .status()
            .with_context(|| format!("starting `{}`", self.command_line()))?;
        let secs = start.elapsed().as_secs_f64();
        if !status.success() {
            bail!("step `{}` failed ({status}) after {secs:.1} s: `{}`", self.name, self.command_line());
        }
        println!("<== {}: ok in {secs:.1} s", self.name);
        Ok(())
    }
}

/// The cargo that runs xtask (`$CARGO`), so nested builds use the same toolchain.
fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// `cargo test --workspace <extra>`: every crate's unit, integration and doc tests.
pub fn test_step(extra: &[String]) -> CargoStep {
    CargoStep::new("test", &["test", "--workspace"], extra)
}

/// `cargo run --release -p ssl-cli --bin ssl -- pretrain <DEFAULT_METHOD> <extra>`.
pub fn demo_step(extra: &[String]) -> CargoStep {
    let args = ["run", "--release", "-p", "ssl-cli", "--bin", "ssl", "--", "pretrain", DEFAULT_METHOD];
    CargoStep::new("demo", &args, extra)
}

/// `cargo bench --workspace <extra>`.
pub fn bench_step(extra: &[String]) -> CargoStep {
    CargoStep::new("bench", &["bench", "--workspace"], extra)
}

/// The checks CI runs between setup and the tests: formatting, lints, documentation.
pub fn ci_checks() -> Vec<CargoStep> {
    let mut doc = CargoStep::new("doc", &["doc", "--workspace", "--no-deps"], &[]);
    doc.env.push(("RUSTDOCFLAGS", "-D warnings"));
    vec![
        CargoStep::new("fmt", &["fmt", "--all", "--", "--check"], &[]),
        CargoStep::new("clippy", &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"], &[]),
        doc,
    ]
}

/// Runs `cargo xtask setup` as a named step.
pub fn setup_step(repo: &Path) -> Result<PathBuf> {
    let start = Instant::now();
    println!("==> setup: libtorch {REQUIRED}");
    let dir = libtorch::setup(repo).context("step `setup` failed")?;
    println!("<== setup: ok in {:.1} s", start.elapsed().as_secs_f64());
    Ok(dir)
}

/// Setup, then one cargo step.
pub fn setup_then(repo: &Path, step: &CargoStep) -> Result<()> {
    setup_step(repo)?;
    step.run(repo)
}

/// What CI runs: setup, the checks, the tests, the TensorBoard, scaffold and quick reliability
/// checks; stops at the first failure.
pub fn ci(repo: &Path) -> Result<()> {
    let start = Instant::now();
    setup_step(repo)?;
    for step in ci_checks().iter().chain([&test_step(&[])]) {
        step.run(repo)?;
    }
    crate::checks::tensorboard(repo)?;
    crate::checks::scaffold(repo)?;
    let quick =
        crate::reliability::ReliabilityArgs { kills: 2, quick: true, methods: Vec::new(), fuzz_seconds: 0 };
    crate::reliability::reliability(repo, &quick)?;
    println!("ci: all steps passed in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    #[test]
    fn command_lines() {
        let extra = ["--".to_string(), "--nocapture".to_string()];
        assert_eq!(test_step(&extra).command_line(), "cargo test --workspace -- --nocapture");
        assert_eq!(
            demo_step(&["--steps".to_string(), "10".to_string()]).command_line(),
            "cargo run --release -p ssl-cli --bin ssl -- pretrain simclr --steps 10"
        );
        assert_eq!(bench_step(&[]).command_line(), "cargo bench --workspace");
    }

    /// `.ci/run` spells out the same steps as `cargo xtask ci`, in the same order.
    #[test]
    fn ci_script_matches_xtask_ci() {
        let script = fs::read_to_string(repo().join(".ci/run")).expect(".ci/run");
        let mut lines = vec!["cargo xtask setup".to_string()];
        for step in ci_checks() {
            let env: String = step.env.iter().map(|(k, v)| format!("{k}=\"{v}\" ")).collect();
            lines.push(format!("{env}{}", step.command_line()));
        }
        lines.push("cargo xtask test".to_string());
        lines.push("cargo xtask check-tensorboard".to_string());
        lines.push("cargo xtask check-scaffold".to_string());
        lines.push("cargo xtask reliability --quick".to_string());
        let mut from = 0;
        for line in &lines {
            let at = script[from..].find(line.as_str());
            let at = at.unwrap_or_else(|| panic!("`{line}` missing from .ci/run after byte {from}"));
            from += at + line.len();
        }
    }

    /// The workflow runs `.ci/run` and nothing else of substance.
    #[test]
    fn workflow_runs_the_ci_script() {
        let workflow = fs::read_to_string(repo().join(".github/workflows/ci.yml")).expect("ci.yml");
        assert!(workflow.contains("bash .ci/run"));
        assert!(workflow.contains("python-version: \"3.12\""));
        assert!(workflow.contains("hashFiles('Cargo.lock')"));
    }
}
