//! Pre-LN transformer encoder: one block, and a stack of blocks with a final LayerNorm.
//!
//! The block is ViT's (Dosovitskiy et al., 2021), as in timm's `Block` and MAE's encoder:
//! `x = x + attn(norm1(x))`, then `x = x + mlp(norm2(x))`, with `mlp = fc2(gelu(fc1(·)))`.
//! [`NormPlacement::Post`] gives BERT's post-LN block instead (`x = norm1(x + attn(x))`, then
//! `x = norm2(x + mlp(x))`, no final norm) and [`MlpActivation::GeluTanh`] GPT-2's GELU.
//! Causal stacks decode incrementally with a [`KvCache`] per block.
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

pub use config::{
    InitScheme, MlpActivation, NormPlacement, TransformerConfig, DEFAULT_MLP_RATIO, VIT_LAYER_NORM_EPS,
};

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
    post_norm: bool,
    activation: MlpActivation,
}

/// The keys and values a causal block has computed for the tokens so far, `[B, heads, T, head_dim]`
/// each, so that decoding one more token costs one token's work (GPT-2's `past_key_values`).
#[derive(Debug)]
pub struct KvCache {
    /// Keys of the tokens so far.
    pub keys: Tensor,
    /// Values of the tokens so far.
    pub values: Tensor,
}

impl KvCache {
    /// The number of tokens cached.
    pub fn len(&self) -> i64 {
        self.keys.size().get(2).copied().unwrap_or(0)
    }

    /// Whether no token is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
            post_norm: cfg.norm_placement == NormPlacement::Post,
            activation: cfg.activation,
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
        Ok(self.forward_kv(x, None, mask, is_causal, train)?.0)
    }

    /// The block on `x`, attending also to the cached keys and values of `past` (which come
    /// before `x`'s tokens); returns the output and the keys and values of all the tokens.
    fn forward_kv(
        &self,
        x: &Tensor,
        past: Option<&KvCache>,
        mask: Option<&Tensor>,
        is_causal: bool,
        train: bool,
    ) -> Result<(Tensor, KvCache), TchError> {
        let mlp = |h: &Tensor| -> Result<Tensor, TchError> {
            let h = apply_linear(h, &self.fc1)?.f_gelu(self.activation.approximate())?;
            dropout(apply_linear(&h, &self.fc2)?, self.dropout, train)
        };
        if self.post_norm {
            let (a, kv) = self.attention(x, past, mask, is_causal, train)?;
            let x = apply_norm(&x.f_add(&a)?, &self.norm1, self.eps)?;
            let x = apply_norm(&x.f_add(&mlp(&x)?)?, &self.norm2, self.eps)?;
            return Ok((x, kv));
        }
        let h = apply_norm(x, &self.norm1, self.eps)?;
        let (a, kv) = self.attention(&h, past, mask, is_causal, train)?;
        let x = x.f_add(&a)?;
        let h = apply_norm(&x, &self.norm2, self.eps)?;
        Ok((x.f_add(&mlp(&h)?)?, kv))
    }

    fn attention(
        &self,
        x: &Tensor,
        past: Option<&KvCache>,
        mask: Option<&Tensor>,
        is_causal: bool,
        train: bool,
    ) -> Result<(Tensor, KvCache), TchError> {
        let (b, t, d) = x.size3()?;
        // [B, T, 3D] -> [3, B, H, T, Dh]: the output features of qkv are (q|k|v, head, channel).
        let qkv = apply_linear(x, &self.qkv)?
            .f_reshape([b, t, 3, self.heads, d / self.heads])?
            .f_permute([2, 0, 3, 1, 4])?
            .f_unbind(0)?;
        let (k, v) = match past {
            Some(c) => (Tensor::f_cat(&[&c.keys, &qkv[1]], 2)?, Tensor::f_cat(&[&c.values, &qkv[2]], 2)?),
            None => (qkv[1].shallow_clone(), qkv[2].shallow_clone()),
        };
        let p = if train { self.attn_dropout } else { 0.0 };
        let out =
            Tensor::f_scaled_dot_product_attention(&qkv[0], &k, &v, mask, p, is_causal, None::<f64>, false)?;
        let out = out.f_transpose(1, 2)?.f_reshape([b, t, d])?;
        let out = dropout(apply_linear(&out, &self.proj)?, self.dropout, train)?;
        Ok((out, KvCache { keys: k, values: v }))
    }
}

