//! `cargo xtask`: the project's automation, a plain Rust binary (the alias lives in
//! `.cargo/config.toml`), so there are no shell scripts to maintain beyond `.ci/run`.
//!
//! - `cargo xtask setup`: makes libtorch 2.11 available as `.libtorch/active` ([`libtorch`]);
//! - `cargo xtask test`: setup, then `cargo test --workspace`, the one test command;
//! - `cargo xtask ci`: setup, fmt, clippy, doc, test and the end-to-end checks, as CI runs them;
//! - `cargo xtask check-tensorboard`: TensorBoard's reader loads our event files ([`checks`]);
//! - `cargo xtask demo`: setup, then the CLI's pretraining demo;
//! - `cargo xtask bench <suite>`: the benchmark suites ([`mod@bench`]);
//! - `cargo xtask new-modality <name>`: scaffolds a working modality crate `crates/ssl-<name>`;
//! - `cargo xtask check-scaffold`: a scaffolded crate passes its tests (in a temporary copy);
//! - `cargo xtask reliability [--quick]`: killed and resumed runs equal uninterrupted ones.
//!
//! **xtask does not depend on tch, nor on any workspace crate that does** (it uses only
//! `ssl-plot`): it has to build on a machine that has no libtorch yet, since providing one is
//! its first job.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// Prints one progress line of `cargo xtask setup`.
macro_rules! say {
    ($($arg:tt)*) => { println!("setup: {}", format_args!($($arg)*)) };
}

mod bench;
mod checks;
mod flops;
mod fuzz;
mod libtorch;
mod manifest;
mod new_crate;
mod provision;
mod python;
mod reliability;
mod tasks;
mod vs_pytorch;

/// Project automation for ssl-rs.
#[derive(Debug, Parser)]
#[command(name = "xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Find or provision libtorch 2.11 and point `.libtorch/active` at it.
    ///
    /// Tries, in order: a LIBTORCH you exported (checked, then used as is; it takes precedence
    /// over `.libtorch/active`); an existing valid `.libtorch/active` (returns at once); the
    /// `torch` package of `python3` or `python` when it is 2.11.x; and otherwise downloads the
    /// torch 2.11.0 wheel and two NVIDIA runtime wheels with pip (about 540 MB) and extracts a CPU
    /// libtorch of about 0.5 GB into `.libtorch/libtorch-2.11.0-cpu`. Safe to run again.
    Setup,
    /// Set up libtorch, then run every test of the workspace (`cargo test --workspace`).
    ///
    /// Arguments after `--` go to `cargo test`, e.g. `cargo xtask test -- -- --nocapture`.
    Test {
        /// Extra arguments for `cargo test`.
        #[arg(last = true, value_name = "CARGO_TEST_ARGS")]
        args: Vec<String>,
    },
    /// Set up libtorch, then pretrain the default method with the `ssl` CLI (release build).
    ///
    /// Runs `cargo run --release -p ssl-cli --bin ssl -- pretrain simclr <ARGS>`.
    Demo {
        /// Extra arguments for `ssl pretrain`.
        #[arg(last = true, value_name = "ARGS")]
        args: Vec<String>,
    },
    /// Run what CI runs: setup, fmt --check, clippy -D warnings, doc -D warnings, the tests,
    /// then check-tensorboard, check-scaffold and reliability --quick.
    ///
    /// Stops at the first failing step and names it.
    Ci,
    /// Benchmark suites: `throughput`, `data`, `quality`, `all`, or `micro` (criterion).
    ///
    /// Builds the release `ssl` binary and runs the suite through it; prints a Markdown table
    /// and writes results.json, results.md and a PNG chart under target/bench/.
    Bench(bench::BenchArgs),
    /// Check that TensorBoard's own reader loads `ssl pretrain --tensorboard` event files
    /// (fresh and resumed runs) and finds every record of `metrics.jsonl`.
    ///
    /// Installs the `tensorboard` package with pip into target/tensorboard-venv on first use.
    CheckTensorboard,
    /// The reliability checks: exact resume under hard kills (tiny runs of one method per
    /// modality killed with SIGKILL, once during a checkpoint write, resumed, and compared bit
    /// for bit with an uninterrupted run), a memory soak over thousands of steps, and (not with
    /// --quick) the fuzz targets.
    Reliability(reliability::ReliabilityArgs),
    /// Run the cargo-fuzz targets of fuzz/ (the parsers and decoders of user files) from their
    /// seeds, each for --seconds. Needs a nightly toolchain and cargo-fuzz.
    Fuzz(fuzz::FuzzArgs),
    /// Check that a freshly scaffolded modality crate passes its tests, in a temporary copy of
    /// the repository (under target/).
    CheckScaffold,
    /// Scaffold a modality crate `crates/ssl-<NAME>` and add it to the workspace.
    ///
    /// The crate works from the start: a toy dataset of labelled signals, two-view
    /// augmentations, an MLP encoder and a contrastive objective, with tests, an example and a
    /// README (templates in xtask/templates/modality/); it is added to `members` and
    /// `default-members`.
    #[command(alias = "new-crate")]
    NewModality {
        /// The modality, e.g. `audio`: lowercase letters, digits and '-'.
        name: String,
    },
}

/// The workspace root: the parent of this crate's folder.
fn repo_root() -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().with_context(|| format!("resolving the repository root {}", root.display()))
}

fn run(cli: Cli) -> Result<()> {
    let repo = repo_root()?;
    match cli.command {
        Cmd::Setup => libtorch::setup(&repo).map(drop),
        Cmd::Test { args } => tasks::setup_then(&repo, &tasks::test_step(&args)),
        Cmd::Demo { args } => tasks::setup_then(&repo, &tasks::demo_step(&args)),
        Cmd::Ci => tasks::ci(&repo),
        Cmd::Bench(args) => bench::bench(&repo, &args),
        Cmd::CheckTensorboard => checks::tensorboard(&repo),
        Cmd::NewModality { name } => new_crate::new_crate(&repo, &name),
        Cmd::CheckScaffold => checks::scaffold(&repo),
        Cmd::Reliability(args) => reliability::reliability(&repo, &args),
        Cmd::Fuzz(args) => fuzz::fuzz(&repo, &args).map(drop),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn arguments() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).expect("parses").command;
        let test = parse(&["xtask", "test", "--", "-p", "ssl-core", "--", "--nocapture"]);
        let expected = ["-p", "ssl-core", "--", "--nocapture"].map(String::from).to_vec();
        assert!(matches!(test, Cmd::Test { args } if args == expected));
        assert!(matches!(parse(&["xtask", "test"]), Cmd::Test { args } if args.is_empty()));
        for spelling in ["new-modality", "new-crate"] {
            let new = parse(&["xtask", spelling, "audio"]);
            assert!(matches!(new, Cmd::NewModality { name } if name == "audio"), "{spelling}");
        }
        let bench = parse(&["xtask", "bench", "throughput", "--quick", "--methods", "simclr,mae"]);
        assert!(matches!(bench, Cmd::Bench(b) if b.quick && b.methods == ["simclr", "mae"]));
        assert!(Cli::try_parse_from(["xtask", "test", "--nocapture"]).is_err());
    }

    #[test]
    fn repo_root_is_the_workspace() {
        let root = repo_root().expect("root");
        assert!(root.join("Cargo.toml").is_file());
        assert!(root.join("xtask").join("Cargo.toml").is_file());
    }
}
