//! Building blocks that self-supervised methods share, written once (work in progress).

pub mod init;
pub mod mlp;
pub mod posembed;
pub mod transformer;

pub use mlp::{Activation, MlpHead, MlpHeadConfig};
pub use posembed::{sincos_1d, sincos_2d};
pub use transformer::{InitScheme, Transformer, TransformerBlock, TransformerConfig};
