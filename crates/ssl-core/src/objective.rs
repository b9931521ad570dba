//! The [`Objective`] trait: a pretext task the [`Trainer`](crate::trainer::Trainer) optimises.

use tch::{nn::VarStore, Device, Tensor};

use crate::data::Batch;
use crate::encoder::Encoder;
use crate::error::Result;

/// Where training is when an objective is called.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepContext {
    /// The optimiser step being computed (0-based).
    pub step: u64,
    /// The total number of optimiser steps of the run (schedules of momentum, temperature, ...).
    pub total_steps: u64,
    /// The micro-step within a gradient-accumulation step (0-based).
    pub micro_step: usize,
    /// The training device.
    pub device: Device,
}

impl StepContext {
    /// Training progress in `[0, 1]`: `step / total_steps`.
    pub fn progress(&self) -> f64 {
        if self.total_steps == 0 {
            1.0
        } else {
            (self.step as f64 / self.total_steps as f64).clamp(0.0, 1.0)
        }
    }
}

/// The loss of one batch plus named scalar metrics (accuracy of the pretext task, temperature,
/// EMA momentum, ...). Metrics are scalar tensors, read only when a step is logged.
#[derive(Debug)]
pub struct LossOutput {
    /// A scalar loss to minimise.
    pub loss: Tensor,
    /// Named scalar metrics.
    pub metrics: Vec<(String, Tensor)>,
    /// Whether the objective already back-propagated the loss itself (its gradients are in
    /// the parameters' `.grad`), as an objective that splits a batch to save memory must
    /// (CLIP's feature-cached accumulation). The trainer then skips `backward`.
    pub backward_done: bool,
}

impl LossOutput {
    /// A loss without metrics.
    pub fn new(loss: Tensor) -> Self {
        Self { loss, metrics: Vec::new(), backward_done: false }
    }

    /// A loss whose gradients the objective has already computed (see
    /// [`backward_done`](Self::backward_done)); `loss` is for logging only.
    pub fn backward_done(loss: Tensor) -> Self {
        Self { loss: loss.detach(), metrics: Vec::new(), backward_done: true }
    }

    /// Adds a scalar metric (detached from the graph).
    pub fn with_metric(mut self, name: impl Into<String>, value: &Tensor) -> Self {
        self.metrics.push((name.into(), value.detach()));
        self
    }
}

/// A self-supervised pretext objective: batch in, loss out.
///
/// Every method (SimCLR, MoCo, BYOL, MAE, BERT-MLM, GPT, wav2vec 2.0, CPC, CLIP) implements this
/// and nothing else of the trainer; the trainer has no special case for any of them.
///
/// **All tensor state lives in [`var_store`](Objective::var_store)**: trainable parameters, but
/// also EMA targets, BatchNorm statistics and queues (as non-trainable variables), so a
/// checkpoint of the store is a checkpoint of the model. Non-tensor state (a queue pointer, a
/// counter) goes through [`state`](Objective::state) / [`load_state`](Objective::load_state).
pub trait Objective {
    /// The batch type the objective consumes.
    type Batch: Batch;

    /// The method's name as in the CLI (`simclr`, `mae`, ...).
    fn name(&self) -> &str;

    /// The variables of the model: what the optimiser updates (trainable ones) and what
    /// checkpoints save (all of them).
    fn var_store(&self) -> &VarStore;

    /// Computes the loss of a batch already on the training device, in training mode.
    fn forward(&mut self, batch: &Self::Batch, ctx: &StepContext) -> Result<LossOutput>;

    /// Called after every optimiser step: EMA/momentum targets, queues, temperature schedules.
    fn after_step(&mut self, _ctx: &StepContext) -> Result<()> {
        Ok(())
    }

    /// The encoder whose representations evaluation probes.
    fn encoder(&self) -> &dyn Encoder;

    /// Non-tensor state to store in checkpoints.
    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Restores what [`state`](Objective::state) returned.
    fn load_state(&mut self, _state: &serde_json::Value) -> Result<()> {
        Ok(())
    }

    /// Whether a parameter is exempt from weight decay (and from LARS adaptation). The default
    /// exempts biases and normalisation weights, i.e. every parameter with fewer than two
    /// dimensions, as in the BYOL, MoCo v3 and MAE recipes.
    fn no_weight_decay(&self, _name: &str, shape: &[i64]) -> bool {
        shape.len() < 2
    }
}
