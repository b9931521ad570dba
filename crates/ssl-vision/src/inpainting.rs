//! Inpainting: "Context Encoders: Feature Learning by Inpainting" (Pathak, Krähenbühl, Donahue,
//! Darrell, Efros, CVPR 2016).
//!
//! A region of every image is cut out (filled with 0, the dataset mean of normalised pixels),
//! a convolutional encoder reads what is left, and a decoder of up-convolutions
//! ([`ConvDecoder`]) paints the whole image back; the loss is the mean squared error over the
//! cut-out pixels only. Filling the hole needs the image's context (which object, where, what
//! colour), so the encoder learns it. The region is one square block at a random place per image
//! (the paper's central or random block, a quarter of the area by default) or a random set of
//! patches (the paper's "random region", on a grid: [`InpaintMask::Patches`]).
//!
//! The encoder is a ResNet with the representation probed after global pooling, as in the other
//! vision methods, rather than the paper's AlexNet with a channel-wise fully connected layer; the
//! paper's adversarial loss (an optional add-on to the reconstruction loss, for sharper fills)
//! is left out, and so is its 10x weight on a thin overlap band around the hole.
//!
//! ```
//! use ssl_core::{Objective, StepContext};
//! use ssl_core::tch::{Device, Kind, Tensor};
//! use ssl_vision::inpainting::{Inpainting, InpaintingConfig};
//! let mut model = Inpainting::new(&InpaintingConfig::test(), Device::Cpu)?;
//! let ctx = StepContext { step: 0, total_steps: 1, micro_step: 0, device: Device::Cpu };
//! let out = model.forward(&vec![Tensor::randn([2, 3, 16, 16], (Kind::Float, Device::Cpu))], &ctx)?;
//! assert!(out.loss.double_value(&[]) > 0.0);
//! let r = model.reconstruct(&Tensor::randn([2, 3, 16, 16], (Kind::Float, Device::Cpu)))?;
//! assert_eq!(r.mask.size(), [2, 1, 16, 16]);
//! # Ok::<(), ssl_core::Error>(())
//! ```

use serde::{Deserialize, Serialize};
use ssl_core::error::TorchResultExt;
use ssl_core::{Encoder, Error, LossOutput, Objective, Result, StepContext};
use tch::{nn, Device, Kind, Tensor};

use crate::backbone::{ResNet, ResNetConfig};
use crate::decoder::{ConvDecoder, ConvDecoderConfig};

/// Which pixels are cut out of each image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum InpaintMask {
    /// One square block per image, of side `size` times the image side (rounded, at least one
    /// pixel), at a uniformly random place.
    Block {
        /// The block's side as a fraction of the image side, in `(0, 1)`; 0.5 cuts a quarter of
        /// the area, the paper's central block.
        size: f64,
    },
    /// The image cut into a grid of `patch_size` pixel squares, `round(ratio · patches)` of them
    /// cut out per image, chosen at random.
    Patches {
        /// The side of a grid square in pixels; it must divide the image side.
        patch_size: i64,
        /// The fraction of squares cut out, in `(0, 1)`.
        ratio: f64,
    },
}

impl Default for InpaintMask {
    fn default() -> Self {
        InpaintMask::Block { size: 0.5 }
    }
}

impl InpaintMask {
    /// Checks the fields; errors name them as `model.mask.<field>`.
    pub fn validate(&self) -> Result<()> {
        let fraction = |name: &str, v: f64| {
            if v > 0.0 && v < 1.0 {
                Ok(())
            } else {
                Err(Error::config(format!("model.mask.{name}"), format!("must be in (0, 1), got {v}")))
            }
        };
        match *self {
            InpaintMask::Block { size } => fraction("size", size),
            InpaintMask::Patches { patch_size, ratio } => {
                if patch_size < 1 {
                    return Err(Error::config(
                        "model.mask.patch_size",
                        format!("must be at least 1, got {patch_size}"),
                    ));
                }
                fraction("ratio", ratio)
            }
        }
    }

    /// Checks the mask against the image side; errors name the field.
    pub fn check_image_size(&self, side: i64) -> Result<()> {
        if let InpaintMask::Patches { patch_size, .. } = *self {
            if side % patch_size != 0 {
                return Err(Error::config(
                    "model.mask.patch_size",
                    format!("{patch_size} does not divide the image side {side}"),
                ));
            }
        }
        Ok(())
    }

