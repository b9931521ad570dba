//! Vision Transformer (Dosovitskiy et al., 2021, "An Image is Worth 16x16 Words"), laid out as
//! MAE's and timm's `VisionTransformer`.
//!
//! - **Patch embedding**: a convolution with kernel = stride = patch size (`patch_embed.proj`),
//!   flattened to one token per patch in row-major order.
//! - **Class token** (`cls_token`, `[1, 1, D]`) prepended to the patch tokens.
//! - **Position embeddings**: fixed 2-D sine-cosine ([`sincos_2d`], MAE's
//!   `get_2d_sincos_pos_embed`, zeros for the class token), not learned and not stored in the
//!   checkpoint: they are a function of the grid.
//! - **Blocks**: ssl-core's pre-LN [`Transformer`] (`blocks.{i}`, final `norm`), attention on
//!   libtorch's fused `scaled_dot_product_attention`.
//! - **Representation** ([`VitPool`]): the class token after the final norm, or the mean of the
//!   patch tokens after it.
//!
//! **Initialisation** follows MAE: Xavier-uniform for every `Linear` and for the patch
//! projection viewed as a `[D, C·p·p]` matrix, zero biases, class token `N(0, 0.02)`.
//!
//! ```
//! use ssl_core::Encoder;
//! use ssl_core::tch::{nn, Device, Kind, Tensor};
//! use ssl_vision::backbone::{Vit, VitConfig};
//! let vs = nn::VarStore::new(Device::Cpu);
//! let vit = Vit::new(vs.root(), &VitConfig::test())?;
//! let z = vit.encode(&Tensor::randn([2, 3, 16, 16], (Kind::Float, Device::Cpu)), false);
//! assert_eq!(z.size(), [2, 32]);
//! assert_eq!(VitConfig::tiny(32).num_patches(), 64); // patch 4 at 32 px
//! # Ok::<(), ssl_core::Error>(())
//! ```

use std::borrow::Borrow;

use serde::{Deserialize, Serialize};
use ssl_core::blocks::{init, sincos_2d, InitScheme, Transformer, TransformerConfig};
use ssl_core::error::TorchResultExt;
use ssl_core::{Encoder, Error, Result};
use tch::{nn, IndexOp, Kind, Tensor};

/// Std of the class and mask tokens' normal initialisation (MAE, timm).
pub const TOKEN_INIT_STD: f64 = 0.02;

/// Which output of the transformer is the representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VitPool {
    /// The class token (ViT, MAE's linear probe).
    #[default]
    Cls,
    /// The mean of the patch tokens (MAE's fine-tuning `global_pool`).
    Mean,
}

fn default_mlp_ratio() -> f64 {
    ssl_core::blocks::transformer::DEFAULT_MLP_RATIO
}

/// Shape of a [`Vit`]; every field is documented, unknown fields are errors.
///
/// ```
/// use ssl_vision::backbone::VitConfig;
/// let cfg = VitConfig::small(224);
/// assert_eq!((cfg.dim, cfg.depth, cfg.heads, cfg.patch_size), (384, 12, 6, 16));
/// assert!(VitConfig { image_size: 30, ..VitConfig::tiny(32) }.validate().is_err()); // 30 % 4 != 0
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitConfig {
    /// Side of the square input images, in pixels; a multiple of `patch_size`.
    pub image_size: i64,
    /// Side of a square patch, in pixels (16 at 224 px, 4 at 32 px).
    pub patch_size: i64,
    /// Input channels.
    #[serde(default = "default_channels")]
    pub in_channels: i64,
    /// Token width `D`.
    pub dim: i64,
    /// Number of transformer blocks.
    pub depth: usize,
    /// Attention heads; must divide `dim`.
    pub heads: i64,
    /// MLP hidden width as a multiple of `dim` (default 4).
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
    /// The representation: `cls` (default) or `mean`.
    #[serde(default)]
    pub pool: VitPool,
}

fn default_channels() -> i64 {
    3
}

/// The usual patch size for an image side: 16 from 224 px up, 4 for small (32 px) images, 8
/// in between.
pub fn patch_size_for(image_size: i64) -> i64 {
    match image_size {
        s if s >= 224 => 16,
        s if s <= 32 => 4,
        _ => 8,
    }
}

impl VitConfig {
    fn preset(image_size: i64, dim: i64, depth: usize, heads: i64) -> Self {
        Self {
            image_size,
            patch_size: patch_size_for(image_size),
            in_channels: 3,
            dim,
            depth,
            heads,
            mlp_ratio: default_mlp_ratio(),
            pool: VitPool::Cls,
        }
    }

