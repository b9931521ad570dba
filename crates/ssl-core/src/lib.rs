//! # ssl-core
//!
//! The shared foundation of ssl-rs: the trait set every self-supervised method plugs into, the
//! building blocks methods share, the trainer, checkpoints and evaluation.
//!
//! **ssl-core knows no modality**: nothing here mentions images, tokens or audio. Modality crates
//! (`ssl-vision`, `ssl-text`, `ssl-audio`, `ssl-multimodal`) implement the traits.
//!
//! The seams, one trait each:
//! - [`Encoder`]: input batch to representation (what probes and fine-tuning consume);
//! - [`Objective`]: batch to loss and metrics, with a hook after each optimiser step (EMA
//!   targets, queues, temperature schedules);
//! - [`Augmentation`](augment::Augmentation): a seeded random transformation of one sample;
//! - [`Dataset`](data::Dataset) and [`BatchBuilder`](data::BatchBuilder): random access to samples
//!   and turning samples into a batch, driven by the [`DataLoader`](data::DataLoader);
//! - [`MetricsSink`](metrics::MetricsSink): where logged step records go.
//!
//! Data flows from a dataset through the loader (parallel, seeded, prefetching) to
//! [`Objective::forward`], whose loss the [`Trainer`](trainer::Trainer) back-propagates and
//! steps with an [`Optimizer`](optim::Optimizer) it owns the state of, writing
//! [`checkpoint`]s that resume bit for bit.

pub mod augment;
pub mod blocks;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod dist;
pub mod encoder;
pub mod error;
pub mod eval;
pub mod loss;
pub mod memory;
pub mod metrics;
pub mod objective;
pub mod optim;
pub mod rng;
pub mod synthetic;
pub mod trainer;

pub use encoder::Encoder;
pub use error::{Error, Result};
pub use objective::{LossOutput, Objective, StepContext};
/// The `tch` version ssl-rs is built on, re-exported so downstream crates agree on it.
pub use tch;