    /// A mask for `n` images of `side` pixels square: `[n, 1, side, side]`, 1 on the pixels cut
    /// out, 0 elsewhere, drawn from libtorch's generator.
    ///
    /// ```
    /// use ssl_core::tch::Device;
    /// use ssl_vision::inpainting::InpaintMask;
    /// let m = InpaintMask::Block { size: 0.5 }.sample(3, 32, Device::Cpu)?;
    /// assert_eq!(m.sum_dim_intlist([1, 2, 3].as_slice(), false, None).int64_value(&[0]), 256);
    /// let m = InpaintMask::Patches { patch_size: 8, ratio: 0.25 }.sample(3, 32, Device::Cpu)?;
    /// assert_eq!(m.sum_dim_intlist([1, 2, 3].as_slice(), false, None).int64_value(&[2]), 4 * 64);
    /// # Ok::<(), ssl_core::Error>(())
    /// ```
    pub fn sample(&self, n: i64, side: i64, device: Device) -> Result<Tensor> {
        self.validate()?;
        self.check_image_size(side)?;
        match *self {
            InpaintMask::Block { size } => block_mask(n, side, block_side(side, size), device),
            InpaintMask::Patches { patch_size, ratio } => {
                let grid = side / patch_size;
                let count = ((grid * grid) as f64 * ratio).round() as i64;
                patch_mask(n, grid, count, patch_size, device)
            }
        }
    }
}

/// The side in pixels of a block of `size` times `side`: rounded, between 1 and `side - 1`.
fn block_side(side: i64, size: f64) -> i64 {
    ((size * side as f64).round() as i64).clamp(1, (side - 1).max(1))
}

/// One `block`-pixel square per image at a uniformly random place.
fn block_mask(n: i64, side: i64, block: i64, device: Device) -> Result<Tensor> {
    let build = || -> Result<Tensor, tch::TchError> {
        let opts = (Kind::Int64, device);
        let top = Tensor::f_randint(side - block + 1, [n, 1], opts)?;
        let left = Tensor::f_randint(side - block + 1, [n, 1], opts)?;
        let pos = Tensor::f_arange(side, opts)?.f_unsqueeze(0)?; // [1, side]
        let inside = |start: &Tensor| -> Result<Tensor, tch::TchError> {
            pos.f_ge_tensor(start)?.f_logical_and(&pos.f_lt_tensor(&start.f_add_scalar(block)?)?)
        };
        let rows = inside(&top)?.f_unsqueeze(2)?; // [n, side, 1]
        let cols = inside(&left)?.f_unsqueeze(1)?; // [n, 1, side]
        rows.f_logical_and(&cols)?.f_unsqueeze(1)?.f_to_kind(Kind::Float)
    };
    build().torch_context("block mask")
}

/// `count` of the `grid × grid` squares of `patch` pixels cut out per image, chosen by argsort
/// of uniform noise.
fn patch_mask(n: i64, grid: i64, count: i64, patch: i64, device: Device) -> Result<Tensor> {
    let build = || -> Result<Tensor, tch::TchError> {
        let noise = Tensor::f_rand([n, grid * grid], (Kind::Float, device))?;
        let rank = noise.f_argsort(1, false)?.f_argsort(1, false)?;
        rank.f_lt(count)?
            .f_to_kind(Kind::Float)?
            .f_view([n, 1, grid, grid])?
            .f_repeat_interleave_self_int(patch, 2, None)?
            .f_repeat_interleave_self_int(patch, 3, None)
    };
    build().torch_context("patch mask")
}

/// The inpainting model. Unknown fields are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InpaintingConfig {
    /// The encoder.
    pub backbone: ResNetConfig,
    /// Channels of the decoder's first up-convolution (halved at each later one).
    pub decoder_width: i64,
    /// What is cut out.
    pub mask: InpaintMask,
}

impl Default for InpaintingConfig {
    /// ResNet-18 with the small-image stem, a decoder 256 wide, a random block of half the side.
    fn default() -> Self {
        Self {
            backbone: ResNetConfig { small_images: true, ..ResNetConfig::resnet18() },
            decoder_width: 256,
            mask: InpaintMask::default(),
        }
    }
}

impl InpaintingConfig {
    /// A tiny model for tests.
    pub fn test() -> Self {
        Self { backbone: ResNetConfig::tiny(), decoder_width: 16, mask: InpaintMask::default() }
    }

    /// Checks every field; errors name it (`model.decoder_width`, `model.mask.size`).
    pub fn validate(&self) -> Result<()> {
        self.backbone.validate()?;
        self.mask.validate()?;
        if self.decoder_width < 1 {
            return Err(Error::config(
                "model.decoder_width",
                format!("must be at least 1, got {}", self.decoder_width),
            ));
        }
        Ok(())
    }

    fn decoder(&self) -> ConvDecoderConfig {
        let stride = self.backbone.output_stride();
        ConvDecoderConfig {
            in_channels: self.backbone.output_dim(),
            width: self.decoder_width,
            upsamplings: stride.ilog2(),
            out_channels: self.backbone.in_channels,
        }
    }
}

