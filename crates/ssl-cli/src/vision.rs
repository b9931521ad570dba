//! `ssl pretrain simclr | moco-v2 | moco-v3 | byol | mae | supervised`, and `ssl evaluate` /
//! `ssl embed` on their checkpoints: one generic driver over [`VisionMethod`].

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use ssl_core::checkpoint::{self, LoadedCheckpoint};
use ssl_core::data::{DataLoader, Dataset, LoaderConfig, RandomSampler};
use ssl_core::eval::{
    extract_features, probe_encoder, probe_features, EvalConfig, FinetuneConfig, ProbeSummary,
};
use ssl_core::optim::OptimizerConfig;
use ssl_core::tch::{Device, Tensor};
use ssl_core::trainer::TrainConfig;
use ssl_vision::data::{FolderOptions, ImageFiles, ImageSource};
use ssl_vision::method::VisionMethod;
use ssl_vision::shapes::{Shapes, ShapesConfig, Split};
use ssl_vision::views::{labelled_tensors, labelled_tensors_of, Normalization, ViewBatches};

use crate::run;
use crate::PretrainArgs;

/// Optimiser steps of the default run on the embedded shapes: about 4 minutes of training on
/// 2 CPU cores with the embedded defaults below, leaving time for the evaluation within the
/// 5-minute budget of the command-line contract. A step's cost differs by method (SimCLR
/// back-propagates both views; MoCo v2 one view and a gradient-free key pass; MoCo v3 and BYOL
/// both views plus a target pass; MAE encodes a quarter of the patches; inpainting and the
/// autoencoder one view and a light decoder), so each gets the steps
/// that fit the budget (measured on 2 CPU cores: SimCLR 288 images/s, MoCo v2 406, MoCo v3 212,
/// BYOL 204, MAE 338, rotation 123, inpainting 480, autoencoder 465).
pub fn default_steps(method: &str) -> u64 {
    match method {
        "moco-v2" | "inpainting" | "autoencoder" => 900,
        "moco-v3" | "byol" => 450,
        "mae" => 700,
        // Four rotations of every image: four backbone passes per sample.
        "rotation" => 250,
        _ => 600,
    }
}

/// Epochs of a run on a user's folder when neither `--steps` nor `--epochs` is given.
pub const DEFAULT_FOLDER_EPOCHS: u64 = 100;
/// Batch of the default run on the embedded shapes: more, smaller steps in the same budget.
pub const EMBEDDED_BATCH_SIZE: usize = 128;

/// Where the images come from and how they are batched: the `[data]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// An unlabelled image folder (searched recursively); absent: the embedded shapes.
    pub folder: Option<PathBuf>,
    /// Side of the square views, in pixels.
    pub image_size: u32,
    /// Use the papers' 32 px augmentation variants where they have one (SimCLR: colour
    /// jitter strength 0.5 and no blur).
    pub small_images: bool,
    /// Images per batch (each gives two views).
    pub batch_size: usize,
    /// Decode every image once, resized so its shorter side is `cache_side`, and keep them in
    /// memory; 0 decodes each image every time it is drawn.
    pub cache_side: u32,
    /// Leave out unreadable images (and report how many) instead of stopping at the first.
    pub skip_bad: bool,
    /// Labelled folder (one sub-folder per class) the probes train on.
    pub probe_train: Option<PathBuf>,
    /// Labelled folder the probes are scored on.
    pub probe_test: Option<PathBuf>,
    /// The embedded dataset, when `folder` is absent.
    pub shapes: ShapesConfig,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            folder: None,
            image_size: 32,
            small_images: true,
            batch_size: 256,
            cache_side: 0,
            skip_bad: false,
            probe_train: None,
            probe_test: None,
            shapes: ShapesConfig::default(),
        }
    }
}

impl DataConfig {
    fn validate(&self) -> Result<()> {
        if self.image_size < 8 {
            bail!("invalid config: data.image_size must be at least 8 pixels, got {}", self.image_size);
        }
        if self.batch_size < 2 {
            bail!("invalid config: data.batch_size must be at least 2 (contrastive batches need negatives)");
        }
        if self.probe_train.is_some() != self.probe_test.is_some() {
            bail!("invalid config: data.probe_train and data.probe_test go together");
        }
        if self.folder.is_none() {
            self.shapes.validate()?;
        }
        Ok(())
    }

