//! The two-view image methods behind one trait, so that programs (the `ssl` CLI, benchmarks,
//! users' own loops) can drive any of them the same way: build from a config, make the method's
//! views, know its recipe.
//!
//! ```
//! use ssl_vision::method::{VisionMethod, METHOD_NAMES};
//! use ssl_vision::byol::Byol;
//! assert_eq!(<Byol as VisionMethod>::NAME, "byol");
//! assert_eq!(METHOD_NAMES, ["simclr", "moco-v2", "moco-v3", "byol"]);
//! let cfg = Byol::default_config();
//! assert_eq!(Byol::backbone(&cfg).output_dim(), 512);
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;
use ssl_core::optim::{OptimizerConfig, OptimizerKind};
use ssl_core::{Objective, Result};
use tch::{Device, Tensor};

use crate::augment::presets::{self, ViewPipelines};
use crate::backbone::ResNetConfig;
use crate::byol::{Byol, ByolConfig};
use crate::moco::{MocoV2, MocoV2Config, MocoV3, MocoV3Config};
use crate::simclr::{Simclr, SimclrConfig};
use crate::supervised::{Supervised, SupervisedConfig};

/// The CLI names of the methods implementing [`VisionMethod`].
pub const METHOD_NAMES: [&str; 4] = ["simclr", "moco-v2", "moco-v3", "byol"];

/// A two-view image pretraining method.
pub trait VisionMethod: Objective<Batch = Vec<Tensor>> + Sized {
    /// The model config (the `[model]` table of a run config).
    type Config: Serialize + DeserializeOwned + Clone + std::fmt::Debug + PartialEq;
    /// The method's CLI name.
    const NAME: &'static str;
    /// A line for `ssl methods`.
    const ABOUT: &'static str;
    /// Whether the method trains on labels (its batches end with them, and a training folder
    /// must be labelled).
    const LABELLED: bool = false;

    /// The paper's model for small (32 px) images.
    fn default_config() -> Self::Config;
    /// The backbone of a config (to build the untrained baseline and to embed).
    fn backbone(cfg: &Self::Config) -> &ResNetConfig;
    /// The backbone, mutably (CLI overrides).
    fn backbone_mut(cfg: &mut Self::Config) -> &mut ResNetConfig;
    /// Checks the config; errors name the field.
    fn validate(cfg: &Self::Config) -> Result<()>;
    /// Sets the number of classes of a labelled training set (methods that train on labels).
    fn set_num_classes(_cfg: &mut Self::Config, _num_classes: usize) {}
    /// Checks the config against the training set size (MoCo's queue).
    fn check_dataset(_cfg: &Self::Config, _dataset_len: usize) -> Result<()> {
        Ok(())
    }
    /// A freshly initialised model (seed libtorch first for a reproducible init).
    fn build(cfg: &Self::Config, device: Device) -> Result<Self>;
    /// The paper's augmentation of each view at `size` pixels (`small_images`: the 32 px
    /// variant where the paper has one).
    fn views(size: u32, small_images: bool) -> ViewPipelines;
    /// The paper's optimiser for a batch of `batch_size` (learning rates scaled as the paper
    /// scales them).
    fn optimizer(batch_size: usize) -> OptimizerConfig;
}

fn lars(base_lr: f64, batch_size: usize, weight_decay: f64) -> OptimizerConfig {
    OptimizerConfig {
        name: OptimizerKind::Lars,
        lr: base_lr * batch_size as f64 / 256.0,
        weight_decay,
        ..OptimizerConfig::default()
    }
}

impl VisionMethod for Simclr {
    type Config = SimclrConfig;
    const NAME: &'static str = "simclr";
    const ABOUT: &'static str =
        "SimCLR (Chen et al. 2020): NT-Xent over two augmented views, ResNet backbone";

    fn default_config() -> SimclrConfig {
        SimclrConfig::small_images()
    }
    fn backbone(cfg: &SimclrConfig) -> &ResNetConfig {
        &cfg.backbone
    }
    fn backbone_mut(cfg: &mut SimclrConfig) -> &mut ResNetConfig {
        &mut cfg.backbone
    }
    fn validate(cfg: &SimclrConfig) -> Result<()> {
        cfg.validate()
    }
    fn build(cfg: &SimclrConfig, device: Device) -> Result<Self> {
        Simclr::new(cfg, device)
    }
    fn views(size: u32, small_images: bool) -> ViewPipelines {
        presets::simclr(size, small_images)
    }
    /// LARS, lr 0.3 × batch / 256, weight decay 1e-6 (the paper's §B.1).
    fn optimizer(batch_size: usize) -> OptimizerConfig {
        lars(0.3, batch_size, 1e-6)
    }
}

impl VisionMethod for MocoV2 {
    type Config = MocoV2Config;
    const NAME: &'static str = "moco-v2";
    const ABOUT: &'static str =
        "MoCo v2 (Chen et al. 2020): momentum key encoder and a queue of negatives, ResNet backbone";

