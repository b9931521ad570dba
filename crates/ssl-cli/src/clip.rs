//! `ssl pretrain clip`, and `ssl evaluate` / `ssl embed` on its checkpoints.
//!
//! A run trains a byte-level BPE tokenizer on the training captions (or loads
//! `data.tokenizer`), trains CLIP on the embedded captioned scenes (or a CSV/TSV/JSONL
//! manifest), then scores zero-shot classification and image-text retrieval, next to the same
//! model untrained. On the embedded set, zero-shot classifies images of the held-out
//! colour-shape combinations among those combinations, and retrieval ranks the held-out pairs;
//! on a user's data, `--zero-shot DIR` (a labelled image folder, its sub-folder names the class
//! names) and `--pairs FILE` (a paired manifest) say what to score.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use ssl_core::checkpoint::{self, LoadedCheckpoint};
use ssl_core::data::{DataLoader, Dataset, LoaderConfig, RandomSampler};
use ssl_core::optim::OptimizerConfig;
use ssl_core::tch::{Device, Kind, Tensor};
use ssl_core::trainer::TrainConfig;
use ssl_core::Objective;
use ssl_multimodal::batch::{eval_images, CaptionTokenizer, ImageTransform, PairBatches};
use ssl_multimodal::clip::{Clip, ClipConfig};
use ssl_multimodal::eval::{
    image_embeddings, retrieval, text_embeddings, zero_shot, zero_shot_weights, ZeroShot, PHOTO_TEMPLATES,
};
use ssl_multimodal::pairs::{ManifestOptions, PairFiles};
use ssl_multimodal::scenes::{self, SceneSplit, Scenes, ScenesConfig};
use ssl_text::tokenizer::{TextTokenizer, TokenizerKind};
use ssl_vision::augment::Image;
use ssl_vision::data::{FolderOptions, ImageFiles};

use crate::run;
use crate::{ClipEvalArgs, PretrainArgs};

/// Steps of the default run on the embedded set (about 5 minutes on 2 CPU cores).
const DEFAULT_STEPS: u64 = 500;

/// The `[data]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// A CSV/TSV/JSONL manifest of image-caption pairs; absent: the embedded scenes.
    pub path: Option<PathBuf>,
    /// How the manifest is read (column names, skipping bad pairs).
    pub manifest: ManifestOptions,
    /// The training image transform (its `size` is the image tower's input side).
    pub transform: ImageTransform,
    /// Pairs per batch: every pair's negatives are the other pairs of the batch.
    pub batch_size: usize,
    /// A `tokenizer.json` to use; absent: a byte-level BPE is trained on the training captions
    /// and saved in the run directory.
    pub tokenizer: Option<PathBuf>,
    /// Vocabulary size of a trained tokenizer.
    pub vocab_size: usize,
    /// The embedded set.
    pub scenes: ScenesConfig,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            path: None,
            manifest: ManifestOptions::default(),
            transform: ImageTransform::default(),
            batch_size: 256,
            tokenizer: None,
            vocab_size: 16_384,
            scenes: ScenesConfig::default(),
        }
    }
}

/// The `[eval]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// A labelled image folder (one sub-folder per class, named by the class) to classify
    /// zero-shot; with the embedded set, its held-out combinations are used.
    pub zero_shot: Option<PathBuf>,
    /// A paired manifest to score retrieval on; with the embedded set, its held-out pairs.
    pub pairs: Option<PathBuf>,
    /// Prompt templates (`{}` is the class name); absent: the embedded set's, or CLIP's
    /// photo templates for a folder.
    pub templates: Option<Vec<String>>,
    /// Inputs per forward pass.
    pub batch_size: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self { zero_shot: None, pairs: None, templates: None, batch_size: 256 }
    }
}

/// A `clip` run's whole configuration, as `config.toml` stores it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// `clip`.
    pub method: String,
    /// The trainer.
    #[serde(default)]
    pub train: TrainConfig,
    /// The data.
    #[serde(default)]
    pub data: DataConfig,
    /// The model.
    pub model: ClipConfig,
    /// The evaluation.
    #[serde(default)]
    pub eval: EvalConfig,
}

