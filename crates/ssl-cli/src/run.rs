//! What every method's command shares: the method table, run directories, config files,
//! `summary.json`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use ssl_vision::autoencoder::Autoencoder;
use ssl_vision::byol::Byol;
use ssl_vision::inpainting::Inpainting;
use ssl_vision::mae::Mae;
use ssl_vision::method::VisionMethod;
use ssl_vision::moco::{MocoV2, MocoV3};
use ssl_vision::rotation::Rotation;
use ssl_vision::simclr::Simclr;
use ssl_vision::supervised::Supervised;

use ssl_audio::cpc::Cpc;
use ssl_audio::wav2vec2::Wav2Vec2;
use ssl_multimodal::clip::Clip;
use ssl_text::bert::Bert;
use ssl_text::gpt::Gpt;

use crate::{audio, text, vision, EmbedArgs, EvaluateArgs, FinetuneArgs, GenerateArgs, PretrainArgs};

/// The methods this build provides, with a line each.
pub const METHODS: &[(&str, &str)] = &[
    (Simclr::NAME, Simclr::ABOUT),
    (MocoV2::NAME, MocoV2::ABOUT),
    (MocoV3::NAME, MocoV3::ABOUT),
    (Byol::NAME, Byol::ABOUT),
    (Mae::NAME, Mae::ABOUT),
    (Inpainting::NAME, Inpainting::ABOUT),
    (Rotation::NAME, Rotation::ABOUT),
    (Autoencoder::NAME, Autoencoder::ABOUT),
    (Supervised::NAME, Supervised::ABOUT),
    (Bert::NAME, Bert::ABOUT),
    (Gpt::NAME, Gpt::ABOUT),
    (Wav2Vec2::NAME, Wav2Vec2::ABOUT),
    (Cpc::NAME, Cpc::ABOUT),
    (Clip::NAME, Clip::ABOUT),
    (
        "synthetic",
        "contrastive (NT-Xent) pretraining of an MLP on synthetic Gaussian clusters; a modality-free check",
    ),
];

fn unknown_method(name: &str) -> anyhow::Error {
    let available: Vec<&str> = METHODS.iter().map(|(n, _)| *n).collect();
    anyhow::anyhow!("unknown method `{name}`; available: {}", available.join(", "))
}

/// Runs `$body` with `$m` the vision method named `$name`, or `$fallback` for any other name.
macro_rules! with_vision_method {
    ($name:expr, $m:ident => $body:expr, _ => $fallback:expr) => {
        match $name {
            n if n == Simclr::NAME => {
                type $m = Simclr;
                $body
            }
            n if n == MocoV2::NAME => {
                type $m = MocoV2;
                $body
            }
            n if n == MocoV3::NAME => {
                type $m = MocoV3;
                $body
            }
            n if n == Byol::NAME => {
                type $m = Byol;
                $body
            }
            n if n == Mae::NAME => {
                type $m = Mae;
                $body
            }
            n if n == Inpainting::NAME => {
                type $m = Inpainting;
                $body
            }
            n if n == Rotation::NAME => {
                type $m = Rotation;
                $body
            }
            n if n == Autoencoder::NAME => {
                type $m = Autoencoder;
                $body
            }
            n if n == Supervised::NAME => {
                type $m = Supervised;
                $body
            }
            _ => $fallback,
        }
    };
}

/// Refuses CLIP's evaluation flags for any other method, rather than ignoring them.
fn check_clip_flags(method: &str, flags: &crate::ClipEvalArgs) -> Result<()> {
    if method != Clip::NAME
        && (flags.zero_shot.is_some() || flags.pairs.is_some() || flags.templates.is_some())
    {
        bail!("--zero-shot, --pairs and --templates score clip models; `{method}` is probed with --probe-train/--probe-test");
    }
    Ok(())
}

pub fn pretrain(args: &PretrainArgs) -> Result<()> {
    check_clip_flags(&args.method, &args.clip)?;
    join_group()?;
    match args.method.as_str() {
        "synthetic" => crate::synthetic::pretrain(args),
        n if n == Bert::NAME => text::pretrain::<Bert>(args),
        n if n == Gpt::NAME => text::pretrain::<Gpt>(args),
        n if n == Wav2Vec2::NAME => audio::pretrain::<Wav2Vec2>(args),
        n if n == Cpc::NAME => audio::pretrain::<Cpc>(args),
        n if n == Clip::NAME => crate::clip::pretrain(args),
        name => with_vision_method!(name, M => vision::pretrain::<M>(args), _ => Err(unknown_method(name))),
    }
}

/// The method a checkpoint was written by.
fn checkpoint_method(path: &Path) -> Result<(ssl_core::checkpoint::LoadedCheckpoint, String)> {
    let ck = ssl_core::checkpoint::load(path)?;
    let method = ck.meta.method.clone();
    Ok((ck, method))
}

pub fn evaluate(args: &EvaluateArgs) -> Result<()> {
    let (ck, method) = checkpoint_method(args.run.checkpoint.path())?;
    check_clip_flags(&method, &args.clip)?;
    if args.budget.label_budget.is_some() && method == "synthetic" {
        bail!("--label-budget probes labelled images, text or audio; `synthetic` checkpoints have no such probe");
    }
    let (train, test) = (args.run.probe_train.as_deref(), args.run.probe_test.as_deref());
    let device = args.run.device.as_deref();
    match method.as_str() {
        "synthetic" => crate::synthetic::evaluate(ck, device),
        n if n == Bert::NAME => text::evaluate::<Bert>(ck, args),
        n if n == Gpt::NAME => text::evaluate::<Gpt>(ck, args),
        n if n == Wav2Vec2::NAME => audio::evaluate::<Wav2Vec2>(ck, args),
        n if n == Cpc::NAME => audio::evaluate::<Cpc>(ck, args),
        n if n == Clip::NAME => crate::clip::evaluate(ck, args),
        name => with_vision_method!(
            name,
            M => vision::evaluate::<M>(ck, device, train, test, &args.budget),
            _ => Err(unknown_method(name))
        ),
    }
}