    /// Probes on the labelled folders `train` and `test` when both are given (the flags
    /// `--probe-train` / `--probe-test`), replacing the configured probe data.
    fn use_probe_folders(&mut self, train: Option<&Path>, test: Option<&Path>) {
        if let (Some(train), Some(test)) = (train, test) {
            self.probe_train = Some(train.to_path_buf());
            self.probe_test = Some(test.to_path_buf());
        }
    }

    fn folder_options(&self, min_side: Option<u32>) -> FolderOptions {
        FolderOptions {
            min_side,
            cache_side: (self.cache_side > 0).then_some(self.cache_side),
            skip_bad: self.skip_bad,
        }
    }
}

/// A vision run's whole configuration, as `config.toml` stores it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound = "")]
pub struct RunConfig<M: VisionMethod> {
    /// The method's name.
    pub method: String,
    /// The trainer.
    #[serde(default)]
    pub train: TrainConfig,
    /// The data.
    #[serde(default)]
    pub data: DataConfig,
    /// The method's model.
    #[serde(default = "M::default_config")]
    pub model: M::Config,
    /// The probes.
    #[serde(default)]
    pub eval: EvalConfig,
    /// Fine-tuning of the whole encoder with a linear head on the labelled train split, after
    /// the probes; absent: no fine-tuning. On by default for methods whose protocol fine-tunes
    /// (MAE); a `[finetune]` table in a config file turns it on for any method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finetune: Option<FinetuneConfig>,
    /// Pictures of what the method does (MAE, inpainting, autoencoder).
    #[serde(default)]
    pub pictures: PicturesConfig,
}

/// The `[pictures]` table: `reconstructions.png` after training, and during it when asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PicturesConfig {
    /// Also draw the pictures every this many steps while training, as
    /// `pictures/step-NNNNNNNN.png`; 0 (the default) draws them after training only.
    pub every: u64,
    /// Images drawn, one per row: the first of the held-out split, or of the training set when
    /// there is none.
    pub samples: usize,
}

impl Default for PicturesConfig {
    fn default() -> Self {
        Self { every: 0, samples: 8 }
    }
}

/// Fine-tuning in the default run on the embedded shapes: the method's recipe for 3 epochs over
/// 2000 of the labelled images (a budget of about a minute per encoder on 2 CPU cores).
fn short_run_finetune<M: VisionMethod>() -> FinetuneConfig {
    FinetuneConfig { epochs: 3, train_subset: 2000, ..M::finetune_recipe() }
}

/// The fine-tuning of a run on the embedded shapes or on a folder.
fn finetune_defaults<M: VisionMethod>(embedded: bool) -> FinetuneConfig {
    if embedded {
        short_run_finetune::<M>()
    } else {
        M::finetune_recipe()
    }
}

/// The optimiser of a run the config does not set: the paper's (LARS, SGD or AdamW with their
/// learning-rate scaling) for a user's folder, the method's short-run optimiser
/// ([`VisionMethod::short_run_optimizer`]) for the default run on the embedded shapes.
fn method_optimizer<M: VisionMethod>(embedded: bool, batch_size: usize) -> OptimizerConfig {
    if embedded {
        M::short_run_optimizer(batch_size)
    } else {
        M::optimizer(batch_size)
    }
}

/// The defaults of a run: the method's model and optimiser, and on the embedded shapes the
/// narrower backbone, smaller batch and step budget of the default run.
fn default_config<M: VisionMethod>(embedded: bool) -> RunConfig<M> {
    let mut data = DataConfig::default();
    if embedded {
        data.batch_size = EMBEDDED_BATCH_SIZE;
    }
    let mut train = TrainConfig {
        steps: default_steps(M::NAME),
        log_every: 10,
        checkpoint_every: 100,
        keep_last: 2,
        sync_batchnorm: M::SYNC_BATCHNORM,
        ..Default::default()
    };
    train.optimizer = method_optimizer::<M>(embedded, data.batch_size);
    train.schedule.warmup_steps = train.steps / 10;
    let mut model = M::default_config();
    if embedded {
        M::short_run_config(&mut model);
    }
    let finetune = M::FINETUNE.then(|| finetune_defaults::<M>(embedded));
    RunConfig {
        method: M::NAME.to_string(),
        train,
        data,
        model,
        eval: EvalConfig::default(),
        finetune,
        pictures: PicturesConfig::default(),
    }
}

