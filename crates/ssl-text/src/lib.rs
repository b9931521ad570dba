//! # ssl-text
//!
//! Text methods: BERT-style masked language modelling and GPT-style autoregressive pretraining.
//!
//! Modules, one concept each:
//! - [`tokenizer`]: WordPiece (BERT) and byte-level BPE (GPT-2) tokenizers, trained or loaded
//!   from `tokenizer.json`;
//! - [`grammar`]: the embedded default corpus, reviews from a probabilistic grammar with a
//!   sentiment label.

pub mod grammar;
pub mod tokenizer;

pub use ssl_core;
