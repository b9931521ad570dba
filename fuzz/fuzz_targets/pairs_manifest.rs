//! `ssl_multimodal::pairs::PairFiles::open` (CLIP's CSV, TSV and JSONL manifests) on arbitrary
//! text, strict and skipping: never a panic; every kept pair has a caption and an existing
//! image; an error names the manifest.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ssl_multimodal::pairs::{ManifestOptions, PairFiles};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else { return };
    let ext = ["csv", "tsv", "jsonl"][pick as usize % 3];
    // One image the manifest may point at (`a.png`); anything else it names is missing.
    let image = common::scratch().path().join("a.png");
    if !image.exists() {
        let png = include_bytes!("../fixtures/tiny.png");
        std::fs::write(&image, png).expect("writing the image");
    }
    let path = common::file(&format!("pairs.{ext}"), bytes);
    for skip_bad in [false, true] {
        let options = ManifestOptions { skip_bad, ..Default::default() };
        match PairFiles::open(&path, &options) {
            Ok(pairs) => {
                for (image, caption) in pairs.pairs() {
                    assert!(!caption.trim().is_empty(), "an empty caption was kept");
                    assert!(image.exists(), "a missing image was kept: {}", image.display());
                }
            }
            Err(e) => common::names(&e.to_string(), &path),
        }
    }
});
