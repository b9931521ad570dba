//! # ssl-vision
//!
//! Vision methods: SimCLR, MoCo v2/v3, BYOL (ResNet backbones) and MAE, inpainting, rotation
//! prediction (ViT), built on `ssl-core`'s trait set.
//!
//! Available so far:
//! - [`augment`]: the view augmentations of SimCLR, MoCo v2, BYOL and MoCo v3 with the papers'
//!   exact presets;
//! - [`data`]: image folders (unlabelled, recursive; ImageFolder layout for labelled sets) with
//!   clear errors for unreadable files;
//! - [`shapes`]: the embedded, procedurally generated default dataset.
//!
//! The image datasets, the embedded default dataset and the methods themselves arrive with the
//! rest of the vision issue.

pub mod augment;
pub mod data;
pub mod shapes;

pub use ssl_core;
