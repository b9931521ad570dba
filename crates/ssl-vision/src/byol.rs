//! BYOL: "Bootstrap Your Own Latent" (Grill et al., NeurIPS 2020); reference
//! `deepmind/deepmind-research/byol`.
//!
//! The online network (backbone, projector `in → 4096 → 256`, predictor `256 → 4096 → 256`,
//! BatchNorm in the hidden layers) predicts the target network's projection of the other view;
//! the target (backbone and projector) is an exponential moving average of the online one,
//! BatchNorm statistics included, with `τ = 1 - (1 - τ_base)(cos(πk/K) + 1)/2` and
//! `τ_base = 0.996` (0.99 for short runs). The loss is the normalised MSE `2 - 2 cos(p, z')`,
//! symmetrised over the two views. No negatives: the predictor and the slow target prevent the
//! collapse.
//!
//! ```
//! use ssl_core::Objective;
//! use ssl_vision::backbone::ResNetConfig;
//! use ssl_vision::byol::{Byol, ByolConfig};
//! let cfg = ByolConfig { backbone: ResNetConfig::tiny(), hidden_dim: 32, out_dim: 16, ..ByolConfig::default() };
//! let model = Byol::new(&cfg, ssl_core::tch::Device::Cpu).unwrap();
//! assert_eq!((model.name(), model.encoder().output_dim()), ("byol", 64));
//! ```

use serde::{Deserialize, Serialize};
use ssl_core::blocks::ema::BYOL_BASE_MOMENTUM;
use ssl_core::blocks::mlp::{BYOL_HIDDEN_DIM, BYOL_PROJECTION_DIM};
use ssl_core::blocks::{cosine_momentum, MlpHead, MlpHeadConfig};
use ssl_core::loss::{normalize, normalized_mse};
use ssl_core::{Encoder, Error, LossOutput, Objective, Result, StepContext};
use tch::{nn, Device, Kind, Tensor};

use crate::backbone::ResNetConfig;
use crate::momentum::MomentumPair;

/// BYOL's model and loss. Defaults: the paper's heads and `τ_base = 0.996` on a small-image
/// ResNet-18.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ByolConfig {
    /// The encoder.
    pub backbone: ResNetConfig,
    /// Hidden width of the projector and predictor (4096).
    pub hidden_dim: i64,
    /// Projection width (256).
    pub out_dim: i64,
    /// `τ_base`, raised to 1 over the run by the cosine schedule.
    pub base_momentum: f64,
}

impl Default for ByolConfig {
    fn default() -> Self {
        Self {
            backbone: ResNetConfig { small_images: true, ..ResNetConfig::resnet18() },
            hidden_dim: BYOL_HIDDEN_DIM,
            out_dim: BYOL_PROJECTION_DIM,
            base_momentum: BYOL_BASE_MOMENTUM,
        }
    }
}

impl ByolConfig {
    /// Checks the fields; errors name them (`model.base_momentum`).
    pub fn validate(&self) -> Result<()> {
        self.backbone.validate()?;
        if self.hidden_dim < 1 || self.out_dim < 1 {
            return Err(Error::config("model.hidden_dim", "MLP widths must be positive"));
        }
        if !(0.0..=1.0).contains(&self.base_momentum) {
            return Err(Error::config(
                "model.base_momentum",
                format!("must be in [0, 1], got {}", self.base_momentum),
            ));
        }
        Ok(())
    }
}

/// BYOL's online and target networks; see the [module docs](self).
pub struct Byol {
    vs: nn::VarStore,
    pair: MomentumPair,
    predictor: MlpHead,
    base_momentum: f64,
}

impl Byol {
    /// A freshly initialised model on `device` (seed libtorch first for a reproducible init).
    pub fn new(cfg: &ByolConfig, device: Device) -> Result<Self> {
        cfg.validate()?;
        let vs = nn::VarStore::new(device);
        let projector = MlpHeadConfig {
            hidden_dim: cfg.hidden_dim,
            out_dim: cfg.out_dim,
            ..MlpHeadConfig::byol_projector(cfg.backbone.output_dim())
        };
        let pair = MomentumPair::new(&vs, &cfg.backbone, &projector)?;
        let predictor =
            MlpHeadConfig { hidden_dim: cfg.hidden_dim, ..MlpHeadConfig::byol_predictor(cfg.out_dim) };
        let predictor = MlpHead::new(vs.root() / "predictor", &predictor)?;
        Ok(Self { vs, pair, predictor, base_momentum: cfg.base_momentum })
    }

    fn predict(&self, x: &Tensor) -> Result<Tensor> {
        self.predictor.f_forward_t(&self.pair.online.forward(x, true)?, true)
    }
}

impl Objective for Byol {
    type Batch = Vec<Tensor>;

    fn name(&self) -> &str {
        "byol"
    }

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn forward(&mut self, batch: &Vec<Tensor>, _ctx: &StepContext) -> Result<LossOutput> {
        let [x1, x2] = batch.as_slice() else {
            return Err(Error::invalid("batch", format!("BYOL takes 2 views, got {}", batch.len())));
        };
        let (p1, p2) = (self.predict(x1)?, self.predict(x2)?);
        let (z1, z2) = (self.pair.target_forward(x1)?, self.pair.target_forward(x2)?);
        let loss = normalized_mse(&p1, &z2)? + normalized_mse(&p2, &z1)?;
        // How well the prediction matches its target, in cosine (1 is perfect).
        let cos = tch::no_grad(|| {
            (normalize(&p1) * normalize(&z2))
                .sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
                .mean(Kind::Float)
        });
        Ok(LossOutput::new(loss).with_metric("target_cosine", &cos))
    }

    fn after_step(&mut self, ctx: &StepContext) -> Result<()> {
        self.pair.update(cosine_momentum(self.base_momentum, ctx.step + 1, ctx.total_steps))
    }

    fn encoder(&self) -> &dyn Encoder {
        self.pair.encoder()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_starts_as_the_online_copy_and_follows_by_ema() {
        tch::manual_seed(0);
        let cfg =
            ByolConfig { backbone: ResNetConfig::tiny(), hidden_dim: 16, out_dim: 8, ..Default::default() };
        let mut model = Byol::new(&cfg, Device::Cpu).unwrap();
        let vars = model.var_store().variables();
        let name = "backbone.conv1.weight";
        let (online, target) = (&vars[&format!("online.{name}")], &vars[&format!("target.{name}")]);
        assert!(online.equal(target));
        assert!(!target.requires_grad());
        let before = target.copy();
        tch::no_grad(|| drop(online.shallow_clone().g_add_scalar_(1.0)));
        let ctx = StepContext { step: 0, total_steps: 2, micro_step: 0, device: Device::Cpu };
        model.after_step(&ctx).unwrap();
        // Step 1 of 2: τ = 1 - 0.004 · (cos(π/2) + 1) / 2 = 0.998, so the target moves by 0.002.
        let moved = (target - &before).mean(Kind::Float).double_value(&[]);
        assert!((moved - 0.002).abs() < 1e-6, "{moved}");
    }

    #[test]
    fn trains_end_to_end() {
        tch::manual_seed(0);
        let cfg =
            ByolConfig { backbone: ResNetConfig::tiny(), hidden_dim: 32, out_dim: 16, base_momentum: 0.99 };
        let mut model = Byol::new(&cfg, Device::Cpu).unwrap();
        let views = crate::augment::presets::byol(16);
        crate::testutil::tiny_pretrain_and_probe(&mut model, views, 3e-3, 40, Some("target_cosine"));
    }
}
