//! `ssl_vision::data::decode` (the image check every folder dataset runs: empty files, huge
//! declared dimensions, truncated or corrupt data) on arbitrary bytes under the names of every
//! format it accepts: never a panic; an error names the file.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else { return };
    let ext = ["png", "jpg", "jpeg", "bmp", "gif", "webp", "tif"][pick as usize % 7];
    let path = common::file(&format!("input.{ext}"), bytes);
    match ssl_vision::data::decode(&path, Some(8)) {
        Ok(img) => assert!(img.width() >= 8 && img.height() >= 8),
        Err(e) => common::names(&e.to_string(), &path),
    }
});
