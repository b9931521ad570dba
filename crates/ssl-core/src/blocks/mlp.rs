//! Projection and prediction heads: small MLPs on top of an encoder's representation.
//!
//! A head of `layers` Linear layers: `in_dim -> hidden_dim -> ... -> out_dim`. Each hidden Linear
//! is followed by an optional BatchNorm1d and the activation; the last Linear by an optional
//! BatchNorm1d without affine parameters. A Linear followed by BatchNorm has no bias (the BN
//! shift makes it redundant). Parameters are named `layers.{i}.linear` and `layers.{i}.bn`.
//!
//! Linear layers start as PyTorch's `nn.Linear` does (weight and bias uniform in
//! `±1/√fan_in`), since every reference head below is a PyTorch or TF module left at its default
//! initialisation; BatchNorm starts at weight 1, bias 0.

use std::borrow::Borrow;

use serde::{Deserialize, Serialize};
use tch::{nn, TchError, Tensor};

use crate::error::{Error, Result, TorchResultExt};

/// Output width of the SimCLR projection head (Chen et al., 2020, default setting: 128-d `z`).
pub const SIMCLR_PROJECTION_DIM: i64 = 128;
/// Hidden width of BYOL's projector and predictor (Grill et al., 2020, implementation details:
/// 4096).
pub const BYOL_HIDDEN_DIM: i64 = 4096;
/// Output width of BYOL's projector and predictor (Grill et al., 2020, implementation details:
/// 256).
pub const BYOL_PROJECTION_DIM: i64 = 256;
/// Hidden width of MoCo v3's projector and predictor (Chen, Xie, He, 2021, and the reference
/// `--moco-mlp-dim` default: 4096).
pub const MOCO_V3_HIDDEN_DIM: i64 = 4096;
/// Output width of MoCo v3's projector and predictor (Chen, Xie, He, 2021, and the reference
/// `--moco-dim` default: 256).
pub const MOCO_V3_PROJECTION_DIM: i64 = 256;
/// Output width of the MoCo v2 MLP head (Chen, Fan, Girshick, He, 2020: 128-d, as MoCo v1).
pub const MOCO_V2_PROJECTION_DIM: i64 = 128;

/// The non-linearity after each hidden layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `max(0, x)`: SimCLR, BYOL, MoCo.
    #[default]
    Relu,
    /// Exact (erf) GELU: DINO's head.
    Gelu,
}

fn default_layers() -> usize {
    2
}
fn default_true() -> bool {
    true
}

/// Shape of an [`MlpHead`]; the presets are the heads of the papers.
///
/// ```
/// use ssl_core::blocks::MlpHeadConfig;
/// let cfg: MlpHeadConfig =
///     serde_json::from_str(r#"{"in_dim": 512, "hidden_dim": 2048, "out_dim": 128}"#)?;
/// assert_eq!((cfg.layers, cfg.batch_norm, cfg.bias), (2, false, true));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpHeadConfig {
    /// Input width (the encoder's representation).
    pub in_dim: i64,
    /// Width of the hidden layers (ignored when `layers == 1`).
    pub hidden_dim: i64,
    /// Output width.
    pub out_dim: i64,
    /// Number of Linear layers, at least 1 (1 = a single Linear); default 2.
    #[serde(default = "default_layers")]
    pub layers: usize,
    /// BatchNorm1d after each hidden Linear, before the activation; default false.
    #[serde(default)]
    pub batch_norm: bool,
    /// BatchNorm1d without affine parameters after the last Linear (MoCo v3, following SimCLR v2);
    /// default false.
    #[serde(default)]
    pub last_batch_norm: bool,
    /// Non-linearity after each hidden layer; default ReLU.
    #[serde(default)]
    pub activation: Activation,
    /// Bias on the Linear layers that no BatchNorm follows; default true.
    #[serde(default = "default_true")]
    pub bias: bool,
}

impl MlpHeadConfig {
    fn plain(in_dim: i64, hidden_dim: i64, out_dim: i64, layers: usize) -> Self {
        Self {
            in_dim,
            hidden_dim,
            out_dim,
            layers,
            batch_norm: false,
            last_batch_norm: false,
            activation: Activation::Relu,
            bias: true,
        }
    }

