//! The strided 1-D convolution stack both methods put on raw waveforms, and what goes with it:
//! frame counts, frame-level padding masks, masked mean pooling.
//!
//! wav2vec 2.0: 7 layers of 512 channels, kernels (10,3,3,3,3,2,2), strides (5,2,2,2,2,2,2)
//! (a 25 ms receptive field every 20 ms at 16 kHz), no biases, GroupNorm with one group per
//! channel on the first layer, GELU. CPC: 5 layers of 512, kernels (10,8,4,4,4), strides
//! (5,4,2,2,2) (every 10 ms), ReLU.
//!
//! ```
//! use ssl_audio::conv::{ConvConfig, ConvStack};
//! use ssl_core::tch::{nn, Device, Kind, Tensor};
//! let cfg = ConvConfig::wav2vec2();
//! assert_eq!(cfg.frames(16_000), 49); // one second: 49 frames of 20 ms
//! assert_eq!(ConvConfig::cpc().frames(16_000), 98);
//! let vs = nn::VarStore::new(Device::Cpu);
//! let small = ConvConfig { channels: 8, ..ConvConfig::wav2vec2() };
//! let conv = ConvStack::new(vs.root(), &small)?;
//! let z = conv.forward(&Tensor::randn([2, 4000], (Kind::Float, Device::Cpu)))?;
//! assert_eq!(z.size(), [2, 8, small.frames(4000)]);
//! # Ok::<(), ssl_core::Error>(())
//! ```

use std::borrow::Borrow;

use serde::{Deserialize, Serialize};
use ssl_core::blocks::init;
use ssl_core::error::TorchResultExt;
use ssl_core::{Error, Result};
use tch::{nn, Kind, Tensor};

/// The non-linearity after each convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvActivation {
    /// GELU (wav2vec 2.0).
    Gelu,
    /// ReLU (CPC).
    Relu,
}

/// How the convolutions are normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvNorm {
    /// None.
    None,
    /// GroupNorm with one group per channel on the first layer only (wav2vec 2.0 base,
    /// fairseq's `extractor_mode = "default"`).
    FirstLayerGroupNorm,
    /// LayerNorm over channels on every layer (wav2vec 2.0 large's `layer_norm` mode, and the
    /// "channel norm" CPC variants use).
    ChannelLayerNorm,
}

/// A convolution stack: `model.conv` of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvConfig {
    /// Channels of every layer.
    pub channels: i64,
    /// Kernel widths, one per layer.
    pub kernels: Vec<i64>,
    /// Strides, one per layer.
    pub strides: Vec<i64>,
    /// Convolution biases (wav2vec 2.0: none).
    pub bias: bool,
    /// Normalisation.
    pub norm: ConvNorm,
    /// Non-linearity.
    pub activation: ConvActivation,
}

impl ConvConfig {
    /// wav2vec 2.0's feature encoder.
    pub fn wav2vec2() -> Self {
        Self {
            channels: 512,
            kernels: vec![10, 3, 3, 3, 3, 2, 2],
            strides: vec![5, 2, 2, 2, 2, 2, 2],
            bias: false,
            norm: ConvNorm::FirstLayerGroupNorm,
            activation: ConvActivation::Gelu,
        }
    }

    /// CPC's encoder.
    pub fn cpc() -> Self {
        Self {
            channels: 512,
            kernels: vec![10, 8, 4, 4, 4],
            strides: vec![5, 4, 2, 2, 2],
            bias: true,
            norm: ConvNorm::None,
            activation: ConvActivation::Relu,
        }
    }

    /// Checks the fields; errors name them as `model.conv.*`.
    pub fn validate(&self) -> Result<()> {
        if self.channels < 1 {
            return Err(Error::config("model.conv.channels", "must be at least 1"));
        }
        if self.kernels.is_empty() || self.kernels.len() != self.strides.len() {
            return Err(Error::config("model.conv", "kernels and strides need the same, non-zero length"));
        }
        if self.kernels.iter().chain(&self.strides).any(|&k| k < 1) {
            return Err(Error::config("model.conv", "kernels and strides must be at least 1"));
        }
        Ok(())
    }

