//! What the targets share: the fuzz input written to a file in a per-process scratch folder,
//! because the entry points under test are the ones users reach, which take paths.

// Included by path into every target; not every target uses every helper.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

/// The scratch folder of this fuzzing process (removed when the process ends normally).
pub fn scratch() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a scratch folder"))
}

/// Writes `bytes` to `name` in the scratch folder and returns its path.
pub fn file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch().path().join(name);
    std::fs::write(&path, bytes).expect("writing the fuzz input");
    path
}

/// Asserts that an error message names `path` (every bad-input error must).
pub fn names(message: &str, path: &std::path::Path) {
    let shown = path.display().to_string();
    assert!(message.contains(&shown), "the error `{message}` does not name {shown}");
}
