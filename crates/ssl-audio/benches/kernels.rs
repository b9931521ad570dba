//! Micro-benchmarks of the audio hot paths: the log-mel front end of a 1 s clip, wav2vec 2.0's
//! span masking of a batch, and distractor sampling for its contrastive loss.
//! `cargo bench -p ssl-audio` (or `cargo xtask bench micro`).

#![allow(missing_docs)] // criterion_group! generates an undocumented function

use criterion::{criterion_group, criterion_main, Criterion};
use ssl_audio::frontend::{LogMel, LogMelConfig};
use ssl_audio::masking::{sample_distractors, span_mask, SpanMaskConfig};
use ssl_core::rng::rng_for;

fn kernels(c: &mut Criterion) {
    let clip: Vec<f32> = (0..16_000).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
    let logmel = LogMel::new(LogMelConfig::default()).expect("log-mel");
    c.bench_function("log-mel 1 s at 16 kHz", |b| b.iter(|| logmel.compute(&clip).expect("log-mel")));
    let cfg = SpanMaskConfig::default();
    let mut rng = rng_for(0, "bench", &[]);
    let lengths = vec![49usize; 16];
    c.bench_function("span mask 16 x 49 frames", |b| {
        b.iter(|| span_mask(&cfg, &lengths, 49, &mut rng).expect("mask"))
    });
    c.bench_function("100 distractors for 400 positives", |b| {
        b.iter(|| sample_distractors(400, 100, &mut rng).expect("distractors"))
    });
}

criterion_group!(benches, kernels);
criterion_main!(benches);