    /// Output frames for `samples` input samples (0 when too short).
    pub fn frames(&self, samples: i64) -> i64 {
        self.kernels
            .iter()
            .zip(&self.strides)
            .fold(samples, |n, (&k, &s)| if n < k { 0 } else { (n - k) / s + 1 })
    }

    /// Samples between frames (the product of strides).
    pub fn hop(&self) -> i64 {
        self.strides.iter().product()
    }

    /// The receptive field of one frame in samples.
    pub fn receptive_field(&self) -> i64 {
        let (mut field, mut jump) = (1, 1);
        for (&k, &s) in self.kernels.iter().zip(&self.strides) {
            field += (k - 1) * jump;
            jump *= s;
        }
        field
    }
}

/// A built convolution stack.
#[derive(Debug)]
pub struct ConvStack {
    cfg: ConvConfig,
    convs: Vec<nn::Conv1D>,
    norms: Vec<Option<nn::GroupNorm>>,
    layer_norms: Vec<Option<nn::LayerNorm>>,
}

impl ConvStack {
    /// Builds the stack under `path` (`conv_layers.{i}.conv`, `.norm`); weights are Kaiming
    /// normal as in fairseq.
    pub fn new<'a, P: Borrow<nn::Path<'a>>>(path: P, cfg: &ConvConfig) -> Result<Self> {
        cfg.validate()?;
        let p = path.borrow();
        let (mut convs, mut norms, mut layer_norms) = (Vec::new(), Vec::new(), Vec::new());
        let mut c_in = 1;
        for (i, (&k, &s)) in cfg.kernels.iter().zip(&cfg.strides).enumerate() {
            let lp = p / "conv_layers" / i;
            let mut conv = nn::conv1d(
                &lp / "conv",
                c_in,
                cfg.channels,
                k,
                nn::ConvConfig { stride: s, bias: cfg.bias, ..Default::default() },
            );
            init::kaiming_normal_(&mut conv.ws)?;
            if let Some(b) = &mut conv.bs {
                init::zeros_(b)?;
            }
            convs.push(conv);
            norms.push(
                (cfg.norm == ConvNorm::FirstLayerGroupNorm && i == 0)
                    .then(|| nn::group_norm(&lp / "norm", cfg.channels, cfg.channels, Default::default())),
            );
            layer_norms.push(
                (cfg.norm == ConvNorm::ChannelLayerNorm)
                    .then(|| nn::layer_norm(&lp / "norm", vec![cfg.channels], Default::default())),
            );
            c_in = cfg.channels;
        }
        Ok(Self { cfg: cfg.clone(), convs, norms, layer_norms })
    }

    /// The config.
    pub fn config(&self) -> &ConvConfig {
        &self.cfg
    }

    /// `[B, T]` waveforms to `[B, C, frames(T)]` features; too short an input is an error.
    pub fn forward(&self, wave: &Tensor) -> Result<Tensor> {
        let size = wave.size();
        let [_, t] = size[..] else {
            return Err(Error::shape("waveform batch", "[B, T]", &size));
        };
        if self.cfg.frames(t) < 1 {
            return Err(Error::invalid(
                "waveform",
                format!("{t} samples are shorter than one frame ({} samples)", self.cfg.receptive_field()),
            ));
        }
        let mut x = wave.unsqueeze(1);
        for ((conv, gn), ln) in self.convs.iter().zip(&self.norms).zip(&self.layer_norms) {
            x = x.apply(conv);
            if let Some(gn) = gn {
                x = x.apply(gn);
            }
            if let Some(ln) = ln {
                x = x.transpose(1, 2).apply(ln).transpose(1, 2);
            }
            x = match self.cfg.activation {
                ConvActivation::Gelu => x.f_gelu("none"),
                ConvActivation::Relu => x.f_relu(),
            }
            .torch_context("conv feature encoder")?;
        }
        Ok(x)
    }

