//! SimCLR: "A Simple Framework for Contrastive Learning of Visual Representations"
//! (Chen, Kornblith, Norouzi, Hinton, ICML 2020); reference code `google-research/simclr`.
//!
//! Two augmented views of each image go through the backbone `f` and the projection head `g`;
//! NT-Xent (`ssl_core::loss::nt_xent`) pulls each view towards its partner and away from the
//! other `2N - 2` views of the batch. The representation probed afterwards is `f`'s output,
//! before the head.
//!
//! ```
//! use ssl_core::Objective;
//! use ssl_vision::simclr::{Simclr, SimclrConfig};
//! use ssl_vision::backbone::ResNetConfig;
//! let cfg = SimclrConfig { backbone: ResNetConfig::tiny(), hidden_dim: 32, out_dim: 16, ..SimclrConfig::small_images() };
//! let model = Simclr::new(&cfg, ssl_core::tch::Device::Cpu).unwrap();
//! assert_eq!(model.encoder().output_dim(), 64);
//! ```

use serde::{Deserialize, Serialize};
use ssl_core::blocks::{MlpHead, MlpHeadConfig};
use ssl_core::loss::nt_xent_stacked;
use ssl_core::{Encoder, Error, LossOutput, Objective, Result, StepContext};
use tch::{nn, Device, Tensor};

use crate::backbone::{ResNet, ResNetConfig};

/// SimCLR's temperature for small images (CIFAR-10, the paper's appendix B.9).
pub const SMALL_IMAGE_TEMPERATURE: f64 = 0.5;
/// SimCLR's temperature at ImageNet scale with large batches (Table 5 / appendix B).
pub const IMAGENET_TEMPERATURE: f64 = 0.1;
/// Width of the projection head's hidden layer (the reference code's default, 2048).
pub const HEAD_HIDDEN_DIM: i64 = 2048;
/// Output width of the projection head (128 in the paper).
pub const HEAD_OUT_DIM: i64 = 128;

/// The model and loss of SimCLR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimclrConfig {
    /// The encoder `f`.
    pub backbone: ResNetConfig,
    /// Hidden width of the projection head `g`.
    #[serde(default = "default_hidden")]
    pub hidden_dim: i64,
    /// Output width of `g`.
    #[serde(default = "default_out")]
    pub out_dim: i64,
    /// BatchNorm in the head's hidden layer (the reference code's choice).
    #[serde(default = "default_true")]
    pub head_batch_norm: bool,
    /// NT-Xent temperature τ.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
}

fn default_hidden() -> i64 {
    HEAD_HIDDEN_DIM
}
fn default_out() -> i64 {
    HEAD_OUT_DIM
}
fn default_true() -> bool {
    true
}
fn default_temperature() -> f64 {
    SMALL_IMAGE_TEMPERATURE
}

impl SimclrConfig {
    /// The CIFAR recipe: ResNet-18 with the small-image stem, τ = 0.5.
    pub fn small_images() -> Self {
        Self {
            backbone: ResNetConfig { small_images: true, ..ResNetConfig::resnet18() },
            hidden_dim: HEAD_HIDDEN_DIM,
            out_dim: HEAD_OUT_DIM,
            head_batch_norm: true,
            temperature: SMALL_IMAGE_TEMPERATURE,
        }
    }

    /// The ImageNet recipe: ResNet-50, τ = 0.1.
    pub fn imagenet() -> Self {
        Self { backbone: ResNetConfig::resnet50(), temperature: IMAGENET_TEMPERATURE, ..Self::small_images() }
    }

    /// Checks the fields; errors name them (`model.temperature`).
    pub fn validate(&self) -> Result<()> {
        self.backbone.validate()?;
        if self.hidden_dim < 1 || self.out_dim < 1 {
            return Err(Error::config("model.hidden_dim", "head widths must be positive"));
        }
        if self.temperature.is_nan() || self.temperature <= 0.0 {
            return Err(Error::config("model.temperature", "must be positive"));
        }
        Ok(())
    }

    fn head(&self) -> MlpHeadConfig {
        MlpHeadConfig {
            hidden_dim: self.hidden_dim,
            batch_norm: self.head_batch_norm,
            ..MlpHeadConfig::simclr(self.backbone.output_dim(), self.out_dim)
        }
    }
}

/// SimCLR's backbone, projection head and loss.
pub struct Simclr {
    vs: nn::VarStore,
    backbone: ResNet,
    head: MlpHead,
    temperature: f64,
}

impl Simclr {
    /// A freshly initialised model on `device` (seed libtorch first for a reproducible init).
    pub fn new(cfg: &SimclrConfig, device: Device) -> Result<Self> {
        cfg.validate()?;
        let vs = nn::VarStore::new(device);
        let backbone = ResNet::new(vs.root() / "backbone", &cfg.backbone)?;
        let head = MlpHead::new(vs.root() / "head", &cfg.head())?;
        Ok(Self { vs, backbone, head, temperature: cfg.temperature })
    }
}

impl Objective for Simclr {
    type Batch = Vec<Tensor>;

    fn name(&self) -> &str {
        "simclr"
    }

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn forward(&mut self, batch: &Vec<Tensor>, _ctx: &StepContext) -> Result<LossOutput> {
        let [a, b] = batch.as_slice() else {
            return Err(Error::invalid("batch", format!("SimCLR takes 2 views, got {}", batch.len())));
        };
        // One pass over both views, so BatchNorm sees the whole 2N batch as in the reference.
        let h = self.backbone.f_forward_t(&Tensor::cat(&[a, b], 0), true)?;
        nt_xent_stacked(&self.head.f_forward_t(&h, true)?, self.temperature)
    }

    fn encoder(&self) -> &dyn Encoder {
        &self.backbone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::presets;

    #[test]
    fn recipe_constants_are_the_papers() {
        assert_eq!(SimclrConfig::small_images().temperature, 0.5);
        assert_eq!(SimclrConfig::imagenet().temperature, 0.1);
        assert_eq!((HEAD_HIDDEN_DIM, HEAD_OUT_DIM), (2048, 128));
        let e = SimclrConfig { temperature: 0.0, ..SimclrConfig::small_images() }.validate().unwrap_err();
        assert!(e.to_string().contains("model.temperature"));
    }

    /// A tiny end-to-end pretrain + probe: the loss falls, the pretext accuracy is reported and
    /// the probe runs on the encoder's features.
    #[test]
    fn tiny_pretraining_runs_end_to_end() {
        ssl_core::tch::manual_seed(0);
        let cfg = SimclrConfig {
            backbone: ResNetConfig::tiny(),
            hidden_dim: 32,
            out_dim: 16,
            ..SimclrConfig::small_images()
        };
        let mut model = Simclr::new(&cfg, Device::Cpu).unwrap();
        crate::testutil::tiny_pretrain_and_probe(
            &mut model,
            presets::simclr(16, true),
            3e-3,
            40,
            Some("pretext_acc"),
        );
    }
}
