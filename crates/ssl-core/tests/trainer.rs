//! Behaviour of the trainer: exact resume, gradient accumulation, non-finite losses, bad inputs.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use ssl_core::checkpoint;
use ssl_core::data::{BatchBuilder, DataLoader, InMemoryDataset, LoaderConfig, RandomSampler};
use ssl_core::metrics::MemorySink;
use ssl_core::optim::{OptimizerConfig, OptimizerKind, ScheduleConfig};
use ssl_core::rng::SslRng;
use ssl_core::synthetic::{self, SyntheticConfig};
use ssl_core::tch::{nn, nn::Module, Device, Kind, Tensor};
use ssl_core::trainer::{TrainConfig, Trainer};
use ssl_core::{Encoder, Error, LossOutput, Objective, Result, StepContext};

/// libtorch's random generator and thread count are process-wide, and tests in one binary run on
/// parallel threads: every test here that initialises or trains a model holds this lock, so no
/// other test reseeds libtorch between a seed and its use.
static TORCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn torch_lock() -> std::sync::MutexGuard<'static, ()> {
    TORCH.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn train_config(steps: u64) -> TrainConfig {
    TrainConfig {
        steps,
        log_every: 1,
        checkpoint_every: 0,
        keep_last: 0,
        progress: false,
        seed: 11,
        deterministic: true,
        schedule: ScheduleConfig { warmup_steps: 2, ..Default::default() },
        ..Default::default()
    }
}

fn variables(o: &impl Objective) -> BTreeMap<String, Vec<u32>> {
    checkpoint::named_variables(o.var_store())
        .into_iter()
        .map(|(n, t)| {
            let v = Vec::<f32>::try_from(t.flatten(0, -1).to_kind(Kind::Float)).unwrap();
            (n, v.into_iter().map(f32::to_bits).collect())
        })
        .collect()
}

/// The synthetic SimCLR task has everything resume can get wrong: BatchNorm statistics, AdamW
/// moments, a warm-up + cosine schedule, seeded augmentations and a shuffled, prefetched loader.
#[test]
fn resume_is_bit_exact_on_cpu() {
    let _torch = torch_lock();
    let cfg = SyntheticConfig::tiny();
    let total = 7;
    let k = 3;

    let (loader, mut straight) = synthetic::setup(&cfg, Device::Cpu).unwrap();
    let straight_sink = MemorySink::default();
    Trainer::new(train_config(total))
        .sink(Box::new(straight_sink.clone()))
        .fit(&mut straight, &loader)
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (loader, mut first) = synthetic::setup(&cfg, Device::Cpu).unwrap();
    let r = Trainer::new(train_config(total))
        .run_dir(dir.path())
        .stop_after(Some(k))
        .fit(&mut first, &loader)
        .unwrap();
    assert_eq!(r.steps, k);
    drop(first);

    // A fresh process would build a freshly initialised model: use another init seed to prove
    // every variable comes from the checkpoint.
    let other_init = SyntheticConfig { seed: 999, ..cfg.clone() };
    let (_, mut resumed) = synthetic::setup(&other_init, Device::Cpu).unwrap();
    let resumed_sink = MemorySink::default();
    let r = Trainer::new(train_config(total))
        .run_dir(dir.path())
        .resume_from(Some(dir.path().to_path_buf()))
        .sink(Box::new(resumed_sink.clone()))
        .fit(&mut resumed, &loader)
        .unwrap();
    assert_eq!(r.resumed_from, Some(k));
    assert_eq!(r.steps, total);

    assert_eq!(variables(&straight), variables(&resumed), "parameters and buffers differ after resume");
    let losses = |s: &MemorySink| s.records().iter().map(|r| (r.step, r.loss.to_bits())).collect::<Vec<_>>();
    assert_eq!(losses(&straight_sink)[k as usize..], losses(&resumed_sink)[..], "losses after resume differ");

    // metrics.jsonl reads as one run: steps 1..=total, each once.
    let steps: Vec<u64> = fs::read_to_string(dir.path().join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=total).collect::<Vec<_>>());
}

/// Linear regression: the loss is a mean over independent samples, so accumulating two
/// half-batches must equal one full batch.
struct Regression {
    vs: nn::VarStore,
    net: nn::Linear,
    nan_at: Option<u64>,
    /// The sum of every batch's inputs, in the order seen.
    seen: Vec<f64>,
}

impl Regression {
    fn new() -> Self {
        ssl_core::tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = nn::linear(vs.root() / "net", 4, 1, Default::default());
        Self { vs, net, nan_at: None, seen: Vec::new() }
    }
}

