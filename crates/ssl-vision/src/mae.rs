//! MAE: "Masked Autoencoders Are Scalable Vision Learners" (He, Chen, Xie, Li, Dollár,
//! Girshick, CVPR 2022); reference code `facebookresearch/mae` (`models_mae.py`).
//!
//! Each image is cut into patches; a random 75% of them are masked per sample ([`random_masking`]:
//! argsort of uniform noise). The ViT encoder sees only the visible patches (plus the class
//! token). A light decoder gets the encoded visible tokens and a shared learned mask token at
//! every masked position, unshuffled back into place, with its own fixed sine-cosine position
//! embeddings, and a linear head predicts each patch's pixels. The loss is the mean squared error
//! on the masked patches only, against pixels normalised per patch (`norm_pix_loss`, mean and
//! unbiased variance of the patch, eps 1e-6). Linear layers are Xavier-uniform initialised, the
//! class and mask tokens `N(0, 0.02)`.
//!
//! ```
//! use ssl_core::{Objective, StepContext};
//! use ssl_core::tch::{Device, Kind, Tensor};
//! use ssl_vision::mae::{Mae, MaeConfig};
//! let mut mae = Mae::new(&MaeConfig::test(), Device::Cpu)?;
//! let images = Tensor::randn([2, 3, 16, 16], (Kind::Float, Device::Cpu));
//! let ctx = StepContext { step: 0, total_steps: 1, micro_step: 0, device: Device::Cpu };
//! let out = mae.forward(&vec![images], &ctx)?;
//! assert!(out.loss.double_value(&[]) > 0.0);
//! assert_eq!(mae.encoder().output_dim(), 32);
//! # Ok::<(), ssl_core::Error>(())
//! ```

use serde::{Deserialize, Serialize};
use ssl_core::blocks::{init, sincos_2d, InitScheme, Transformer, TransformerConfig};
use ssl_core::error::TorchResultExt;
use ssl_core::{Encoder, Error, LossOutput, Objective, Result, StepContext};
use tch::{nn, IndexOp, Kind, Tensor};

use crate::backbone::vit::{patchify, unpatchify, TOKEN_INIT_STD};
use crate::backbone::{Vit, VitConfig};

/// MAE's mask ratio.
pub const MASK_RATIO: f64 = 0.75;
/// The epsilon of `norm_pix_loss` (added to the per-patch variance).
pub const NORM_PIX_EPS: f64 = 1e-6;

/// The MAE model: encoder, decoder and loss. Unknown fields are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaeConfig {
    /// The ViT encoder (the representation evaluated afterwards).
    pub encoder: VitConfig,
    /// Decoder width (paper: 512).
    pub decoder_dim: i64,
    /// Decoder blocks (paper: 8).
    pub decoder_depth: usize,
    /// Decoder attention heads (paper: 16).
    pub decoder_heads: i64,
    /// Fraction of the patches masked per image, in `[0, 1)` (paper: 0.75); `round(ratio · L)`
    /// patches are masked, and at least one stays visible.
    pub mask_ratio: f64,
    /// Regress pixels normalised per patch (paper: true, the better representation).
    pub norm_pix_loss: bool,
}

impl Default for MaeConfig {
    fn default() -> Self {
        Self::small_images()
    }
}

impl MaeConfig {
    /// The paper's recipe: ViT-B/16 at 224 px, decoder 512 wide with 8 blocks and 16 heads.
    pub fn imagenet() -> Self {
        Self {
            encoder: VitConfig::base(224),
            decoder_dim: 512,
            decoder_depth: 8,
            decoder_heads: 16,
            mask_ratio: MASK_RATIO,
            norm_pix_loss: true,
        }
    }

    /// For 32 px images: ViT-Tiny with patch 4 (64 patches), decoder 256 wide with 4 blocks and
    /// 8 heads (the paper's decoder ablation keeps a narrow, shallow decoder competitive).
    pub fn small_images() -> Self {
        Self {
            encoder: VitConfig::tiny(32),
            decoder_dim: 256,
            decoder_depth: 4,
            decoder_heads: 8,
            ..Self::imagenet()
        }
    }