    /// SimCLR's projection head `g`: Linear(in, in) → BN → ReLU → Linear(in, out).
    ///
    /// The paper (Chen et al., 2020) writes `g(h) = W2 σ(W1 h)`; the reference TF code
    /// (`model_util.projection_head`) also puts BatchNorm after both Linear layers, the last one
    /// with a scale but no shift. We keep the reference's hidden BatchNorm and leave the output
    /// un-normalised, as in the paper's formula; set `last_batch_norm` for an affine-free
    /// approximation of the reference's final BN, or `batch_norm: false` for the bare formula.
    /// The paper uses `out = 128` ([`SIMCLR_PROJECTION_DIM`]).
    pub fn simclr(in_dim: i64, out_dim: i64) -> Self {
        Self { batch_norm: true, ..Self::plain(in_dim, in_dim, out_dim, 2) }
    }

    /// BYOL's projector (Grill et al., 2020): Linear(in, 4096) → BN → ReLU → Linear(4096, 256).
    pub fn byol_projector(in_dim: i64) -> Self {
        Self { batch_norm: true, ..Self::plain(in_dim, BYOL_HIDDEN_DIM, BYOL_PROJECTION_DIM, 2) }
    }

    /// BYOL's predictor (Grill et al., 2020): the projector's architecture on the
    /// projection, `dim -> 4096 -> dim` (`dim = 256` in the paper).
    pub fn byol_predictor(dim: i64) -> Self {
        Self { batch_norm: true, ..Self::plain(dim, BYOL_HIDDEN_DIM, dim, 2) }
    }

    /// MoCo v3's projector for ViT backbones (reference `_build_mlp(3, in, 4096, 256)`): three
    /// bias-free Linear layers, BN + ReLU after the hidden ones, affine-free BN on the output.
    /// The ResNet variant uses two layers: set `layers = 2`.
    pub fn moco_v3_projector(in_dim: i64) -> Self {
        Self {
            batch_norm: true,
            last_batch_norm: true,
            bias: false,
            ..Self::plain(in_dim, MOCO_V3_HIDDEN_DIM, MOCO_V3_PROJECTION_DIM, 3)
        }
    }

    /// MoCo v3's predictor (reference `_build_mlp(2, dim, 4096, dim, last_bn=False)`): two
    /// bias-free Linear layers with BN + ReLU in between.
    pub fn moco_v3_predictor(dim: i64) -> Self {
        Self { batch_norm: true, bias: false, ..Self::plain(dim, MOCO_V3_HIDDEN_DIM, dim, 2) }
    }

    /// MoCo v2's MLP head: Linear(in, in) → ReLU → Linear(in, 128), no BatchNorm. The reference
    /// replaces the ResNet `fc` with `Linear(dim_mlp, dim_mlp), ReLU, Linear(dim_mlp, 128)`, so
    /// the hidden width is the input width (2048 for ResNet-50).
    pub fn moco_v2_projector(in_dim: i64) -> Self {
        Self::plain(in_dim, in_dim, MOCO_V2_PROJECTION_DIM, 2)
    }

