//! The text input pipeline alone: tokenisation of the embedded corpus with a byte-level BPE
//! (GPT-2's scheme) and a WordPiece (BERT's) tokenizer, on one thread and in batches on every
//! thread. `cargo xtask bench data` runs it; by hand:
//!
//! ```text
//! cargo run --release -p ssl-text --example text_data [-- --quick] [-- --json]
//! ```
//!
//! Each tokenizer is trained first (8000-token vocabulary, not timed); then the documents are
//! encoded one by one, and as one batch (the `tokenizers` crate parallelises batches).

use std::time::Instant;

use ssl_text::grammar::{documents, GrammarConfig, Split};
use ssl_text::ssl_core::metrics::PipelineThroughput;
use ssl_text::tokenizer::{TextTokenizer, TokenizerKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (json, quick) = (args.iter().any(|a| a == "--json"), args.iter().any(|a| a == "--quick"));
    let mut texts: Vec<String> =
        documents(&GrammarConfig::default(), Split::Train).into_iter().map(|d| d.text).collect();
    texts.truncate(if quick { 2000 } else { 20000 });
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (kind, name) in
        [(TokenizerKind::ByteLevelBpe, "byte-level BPE"), (TokenizerKind::WordPiece, "WordPiece")]
    {
        let tok = TextTokenizer::train(kind, texts.iter(), 8000)?;
        tok.encode(&texts[0])?; // warm-up
        let started = Instant::now();
        let mut tokens = 0usize;
        for t in &texts {
            tokens += tok.encode(t)?.len();
        }
        let single = tokens as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        let batch: usize = tok.encode_batch(&texts)?.iter().map(Vec::len).sum();
        let all = batch as f64 / started.elapsed().as_secs_f64();
        let pipeline = format!("tokenise, {name}");
        PipelineThroughput::new(&pipeline, "tokens", 1, single).print(json);
        PipelineThroughput::new(&pipeline, "tokens", threads, all).print(json);
    }
    Ok(())
}
