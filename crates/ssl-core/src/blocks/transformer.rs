//! Pre-LN transformer encoder: one block, and a stack of blocks with a final LayerNorm.
//!
//! The block is ViT's (Dosovitskiy et al., 2021), as in timm's `Block` and MAE's encoder:
//! `x = x + attn(norm1(x))`, then `x = x + mlp(norm2(x))`, with `mlp = fc2(gelu(fc1(·)))`.
//! Attention runs on libtorch's fused `scaled_dot_product_attention` with `q, k, v` laid out as
//! `[B, heads, T, head_dim]`, so flash or memory-efficient kernels are used where available.
//!
//! Parameter names mirror timm/MAE checkpoints (tch joins path components with `.`):
//! `blocks.{i}.norm1`, `blocks.{i}.attn.qkv`, `blocks.{i}.attn.proj`, `blocks.{i}.norm2`,
//! `blocks.{i}.mlp.fc1`, `blocks.{i}.mlp.fc2` and the final `norm`.

use std::borrow::Borrow;

use tch::{nn, Kind, TchError, Tensor};

use super::init::{self, BERT_INIT_STD};
use crate::error::{Error, Result, TorchResultExt};

mod config;

pub use config::{InitScheme, TransformerConfig, DEFAULT_MLP_RATIO, VIT_LAYER_NORM_EPS};

fn layer_norm(path: &nn::Path<'_>, dim: i64, eps: f64) -> nn::LayerNorm {
    // weight 1, bias 0 (tch's LayerNorm defaults).
    nn::layer_norm(path, vec![dim], nn::LayerNormConfig { eps, ..Default::default() })
}

fn linear(
    path: &nn::Path<'_>,
    dims: (i64, i64),
    bias: bool,
    scheme: InitScheme,
    std_override: Option<f64>,
) -> Result<nn::Linear> {
    let zero = nn::Init::Const(0.0);
    let cfg = nn::LinearConfig { ws_init: zero, bs_init: Some(zero), bias };
    let mut lin = nn::linear(path, dims.0, dims.1, cfg);
    match (std_override, scheme) {
        (Some(std), _) => init::trunc_normal_(&mut lin.ws, std)?,
        (None, InitScheme::TruncNormal) => init::trunc_normal_(&mut lin.ws, BERT_INIT_STD)?,
        (None, InitScheme::XavierUniform) => init::xavier_uniform_(&mut lin.ws)?,
    }
    Ok(lin)
}

fn apply_linear(x: &Tensor, lin: &nn::Linear) -> Result<Tensor, TchError> {
    x.f_linear(&lin.ws, lin.bs.as_ref())
}

fn apply_norm(x: &Tensor, ln: &nn::LayerNorm, eps: f64) -> Result<Tensor, TchError> {
    x.f_layer_norm(ln.normalized_shape.as_slice(), ln.ws.as_ref(), ln.bs.as_ref(), eps, true)
}

fn dropout(x: Tensor, p: f64, train: bool) -> Result<Tensor, TchError> {
    if train && p > 0.0 {
        x.f_dropout(p, true)
    } else {
        Ok(x)
    }
}

/// Checks `x: [B, T, dim]` and `key_padding_mask: [B, T]` of kind `Bool`.
fn check_input(x: &Tensor, key_padding_mask: Option<&Tensor>, dim: i64) -> Result<()> {
    let size = x.size();
    if size.len() != 3 || size[2] != dim {
        return Err(Error::shape("transformer input", format!("[B, T, {dim}]"), &size));
    }
    if let Some(m) = key_padding_mask {
        if m.size() != size[..2] {
            let expected = format!("[{}, {}] (batch and tokens of the input)", size[0], size[1]);
            return Err(Error::shape("key_padding_mask", expected, &m.size()));
        }
        if m.kind() != Kind::Bool {
            let message = format!("must be Bool (true = real token), got {:?}", m.kind());
            return Err(Error::invalid("key_padding_mask", message));
        }
    }
    Ok(())
}

/// The `(attn_mask, is_causal)` pair handed to SDPA; a boolean mask is true where attention is
/// allowed.
///
/// - padding only: `[B, 1, 1, T]`, the real keys of each sequence. A sequence with no real token
///   at all attends everywhere, so that no query row is fully masked (what SDPA returns for such
///   a row, zeros or NaN, depends on the kernel; NaN could then reach real tokens through `0 · NaN`
///   in the next layer);
/// - causal only: no mask, `is_causal = true`;
/// - both: SDPA forbids a mask together with `is_causal`, so one `[B, 1, T, T]` mask holds
///   `key j <= query i and key j real`, plus the diagonal so that a padded query with no real key
///   before it (left padding) still has one key. Real queries already allow their diagonal, so
///   their outputs are unchanged by it.
fn attention_mask(
    key_padding_mask: Option<&Tensor>,
    causal: bool,
) -> Result<(Option<Tensor>, bool), TchError> {
    let Some(real) = key_padding_mask else {
        return Ok((None, causal));
    };
    let (b, t) = real.size2()?;
    if causal {
        let opts = (Kind::Bool, real.device());
        let lower = Tensor::f_ones([t, t], opts)?.f_tril(0)?.f_unsqueeze(0)?; // [1, T, T]
        let mask = lower
            .f_logical_and(&real.f_unsqueeze(1)?)? // [B, T, T]
            .f_logical_or(&Tensor::f_eye(t, opts)?)?
            .f_unsqueeze(1)?; // [B, 1, T, T]
        Ok((Some(mask), false))
    } else {
        let no_real = real.f_any_dim(1, true)?.f_logical_not()?; // [B, 1]
        let mask = real.f_logical_or(&no_real)?.f_view([b, 1, 1, t])?;
        Ok((Some(mask), false))
    }
}