fn default_config(embedded: bool) -> RunConfig {
    let mut data = DataConfig::default();
    let model = if embedded { ClipConfig::small() } else { ClipConfig::default() };
    if embedded {
        data.transform.size = data.scenes.image_size;
        data.batch_size = 128;
        data.vocab_size = 1000;
    }
    // CLIP: AdamW, betas (0.9, 0.98), eps 1e-6, weight decay 0.2, linear warm-up, cosine decay.
    let mut train = TrainConfig {
        steps: DEFAULT_STEPS,
        log_every: 10,
        checkpoint_every: 200,
        keep_last: 2,
        grad_clip_norm: Some(1.0),
        optimizer: OptimizerConfig {
            lr: if embedded { 1e-3 } else { 5e-4 },
            weight_decay: if embedded { 0.1 } else { 0.2 },
            betas: (0.9, 0.98),
            eps: 1e-6,
            ..Default::default()
        },
        ..Default::default()
    };
    train.schedule.warmup_steps = train.steps / 10;
    RunConfig { method: Clip::NAME.into(), train, data, model, eval: EvalConfig::default() }
}

fn validate(cfg: &RunConfig) -> Result<()> {
    cfg.model.validate()?;
    cfg.data.transform.validate()?;
    if cfg.data.batch_size < 2 {
        bail!("invalid config: data.batch_size must be at least 2 (the negatives are the rest of the batch)");
    }
    if let Some(size) = cfg.model.image.image_size() {
        if size != i64::from(cfg.data.transform.size) {
            bail!(
                "invalid config: data.transform.size ({}) must equal the ViT's model.image.image_size ({size})",
                cfg.data.transform.size
            );
        }
    }
    if cfg.eval.batch_size == 0 {
        bail!("invalid config: eval.batch_size must be at least 1");
    }
    if cfg.data.path.is_none() {
        cfg.data.scenes.validate()?;
        if cfg.data.scenes.image_size != cfg.data.transform.size {
            bail!("invalid config: data.scenes.image_size must equal data.transform.size");
        }
    }
    Ok(())
}

fn resolve_config(args: &PretrainArgs) -> Result<RunConfig> {
    let embedded = args.data.is_none();
    let (mut cfg, _) = run::run_config(args, default_config(embedded), Clip::NAME)?;
    if let Some(d) = &args.data {
        cfg.data.path = Some(d.clone());
    }
    if let Some(seed) = args.seed {
        cfg.train.seed = seed;
    }
    if let Some(bs) = args.batch_size {
        cfg.data.batch_size = bs;
    }
    apply_eval_flags(&mut cfg.eval, &args.clip)?;
    run::apply_train_flags(args, &mut cfg.train)?;
    validate(&cfg)?;
    Ok(cfg)
}

fn apply_eval_flags(eval: &mut EvalConfig, flags: &ClipEvalArgs) -> Result<()> {
    if let Some(z) = &flags.zero_shot {
        eval.zero_shot = Some(z.clone());
    }
    if let Some(p) = &flags.pairs {
        eval.pairs = Some(p.clone());
    }
    if let Some(t) = &flags.templates {
        let text =
            std::fs::read_to_string(t).with_context(|| format!("cannot read templates {}", t.display()))?;
        let lines: Vec<String> =
            text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
        if let Some(bad) = lines.iter().find(|l| !l.contains("{}")) {
            bail!("templates {}: `{bad}` has no `{{}}` for the class name", t.display());
        }
        if lines.is_empty() {
            bail!("templates {}: no templates", t.display());
        }
        eval.templates = Some(lines);
    }
    Ok(())
}

/// The training pairs: the embedded scenes or a manifest.
enum Pairs {
    Scenes(Scenes),
    Files(PairFiles),
}

