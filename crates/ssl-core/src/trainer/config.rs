use serde::{Deserialize, Serialize};

use crate::device::{DeviceSpec, Precision};
use crate::error::{Error, Result};
use crate::optim::{OptimizerConfig, ScheduleConfig};

/// Everything that shapes a training run except the data and the model.
///
/// Deserialises from the `[train]` table of a run's `config.toml`; unknown fields are errors.
///
/// ```
/// use ssl_core::trainer::TrainConfig;
/// let cfg: TrainConfig = toml::from_str("steps = 100\n[optimizer]\nname = \"lars\"\nlr = 0.3").unwrap();
/// cfg.validate().unwrap();
/// assert!(toml::from_str::<TrainConfig>("stepz = 1").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Optimiser steps of the whole run (schedules are laid out over this many).
    pub steps: u64,
    /// Micro-batches per optimiser step; each micro-batch's loss is divided by this, so the
    /// update equals that of one batch `accumulation_steps` times larger (for objectives whose
    /// loss is a mean over independent samples).
    pub accumulation_steps: usize,
    /// The optimiser.
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule.
    pub schedule: ScheduleConfig,
    /// Clip the global gradient norm to this value.
    pub grad_clip_norm: Option<f64>,
    /// `fp32`, or `bf16` autocast (CUDA only).
    pub precision: Precision,
    /// The run seed; every random choice derives from it.
    pub seed: u64,
    /// Fix libtorch's thread counts (intra-op `threads`, inter-op 1) and disable cuDNN
    /// autotuning, so CPU runs are bit-reproducible from run to run.
    pub deterministic: bool,
    /// libtorch intra-op threads (default: libtorch's choice).
    pub threads: Option<usize>,
    /// Log a metrics record every this many steps (and at the last step).
    pub log_every: u64,
    /// Write a checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: u64,
    /// Checkpoints to keep (0: all).
    pub keep_last: usize,
    /// Show a progress bar on a terminal.
    pub progress: bool,
    /// The training device.
    pub device: DeviceSpec,
    /// In a data-parallel job, normalise BatchNorm layers with the statistics of the global
    /// batch instead of each process's (SimCLR's global BN, PyTorch's `SyncBatchNorm`); costs
    /// one small all-gather per BatchNorm layer in the forward pass and one reduce-scatter in
    /// the backward. No effect in one process.
    pub sync_batchnorm: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            accumulation_steps: 1,
            optimizer: OptimizerConfig::default(),
            schedule: ScheduleConfig::default(),
            grad_clip_norm: None,
            precision: Precision::Fp32,
            seed: 0,
            deterministic: false,
            threads: None,
            log_every: 10,
            checkpoint_every: 0,
            keep_last: 2,
            progress: true,
            device: DeviceSpec::Auto,
            sync_batchnorm: false,
        }
    }
}

impl TrainConfig {
    /// Checks every field; errors name the field.
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            return Err(Error::config("train.steps", "must be at least 1"));
        }
        if self.accumulation_steps == 0 {
            return Err(Error::config("train.accumulation_steps", "must be at least 1"));
        }
        if self.log_every == 0 {
            return Err(Error::config("train.log_every", "must be at least 1"));
        }
        if let Some(c) = self.grad_clip_norm {
            if !(c.is_finite() && c > 0.0) {
                return Err(Error::config("train.grad_clip_norm", "must be a positive number"));
            }
        }
        if self.threads == Some(0) {
            return Err(Error::config("train.threads", "must be at least 1"));
        }
        if self.schedule.warmup_steps > self.steps {
            return Err(Error::config(
                "schedule.warmup_steps",
                format!(
                    "{} warm-up steps exceed the {} steps of the run",
                    self.schedule.warmup_steps, self.steps
                ),
            ));
        }
        self.optimizer.validate()?;
        self.schedule.validate()
    }
}
