//! The image pretraining methods behind one trait, so that programs (the `ssl` CLI, benchmarks,
//! users' own loops) can drive any of them the same way: build from a config, make the method's
//! views, know its recipe.
//!
//! ```
//! use ssl_vision::method::{VisionMethod, METHOD_NAMES};
//! use ssl_vision::byol::Byol;
//! assert_eq!(<Byol as VisionMethod>::NAME, "byol");
//! assert_eq!(METHOD_NAMES, ["simclr", "moco-v2", "moco-v3", "byol", "mae", "inpainting", "rotation", "autoencoder"]);
//! let mut cfg = Byol::default_config();
//! assert_eq!(cfg.backbone.output_dim(), 512);
//! Byol::short_run_config(&mut cfg);
//! assert_eq!((cfg.backbone.output_dim(), cfg.base_momentum), (128, 0.99));
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;
use ssl_core::eval::FinetuneConfig;
use ssl_core::optim::{OptimizerConfig, OptimizerKind};
use ssl_core::{Objective, Result};
use tch::{Device, Tensor};

use crate::augment::presets::{self, ViewPipelines};
use crate::autoencoder::{Autoencoder, AutoencoderConfig};
use crate::backbone::{ResNetConfig, VitConfig};
use crate::byol::{Byol, ByolConfig};
use crate::inpainting::{Inpainting, InpaintingConfig};
use crate::mae::{Mae, MaeConfig};
use crate::moco::{MocoV2, MocoV2Config, MocoV3, MocoV3Config};
use crate::rotation::{Rotation, RotationConfig};
use crate::simclr::{Simclr, SimclrConfig};
use crate::supervised::{Supervised, SupervisedConfig};

/// The CLI names of the methods implementing [`VisionMethod`].
pub const METHOD_NAMES: [&str; 8] =
    ["simclr", "moco-v2", "moco-v3", "byol", "mae", "inpainting", "rotation", "autoencoder"];

/// ResNet base width of a short run (the papers' is 64): a quarter of the channels, about a
/// tenth of the compute. Width 8 runs twice as fast but learns far less per step (SimCLR on the
/// embedded shapes, 300 steps: linear probe 0.25 against 0.34 at width 16; issue 3's note).
pub const SHORT_RUN_BASE_WIDTH: i64 = 16;

/// MoCo v2's queue in a short run on a small dataset (the reference CIFAR-10 set-ups use 4096
/// keys for 50 000 images; the queue must stay shorter than the dataset).
pub const SHORT_RUN_QUEUE_SIZE: usize = 4096;

/// The key and target momentum of short runs (MoCo v2 and BYOL both suggest 0.99 there).
pub const SHORT_RUN_MOMENTUM: f64 = 0.99;