impl Dataset for Pairs {
    type Item = (Image, String);
    fn len(&self) -> usize {
        match self {
            Pairs::Scenes(d) => d.len(),
            Pairs::Files(d) => d.len(),
        }
    }
    fn get(&self, index: usize) -> ssl_core::Result<(Image, String)> {
        match self {
            Pairs::Scenes(d) => d.get(index),
            Pairs::Files(d) => d.get(index),
        }
    }
}

fn training_pairs(data: &DataConfig) -> Result<Pairs> {
    Ok(match &data.path {
        None => Pairs::Scenes(Scenes::new(&data.scenes, SceneSplit::Train)?),
        Some(path) => {
            let files = PairFiles::open(path, &data.manifest)?;
            if !files.skipped().is_empty() {
                eprintln!("skipped {} bad pairs of {}", files.skipped().len(), path.display());
            }
            Pairs::Files(files)
        }
    })
}

/// Captions a tokenizer is trained on: those of the manifest, or 20 000 of the scenes'.
fn tokenizer_for(data: &DataConfig, pairs: &Pairs) -> Result<TextTokenizer> {
    if let Some(path) = &data.tokenizer {
        return TextTokenizer::load(path).with_context(|| format!("data.tokenizer {}", path.display()));
    }
    let captions: Vec<String> = match pairs {
        Pairs::Scenes(s) => (0..s.len().min(20_000)).map(|i| s.caption(i)).collect(),
        Pairs::Files(f) => f.captions().into_iter().map(String::from).collect(),
    };
    Ok(TextTokenizer::train(TokenizerKind::ByteLevelBpe, captions.iter(), data.vocab_size)?)
}

fn build(cfg: &RunConfig, tok: &CaptionTokenizer, device: Device) -> Result<Clip> {
    ssl_core::rng::seed_torch(cfg.train.seed, "init", &[]);
    let vocab = tok.tokenizer().vocab_size() as i64;
    Ok(Clip::new(&cfg.model, vocab, i64::from(tok.pad()), device)?)
}

/// What the evaluation scores: a zero-shot set and a paired retrieval set, either optional.
struct EvalSets {
    zero_shot: Option<ZeroShotSet>,
    pairs: Option<(Tensor, Tensor)>,
}

struct ZeroShotSet {
    images: Tensor,
    labels: Tensor,
    classes: Vec<String>,
    templates: Vec<String>,
    /// On the embedded set: the labels among every colour-shape combination, and their names.
    all: Option<(Tensor, Vec<String>)>,
}

