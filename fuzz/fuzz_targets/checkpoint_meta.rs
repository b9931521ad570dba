//! `ssl_core::checkpoint::load` on a checkpoint folder whose `state.json`, `SHA256SUMS` and
//! tensor files are arbitrary bytes (split at 0xFF): never a panic; a loaded checkpoint has
//! the supported format version; an error names the checkpoint.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0xff);
    let (state, sums, tensors) =
        (parts.next().unwrap_or_default(), parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let dir = common::scratch().path().join("run/checkpoints/step-00000001");
    std::fs::create_dir_all(&dir).expect("creating the checkpoint folder");
    for (name, bytes) in [
        ("state.json", state),
        ("SHA256SUMS", sums),
        ("model.safetensors", tensors),
        ("optimizer.safetensors", tensors),
    ] {
        std::fs::write(dir.join(name), bytes).expect("writing the checkpoint");
    }
    match ssl_core::checkpoint::load_meta(&dir) {
        Ok((_, meta)) => assert_eq!(meta.format_version, ssl_core::checkpoint::FORMAT_VERSION),
        Err(e) => common::names(&e.to_string(), &dir),
    }
    match ssl_core::checkpoint::load(&dir) {
        Ok(ck) => assert_eq!(ck.meta.format_version, ssl_core::checkpoint::FORMAT_VERSION),
        Err(e) => common::names(&e.to_string(), &dir),
    }
    // A run directory resolves to its newest checkpoint: the same checks apply.
    if let Err(e) = ssl_core::checkpoint::load(&common::scratch().path().join("run")) {
        common::names(&e.to_string(), &common::scratch().path().join("run"));
    }
});
