//! # ssl-text
//!
//! Text methods: BERT-style masked language modelling and GPT-style autoregressive pretraining.
//!
//! Modules, one concept each:
//! - [`corpus`]: reading text files, JSONL and labelled JSONL, with UTF-8 errors that name the
//!   file and byte offset;
//! - [`tokenizer`]: WordPiece (BERT) and byte-level BPE (GPT-2) tokenizers, trained
//!   deterministically or loaded from `tokenizer.json`;
//! - [`pack`]: documents packed into fixed-length blocks with separators;
//! - [`tokens`]: packed blocks in memory or in a memory-mapped token file reused across runs;
//! - [`masking`]: BERT's 80/10/10 masking, optionally of whole words;
//! - [`batches`]: token blocks to BERT (masked) and GPT batches;
//! - [`model`]: pooling, initialisation and checks BERT and GPT share;
//! - [`bert`]: BERT-style masked language modelling;
//! - [`gpt`]: GPT-style autoregressive language modelling;
//! - [`generate`]: sampling from a GPT (temperature, top-k, top-p, KV cache);
//! - [`eval`]: held-out perplexity and masked accuracy with their unigram baselines, labelled
//!   text as tensors for the probes;
//! - [`hf`]: BERT and GPT-2 weights in the Hugging Face safetensors naming, both ways;
//! - [`grammar`]: the embedded default corpus, reviews from a probabilistic grammar with a
//!   sentiment label.

pub mod batches;
pub mod bert;
pub mod corpus;
pub mod eval;
pub mod generate;
pub mod gpt;
pub mod grammar;
pub mod hf;
pub mod masking;
pub mod model;
pub mod pack;
pub mod tokenizer;
pub mod tokens;

pub use ssl_core;
