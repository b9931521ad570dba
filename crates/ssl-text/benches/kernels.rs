//! Micro-benchmarks of the text hot paths: BERT's 80/10/10 token masking of a 512-token block
//! and byte-level BPE tokenisation of a document.
//! `cargo bench -p ssl-text` (or `cargo xtask bench micro`).

#![allow(missing_docs)] // criterion_group! generates an undocumented function

use criterion::{criterion_group, criterion_main, Criterion};
use ssl_core::rng::rng_for;
use ssl_text::grammar::{documents, GrammarConfig, Split};
use ssl_text::masking::{mask_tokens, MaskingConfig};
use ssl_text::tokenizer::{TextTokenizer, TokenizerKind};

fn kernels(c: &mut Criterion) {
    let texts: Vec<String> =
        documents(&GrammarConfig::default(), Split::Train).into_iter().take(2000).map(|d| d.text).collect();
    let tok = TextTokenizer::train(TokenizerKind::ByteLevelBpe, texts.iter(), 2000).expect("tokenizer");
    let doc = texts.iter().take(20).cloned().collect::<Vec<_>>().join(" ");
    c.bench_function("byte-level BPE encode (20 documents)", |b| {
        b.iter(|| tok.encode(&doc).expect("encode"))
    });
    let block: Vec<u32> = (0..512u32).map(|i| 10 + i % 1900).collect();
    let special: Vec<bool> = (0..2000).map(|i| i < 5).collect();
    let continuation = vec![false; 2000];
    let cfg = MaskingConfig::default();
    let mut rng = rng_for(0, "bench", &[]);
    c.bench_function("BERT masking of 512 tokens", |b| {
        b.iter(|| mask_tokens(&block, &cfg, &special, &continuation, 4, &mut rng))
    });
}

criterion_group!(benches, kernels);
criterion_main!(benches);
