//! End-to-end checks CI runs after the tests, each against a real outside consumer.
//!
//! - [`tensorboard`]: a run's TensorBoard event files, written by `ssl pretrain --tensorboard`
//!   and then resumed, are read back by TensorBoard's own reader (`scripts/check_tensorboard.py`,
//!   in a virtual environment under `target/` with the `tensorboard` package from pip).
//! - [`scaffold`]: `cargo xtask new-modality` in a temporary copy of the repository, then the
//!   new crate's tests.

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
    crate::tasks::setup_step(repo)?;
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

/// Copies the repository's tracked files (`git ls-files`) into `target/scaffold-check/repo`,
/// links its `.libtorch`, scaffolds `ssl-scaffold-demo` there and checks that crate's
/// formatting, lints (`-D warnings`) and tests (with this repository's target folder, so
/// dependencies are not rebuilt).
pub fn scaffold(repo: &Path) -> Result<()> {
    let start = Instant::now();
    println!("==> check-scaffold");
    crate::tasks::setup_step(repo)?;
    let copy = repo.join("target/scaffold-check/repo");
    let _ = std::fs::remove_dir_all(&copy);
    let listed = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(repo)
        .output()
        .context("running `git ls-files` (the check copies the tracked files)")?;
    if !listed.status.success() {
        bail!("`git ls-files` failed ({}): is this a git checkout?", listed.status);
    }
    for path in listed.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let rel = Path::new(std::str::from_utf8(path).context("a tracked path is not UTF-8")?);
        let (from, to) = (repo.join(rel), copy.join(rel));
        if !from.is_file() {
            continue; // deleted in the working tree
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::copy(&from, &to).with_context(|| format!("copying {}", rel.display()))?;
    }
    let libtorch = repo.join(".libtorch");
    if libtorch.exists() {
        std::os::unix::fs::symlink(&libtorch, copy.join(".libtorch")).context("linking .libtorch")?;
    }
    crate::new_crate::new_crate(&copy, "scaffold-demo")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let steps: [&[&str]; 3] = [
        &["fmt", "-p", "ssl-scaffold-demo", "--", "--check"],
        &["clippy", "-p", "ssl-scaffold-demo", "--all-targets", "--", "-D", "warnings"],
        &["test", "-p", "ssl-scaffold-demo"],
    ];
    for args in steps {
        let status = Command::new(&cargo)
            .args(args)
            .env("CARGO_TARGET_DIR", repo.join("target"))
            .current_dir(&copy)
            .status()
            .with_context(|| format!("starting cargo {}", args[0]))?;
        if !status.success() {
            bail!(
                "`cargo {}` failed on the scaffolded crate ({status}); the copy is in {}",
                args.join(" "),
                copy.display()
            );
        }
    }
    std::fs::remove_dir_all(&copy).with_context(|| format!("removing {}", copy.display()))?;
    println!("<== check-scaffold: ok in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}