/// The causal mask of `t` new tokens that follow `past` cached ones: `[t, past + t]`, true where
/// new token `i` may attend key `j` (`j <= past + i`); `None` where SDPA's own flags suffice (no
/// past: `is_causal`; a single new token: every key).
fn cached_causal_mask(t: i64, past: i64, device: tch::Device) -> Result<(Option<Tensor>, bool), TchError> {
    match (past, t) {
        (0, _) => Ok((None, true)),
        (_, 1) => Ok((None, false)),
        _ => {
            let mask = Tensor::f_ones([t, past + t], (Kind::Bool, device))?.f_tril(past)?;
            Ok((Some(mask), false))
        }
    }
}

/// A stack of [`TransformerBlock`]s (`blocks.{i}`) followed by a final LayerNorm (`norm`).
#[derive(Debug)]
pub struct Transformer {
    blocks: Vec<TransformerBlock>,
    norm: Option<nn::LayerNorm>,
    config: TransformerConfig,
}

impl Transformer {
    /// Creates the stack under `path` after validating `cfg` (a post-LN stack has no final
    /// `norm`).
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
        let norm = (cfg.norm_placement == NormPlacement::Pre)
            .then(|| layer_norm(&(path / "norm"), cfg.dim, cfg.layer_norm_eps));
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
        self.final_norm(h)
    }

    fn final_norm(&self, h: Tensor) -> Result<Tensor> {
        match &self.norm {
            Some(norm) => apply_norm(&h, norm, self.config.layer_norm_eps).torch_context("final norm"),
            None => Ok(h),
        }
    }

    /// Causal encoding of `x: [B, T, D]`, the tokens that follow those already in `past` (one
    /// cache per block, from an earlier call; `None` or empty at the start), returning the
    /// outputs for `x`'s tokens and the caches extended with them. Feeding a sequence in pieces
    /// gives the outputs of [`forward`](Self::forward) with `causal = true` on the whole
    /// sequence, at a fraction of the cost: the decoding loop of generation. No padding mask:
    /// the rows of a batch share their length.
    ///
    /// ```
    /// use ssl_core::blocks::{Transformer, TransformerConfig};
    /// use ssl_core::tch::{nn, Device, IndexOp, Kind, Tensor};
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let enc = Transformer::new(vs.root(), &TransformerConfig::new(8, 2, 2))?;
    /// let x = Tensor::randn([1, 5, 8], (Kind::Float, Device::Cpu));
    /// let full = enc.forward(&x, None, true, false);
    /// let (_, caches) = enc.f_forward_cached(&x.i((.., ..4)), None)?;
    /// let (last, _) = enc.f_forward_cached(&x.i((.., 4..)), Some(&caches))?;
    /// assert!((last - full.i((.., 4..))).abs().max().double_value(&[]) < 1e-5);
    /// # Ok::<(), ssl_core::Error>(())
    /// ```
    pub fn f_forward_cached(&self, x: &Tensor, past: Option<&[KvCache]>) -> Result<(Tensor, Vec<KvCache>)> {
        check_input(x, None, self.config.dim)?;
        if let Some(p) = past {
            if p.len() != self.blocks.len() {
                return Err(Error::invalid(
                    "past",
                    format!("{} caches for a stack of {} blocks", p.len(), self.blocks.len()),
                ));
            }
        }
        let t = x.size()[1];
        let past_len = past.and_then(|p| p.first()).map_or(0, KvCache::len);
        let (mask, is_causal) = cached_causal_mask(t, past_len, x.device()).torch_context("causal mask")?;
        let mut h = x.shallow_clone();
        let mut caches = Vec::with_capacity(self.blocks.len());
        for (i, block) in self.blocks.iter().enumerate() {
            let cache = past.map(|p| &p[i]);
            let (out, kv) = block
                .forward_kv(&h, cache, mask.as_ref(), is_causal, false)
                .torch_context(format!("transformer block {i}"))?;
            h = out;
            caches.push(kv);
        }
        Ok((self.final_norm(h)?, caches))
    }
}

#[cfg(test)]
mod tests;