/// One pre-LN transformer encoder block: `x + attn(norm1(x))`, then `x + mlp(norm2(x))`.
#[derive(Debug)]
pub struct TransformerBlock {
    norm1: nn::LayerNorm,
    qkv: nn::Linear,
    proj: nn::Linear,
    norm2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    dim: i64,
    heads: i64,
    eps: f64,
    dropout: f64,
    attn_dropout: f64,
}

impl TransformerBlock {
    /// Creates a block under `path` (`path.norm1`, `path.attn.qkv`, `path.attn.proj`, `path.norm2`,
    /// `path.mlp.fc1`, `path.mlp.fc2`), after validating `cfg` (`cfg.depth` only scales the
    /// residual init).
    ///
    /// ```
    /// use ssl_core::blocks::{TransformerBlock, TransformerConfig};
    /// use ssl_core::tch::{nn, Device, Kind, Tensor};
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let block = TransformerBlock::new(vs.root() / "block", &TransformerConfig::new(8, 1, 2))?;
    /// let x = Tensor::randn([2, 3, 8], (Kind::Float, Device::Cpu));
    /// assert_eq!(block.forward(&x, None, true, false).size(), [2, 3, 8]);
    /// assert!(vs.variables().contains_key("block.attn.qkv.weight"));
    /// # Ok::<(), ssl_core::Error>(())
    /// ```
    pub fn new<'a, P: Borrow<nn::Path<'a>>>(path: P, cfg: &TransformerConfig) -> Result<Self> {
        cfg.validate()?;
        Self::build(path.borrow(), cfg)
    }

    fn build(path: &nn::Path<'_>, cfg: &TransformerConfig) -> Result<Self> {
        let (d, eps, scheme) = (cfg.dim, cfg.layer_norm_eps, cfg.init);
        let residual_std =
            cfg.scaled_residual_init.then(|| init::scaled_residual_std(BERT_INIT_STD, cfg.depth));
        let (attn, mlp) = (path / "attn", path / "mlp");
        let hidden = cfg.mlp_hidden_dim();
        Ok(Self {
            norm1: layer_norm(&(path / "norm1"), d, eps),
            qkv: linear(&(&attn / "qkv"), (d, 3 * d), cfg.qkv_bias, scheme, None)?,
            proj: linear(&(&attn / "proj"), (d, d), true, scheme, residual_std)?,
            norm2: layer_norm(&(path / "norm2"), d, eps),
            fc1: linear(&(&mlp / "fc1"), (d, hidden), true, scheme, None)?,
            fc2: linear(&(&mlp / "fc2"), (hidden, d), true, scheme, residual_std)?,
            dim: d,
            heads: cfg.heads,
            eps,
            dropout: cfg.dropout,
            attn_dropout: cfg.attn_dropout,
        })
    }

    /// Applies the block to `x: [B, T, D]`; see [`Transformer::forward`] for the arguments.
    ///
    /// # Panics
    /// On the errors [`f_forward`](Self::f_forward) returns.
    pub fn forward(
        &self,
        x: &Tensor,
        key_padding_mask: Option<&Tensor>,
        causal: bool,
        train: bool,
    ) -> Tensor {
        self.f_forward(x, key_padding_mask, causal, train).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`forward`](Self::forward), returning an error for a wrong input shape, a mask that is
    /// not `[B, T]` `Bool`, or a failing libtorch call.
    pub fn f_forward(
        &self,
        x: &Tensor,
        key_padding_mask: Option<&Tensor>,
        causal: bool,
        train: bool,
    ) -> Result<Tensor> {
        check_input(x, key_padding_mask, self.dim)?;
        let (mask, is_causal) = attention_mask(key_padding_mask, causal).torch_context("attention mask")?;
        self.forward_masked(x, mask.as_ref(), is_causal, train).torch_context("transformer block")
    }

    fn forward_masked(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        is_causal: bool,
        train: bool,
    ) -> Result<Tensor, TchError> {
        let h = apply_norm(x, &self.norm1, self.eps)?;
        let x = x.f_add(&self.attention(&h, mask, is_causal, train)?)?;
        let h = apply_norm(&x, &self.norm2, self.eps)?;
        let h = apply_linear(&h, &self.fc1)?.f_gelu("none")?;
        let h = dropout(apply_linear(&h, &self.fc2)?, self.dropout, train)?;
        x.f_add(&h)
    }