    /// Checks every field; the error names the first field out of range.
    ///
    /// ```
    /// use ssl_core::{blocks::MlpHeadConfig, Error};
    /// let bad = MlpHeadConfig { layers: 0, ..MlpHeadConfig::moco_v2_projector(16) };
    /// assert!(matches!(bad.validate(), Err(Error::Config { field, .. }) if field == "layers"));
    /// ```
    pub fn validate(&self) -> Result<()> {
        if self.layers == 0 {
            return Err(Error::config("layers", "must be at least 1"));
        }
        let mut dims = vec![("in_dim", self.in_dim), ("out_dim", self.out_dim)];
        if self.layers > 1 {
            dims.push(("hidden_dim", self.hidden_dim));
        }
        for (field, d) in dims {
            if d <= 0 {
                return Err(Error::config(field, format!("must be positive, got {d}")));
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Layer {
    linear: nn::Linear,
    bn: Option<nn::BatchNorm>,
    act: Option<Activation>,
}

/// BatchNorm1d settings, PyTorch's defaults (tch's momentum and eps agree).
const BN_EPS: f64 = 1e-5;
const BN_MOMENTUM: f64 = 0.1;

/// A projection or prediction head; see the [module docs](self).
#[derive(Debug)]
pub struct MlpHead {
    layers: Vec<Layer>,
    config: MlpHeadConfig,
}

impl MlpHead {
    /// Creates the head under `path` after validating `cfg`.
    ///
    /// ```
    /// use ssl_core::blocks::{MlpHead, MlpHeadConfig};
    /// use ssl_core::tch::{nn, Device, Kind, Tensor};
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let cfg = MlpHeadConfig { hidden_dim: 32, out_dim: 16, ..MlpHeadConfig::moco_v3_projector(8) };
    /// let head = MlpHead::new(vs.root() / "projector", &cfg)?;
    /// let z = head.forward_t(&Tensor::randn([4, 8], (Kind::Float, Device::Cpu)), true);
    /// assert_eq!(z.size(), [4, 16]);
    /// assert!(vs.variables().contains_key("projector.layers.2.bn.running_mean"));
    /// # Ok::<(), ssl_core::Error>(())
    /// ```
    pub fn new<'a, P: Borrow<nn::Path<'a>>>(path: P, cfg: &MlpHeadConfig) -> Result<Self> {
        cfg.validate()?;
        let path = path.borrow();
        let n = cfg.layers;
        let layers = (0..n)
            .map(|i| {
                let last = i + 1 == n;
                let d_in = if i == 0 { cfg.in_dim } else { cfg.hidden_dim };
                let d_out = if last { cfg.out_dim } else { cfg.hidden_dim };
                let with_bn = if last { cfg.last_batch_norm } else { cfg.batch_norm };
                let p = path / "layers" / i;
                let bound = 1.0 / (d_in as f64).sqrt();
                let uniform = nn::Init::Uniform { lo: -bound, up: bound };
                let linear = nn::linear(
                    &p / "linear",
                    d_in,
                    d_out,
                    nn::LinearConfig { ws_init: uniform, bs_init: Some(uniform), bias: cfg.bias && !with_bn },
                );
                let bn = with_bn.then(|| {
                    let bn_cfg = nn::BatchNormConfig {
                        eps: BN_EPS,
                        momentum: BN_MOMENTUM,
                        affine: !last,
                        ws_init: nn::Init::Const(1.0),
                        bs_init: nn::Init::Const(0.0),
                        ..Default::default()
                    };
                    nn::batch_norm1d(&p / "bn", d_out, bn_cfg)
                });
                Layer { linear, bn, act: (!last).then_some(cfg.activation) }
            })
            .collect();
        Ok(Self { layers, config: cfg.clone() })
    }

    /// The config the head was built from.
    pub fn config(&self) -> &MlpHeadConfig {
        &self.config
    }

    /// Maps `x: [B, in_dim]` to `[B, out_dim]`; `train` makes BatchNorm use (and update) batch
    /// statistics.
    ///
    /// # Panics
    /// On the errors [`f_forward_t`](Self::f_forward_t) returns.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.f_forward_t(x, train).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`forward_t`](Self::forward_t), returning an error when `x` is not `[B, in_dim]`,
    /// when training BatchNorm on a batch of one, or when a libtorch call fails.
    pub fn f_forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let size = x.size();
        if size.len() != 2 || size[1] != self.config.in_dim {
            let expected = format!("[B, {}]", self.config.in_dim);
            return Err(Error::shape("projection head input", expected, &size));
        }
        if train && size[0] < 2 && self.layers.iter().any(|l| l.bn.is_some()) {
            let message = format!("BatchNorm in training needs a batch of at least 2, got {}", size[0]);
            return Err(Error::invalid("x", message));
        }
        self.layers
            .iter()
            .try_fold(x.shallow_clone(), |h, layer| layer.forward(&h, train))
            .torch_context("projection head")
    }
}

impl Layer {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor, TchError> {
        let mut h = x.f_linear(&self.linear.ws, self.linear.bs.as_ref())?;
        if let Some(bn) = &self.bn {
            h = super::norm::batch_norm(
                &h,
                bn.ws.as_ref(),
                bn.bs.as_ref(),
                &bn.running_mean,
                &bn.running_var,
                train,
                BN_MOMENTUM,
                BN_EPS,
            )?;
        }
        match self.act {
            Some(Activation::Relu) => h.f_relu(),
            Some(Activation::Gelu) => h.f_gelu("none"),
            None => Ok(h),
        }
    }
}

impl nn::ModuleT for MlpHead {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        MlpHead::forward_t(self, xs, train)
    }
}

#[cfg(test)]
mod tests;
