//! Autoencoders, plain and denoising: "Extracting and Composing Robust Features with Denoising
//! Autoencoders" (Vincent, Larochelle, Bengio, Manzagol, ICML 2008) and "Stacked Denoising
//! Autoencoders" (Vincent et al., JMLR 2010).
//!
//! A convolutional encoder maps the image to one vector, the bottleneck (the ResNet's globally
//! pooled output, the representation probed); a linear layer spreads it over a small grid and a
//! decoder of up-convolutions ([`ConvDecoder`]) rebuilds the image; the loss is the mean squared
//! error over all pixels. A denoising autoencoder corrupts the input first ([`Corruption`]) and
//! still reconstructs the clean image, so it must learn what images look like rather than copy
//! them; the plain one (`Corruption::None`) relies on the bottleneck alone. The encoder sees clean
//! images at evaluation.
//!
//! ```
//! use ssl_core::{Objective, StepContext};
//! use ssl_core::tch::{Device, Kind, Tensor};
//! use ssl_vision::autoencoder::{Autoencoder, AutoencoderConfig};
//! let mut model = Autoencoder::new(&AutoencoderConfig::test(), Device::Cpu)?;
//! let ctx = StepContext { step: 0, total_steps: 1, micro_step: 0, device: Device::Cpu };
//! let out = model.forward(&vec![Tensor::randn([2, 3, 16, 16], (Kind::Float, Device::Cpu))], &ctx)?;
//! assert!(out.loss.double_value(&[]) > 0.0);
//! # Ok::<(), ssl_core::Error>(())
//! ```

use serde::{Deserialize, Serialize};
use ssl_core::error::TorchResultExt;
use ssl_core::{Encoder, Error, LossOutput, Objective, Result, StepContext};
use tch::{nn, nn::Module, Device, Kind, Tensor};

use crate::backbone::{ResNet, ResNetConfig};
use crate::decoder::{ConvDecoder, ConvDecoderConfig};

/// How a denoising autoencoder corrupts its input (in normalised pixel space, where 0 is the
/// dataset mean).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Corruption {
    /// No corruption: a plain autoencoder.
    None,
    /// Additive isotropic Gaussian noise of standard deviation `std`.
    Gaussian {
        /// The noise's standard deviation, > 0.
        std: f64,
    },
    /// Masking noise: each pixel (all its channels) set to 0 with probability `prob`, the
    /// papers' main corruption.
    Masking {
        /// The fraction of pixels zeroed, in `(0, 1)`.
        prob: f64,
    },
}

impl Default for Corruption {
    /// Masking noise on 25% of the pixels (one of the papers' settings for images).
    fn default() -> Self {
        Corruption::Masking { prob: 0.25 }
    }
}

impl Corruption {
    /// Checks the fields; errors name them as `model.corruption.<field>`.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Corruption::None => Ok(()),
            Corruption::Gaussian { std } if std.is_finite() && std > 0.0 => Ok(()),
            Corruption::Gaussian { std } => {
                Err(Error::config("model.corruption.std", format!("must be > 0, got {std}")))
            }
            Corruption::Masking { prob } if prob > 0.0 && prob < 1.0 => Ok(()),
            Corruption::Masking { prob } => {
                Err(Error::config("model.corruption.prob", format!("must be in (0, 1), got {prob}")))
            }
        }
    }

    /// Corrupts `images: [N, C, H, W]` with libtorch's generator.
    ///
    /// ```
    /// use ssl_core::tch::{Device, Kind, Tensor};
    /// use ssl_vision::autoencoder::Corruption;
    /// let x = Tensor::ones([1, 3, 32, 32], (Kind::Float, Device::Cpu));
    /// let y = Corruption::Masking { prob: 0.25 }.apply(&x)?;
    /// let zeroed = y.eq(0.0).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
    /// assert!((zeroed - 0.25).abs() < 0.05);
    /// assert!(Corruption::None.apply(&x)?.equal(&x));
    /// # Ok::<(), ssl_core::Error>(())
    /// ```
    pub fn apply(&self, images: &Tensor) -> Result<Tensor> {
        self.validate()?;
        let size = images.size();
        if size.len() != 4 {
            return Err(Error::shape("images", "[N, C, H, W]", &size));
        }
        match *self {
            Corruption::None => Ok(images.shallow_clone()),
            Corruption::Gaussian { std } => images
                .f_randn_like()
                .and_then(|n| images.f_add(&n.f_mul_scalar(std)?))
                .torch_context("gaussian corruption"),
            Corruption::Masking { prob } => {
                Tensor::f_rand([size[0], 1, size[2], size[3]], (Kind::Float, images.device()))
                    .and_then(|u| u.f_ge(prob))
                    .and_then(|keep| images.f_mul(&keep.f_to_kind(images.kind())?))
                    .torch_context("masking corruption")
            }
        }
    }
}

