//! Checkpoints: model and optimiser tensors as safetensors, everything else as JSON, written
//! atomically.
//!
//! A checkpoint is a folder `checkpoints/step-00001000/` in the run directory:
//! - `model.safetensors`: every variable of the objective's store (parameters, EMA targets,
//!   BatchNorm statistics, queues);
//! - `optimizer.safetensors`: the optimiser's state tensors (`<param>.exp_avg`, ...);
//! - `state.json`: [`CheckpointMeta`]: step, loader position, seed, objective state, config;
//! - `SHA256SUMS`: the SHA-256 of the two tensor files, in `sha256sum`'s format (so
//!   `sha256sum -c SHA256SUMS` checks a checkpoint by hand too).
//!
//! It is written into a hidden temporary folder, every file and the folder are fsynced, and the
//! folder is renamed into place, so a crash leaves either the whole checkpoint or none of it.
//! [`load`] verifies the checksums: a corrupted or truncated tensor file is refused with an
//! error naming it and the previous checkpoint of the run, to resume from instead.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Device, Tensor};

use crate::data::LoaderPosition;
use crate::error::{Error, IoResultExt, Result};

/// The checkpoint format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const MODEL_FILE: &str = "model.safetensors";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const STATE_FILE: &str = "state.json";
const SUMS_FILE: &str = "SHA256SUMS";
const PREFIX: &str = "step-";

/// Everything in a checkpoint that is not a tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointMeta {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// The `ssl-core` version of the writer.
    pub ssl_version: String,
    /// The objective's name (`simclr`, ...).
    pub method: String,
    /// Optimiser steps completed.
    pub step: u64,
    /// The loader position of the next batch.
    pub loader: LoaderPosition,
    /// The run seed.
    pub seed: u64,
    /// Optimiser steps as counted by the optimiser (bias correction).
    pub optimizer_steps: u64,
    /// The objective's non-tensor state.
    pub objective_state: serde_json::Value,
    /// The resolved run configuration.
    pub config: serde_json::Value,
}

/// A checkpoint read back from disk.
#[derive(Debug)]
pub struct LoadedCheckpoint {
    /// Its folder.
    pub path: PathBuf,
    /// Its metadata.
    pub meta: CheckpointMeta,
    /// Model tensors by name (on the CPU).
    pub model: HashMap<String, Tensor>,
    /// Optimiser state tensors by name (on the CPU).
    pub optimizer: HashMap<String, Tensor>,
}

/// The folder holding a run's checkpoints.
pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).with_path(dir)
}

/// The SHA-256 of a file, in lowercase hex.
fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    let mut file = File::open(path).with_path(path)?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher).with_path(path)?;
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Checks the tensor files of checkpoint `dir` against its `SHA256SUMS`. A checkpoint written
/// before checksums existed (no such file) passes.
fn verify_checksums(dir: &Path) -> Result<()> {
    let sums = dir.join(SUMS_FILE);
    let previous = || {
        previous_checkpoint(dir)
            .map_or(String::new(), |p| format!("; the run's previous checkpoint is {}", p.display()))
    };
    let text = match fs::read(&sums) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&sums, e)),
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| {
            Error::checkpoint(&sums, format!("is not text: the file is corrupt{}", previous()))
        })?,
    };
    let mut listed = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        // `sha256sum` writes "HASH  NAME" (text mode) or "HASH *NAME" (binary mode).
        let parsed = line.split_once("  ").or_else(|| line.split_once(" *"));
        let Some((want, name)) = parsed else {
            return Err(Error::checkpoint(&sums, format!("malformed line `{line}`{}", previous())));
        };
        let file = dir.join(name);
        if !file.exists() {
            return Err(Error::checkpoint(&file, format!("file is missing{}", previous())));
        }
        if sha256_file(&file)? != want {
            let why = "does not match its checksum in SHA256SUMS: the file is corrupt or truncated";
            return Err(Error::checkpoint(&file, format!("{why}{}", previous())));
        }
        listed.push(name.to_string());
    }
    for name in [MODEL_FILE, OPTIMIZER_FILE] {
        if !listed.iter().any(|l| l == name) {
            let why = format!("has no checksum for {name}: the file is corrupt{}", previous());
            return Err(Error::checkpoint(&sums, why));
        }
    }
    Ok(())
}