pub fn finetune(args: &FinetuneArgs) -> Result<()> {
    let (ck, method) = checkpoint_method(args.run.checkpoint.path())?;
    match method.as_str() {
        "synthetic" => {
            bail!(
                "fine-tuning is for the vision and text methods; the synthetic method has no labelled inputs"
            )
        }
        n if n == Bert::NAME => text::finetune::<Bert>(ck, args),
        n if n == Gpt::NAME => text::finetune::<Gpt>(ck, args),
        n if n == Wav2Vec2::NAME => audio::finetune::<Wav2Vec2>(ck, args),
        n if n == Cpc::NAME => audio::finetune::<Cpc>(ck, args),
        n if n == Clip::NAME => {
            bail!("fine-tuning a clip checkpoint is not supported yet; score it with `ssl evaluate --zero-shot DIR`")
        }
        name => {
            with_vision_method!(name, M => vision::finetune::<M>(ck, args), _ => Err(unknown_method(name)))
        }
    }
}

pub fn embed(args: &EmbedArgs) -> Result<()> {
    let (ck, method) = checkpoint_method(args.checkpoint.path())?;
    let (data, device) = (args.data.as_deref(), args.device.as_deref());
    match method.as_str() {
        "synthetic" if args.data.is_some() => {
            bail!("--data: the synthetic method embeds its own held-out split")
        }
        "synthetic" => crate::synthetic::embed(ck, device, &args.output),
        n if n == Bert::NAME => text::embed::<Bert>(ck, device, data, &args.output),
        n if n == Gpt::NAME => text::embed::<Gpt>(ck, device, data, &args.output),
        n if n == Wav2Vec2::NAME => audio::embed::<Wav2Vec2>(ck, device, data, &args.output),
        n if n == Cpc::NAME => audio::embed::<Cpc>(ck, device, data, &args.output),
        n if n == Clip::NAME => crate::clip::embed(ck, device, data, &args.output),
        name => with_vision_method!(
            name,
            M => vision::embed::<M>(ck, device, data, &args.output),
            _ => Err(unknown_method(name))
        ),
    }
}

pub fn generate(args: &GenerateArgs) -> Result<()> {
    let (ck, method) = checkpoint_method(args.checkpoint.path())?;
    if method != Gpt::NAME {
        bail!("checkpoint {} is a `{method}` model; generation needs a `gpt` checkpoint", ck.path.display());
    }
    text::generate_text(ck, args)
}

/// [`config_over_defaults`] for `ssl pretrain`: with `--init-from`, the checkpoint's `model`
/// table (and, when it has one, its `data.tokenizer`) replaces the defaults' before the file is
/// merged, so continued pretraining builds the checkpoint's architecture unless told otherwise.
pub fn run_config<T: Serialize + DeserializeOwned>(
    args: &PretrainArgs,
    defaults: T,
    method: &str,
) -> Result<(T, Option<toml::Value>)> {
    let Some(init) = &args.init_from else {
        return config_over_defaults(args.config.as_deref(), defaults, method);
    };
    let (_, meta) = init_checkpoint(init, method)?;
    let mut value = serde_json::to_value(defaults)?;
    let stored = &meta.config;
    if let Some(model) = stored.get("model") {
        value["model"] = model.clone();
    }
    if let (Some(tok), Some(data)) =
        (stored.get("data").and_then(|d| d.get("tokenizer")), value.get_mut("data"))
    {
        if !tok.is_null() && data.get("tokenizer").is_some() {
            data["tokenizer"] = tok.clone();
        }
    }
    let defaults: T = serde_json::from_value(value).with_context(|| {
        format!("--init-from {}: its stored config does not fit a `{method}` run", init.display())
    })?;
    config_over_defaults(args.config.as_deref(), defaults, method)
}

/// The folder and metadata of the checkpoint `--init-from` names, which must have been written
/// by `method`.
fn init_checkpoint(path: &Path, method: &str) -> Result<(PathBuf, ssl_core::checkpoint::CheckpointMeta)> {
    let (folder, meta) =
        ssl_core::checkpoint::load_meta(path).with_context(|| format!("--init-from {}", path.display()))?;
    if meta.method != method {
        bail!(
            "--init-from {}: the checkpoint was written by `{}`, not `{method}`; continued pretraining needs the same method",
            folder.display(),
            meta.method
        );
    }
    Ok((folder, meta))
}

/// With `--init-from`, copies the checkpoint's weights into `vs` (every name and shape checked
/// first: the first mismatched tensor is named with both shapes, and nothing is copied).
pub fn init_weights(args: &PretrainArgs, method: &str, vs: &ssl_core::tch::nn::VarStore) -> Result<()> {
    let Some(init) = &args.init_from else {
        return Ok(());
    };
    init_checkpoint(init, method)?;
    let ck = ssl_core::checkpoint::load(init).with_context(|| format!("--init-from {}", init.display()))?;
    ssl_core::checkpoint::restore_variables(vs, &ck.model, &ck.path.join("model.safetensors")).with_context(
        || format!("--init-from {}: the architecture does not match this run's model", ck.path.display()),
    )?;
    eprintln!("initialised from {} (step {}); fresh optimiser and schedule", ck.path.display(), ck.meta.step);
    Ok(())
}

