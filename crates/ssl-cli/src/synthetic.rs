//! `ssl pretrain synthetic`: the modality-free end-to-end demo on Gaussian clusters.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use ssl_core::checkpoint::{self, LoadedCheckpoint};
use ssl_core::eval::{probe_encoder, probe_features, EvalConfig};
use ssl_core::synthetic::{self, SyntheticConfig, VectorSimclr};
use ssl_core::tch::{Device, Tensor};
use ssl_core::trainer::TrainConfig;
use ssl_core::Objective;

use crate::run;
use crate::PretrainArgs;

/// Default optimiser steps: about a minute on 2 CPU cores, far past convergence of this task.
const DEFAULT_STEPS: u64 = 1500;

/// The whole configuration of a synthetic run, as `config.toml` stores it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Always `synthetic`.
    pub method: String,
    /// The trainer.
    pub train: TrainConfig,
    /// The task and model.
    pub data: SyntheticConfig,
    /// The probes.
    pub eval: EvalConfig,
}

impl Default for RunConfig {
    fn default() -> Self {
        let mut train =
            TrainConfig { steps: DEFAULT_STEPS, log_every: 25, checkpoint_every: 500, ..Default::default() };
        train.optimizer.lr = 2e-3;
        train.optimizer.weight_decay = 1e-4;
        train.schedule.warmup_steps = 50;
        Self {
            method: "synthetic".into(),
            train,
            data: SyntheticConfig::default(),
            eval: EvalConfig::default(),
        }
    }
}

fn resolve_config(
    args: &PretrainArgs,
    batches_per_epoch: impl Fn(&RunConfig) -> Result<u64>,
) -> Result<RunConfig> {
    let mut cfg: RunConfig = match &args.config {
        Some(path) => run::load_config(path)?,
        None => RunConfig::default(),
    };
    if cfg.method != "synthetic" {
        bail!("config `method = \"{}\"` does not match the command's method `synthetic`", cfg.method);
    }
    if args.data.is_some() {
        bail!("--data: the synthetic method generates its data; configure it in the [data] table instead");
    }
    if args.probe_train.is_some() {
        bail!("--probe-train/--probe-test: the synthetic method probes on its own held-out split");
    }
    if let Some(seed) = args.seed {
        cfg.train.seed = seed;
        cfg.data.seed = seed;
    }
    if let Some(bs) = args.batch_size {
        cfg.data.batch_size = bs;
    }
    run::apply_train_flags(args, &mut cfg.train)?;
    if let Some(epochs) = args.epochs {
        cfg.train.steps = epochs * batches_per_epoch(&cfg)?;
    }
    cfg.train.schedule.warmup_steps = cfg.train.schedule.warmup_steps.min(cfg.train.steps);
    cfg.data.validate()?;
    cfg.train.validate()?;
    cfg.eval.validate()?;
    Ok(cfg)
}

pub fn pretrain(args: &PretrainArgs) -> Result<()> {
    if args.init_from.is_some() {
        anyhow::bail!("--init-from is for the modality methods; the synthetic check always starts fresh");
    }
    // Everything that can be wrong with the inputs is checked before the run directory exists.
    let cfg = resolve_config(args, |c| {
        let n = c.data.train_per_class * c.data.num_classes;
        Ok((n / c.data.batch_size.max(1)) as u64)
    })?;
    let device = run::resolve_device(None, cfg.train.device)?;
    let (loader, mut objective) = synthetic::setup(&cfg.data, device)?;
    let dir = run::prepare_run_dir(args)?;
    run::write_config(&dir, &cfg)?;
    eprintln!(
        "training `synthetic` for {} steps on {device:?}; run directory {}",
        cfg.train.steps,
        dir.display()
    );

    let snapshot = serde_json::to_value(&cfg)?;
    let report = run::trainer(args, cfg.train.clone(), &dir)?
        .config_snapshot(snapshot)
        .fit(&mut objective, &loader)
        .context("training failed")?;
    if run::secondary_rank() {
        return Ok(());
    }

    let mut summary = run::training_summary(&dir, "synthetic", &report)?;
    if !args.no_eval {
        summary["eval"] = evaluation(&cfg, &objective, device)?;
    }
    run::write_summary(&dir, &summary)?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

/// Probes the trained encoder, the same encoder untrained, and the raw inputs.
fn evaluation(cfg: &RunConfig, trained: &VectorSimclr, device: Device) -> Result<serde_json::Value> {
    let (train, test) = synthetic::generate(&cfg.data)?;
    let (train_x, train_y) = train.tensors();
    let (test_x, test_y) = test.tensors();
    eprintln!("evaluating on {} labelled train / {} held-out samples", train_y.size()[0], test_y.size()[0]);
    let ours = probe_encoder(trained.encoder(), &train_x, &train_y, &test_x, &test_y, &cfg.eval, device)?;
    let untrained = VectorSimclr::new(&cfg.data, device)?;
    let random = probe_encoder(untrained.encoder(), &train_x, &train_y, &test_x, &test_y, &cfg.eval, device)?;
    let raw = probe_features(&train_x, &train_y, &test_x, &test_y, &cfg.eval, device)?;
    Ok(run::eval_summary(&ours, &random, Some(("raw_input", &raw))))
}

fn restore(ck: &LoadedCheckpoint, device: Option<&str>) -> Result<(RunConfig, VectorSimclr, Device)> {
    let cfg: RunConfig = serde_json::from_value(ck.meta.config.clone()).with_context(|| {
        format!("checkpoint {}: its stored config is not a synthetic run config", ck.path.display())
    })?;
    let device = run::resolve_device(device, cfg.train.device)?;
    let objective = VectorSimclr::new(&cfg.data, device)?;
    checkpoint::restore_variables(objective.var_store(), &ck.model, &ck.path.join("model.safetensors"))?;
    Ok((cfg, objective, device))
}

pub fn evaluate(ck: LoadedCheckpoint, device: Option<&str>) -> Result<()> {
    let (cfg, objective, device) = restore(&ck, device)?;
    let report = evaluation(&cfg, &objective, device)?;
    println!(
        "{}",
        serde_json::to_string_pretty(
            &serde_json::json!({ "checkpoint": ck.path, "step": ck.meta.step, "eval": report })
        )?
    );
    Ok(())
}

pub fn embed(ck: LoadedCheckpoint, device: Option<&str>, output: &Path) -> Result<()> {
    let (cfg, objective, device) = restore(&ck, device)?;
    let (_, test) = synthetic::generate(&cfg.data)?;
    let (x, y) = test.tensors();
    let z = ssl_core::eval::extract_features(objective.encoder(), &x, cfg.eval.batch_size, device)?;
    let tmp = output.with_extension("safetensors.tmp");
    Tensor::write_safetensors(&[("embeddings", &z), ("labels", &y)], &tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, output).with_context(|| format!("cannot write {}", output.display()))?;
    eprintln!("wrote {} embeddings of dimension {} to {}", z.size()[0], z.size()[1], output.display());
    Ok(())
}