fn eval_sets(cfg: &RunConfig, tok: &CaptionTokenizer) -> Result<EvalSets> {
    let t = &cfg.data.transform;
    let embedded = cfg.data.path.is_none();
    let zero_shot = match (&cfg.eval.zero_shot, embedded) {
        (Some(dir), _) => {
            let files = ImageFiles::labelled(dir, &FolderOptions::default())?;
            let items = (0..files.len()).map(|i| files.get(i)).collect::<ssl_core::Result<Vec<_>>>()?;
            let (images, labels): (Vec<Image>, Vec<i64>) = items.into_iter().unzip();
            let classes = files.classes().iter().map(|c| c.replace('_', " ")).collect();
            let templates = cfg
                .eval
                .templates
                .clone()
                .unwrap_or_else(|| PHOTO_TEMPLATES.iter().map(|s| s.to_string()).collect());
            Some(ZeroShotSet {
                images: eval_images(&images, t)?,
                labels: Tensor::from_slice(&labels),
                classes,
                templates,
                all: None,
            })
        }
        (None, true) => {
            let ds = Scenes::new(&cfg.data.scenes, SceneSplit::ZeroShot)?;
            let images: Vec<Image> = (0..ds.len()).map(|i| ds.render(i)).collect();
            let scenes: Vec<_> = (0..ds.len()).map(|i| ds.scene(i)).collect();
            let labels: Vec<i64> = scenes.iter().map(|s| s.1).collect();
            let n_shapes = ssl_vision::shapes::CLASSES.len();
            let all_labels: Vec<i64> =
                scenes.iter().map(|(s, _)| (s.colour * n_shapes + s.shape) as i64).collect();
            let all_names: Vec<String> = (0..scenes::COLOURS.len())
                .flat_map(|c| (0..n_shapes).map(move |s| (c, s)))
                .map(|(colour, shape)| scenes::Scene { colour, shape, large: false, place: 0 }.class_name())
                .collect();
            let templates = cfg
                .eval
                .templates
                .clone()
                .unwrap_or_else(|| scenes::TEMPLATES.iter().map(|s| s.to_string()).collect());
            Some(ZeroShotSet {
                images: eval_images(&images, t)?,
                labels: Tensor::from_slice(&labels),
                classes: ds.class_names(),
                templates,
                all: Some((Tensor::from_slice(&all_labels), all_names)),
            })
        }
        (None, false) => None,
    };
    let pairs = match (&cfg.eval.pairs, embedded) {
        (Some(path), _) => {
            let files = PairFiles::open(path, &cfg.data.manifest)?;
            let items = (0..files.len()).map(|i| files.get(i)).collect::<ssl_core::Result<Vec<_>>>()?;
            let (images, captions): (Vec<Image>, Vec<String>) = items.into_iter().unzip();
            Some((eval_images(&images, t)?, tok.encode_all(&captions)?))
        }
        (None, true) => {
            let ds = Scenes::new(&cfg.data.scenes, SceneSplit::Test)?;
            let images: Vec<Image> = (0..ds.len()).map(|i| ds.render(i)).collect();
            let captions: Vec<String> = (0..ds.len()).map(|i| ds.caption(i)).collect();
            Some((eval_images(&images, t)?, tok.encode_all(&captions)?))
        }
        (None, false) => None,
    };
    Ok(EvalSets { zero_shot, pairs })
}

/// Zero-shot and retrieval scores of `model`, keyed as `summary.json`'s `eval` (with `prefix`
/// before each key: `""` or `"random_init_"`).
fn scores(
    model: &Clip,
    tok: &CaptionTokenizer,
    sets: &EvalSets,
    batch: i64,
    prefix: &str,
) -> Result<serde_json::Value> {
    let mut out = serde_json::Map::new();
    let mut put = |k: &str, v: serde_json::Value| {
        out.insert(format!("{prefix}{k}"), v);
    };
    if let Some(z) = &sets.zero_shot {
        let img = image_embeddings(model, &z.images, batch)?;
        let w = zero_shot_weights(model, tok, &z.classes, &z.templates)?;
        let r: ZeroShot = zero_shot(&img, &w, &z.labels)?;
        put("zero_shot_acc", r.top1.into());
        put("zero_shot_top5_acc", r.top5.into());
        put("zero_shot_chance", r.chance.into());
        put("zero_shot_classes", r.num_classes.into());
        if let Some((labels, names)) = &z.all {
            let w = zero_shot_weights(model, tok, names, &z.templates)?;
            let r = zero_shot(&img, &w, labels)?;
            put("zero_shot_all_combinations_acc", r.top1.into());
            put("zero_shot_all_combinations_chance", r.chance.into());
        }
    }
    if let Some((images, tokens)) = &sets.pairs {
        let i = image_embeddings(model, images, batch)?;
        let t = text_embeddings(model, tokens, batch)?;
        let r = retrieval(&i, &t)?;
        for k in [1, 5, 10] {
            put(&format!("i2t_recall_at_{k}"), r.i2t_recall_at(k).into());
            put(&format!("t2i_recall_at_{k}"), r.t2i_recall_at(k).into());
        }
        put("i2t_median_rank", r.i2t_median_rank().into());
        put("t2i_median_rank", r.t2i_median_rank().into());
        put("recall_at_5_chance", r.chance_at(5).into());
        put("retrieval_pairs", r.i2t_ranks.len().into());
    }
    Ok(serde_json::Value::Object(out))
}