    fn attention(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        is_causal: bool,
        train: bool,
    ) -> Result<Tensor, TchError> {
        let (b, t, d) = x.size3()?;
        // [B, T, 3D] -> [3, B, H, T, Dh]: the output features of qkv are (q|k|v, head, channel).
        let qkv = apply_linear(x, &self.qkv)?
            .f_reshape([b, t, 3, self.heads, d / self.heads])?
            .f_permute([2, 0, 3, 1, 4])?
            .f_unbind(0)?;
        let p = if train { self.attn_dropout } else { 0.0 };
        let out = Tensor::f_scaled_dot_product_attention(
            &qkv[0],
            &qkv[1],
            &qkv[2],
            mask,
            p,
            is_causal,
            None::<f64>,
            false,
        )?;
        let out = out.f_transpose(1, 2)?.f_reshape([b, t, d])?;
        dropout(apply_linear(&out, &self.proj)?, self.dropout, train)
    }
}

/// A stack of [`TransformerBlock`]s (`blocks.{i}`) followed by a final LayerNorm (`norm`).
#[derive(Debug)]
pub struct Transformer {
    blocks: Vec<TransformerBlock>,
    norm: nn::LayerNorm,
    config: TransformerConfig,
}

impl Transformer {
    /// Creates the stack under `path` after validating `cfg`.
    ///
    /// ```
    /// use ssl_core::blocks::{Transformer, TransformerConfig};
    /// use ssl_core::tch::{nn, Device};
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let enc = Transformer::new(vs.root(), &TransformerConfig::new(8, 2, 2))?;
    /// assert_eq!(enc.blocks().len(), 2);
    /// let names = vs.variables();
    /// assert!(names.contains_key("blocks.1.mlp.fc2.weight") && names.contains_key("norm.bias"));
    /// assert!(TransformerConfig::new(8, 0, 2).validate().is_err());
    /// # Ok::<(), ssl_core::Error>(())
    /// ```
    pub fn new<'a, P: Borrow<nn::Path<'a>>>(path: P, cfg: &TransformerConfig) -> Result<Self> {
        cfg.validate()?;
        let path = path.borrow();
        let blocks = (0..cfg.depth)
            .map(|i| TransformerBlock::build(&(path / "blocks" / i), cfg))
            .collect::<Result<Vec<_>>>()?;
        let norm = layer_norm(&(path / "norm"), cfg.dim, cfg.layer_norm_eps);
        Ok(Self { blocks, norm, config: cfg.clone() })
    }

    /// The config the stack was built from.
    pub fn config(&self) -> &TransformerConfig {
        &self.config
    }

    /// The blocks, in order.
    pub fn blocks(&self) -> &[TransformerBlock] {
        &self.blocks
    }

    /// Encodes `x: [B, T, D]` into `[B, T, D]`.
    ///
    /// - `key_padding_mask`: `[B, T]` `Bool`, true for real tokens; padded tokens are never
    ///   attended to, so the outputs at real positions do not depend on them (outputs at padded
    ///   positions are meaningless);
    /// - `causal`: token `t` attends only to tokens `<= t`;
    /// - `train`: enables both dropouts.
    ///
    /// # Panics
    /// On the errors [`f_forward`](Self::f_forward) returns.
    ///
    /// ```
    /// use ssl_core::blocks::{Transformer, TransformerConfig};
    /// use ssl_core::tch::{nn, Device, Kind, Tensor};
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let enc = Transformer::new(vs.root(), &TransformerConfig::new(8, 1, 2))?;
    /// let x = Tensor::randn([2, 4, 8], (Kind::Float, Device::Cpu));
    /// let real = Tensor::from_slice(&[true, true, true, false, true, true, true, true]).view([2, 4]);
    /// let y = enc.forward(&x, Some(&real), false, false);
    /// assert_eq!(y.size(), [2, 4, 8]);
    /// # Ok::<(), ssl_core::Error>(())
    /// ```
    pub fn forward(
        &self,
        x: &Tensor,
        key_padding_mask: Option<&Tensor>,
        causal: bool,
        train: bool,
    ) -> Tensor {
        self.f_forward(x, key_padding_mask, causal, train).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`forward`](Self::forward), returning an error for a wrong input shape, a mask that is
    /// not `[B, T]` `Bool`, or a failing libtorch call.
    pub fn f_forward(
        &self,
        x: &Tensor,
        key_padding_mask: Option<&Tensor>,
        causal: bool,
        train: bool,
    ) -> Result<Tensor> {
        check_input(x, key_padding_mask, self.config.dim)?;
        let (mask, is_causal) = attention_mask(key_padding_mask, causal).torch_context("attention mask")?;
        let mut h = x.shallow_clone();
        for (i, block) in self.blocks.iter().enumerate() {
            h = block
                .forward_masked(&h, mask.as_ref(), is_causal, train)
                .torch_context(format!("transformer block {i}"))?;
        }
        apply_norm(&h, &self.norm, self.config.layer_norm_eps).torch_context("final norm")
    }
}

#[cfg(test)]
mod tests;