    /// A model for tests: the test ViT (16 px, 16 patches) and a 1-block decoder.
    pub fn test() -> Self {
        Self {
            encoder: VitConfig::test(),
            decoder_dim: 16,
            decoder_depth: 1,
            decoder_heads: 2,
            ..Self::imagenet()
        }
    }

    /// The decoder's transformer stack.
    fn decoder(&self) -> TransformerConfig {
        TransformerConfig {
            init: InitScheme::XavierUniform,
            ..TransformerConfig::new(self.decoder_dim, self.decoder_depth, self.decoder_heads)
        }
    }

    /// Checks every field; errors name it (`model.mask_ratio`).
    pub fn validate(&self) -> Result<()> {
        self.encoder.validate()?;
        if !(0.0..1.0).contains(&self.mask_ratio) {
            return Err(Error::config(
                "model.mask_ratio",
                format!("must be in [0, 1), got {}", self.mask_ratio),
            ));
        }
        if masked_count(self.encoder.num_patches(), self.mask_ratio) >= self.encoder.num_patches() {
            return Err(Error::config("model.mask_ratio", "masks every patch; lower it"));
        }
        if self.decoder_dim % 4 != 0 {
            return Err(Error::config("model.decoder_dim", "must be a positive multiple of 4"));
        }
        self.decoder().validate().map_err(|e| match e {
            Error::Config { field, message } => {
                Error::Config { field: format!("model.decoder_{field}"), message }
            }
            other => other,
        })
    }
}

/// Patches masked out of `num_patches` at `ratio`: `round(ratio · L)`.
pub fn masked_count(num_patches: i64, ratio: f64) -> i64 {
    (ratio * num_patches as f64).round() as i64
}

/// What [`random_masking`] returns.
#[derive(Debug)]
pub struct Masking {
    /// The visible tokens, `[N, L - round(ratio · L), D]`, in shuffled order.
    pub visible: Tensor,
    /// `[N, L]` float, 1 where the patch is masked, 0 where visible (original order).
    pub mask: Tensor,
    /// `[N, L]` int64: the permutation that puts shuffled tokens back in original order.
    pub ids_restore: Tensor,
}

/// Per-sample random masking (MAE's `random_masking`): each row of `tokens: [N, L, D]` keeps
/// `L - round(ratio · L)` tokens chosen by sorting uniform noise from libtorch's generator.
///
/// ```
/// use ssl_core::tch::{Device, Kind, Tensor};
/// use ssl_vision::mae::random_masking;
/// let x = Tensor::randn([2, 8, 4], (Kind::Float, Device::Cpu));
/// let m = random_masking(&x, 0.75)?;
/// assert_eq!(m.visible.size(), [2, 2, 4]);
/// assert_eq!(m.mask.sum(Kind::Float).double_value(&[]), 12.0); // 6 masked per row
/// # Ok::<(), ssl_core::Error>(())
/// ```
pub fn random_masking(tokens: &Tensor, ratio: f64) -> Result<Masking> {
    let size = tokens.size();
    if size.len() != 3 {
        return Err(Error::shape("tokens", "[N, L, D]", &size));
    }
    let (n, l, d) = (size[0], size[1], size[2]);
    let keep = l - masked_count(l, ratio);
    if !(0.0..1.0).contains(&ratio) || keep < 1 {
        return Err(Error::invalid("mask_ratio", format!("{ratio} leaves no visible patch of {l}")));
    }
    let build = || -> Result<Masking, tch::TchError> {
        let noise = Tensor::f_rand([n, l], (Kind::Float, tokens.device()))?;
        let ids_shuffle = noise.f_argsort(1, false)?;
        let ids_restore = ids_shuffle.f_argsort(1, false)?;
        let ids_keep = ids_shuffle.i((.., ..keep));
        let index = ids_keep.f_unsqueeze(-1)?.f_expand([n, keep, d], false)?;
        let visible = tokens.f_gather(1, &index, false)?;
        let ordered = Tensor::f_cat(
            &[
                Tensor::f_zeros([n, keep], (Kind::Float, tokens.device()))?,
                Tensor::f_ones([n, l - keep], (Kind::Float, tokens.device()))?,
            ],
            1,
        )?;
        let mask = ordered.f_gather(1, &ids_restore, false)?;
        Ok(Masking { visible, mask, ids_restore })
    };
    build().torch_context("random masking")
}