/// The trained model's scores, then the untrained model's beside them.
fn evaluation(
    cfg: &RunConfig,
    model: &Clip,
    tok: &CaptionTokenizer,
    sets: &EvalSets,
    device: Device,
) -> Result<serde_json::Value> {
    let batch = cfg.eval.batch_size as i64;
    let mut eval = scores(model, tok, sets, batch, "")?;
    let untrained = build(cfg, tok, device)?;
    if let (Some(e), serde_json::Value::Object(r)) =
        (eval.as_object_mut(), scores(&untrained, tok, sets, batch, "random_init_")?)
    {
        for (k, v) in r {
            if !k.contains("chance") && !k.contains("classes") && !k.contains("retrieval_pairs") {
                e.insert(k, v);
            }
        }
    }
    eval["logit_scale"] = model.logit_scale().exp().into();
    Ok(eval)
}

pub fn pretrain(args: &PretrainArgs) -> Result<()> {
    let mut cfg = resolve_config(args)?;
    let device = run::resolve_device(None, cfg.train.device)?;
    let pairs = training_pairs(&cfg.data)?;
    if pairs.len() < cfg.data.batch_size {
        bail!(
            "the data gives {} pairs, fewer than one batch of {}: lower data.batch_size",
            pairs.len(),
            cfg.data.batch_size
        );
    }
    let tok =
        CaptionTokenizer::new(tokenizer_for(&cfg.data, &pairs)?, cfg.model.text.context_length as usize)?;
    let loader_cfg =
        LoaderConfig { batch_size: cfg.data.batch_size, drop_last: true, prefetch: 2, seed: cfg.train.seed };
    let loader = DataLoader::new(
        pairs,
        PairBatches::new(tok.clone(), cfg.data.transform)?,
        RandomSampler::new(cfg.train.seed),
        loader_cfg,
    )?;
    let user_data = cfg.data.path.is_some();
    run::resolve_steps(args, &mut cfg.train, loader.batches_per_epoch(), user_data, 32, 10)?;
    let sets = if args.no_eval { None } else { Some(eval_sets(&cfg, &tok)?) };
    let mut model = build(&cfg, &tok, device)?;
    run::init_weights(args, Clip::NAME, model.var_store())?;
    let dir = run::prepare_run_dir(args)?;
    let tok_path = std::fs::canonicalize(&dir)?.join("tokenizer.json");
    tok.tokenizer().save(&tok_path)?;
    cfg.data.tokenizer = Some(tok_path);
    run::write_config(&dir, &cfg)?;
    eprintln!(
        "training `clip` for {} steps of {} pairs ({} training pairs, vocabulary {}) on {device:?}; run directory {}",
        cfg.train.steps,
        cfg.data.batch_size,
        loader.dataset().len(),
        tok.tokenizer().vocab_size(),
        dir.display()
    );
    let report = run::trainer(args, cfg.train.clone(), &dir)?
        .config_snapshot(serde_json::to_value(&cfg)?)
        .fit(&mut model, &loader)
        .context("training failed")?;
    if run::secondary_rank() {
        return Ok(());
    }
    let skipped = match loader.dataset() {
        Pairs::Files(f) => f.skipped().len(),
        Pairs::Scenes(_) => 0,
    };
    let mut summary = run::training_summary(&dir, Clip::NAME, &report)?;
    summary["training_pairs"] = serde_json::json!(loader.dataset().len());
    summary["skipped_pairs"] = serde_json::json!(skipped);
    if let Some(sets) = &sets {
        if sets.zero_shot.is_none() && sets.pairs.is_none() {
            eprintln!("nothing to evaluate on: pass --zero-shot DIR and/or --pairs FILE");
        } else {
            summary["eval"] = evaluation(&cfg, &model, &tok, sets, device)?;
        }
    }
    run::write_summary(&dir, &summary)?;
    print_table(&summary);
    eprintln!("summary: {}", dir.join("summary.json").display());
    Ok(())
}