/// An image pretraining method (one or more augmented views per image).
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
    /// Checks the config; errors name the field.
    fn validate(cfg: &Self::Config) -> Result<()>;
    /// Sets the number of classes of a labelled training set (methods that train on labels).
    fn set_num_classes(_cfg: &mut Self::Config, _num_classes: usize) {}
    /// Checks the config against the side of the training views (a ViT is built for one
    /// size); errors name the field.
    fn check_image_size(_cfg: &Self::Config, _size: u32) -> Result<()> {
        Ok(())
    }
    /// Checks the config against the training set size (MoCo's queue).
    fn check_dataset(_cfg: &Self::Config, _dataset_len: usize) -> Result<()> {
        Ok(())
    }
    /// Switches `cfg` to a short run on a small dataset and a CPU budget of minutes (the CLI's
    /// default run on the embedded shapes): a backbone of base width [`SHORT_RUN_BASE_WIDTH`],
    /// and the paper's small-data settings where it has them (MoCo v2's momentum 0.99 and a
    /// queue of [`SHORT_RUN_QUEUE_SIZE`] keys, BYOL's base momentum 0.99).
    fn short_run_config(cfg: &mut Self::Config);
    /// A freshly initialised model (seed libtorch first for a reproducible init).
    fn build(cfg: &Self::Config, device: Device) -> Result<Self>;
    /// The paper's augmentation of each view at `size` pixels (`small_images`: the 32 px
    /// variant where the paper has one).
    fn views(size: u32, small_images: bool) -> ViewPipelines;
    /// The paper's optimiser for a batch of `batch_size` (learning rates scaled as the paper
    /// scales them).
    fn optimizer(batch_size: usize) -> OptimizerConfig;
    /// The optimiser of a short run ([`short_run_config`](Self::short_run_config)) with a
    /// small batch: AdamW, lr 2e-3, weight decay 1e-4 unless the method says otherwise. In a
    /// few hundred steps of 128 images it learns more than the papers' LARS, tuned for
    /// thousands of steps of 4096 (SimCLR at width 8 on the embedded shapes: linear probe 0.263
    /// against 0.224 at 600 steps; issue 3's note).
    fn short_run_optimizer(_batch_size: usize) -> OptimizerConfig {
        OptimizerConfig { name: OptimizerKind::Adamw, lr: 2e-3, weight_decay: 1e-4, ..Default::default() }
    }
    /// Whether evaluation fine-tunes the whole encoder too (besides the frozen-feature
    /// probes), as MAE's protocol does.
    const FINETUNE: bool = false;
    /// Whether the paper's recipe normalises BatchNorm over the global batch when training on
    /// several processes (SimCLR's global BN, BYOL's cross-replica BN, MoCo v3's SyncBN): the
    /// default of `train.sync_batchnorm`. MoCo v2 shuffles BatchNorm instead.
    const SYNC_BATCHNORM: bool = false;
    /// The method's fine-tuning recipe: [`FinetuneConfig::default`] unless the paper has one.
    fn finetune_recipe() -> FinetuneConfig {
        FinetuneConfig::default()
    }
    /// What the columns of [`pictures`](Self::pictures) show, left to right.
    const PICTURE_COLUMNS: &'static [&'static str] = &[];
    /// Pictures of what the model does with `images` (`[N, C, H, W]`, normalised): columns of
    /// images of the same shape ([`PICTURE_COLUMNS`](Self::PICTURE_COLUMNS)), e.g. MAE's
    /// original / masked / reconstruction / pasted. `None` for methods without pictures.
    fn pictures(&self, _images: &Tensor) -> Result<Option<Vec<Tensor>>> {
        Ok(None)
    }
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
    const SYNC_BATCHNORM: bool = true;

    fn default_config() -> SimclrConfig {
        SimclrConfig::small_images()
    }
    fn short_run_config(cfg: &mut SimclrConfig) {
        cfg.backbone.base_width = SHORT_RUN_BASE_WIDTH;
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
    fn validate(cfg: &MocoV2Config) -> Result<()> {
        cfg.validate()
    }
    fn check_dataset(cfg: &MocoV2Config, dataset_len: usize) -> Result<()> {
        cfg.check_dataset(dataset_len)
    }
    fn short_run_config(cfg: &mut MocoV2Config) {
        cfg.backbone.base_width = SHORT_RUN_BASE_WIDTH;
        cfg.queue_size = SHORT_RUN_QUEUE_SIZE;
        cfg.momentum = SHORT_RUN_MOMENTUM;
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
    const SYNC_BATCHNORM: bool = true;

    fn default_config() -> MocoV3Config {
        MocoV3Config::default()
    }
    fn short_run_config(cfg: &mut MocoV3Config) {
        cfg.backbone.base_width = SHORT_RUN_BASE_WIDTH;
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
    const SYNC_BATCHNORM: bool = true;

    fn default_config() -> ByolConfig {
        ByolConfig::default()
    }
    fn validate(cfg: &ByolConfig) -> Result<()> {
        cfg.validate()
    }
    fn short_run_config(cfg: &mut ByolConfig) {
        cfg.backbone.base_width = SHORT_RUN_BASE_WIDTH;
        cfg.base_momentum = SHORT_RUN_MOMENTUM;
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
    fn short_run_config(cfg: &mut SupervisedConfig) {
        cfg.backbone.base_width = SHORT_RUN_BASE_WIDTH;
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
    /// The same SGD recipe: it is made for short runs already.
    fn short_run_optimizer(batch_size: usize) -> OptimizerConfig {
        Self::optimizer(batch_size)
    }
}

impl VisionMethod for Rotation {
    type Config = RotationConfig;
    const NAME: &'static str = "rotation";
    const ABOUT: &'static str =
        "rotation prediction (Gidaris et al. 2018): 4-way classification of 0/90/180/270 degree turns, ResNet backbone";

    fn default_config() -> RotationConfig {
        RotationConfig::default()
    }
    fn short_run_config(cfg: &mut RotationConfig) {
        cfg.backbone.base_width = SHORT_RUN_BASE_WIDTH;
    }
    fn validate(cfg: &RotationConfig) -> Result<()> {
        cfg.backbone.validate()
    }
    fn build(cfg: &RotationConfig, device: Device) -> Result<Self> {
        Rotation::new(cfg, device)
    }
    fn views(size: u32, _small_images: bool) -> ViewPipelines {
        presets::rotation(size)
    }
    /// SGD, momentum 0.9, lr 0.1 × batch / 256, weight decay 5e-4 (the paper's CIFAR recipe,
    /// Nesterov momentum aside).
    fn optimizer(batch_size: usize) -> OptimizerConfig {
        Supervised::optimizer(batch_size)
    }
}

impl VisionMethod for Mae {
    type Config = MaeConfig;
    const NAME: &'static str = "mae";
    const ABOUT: &'static str =
        "MAE (He et al. 2022): ViT encoder on 25% of the patches, light decoder regresses the masked pixels";
    const FINETUNE: bool = true;
    /// Layer-wise learning-rate decay 0.75 (`main_finetune.py`'s default) and weight decay 0.05.
    fn finetune_recipe() -> FinetuneConfig {
        FinetuneConfig { layer_decay: 0.75, weight_decay: 0.05, ..FinetuneConfig::default() }
    }

    fn default_config() -> MaeConfig {
        MaeConfig::small_images()
    }
    /// A ViT 128 wide with 6 blocks and 4 heads (patch 4), and a decoder 128 wide with 2 blocks
    /// and 4 heads.
    fn short_run_config(cfg: &mut MaeConfig) {
        cfg.encoder = VitConfig { dim: 128, depth: 6, heads: 4, ..cfg.encoder.clone() };
        (cfg.decoder_dim, cfg.decoder_depth, cfg.decoder_heads) = (128, 2, 4);
    }
    fn validate(cfg: &MaeConfig) -> Result<()> {
        cfg.validate()
    }
    fn check_image_size(cfg: &MaeConfig, size: u32) -> Result<()> {
        check_same_size("model.encoder.image_size", cfg.encoder.image_size, size)
    }
    fn build(cfg: &MaeConfig, device: Device) -> Result<Self> {
        Mae::new(cfg, device)
    }
    fn views(size: u32, _small_images: bool) -> ViewPipelines {
        presets::mae(size)
    }
    /// AdamW, betas (0.9, 0.95), weight decay 0.05, lr 1.5e-4 × batch / 256 (the paper's).
    fn optimizer(batch_size: usize) -> OptimizerConfig {
        OptimizerConfig {
            name: OptimizerKind::Adamw,
            lr: 1.5e-4 * batch_size as f64 / 256.0,
            weight_decay: 0.05,
            betas: (0.9, 0.95),
            ..OptimizerConfig::default()
        }
    }
    /// The paper's AdamW at lr 1.5e-3: the peak rate of its batch-4096 runs scaled down less
    /// than linearly, as short runs on small batches need.
    fn short_run_optimizer(_batch_size: usize) -> OptimizerConfig {
        OptimizerConfig { lr: 1.5e-3, ..Self::optimizer(256) }
    }
    const PICTURE_COLUMNS: &'static [&'static str] =
        &["original", "masked", "reconstruction", "reconstruction with the visible patches"];
    fn pictures(&self, images: &Tensor) -> Result<Option<Vec<Tensor>>> {
        let r = self.reconstruct(images)?;
        Ok(Some(vec![r.original, r.masked, r.reconstruction, r.pasted]))
    }
}

/// Errors naming `field` unless the model, built for `model_size` pixels, matches the data's
/// `size`.
fn check_same_size(field: &str, model_size: i64, size: u32) -> Result<()> {
    if model_size != i64::from(size) {
        return Err(ssl_core::Error::config(
            field,
            format!("is {model_size} but data.image_size is {size}; set them equal"),
        ));
    }
    Ok(())
}

/// Errors naming `data.image_size` unless `size` is a multiple of the output stride of `backbone`.
fn check_stride(backbone: &ResNetConfig, size: u32, what: &str) -> Result<()> {
    let stride = backbone.output_stride();
    if i64::from(size) % stride != 0 {
        return Err(ssl_core::Error::config(
            "data.image_size",
            format!("{what} needs a multiple of the encoder's output stride {stride}, got {size}"),
        ));
    }
    Ok(())
}

impl VisionMethod for Inpainting {
    type Config = InpaintingConfig;
    const NAME: &'static str = "inpainting";
    const ABOUT: &'static str =
        "inpainting (Pathak et al. 2016): fill a cut-out block from its context, ResNet encoder and up-convolution decoder";

    fn default_config() -> InpaintingConfig {
        InpaintingConfig::default()
    }
    /// Width-16 ResNet and a decoder 64 wide.
    fn short_run_config(cfg: &mut InpaintingConfig) {
        cfg.backbone.base_width = SHORT_RUN_BASE_WIDTH;
        cfg.decoder_width = 64;
    }
    fn validate(cfg: &InpaintingConfig) -> Result<()> {
        cfg.validate()
    }
    fn check_image_size(cfg: &InpaintingConfig, size: u32) -> Result<()> {
        check_stride(&cfg.backbone, size, "inpainting")?;
        cfg.mask.check_image_size(i64::from(size))
    }
    fn build(cfg: &InpaintingConfig, device: Device) -> Result<Self> {
        Inpainting::new(cfg, device)
    }
    fn views(size: u32, _small_images: bool) -> ViewPipelines {
        presets::inpainting(size)
    }
    /// Adam, lr 2e-4, betas (0.5, 0.999), no weight decay (the Context Encoder's training
    /// script, batch 64; not scaled with the batch).
    fn optimizer(_batch_size: usize) -> OptimizerConfig {
        OptimizerConfig {
            name: OptimizerKind::Adamw,
            lr: 2e-4,
            betas: (0.5, 0.999),
            weight_decay: 0.0,
            ..Default::default()
        }
    }
    const PICTURE_COLUMNS: &'static [&'static str] =
        &["original", "with the hole", "reconstruction", "hole filled from the reconstruction"];
    fn pictures(&self, images: &Tensor) -> Result<Option<Vec<Tensor>>> {
        let r = self.reconstruct(images)?;
        Ok(Some(vec![r.original, r.masked, r.reconstruction, r.pasted]))
    }
}

impl VisionMethod for Autoencoder {
    type Config = AutoencoderConfig;
    const NAME: &'static str = "autoencoder";
    const ABOUT: &'static str =
        "denoising autoencoder (Vincent et al. 2008; plain with no corruption): ResNet encoder to a pooled bottleneck, up-convolution decoder";

    fn default_config() -> AutoencoderConfig {
        AutoencoderConfig::default()
    }
    /// Width-16 ResNet and a decoder 64 wide.
    fn short_run_config(cfg: &mut AutoencoderConfig) {
        cfg.backbone.base_width = SHORT_RUN_BASE_WIDTH;
        cfg.decoder_width = 64;
    }
    fn validate(cfg: &AutoencoderConfig) -> Result<()> {
        cfg.validate()
    }
    fn check_image_size(cfg: &AutoencoderConfig, size: u32) -> Result<()> {
        check_same_size("model.image_size", cfg.image_size, size)
    }
    fn build(cfg: &AutoencoderConfig, device: Device) -> Result<Self> {
        Autoencoder::new(cfg, device)
    }
    fn views(size: u32, _small_images: bool) -> ViewPipelines {
        presets::autoencoder(size)
    }
    /// Adam, lr 1e-3, no weight decay: the usual convolutional-autoencoder set-up (the papers'
    /// plain SGD served their greedy layer-wise training).
    fn optimizer(_batch_size: usize) -> OptimizerConfig {
        OptimizerConfig { name: OptimizerKind::Adamw, lr: 1e-3, weight_decay: 0.0, ..Default::default() }
    }
    const PICTURE_COLUMNS: &'static [&'static str] = &["original", "corrupted input", "reconstruction"];
    fn pictures(&self, images: &Tensor) -> Result<Option<Vec<Tensor>>> {
        Ok(Some(Vec::from(self.reconstruct(images)?)))
    }
}
