//! # ssl-vision
//!
//! Vision methods, built on `ssl-core`'s trait set: SimCLR, MoCo v2/v3, BYOL (ResNet backbones),
//! MAE (ViT), and the classic pretext tasks inpainting, rotation prediction and autoencoders
//! (ResNet encoders).
//!
//! - [`augment`]: the view augmentations of SimCLR, MoCo v2, BYOL and MoCo v3 with the papers'
//!   exact presets;
//! - [`data`]: image folders (unlabelled, recursive; ImageFolder layout for labelled sets) with
//!   clear errors for unreadable files;
//! - [`shapes`]: the embedded, procedurally generated default dataset;
//! - [`backbone`]: ResNet-18/34/50 (ImageNet and small-image stems) and the Vision Transformer
//!   as `ssl_core::Encoder`s;
//! - [`views`]: augmented view batches for pretraining and labelled tensors for probes;
//! - [`simclr`], [`moco`] (v2 and v3) and [`byol`]: the pretext objectives, and [`method`]:
//!   the trait that drives any of them;
//! - [`mae`]: masked autoencoders on the ViT, and [`pictures`]: PNG grids of what they do;
//! - [`inpainting`] (Context Encoder), [`rotation`] (RotNet) and [`autoencoder`] (plain or
//!   denoising) on the ResNet, with [`decoder`], the up-convolution decoder they share;
//! - [`supervised`]: the same backbone trained with labels, the reference SSL is compared with.

pub mod augment;
pub mod autoencoder;
pub mod backbone;
pub mod byol;
pub mod data;
pub mod decoder;
pub mod inpainting;
pub mod mae;
pub mod method;
pub mod moco;
mod momentum;
pub mod pictures;
pub mod rotation;
pub mod shapes;
pub mod simclr;
pub mod supervised;
#[cfg(test)]
mod testutil;
pub mod views;

pub use ssl_core;