fn print_table(summary: &serde_json::Value) {
    let e = &summary["eval"];
    let num = |k: &str| e[k].as_f64().map_or("-".to_string(), |x| format!("{x:.3}"));
    println!(
        "{:<14} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "clip", "zero-shot", "(chance)", "i2t R@5", "t2i R@5", "(chance)", "i2t R@1"
    );
    for (name, prefix) in [("trained", ""), ("random-init", "random_init_")] {
        println!(
            "{:<14} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            name,
            num(&format!("{prefix}zero_shot_acc")),
            num("zero_shot_chance"),
            num(&format!("{prefix}i2t_recall_at_5")),
            num(&format!("{prefix}t2i_recall_at_5")),
            num("recall_at_5_chance"),
            num(&format!("{prefix}i2t_recall_at_1")),
        );
    }
}

/// The run config, model and tokenizer of a checkpoint.
fn restore(
    ck: &LoadedCheckpoint,
    device: Option<&str>,
) -> Result<(RunConfig, Clip, CaptionTokenizer, Device)> {
    let cfg: RunConfig = serde_json::from_value(ck.meta.config.clone()).with_context(|| {
        format!("checkpoint {}: its stored config is not a `clip` run config", ck.path.display())
    })?;
    let device = run::resolve_device(device, cfg.train.device)?;
    let Some(tok_path) = &cfg.data.tokenizer else {
        bail!("checkpoint {}: its config names no tokenizer", ck.path.display());
    };
    let tok = TextTokenizer::load(tok_path)
        .with_context(|| format!("the tokenizer of checkpoint {}", ck.path.display()))?;
    let tok = CaptionTokenizer::new(tok, cfg.model.text.context_length as usize)?;
    let model = build(&cfg, &tok, device)?;
    checkpoint::restore_variables(model.var_store(), &ck.model, &ck.path.join("model.safetensors"))?;
    Ok((cfg, model, tok, device))
}