fn resolve_config<M: VisionMethod>(args: &PretrainArgs) -> Result<RunConfig<M>> {
    let embedded = args.data.is_none();
    let (mut cfg, user): (RunConfig<M>, _) = run::run_config(args, default_config::<M>(embedded), M::NAME)?;
    let user_optimizer =
        user.as_ref().and_then(|u| u.get("train")).and_then(|t| t.get("optimizer")).is_some();
    if let Some(d) = &args.data {
        cfg.data.folder = Some(d.clone());
    }
    cfg.data.use_probe_folders(args.probe_train.as_deref(), args.probe_test.as_deref());
    if let Some(seed) = args.seed {
        cfg.train.seed = seed;
    }
    if let Some(bs) = args.batch_size {
        cfg.data.batch_size = bs;
    }
    if !user_optimizer {
        // The method's optimiser, its learning rate scaled to the final batch size.
        cfg.train.optimizer = method_optimizer::<M>(embedded, cfg.data.batch_size);
    }
    run::apply_train_flags(args, &mut cfg.train)?;
    cfg.data.validate()?;
    M::validate(&cfg.model)?;
    M::check_image_size(&cfg.model, cfg.data.image_size)?;
    cfg.train.validate()?;
    cfg.eval.validate()?;
    if let Some(finetune) = &cfg.finetune {
        finetune.validate()?;
    }
    Ok(cfg)
}

/// The training images.
fn training_source(data: &DataConfig, labelled: bool) -> Result<(ImageSource, usize)> {
    match &data.folder {
        None => Ok((ImageSource::Shapes(Shapes::new(&data.shapes, Split::Train)?), data.shapes.num_classes)),
        Some(dir) => {
            let options = data.folder_options(None);
            let files = if labelled {
                ImageFiles::labelled(dir, &options)?
            } else {
                ImageFiles::unlabelled(dir, &options)?
            };
            if !files.skipped().is_empty() {
                eprintln!("skipped {} unreadable image(s) in {}", files.skipped().len(), dir.display());
                for s in files.skipped().iter().take(5) {
                    eprintln!("  {}: {}", s.path.display(), s.reason);
                }
            }
            let classes = files.classes().len();
            Ok((ImageSource::Folder(files), classes))
        }
    }
}

type VisionLoader = DataLoader<ImageSource, ViewBatches, RandomSampler>;

/// The training loader; sets the model's class count for methods that train on labels.
fn loader<M: VisionMethod>(cfg: &mut RunConfig<M>) -> Result<VisionLoader> {
    let (source, classes) = training_source(&cfg.data, M::LABELLED)?;
    if M::LABELLED {
        M::set_num_classes(&mut cfg.model, classes);
        M::validate(&cfg.model)?;
    }
    M::check_dataset(&cfg.model, source.len())?;
    let views =
        ViewBatches::new(M::views(cfg.data.image_size, cfg.data.small_images), Normalization::IMAGENET)
            .with_labels(M::LABELLED);
    let loader_cfg =
        LoaderConfig { batch_size: cfg.data.batch_size, drop_last: true, prefetch: 2, seed: cfg.train.seed };
    Ok(DataLoader::new(source, views, RandomSampler::new(cfg.train.seed), loader_cfg)?)
}

fn build<M: VisionMethod>(cfg: &RunConfig<M>, device: Device) -> Result<M> {
    ssl_core::rng::seed_torch(cfg.train.seed, "init", &[]);
    Ok(M::build(&cfg.model, device)?)
}