    /// The frame-level mask `[B, frames]` of a sample-level mask `[B, T]` (true for real):
    /// a frame is real when the real samples reach its end.
    pub fn frame_mask(&self, sample_mask: &Tensor) -> Tensor {
        let t = sample_mask.size()[1];
        let frames = self.cfg.frames(t);
        let real = sample_mask.sum_dim_intlist(1, false, Kind::Int64);
        let lengths: Vec<i64> = Vec::<i64>::try_from(&real).unwrap_or_default();
        let counts: Vec<i64> = lengths.iter().map(|&n| self.cfg.frames(n)).collect();
        let counts = Tensor::from_slice(&counts).to_device(sample_mask.device()).unsqueeze(1);
        Tensor::arange(frames, (Kind::Int64, sample_mask.device())).unsqueeze(0).lt_tensor(&counts)
    }
}

/// The mean of `h: [B, T, D]` over the frames where `mask: [B, T]` is true (at least one
/// frame counted).
pub fn masked_mean(h: &Tensor, mask: &Tensor) -> Tensor {
    let w = mask.to_kind(h.kind()).unsqueeze(-1);
    (h * &w).sum_dim_intlist(1, false, h.kind()) / w.sum_dim_intlist(1, false, h.kind()).clamp_min(1.0)
}

/// Scales the gradient flowing back through `x` by `scale` (identity forward): fairseq's
/// `GradMultiply`, which wav2vec 2.0 applies to the feature encoder (0.1).
pub fn scale_grad(x: &Tensor, scale: f64) -> Tensor {
    if scale == 1.0 {
        return x.shallow_clone();
    }
    x * scale + x.detach() * (1.0 - scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn frame_counts_and_receptive_fields_match_the_papers() {
        let w = ConvConfig::wav2vec2();
        assert_eq!((w.hop(), w.receptive_field()), (320, 400)); // 20 ms hop, 25 ms window
        let c = ConvConfig::cpc();
        assert_eq!((c.hop(), c.receptive_field()), (160, 465));
        assert_eq!(w.frames(399), 0);
        assert_eq!(w.frames(400), 1);
    }

    #[test]
    fn frame_masks_follow_the_real_samples() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = ConvConfig { channels: 4, ..ConvConfig::wav2vec2() };
        let conv = ConvStack::new(vs.root(), &cfg).unwrap();
        let idx = Tensor::arange(8000, (Kind::Int64, Device::Cpu)).unsqueeze(0);
        let mask = Tensor::cat(&[idx.lt(8000), idx.lt(3000)], 0);
        let fm = conv.frame_mask(&mask);
        assert_eq!(fm.size(), [2, cfg.frames(8000)]);
        let counts = Vec::<i64>::try_from(fm.sum_dim_intlist(1, false, Kind::Int64)).unwrap();
        assert_eq!(counts, [cfg.frames(8000), cfg.frames(3000)]);
    }

    #[test]
    fn gradient_scaling_is_identity_forward_and_scales_backward() {
        let x = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let y = scale_grad(&x, 0.1);
        assert!(y.equal(&x.detach()));
        y.sum(Kind::Float).backward();
        assert!((x.grad() - 0.1).abs().max().double_value(&[]) < 1e-7);
    }

    #[test]
    fn too_short_inputs_are_errors() {
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = ConvStack::new(vs.root(), &ConvConfig { channels: 2, ..ConvConfig::cpc() }).unwrap();
        let e = conv.forward(&Tensor::zeros([1, 100], (Kind::Float, Device::Cpu))).unwrap_err();
        assert!(e.to_string().contains("shorter than one frame"), "{e}");
    }
}
