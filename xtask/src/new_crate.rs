//! `cargo xtask new-modality <name>`: scaffolds the modality crate `crates/ssl-<name>`.
//!
//! The new crate depends on `ssl-core` and on nothing else of ours, links libtorch through
//! `ssl-build`, and starts as a working example (toy data, views, encoder, contrastive objective)
//! with tests, an example and a README, so it is green from its first commit;
//! `cargo xtask check-scaffold` proves that in CI.

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

/// The template files of a modality crate (`xtask/templates/modality/`), relative to its
/// folder, with `@NAME@`, `@CRATE@` and `@LIB@` placeholders.
const TEMPLATES: [(&str, &str); 11] = [
    ("Cargo.toml", include_str!("../templates/modality/Cargo.toml")),
    ("build.rs", include_str!("../templates/modality/build.rs")),
    ("README.md", include_str!("../templates/modality/README.md")),
    ("src/lib.rs", include_str!("../templates/modality/src/lib.rs")),
    ("src/data.rs", include_str!("../templates/modality/src/data.rs")),
    ("src/views.rs", include_str!("../templates/modality/src/views.rs")),
    ("src/encoder.rs", include_str!("../templates/modality/src/encoder.rs")),
    ("src/objective.rs", include_str!("../templates/modality/src/objective.rs")),
    ("tests/train.rs", include_str!("../templates/modality/tests/train.rs")),
    ("tests/smoke.rs", include_str!("../templates/modality/tests/smoke.rs")),
    ("examples/pretrain.rs", include_str!("../templates/modality/examples/pretrain.rs")),
];

/// The files of a new crate, relative to its folder.
pub fn files(name: &str) -> Vec<(&'static str, String)> {
    let fill = |template: &str| {
        template
            .replace("@NAME@", name)
            .replace("@CRATE@", &format!("ssl-{name}"))
            .replace("@LIB@", &format!("ssl_{}", name.replace('-', "_")))
    };
    TEMPLATES.iter().map(|(path, text)| (*path, fill(text))).collect()
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

    // The templates are formatted for one name; another name's length can move line breaks.
    let sources: Vec<std::path::PathBuf> =
        files(name).iter().filter(|(p, _)| p.ends_with(".rs")).map(|(p, _)| dir.join(p)).collect();
    match std::process::Command::new("rustfmt")
        .arg("--edition=2021")
        .args(&sources)
        .current_dir(repo)
        .status()
    {
        Ok(s) if s.success() => {}
        _ => println!("new-crate: could not run rustfmt on the new files; run `cargo fmt` before committing"),
    }
    println!("new-crate: created {member}/");
    for (path, _) in files(name) {
        println!("new-crate:   {path}");
    }
    println!("new-crate: added {member} to the workspace members and default-members");
    println!("new-crate: next: `cargo test -p ssl-{name}`; then replace the toy data, encoder and objective");
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
