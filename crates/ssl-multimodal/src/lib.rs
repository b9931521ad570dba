//! # ssl-multimodal
//!
//! Image-text methods: CLIP with zero-shot classification and retrieval.
//!
//! This crate depends on `ssl-core` and implements its traits (`Encoder`, `Objective`,
//! `Augmentation`, `Dataset`/`BatchBuilder`); the methods arrive with their own issues.
//! It builds today so that the workspace layout, its CI and its dependency rules are in place.

pub use ssl_core;