    /// ViT-Tiny (192 wide, 12 blocks, 3 heads) for `image_size` px images.
    pub fn tiny(image_size: i64) -> Self {
        Self::preset(image_size, 192, 12, 3)
    }

    /// ViT-Small (384 wide, 12 blocks, 6 heads).
    pub fn small(image_size: i64) -> Self {
        Self::preset(image_size, 384, 12, 6)
    }

    /// ViT-Base (768 wide, 12 blocks, 12 heads).
    pub fn base(image_size: i64) -> Self {
        Self::preset(image_size, 768, 12, 12)
    }

    /// A ViT for tests: 16 px images, patch 4, 32 wide, 2 blocks, 2 heads.
    pub fn test() -> Self {
        Self { patch_size: 4, ..Self::preset(16, 32, 2, 2) }
    }

    /// Patches per side.
    pub fn grid(&self) -> i64 {
        self.image_size / self.patch_size.max(1)
    }

    /// Patches per image, `L`.
    pub fn num_patches(&self) -> i64 {
        self.grid() * self.grid()
    }

    /// Values per patch, `p · p · C` (what MAE reconstructs).
    pub fn patch_dim(&self) -> i64 {
        self.patch_size * self.patch_size * self.in_channels
    }

    /// The size of the representation, `D`.
    pub fn output_dim(&self) -> i64 {
        self.dim
    }

    /// The transformer stack of this ViT (MAE's initialisation).
    pub fn transformer(&self) -> TransformerConfig {
        TransformerConfig {
            mlp_ratio: self.mlp_ratio,
            init: InitScheme::XavierUniform,
            ..TransformerConfig::new(self.dim, self.depth, self.heads)
        }
    }

    /// Checks every field; errors name it (`model.encoder.patch_size`).
    pub fn validate(&self) -> Result<()> {
        let field = |f: &str| format!("model.encoder.{f}");
        if self.patch_size < 1 {
            return Err(Error::config(field("patch_size"), "must be at least 1"));
        }
        if self.image_size < self.patch_size || self.image_size % self.patch_size != 0 {
            return Err(Error::config(
                field("image_size"),
                format!(
                    "{} is not a positive multiple of the patch size {}",
                    self.image_size, self.patch_size
                ),
            ));
        }
        if self.in_channels < 1 {
            return Err(Error::config(field("in_channels"), "must be at least 1"));
        }
        if self.dim % 4 != 0 {
            return Err(Error::config(
                field("dim"),
                "must be a positive multiple of 4 (2-D sine-cosine embeddings)",
            ));
        }
        self.transformer().validate().map_err(|e| match e {
            Error::Config { field: f, message } => Error::Config { field: field(&f), message },
            other => other,
        })
    }
}

/// Patches of `images: [N, C, H, W]` as rows: `[N, L, p·p·C]`, patches in row-major order,
/// each flattened as `(row, col, channel)` (MAE's `patchify`).
///
/// ```
/// use ssl_core::tch::{Kind, Device, Tensor};
/// use ssl_vision::backbone::vit::{patchify, unpatchify};
/// let x = Tensor::randn([2, 3, 8, 8], (Kind::Float, Device::Cpu));
/// let p = patchify(&x, 4)?;
/// assert_eq!(p.size(), [2, 4, 48]);
/// assert!(unpatchify(&p, 4, 3)?.equal(&x));
/// # Ok::<(), ssl_core::Error>(())
/// ```
pub fn patchify(images: &Tensor, patch: i64) -> Result<Tensor> {
    let size = images.size();
    if size.len() != 4 || patch < 1 || size[2] % patch != 0 || size[3] % patch != 0 {
        return Err(Error::shape("images", format!("[N, C, H, W] with H and W multiples of {patch}"), &size));
    }
    let (n, c, h, w) = (size[0], size[1], size[2] / patch, size[3] / patch);
    images
        .f_reshape([n, c, h, patch, w, patch])
        .and_then(|x| x.f_permute([0, 2, 4, 3, 5, 1]))
        .and_then(|x| x.f_reshape([n, h * w, patch * patch * c]))
        .torch_context("patchify")
}

/// The inverse of [`patchify`] for square images: `[N, L, p·p·C]` to `[N, C, H, W]`.
pub fn unpatchify(patches: &Tensor, patch: i64, channels: i64) -> Result<Tensor> {
    let size = patches.size();
    let grid = (size.get(1).copied().unwrap_or(0) as f64).sqrt() as i64;
    if size.len() != 3 || grid * grid != size[1] || size[2] != patch * patch * channels {
        let expected = format!("[N, L, {}] with L a square", patch * patch * channels);
        return Err(Error::shape("patches", expected, &size));
    }
    let n = size[0];
    patches
        .f_reshape([n, grid, grid, patch, patch, channels])
        .and_then(|x| x.f_permute([0, 5, 1, 3, 2, 4]))
        .and_then(|x| x.f_reshape([n, channels, grid * patch, grid * patch]))
        .torch_context("unpatchify")
}