pub fn pretrain<M: VisionMethod>(args: &PretrainArgs) -> Result<()> {
    // Everything that can be wrong with the inputs is checked before the run directory exists.
    let mut cfg = resolve_config::<M>(args)?;
    let device = run::resolve_device(None, cfg.train.device)?;
    let loader = loader(&mut cfg)?;
    let user_data = cfg.data.folder.is_some();
    run::resolve_steps(
        args,
        &mut cfg.train,
        loader.batches_per_epoch(),
        user_data,
        DEFAULT_FOLDER_EPOCHS,
        10,
    )?;
    let probe = if args.no_eval { None } else { Some(probe_sets(&cfg.data)?) };
    let mut objective = build(&cfg, device)?;
    run::init_weights(args, M::NAME, objective.var_store())?;
    let dir = run::prepare_run_dir(args)?;
    run::write_config(&dir, &cfg)?;
    eprintln!(
        "training `{}` for {} steps of {} images ({} in the training set) on {device:?}; run directory {}",
        M::NAME,
        cfg.train.steps,
        cfg.data.batch_size,
        loader.dataset().len(),
        dir.display()
    );
    let picture_images = picture_images::<M>(&cfg, probe.as_ref().and_then(Option::as_ref), &loader)?;
    let every = cfg.pictures.every;
    let report = run::trainer(args, cfg.train.clone(), &dir)?
        .config_snapshot(serde_json::to_value(&cfg)?)
        .fit_with(&mut objective, &loader, |objective, step| match &picture_images {
            Some(images) if every > 0 && step % every == 0 && step < cfg.train.steps => {
                let folder = dir.join("pictures");
                std::fs::create_dir_all(&folder).map_err(|e| ssl_core::Error::io(&folder, e))?;
                draw_pictures(objective, images, &folder.join(format!("step-{step:08}.png")))
            }
            _ => Ok(()),
        })
        .context("training failed")?;
    if run::secondary_rank() {
        return Ok(());
    }

    let mut summary = run::training_summary(&dir, M::NAME, &report)?;
    if let Some(images) = &picture_images {
        let path = dir.join("reconstructions.png");
        draw_pictures(&objective, images, &path)?;
        eprintln!("pictures: {} ({})", path.display(), M::PICTURE_COLUMNS.join(", "));
    }
    if let Some(Some(sets)) = probe {
        summary["eval"] = evaluation(&cfg, &objective, &sets, device)?;
    } else if !args.no_eval {
        eprintln!("no labelled data to probe on: pass --probe-train DIR --probe-test DIR to evaluate");
    }
    run::write_summary(&dir, &summary)?;
    print_table(&summary);
    eprintln!("summary: {}", dir.join("summary.json").display());
    Ok(())
}

/// Labelled `(train_x, train_y, test_x, test_y)` for the probes: the user's folders, the
/// embedded shapes' splits, or none (a folder run without probe folders).
struct ProbeSets {
    train: (Tensor, Tensor),
    test: (Tensor, Tensor),
    classes: Vec<String>,
}

fn probe_sets(data: &DataConfig) -> Result<Option<ProbeSets>> {
    let size = data.image_size;
    let norm = Normalization::IMAGENET;
    match (&data.probe_train, &data.probe_test, &data.folder) {
        (Some(train), Some(test), _) => {
            let options = data.folder_options(None);
            let train_set = ImageFiles::labelled(train, &options)?;
            let test_set = ImageFiles::labelled(test, &options)?;
            if train_set.classes() != test_set.classes() {
                bail!(
                    "the probe folders have different classes: {} has {:?}, {} has {:?}",
                    train.display(),
                    train_set.classes(),
                    test.display(),
                    test_set.classes()
                );
            }
            Ok(Some(ProbeSets {
                train: labelled_tensors(&train_set, size, norm)?,
                test: labelled_tensors(&test_set, size, norm)?,
                classes: train_set.classes().to_vec(),
            }))
        }
        (None, None, None) => Ok(Some(ProbeSets {
            train: labelled_tensors(&Shapes::new(&data.shapes, Split::Train)?, size, norm)?,
            test: labelled_tensors(&Shapes::new(&data.shapes, Split::Test)?, size, norm)?,
            classes: ssl_vision::shapes::CLASSES.iter().map(|c| c.to_string()).collect(),
        })),
        _ => Ok(None),
    }
}

fn probe(
    encoder: &dyn ssl_core::Encoder,
    sets: &ProbeSets,
    eval: &EvalConfig,
    device: Device,
) -> Result<ProbeSummary> {
    let ((tx, ty), (vx, vy)) = (&sets.train, &sets.test);
    Ok(probe_encoder(encoder, tx, ty, vx, vy, eval, device)?)
}

/// The images the method's pictures show (`[pictures] samples` of them): the first of the
/// held-out split, or of the training set when there is none; `None` for methods without
/// pictures.
fn picture_images<M: VisionMethod>(
    cfg: &RunConfig<M>,
    probe: Option<&ProbeSets>,
    loader: &VisionLoader,
) -> Result<Option<Tensor>> {
    let n = cfg.pictures.samples;
    if M::PICTURE_COLUMNS.is_empty() || n == 0 {
        return Ok(None);
    }
    Ok(Some(match probe {
        Some(sets) => sets.test.0.narrow(0, 0, sets.test.0.size()[0].min(n as i64)),
        None => labelled_tensors_of(loader.dataset(), 0..n, cfg.data.image_size, Normalization::IMAGENET)?.0,
    }))
}