    fn default_config() -> MocoV2Config {
        MocoV2Config::default()
    }
    fn backbone(cfg: &MocoV2Config) -> &ResNetConfig {
        &cfg.backbone
    }
    fn backbone_mut(cfg: &mut MocoV2Config) -> &mut ResNetConfig {
        &mut cfg.backbone
    }
    fn validate(cfg: &MocoV2Config) -> Result<()> {
        cfg.validate()
    }
    fn check_dataset(cfg: &MocoV2Config, dataset_len: usize) -> Result<()> {
        cfg.check_dataset(dataset_len)
    }
    fn build(cfg: &MocoV2Config, device: Device) -> Result<Self> {
        MocoV2::new(cfg, device)
    }
    fn views(size: u32, _small_images: bool) -> ViewPipelines {
        presets::moco_v2(size)
    }
    /// SGD, momentum 0.9, lr 0.03 × batch / 256, weight decay 1e-4 (the reference's recipe).
    fn optimizer(batch_size: usize) -> OptimizerConfig {
        OptimizerConfig {
            name: OptimizerKind::Sgd,
            lr: 0.03 * batch_size as f64 / 256.0,
            weight_decay: 1e-4,
            momentum: 0.9,
            ..OptimizerConfig::default()
        }
    }
}

impl VisionMethod for MocoV3 {
    type Config = MocoV3Config;
    const NAME: &'static str = "moco-v3";
    const ABOUT: &'static str =
        "MoCo v3 (Chen et al. 2021): predictor, symmetric in-batch InfoNCE, cosine momentum, ResNet backbone";

    fn default_config() -> MocoV3Config {
        MocoV3Config::default()
    }
    fn backbone(cfg: &MocoV3Config) -> &ResNetConfig {
        &cfg.backbone
    }
    fn backbone_mut(cfg: &mut MocoV3Config) -> &mut ResNetConfig {
        &mut cfg.backbone
    }
    fn validate(cfg: &MocoV3Config) -> Result<()> {
        cfg.validate()
    }
    fn build(cfg: &MocoV3Config, device: Device) -> Result<Self> {
        MocoV3::new(cfg, device)
    }
    fn views(size: u32, _small_images: bool) -> ViewPipelines {
        presets::moco_v3(size)
    }
    /// LARS, lr 0.6 × batch / 256, weight decay 1e-6 (the reference's ResNet-50 recipe).
    fn optimizer(batch_size: usize) -> OptimizerConfig {
        lars(0.6, batch_size, 1e-6)
    }
}

impl VisionMethod for Byol {
    type Config = ByolConfig;
    const NAME: &'static str = "byol";
    const ABOUT: &'static str =
        "BYOL (Grill et al. 2020): online predictor against an EMA target, no negatives, ResNet backbone";

    fn default_config() -> ByolConfig {
        ByolConfig::default()
    }
    fn backbone(cfg: &ByolConfig) -> &ResNetConfig {
        &cfg.backbone
    }
    fn backbone_mut(cfg: &mut ByolConfig) -> &mut ResNetConfig {
        &mut cfg.backbone
    }
    fn validate(cfg: &ByolConfig) -> Result<()> {
        cfg.validate()
    }
    fn build(cfg: &ByolConfig, device: Device) -> Result<Self> {
        Byol::new(cfg, device)
    }
    fn views(size: u32, _small_images: bool) -> ViewPipelines {
        presets::byol(size)
    }
    /// LARS, lr 0.2 × batch / 256, weight decay 1.5e-6 (the paper's §3.3).
    fn optimizer(batch_size: usize) -> OptimizerConfig {
        lars(0.2, batch_size, 1.5e-6)
    }
}

impl VisionMethod for Supervised {
    type Config = SupervisedConfig;
    const NAME: &'static str = "supervised";
    const ABOUT: &'static str =
        "supervised reference: the same backbone trained with labels (needs a labelled folder)";
    const LABELLED: bool = true;

    fn default_config() -> SupervisedConfig {
        SupervisedConfig::default()
    }
    fn backbone(cfg: &SupervisedConfig) -> &ResNetConfig {
        &cfg.backbone
    }
    fn backbone_mut(cfg: &mut SupervisedConfig) -> &mut ResNetConfig {
        &mut cfg.backbone
    }
    fn validate(cfg: &SupervisedConfig) -> Result<()> {
        cfg.validate()
    }
    fn set_num_classes(cfg: &mut SupervisedConfig, num_classes: usize) {
        cfg.num_classes = num_classes as i64;
    }
    fn build(cfg: &SupervisedConfig, device: Device) -> Result<Self> {
        Supervised::new(cfg, device)
    }
    fn views(size: u32, _small_images: bool) -> ViewPipelines {
        presets::supervised(size)
    }
    /// SGD, momentum 0.9, lr 0.1 × batch / 256, weight decay 5e-4 (the usual CIFAR ResNet recipe).
    fn optimizer(batch_size: usize) -> OptimizerConfig {
        OptimizerConfig {
            name: OptimizerKind::Sgd,
            lr: 0.1 * batch_size as f64 / 256.0,
            weight_decay: 5e-4,
            momentum: 0.9,
            ..OptimizerConfig::default()
        }
    }
}