/// A run's config: `defaults`, with the TOML file at `path` (if any) merged over them table by
/// table (a file only needs the fields it changes), and the file's own value (to tell what it
/// set). The result's `method` must be `method`; errors name the file and the offending key.
pub fn config_over_defaults<T: Serialize + DeserializeOwned>(
    path: Option<&Path>,
    defaults: T,
    method: &str,
) -> Result<(T, Option<toml::Value>)> {
    let Some(path) = path else {
        return Ok((defaults, None));
    };
    let text = fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
    let mut value = toml::Value::try_from(defaults)?;
    let user: toml::Value =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("invalid config {}: {e}", path.display()))?;
    merge(&mut value, user.clone());
    let found = value.get("method").and_then(|m| m.as_str()).unwrap_or_default().to_string();
    if found != method {
        bail!("config `method = \"{found}\"` does not match the command's method `{method}`");
    }
    let cfg = value.try_into().map_err(|e| anyhow::anyhow!("invalid config {}: {e}", path.display()))?;
    Ok((cfg, Some(user)))
}

/// Overlays `user` on `base`: tables merge key by key, anything else replaces. A table whose
/// `kind` differs from the base's (a tagged choice such as `model.mask`) replaces it whole:
/// the other kind's fields do not apply.
fn merge(base: &mut toml::Value, user: toml::Value) {
    match (base, user) {
        (toml::Value::Table(b), toml::Value::Table(u))
            if u.get("kind").is_none() || u.get("kind") == b.get("kind") =>
        {
            for (k, v) in u {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Reads a TOML config file into `T`; errors name the file and the offending key.
pub fn load_config<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("invalid config {}: {e}", path.display()))
}

/// `runs/<stem>-<unix time>`: the default run directory of a command.
fn default_run_dir(stem: &str) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    PathBuf::from("runs").join(format!("{stem}-{secs}"))
}

/// The run directory of a pretraining run. A new run's directory is removed again when the
/// run fails before it has written anything worth keeping (a checkpoint or `summary.json`):
/// a bad input found in the first batches (a truncated image, say) leaves nothing behind, while a
/// run that fails later keeps its checkpoints to resume from. A resumed run's directory is
/// always kept.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    fresh: bool,
}

impl std::ops::Deref for RunDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for RunDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let has_checkpoint = ssl_core::checkpoint::latest(&self.path).ok().flatten().is_some();
        if self.fresh && !has_checkpoint && !self.path.join("summary.json").exists() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// This process's place in a data-parallel job started by `torchrun` or `ssl launch`.
pub struct Group {
    /// The Gloo process group the trainer averages gradients over.
    pub collective: Arc<ssl_dist::ProcessGroup>,
    /// The rank on this machine: which GPU `--device cuda` means.
    pub local_rank: usize,
}

static GROUP: OnceLock<Option<Group>> = OnceLock::new();

/// Joins the job the launcher's environment describes (`WORLD_SIZE` > 1), once per process;
/// does nothing for a single process.
pub fn join_group() -> Result<()> {
    if GROUP.get().is_some() {
        return Ok(());
    }
    let group = match ssl_dist::GroupConfig::from_env()? {
        Some(cfg) => {
            let pg = ssl_dist::ProcessGroup::connect(&cfg)?;
            if cfg.rank == 0 {
                eprintln!(
                    "data-parallel: {} processes (Gloo), rendezvous at {}:{}; batch sizes are per process",
                    cfg.world_size, cfg.master_addr, cfg.master_port
                );
            }
            Some(Group { collective: Arc::new(pg), local_rank: cfg.local_rank })
        }
        None => None,
    };
    let _ = GROUP.set(group);
    Ok(())
}

/// The data-parallel job this process joined, if any.
pub fn group() -> Option<&'static Group> {
    GROUP.get().and_then(Option::as_ref)
}

/// Whether this process is a rank other than 0 of a data-parallel job: it trains, but writes
/// nothing the user sees (no run directory, summary or evaluation).
pub fn secondary_rank() -> bool {
    group().is_some_and(|g| ssl_core::dist::Collective::rank(g.collective.as_ref()) != 0)
}

/// The run directory to use: `--out`, or `runs/<method>-<unix time>`. A non-empty directory is
/// refused unless the run resumes into it or `--force` is given (then its old outputs go).
pub fn prepare_run_dir(args: &PretrainArgs) -> Result<RunDir> {
    if let Some(g) = group().filter(|_| secondary_rank()) {
        // Ranks other than 0 write nothing of the run's: a scratch folder, removed at exit.
        let rank = ssl_core::dist::Collective::rank(g.collective.as_ref());
        let dir = std::env::temp_dir().join(format!("ssl-rank{rank}-{}", std::process::id()));
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        return Ok(RunDir { path: dir, fresh: true });
    }
    let dir = match (&args.out, &args.resume) {
        (Some(d), _) => d.clone(),
        // Resuming without --out continues in the run directory the checkpoint belongs to.
        (None, Some(resume)) => resume_run_dir(resume)?,
        (None, None) => default_run_dir(&args.method),
    };
    let non_empty = fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(false);
    if non_empty && args.resume.is_none() {
        if !args.force {
            bail!(
                "run directory {} is not empty; pass --resume {0} to continue it, --force to replace it, or another --out",
                dir.display()
            );
        }
        fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("cannot create run directory {}", dir.display()))?;
    Ok(RunDir { path: dir, fresh: args.resume.is_none() })
}