/// Draws the method's pictures of `images` to `path`; libtorch's generator is seeded first, so
/// every picture of a run masks or corrupts the images the same way.
fn draw_pictures<M: VisionMethod>(objective: &M, images: &Tensor, path: &Path) -> ssl_core::Result<()> {
    ssl_core::rng::seed_torch(0, "pictures", &[]);
    let device = objective.var_store().device();
    match objective.pictures(&images.to_device(device))? {
        Some(columns) => ssl_vision::pictures::write_grid(&columns, Normalization::IMAGENET, path),
        None => Ok(()),
    }
}

/// Fine-tunes `model`'s encoder (its variables change) on the labelled sets.
fn fine_tune<M: VisionMethod>(
    model: &M,
    sets: &ProbeSets,
    ft: &FinetuneConfig,
    device: Device,
) -> Result<ssl_core::eval::Finetuned> {
    let ((tx, ty), (vx, vy)) = (&sets.train, &sets.test);
    Ok(ssl_core::eval::finetune_with_head(model.encoder(), model.var_store(), tx, ty, vx, vy, ft, device)?)
}

/// Probes the trained encoder, the same encoder untrained, and the raw pixels; with a
/// `[finetune]` config, then fine-tunes both encoders (the trained one last: it is changed).
fn evaluation<M: VisionMethod>(
    cfg: &RunConfig<M>,
    trained: &M,
    sets: &ProbeSets,
    device: Device,
) -> Result<serde_json::Value> {
    let ((tx, ty), (vx, vy)) = (&sets.train, &sets.test);
    eprintln!("evaluating on {} labelled train / {} held-out images", ty.size()[0], vy.size()[0]);
    let ours = probe(trained.encoder(), sets, &cfg.eval, device)?;
    let untrained = build(cfg, device)?;
    let random = probe(untrained.encoder(), sets, &cfg.eval, device)?;
    let raw = probe_features(tx, ty, vx, vy, &cfg.eval, device)?;
    let mut summary = run::eval_summary(&ours, &random, Some(("raw_input", &raw)));
    if let Some(ft) = &cfg.finetune {
        eprintln!("fine-tuning the untrained and the trained encoder ({} epochs)", ft.epochs);
        let random = fine_tune(&untrained, sets, ft, device)?.report;
        let ours = fine_tune(trained, sets, ft, device)?.report;
        summary["finetune_acc"] = ours.top1.into();
        summary["random_init_finetune_acc"] = random.top1.into();
        summary["finetune"] = serde_json::to_value(&ours)?;
    }
    Ok(summary)
}

/// The short table the main job ends with.
fn print_table(summary: &serde_json::Value) {
    let num = |v: &serde_json::Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.3}"));
    let e = &summary["eval"];
    println!(
        "{:<11} {:>6} {:>10} {:>8} {:>8} {:>12} {:>10}",
        "method", "steps", "samples/s", "linear", "kNN", "random-init", "raw-pixel"
    );
    println!(
        "{:<11} {:>6} {:>10.1} {:>8} {:>8} {:>12} {:>10}",
        summary["method"].as_str().unwrap_or("?"),
        summary["steps"],
        summary["samples_per_sec"].as_f64().unwrap_or(f64::NAN),
        num(&e["linear_probe_acc"]),
        num(&e["knn_acc"]),
        num(&e["random_init_linear_probe_acc"]),
        num(&e["raw_input_linear_probe_acc"]),
    );
    if e.get("finetune_acc").is_some() {
        println!(
            "fine-tuned: {} (the same encoder fine-tuned from random init: {})",
            num(&e["finetune_acc"]),
            num(&e["random_init_finetune_acc"])
        );
    }
}

fn restore<M: VisionMethod>(
    ck: &LoadedCheckpoint,
    device: Option<&str>,
) -> Result<(RunConfig<M>, M, Device)> {
    let cfg: RunConfig<M> = serde_json::from_value(ck.meta.config.clone()).with_context(|| {
        format!("checkpoint {}: its stored config is not a `{}` run config", ck.path.display(), M::NAME)
    })?;
    let device = run::resolve_device(device, cfg.train.device)?;
    let objective = build(&cfg, device)?;
    checkpoint::restore_variables(objective.var_store(), &ck.model, &ck.path.join("model.safetensors"))?;
    Ok((cfg, objective, device))
}