/// What [`Inpainting::reconstruct`] returns, each `[N, C, H, W]` but the mask.
#[derive(Debug)]
pub struct Inpainted {
    /// The input images.
    pub original: Tensor,
    /// `[N, 1, H, W]`: 1 on the pixels cut out.
    pub mask: Tensor,
    /// The images with the hole (what the encoder read).
    pub masked: Tensor,
    /// The decoder's whole image.
    pub reconstruction: Tensor,
    /// The input with the hole filled from the reconstruction.
    pub pasted: Tensor,
}

/// A ResNet encoder and an up-convolution decoder.
pub struct Inpainting {
    vs: nn::VarStore,
    backbone: ResNet,
    decoder: ConvDecoder,
    mask: InpaintMask,
}

impl Inpainting {
    /// A freshly initialised model on `device` (seed libtorch first for a reproducible init):
    /// `backbone.*` and `decoder.*`.
    pub fn new(cfg: &InpaintingConfig, device: Device) -> Result<Self> {
        cfg.validate()?;
        let vs = nn::VarStore::new(device);
        let backbone = ResNet::new(vs.root() / "backbone", &cfg.backbone)?;
        let decoder = ConvDecoder::new(vs.root() / "decoder", &cfg.decoder())?;
        Ok(Self { vs, backbone, decoder, mask: cfg.mask.clone() })
    }

    /// Cuts the holes out of `images`, encodes and decodes (`train` for BatchNorm).
    fn inpaint(&self, images: &Tensor, train: bool) -> Result<Inpainted> {
        let size = images.size();
        if size.len() != 4 || size[2] != size[3] {
            return Err(Error::shape("images", "[N, C, S, S] (square)", &size));
        }
        let mask = self.mask.sample(size[0], size[2], images.device())?;
        let masked = images
            .f_mul(&mask.f_neg().and_then(|m| m.f_add_scalar(1.0)).torch_context("mask")?)
            .torch_context("cutting the hole")?;
        let features = self.backbone.f_feature_map(&masked, train)?;
        let reconstruction = self.decoder.f_forward_t(&features, train)?;
        if reconstruction.size() != size {
            return Err(Error::config(
                "data.image_size",
                format!(
                    "the decoder paints {:?} for images of {size:?}: the side must be a multiple of the encoder's output stride {}",
                    reconstruction.size(),
                    self.backbone.output_stride()
                ),
            ));
        }
        let pasted =
            masked.f_add(&reconstruction.f_mul(&mask).torch_context("pasting")?).torch_context("pasting")?;
        Ok(Inpainted { original: images.shallow_clone(), mask, masked, reconstruction, pasted })
    }

    /// Cuts holes in `images` (normalised, `[N, C, S, S]`) and fills them, in evaluation mode
    /// without gradients, for pictures.
    pub fn reconstruct(&self, images: &Tensor) -> Result<Inpainted> {
        tch::no_grad(|| self.inpaint(images, false))
    }
}

/// The mean squared error over the pixels where `mask` is 1 (and all channels).
pub fn masked_mse(prediction: &Tensor, target: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let channels = target.size().get(1).copied().unwrap_or(1);
    let build = || -> Result<Tensor, tch::TchError> {
        let se = prediction.f_sub(target)?.f_square()?.f_mul(mask)?.f_sum(Kind::Float)?;
        let count = mask.f_sum(Kind::Float)?.f_mul_scalar(channels)?.f_clamp_min(1.0)?;
        se.f_div(&count)
    };
    build().torch_context("masked squared error")
}

impl Objective for Inpainting {
    /// `[images]`: one augmented view; the holes are cut here.
    type Batch = Vec<Tensor>;

    fn name(&self) -> &str {
        "inpainting"
    }

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn forward(&mut self, batch: &Vec<Tensor>, _ctx: &StepContext) -> Result<LossOutput> {
        let images = crate::views::one_view(batch, "inpainting")?;
        let r = self.inpaint(images, true)?;
        let loss = masked_mse(&r.reconstruction, images, &r.mask)?;
        // How well the visible context is kept, which the loss does not ask for (for monitoring).
        let context = tch::no_grad(|| {
            let visible = r.mask.f_neg().and_then(|m| m.f_add_scalar(1.0)).torch_context("context")?;
            masked_mse(&r.reconstruction, images, &visible)
        })?;
        Ok(LossOutput::new(loss).with_metric("context_mse", &context))
    }