/// The run directory of a `--resume` target: the directory itself, or the run holding a
/// checkpoint folder (`<run>/checkpoints/step-N`).
fn resume_run_dir(resume: &Path) -> Result<PathBuf> {
    let ck = ssl_core::checkpoint::resolve(resume)?;
    if ck.starts_with(resume) && ck != resume {
        return Ok(resume.to_path_buf());
    }
    ck.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .with_context(|| format!("cannot tell the run directory of checkpoint {}", ck.display()))
}

/// Writes `value` as `name` in `dir` atomically (temporary file, fsync, rename).
pub fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    fs::write(&tmp, contents).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot sync {}", tmp.display()))?;
    fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Writes the resolved config as `config.toml`.
pub fn write_config<T: Serialize>(dir: &Path, config: &T) -> Result<()> {
    let text = toml::to_string_pretty(config).context("cannot serialise the resolved config")?;
    write_atomic(dir, "config.toml", text.as_bytes())
}

/// Writes `summary.json`.
pub fn write_summary(dir: &Path, summary: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_vec_pretty(summary).context("cannot serialise the summary")?;
    write_atomic(dir, "summary.json", &text)
}

/// The trainer of `ssl pretrain`: `train` writing into the run directory `dir`, resuming from
/// `--resume`, and with `--tensorboard` also writing TensorBoard event files to
/// `dir/tensorboard/` (a resumed run's new file tells TensorBoard to drop what the interrupted
/// run logged after its checkpoint).
pub fn trainer(
    args: &PretrainArgs,
    train: ssl_core::trainer::TrainConfig,
    dir: &Path,
) -> Result<ssl_core::trainer::Trainer> {
    let collective = group().map(|g| Arc::clone(&g.collective) as Arc<dyn ssl_core::dist::Collective>);
    let mut trainer = ssl_core::trainer::Trainer::new(train)
        .collective(collective)
        .run_dir(dir)
        .resume_from(args.resume.clone())
        .repeat_batch(args.repeat_batch);
    if args.tensorboard {
        let resumed_from = match &args.resume {
            Some(r) => Some(ssl_core::checkpoint::load_meta(r)?.1.step),
            None => None,
        };
        let sink = ssl_core::metrics::TensorBoardSink::create(&dir.join("tensorboard"), resumed_from)?;
        trainer = trainer.sink(Box::new(sink));
    }
    Ok(trainer)
}

/// The keys every pretraining `summary.json` starts with, from the trainer's report:
/// `method`, `steps`, `samples_per_sec`, `final_loss`, `device`, `wall_seconds`,
/// `step_time_median_s`, `step_time_p90_s`, `steady_samples_per_sec` (after the warm-up),
/// `peak_host_memory_bytes` and `parameters` (trainable values); in a data-parallel job also
/// `world_size` and `job_samples_per_sec` (rank 0's rate times the processes). Also draws the run's
/// loss and learning-rate curves from its `metrics.jsonl` into `training_curves.png`.
pub fn training_summary(
    dir: &Path,
    method: &str,
    report: &ssl_core::trainer::TrainReport,
) -> Result<serde_json::Value> {
    // A chart is not worth losing the run's summary and evaluation over.
    if let Err(e) = plot_training_curves(dir) {
        eprintln!("warning: no training_curves.png: {e:#}");
    }
    let mut summary = serde_json::json!({
        "method": method,
        "steps": report.steps,
        "samples_per_sec": report.samples_per_sec,
        "final_loss": report.final_loss,
        "device": report.device,
        "wall_seconds": report.wall_seconds,
        "step_time_median_s": report.step_time.median_s,
        "step_time_p90_s": report.step_time.p90_s,
        "steady_samples_per_sec": report.step_time.samples_per_sec,
        "peak_host_memory_bytes": report.peak_host_memory_bytes,
        "parameters": report.parameters,
    });
    if let Some(g) = group() {
        // The timings above are rank 0's; every rank steps in lock-step with the same batch size.
        let world = ssl_core::dist::Collective::world_size(g.collective.as_ref());
        summary["world_size"] = serde_json::json!(world);
        summary["job_samples_per_sec"] = serde_json::json!(report.samples_per_sec * world as f64);
    }
    Ok(summary)
}

/// Draws `training_curves.png` in a run directory from its `metrics.jsonl`: the loss (log
/// scale when it is positive and spans more than a factor of 10) above the learning rate,
/// both against the step. Nothing is drawn for a run without records.
pub fn plot_training_curves(dir: &Path) -> Result<()> {
    let path = dir.join("metrics.jsonl");
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let (mut loss, mut lr) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
        let (Some(step), Some(l), Some(r)) = (v["step"].as_f64(), v["loss"].as_f64(), v["lr"].as_f64())
        else {
            bail!("{}:{}: a record needs numeric step, loss and lr", path.display(), i + 1);
        };
        loss.push((step, l));
        lr.push((step, r));
    }
    if loss.is_empty() {
        return Ok(());
    }
    let (lo, hi) = loss.iter().fold((f64::INFINITY, 0f64), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let loss_chart =
        ssl_plot::Chart { log_y: lo > 0.0 && hi / lo > 10.0, ..ssl_plot::Chart::new("loss", "step", "loss") };
    let lr_chart = ssl_plot::Chart::new("learning rate", "step", "lr");
    let (loss, lr) =
        ([ssl_plot::Series::new("training loss", loss)], [ssl_plot::Series::new("learning rate", lr)]);
    ssl_plot::stacked_line_charts(
        &dir.join("training_curves.png"),
        &[(loss_chart, &loss[..]), (lr_chart, &lr[..])],
    )?;
    Ok(())
}