pub fn evaluate<M: VisionMethod>(
    ck: LoadedCheckpoint,
    device: Option<&str>,
    probe_train: Option<&Path>,
    probe_test: Option<&Path>,
    budget: &crate::LabelBudgetArgs,
) -> Result<()> {
    let (mut cfg, objective, device) = restore::<M>(&ck, device)?;
    cfg.data.use_probe_folders(probe_train, probe_test);
    let Some(sets) = probe_sets(&cfg.data)? else {
        bail!("no labelled data to probe on: pass --probe-train DIR --probe-test DIR");
    };
    let ft = cfg.finetune.take().unwrap_or_else(|| finetune_defaults::<M>(cfg.data.folder.is_none()));
    let mut report = evaluation(&cfg, &objective, &sets, device)?;
    if budget.label_budget.is_some() {
        let ((tx, ty), (vx, vy)) = (&sets.train, &sets.test);
        let untrained = build(&cfg, device)?;
        let inputs = run::LabelInputs {
            trained: run::Tunable { encoder: objective.encoder(), vars: objective.var_store() },
            untrained: run::Tunable { encoder: untrained.encoder(), vars: untrained.var_store() },
            train: (tx, ty),
            test: (vx, vy),
            raw: ("raw_input", tx.flatten(1, -1), vx.flatten(1, -1)),
            finetune: ft,
        };
        if let Some(rows) = run::label_efficiency(budget, &ck.path, inputs, &cfg.eval, device)? {
            report["label_efficiency"] = rows;
        }
    }
    let out = serde_json::json!({ "checkpoint": ck.path, "step": ck.meta.step, "eval": report });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// `ssl finetune`: fine-tunes the checkpoint's encoder (and with `--baseline` the same encoder
/// untrained) on the labelled data and prints the report as JSON.
pub fn finetune<M: VisionMethod>(ck: LoadedCheckpoint, args: &crate::FinetuneArgs) -> Result<()> {
    let (mut cfg, objective, device) = restore::<M>(&ck, args.run.device.as_deref())?;
    cfg.data.use_probe_folders(args.run.probe_train.as_deref(), args.run.probe_test.as_deref());
    let embedded = cfg.data.folder.is_none();
    let mut ft = cfg.finetune.clone().unwrap_or_else(|| finetune_defaults::<M>(embedded));
    run::apply_finetune_flags(&mut ft, args)?;
    let Some(sets) = probe_sets(&cfg.data)? else {
        bail!("no labelled data to fine-tune on: pass --probe-train DIR --probe-test DIR");
    };
    let job = run::FinetuneJob {
        ck: &ck,
        ft: &ft,
        args,
        inputs: format!("{} labelled images", sets.train.1.size()[0]),
        classes: &sets.classes,
    };
    run::finetune_report(job, &objective, || build(&cfg, device), |m| fine_tune(m, &sets, &ft, device))
}

/// Writes the representations of a folder's images (or of the embedded held-out split) to a
/// safetensors file: `embeddings` `[N, D]` and `labels` `[N]` (-1 for an unlabelled folder),
/// with the image paths, one per line, in `<output>.files.txt` for a folder.
pub fn embed<M: VisionMethod>(
    ck: LoadedCheckpoint,
    device: Option<&str>,
    data: Option<&Path>,
    output: &Path,
) -> Result<()> {
    let (cfg, objective, device) = restore::<M>(&ck, device)?;
    let norm = Normalization::IMAGENET;
    let (x, y, files) = match data {
        None => {
            let (x, y) =
                labelled_tensors(&Shapes::new(&cfg.data.shapes, Split::Test)?, cfg.data.image_size, norm)?;
            (x, y, None)
        }
        Some(dir) => {
            let set = ImageFiles::unlabelled(dir, &cfg.data.folder_options(None))?;
            let (x, y) = labelled_tensors(&set, cfg.data.image_size, norm)?;
            let names: Vec<String> = set.files().iter().map(|(p, _)| p.display().to_string()).collect();
            (x, y, Some(names))
        }
    };
    let z = extract_features(objective.encoder(), &x, cfg.eval.batch_size, device)?;
    run::write_embeddings(&z, &y, files.as_deref(), output)
}