/// A Vision Transformer encoder.
#[derive(Debug)]
pub struct Vit {
    config: VitConfig,
    proj_ws: Tensor,
    proj_bs: Tensor,
    cls_token: Tensor,
    /// `[1, 1 + L, D]`, class token's row first.
    pos_embed: Tensor,
    transformer: Transformer,
}

impl Vit {
    /// Builds the ViT under `path` (`patch_embed.proj`, `cls_token`, `blocks.{i}`, `norm`).
    pub fn new<'a, P: Borrow<nn::Path<'a>>>(path: P, config: &VitConfig) -> Result<Self> {
        config.validate()?;
        let path = path.borrow();
        let (d, p, c) = (config.dim, config.patch_size, config.in_channels);
        let proj = path / "patch_embed" / "proj";
        let what = format!("creating {}", proj.path("weight"));
        let proj_ws = proj.f_zeros("weight", &[d, c, p, p]).torch_context(&what)?;
        tch::no_grad(|| -> Result<()> {
            // Xavier-uniform over the `[D, C·p·p]` view, as MAE initialises `patch_embed.proj`.
            let mut flat = proj_ws.f_view([d, c * p * p]).torch_context(&what)?;
            init::xavier_uniform_(&mut flat)
        })?;
        let proj_bs = proj.f_zeros("bias", &[d]).torch_context(&what)?;
        let mut cls_token = path.f_zeros("cls_token", &[1, 1, d]).torch_context("creating cls_token")?;
        init::normal_(&mut cls_token, TOKEN_INIT_STD)?;
        let pos_embed = sincos_2d(d, config.grid(), config.grid(), true)?
            .f_unsqueeze(0)
            .and_then(|t| t.f_to_device(path.device()))
            .torch_context("position embeddings")?;
        let transformer = Transformer::new(path, &config.transformer())?;
        Ok(Self { config: config.clone(), proj_ws, proj_bs, cls_token, pos_embed, transformer })
    }

    /// The config the ViT was built from.
    pub fn config(&self) -> &VitConfig {
        &self.config
    }

    /// Patch tokens with their position embeddings, `[N, L, D]`, without the class token.
    pub fn patch_tokens(&self, images: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        let size = images.size();
        if size.len() != 4 || size[1] != c.in_channels || size[2] != c.image_size || size[3] != c.image_size {
            let expected = format!("[N, {}, {}, {}]", c.in_channels, c.image_size, c.image_size);
            return Err(Error::shape("ViT input", expected, &size));
        }
        let p = c.patch_size;
        images
            .f_conv2d(&self.proj_ws, Some(&self.proj_bs), [p, p], [0, 0], [1, 1], 1)
            .and_then(|x| x.f_flatten(2, 3)) // [N, D, L]
            .and_then(|x| x.f_transpose(1, 2))
            .and_then(|x| x.f_add(&self.pos_embed.i((.., 1..))))
            .torch_context("patch embedding")
    }

    /// Prepends the class token (with its position embedding) to `tokens: [N, T, D]` and runs
    /// the blocks and the final norm: `[N, 1 + T, D]`.
    pub fn encode_tokens(&self, tokens: &Tensor, train: bool) -> Result<Tensor> {
        let n = tokens.size()[0];
        let cls = self
            .cls_token
            .f_add(&self.pos_embed.i((.., ..1)))
            .and_then(|t| t.f_expand([n, 1, self.config.dim], false))
            .torch_context("class token")?;
        let x = Tensor::f_cat(&[cls, tokens.shallow_clone()], 1).torch_context("class token")?;
        self.transformer.f_forward(&x, None, false, train)
    }

    /// The representation of `images` (see [`VitPool`]), `[N, D]`.
    pub fn f_encode(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        let out = self.encode_tokens(&self.patch_tokens(images)?, train)?;
        match self.config.pool {
            VitPool::Cls => Ok(out.i((.., 0))),
            VitPool::Mean => out.i((.., 1..)).f_mean_dim(1, false, Kind::Float).torch_context("mean pool"),
        }
    }
}

impl Encoder for Vit {
    fn output_dim(&self) -> i64 {
        self.config.dim
    }

