//! The training loop, assembled from named parts: objective, data loader, optimiser, schedule,
//! clipping, accumulation, checkpoints, metrics sinks.
//!
//! ```
//! use ssl_core::trainer::{Trainer, TrainConfig};
//! use ssl_core::synthetic::{self, SyntheticConfig};
//!
//! let cfg = SyntheticConfig::tiny();
//! let (loader, mut objective) = synthetic::setup(&cfg, ssl_core::tch::Device::Cpu).unwrap();
//! let train = TrainConfig { steps: 3, progress: false, ..Default::default() };
//! let report = Trainer::new(train).fit(&mut objective, &loader).unwrap();
//! assert_eq!(report.steps, 3);
//! assert!(report.final_loss.is_finite());
//! ```

mod config;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

pub use config::TrainConfig;

use crate::checkpoint::{self, CheckpointMeta, FORMAT_VERSION};
use crate::data::Shard;
use crate::data::{Batch, BatchBuilder, DataLoader, Dataset, LoaderPosition, Sampler};
use crate::device::{autocast, device_name};
use crate::dist::{self, Collective};
use crate::error::{Error, Result, TorchResultExt};
use crate::metrics::{JsonlSink, MetricsSink, StepRecord};
use crate::objective::{Objective, StepContext};
use crate::optim::{clip_grad_norm, Optimizer};
use crate::rng::seed_torch;

/// What a finished (or stopped) run reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Optimiser steps completed (including those before a resume).
    pub steps: u64,
    /// Mean loss of the last logging window.
    pub final_loss: f64,
    /// Training throughput of this process, in samples per second.
    pub samples_per_sec: f64,
    /// The device trained on (`cpu`, `cuda:0`).
    pub device: String,
    /// Wall-clock seconds of this process's training.
    pub wall_seconds: f64,
    /// The step this process resumed from, if it did.
    pub resumed_from: Option<u64>,
    /// The last checkpoint written, if any.
    pub last_checkpoint: Option<PathBuf>,
    /// Timing of this process's optimiser steps (data, forward, backward, update; not the
    /// logging or checkpoints), the first tenth of them left out as warm-up.
    pub step_time: StepTimes,
    /// The process's peak resident host memory so far, in bytes (`VmHWM`; `None` where the
    /// system does not say).
    pub peak_host_memory_bytes: Option<u64>,
    /// Trainable parameters (values, not tensors) of the objective.
    pub parameters: u64,
}

/// Median and 90th percentile of a run's step times, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StepTimes {
    /// Steps timed (after the warm-up).
    pub steps: usize,
    /// The median step time.
    pub median_s: f64,
    /// The 90th-percentile step time (nearest rank).
    pub p90_s: f64,
    /// Samples per second over the timed steps: their samples over their summed time (0 when
    /// no sample counts were given).
    pub samples_per_sec: f64,
}

impl StepTimes {
    /// The statistics of `durations` (seconds, in step order) after dropping the first tenth
    /// (rounded down) as warm-up: allocator growth, lazy initialisation, cache misses.
    ///
    /// ```
    /// use ssl_core::trainer::StepTimes;
    /// let mut d = vec![9.0]; // a slow first step, dropped as warm-up
    /// d.extend((1..=10).map(f64::from));
    /// let t = StepTimes::from_durations(&d);
    /// assert_eq!((t.steps, t.median_s, t.p90_s), (10, 5.0, 9.0));
    /// ```
    pub fn from_durations(durations: &[f64]) -> Self {
        Self::from_steps(durations, &[])
    }

    /// [`from_durations`](Self::from_durations) with the samples of each step, for the
    /// steady-state throughput.
    ///
    /// ```
    /// use ssl_core::trainer::StepTimes;
    /// let t = StepTimes::from_steps(&[0.5, 0.5], &[64, 64]);
    /// assert_eq!(t.samples_per_sec, 128.0);
    /// ```
    pub fn from_steps(durations: &[f64], samples: &[usize]) -> Self {
        let skip = durations.len() / 10;
        let mut timed: Vec<f64> = durations[skip..].to_vec();
        if timed.is_empty() {
            return Self::default();
        }
        let total: f64 = timed.iter().sum();
        let counted: usize = samples.iter().skip(skip).sum();
        timed.sort_by(f64::total_cmp);
        let rank = |q: f64| timed[((q * timed.len() as f64).ceil() as usize).clamp(1, timed.len()) - 1];
        Self {
            steps: timed.len(),
            median_s: rank(0.5),
            p90_s: rank(0.9),
            samples_per_sec: if total > 0.0 { counted as f64 / total } else { 0.0 },
        }
    }
}

