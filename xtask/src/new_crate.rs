//! `cargo xtask new-crate <name>`: scaffolds the modality crate `crates/ssl-<name>`.
//!
//! The new crate depends on `ssl-core` and on nothing else of ours, links libtorch through
//! `ssl-build`, and starts with a smoke test and an example that both run, so it is green from its
//! first commit.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::manifest::{self, Edit};

/// Checks a modality name: lowercase ASCII letters, digits and single inner dashes, starting with a
/// letter, without the `ssl-` prefix (it is added).
pub fn validate_name(name: &str) -> Result<(), String> {
    let valid_chars = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if !valid_chars {
        return Err(format!("`{name}` may only use lowercase ASCII letters, digits and '-'"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!("`{name}` must start with a letter"));
    }
    if name.ends_with('-') || name.contains("--") {
        return Err(format!("`{name}` has a trailing or doubled '-'"));
    }
    if name.starts_with("ssl-") || name == "ssl" {
        return Err(format!(
            "give the modality without the `ssl-` prefix (`{}` makes crates/ssl-{0})",
            name.trim_start_matches("ssl-")
        ));
    }
    Ok(())
}

/// The files of a new crate, relative to its folder.
pub fn files(name: &str) -> Vec<(&'static str, String)> {
    let fill = |template: &str| {
        template
            .replace("@NAME@", name)
            .replace("@CRATE@", &format!("ssl-{name}"))
            .replace("@LIB@", &format!("ssl_{}", name.replace('-', "_")))
    };
    vec![
        ("Cargo.toml", fill(CARGO_TOML)),
        ("build.rs", fill(BUILD_RS)),
        ("src/lib.rs", fill(LIB_RS)),
        ("tests/smoke.rs", fill(SMOKE_RS)),
        ("examples/minimal.rs", fill(EXAMPLE_RS)),
        ("README.md", fill(README_MD)),
    ]
}

/// Creates `crates/ssl-<name>` in `repo` and adds it to the workspace members.
pub fn new_crate(repo: &Path, name: &str) -> Result<()> {
    validate_name(name).map_err(anyhow::Error::msg)?;
    let member = format!("crates/ssl-{name}");
    let dir = repo.join(&member);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let manifest_path = repo.join("Cargo.toml");
    let text =
        fs::read_to_string(&manifest_path).with_context(|| format!("reading {}", manifest_path.display()))?;
    let mut new_text = match manifest::add_to_workspace_array(&text, "members", &member) {
        Ok(Edit::Added(t)) => t,
        Ok(Edit::AlreadyPresent) => bail!("{member} is already a workspace member"),
        Err(e) => bail!("cannot edit {}: {e}", manifest_path.display()),
    };
    if manifest::workspace_array(&new_text, "default-members").is_some() {
        match manifest::add_to_workspace_array(&new_text, "default-members", &member) {
            Ok(Edit::Added(t)) => new_text = t,
            Ok(Edit::AlreadyPresent) => {}
            Err(e) => bail!("cannot edit {}: {e}", manifest_path.display()),
        }
    }

    let written = write_files(&dir, name);
    if let Err(e) = written {
        // Leave nothing half-made behind.
        let _ = fs::remove_dir_all(&dir);
        return Err(e);
    }
    fs::write(&manifest_path, new_text).with_context(|| format!("writing {}", manifest_path.display()))?;

    println!("new-crate: created {member}/");
    for (path, _) in files(name) {
        println!("new-crate:   {path}");
    }
    println!("new-crate: added {member} to the workspace members and default-members");
    println!("new-crate: next: `cargo test -p ssl-{name}`, then implement ssl_core::Encoder");
    Ok(())
}

fn write_files(dir: &Path, name: &str) -> Result<()> {
    for (path, contents) in files(name) {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

const CARGO_TOML: &str = r#"[package]
name = "@CRATE@"
description = "Self-supervised learning for @NAME@ data on libtorch: encoders and objectives."
version.workspace = true
edition.workspace = true
rust-version.workspace = true
license.workspace = true
repository.workspace = true
readme = "README.md"

[dependencies]
ssl-core.workspace = true
tch.workspace = true
thiserror.workspace = true

[dev-dependencies]
proptest.workspace = true

[build-dependencies]
ssl-build.workspace = true

[lints]
workspace = true
"#;

const BUILD_RS: &str = r#"//! Build script: embeds the libtorch library folder as an rpath (see `ssl-build`).
fn main() {
    ssl_build::link_libtorch();
}
"#;

const LIB_RS: &str = r#"//! # @CRATE@
//!
//! Self-supervised learning for @NAME@ data, built on [`ssl_core`].
//!
//! **This crate depends on ssl-core and on nothing else of ours.** It grows by concept, one
//! module each:
//! - encoders: one module per architecture, each implementing [`ssl_core::Encoder`] so that every
//!   probe and fine-tuning routine of ssl-core can evaluate it;
//! - methods: one module per paper, named after it (the way `ssl_vision::simclr` is), each
//!   implementing [`ssl_core::Objective`], opening with a doc comment that names the paper and the
//!   reference implementation, with a `Config` whose defaults say where they come from, and
//!   registered in `ssl-cli` under its contract name;
//! - augmentations and batch building for @NAME@ samples, implementing ssl-core's `Augmentation`,
//!   `Dataset` and `BatchBuilder`.
//!
//! Pieces two methods share (projection heads, EMA targets, contrastive losses) belong in
//! ssl-core, not here.

/// ssl-core, re-exported so users of this crate and this crate agree on its version.
pub use ssl_core;
"#;

const SMOKE_RS: &str = r#"//! The crate builds, links libtorch and runs a tensor operation.

use @LIB@::ssl_core::tch::{Device, Kind, Tensor};

#[test]
fn links_libtorch_and_computes() {
    let x = Tensor::arange(4, (Kind::Float, Device::Cpu));
    let sum = x.sum(Kind::Float).double_value(&[]);
    assert!((sum - 6.0).abs() < 1e-9, "0 + 1 + 2 + 3 = {sum}");
}
"#;

const EXAMPLE_RS: &str = r#"//! The smallest @CRATE@ program: runs one libtorch operation.
//!
//! ```text
//! cargo run -p @CRATE@ --example minimal
//! ```

use @LIB@::ssl_core::tch::{Device, Kind, Tensor};

fn main() {
    let ones = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
    let sum = ones.sum(Kind::Float).double_value(&[]);
    println!("@CRATE@ runs on libtorch: the six ones of a 2x3 tensor sum to {sum}");
}
"#;

const README_MD: &str = r#"# @CRATE@

Self-supervised learning for @NAME@ data on libtorch, built on `ssl-core`: encoders implement
`ssl_core::Encoder`, each method lives in its own module named after its paper.

## Layout

- `src/lib.rs`: the crate map; add one module per encoder and per method.
- `tests/smoke.rs`: checks that the crate links libtorch.
- `examples/minimal.rs`: `cargo run -p @CRATE@ --example minimal`.

## Test

```sh
cargo xtask test            # the whole workspace, after setting up libtorch
cargo test -p @CRATE@       # this crate only (after `cargo xtask setup`)
```
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let check = |name: &str, ok: bool| assert_eq!(validate_name(name).is_ok(), ok, "{name:?}");
        check("audio", true);
        check("multi-modal", true);
        check("v2", true);
        check("point-cloud3d", true);
        check("", false);
        check("Audio", false);
        check("audio_x", false);
        check("au dio", false);
        check("2d", false);
        check("-audio", false);
        check("audio-", false);
        check("a--b", false);
        check("ssl-audio", false);
        check("ssl", false);
        check("vidéo", false);
    }

    #[test]
    fn scaffold_files_are_filled_in() {
        let files = files("point-cloud");
        let get = |p: &str| &files.iter().find(|(path, _)| *path == p).expect(p).1;
        assert!(get("Cargo.toml").contains("name = \"ssl-point-cloud\""));
        assert!(get("tests/smoke.rs").contains("use ssl_point_cloud::ssl_core::tch"));
        assert!(get("build.rs").contains("ssl_build::link_libtorch();"));
        for (path, contents) in &files {
            assert!(!contents.contains('@'), "{path} has an unfilled placeholder");
        }
    }

    #[test]
    fn new_crate_writes_files_and_members() {
        let repo = tempfile::tempdir().expect("tempdir");
        let root = "[workspace]\nmembers = [\n    \"xtask\",\n]\ndefault-members = [\n]\n";
        fs::write(repo.path().join("Cargo.toml"), root).expect("write");

        new_crate(repo.path(), "audio").expect("scaffold");
        let dir = repo.path().join("crates/ssl-audio");
        for (path, _) in files("audio") {
            assert!(dir.join(path).is_file(), "{path}");
        }
        let text = fs::read_to_string(repo.path().join("Cargo.toml")).expect("read");
        let expected = "[workspace]\nmembers = [\n    \"xtask\",\n    \"crates/ssl-audio\",\n]\n\
                        default-members = [\n    \"crates/ssl-audio\",\n]\n";
        assert_eq!(text, expected);

        let again = new_crate(repo.path(), "audio").expect_err("exists");
        assert!(again.to_string().contains("already exists"), "{again}");
        assert!(new_crate(repo.path(), "Bad").is_err());
    }
}