/// Resolves `--device` (or the config's) to a libtorch device.
pub fn resolve_device(
    flag: Option<&str>,
    configured: ssl_core::device::DeviceSpec,
) -> Result<ssl_core::tch::Device> {
    let spec = match flag {
        Some(s) => s.parse()?,
        None => configured,
    };
    // In a data-parallel job, `cuda` means this process's GPU: the LOCAL_RANK-th.
    let spec = match (spec, group()) {
        (ssl_core::device::DeviceSpec::Cuda(None), Some(g)) => {
            ssl_core::device::DeviceSpec::Cuda(Some(g.local_rank))
        }
        (spec, _) => spec,
    };
    Ok(spec.resolve()?)
}

/// Applies the flags every method shares to its trainer config: `--lr`, `--device`,
/// `--deterministic`, `--sync-batchnorm`, `--steps` (warm-up capped at the step count).
pub fn apply_train_flags(args: &PretrainArgs, train: &mut ssl_core::trainer::TrainConfig) -> Result<()> {
    if let Some(lr) = args.lr {
        train.optimizer.lr = lr;
    }
    if let Some(d) = &args.device {
        train.device = d.parse()?;
    }
    train.deterministic |= args.deterministic;
    train.sync_batchnorm |= args.sync_batchnorm;
    if let Some(steps) = args.steps {
        train.steps = steps;
    }
    train.schedule.warmup_steps = train.schedule.warmup_steps.min(train.steps);
    Ok(())
}

/// Sets the step count from `--epochs`, or, on the user's own data with neither `--steps`,
/// `--epochs` nor a config file, to the method's `default_epochs` with a warm-up of
/// `warmup_percent` of the steps; then checks the trainer config.
pub fn resolve_steps(
    args: &PretrainArgs,
    train: &mut ssl_core::trainer::TrainConfig,
    batches_per_epoch: u64,
    user_data: bool,
    default_epochs: u64,
    warmup_percent: u64,
) -> Result<()> {
    match (args.steps, args.epochs) {
        (None, Some(epochs)) => train.steps = epochs * batches_per_epoch,
        (None, None) if user_data && args.config.is_none() => {
            train.steps = default_epochs * batches_per_epoch;
            train.schedule.warmup_steps = train.steps * warmup_percent / 100;
        }
        _ => {}
    }
    train.validate()?;
    Ok(())
}

/// An encoder and the store holding its variables, so that it can be fine-tuned (and put
/// back as it was).
#[derive(Clone, Copy)]
pub struct Tunable<'a> {
    /// The encoder.
    pub encoder: &'a dyn ssl_core::Encoder,
    /// Its variables (the whole model's store is fine: only the encoder's get gradients).
    pub vars: &'a ssl_core::tch::nn::VarStore,
}

/// What a label-efficiency curve probes: the trained and the untrained encoder on the
/// labelled inputs, and the modality's raw features (`(name, train [N, D], test [M, D])`).
pub struct LabelInputs<'a> {
    /// The pretrained encoder.
    pub trained: Tunable<'a>,
    /// The same encoder untrained.
    pub untrained: Tunable<'a>,
    /// Labelled training inputs and labels.
    pub train: (&'a ssl_core::tch::Tensor, &'a ssl_core::tch::Tensor),
    /// Labelled test inputs and labels.
    pub test: (&'a ssl_core::tch::Tensor, &'a ssl_core::tch::Tensor),
    /// The raw-feature baseline.
    pub raw: (&'a str, ssl_core::tch::Tensor, ssl_core::tch::Tensor),
    /// How `--finetune` fine-tunes (its `train_subset` is ignored: the budget is the subset).
    pub finetune: ssl_core::eval::FinetuneConfig,
}

/// Fine-tunes `model` on every labelled subset of the curve, putting its variables back after
/// each run; subset `s` fine-tunes with seed `ft.seed + s`.
fn finetune_curve(
    model: Tunable<'_>,
    inputs: &LabelInputs<'_>,
    budgets: &[ssl_core::eval::label_efficiency::LabelBudget],
    seeds: usize,
    device: ssl_core::tch::Device,
) -> Result<Vec<ssl_core::eval::label_efficiency::BudgetResult>> {
    use ssl_core::checkpoint::{named_variables, restore_variables};
    let ((tx, ty), (vx, vy)) = (inputs.train, inputs.test);
    let snapshot: std::collections::HashMap<String, ssl_core::tch::Tensor> =
        named_variables(model.vars).into_iter().map(|(n, t)| (n, t.copy())).collect();
    let curve = ssl_core::eval::label_efficiency::label_curve_with(ty, budgets, seeds, |idx, seed| {
        let x = tx.index_select(0, &idx.to_device(tx.device()));
        let y = ty.index_select(0, &idx.to_device(ty.device()));
        let cfg = ssl_core::eval::FinetuneConfig {
            seed: inputs.finetune.seed.wrapping_add(seed),
            train_subset: 0,
            ..inputs.finetune.clone()
        };
        let tuned = ssl_core::eval::finetune(model.encoder, model.vars, &x, &y, vx, vy, &cfg, device);
        restore_variables(model.vars, &snapshot, Path::new("the encoder before fine-tuning"))?;
        Ok(tuned?.top1)
    });
    Ok(curve?)
}

