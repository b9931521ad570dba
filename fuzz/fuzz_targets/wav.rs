//! `ssl_audio::wav::read_wav` on arbitrary bytes: never a panic or an unbounded allocation; a
//! decoded file has a positive rate and finite samples; an error names the file.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::file("input.wav", data);
    match ssl_audio::wav::read_wav(&path) {
        Ok(wave) => {
            assert!(wave.sample_rate > 0);
            assert!(!wave.samples.is_empty());
            assert!(wave.samples.iter().all(|x| x.is_finite()));
            // Resampling what was decoded must not panic either.
            let _ = ssl_audio::wav::load_wav(&path, 16_000);
        }
        Err(e) => common::names(&e.to_string(), &path),
    }
});