/// The newest checkpoint older than `dir` in the same `checkpoints/` folder, if any.
fn previous_checkpoint(dir: &Path) -> Option<PathBuf> {
    let run = dir.parent()?.parent()?;
    let step: u64 = dir.file_name()?.to_str()?.strip_prefix(PREFIX)?.parse().ok()?;
    list(run).ok()?.into_iter().filter(|(s, _)| *s < step).map(|(_, p)| p).next_back()
}

fn write_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let cpu: Vec<(String, Tensor)> =
        tensors.iter().map(|(n, t)| (n.clone(), t.to_device(Device::Cpu).contiguous())).collect();
    Tensor::write_safetensors(&cpu, path)
        .map_err(|e| Error::checkpoint(path, format!("cannot write tensors: {e}")))?;
    File::open(path).and_then(|f| f.sync_all()).with_path(path)
}

/// Writes a checkpoint for `meta.step` under `run_dir/checkpoints/` and returns its folder.
/// An existing checkpoint of the same step is replaced.
pub fn save(
    run_dir: &Path,
    meta: &CheckpointMeta,
    model: &[(String, Tensor)],
    optimizer: &[(String, Tensor)],
) -> Result<PathBuf> {
    let dir = checkpoints_dir(run_dir);
    fs::create_dir_all(&dir).with_path(&dir)?;
    let name = format!("{PREFIX}{:08}", meta.step);
    let final_path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_path(&tmp)?;
    }
    fs::create_dir(&tmp).with_path(&tmp)?;
    let written = (|| {
        write_tensors(&tmp.join(MODEL_FILE), model)?;
        write_tensors(&tmp.join(OPTIMIZER_FILE), optimizer)?;
        let mut sums = String::new();
        for name in [MODEL_FILE, OPTIMIZER_FILE] {
            sums.push_str(&format!("{}  {name}\n", sha256_file(&tmp.join(name))?));
        }
        let sums_path = tmp.join(SUMS_FILE);
        fs::write(&sums_path, sums).with_path(&sums_path)?;
        File::open(&sums_path).and_then(|f| f.sync_all()).with_path(&sums_path)?;
        let state = tmp.join(STATE_FILE);
        let json = serde_json::to_vec_pretty(meta)
            .map_err(|e| Error::checkpoint(&state, format!("cannot serialise: {e}")))?;
        fs::write(&state, json).with_path(&state)?;
        File::open(&state).and_then(|f| f.sync_all()).with_path(&state)?;
        sync_dir(&tmp)
    })();
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    install_dir(&tmp, &final_path)?;
    Ok(final_path)
}

/// Moves the complete folder `tmp` to its sibling `dest`, replacing a folder already there:
/// the old one is renamed aside first and deleted last (put back if the move fails), so at
/// every moment a complete folder is at `dest` or beside it; the parent is then fsynced. Used
/// for checkpoints and for any output folder that must appear whole or not at all.
///
/// ```
/// let root = tempfile::tempdir()?;
/// let (tmp, dest) = (root.path().join(".new"), root.path().join("out"));
/// std::fs::create_dir_all(&dest)?;
/// std::fs::write(dest.join("old.txt"), "old")?;
/// std::fs::create_dir_all(&tmp)?;
/// std::fs::write(tmp.join("new.txt"), "new")?;
/// ssl_core::checkpoint::install_dir(&tmp, &dest)?;
/// assert!(dest.join("new.txt").exists() && !dest.join("old.txt").exists() && !tmp.exists());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn install_dir(tmp: &Path, dest: &Path) -> Result<()> {
    let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    let had_old = dest.exists();
    if had_old {
        fs::rename(dest, &old).with_path(dest)?;
    }
    if let Err(e) = fs::rename(tmp, dest) {
        if had_old {
            let _ = fs::rename(&old, dest);
        }
        return Err(Error::io(dest, e));
    }
    if had_old {
        let _ = fs::remove_dir_all(&old);
    }
    sync_dir(parent)
}

