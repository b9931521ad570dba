//! The supervised reference: the same backbone trained with labels (softmax cross-entropy on a
//! linear classifier) for the same budget, the upper bound self-supervised features are
//! compared with. Augmentation: random resized crop (0.08, 1) and horizontal flip, the
//! standard supervised ImageNet recipe. Its batches carry the labels as a second tensor.
//!
//! ```
//! use ssl_core::Objective;
//! use ssl_vision::backbone::ResNetConfig;
//! use ssl_vision::supervised::{Supervised, SupervisedConfig};
//! let cfg = SupervisedConfig { backbone: ResNetConfig::tiny(), num_classes: 8, label_smoothing: 0.0 };
//! let model = Supervised::new(&cfg, ssl_core::tch::Device::Cpu).unwrap();
//! assert_eq!((model.name(), model.encoder().output_dim()), ("supervised", 64));
//! ```

use serde::{Deserialize, Serialize};
use ssl_core::error::TorchResultExt;
use ssl_core::{Encoder, Error, LossOutput, Objective, Result, StepContext};
use tch::{nn, nn::Module, Device, Kind, Tensor};

use crate::backbone::{ResNet, ResNetConfig};

/// The supervised model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisedConfig {
    /// The encoder.
    pub backbone: ResNetConfig,
    /// Number of classes of the training labels.
    pub num_classes: i64,
    /// Label smoothing of the cross-entropy (0: none).
    pub label_smoothing: f64,
}

impl Default for SupervisedConfig {
    fn default() -> Self {
        Self {
            backbone: ResNetConfig { small_images: true, ..ResNetConfig::resnet18() },
            num_classes: crate::shapes::CLASSES.len() as i64,
            label_smoothing: 0.0,
        }
    }
}

impl SupervisedConfig {
    /// Checks the fields; errors name them (`model.num_classes`).
    pub fn validate(&self) -> Result<()> {
        self.backbone.validate()?;
        if self.num_classes < 2 {
            return Err(Error::config("model.num_classes", "needs at least 2 classes"));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(Error::config("model.label_smoothing", "must be in [0, 1)"));
        }
        Ok(())
    }
}

/// A backbone and a linear classifier trained with labels.
pub struct Supervised {
    vs: nn::VarStore,
    backbone: ResNet,
    classifier: nn::Linear,
    cfg: SupervisedConfig,
}

impl Supervised {
    /// A freshly initialised model on `device` (seed libtorch first for a reproducible init).
    pub fn new(cfg: &SupervisedConfig, device: Device) -> Result<Self> {
        cfg.validate()?;
        let vs = nn::VarStore::new(device);
        let backbone = ResNet::new(vs.root() / "backbone", &cfg.backbone)?;
        let classifier =
            nn::linear(vs.root() / "fc", cfg.backbone.output_dim(), cfg.num_classes, Default::default());
        Ok(Self { vs, backbone, classifier, cfg: cfg.clone() })
    }
}

impl Objective for Supervised {
    /// `[images, labels]`: one augmented view and the int64 labels.
    type Batch = Vec<Tensor>;

    fn name(&self) -> &str {
        "supervised"
    }

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn forward(&mut self, batch: &Vec<Tensor>, _ctx: &StepContext) -> Result<LossOutput> {
        let [x, y] = batch.as_slice() else {
            return Err(Error::invalid("batch", "the supervised objective takes [images, labels]"));
        };
        let (lo, hi) = (y.min().int64_value(&[]), y.max().int64_value(&[]));
        if lo < 0 || hi >= self.cfg.num_classes {
            return Err(Error::invalid(
                "labels",
                format!(
                    "labels must be in [0, {}), got [{lo}, {hi}]: is the training folder labelled?",
                    self.cfg.num_classes
                ),
            ));
        }
        let logits = self.classifier.forward(&self.backbone.f_forward_t(x, true)?);
        let loss = logits
            .f_cross_entropy_loss::<Tensor>(y, None, tch::Reduction::Mean, -100, self.cfg.label_smoothing)
            .torch_context("cross-entropy")?;
        let acc =
            tch::no_grad(|| logits.argmax(1, false).eq_tensor(y).to_kind(Kind::Float).mean(Kind::Float));
        Ok(LossOutput::new(loss).with_metric("train_acc", &acc))
    }

    fn encoder(&self) -> &dyn Encoder {
        &self.backbone
    }
}
