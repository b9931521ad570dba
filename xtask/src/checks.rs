//! End-to-end checks CI runs after the tests, each against a real outside consumer.
//!
//! - [`tensorboard`]: a run's TensorBoard event files, written by `ssl pretrain --tensorboard`
//!   and then resumed, are read back by TensorBoard's own reader (`scripts/check_tensorboard.py`,
//!   in a virtual environment under `target/` with the `tensorboard` package from pip).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// Runs `program args` in `dir`, failing with `what` and the exit status.
fn run(program: &Path, args: &[&str], dir: &Path, what: &str) -> Result<()> {
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .status()
        .with_context(|| format!("starting {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// A virtual environment at `target/tensorboard-venv` with `tensorboard` installed; returns
/// its Python.
fn tensorboard_python(repo: &Path) -> Result<PathBuf> {
    let venv = repo.join("target/tensorboard-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        let base = crate::python::PYTHONS
            .iter()
            .find(|p| Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success()))
            .context("no python3 or python on PATH: the TensorBoard check needs Python 3 with venv")?;
        let venv_s = venv.display().to_string();
        run(Path::new(base), &["-m", "venv", &venv_s], repo, "creating the virtual environment")?;
    }
    let has =
        Command::new(&python).args(["-c", "import tensorboard"]).output().is_ok_and(|o| o.status.success());
    if !has {
        println!("check-tensorboard: installing the tensorboard package into {}", venv.display());
        run(&python, &["-m", "pip", "install", "--quiet", "tensorboard"], repo, "pip install tensorboard")?;
    }
    Ok(python)
}

/// Trains the synthetic method for 60 steps with `--tensorboard` (checkpoints at 30 and 60),
/// resumes it from step 30 to 80, and checks with TensorBoard's reader that the scalars match
/// `metrics.jsonl` exactly (the interrupted run's steps after 30 dropped).
pub fn tensorboard(repo: &Path) -> Result<()> {
    let start = Instant::now();
    println!("==> check-tensorboard");
    let python = tensorboard_python(repo)?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .args(["build", "-p", "ssl-cli", "--bin", "ssl"])
        .current_dir(repo)
        .status()
        .context("starting cargo build")?;
    if !status.success() {
        bail!("cargo build -p ssl-cli failed ({status})");
    }
    let ssl = repo.join("target/debug/ssl");
    let dir = repo.join("target/tensorboard-check");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let cfg = "method = \"synthetic\"\n[train]\ncheckpoint_every = 30\nkeep_last = 0\nlog_every = 10\nprogress = false\n";
    std::fs::write(dir.join("run.toml"), cfg)?;
    let common = ["--config", "run.toml", "--out", "run", "--no-eval", "--tensorboard"];
    run(&ssl, &[&["pretrain", "synthetic", "--steps", "60"][..], &common].concat(), &dir, "ssl pretrain")?;
    let resume = ["--steps", "80", "--resume", "run/checkpoints/step-00000030"];
    run(&ssl, &[&["pretrain", "synthetic"][..], &resume, &common].concat(), &dir, "ssl pretrain --resume")?;
    let script = repo.join("scripts/check_tensorboard.py").display().to_string();
    run(&python, &[&script, "run"], &dir, "scripts/check_tensorboard.py")?;
    println!("<== check-tensorboard: ok in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}
