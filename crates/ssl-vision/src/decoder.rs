//! The convolutional decoder of the reconstruction pretext tasks (inpainting, autoencoders):
//! a feature map upsampled back to pixels.
//!
//! Each stage doubles the spatial size with a 4x4 transposed convolution of stride 2 ("up-
//! convolution", as in the Context Encoder of Pathak et al. 2016 and DCGAN's generator), then
//! BatchNorm and ReLU, and halves the channels (never below [`MIN_CHANNELS`]); a 3x3 convolution
//! maps the last stage to the output channels, with no activation: the targets are normalised
//! pixels, which take either sign.
//!
//! ```
//! use ssl_core::tch::{nn, Device, Kind, Tensor};
//! use ssl_vision::decoder::{ConvDecoder, ConvDecoderConfig};
//! let vs = nn::VarStore::new(Device::Cpu);
//! let cfg = ConvDecoderConfig { in_channels: 64, width: 32, upsamplings: 3, out_channels: 3 };
//! let dec = ConvDecoder::new(vs.root() / "decoder", &cfg)?;
//! let x = dec.f_forward_t(&Tensor::randn([2, 64, 4, 4], (Kind::Float, Device::Cpu)), true)?;
//! assert_eq!(x.size(), [2, 3, 32, 32]);
//! # Ok::<(), ssl_core::Error>(())
//! ```

use std::borrow::Borrow;

use serde::{Deserialize, Serialize};
use ssl_core::error::TorchResultExt;
use ssl_core::{Error, Result};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// The fewest channels a stage narrows to.
pub const MIN_CHANNELS: i64 = 8;

/// The decoder's shape. Unknown fields are errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvDecoderConfig {
    /// Channels of the feature map decoded.
    pub in_channels: i64,
    /// Channels of the first stage; each later stage halves them.
    pub width: i64,
    /// Stages, each doubling the side: `log2` of the encoder's output stride.
    pub upsamplings: u32,
    /// Channels of the output (3 for RGB).
    pub out_channels: i64,
}

impl ConvDecoderConfig {
    /// Checks every field; errors name it as `<prefix>.<field>`.
    pub fn validate(&self, prefix: &str) -> Result<()> {
        for (name, v) in
            [("in_channels", self.in_channels), ("width", self.width), ("out_channels", self.out_channels)]
        {
            if v < 1 {
                return Err(Error::config(
                    format!("{prefix}.{name}"),
                    format!("must be at least 1, got {v}"),
                ));
            }
        }
        if self.upsamplings > 6 {
            return Err(Error::config(
                format!("{prefix}.upsamplings"),
                format!("at most 6 (a 64x larger side), got {}", self.upsamplings),
            ));
        }
        Ok(())
    }

    /// Channels of stage `i`.
    fn stage_channels(&self, i: u32) -> i64 {
        (self.width >> i).max(MIN_CHANNELS.min(self.width))
    }
}

/// Transposed-convolution stages and an output convolution (see the module docs).
#[derive(Debug)]
pub struct ConvDecoder {
    stages: Vec<(nn::ConvTranspose2D, nn::BatchNorm)>,
    out: nn::Conv2D,
    config: ConvDecoderConfig,
}

impl ConvDecoder {
    /// Builds the decoder under `path` (`up.{i}.conv`, `up.{i}.bn`, `out`), after validating
    /// `cfg`. Weights take PyTorch's default initialisations.
    pub fn new<'a, P: Borrow<nn::Path<'a>>>(path: P, cfg: &ConvDecoderConfig) -> Result<Self> {
        cfg.validate("decoder")?;
        let path = path.borrow();
        let mut c_in = cfg.in_channels;
        let mut stages = Vec::with_capacity(cfg.upsamplings as usize);
        for i in 0..cfg.upsamplings {
            let c_out = cfg.stage_channels(i);
            let p = path / "up" / i;
            let up = nn::ConvTransposeConfig { stride: 2, padding: 1, bias: false, ..Default::default() };
            let conv = nn::conv_transpose2d(&p / "conv", c_in, c_out, 4, up);
            let bn = nn::batch_norm2d(&p / "bn", c_out, Default::default());
            stages.push((conv, bn));
            c_in = c_out;
        }
        let out = nn::conv2d(
            path / "out",
            c_in,
            cfg.out_channels,
            3,
            nn::ConvConfig { padding: 1, ..Default::default() },
        );
        Ok(Self { stages, out, config: cfg.clone() })
    }

    /// The config the decoder was built from.
    pub fn config(&self) -> &ConvDecoderConfig {
        &self.config
    }

    /// Decodes `x: [B, in_channels, h, w]` to `[B, out_channels, h · 2^u, w · 2^u]` (`u` the
    /// upsamplings); `train` switches BatchNorm to batch statistics.
    pub fn f_forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let size = x.size();
        if size.len() != 4 || size[1] != self.config.in_channels {
            let expected = format!("[B, {}, h, w]", self.config.in_channels);
            return Err(Error::shape("decoder input", expected, &size));
        }
        let mut h = x.shallow_clone();
        for (conv, bn) in &self.stages {
            h = bn.forward_t(&conv.forward_t(&h, train), train).f_relu().torch_context("decoder stage")?;
        }
        Ok(self.out.forward_t(&h, train))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn stages_halve_the_channels_down_to_the_floor_and_errors_name_fields() {
        let cfg = ConvDecoderConfig { in_channels: 4, width: 32, upsamplings: 4, out_channels: 3 };
        assert_eq!((0..4).map(|i| cfg.stage_channels(i)).collect::<Vec<_>>(), [32, 16, 8, 8]);
        let vs = nn::VarStore::new(Device::Cpu);
        let dec = ConvDecoder::new(vs.root(), &cfg).unwrap();
        assert!(vs.variables().contains_key("up.3.bn.running_var"));
        let y = dec.f_forward_t(&Tensor::zeros([1, 4, 1, 2], (Kind::Float, Device::Cpu)), false).unwrap();
        assert_eq!(y.size(), [1, 3, 16, 32]);
        let e = dec.f_forward_t(&Tensor::zeros([1, 5, 2, 2], (Kind::Float, Device::Cpu)), false).unwrap_err();
        assert!(e.to_string().contains("decoder input"), "{e}");
        let bad = ConvDecoderConfig { width: 0, ..cfg };
        assert!(bad.validate("model.decoder").unwrap_err().to_string().contains("model.decoder.width"));
    }
}