/// `--label-budget`: linear probes on stratified subsets of the train split for the trained
/// encoder's features, the untrained encoder's and the raw ones (and with `--finetune`, both
/// encoders fine-tuned on each subset), as `eval.label_efficiency` rows (`budget`,
/// `labels_per_class`, `seeds`, `mean_acc`, `std_acc`, `accs` of the pretrained encoder's
/// probe; `finetune`: the pretrained encoder fine-tuned; `baseline`: each other curve's
/// `mean_acc` and `std_acc`), with a table on stderr and a PNG plot (accuracy against labels
/// per class, log x axis, one line per curve) written as `label_efficiency.png` in the run
/// directory of `checkpoint`. `None` without the flag.
pub fn label_efficiency(
    args: &crate::LabelBudgetArgs,
    checkpoint: &Path,
    inputs: LabelInputs<'_>,
    eval: &ssl_core::eval::EvalConfig,
    device: ssl_core::tch::Device,
) -> Result<Option<serde_json::Value>> {
    use ssl_core::eval::label_efficiency::{label_curve, parse_budgets, LabelCurveConfig};
    let Some(list) = &args.label_budget else {
        return Ok(None);
    };
    if args.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    if args.finetune {
        inputs.finetune.validate()?;
    }
    let cfg = LabelCurveConfig {
        budgets: parse_budgets(list)?,
        seeds: args.seeds,
        probe: eval.linear_probe.clone(),
    };
    let budgets = &cfg.budgets;
    let ((tx, train_y), (vx, test_y)) = (inputs.train, inputs.test);
    let feats = |e: &dyn ssl_core::Encoder| -> Result<(ssl_core::tch::Tensor, ssl_core::tch::Tensor)> {
        let bs = eval.batch_size;
        Ok((
            ssl_core::eval::extract_features(e, tx, bs, device)?,
            ssl_core::eval::extract_features(e, vx, bs, device)?,
        ))
    };
    let (ours, random) = (feats(inputs.trained.encoder)?, feats(inputs.untrained.encoder)?);
    let (raw_name, raw_train, raw_test) =
        (inputs.raw.0, inputs.raw.1.shallow_clone(), inputs.raw.2.shallow_clone());
    let features = [
        ("pretrained", ours.0, ours.1),
        ("random_init", random.0, random.1),
        (raw_name, raw_train, raw_test),
    ];
    let mut curves = Vec::with_capacity(features.len() + 2);
    for (name, train, test) in &features {
        eprintln!(
            "label efficiency: probing {name} features at {} budgets x {} seeds",
            budgets.len(),
            args.seeds
        );
        curves.push((name.to_string(), label_curve(train, train_y, test, test_y, &cfg, device)?));
    }
    if args.finetune {
        for (name, model) in
            [("pretrained_finetune", inputs.trained), ("random_init_finetune", inputs.untrained)]
        {
            eprintln!(
                "label efficiency: fine-tuning the {} encoder at {} budgets x {} seeds ({} epochs each)",
                name.trim_end_matches("_finetune"),
                budgets.len(),
                args.seeds,
                inputs.finetune.epochs
            );
            curves.push((name.to_string(), finetune_curve(model, &inputs, budgets, args.seeds, device)?));
        }
    }
    let mut rows = Vec::with_capacity(budgets.len());
    let header: Vec<String> = curves.iter().map(|c| format!("{:>20}", c.0)).collect();
    eprintln!("{:>8} {:>12} {}", "budget", "labels/class", header.join(" "));
    for (i, own) in curves[0].1.iter().enumerate() {
        let mut row = serde_json::to_value(own)?;
        let mut baseline = serde_json::Map::new();
        for (name, curve) in curves.iter().skip(1) {
            let r = &curve[i];
            if name == "pretrained_finetune" {
                row["finetune"] =
                    serde_json::json!({ "mean_acc": r.mean_acc, "std_acc": r.std_acc, "accs": r.accs });
            } else {
                baseline.insert(
                    name.clone(),
                    serde_json::json!({ "mean_acc": r.mean_acc, "std_acc": r.std_acc }),
                );
            }
        }
        row["baseline"] = serde_json::Value::Object(baseline);
        rows.push(row);
        let cells: Vec<String> =
            curves.iter().map(|c| format!("{:>12.3} ± {:.3}", c.1[i].mean_acc, c.1[i].std_acc)).collect();
        eprintln!("{:>8} {:>12.1} {}", own.budget, own.labels_per_class, cells.join(" "));
    }
    let series: Vec<ssl_plot::Series> = curves
        .iter()
        .map(|(name, c)| {
            ssl_plot::Series::new(name.clone(), c.iter().map(|r| (r.labels_per_class, r.mean_acc)).collect())
                .with_errors(c.iter().map(|r| r.std_acc).collect())
        })
        .collect();
    let chart = ssl_plot::Chart {
        log_x: true,
        y_range: Some((0.0, 1.0)),
        ..ssl_plot::Chart::new(
            "label efficiency",
            "labelled examples per class",
            if args.finetune {
                "test accuracy (linear probe, fine-tuned)"
            } else {
                "test accuracy (linear probe)"
            },
        )
    };
    let png = run_dir_of(checkpoint).join("label_efficiency.png");
    ssl_plot::line_chart(&png, &chart, &series)?;
    eprintln!("label-efficiency plot: {}", png.display());
    Ok(Some(serde_json::Value::Array(rows)))
}

/// The run directory a checkpoint folder belongs to (`<run>/checkpoints/step-N`), or the
/// folder itself for a checkpoint kept elsewhere.
pub fn run_dir_of(checkpoint: &Path) -> PathBuf {
    match checkpoint.parent() {
        Some(p) if p.file_name().is_some_and(|n| n == "checkpoints") => {
            p.parent().map_or_else(|| checkpoint.to_path_buf(), Path::to_path_buf)
        }
        _ => checkpoint.to_path_buf(),
    }
}

