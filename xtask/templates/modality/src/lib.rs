//! # @CRATE@
//!
//! Self-supervised learning for @NAME@ data, built on [`ssl_core`]. It starts as a complete,
//! working example to replace piece by piece: an embedded toy dataset of labelled 1-D signals
//! ([`data`]), two augmented views per sample ([`views`]), an MLP encoder ([`encoder`]) and a
//! SimCLR-style contrastive objective ([`objective`]), wired together by [`setup`] so that
//! ssl-core's trainer, checkpoints and probes work on it unchanged.
//!
//! **This crate depends on ssl-core and on nothing else of ours.** Grow it one module per
//! concept: one per encoder architecture (implementing [`ssl_core::Encoder`]), one per method
//! named after its paper (implementing [`ssl_core::Objective`], with a `Config` whose defaults
//! say where they come from), and the data side (`Dataset`, `Augmentation`, `BatchBuilder`).
//! Pieces two methods share (projection heads, EMA targets, contrastive losses) belong in
//! ssl-core. Register each method in `ssl-cli` under its contract name.
//!
//! ```
//! use @LIB@::{setup, ToyConfig};
//! use @LIB@::ssl_core::trainer::{TrainConfig, Trainer};
//!
//! let cfg = ToyConfig::tiny();
//! let (loader, mut objective) = setup(&cfg, @LIB@::ssl_core::tch::Device::Cpu)?;
//! let train = TrainConfig { steps: 3, progress: false, ..Default::default() };
//! let report = Trainer::new(train).fit(&mut objective, &loader)?;
//! assert_eq!(report.steps, 3);
//! # Ok::<(), @LIB@::ssl_core::Error>(())
//! ```

pub mod data;
pub mod encoder;
pub mod objective;
pub mod views;

pub use data::{ToyConfig, ToySignals};
pub use objective::Contrastive;

/// ssl-core, re-exported so users of this crate and this crate agree on its version.
pub use ssl_core;

use ssl_core::data::{DataLoader, LoaderConfig, RandomSampler};
use ssl_core::tch::Device;

/// The loader of [`setup`]: the train split's signals, two views each.
pub type ToyLoader = DataLoader<ToySignals, views::TwoViews, RandomSampler>;

/// The training loader and a fresh objective for `cfg` on `device`.
pub fn setup(cfg: &ToyConfig, device: Device) -> ssl_core::Result<(ToyLoader, Contrastive)> {
    let train = ToySignals::new(cfg, data::Split::Train)?;
    let loader_cfg =
        LoaderConfig { batch_size: cfg.batch_size, drop_last: true, prefetch: 2, seed: cfg.seed };
    let views = views::TwoViews::new(cfg.max_shift, cfg.noise_std);
    let loader = DataLoader::new(train, views, RandomSampler::new(cfg.seed), loader_cfg)?;
    Ok((loader, Contrastive::new(cfg, device)?))
}