impl Encoder for Regression {
    fn output_dim(&self) -> i64 {
        1
    }
    fn encode(&self, input: &Tensor, _train: bool) -> Tensor {
        self.net.forward(input)
    }
}

impl Objective for Regression {
    type Batch = (Tensor, Tensor);
    fn name(&self) -> &str {
        "regression"
    }
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
    fn forward(&mut self, (x, y): &(Tensor, Tensor), ctx: &StepContext) -> Result<LossOutput> {
        self.seen.push(x.sum(Kind::Double).double_value(&[]));
        let loss = (self.net.forward(x).squeeze_dim(1) - y).square().mean(Kind::Float);
        if self.nan_at == Some(ctx.step) {
            return Ok(LossOutput::new(loss * f64::NAN));
        }
        Ok(LossOutput::new(loss))
    }
    fn encoder(&self) -> &dyn Encoder {
        self
    }
}

struct Rows;
impl BatchBuilder<(Vec<f32>, f32)> for Rows {
    type Sample = (Vec<f32>, f32);
    type Batch = (Tensor, Tensor);
    fn prepare(&self, item: (Vec<f32>, f32), _rng: &mut SslRng) -> Result<Self::Sample> {
        Ok(item)
    }
    fn collate(&self, s: Vec<Self::Sample>) -> Result<Self::Batch> {
        let x: Vec<f32> = s.iter().flat_map(|(x, _)| x.iter().copied()).collect();
        let y: Vec<f32> = s.iter().map(|(_, y)| *y).collect();
        Ok((Tensor::from_slice(&x).view([-1, 4]), Tensor::from_slice(&y)))
    }
}

fn regression_loader(batch_size: usize) -> DataLoader<InMemoryDataset<(Vec<f32>, f32)>, Rows, RandomSampler> {
    let items = (0..32)
        .map(|i| {
            let x: Vec<f32> = (0..4).map(|j| ((i * 7 + j * 3) % 11) as f32 / 11.0 - 0.5).collect();
            let y = x.iter().enumerate().map(|(j, v)| v * j as f32).sum::<f32>() + 0.1;
            (x, y)
        })
        .collect();
    let ds = InMemoryDataset::new("regression", items).unwrap();
    let cfg = LoaderConfig { batch_size, drop_last: true, prefetch: 1, seed: 0 };
    DataLoader::new(ds, Rows, RandomSampler::new(4), cfg).unwrap()
}

#[test]
fn repeat_batch_trains_on_the_first_batch_only() {
    let _torch = torch_lock();
    let mut normal = Regression::new();
    let report = Trainer::new(train_config(4)).fit(&mut normal, &regression_loader(4)).unwrap();
    assert_eq!(report.parameters, 5, "4 weights and a bias");
    assert!(normal.seen.windows(2).any(|w| w[0] != w[1]), "{:?}", normal.seen);

    let mut repeated = Regression::new();
    Trainer::new(train_config(4)).repeat_batch(true).fit(&mut repeated, &regression_loader(4)).unwrap();
    assert_eq!(repeated.seen.len(), 4);
    assert!(repeated.seen.iter().all(|&s| s == normal.seen[0]), "{:?} vs {:?}", repeated.seen, normal.seen);
}

#[test]
fn gradient_accumulation_equals_the_large_batch() {
    let _torch = torch_lock();
    for name in [OptimizerKind::Sgd, OptimizerKind::Adamw] {
        let optimizer = OptimizerConfig { name, lr: 0.05, weight_decay: 0.01, ..Default::default() };
        let mut big = Regression::new();
        let cfg = TrainConfig { optimizer: optimizer.clone(), ..train_config(5) };
        Trainer::new(cfg.clone()).fit(&mut big, &regression_loader(8)).unwrap();

        let mut accumulated = Regression::new();
        let cfg = TrainConfig { accumulation_steps: 2, ..cfg };
        Trainer::new(cfg).fit(&mut accumulated, &regression_loader(4)).unwrap();

        for ((n, a), (_, b)) in checkpoint::named_variables(&big.vs)
            .iter()
            .zip(checkpoint::named_variables(&accumulated.vs).iter())
        {
            let diff = (a - b).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "{name:?}: `{n}` differs by {diff}");
        }
        // And accumulation is not a no-op: one micro-batch alone differs.
        let mut small = Regression::new();
        Trainer::new(TrainConfig { optimizer, ..train_config(5) })
            .fit(&mut small, &regression_loader(4))
            .unwrap();
        let w = |o: &Regression| o.vs.variables()["net.weight"].copy();
        assert!((w(&big) - w(&small)).abs().max().double_value(&[]) > 1e-6);
    }
}