    fn encode(&self, input: &Tensor, train: bool) -> Tensor {
        self.f_encode(input, train).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The transformer blocks.
    fn num_layers(&self) -> usize {
        self.config.depth
    }

    /// MAE's `get_layer_id_for_vit`: `cls_token` and `patch_embed.*` are layer 0, `blocks.{i}.*`
    /// layer `i + 1`, the final `norm` (and anything else) `depth + 1`.
    fn layer_id(&self, name: &str) -> usize {
        let parts: Vec<&str> = name.split('.').collect();
        if parts.contains(&"patch_embed") || parts.last() == Some(&"cls_token") {
            return 0;
        }
        let block =
            parts.windows(2).find_map(|w| (w[0] == "blocks").then(|| w[1].parse::<usize>().ok()).flatten());
        match block {
            Some(i) if i < self.num_layers() => i + 1,
            _ => self.num_layers() + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tch::Device;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn patchify_round_trips(n in 1i64..3, c in 1i64..4, grid in 1i64..4, p in 1i64..5) {
            let x = Tensor::randn([n, c, grid * p, grid * p], (Kind::Float, Device::Cpu));
            let patches = patchify(&x, p).unwrap();
            prop_assert_eq!(patches.size(), vec![n, grid * grid, p * p * c]);
            prop_assert!(unpatchify(&patches, p, c).unwrap().equal(&x));
        }
    }

    #[test]
    fn patches_are_row_major_and_flattened_row_col_channel() {
        // Pixel (channel k, y, x) of a 4x4 two-channel image with patch 2.
        let x = Tensor::arange(32, (Kind::Float, Device::Cpu)).view([1, 2, 4, 4]);
        let p = patchify(&x, 2).unwrap();
        // Patch 1 is the top-right one; its first value is (y 0, x 2, channel 0), its second
        // the same pixel's channel 1.
        assert_eq!(p.double_value(&[0, 1, 0]), 2.0);
        assert_eq!(p.double_value(&[0, 1, 1]), 18.0);
        assert_eq!(p.double_value(&[0, 2, 0]), 8.0); // bottom-left patch starts at (2, 0)
    }

    #[test]
    fn names_shapes_and_pools() {
        let vs = nn::VarStore::new(Device::Cpu);
        let vit = Vit::new(vs.root(), &VitConfig::test()).unwrap();
        let vars = vs.variables();
        for name in [
            "patch_embed.proj.weight",
            "patch_embed.proj.bias",
            "cls_token",
            "blocks.1.attn.qkv.weight",
            "norm.weight",
        ] {
            assert!(vars.contains_key(name), "{name} missing");
        }
        assert!(!vars.contains_key("pos_embed"), "fixed embeddings are not parameters");
        let layers: Vec<usize> = [
            "m.patch_embed.proj.weight",
            "m.cls_token",
            "m.blocks.0.norm1.bias",
            "m.blocks.1.mlp.fc2.weight",
            "m.norm.weight",
        ]
        .iter()
        .map(|n| vit.layer_id(n))
        .collect();
        assert_eq!((vit.num_layers(), layers), (2, vec![0, 0, 1, 2, 3]));
        let x = Tensor::randn([3, 3, 16, 16], (Kind::Float, Device::Cpu));
        assert_eq!(vit.patch_tokens(&x).unwrap().size(), [3, 16, 32]);
        assert_eq!(vit.encode(&x, false).size(), [3, 32]);
        let mean =
            Vit::new(vs.root() / "m", &VitConfig { pool: VitPool::Mean, ..VitConfig::test() }).unwrap();
        assert_eq!(mean.encode(&x, false).size(), [3, 32]);
        let e = vit.f_encode(&Tensor::zeros([1, 3, 8, 8], (Kind::Float, Device::Cpu)), false).unwrap_err();
        assert!(e.to_string().contains("ViT input"), "{e}");
    }

    #[test]
    fn config_errors_name_the_field() {
        let e = VitConfig { heads: 5, ..VitConfig::test() }.validate().unwrap_err().to_string();
        assert!(e.contains("model.encoder.heads"), "{e}");
        let e = VitConfig { dim: 30, heads: 2, ..VitConfig::test() }.validate().unwrap_err().to_string();
        assert!(e.contains("model.encoder.dim"), "{e}");
        let e = VitConfig { image_size: 18, ..VitConfig::test() }.validate().unwrap_err().to_string();
        assert!(e.contains("model.encoder.image_size"), "{e}");
        assert_eq!(patch_size_for(224), 16);
        assert_eq!(VitConfig::base(224).num_patches(), 196);
    }
}
