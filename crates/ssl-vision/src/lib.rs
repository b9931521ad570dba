//! # ssl-vision
//!
//! Vision methods: SimCLR, MoCo v2/v3, BYOL (ResNet backbones) and MAE, inpainting, rotation prediction (ViT).
//!
//! This crate depends on `ssl-core` and implements its traits (`Encoder`, `Objective`,
//! `Augmentation`, `Dataset`/`BatchBuilder`); the methods arrive with their own issues.
//! It builds today so that the workspace layout, its CI and its dependency rules are in place.

pub mod backbone;

pub use ssl_core;