/// The peak resident memory of this process in bytes, from `/proc/self/status` (`VmHWM`);
/// `None` where that file does not exist (not Linux) or says nothing.
pub fn peak_host_memory_bytes() -> Option<u64> {
    proc_status_bytes("VmHWM:")
}

/// The resident memory of this process now, in bytes (`VmRSS` of `/proc/self/status`); `None`
/// where that file does not exist (not Linux) or says nothing. Every step record carries it as
/// `host_memory_mib`, so a leak shows as a rising line (`cargo xtask reliability` checks that it
/// stays flat over thousands of steps).
pub fn host_memory_bytes() -> Option<u64> {
    proc_status_bytes("VmRSS:")
}

fn proc_status_bytes(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line.trim_start_matches(key).trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

/// Runs an [`Objective`] over a [`DataLoader`].
pub struct Trainer {
    config: TrainConfig,
    run_dir: Option<PathBuf>,
    resume: Option<PathBuf>,
    stop_after: Option<u64>,
    repeat_batch: bool,
    sinks: Vec<Box<dyn MetricsSink>>,
    config_snapshot: serde_json::Value,
    collective: Option<Arc<dyn Collective>>,
}

impl Trainer {
    /// A trainer with `config`, no run directory (nothing written), no resume.
    pub fn new(config: TrainConfig) -> Self {
        let config_snapshot = serde_json::to_value(&config).unwrap_or_default();
        Self {
            config,
            run_dir: None,
            resume: None,
            stop_after: None,
            repeat_batch: false,
            sinks: Vec::new(),
            config_snapshot,
            collective: None,
        }
    }

    /// Writes `metrics.jsonl` and checkpoints under `dir`.
    pub fn run_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.run_dir = Some(dir.into());
        self
    }

    /// Resumes from a checkpoint folder or the newest checkpoint of a run directory.
    pub fn resume_from(mut self, path: Option<PathBuf>) -> Self {
        self.resume = path;
        self
    }

    /// Stops (with a checkpoint, if a run directory is set) once this many steps are completed,
    /// leaving the schedule laid out over `config.steps`. Used to split runs and by tests.
    pub fn stop_after(mut self, step: Option<u64>) -> Self {
        self.stop_after = step;
        self
    }

    /// Trains every step on the loader's first batch (already on the device): the step
    /// times then measure the model alone (forward, backward, update), without the input
    /// pipeline. For benchmarks: the PyTorch comparison of `cargo xtask bench` times its
    /// reference the same way. The loss is not that of a real run.
    pub fn repeat_batch(mut self, on: bool) -> Self {
        self.repeat_batch = on;
        self
    }

    /// Trains data-parallel with the other processes of `collective` (one process when `None`
    /// or a world of 1). Every process runs the same program with the same configuration:
    ///
    /// - after any resume, every variable of the objective (weights, buffers, EMA targets) is
    ///   broadcast from rank 0;
    /// - the loader is sharded ([`DataLoader::iter_sharded`]): `train.batch_size` is per
    ///   process, and the processes together see the batches of one process with
    ///   `batch_size · world`;
    /// - after backward, gradients are averaged over the processes in buckets of about
    ///   [`GRAD_BUCKET_BYTES`] (the objective's loss is a mean over its samples, so this is the
    ///   gradient of the global batch's mean loss), and tensors gathered with
    ///   [`dist::all_gather_with_grad`] get their cross-process gradient first;
    /// - the logged loss is the mean over processes; only rank 0 writes metrics sinks,
    ///   checkpoints and the progress bar; every rank may resume from the same checkpoint.
    ///
    /// Per-process randomness (dropout, masking drawn from libtorch's generator) is seeded with
    /// the rank mixed in, so processes do not draw the same masks for different samples.
    /// BatchNorm statistics stay per process, as in PyTorch's DDP without SyncBatchNorm.
    pub fn collective(mut self, collective: Option<Arc<dyn Collective>>) -> Self {
        self.collective = collective;
        self
    }

    /// Adds a metrics sink (the run directory's `metrics.jsonl` is added automatically).
    pub fn sink(mut self, sink: Box<dyn MetricsSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// The full run configuration to store in checkpoints (default: the [`TrainConfig`]).
    pub fn config_snapshot(mut self, config: serde_json::Value) -> Self {
        self.config_snapshot = config;
        self
    }

    /// Trains `objective` on `loader` until `config.steps` (or `stop_after`) steps are done.
    ///
    /// The device is the one the objective's variables live on. A non-finite loss stops the
    /// run before the optimiser step with [`Error::NonFiniteLoss`]; checkpoints already written
    /// are left untouched and none is written for the failing step.
    ///
    /// libtorch's random generator and thread pool are process-wide: for bit-reproducible runs,
    /// train one model per process (or serialise trainings, as the tests do).
    pub fn fit<O, D, B, S>(self, objective: &mut O, loader: &DataLoader<D, B, S>) -> Result<TrainReport>
    where
        O: Objective,
        D: Dataset + 'static,
        B: BatchBuilder<D::Item, Batch = O::Batch> + 'static,
        S: Sampler + 'static,
    {
        self.fit_with(objective, loader, |_, _| Ok(()))
    }

    /// Like [`fit`](Self::fit), calling `after(objective, steps_done)` after every step (and
    /// its checkpoint): for work a program does during training, such as drawing pictures of
    /// the model every N steps. libtorch's generator is re-seeded before every step, so what
    /// the hook draws from it does not change the training. An error from the hook stops the
    /// run.
    ///
    /// ```
    /// use ssl_core::synthetic::{setup, SyntheticConfig};
    /// use ssl_core::trainer::{TrainConfig, Trainer};
    /// let (loader, mut objective) = setup(&SyntheticConfig::tiny(), ssl_core::tch::Device::Cpu)?;
    /// let mut seen = Vec::new();
    /// let cfg = TrainConfig { steps: 3, progress: false, ..Default::default() };
    /// Trainer::new(cfg).fit_with(&mut objective, &loader, |_, step| {
    ///     seen.push(step);
    ///     Ok(())
    /// })?;
    /// assert_eq!(seen, [1, 2, 3]);
    /// # Ok::<(), ssl_core::Error>(())
    /// ```
    pub fn fit_with<O, D, B, S>(
        mut self,
        objective: &mut O,
        loader: &DataLoader<D, B, S>,
        mut after: impl FnMut(&mut O, u64) -> Result<()>,
    ) -> Result<TrainReport>
    where
        O: Objective,
        D: Dataset + 'static,
        B: BatchBuilder<D::Item, Batch = O::Batch> + 'static,
        S: Sampler + 'static,
    {
        let cfg = self.config.clone();
        cfg.validate()?;
        let device = objective.var_store().device();
        if cfg.deterministic {
            let threads = cfg.threads.unwrap_or_else(|| tch::get_num_threads().max(1) as usize);
            tch::set_num_threads(threads as i32);
            tch::Cuda::cudnn_set_benchmark(false);
        } else if let Some(t) = cfg.threads {
            tch::set_num_threads(t as i32);
        }

        // Sorted by name, so the optimiser state lines up across runs.
        let params: Vec<(String, tch::Tensor)> = checkpoint::named_variables(objective.var_store())
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        if params.is_empty() {
            return Err(Error::invalid(
                "objective",
                format!("`{}` has no trainable parameters", objective.name()),
            ));
        }
        let parameters = params.iter().map(|(_, t)| t.numel() as u64).sum();
        let mut optimizer =
            Optimizer::new(cfg.optimizer.clone(), params, |n, s| objective.no_weight_decay(n, s))?;

        let collective = self.collective.clone().filter(|c| c.world_size() > 1);
        let shard =
            collective.as_ref().map_or(Shard::WHOLE, |c| Shard { rank: c.rank(), world: c.world_size() });
        let main = shard.rank == 0;
        if !main {
            self.sinks.clear();
        }

        let mut start_step = 0;
        let mut position = LoaderPosition::default();
        let mut resumed_from = None;
        if let Some(path) = &self.resume {
            let ck = checkpoint::load(path)?;
            if ck.meta.method != objective.name() {
                return Err(Error::checkpoint(
                    &ck.path,
                    format!("was written by method `{}`, not `{}`", ck.meta.method, objective.name()),
                ));
            }
            checkpoint::restore_variables(
                objective.var_store(),
                &ck.model,
                &ck.path.join("model.safetensors"),
            )?;
            optimizer
                .load_state(ck.optimizer, ck.meta.optimizer_steps)
                .map_err(|e| Error::checkpoint(ck.path.join("optimizer.safetensors"), e.to_string()))?;
            objective.load_state(&ck.meta.objective_state)?;
            start_step = ck.meta.step;
            position = ck.meta.loader;
            resumed_from = Some(start_step);
        }

        if let Some(c) = &collective {
            let mut vars: Vec<tch::Tensor> =
                checkpoint::named_variables(objective.var_store()).into_iter().map(|(_, t)| t).collect();
            tch::no_grad(|| c.broadcast(&mut vars, 0))?;
        }
        let run_dir = self.run_dir.clone().filter(|_| main);
        if let Some(dir) = &run_dir {
            let sink = JsonlSink::open(&dir.join("metrics.jsonl"), resumed_from)?;
            self.sinks.insert(0, Box::new(sink));
        }

        let end = self.stop_after.map_or(cfg.steps, |s| s.min(cfg.steps));
        let bar = if main { progress_bar(&cfg, start_step, end) } else { ProgressBar::hidden() };
        let mut batches = loader.iter_sharded(position, shard)?;
        let _active = collective.clone().map(dist::activate);
        let _sync_bn = dist::sync_batch_norm(cfg.sync_batchnorm);
        let started = Instant::now();
        let mut window = Window::new();
        let mut total_samples = 0usize;
        let mut final_loss = f64::NAN;
        let mut last_checkpoint = None;
        let accum = cfg.accumulation_steps;
        let mut durations = Vec::with_capacity(end.saturating_sub(start_step) as usize);
        let mut step_samples = Vec::with_capacity(durations.capacity());
        let mut repeated: Option<O::Batch> = None;

        for step in start_step..end {
            let step_started = Instant::now();
            let samples_before = total_samples;
            let mut metrics = BTreeMap::new();
            for micro in 0..accum {
                let batch = match &repeated {
                    Some(batch) => batch.to_device(device),
                    None => {
                        let (next, batch) = batches.next().ok_or_else(|| {
                            Error::data("data loader", "the batch stream ended unexpectedly")
                        })??;
                        position = next;
                        let batch = batch.to_device(device);
                        if self.repeat_batch {
                            repeated = Some(batch.to_device(device));
                        }
                        batch
                    }
                };
                total_samples += batch.batch_size();
                window.samples += batch.batch_size();
                let ctx = StepContext { step, total_steps: cfg.steps, micro_step: micro, device };
                match shard.world {
                    1 => seed_torch(cfg.seed, "step", &[step, micro as u64]),
                    _ => seed_torch(cfg.seed, "step", &[step, micro as u64, shard.rank as u64]),
                }
                let out = autocast(device, cfg.precision, || objective.forward(&batch, &ctx))??;
                let loss = out.loss.double_value(&[]);
                if !loss.is_finite() {
                    bar.abandon();
                    return Err(Error::NonFiniteLoss { step, loss });
                }
                window.loss_sum += loss / accum as f64;
                if out.backward_done {
                    if accum > 1 {
                        bar.abandon();
                        return Err(Error::config(
                            "train.accumulation_steps",
                            format!(
                                "`{}` accumulates gradients itself (its own micro-batches); set 1 here",
                                objective.name()
                            ),
                        ));
                    }
                } else {
                    let loss = if accum == 1 { out.loss.shallow_clone() } else { &out.loss / accum as f64 };
                    // An error, not a panic: in a data-parallel job the backward pass can run
                    // collectives (synchronised BatchNorm), which fail when a process stops.
                    loss.f_backward().torch_context(format!("the backward pass of step {step}"))?;
                }
                dist::backward_gathered()?;
                if micro + 1 == accum {
                    for (name, value) in &out.metrics {
                        metrics.insert(name.clone(), value.double_value(&[]));
                    }
                }
            }
            if let Some(c) = &collective {
                let variables: Vec<&tch::Tensor> = optimizer.variables().collect();
                average_gradients(c.as_ref(), &variables)?;
            }
            if let Some(max_norm) = cfg.grad_clip_norm {
                let norm = clip_grad_norm(optimizer.variables(), max_norm).double_value(&[]);
                metrics.insert("grad_norm".into(), norm);
            }
            let lr = cfg.schedule.lr_at(cfg.optimizer.lr, step, cfg.steps);
            optimizer.step(lr)?;
            optimizer.zero_grad();
            let ctx = StepContext { step, total_steps: cfg.steps, micro_step: accum - 1, device };
            objective.after_step(&ctx)?;
            durations.push(step_started.elapsed().as_secs_f64());
            step_samples.push(total_samples - samples_before);
            window.steps += 1;

            let done = step + 1;
            bar.set_position(done);
            if done % cfg.log_every == 0 || done == end {
                if let Some(c) = &collective {
                    window.average_over(c.as_ref(), &mut metrics)?;
                }
                let record = window.record(done, lr, metrics);
                final_loss = record.loss;
                bar.set_message(format!(
                    "loss {:.4}  lr {:.2e}  {:.0} samples/s",
                    record.loss, record.lr, record.samples_per_sec
                ));
                for sink in &mut self.sinks {
                    sink.record(&record)?;
                }
                window = Window::new();
            }
            let every = cfg.checkpoint_every;
            if let Some(dir) = &run_dir {
                if (every > 0 && done % every == 0) || done == end {
                    let meta = CheckpointMeta {
                        format_version: FORMAT_VERSION,
                        ssl_version: env!("CARGO_PKG_VERSION").into(),
                        method: objective.name().into(),
                        step: done,
                        loader: position,
                        seed: cfg.seed,
                        optimizer_steps: optimizer.steps(),
                        objective_state: objective.state(),
                        config: self.config_snapshot.clone(),
                    };
                    let vars = checkpoint::named_variables(objective.var_store());
                    last_checkpoint = Some(checkpoint::save(dir, &meta, &vars, &optimizer.state_tensors())?);
                    checkpoint::prune(dir, cfg.keep_last)?;
                }
            }
            if let Err(e) = after(objective, done) {
                bar.abandon();
                return Err(e);
            }
        }
        bar.finish();
        for sink in &mut self.sinks {
            sink.finish()?;
        }
        let wall = started.elapsed().as_secs_f64();
        Ok(TrainReport {
            steps: end.max(start_step),
            final_loss,
            samples_per_sec: if wall > 0.0 { total_samples as f64 / wall } else { 0.0 },
            device: device_name(device),
            wall_seconds: wall,
            resumed_from,
            last_checkpoint,
            step_time: StepTimes::from_steps(&durations, &step_samples),
            peak_host_memory_bytes: peak_host_memory_bytes(),
            parameters,
        })
    }
}

/// Gradients are all-reduced in buckets of about this many bytes: one collective per bucket
/// instead of one per parameter (PyTorch's DDP uses 25 MiB).
pub const GRAD_BUCKET_BYTES: usize = 25 << 20;

/// Replaces every gradient by its mean over the processes of `c`, a bucket of flattened
/// gradients at a time. A parameter without a gradient on this process takes part with zeros
/// (every process must send the same buckets) and keeps none if the sum is zero everywhere.
fn average_gradients(c: &dyn Collective, variables: &[&tch::Tensor]) -> Result<()> {
    // Gradients do not require gradients themselves: nothing below records a graph.
    let world = c.world_size() as f64;
    let mut start = 0;
    while start < variables.len() {
        let kind = variables[start].kind();
        let mut end = start;
        let mut bytes = 0;
        while end < variables.len()
            && (end == start || bytes < GRAD_BUCKET_BYTES)
            && variables[end].kind() == kind
        {
            bytes += variables[end].numel() * kind.elt_size_in_bytes();
            end += 1;
        }
        let group = &variables[start..end];
        let flat: Vec<tch::Tensor> = group
            .iter()
            .map(|v| {
                let g = v.grad();
                if g.defined() {
                    g.reshape([-1])
                } else {
                    v.detach().zeros_like().reshape([-1])
                }
            })
            .collect();
        let mut bucket = [tch::Tensor::cat(&flat, 0)];
        c.all_reduce_sum(&mut bucket)?;
        let mean = &bucket[0] / world;
        let mut offset = 0;
        for v in group {
            let n = v.numel() as i64;
            let part = mean.narrow(0, offset, n).view_as(v);
            let mut g = v.grad();
            if g.defined() {
                g.copy_(&part);
            } else if part.abs().max().double_value(&[]) != 0.0 {
                // Another process used this parameter: d/dv sum(v · part) = part becomes its
                // `.grad` (the optimiser skips parameters without one).
                (*v * &part).sum(kind).f_backward().torch_context("averaging gradients")?;
            }
            offset += n;
        }
        start = end;
    }
    Ok(())
}

/// Accumulates loss and throughput between two logged records.
struct Window {
    started: Instant,
    steps: u64,
    samples: usize,
    loss_sum: f64,
}

impl Window {
    fn new() -> Self {
        Self { started: Instant::now(), steps: 0, samples: 0, loss_sum: 0.0 }
    }

    /// Replaces this process's loss and metrics by their means over the processes (every
    /// process logs the same steps, with the same metric names).
    fn average_over(&mut self, c: &dyn Collective, metrics: &mut BTreeMap<String, f64>) -> Result<()> {
        let mut values = vec![self.loss_sum / self.steps.max(1) as f64];
        values.extend(metrics.values().copied());
        let mut t = [tch::Tensor::from_slice(&values)];
        c.all_reduce_sum(&mut t)?;
        let means: Vec<f64> = Vec::try_from(&t[0] / c.world_size() as f64)
            .torch_context("averaging the logged loss over processes")?;
        self.loss_sum = means[0] * self.steps.max(1) as f64;
        for (v, m) in metrics.values_mut().zip(&means[1..]) {
            *v = *m;
        }
        Ok(())
    }

    fn record(&self, step: u64, lr: f64, mut metrics: BTreeMap<String, f64>) -> StepRecord {
        let secs = self.started.elapsed().as_secs_f64();
        if let Some(bytes) = host_memory_bytes() {
            metrics.insert("host_memory_mib".into(), bytes as f64 / 1_048_576.0);
        }
        StepRecord {
            step,
            loss: self.loss_sum / self.steps.max(1) as f64,
            lr,
            samples_per_sec: if secs > 0.0 { self.samples as f64 / secs } else { 0.0 },
            metrics,
        }
    }
}

fn progress_bar(cfg: &TrainConfig, start: u64, end: u64) -> ProgressBar {
    if !cfg.progress {
        return ProgressBar::hidden();
    }
    // Draws only on a terminal; hidden when stderr is redirected.
    let bar = ProgressBar::new(end).with_position(start);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]")
    {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_times_drop_the_warm_up_and_take_nearest_ranks() {
        assert_eq!(StepTimes::from_durations(&[]), StepTimes::default());
        let one = StepTimes::from_durations(&[0.5]);
        assert_eq!((one.steps, one.median_s, one.p90_s), (1, 0.5, 0.5));
        // 20 steps: the first two (a tenth) are warm-up.
        let mut d = vec![100.0, 100.0];
        d.extend((1..=18).map(f64::from));
        let t = StepTimes::from_durations(&d);
        assert_eq!((t.steps, t.median_s, t.p90_s), (18, 9.0, 17.0));
    }

    #[test]
    fn peak_host_memory_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let bytes = peak_host_memory_bytes().expect("VmHWM");
            assert!(bytes > 1 << 20, "{bytes}");
        }
    }
}
