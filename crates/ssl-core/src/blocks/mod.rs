//! Building blocks that self-supervised methods share, written once.
//!
//! Every method in ssl-rs assembles its model from these pieces instead of carrying its own copy:
//!
//! - [`init`]: in-place weight initialisers (truncated normal, Xavier, Kaiming, GPT-2 scaled
//!   residual init) that work on `VarStore` variables;
//! - [`transformer`]: a pre-LN transformer encoder block and stack (ViT, MAE, BERT-style
//!   encoders, data2vec) on top of libtorch's fused `scaled_dot_product_attention`;
//! - [`mlp`]: projection and prediction heads with presets for SimCLR, BYOL and MoCo v2/v3;
//! - [`posembed`]: fixed sine-cosine position embeddings, 1-D and MAE's 2-D layout;
//! - [`norm`]: BatchNorm whose statistics can span every process of a data-parallel job;
//! - [`ema`]: exponential moving averages of a parameter set, buffers included (BYOL, MoCo and
//!   DINO targets), and the cosine momentum schedule.
//!
//! **Blocks know no modality and no objective**: they take tensors and `nn::Path`s, never images,
//! tokens or losses. Parameter names mirror the common PyTorch checkpoints (`blocks.0.attn.qkv`,
//! `blocks.0.mlp.fc1`, ...) so weights can be mapped across by name.
//!
//! ```
//! use ssl_core::blocks::{MlpHead, MlpHeadConfig, Transformer, TransformerConfig};
//! use ssl_core::tch::{nn, Device, Kind, Tensor};
//!
//! let vs = nn::VarStore::new(Device::Cpu);
//! let encoder = Transformer::new(vs.root() / "encoder", &TransformerConfig::new(16, 2, 4))?;
//! let head = MlpHead::new(vs.root() / "head", &MlpHeadConfig::simclr(16, 8))?;
//!
//! let tokens = Tensor::randn([3, 5, 16], (Kind::Float, Device::Cpu));
//! let h = encoder.forward(&tokens, None, false, true); // [3, 5, 16]
//! let z = head.forward_t(&h.mean_dim(1, false, None), true); // [3, 8]
//! assert_eq!(z.size(), [3, 8]);
//! # Ok::<(), ssl_core::Error>(())
//! ```

pub mod ema;
pub mod init;
pub mod mlp;
pub mod norm;
pub mod posembed;
pub mod transformer;

pub use ema::{cosine_momentum, Ema};
pub use mlp::{Activation, MlpHead, MlpHeadConfig};
pub use posembed::{sincos_1d, sincos_2d};
pub use transformer::{
    InitScheme, KvCache, MlpActivation, NormPlacement, Transformer, TransformerBlock, TransformerConfig,
};