/// The `eval` object of `summary.json`: the trained encoder's probes, the untrained encoder's
/// and, when given, a baseline's (`(name, probes)`: `raw_input` pixels, `logmel` features) under
/// `<name>_linear_probe_acc` / `<name>_knn_acc`, with the trained encoder's full reports.
pub fn eval_summary(
    ours: &ssl_core::eval::ProbeSummary,
    random: &ssl_core::eval::ProbeSummary,
    baseline: Option<(&str, &ssl_core::eval::ProbeSummary)>,
) -> serde_json::Value {
    let mut summary = serde_json::json!({
        "linear_probe_acc": ours.linear_probe_acc,
        "knn_acc": ours.knn_acc,
        "random_init_linear_probe_acc": random.linear_probe_acc,
        "random_init_knn_acc": random.knn_acc,
        "linear_probe": ours.linear_probe,
        "knn": ours.knn,
    });
    if let Some((name, b)) = baseline {
        summary[format!("{name}_linear_probe_acc")] = b.linear_probe_acc.into();
        summary[format!("{name}_knn_acc")] = b.knn_acc.into();
    }
    summary
}

/// `ssl finetune`'s flags over a run's fine-tuning config, validated.
pub fn apply_finetune_flags(ft: &mut ssl_core::eval::FinetuneConfig, args: &FinetuneArgs) -> Result<()> {
    ft.epochs = args.epochs.unwrap_or(ft.epochs);
    ft.lr = args.lr.unwrap_or(ft.lr);
    ft.layer_decay = args.layer_decay.unwrap_or(ft.layer_decay);
    ft.head_lr_scale = args.head_lr_scale.unwrap_or(ft.head_lr_scale);
    ft.batch_size = args.batch_size.unwrap_or(ft.batch_size);
    ft.train_subset = args.train_subset.unwrap_or(ft.train_subset);
    ft.freeze_epochs = args.freeze_epochs.unwrap_or(ft.freeze_epochs);
    ft.weight_decay = args.weight_decay.unwrap_or(ft.weight_decay);
    ft.warmup_fraction = args.warmup_fraction.unwrap_or(ft.warmup_fraction);
    Ok(ft.validate()?)
}

/// What `ssl finetune` fine-tunes: the checkpoint, the config, the flags, a description of the
/// labelled inputs and the class names (label `i` is `classes[i]`).
pub struct FinetuneJob<'a> {
    /// The pretrained checkpoint.
    pub ck: &'a ssl_core::checkpoint::LoadedCheckpoint,
    /// The resolved fine-tuning config.
    pub ft: &'a ssl_core::eval::FinetuneConfig,
    /// The command's flags.
    pub args: &'a FinetuneArgs,
    /// What is fine-tuned on, for the log (`"500 labelled images"`).
    pub inputs: String,
    /// The class names, by label.
    pub classes: &'a [String],
}

/// The `--out` directory of `ssl finetune`: the flag's, or `runs/METHOD-finetune-UNIXTIME`.
/// A non-empty one is refused unless `--force` is given (it is replaced only once the
/// fine-tuned model is complete).
fn finetune_out_dir(args: &FinetuneArgs, method: &str, checkpoint: &Path) -> Result<PathBuf> {
    let dir = match &args.out {
        Some(d) => d.clone(),
        None => {
            let base = default_run_dir(&format!("{method}-finetune"));
            // Two fine-tunings started in the same second get their own directories.
            (1..)
                .map(|i| if i == 1 { base.clone() } else { PathBuf::from(format!("{}-{i}", base.display())) })
                .find(|d| !d.exists())
                .unwrap_or(base)
        }
    };
    let non_empty = fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(false);
    if non_empty && !args.force {
        bail!("--out {} is not empty; pass --force to replace it, or another --out", dir.display());
    }
    if dir.exists() && !dir.is_dir() {
        bail!("--out {} is a file, not a directory", dir.display());
    }
    // Replacing a directory that holds the working directory or the pretrained checkpoint
    // would destroy what the command reads.
    if dir.exists() {
        let out = dir.canonicalize().with_context(|| format!("cannot resolve --out {}", dir.display()))?;
        let cwd = std::env::current_dir().context("cannot read the working directory")?;
        let source = checkpoint.canonicalize().unwrap_or_else(|_| checkpoint.to_path_buf());
        if cwd.starts_with(&out) || source.starts_with(&out) {
            bail!(
                "--out {} holds the working directory or the checkpoint being fine-tuned; choose another --out",
                dir.display()
            );
        }
    }
    Ok(dir)
}