/// `ssl evaluate` on a `clip` checkpoint: zero-shot and retrieval, as JSON on stdout.
pub fn evaluate(ck: LoadedCheckpoint, args: &crate::EvaluateArgs) -> Result<()> {
    let (mut cfg, model, tok, device) = restore(&ck, args.run.device.as_deref())?;
    if args.run.probe_train.is_some() {
        bail!("clip is scored zero-shot: pass --zero-shot DIR (a labelled image folder) and/or --pairs FILE, not --probe-train/--probe-test");
    }
    apply_eval_flags(&mut cfg.eval, &args.clip)?;
    let sets = eval_sets(&cfg, &tok)?;
    if sets.zero_shot.is_none() && sets.pairs.is_none() {
        bail!("nothing to evaluate on: pass --zero-shot DIR and/or --pairs FILE");
    }
    let mut report = evaluation(&cfg, &model, &tok, &sets, device)?;
    if let Some(rows) = label_efficiency(&args.budget, &ck, &cfg, &model, &tok, &sets, device)? {
        report["label_efficiency"] = rows;
    }
    let out = serde_json::json!({ "checkpoint": ck.path, "step": ck.meta.step, "eval": report });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// `--label-budget` on CLIP: few-shot linear probes of the image tower (the representation
/// before the projection, as in CLIP's linear-probe evaluation) on the zero-shot classes (the
/// embedded held-out colour-shape combinations, or `--zero-shot DIR`). Their images are split
/// in half per class with a fixed seed: one half is the labelled pool the budgets draw from,
/// the other the test split. Beside it, the untrained image tower and the raw pixels.
fn label_efficiency(
    args: &crate::LabelBudgetArgs,
    ck: &LoadedCheckpoint,
    cfg: &RunConfig,
    model: &Clip,
    tok: &CaptionTokenizer,
    sets: &EvalSets,
    device: Device,
) -> Result<Option<serde_json::Value>> {
    use ssl_core::eval::label_efficiency::{stratified_subset, LabelBudget};
    if args.label_budget.is_none() {
        return Ok(None);
    }
    let Some(zs) = &sets.zero_shot else {
        bail!("--label-budget on clip probes the zero-shot classes: pass --zero-shot DIR (a labelled image folder)");
    };
    let labels = Vec::<i64>::try_from(&zs.labels)?;
    let pool = stratified_subset(&labels, LabelBudget::Percent(50.0), 0x5eed);
    let in_pool: std::collections::HashSet<usize> = pool.iter().copied().collect();
    let held: Vec<i64> = (0..labels.len()).filter(|i| !in_pool.contains(i)).map(|i| i as i64).collect();
    let pool: Vec<i64> = pool.into_iter().map(|i| i as i64).collect();
    if held.is_empty() {
        bail!("--label-budget: the zero-shot set needs at least 2 images of a class to split into train and test");
    }
    let (pool, held) = (Tensor::from_slice(&pool), Tensor::from_slice(&held));
    let (tx, ty) = (zs.images.index_select(0, &pool), zs.labels.index_select(0, &pool));
    let (vx, vy) = (zs.images.index_select(0, &held), zs.labels.index_select(0, &held));
    eprintln!(
        "label efficiency: {} labelled / {} test images of the {} zero-shot classes",
        ty.size()[0],
        vy.size()[0],
        zs.classes.len()
    );
    let untrained = build(cfg, tok, device)?;
    let inputs = run::LabelInputs {
        trained: run::Tunable { encoder: model.encoder(), vars: model.var_store() },
        untrained: run::Tunable { encoder: untrained.encoder(), vars: untrained.var_store() },
        train: (&tx, &ty),
        test: (&vx, &vy),
        raw: ("raw_input", tx.flatten(1, -1), vx.flatten(1, -1)),
        finetune: ssl_core::eval::FinetuneConfig::default(),
    };
    let eval = ssl_core::eval::EvalConfig { batch_size: cfg.eval.batch_size, ..Default::default() };
    run::label_efficiency(args, &ck.path, inputs, &eval, device)
}

/// `ssl embed` on a `clip` checkpoint: a folder of images, or a text file (one text per line),
/// or by default the embedded zero-shot images; normalised embeddings in the shared space.
pub fn embed(ck: LoadedCheckpoint, device: Option<&str>, data: Option<&Path>, output: &Path) -> Result<()> {
    let (cfg, model, tok, _) = restore(&ck, device)?;
    let batch = cfg.eval.batch_size as i64;
    let (z, labels, names) = match data {
        Some(path) if path.is_file() => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {} as UTF-8 text", path.display()))?;
            let lines: Vec<String> =
                text.lines().filter(|l| !l.trim().is_empty()).map(String::from).collect();
            if lines.is_empty() {
                bail!("{}: no texts to embed (one per line)", path.display());
            }
            let z = text_embeddings(&model, &tok.encode_all(&lines)?, batch)?;
            (z, vec![-1i64; lines.len()], lines)
        }
        Some(dir) => {
            let files = ImageFiles::unlabelled(dir, &FolderOptions::default())?;
            let images =
                (0..files.len()).map(|i| files.get(i).map(|x| x.0)).collect::<ssl_core::Result<Vec<_>>>()?;
            let z = image_embeddings(&model, &eval_images(&images, &cfg.data.transform)?, batch)?;
            let names = files.files().iter().map(|f| f.0.display().to_string()).collect();
            (z, vec![-1i64; files.len()], names)
        }
        None => {
            let ds = Scenes::new(&cfg.data.scenes, SceneSplit::ZeroShot)?;
            let images: Vec<Image> = (0..ds.len()).map(|i| ds.render(i)).collect();
            let scenes: Vec<_> = (0..ds.len()).map(|i| ds.scene(i)).collect();
            let labels: Vec<i64> = scenes.iter().map(|s| s.1).collect();
            let z = image_embeddings(&model, &eval_images(&images, &cfg.data.transform)?, batch)?;
            let names = scenes.iter().map(|s| s.0.class_name()).collect();
            (z, labels, names)
        }
    };
    run::write_embeddings(&z.to_kind(Kind::Float), &Tensor::from_slice(&labels), Some(&names), output)
}