/// Puts `shuffled: [N, L, D]` (visible tokens first, then mask tokens) back in original patch
/// order with `ids_restore` from [`random_masking`].
pub fn unshuffle(shuffled: &Tensor, ids_restore: &Tensor) -> Result<Tensor> {
    let size = shuffled.size();
    if size.len() != 3 || ids_restore.size() != size[..2] {
        return Err(Error::shape("shuffled tokens", "[N, L, D] matching ids_restore [N, L]", &size));
    }
    let index = ids_restore.unsqueeze(-1).expand(size.as_slice(), false);
    shuffled.f_gather(1, &index, false).torch_context("unshuffle")
}

/// Images for a picture of what MAE does: every tensor `[N, C, H, W]` in the input's
/// (normalised) space.
#[derive(Debug)]
pub struct Reconstruction {
    /// The input images.
    pub original: Tensor,
    /// The input with masked patches set to 0 (the mean colour after normalisation).
    pub masked: Tensor,
    /// The decoder's prediction of every patch (per-patch normalisation undone with the true
    /// patch statistics when `norm_pix_loss` is on, as MAE's visualisation does).
    pub reconstruction: Tensor,
    /// The prediction on masked patches, the input on visible ones.
    pub pasted: Tensor,
}

/// The MAE model.
pub struct Mae {
    vs: nn::VarStore,
    encoder: Vit,
    decoder_embed: nn::Linear,
    mask_token: Tensor,
    decoder_pos_embed: Tensor,
    decoder: Transformer,
    decoder_pred: nn::Linear,
    cfg: MaeConfig,
}

fn xavier_linear(path: nn::Path<'_>, d_in: i64, d_out: i64) -> Result<nn::Linear> {
    let zero = nn::Init::Const(0.0);
    let mut lin =
        nn::linear(path, d_in, d_out, nn::LinearConfig { ws_init: zero, bs_init: Some(zero), bias: true });
    init::xavier_uniform_(&mut lin.ws)?;
    Ok(lin)
}

/// MSE per patch of `pred` against `target` (`[N, L, P]`), averaged over the patches where
/// `mask` (`[N, L]`) is 1.
fn masked_patch_loss(pred: &Tensor, target: &Tensor, mask: &Tensor) -> Tensor {
    let per_patch = (pred - target).square().mean_dim(-1, false, Kind::Float);
    (per_patch * mask).sum(Kind::Float) / mask.sum(Kind::Float)
}

impl Mae {
    /// A freshly initialised model on `device` (seed libtorch first for a reproducible init).
    /// Names follow the reference: `encoder.*` (the ViT), `decoder_embed`, `mask_token`,
    /// `decoder.blocks.{i}`, `decoder.norm`, `decoder_pred`.
    pub fn new(cfg: &MaeConfig, device: tch::Device) -> Result<Self> {
        cfg.validate()?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let encoder = Vit::new(&root / "encoder", &cfg.encoder)?;
        let (d, dd) = (cfg.encoder.dim, cfg.decoder_dim);
        let decoder_embed = xavier_linear(&root / "decoder_embed", d, dd)?;
        let mut mask_token = root.f_zeros("mask_token", &[1, 1, dd]).torch_context("creating mask_token")?;
        init::normal_(&mut mask_token, TOKEN_INIT_STD)?;
        let grid = cfg.encoder.grid();
        let decoder_pos_embed = sincos_2d(dd, grid, grid, true)?
            .f_unsqueeze(0)
            .and_then(|t| t.f_to_device(device))
            .torch_context("decoder position embeddings")?;
        let decoder = Transformer::new(&root / "decoder", &cfg.decoder())?;
        let decoder_pred = xavier_linear(&root / "decoder_pred", dd, cfg.encoder.patch_dim())?;
        Ok(Self {
            vs,
            encoder,
            decoder_embed,
            mask_token,
            decoder_pos_embed,
            decoder,
            decoder_pred,
            cfg: cfg.clone(),
        })
    }

    /// The ViT encoder.
    pub fn vit(&self) -> &Vit {
        &self.encoder
    }