/// The autoencoder. Unknown fields are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoencoderConfig {
    /// The encoder; its pooled output is the bottleneck.
    pub backbone: ResNetConfig,
    /// The side of the images in pixels (the decoder is built for one size); a multiple of the
    /// encoder's output stride (8 with the small-image stem, 32 with the ImageNet one).
    pub image_size: i64,
    /// Channels of the grid the bottleneck is spread over and of the decoder's first
    /// up-convolution (halved at each later one).
    pub decoder_width: i64,
    /// The input corruption (denoising), or none.
    pub corruption: Corruption,
}

impl Default for AutoencoderConfig {
    /// ResNet-18 with the small-image stem at 32 px, a decoder 256 wide, masking noise on 25%
    /// of the pixels.
    fn default() -> Self {
        Self {
            backbone: ResNetConfig { small_images: true, ..ResNetConfig::resnet18() },
            image_size: 32,
            decoder_width: 256,
            corruption: Corruption::default(),
        }
    }
}

impl AutoencoderConfig {
    /// A tiny model for 16 px tests.
    pub fn test() -> Self {
        Self { backbone: ResNetConfig::tiny(), image_size: 16, decoder_width: 16, ..Default::default() }
    }

    /// Checks every field; errors name it (`model.image_size`, `model.corruption.prob`).
    pub fn validate(&self) -> Result<()> {
        self.backbone.validate()?;
        self.corruption.validate()?;
        if self.decoder_width < 1 {
            return Err(Error::config(
                "model.decoder_width",
                format!("must be at least 1, got {}", self.decoder_width),
            ));
        }
        let s = self.backbone.output_stride();
        if self.image_size < s || self.image_size % s != 0 {
            return Err(Error::config(
                "model.image_size",
                format!(
                    "must be a positive multiple of the encoder's output stride {s}, got {}",
                    self.image_size
                ),
            ));
        }
        Ok(())
    }

    fn decoder(&self) -> ConvDecoderConfig {
        ConvDecoderConfig {
            in_channels: self.decoder_width,
            width: self.decoder_width,
            upsamplings: self.backbone.output_stride().ilog2(),
            out_channels: self.backbone.in_channels,
        }
    }
}

/// A ResNet encoder, a linear layer from the bottleneck to a grid, an up-convolution decoder.
pub struct Autoencoder {
    vs: nn::VarStore,
    backbone: ResNet,
    expand: nn::Linear,
    decoder: ConvDecoder,
    config: AutoencoderConfig,
}

impl Autoencoder {
    /// A freshly initialised model on `device` (seed libtorch first for a reproducible init):
    /// `backbone.*`, `expand` and `decoder.*`.
    pub fn new(cfg: &AutoencoderConfig, device: Device) -> Result<Self> {
        cfg.validate()?;
        let vs = nn::VarStore::new(device);
        let backbone = ResNet::new(vs.root() / "backbone", &cfg.backbone)?;
        let grid = cfg.image_size / cfg.backbone.output_stride();
        let expand = nn::linear(
            vs.root() / "expand",
            cfg.backbone.output_dim(),
            cfg.decoder_width * grid * grid,
            Default::default(),
        );
        let decoder = ConvDecoder::new(vs.root() / "decoder", &cfg.decoder())?;
        Ok(Self { vs, backbone, expand, decoder, config: cfg.clone() })
    }

    /// The corrupted input and its reconstruction (`train` for BatchNorm).
    fn run(&self, images: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        let (s, size) = (self.config.image_size, images.size());
        if size.len() != 4 || size[1] != self.config.backbone.in_channels || size[2] != s || size[3] != s {
            let expected =
                format!("[N, {}, {s}, {s}] (model.image_size = {s})", self.config.backbone.in_channels);
            return Err(Error::shape("autoencoder input", expected, &size));
        }
        let corrupted = self.config.corruption.apply(images)?;
        let z = self.backbone.f_forward_t(&corrupted, train)?;
        let grid = s / self.config.backbone.output_stride();
        let h = self
            .expand
            .forward(&z)
            .f_relu()
            .and_then(|h| h.f_view([size[0], self.config.decoder_width, grid, grid]))
            .torch_context("bottleneck to grid")?;
        Ok((corrupted, self.decoder.f_forward_t(&h, train)?))
    }

