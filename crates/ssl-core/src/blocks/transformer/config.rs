//! [`TransformerConfig`] and [`InitScheme`]: the serialisable shape of a transformer stack.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Width of the MLP relative to the model width: `d_ff = 4 · d_model` in the Transformer paper
/// (Vaswani et al., 2017), kept by BERT and ViT.
pub const DEFAULT_MLP_RATIO: f64 = 4.0;

/// LayerNorm epsilon of ViT, DeiT and MAE (`partial(nn.LayerNorm, eps=1e-6)` in timm and MAE).
/// BERT uses `1e-12` and PyTorch's default is `1e-5`; set [`TransformerConfig::layer_norm_eps`]
/// to match a checkpoint trained with those.
pub const VIT_LAYER_NORM_EPS: f64 = 1e-6;

/// How the `Linear` weights of a transformer are initialised. Biases are always zero and
/// LayerNorms start at weight 1, bias 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitScheme {
    /// Truncated normal, std [`BERT_INIT_STD`](crate::blocks::init::BERT_INIT_STD) (0.02), cut
    /// at ±2 std: timm's ViT/DeiT and BERT.
    #[default]
    TruncNormal,
    /// Xavier uniform, as MAE and the JAX ViT do; the fused `qkv` weight is one `[3D, D]` matrix
    /// for the fans, as in MAE.
    XavierUniform,
}

/// Where each block's two LayerNorms sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormPlacement {
    /// Pre-LN: `x + f(norm(x))`, and one more LayerNorm after the last block (`norm`): ViT,
    /// MAE, GPT-2 (its `ln_f`).
    #[default]
    Pre,
    /// Post-LN: `norm(x + f(x))`, no final LayerNorm: the original Transformer and BERT.
    Post,
}

/// The non-linearity between the two layers of each block's MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MlpActivation {
    /// Exact (erf) GELU: ViT, MAE, BERT (`hidden_act = "gelu"`).
    #[default]
    Gelu,
    /// GELU's tanh approximation: GPT-2 (`activation_function = "gelu_new"`).
    GeluTanh,
}

impl MlpActivation {
    /// The `approximate` argument of libtorch's `gelu`.
    pub(crate) fn approximate(self) -> &'static str {
        match self {
            Self::Gelu => "none",
            Self::GeluTanh => "tanh",
        }
    }
}

fn default_mlp_ratio() -> f64 {
    DEFAULT_MLP_RATIO
}
fn default_true() -> bool {
    true
}
fn default_layer_norm_eps() -> f64 {
    VIT_LAYER_NORM_EPS
}

/// Shape and regularisation of a [`Transformer`](super::Transformer); `dim`, `depth` and `heads`
/// are required, the other fields default as documented.
///
/// ```
/// use ssl_core::blocks::TransformerConfig;
/// let cfg: TransformerConfig = serde_json::from_str(r#"{"dim": 192, "depth": 12, "heads": 3}"#)?;
/// assert_eq!(cfg, TransformerConfig::new(192, 12, 3)); // ViT-Tiny
/// assert_eq!(cfg.head_dim(), 64);
/// assert_eq!(cfg.mlp_hidden_dim(), 768);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformerConfig {
    /// Model width `D`; must be divisible by `heads`.
    pub dim: i64,
    /// Number of blocks; at least 1.
    pub depth: usize,
    /// Number of attention heads.
    pub heads: i64,
    /// MLP hidden width as a multiple of `dim` (truncated, as timm does); default
    /// [`DEFAULT_MLP_RATIO`].
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
    /// Dropout on the two residual branches (after `attn.proj` and after `mlp.fc2`), in `[0, 1)`;
    /// default 0.
    #[serde(default)]
    pub dropout: f64,
    /// Dropout on the attention weights, in `[0, 1)`; default 0.
    #[serde(default)]
    pub attn_dropout: f64,
    /// Whether the fused `qkv` projection has a bias; default true (ViT, MAE, BERT).
    #[serde(default = "default_true")]
    pub qkv_bias: bool,
    /// Epsilon of every LayerNorm; default [`VIT_LAYER_NORM_EPS`].
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Initialise the residual output projections (`attn.proj`, `mlp.fc2`) with a truncated
    /// normal of std `scaled_residual_std(0.02, depth)`, as GPT-2 does, whatever `init` says;
    /// default false. See [`scaled_residual_std`](crate::blocks::init::scaled_residual_std).
    #[serde(default)]
    pub scaled_residual_init: bool,
    /// Initialisation of the `Linear` weights; default [`InitScheme::TruncNormal`].
    #[serde(default)]
    pub init: InitScheme,
    /// Pre-LN (default) or post-LN blocks; see [`NormPlacement`].
    #[serde(default)]
    pub norm_placement: NormPlacement,
    /// The MLP's non-linearity; default exact GELU.
    #[serde(default)]
    pub activation: MlpActivation,
}

impl TransformerConfig {
    /// A config with the given shape and every other field at its default.
    pub fn new(dim: i64, depth: usize, heads: i64) -> Self {
        Self {
            dim,
            depth,
            heads,
            mlp_ratio: DEFAULT_MLP_RATIO,
            dropout: 0.0,
            attn_dropout: 0.0,
            qkv_bias: true,
            layer_norm_eps: VIT_LAYER_NORM_EPS,
            scaled_residual_init: false,
            init: InitScheme::default(),
            norm_placement: NormPlacement::default(),
            activation: MlpActivation::default(),
        }
    }

    /// Width of one attention head, `dim / heads`.
    pub fn head_dim(&self) -> i64 {
        self.dim / self.heads.max(1)
    }

    /// Hidden width of the MLP, `floor(dim · mlp_ratio)`.
    pub fn mlp_hidden_dim(&self) -> i64 {
        (self.dim as f64 * self.mlp_ratio) as i64
    }

    /// Checks every field; the error names the first field out of range.
    ///
    /// ```
    /// use ssl_core::{blocks::TransformerConfig, Error};
    /// let err = TransformerConfig::new(10, 2, 3).validate().unwrap_err();
    /// assert!(matches!(err, Error::Config { ref field, .. } if field == "heads"));
    /// ```
    pub fn validate(&self) -> Result<()> {
        if self.dim <= 0 {
            return Err(Error::config("dim", format!("must be positive, got {}", self.dim)));
        }
        if self.heads <= 0 {
            return Err(Error::config("heads", format!("must be positive, got {}", self.heads)));
        }
        if self.dim % self.heads != 0 {
            return Err(Error::config(
                "heads",
                format!("dim {} is not divisible by heads {}", self.dim, self.heads),
            ));
        }
        if self.depth == 0 {
            return Err(Error::config("depth", "must be at least 1"));
        }
        if !(self.mlp_ratio.is_finite() && self.mlp_ratio > 0.0) || self.mlp_hidden_dim() < 1 {
            return Err(Error::config(
                "mlp_ratio",
                format!("must give a hidden width of at least 1, got {}", self.mlp_ratio),
            ));
        }
        for (field, p) in [("dropout", self.dropout), ("attn_dropout", self.attn_dropout)] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::config(field, format!("must be in [0, 1), got {p}")));
            }
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(Error::config(
                "layer_norm_eps",
                format!("must be positive and finite, got {}", self.layer_norm_eps),
            ));
        }
        Ok(())
    }
}