    fn encoder(&self) -> &dyn Encoder {
        &self.backbone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn per_image(mask: &Tensor) -> Vec<i64> {
        Vec::try_from(mask.sum_dim_intlist([1, 2, 3].as_slice(), false, Kind::Int64)).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn a_block_is_one_square_of_the_configured_side(n in 1i64..4, side in 2i64..40, size in 0.05f64..0.95, seed in 0i64..1000) {
            tch::manual_seed(seed);
            let m = InpaintMask::Block { size }.sample(n, side, Device::Cpu).unwrap();
            prop_assert_eq!(m.size(), vec![n, 1, side, side]);
            let b = block_side(side, size);
            prop_assert!(per_image(&m).iter().all(|&c| c == b * b));
            // A square: every masked row holds b masked pixels, and b rows hold any.
            let rows: Vec<i64> = Vec::try_from(m.sum_dim_intlist([1, 3].as_slice(), false, Kind::Int64).flatten(0, -1)).unwrap();
            prop_assert!(rows.iter().all(|&r| r == 0 || r == b));
            prop_assert_eq!(rows.iter().filter(|&&r| r == b).count() as i64, n * b);
        }

        #[test]
        fn patches_cut_exactly_round_ratio_of_the_grid(n in 1i64..4, grid in 1i64..8, patch in 1i64..5, ratio in 0.01f64..0.99, seed in 0i64..1000) {
            tch::manual_seed(seed);
            let side = grid * patch;
            let m = InpaintMask::Patches { patch_size: patch, ratio }.sample(n, side, Device::Cpu).unwrap();
            let count = ((grid * grid) as f64 * ratio).round() as i64;
            prop_assert!(per_image(&m).iter().all(|&c| c == count * patch * patch));
            // Constant on each grid square.
            let pooled = m.max_pool2d([patch, patch], [patch, patch], [0, 0], [1, 1], false);
            let mins = -(-&m).max_pool2d([patch, patch], [patch, patch], [0, 0], [1, 1], false);
            prop_assert!(pooled.equal(&mins));
        }
    }

    #[test]
    fn the_loss_sees_only_the_hole_and_errors_name_fields() {
        let target = Tensor::zeros([1, 3, 4, 4], (Kind::Float, Device::Cpu));
        let mask = Tensor::zeros([1, 1, 4, 4], (Kind::Float, Device::Cpu));
        let _ = mask.narrow(2, 0, 2).narrow(3, 0, 2).fill_(1.0);
        let pred = target.ones_like();
        let _ = pred.narrow(2, 2, 2).fill_(5.0); // outside the hole: ignored
        assert_eq!(masked_mse(&pred, &target, &mask).unwrap().double_value(&[]), 1.0);

        let bad = InpaintingConfig { mask: InpaintMask::Block { size: 1.0 }, ..InpaintingConfig::test() };
        assert!(bad.validate().unwrap_err().to_string().contains("model.mask.size"));
        let m = InpaintMask::Patches { patch_size: 3, ratio: 0.5 };
        assert!(m.check_image_size(16).unwrap_err().to_string().contains("model.mask.patch_size"));
        let toml = "kind = \"patches\"\npatch_size = 4\nratio = 0.25\n";
        assert_eq!(
            toml::from_str::<InpaintMask>(toml).unwrap(),
            InpaintMask::Patches { patch_size: 4, ratio: 0.25 }
        );
        assert!(toml::from_str::<InpaintMask>("kind = \"block\"\nsise = 0.5\n").is_err());

        tch::manual_seed(0);
        let model = Inpainting::new(&InpaintingConfig::test(), Device::Cpu).unwrap();
        let e = model.reconstruct(&Tensor::zeros([2, 3, 12, 12], (Kind::Float, Device::Cpu))).unwrap_err();
        assert!(e.to_string().contains("data.image_size"), "{e}");
    }

    #[test]
    fn the_pasted_image_keeps_the_context_and_fills_the_hole() {
        tch::manual_seed(1);
        let model = Inpainting::new(&InpaintingConfig::test(), Device::Cpu).unwrap();
        let x = Tensor::randn([2, 3, 16, 16], (Kind::Float, Device::Cpu));
        let r = model.reconstruct(&x).unwrap();
        let keep = 1.0 - &r.mask;
        assert!((&r.pasted * &keep).equal(&(&x * &keep)));
        assert!((&r.pasted * &r.mask).equal(&(&r.reconstruction * &r.mask)));
        assert!((&r.masked * &r.mask).abs().max().double_value(&[]) == 0.0);
    }

    #[test]
    fn tiny_pretraining_runs_end_to_end() {
        tch::manual_seed(0);
        let mut model = Inpainting::new(&InpaintingConfig::test(), Device::Cpu).unwrap();
        let views = crate::augment::presets::inpainting(16);
        crate::testutil::tiny_pretrain_and_probe(&mut model, views, 3e-3, 40, None);
    }
}