    /// Predicted patches `[N, L, p·p·C]` and the mask `[N, L]` of `images`.
    fn predict(&self, images: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        let tokens = self.encoder.patch_tokens(images)?;
        let masking = random_masking(&tokens, self.cfg.mask_ratio)?;
        let latent = self.encoder.encode_tokens(&masking.visible, train)?; // [N, 1 + keep, D]
        let x = latent.apply(&self.decoder_embed);
        let (n, l) = (x.size()[0], self.cfg.encoder.num_patches());
        let keep = x.size()[1] - 1;
        let masks = self
            .mask_token
            .f_expand([n, l - keep, self.cfg.decoder_dim], false)
            .torch_context("mask tokens")?;
        let patches = Tensor::f_cat(&[x.i((.., 1..)), masks], 1).torch_context("mask tokens")?;
        let patches = unshuffle(&patches, &masking.ids_restore)?;
        let x = Tensor::f_cat(&[x.i((.., ..1)), patches], 1)
            .and_then(|x| x.f_add(&self.decoder_pos_embed))
            .torch_context("decoder input")?;
        let x = self.decoder.f_forward(&x, None, false, train)?;
        let pred = x.apply(&self.decoder_pred).i((.., 1..));
        Ok((pred, masking.mask))
    }

    /// The regression target: the patches of `images`, normalised per patch with
    /// `norm_pix_loss`; also the per-patch mean and std used (`None` without it).
    fn target(&self, images: &Tensor) -> Result<(Tensor, Option<(Tensor, Tensor)>)> {
        let target = patchify(images, self.cfg.encoder.patch_size)?;
        if !self.cfg.norm_pix_loss {
            return Ok((target, None));
        }
        let mean = target.mean_dim(-1, true, Kind::Float);
        let std = (target.var_dim(-1, true, true) + NORM_PIX_EPS).sqrt();
        Ok(((&target - &mean) / &std, Some((mean, std))))
    }

    /// The loss of a batch and its mask: MSE per patch, averaged over masked patches.
    pub fn loss(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        let (pred, mask) = self.predict(images, train)?;
        let (target, _) = self.target(images)?;
        Ok(masked_patch_loss(&pred, &target, &mask))
    }

    /// Masks `images` (a fresh random mask from libtorch's generator) and reconstructs them,
    /// in evaluation mode without gradients.
    pub fn reconstruct(&self, images: &Tensor) -> Result<Reconstruction> {
        tch::no_grad(|| {
            let (p, c) = (self.cfg.encoder.patch_size, self.cfg.encoder.in_channels);
            let (pred, mask) = self.predict(images, false)?;
            let pred = match self.target(images)?.1 {
                Some((mean, std)) => pred * std + mean,
                None => pred,
            };
            let patches = patchify(images, p)?;
            let mask = mask.unsqueeze(-1);
            let visible = &patches * (1.0 - &mask);
            let pasted = &visible + &pred * &mask;
            Ok(Reconstruction {
                original: images.shallow_clone(),
                masked: unpatchify(&visible, p, c)?,
                reconstruction: unpatchify(&pred, p, c)?,
                pasted: unpatchify(&pasted, p, c)?,
            })
        })
    }
}

impl Objective for Mae {
    /// `[images]`: one augmented view.
    type Batch = Vec<Tensor>;

    fn name(&self) -> &str {
        "mae"
    }

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn forward(&mut self, batch: &Vec<Tensor>, _ctx: &StepContext) -> Result<LossOutput> {
        let images = crate::views::one_view(batch, "MAE")?;
        Ok(LossOutput::new(self.loss(images, true)?))
    }

    fn encoder(&self) -> &dyn Encoder {
        &self.encoder
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tch::Device;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn masking_hides_exactly_the_rounded_count_and_unshuffles(
            n in 1i64..4, l in 2i64..40, ratio in 0.0f64..0.95, seed in 0i64..1000,
        ) {
            prop_assume!(l - masked_count(l, ratio) >= 1);
            tch::manual_seed(seed);
            let x = Tensor::randn([n, l, 3], (Kind::Float, Device::Cpu));
            let m = random_masking(&x, ratio).unwrap();
            let masked = masked_count(l, ratio);
            let per_row = m.mask.sum_dim_intlist(1, false, Kind::Float);
            prop_assert!(per_row.eq(masked as f64).all().int64_value(&[]) == 1);
            prop_assert_eq!(m.visible.size(), vec![n, l - masked, 3]);
            // Visible tokens plus the masked originals, unshuffled, give the input back.
            let ids_shuffle = m.ids_restore.argsort(1, false);
            let rest = x.gather(1, &ids_shuffle.i((.., l - masked..)).unsqueeze(-1).expand([n, masked, 3], false), false);
            let back = unshuffle(&Tensor::cat(&[&m.visible, &rest], 1), &m.ids_restore).unwrap();
            prop_assert!(back.equal(&x));
            // The mask is 0 exactly at the visible tokens' positions.
            let visible_ids = ids_shuffle.i((.., ..l - masked));
            prop_assert_eq!(m.mask.gather(1, &visible_ids, false).sum(Kind::Float).double_value(&[]), 0.0);
        }
    }