fn file_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().to_string_lossy().into(), fs::read(e.path()).unwrap()))
        .collect()
}

#[test]
fn a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint() {
    let _torch = torch_lock();
    let dir = tempfile::tempdir().unwrap();
    let mut model = Regression::new();
    model.nan_at = Some(3);
    let cfg = TrainConfig { checkpoint_every: 1, keep_last: 2, ..train_config(6) };
    let before_nan = {
        let mut probe = Regression::new();
        Trainer::new(cfg.clone())
            .run_dir(dir.path())
            .stop_after(Some(3))
            .fit(&mut probe, &regression_loader(8))
            .unwrap();
        file_bytes(&checkpoint::latest(dir.path()).unwrap().unwrap())
    };
    let err = Trainer::new(cfg)
        .run_dir(dir.path())
        .resume_from(Some(dir.path().into()))
        .fit(&mut model, &regression_loader(8))
        .unwrap_err();
    assert!(matches!(err, Error::NonFiniteLoss { step: 3, .. }), "{err}");
    assert!(err.to_string().contains("step 3"));
    let latest = checkpoint::latest(dir.path()).unwrap().unwrap();
    assert!(latest.ends_with("step-00000003"), "{}", latest.display());
    assert_eq!(file_bytes(&latest), before_nan, "the last good checkpoint was modified");
}

#[test]
fn resuming_into_another_model_or_method_is_a_clear_error() {
    let _torch = torch_lock();
    let dir = tempfile::tempdir().unwrap();
    let cfg = SyntheticConfig::tiny();
    let (loader, mut a) = synthetic::setup(&cfg, Device::Cpu).unwrap();
    Trainer::new(train_config(2)).run_dir(dir.path()).fit(&mut a, &loader).unwrap();

    let wider = SyntheticConfig { repr_dim: 32, ..cfg };
    let (loader, mut b) = synthetic::setup(&wider, Device::Cpu).unwrap();
    let err = Trainer::new(train_config(4))
        .resume_from(Some(dir.path().into()))
        .fit(&mut b, &loader)
        .unwrap_err()
        .to_string();
    assert!(err.contains("shape mismatch") && err.contains("model.safetensors"), "{err}");

    let mut r = Regression::new();
    let err = Trainer::new(train_config(4))
        .resume_from(Some(dir.path().into()))
        .fit(&mut r, &regression_loader(8))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`synthetic`") && err.contains("`regression`"), "{err}");

    let err = Trainer::new(train_config(4))
        .resume_from(Some(dir.path().join("missing")))
        .fit(&mut r, &regression_loader(8))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing") && err.contains("does not exist"), "{err}");
}

#[test]
fn config_errors_name_the_field() {
    let _torch = torch_lock();
    let err = toml::from_str::<TrainConfig>("steps = 10\nlr = 0.1").unwrap_err().to_string();
    assert!(err.contains("lr"), "{err}");
    let err = toml::from_str::<TrainConfig>("steps = \"ten\"").unwrap_err().to_string();
    assert!(err.contains("steps"), "{err}");
    let err = toml::from_str::<TrainConfig>("[optimizer]\nname = \"adam\"").unwrap_err().to_string();
    assert!(err.contains("adam"), "{err}");
    let mut r = Regression::new();
    let err = Trainer::new(TrainConfig { accumulation_steps: 0, ..train_config(2) })
        .fit(&mut r, &regression_loader(8))
        .unwrap_err()
        .to_string();
    assert!(err.contains("train.accumulation_steps"), "{err}");
}

#[test]
fn synthetic_pretraining_learns() {
    let _torch = torch_lock();
    // Loss goes down and the pretext accuracy goes up within a few dozen steps.
    let cfg = SyntheticConfig { batch_size: 16, ..SyntheticConfig::tiny() };
    let (loader, mut o) = synthetic::setup(&cfg, Device::Cpu).unwrap();
    let sink = MemorySink::default();
    let mut tc = train_config(40);
    tc.optimizer.lr = 3e-3;
    Trainer::new(tc).sink(Box::new(sink.clone())).fit(&mut o, &loader).unwrap();
    let r = sink.records();
    let mean = |s: &[ssl_core::metrics::StepRecord]| s.iter().map(|r| r.loss).sum::<f64>() / s.len() as f64;
    assert!(
        mean(&r[30..]) < mean(&r[..5]) - 0.1,
        "loss did not fall: {} -> {}",
        mean(&r[..5]),
        mean(&r[30..])
    );
    assert!(r.last().unwrap().metrics.contains_key("pretext_acc"));
}
