//! The encoder: an MLP from a signal to its representation. Replace it with the architecture
//! your modality needs (it only has to implement [`Encoder`]).

use ssl_core::blocks::{MlpHead, MlpHeadConfig};
use ssl_core::tch::{nn, Tensor};
use ssl_core::{Encoder, Result};

/// `length → repr → repr` with batch norm and ReLU on the hidden layer.
pub struct MlpEncoder {
    net: MlpHead,
    out: i64,
}

impl MlpEncoder {
    /// An encoder under `path` for inputs of `in_dim` values.
    pub fn new(path: nn::Path<'_>, in_dim: i64, repr_dim: i64) -> Result<Self> {
        let cfg = MlpHeadConfig {
            layers: 2,
            batch_norm: true,
            hidden_dim: repr_dim,
            ..MlpHeadConfig::simclr(in_dim, repr_dim)
        };
        Ok(Self { net: MlpHead::new(path, &cfg)?, out: repr_dim })
    }
}

impl Encoder for MlpEncoder {
    fn output_dim(&self) -> i64 {
        self.out
    }

    fn encode(&self, input: &Tensor, train: bool) -> Tensor {
        self.net.forward_t(input, train)
    }
}