    /// `[original, corrupted, reconstruction]` of `images` (normalised, `[N, C, S, S]`), in
    /// evaluation mode without gradients, for pictures.
    pub fn reconstruct(&self, images: &Tensor) -> Result<[Tensor; 3]> {
        let (corrupted, reconstruction) = tch::no_grad(|| self.run(images, false))?;
        Ok([images.shallow_clone(), corrupted, reconstruction])
    }
}

impl Objective for Autoencoder {
    /// `[images]`: one augmented view; the corruption is applied here.
    type Batch = Vec<Tensor>;

    fn name(&self) -> &str {
        "autoencoder"
    }

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn forward(&mut self, batch: &Vec<Tensor>, _ctx: &StepContext) -> Result<LossOutput> {
        let images = crate::views::one_view(batch, "the autoencoder")?;
        let (_, reconstruction) = self.run(images, true)?;
        let loss =
            reconstruction.f_mse_loss(images, tch::Reduction::Mean).torch_context("reconstruction loss")?;
        Ok(LossOutput::new(loss))
    }

    fn encoder(&self) -> &dyn Encoder {
        &self.backbone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn masking_zeroes_whole_pixels_and_keeps_the_rest(n in 1i64..3, side in 1i64..12, prob in 0.05f64..0.95, seed in 0i64..1000) {
            tch::manual_seed(seed);
            let x = Tensor::rand([n, 3, side, side], (Kind::Float, Device::Cpu)) + 0.5; // never 0
            let y = Corruption::Masking { prob }.apply(&x).unwrap();
            let zero = y.eq(0.0);
            // A pixel is zeroed in all channels or none, and kept pixels are untouched.
            let per_pixel = zero.to_kind(Kind::Int64).sum_dim_intlist([1].as_slice(), false, Kind::Int64);
            prop_assert!(per_pixel.eq(0).logical_or(&per_pixel.eq(3)).all().int64_value(&[]) == 1);
            prop_assert!(y.where_self(&zero.logical_not(), &x).equal(&x));
        }

        #[test]
        fn gaussian_noise_has_the_configured_spread(std in 0.1f64..2.0, seed in 0i64..1000) {
            tch::manual_seed(seed);
            let x = Tensor::zeros([4, 3, 16, 16], (Kind::Float, Device::Cpu));
            let y = Corruption::Gaussian { std }.apply(&x).unwrap();
            let measured = y.std(true).double_value(&[]);
            prop_assert!((measured / std - 1.0).abs() < 0.1, "std {} measured {}", std, measured);
        }
    }

    #[test]
    fn configs_and_inputs_are_checked_with_field_names() {
        let bad = AutoencoderConfig { image_size: 20, ..AutoencoderConfig::test() };
        assert!(bad.validate().unwrap_err().to_string().contains("model.image_size"));
        let bad =
            AutoencoderConfig { corruption: Corruption::Masking { prob: 1.0 }, ..AutoencoderConfig::test() };
        assert!(bad.validate().unwrap_err().to_string().contains("model.corruption.prob"));
        let bad =
            AutoencoderConfig { corruption: Corruption::Gaussian { std: 0.0 }, ..AutoencoderConfig::test() };
        assert!(bad.validate().unwrap_err().to_string().contains("model.corruption.std"));
        assert_eq!(toml::from_str::<Corruption>("kind = \"none\"").unwrap(), Corruption::None);
        assert!(toml::from_str::<Corruption>("kind = \"gaussian\"\nstd = 0.5\nprob = 1\n").is_err());

        tch::manual_seed(0);
        let model = Autoencoder::new(&AutoencoderConfig::test(), Device::Cpu).unwrap();
        let e = model.reconstruct(&Tensor::zeros([2, 3, 32, 32], (Kind::Float, Device::Cpu))).unwrap_err();
        assert!(e.to_string().contains("model.image_size = 16"), "{e}");
        let [x, c, r] = model.reconstruct(&Tensor::ones([2, 3, 16, 16], (Kind::Float, Device::Cpu))).unwrap();
        assert_eq!(
            (x.size(), c.size(), r.size()),
            (vec![2, 3, 16, 16], vec![2, 3, 16, 16], vec![2, 3, 16, 16])
        );
    }

    #[test]
    fn tiny_pretraining_runs_end_to_end_plain_and_denoising() {
        for corruption in [Corruption::None, Corruption::default()] {
            tch::manual_seed(0);
            let cfg = AutoencoderConfig { corruption, ..AutoencoderConfig::test() };
            let mut model = Autoencoder::new(&cfg, Device::Cpu).unwrap();
            let views = crate::augment::presets::autoencoder(16);
            crate::testutil::tiny_pretrain_and_probe(&mut model, views, 3e-3, 30, None);
        }
    }
}
