//! # ssl-text
//!
//! Text methods: BERT-style masked language modelling and GPT-style autoregressive pretraining.
//!
//! This crate depends on `ssl-core` and implements its traits (`Encoder`, `Objective`,
//! `Augmentation`, `Dataset`/`BatchBuilder`); the methods arrive with their own issues.
//! It builds today so that the workspace layout, its CI and its dependency rules are in place.

pub use ssl_core;