/// The complete checkpoints of a run, oldest first, as `(step, folder)`. Temporary folders of
/// interrupted writes are ignored.
pub fn list(run_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let dir = checkpoints_dir(run_dir);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for entry in fs::read_dir(&dir).with_path(&dir)? {
        let entry = entry.with_path(&dir)?;
        let name = entry.file_name();
        let Some(step) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)).and_then(|s| s.parse().ok())
        else {
            continue;
        };
        if entry.path().join(STATE_FILE).exists() {
            found.push((step, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// The newest complete checkpoint of a run.
pub fn latest(run_dir: &Path) -> Result<Option<PathBuf>> {
    Ok(list(run_dir)?.pop().map(|(_, p)| p))
}

/// Deletes all but the newest `keep_last` checkpoints (0 keeps all) and leftovers of
/// interrupted writes.
pub fn prune(run_dir: &Path, keep_last: usize) -> Result<()> {
    let dir = checkpoints_dir(run_dir);
    if keep_last > 0 {
        let all = list(run_dir)?;
        for (_, path) in all.iter().take(all.len().saturating_sub(keep_last)) {
            fs::remove_dir_all(path).with_path(path)?;
        }
    }
    if let Ok(entries) = fs::read_dir(&dir) {
        for e in entries.flatten() {
            let n = e.file_name();
            let n = n.to_string_lossy();
            if n.starts_with('.') && (n.contains(".tmp-") || n.contains(".old-")) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(())
}

/// Resolves what a user passed to `--resume`: a checkpoint folder, or a run directory (its
/// newest checkpoint).
pub fn resolve(path: &Path) -> Result<PathBuf> {
    if path.join(STATE_FILE).exists() {
        return Ok(path.to_path_buf());
    }
    if !path.exists() {
        return Err(Error::checkpoint(path, "does not exist"));
    }
    latest(path)?.ok_or_else(|| {
        Error::checkpoint(
            path,
            "is neither a checkpoint folder (no state.json) nor a run directory with checkpoints",
        )
    })
}

fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    if !path.exists() {
        return Err(Error::checkpoint(path, "file is missing"));
    }
    let tensors = Tensor::read_safetensors(path)
        .map_err(|e| Error::checkpoint(path, format!("corrupt or unreadable safetensors file: {e}")))?;
    Ok(tensors.into_iter().collect())
}

/// Reads a checkpoint folder (or a run directory's newest checkpoint), after checking its
/// tensor files against `SHA256SUMS`.
pub fn load(path: &Path) -> Result<LoadedCheckpoint> {
    let (path, meta) = load_meta(path)?;
    verify_checksums(&path)?;
    Ok(LoadedCheckpoint {
        model: read_tensors(&path.join(MODEL_FILE))?,
        optimizer: read_tensors(&path.join(OPTIMIZER_FILE))?,
        meta,
        path,
    })
}

/// The folder and metadata of a checkpoint (resolved as [`load`] does) without reading its
/// tensors: for deciding what to build before loading weights.
pub fn load_meta(path: &Path) -> Result<(PathBuf, CheckpointMeta)> {
    let path = resolve(path)?;
    let state = path.join(STATE_FILE);
    let text = fs::read_to_string(&state).with_path(&state)?;
    let meta: CheckpointMeta = serde_json::from_str(&text)
        .map_err(|e| Error::checkpoint(&state, format!("corrupt metadata: {e}")))?;
    if meta.format_version != FORMAT_VERSION {
        return Err(Error::checkpoint(
            &state,
            format!(
                "format version {} is not supported (this build reads {FORMAT_VERSION})",
                meta.format_version
            ),
        ));
    }
    Ok((path, meta))
}

/// All variables of a store, sorted by name (the order checkpoints use).
pub fn named_variables(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// Copies checkpoint tensors into a store. Every variable must be present with its shape, and
/// every tensor must match a variable; errors name the tensor and `source` (the file).
pub fn restore_variables(vs: &VarStore, tensors: &HashMap<String, Tensor>, source: &Path) -> Result<()> {
    let _guard = tch::no_grad_guard();
    let vars = named_variables(vs);
    // Every name and shape is checked before anything is copied: a mismatch leaves the model
    // as it was.
    for (name, var) in &vars {
        let src = tensors.get(name).ok_or_else(|| {
            Error::checkpoint(
                source,
                format!("tensor `{name}` is missing (was it saved from another model or config?)"),
            )
        })?;
        if src.size() != var.size() {
            return Err(Error::checkpoint(
                source,
                format!(
                    "shape mismatch for `{name}`: the model has {:?}, the checkpoint {:?}",
                    var.size(),
                    src.size()
                ),
            ));
        }
    }
    if tensors.len() != vars.len() {
        let known: std::collections::HashSet<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
        let mut extra: Vec<&String> = tensors.keys().filter(|k| !known.contains(k.as_str())).collect();
        extra.sort();
        if let Some(extra) = extra.first() {
            return Err(Error::checkpoint(
                source,
                format!("tensor `{extra}` matches no variable of the model"),
            ));
        }
    }
    for (name, var) in &vars {
        let mut dst = var.shallow_clone();
        dst.f_copy_(&tensors[name])
            .map_err(|e| Error::checkpoint(source, format!("cannot copy `{name}`: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Kind};

    fn meta(step: u64) -> CheckpointMeta {
        CheckpointMeta {
            format_version: FORMAT_VERSION,
            ssl_version: env!("CARGO_PKG_VERSION").into(),
            method: "test".into(),
            step,
            loader: LoaderPosition { epoch: 1, batch: 2 },
            seed: 9,
            optimizer_steps: step,
            objective_state: serde_json::json!({"ptr": 3}),
            config: serde_json::json!({}),
        }
    }

    fn store(init: f64, dim: i64) -> VarStore {
        let vs = VarStore::new(Device::Cpu);
        let _ = vs.root().var("w", &[dim, 2], nn::Init::Const(init));
        let _ = vs.root().zeros_no_train("running_mean", &[2]);
        vs
    }

    #[test]
    fn round_trip_keep_last_and_latest() {
        let dir = tempfile::tempdir().unwrap();
        let vs = store(1.5, 3);
        let opt = vec![("w.exp_avg".to_string(), Tensor::ones([3, 2], (Kind::Float, Device::Cpu)))];
        for step in [1, 2, 3] {
            save(dir.path(), &meta(step), &named_variables(&vs), &opt).unwrap();
        }
        prune(dir.path(), 2).unwrap();
        let steps: Vec<u64> = list(dir.path()).unwrap().into_iter().map(|(s, _)| s).collect();
        assert_eq!(steps, vec![2, 3]);
        let ck = load(dir.path()).unwrap();
        assert_eq!(ck.meta, meta(3));
        let other = store(0.0, 3);
        restore_variables(&other, &ck.model, &ck.path).unwrap();
        assert!(other.variables()["w"].equal(&vs.variables()["w"]));
        assert!(ck.optimizer["w.exp_avg"].equal(&opt[0].1));
    }

    #[test]
    fn shape_mismatch_missing_and_corrupt_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let vs = store(1.0, 3);
        let path = save(dir.path(), &meta(5), &named_variables(&vs), &[]).unwrap();
        let ck = load(&path).unwrap();
        let e = restore_variables(&store(0.0, 4), &ck.model, &ck.path).unwrap_err().to_string();
        assert!(e.contains("shape mismatch for `w`") && e.contains("step-00000005"), "{e}");
        // A mismatch found after a matching variable leaves that variable untouched too.
        let partial = VarStore::new(Device::Cpu);
        let _ = partial.root().zeros_no_train("running_mean", &[2]);
        let _ = partial.root().var("w", &[4, 2], nn::Init::Const(0.0));
        let mut model: HashMap<String, Tensor> =
            ck.model.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect();
        model.insert("running_mean".into(), Tensor::ones([2], (Kind::Float, Device::Cpu)));
        assert!(restore_variables(&partial, &model, &ck.path).is_err());
        assert_eq!(partial.variables()["running_mean"].sum(Kind::Float).double_value(&[]), 0.0);

        fs::write(path.join(MODEL_FILE), b"not a safetensors file").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("model.safetensors") && e.contains("corrupt"), "{e}");

        fs::write(path.join(STATE_FILE), b"{").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("state.json"), "{e}");

        let e = load(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("does not exist"), "{e}");
        let empty = tempfile::tempdir().unwrap();
        assert!(load(empty.path()).unwrap_err().to_string().contains("neither a checkpoint"));
    }

    #[test]
    fn checksums_catch_corrupt_and_truncated_files_and_name_the_previous_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let vs = store(1.0, 3);
        let opt = vec![("w.exp_avg".to_string(), Tensor::ones([3, 2], (Kind::Float, Device::Cpu)))];
        let first = save(dir.path(), &meta(1), &named_variables(&vs), &opt).unwrap();
        let second = save(dir.path(), &meta(2), &named_variables(&vs), &opt).unwrap();
        let sums = fs::read_to_string(second.join(SUMS_FILE)).unwrap();
        let entries: Vec<(&str, &str)> = sums.lines().filter_map(|l| l.split_once("  ")).collect();
        let names: Vec<&str> = entries.iter().map(|e| e.1).collect();
        assert_eq!(names, [MODEL_FILE, OPTIMIZER_FILE], "{sums}");
        assert!(
            entries.iter().all(|(h, _)| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())),
            "{sums}"
        );
        assert_eq!(entries[0].0, sha256_file(&second.join(MODEL_FILE)).unwrap());
        // One flipped byte inside a tensor: the file still parses, the checksum catches it.
        let model = second.join(MODEL_FILE);
        let mut bytes = fs::read(&model).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        fs::write(&model, &bytes).unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("model.safetensors") && e.contains("checksum"), "{e}");
        assert!(e.contains("step-00000001"), "the previous checkpoint is named: {e}");
        // ... which loads.
        assert_eq!(load(&first).unwrap().meta.step, 1);
        // A truncated optimizer file is refused the same way.
        let optim = first.join(OPTIMIZER_FILE);
        let len = fs::metadata(&optim).unwrap().len();
        fs::OpenOptions::new().write(true).open(&optim).unwrap().set_len(len / 2).unwrap();
        let e = load(&first).unwrap_err().to_string();
        assert!(e.contains("optimizer.safetensors") && e.contains("truncated"), "{e}");
        // An emptied SHA256SUMS checks nothing, so it is refused.
        let fresh = save(dir.path(), &meta(4), &named_variables(&vs), &opt).unwrap();
        fs::write(fresh.join(SUMS_FILE), "").unwrap();
        let e = load(&fresh).unwrap_err().to_string();
        assert!(e.contains("SHA256SUMS") && e.contains("no checksum"), "{e}");
        fs::remove_dir_all(&fresh).unwrap();
        // A checkpoint written before checksums existed still loads.
        let third = save(dir.path(), &meta(3), &named_variables(&vs), &opt).unwrap();
        fs::remove_file(third.join(SUMS_FILE)).unwrap();
        assert_eq!(load(&third).unwrap().meta.step, 3);
    }

    #[test]
    fn interrupted_writes_are_invisible_and_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let ck = checkpoints_dir(dir.path());
        fs::create_dir_all(ck.join(".step-00000009.tmp-123")).unwrap();
        fs::write(ck.join(".step-00000009.tmp-123").join(MODEL_FILE), b"partial").unwrap();
        assert!(latest(dir.path()).unwrap().is_none());
        save(dir.path(), &meta(1), &named_variables(&store(1.0, 1)), &[]).unwrap();
        prune(dir.path(), 0).unwrap();
        assert!(!ck.join(".step-00000009.tmp-123").exists());
        assert_eq!(list(dir.path()).unwrap().len(), 1);
    }
}