    #[test]
    fn loss_is_on_masked_patches_only_and_normalised_per_patch() {
        tch::manual_seed(0);
        let mae = Mae::new(&MaeConfig::test(), Device::Cpu).unwrap();
        let images = Tensor::randn([2, 3, 16, 16], (Kind::Float, Device::Cpu));
        let (target, stats) = mae.target(&images).unwrap();
        assert!(stats.is_some());
        let mean = target.mean_dim(-1, false, Kind::Float).abs().max().double_value(&[]);
        assert!(mean < 1e-4, "per-patch mean {mean}");
        // A prediction equal to the target on masked patches gives zero loss whatever it is
        // elsewhere: check by recomputing the masked average by hand.
        // One mask for both (re-seeding libtorch's global generator twice races with tests
        // running in parallel).
        let (pred, mask) = mae.predict(&images, false).unwrap();
        let loss = masked_patch_loss(&pred, &target, &mask).double_value(&[]);
        let per_patch = (pred - &target).square().mean_dim(-1, false, Kind::Float);
        let by_hand = (per_patch * &mask).sum(Kind::Float).double_value(&[]) / 12.0 / 2.0;
        assert!((loss - by_hand).abs() < 1e-5, "{loss} vs {by_hand}");
    }

    #[test]
    fn reconstruction_pastes_visible_patches() {
        tch::manual_seed(0);
        let mae = Mae::new(&MaeConfig::test(), Device::Cpu).unwrap();
        let images = Tensor::randn([2, 3, 16, 16], (Kind::Float, Device::Cpu));
        let r = mae.reconstruct(&images).unwrap();
        for t in [&r.masked, &r.reconstruction, &r.pasted] {
            assert_eq!(t.size(), [2, 3, 16, 16]);
        }
        // Where `masked` is non-zero the patch is visible, and `pasted` equals the input there.
        let visible = r.masked.ne(0.0);
        let diff = (&r.pasted - &images).abs() * visible.to_kind(Kind::Float);
        assert_eq!(diff.max().double_value(&[]), 0.0);
        assert!(r.masked.eq(0.0).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]) > 0.7);
    }

    #[test]
    fn tiny_pretraining_runs_end_to_end() {
        tch::manual_seed(0);
        let mut model = Mae::new(&MaeConfig::test(), Device::Cpu).unwrap();
        crate::testutil::tiny_pretrain_and_probe(
            &mut model,
            crate::augment::presets::mae(16),
            3e-3,
            40,
            None,
        );
    }

    #[test]
    fn names_follow_the_reference_and_errors_name_fields() {
        let mae = Mae::new(&MaeConfig::test(), Device::Cpu).unwrap();
        let vars = mae.var_store().variables();
        for name in [
            "encoder.cls_token",
            "mask_token",
            "decoder_embed.weight",
            "decoder.blocks.0.attn.qkv.weight",
            "decoder.norm.weight",
            "decoder_pred.bias",
        ] {
            assert!(vars.contains_key(name), "{name} missing");
        }
        let e = MaeConfig { mask_ratio: 1.0, ..MaeConfig::test() }.validate().unwrap_err().to_string();
        assert!(e.contains("model.mask_ratio"), "{e}");
        let e = MaeConfig { decoder_heads: 3, ..MaeConfig::test() }.validate().unwrap_err().to_string();
        assert!(e.contains("model.decoder_heads"), "{e}");
        assert_eq!(masked_count(64, 0.75), 48);
        assert_eq!(masked_count(10, 0.75), 8); // 7.5 rounds up
    }
}