/// `ssl finetune`: with `--baseline` first `tune` on `untrained()` (the same model freshly
/// initialised), then `tune` on `trained` (the checkpoint's model, changed in place), whose
/// variables are then saved. Saves the fine-tuned model to the `--out` run directory and prints the report
/// as JSON. The directory is written whole or not at all: everything goes to a hidden sibling
/// first, which is renamed into place. It holds
/// - `checkpoints/step-N/`: a checkpoint of the method (the pretrained one's metadata, every
///   variable, the encoder's fine-tuned), which `ssl evaluate` and `ssl embed` read;
/// - `head.safetensors`: the classifier, `weight` `[classes, D]` and `bias` `[classes]`, on
///   the encoder's representation;
/// - `classes.txt`: the class names, one per line, in label order;
/// - `summary.json`: `method`, `checkpoint` (the pretrained one), `eval.finetune_acc` (and
///   `eval.random_init_finetune_acc` with `--baseline`), the full report and the config.
pub fn finetune_report<M: ssl_core::Objective>(
    job: FinetuneJob<'_>,
    trained: &M,
    untrained: impl FnOnce() -> Result<M>,
    tune: impl Fn(&M) -> Result<ssl_core::eval::Finetuned>,
) -> Result<()> {
    let (ck, ft, args) = (job.ck, job.ft, job.args);
    let out = finetune_out_dir(args, &ck.meta.method, &ck.path)?;
    let mut eval = serde_json::json!({});
    if args.baseline {
        eprintln!("fine-tuning the untrained encoder ({} epochs)", ft.epochs);
        eval["random_init_finetune_acc"] = tune(&untrained()?)?.report.top1.into();
    }
    eprintln!("fine-tuning the pretrained encoder on {} ({} epochs)", job.inputs, ft.epochs);
    let ours = tune(trained)?;
    if ours.report.classes as usize != job.classes.len() {
        bail!(
            "the labelled data has {} classes but its labels reach {}",
            job.classes.len(),
            ours.report.classes
        );
    }
    eval["finetune_acc"] = ours.report.top1.into();
    eval["finetune"] = serde_json::to_value(&ours.report)?;
    eval["config"] = serde_json::to_value(ft)?;
    let summary = serde_json::json!({
        "method": ck.meta.method,
        "checkpoint": ck.path,
        "step": ck.meta.step,
        "classes": job.classes,
        "eval": eval,
    });

    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "finetune".into());
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let written = (|| -> Result<()> {
        let vars = ssl_core::checkpoint::named_variables(trained.var_store());
        ssl_core::checkpoint::save(&tmp, &ck.meta, &vars, &[])?;
        let head = ssl_core::checkpoint::named_variables(&ours.head);
        let head: Vec<(String, ssl_core::tch::Tensor)> = head
            .into_iter()
            .map(|(n, t)| {
                (n.trim_start_matches("head.").to_string(), t.to_device(ssl_core::tch::Device::Cpu))
            })
            .collect();
        let head_path = tmp.join("head.safetensors");
        ssl_core::tch::Tensor::write_safetensors(&head, &head_path)
            .with_context(|| format!("cannot write {}", head_path.display()))?;
        let mut classes = job.classes.join("\n");
        classes.push('\n');
        write_atomic(&tmp, "classes.txt", classes.as_bytes())?;
        write_summary(&tmp, &summary)
    })();
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // An old directory (with --force) is replaced only once the new one is complete.
    if let Err(e) = ssl_core::checkpoint::install_dir(&tmp, &out) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e).with_context(|| format!("cannot move the fine-tuned model to {}", out.display()));
    }
    eprintln!("fine-tuned model saved to {}", out.display());
    let mut printed = summary;
    printed["out"] = serde_json::json!(out);
    println!("{}", serde_json::to_string_pretty(&printed)?);
    Ok(())
}

/// Writes `embeddings` `[N, D]` and `labels` `[N]` to `output`: a safetensors file holding
/// both, or, for a `.npy` name, NumPy arrays (`output` the embeddings as float32,
/// `<output>.labels.npy` the labels); temporary files renamed into place. `lines`, one per
/// line, go to `<output>.files.txt`.
pub fn write_embeddings(
    z: &ssl_core::tch::Tensor,
    y: &ssl_core::tch::Tensor,
    lines: Option<&[String]>,
    output: &Path,
) -> Result<()> {
    let dir = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = output.file_name().and_then(|n| n.to_str()).context("--output needs a file name")?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let npy = output.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if npy {
        // NumPy: the embeddings in FILE, the labels beside it in FILE.labels.npy.
        let labels_tmp = dir.join(format!(".{name}.labels.tmp"));
        z.to_kind(ssl_core::tch::Kind::Float)
            .write_npy(&tmp)
            .and_then(|()| y.write_npy(&labels_tmp))
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        let labels = dir.join(format!("{name}.labels.npy"));
        fs::rename(&labels_tmp, &labels).with_context(|| format!("cannot write {}", labels.display()))?;
    } else {
        ssl_core::tch::Tensor::write_safetensors(&[("embeddings", z), ("labels", y)], &tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
    }
    if let Some(lines) = lines {
        write_atomic(dir, &format!("{name}.files.txt"), (lines.join("\n") + "\n").as_bytes())?;
    }
    fs::rename(&tmp, output).with_context(|| format!("cannot write {}", output.display()))?;
    eprintln!("wrote {} embeddings of dimension {} to {}", z.size()[0], z.size()[1], output.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::merge;

    #[test]
    fn merge_overlays_tables_and_replaces_a_table_of_another_kind() {
        let mut base: toml::Value =
            toml::from_str("a = 1\n[t]\nx = 1\ny = 2\n[m]\nkind = \"block\"\nsize = 0.5\n").expect("toml");
        let user: toml::Value =
            toml::from_str("[t]\ny = 3\n[m]\nkind = \"patches\"\nratio = 0.25\n").expect("toml");
        merge(&mut base, user);
        let want: toml::Value =
            toml::from_str("a = 1\n[t]\nx = 1\ny = 3\n[m]\nkind = \"patches\"\nratio = 0.25\n")
                .expect("toml");
        assert_eq!(base, want);
        let same_kind: toml::Value =
            toml::from_str("[m]\nkind = \"patches\"\npatch_size = 4\n").expect("toml");
        merge(&mut base, same_kind);
        assert_eq!(base["m"]["ratio"].as_float(), Some(0.25));
        assert_eq!(base["m"]["patch_size"].as_integer(), Some(4));
    }
}
