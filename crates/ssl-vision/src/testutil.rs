//! Shared fixtures of the unit tests: a tiny two-view pretraining run with a probe after it.

use ssl_core::data::{DataLoader, LoaderConfig, RandomSampler};
use ssl_core::metrics::{MemorySink, StepRecord};
use ssl_core::trainer::{TrainConfig, Trainer};
use ssl_core::Objective;
use tch::{Device, Tensor};

use crate::augment::presets::ViewPipelines;
use crate::shapes::{Shapes, ShapesConfig, Split};
use crate::views::{labelled_tensors, Normalization, ViewBatches};

/// 16 px shapes, 4 per class: enough for a few steps of a tiny model.
pub(crate) fn tiny_shapes() -> ShapesConfig {
    ShapesConfig { image_size: 16, train_per_class: 4, test_per_class: 2, ..Default::default() }
}

/// Trains `model` for `steps` steps of batch 16 on the tiny shapes with `views`, checks the
/// loss is finite, carries `metric` (when one is named), and falls (steps 2-9 against the last 10: the first steps
/// are skipped because a MoCo queue starts with random keys, easier negatives than real ones),
/// then probes the encoder. Returns the step records.
pub(crate) fn tiny_pretrain_and_probe<O>(
    model: &mut O,
    views: ViewPipelines,
    lr: f64,
    steps: u64,
    metric: Option<&str>,
) -> Vec<StepRecord>
where
    O: Objective<Batch = Vec<Tensor>>,
{
    let data = tiny_shapes();
    let ds = Shapes::new(&data, Split::Train).unwrap();
    let views = ViewBatches::new(views, Normalization::IMAGENET);
    let loader_cfg = LoaderConfig { batch_size: 16, ..Default::default() };
    let loader = DataLoader::new(ds, views, RandomSampler::new(0), loader_cfg).unwrap();
    let sink = MemorySink::default();
    let mut train = TrainConfig { steps, log_every: 1, progress: false, ..Default::default() };
    train.optimizer.lr = lr;
    Trainer::new(train).sink(Box::new(sink.clone())).fit(model, &loader).unwrap();
    let records = sink.records();
    assert_eq!(records.len() as u64, steps);
    assert!(records.iter().all(|r| r.loss.is_finite() && metric.is_none_or(|m| r.metrics.contains_key(m))));
    let mean = |r: &[StepRecord]| r.iter().map(|r| r.loss).sum::<f64>() / r.len() as f64;
    let n = records.len();
    let (first, last) = (mean(&records[2..10]), mean(&records[n - 10..]));
    eprintln!("{}: loss {first:.4} -> {last:.4}", model.name());
    assert!(last < first, "{}: loss did not fall: {first} -> {last}", model.name());

    let test = Shapes::new(&data, Split::Test).unwrap();
    let (x, y) = labelled_tensors(&test, data.image_size, Normalization::IMAGENET).unwrap();
    let eval = ssl_core::eval::EvalConfig {
        linear_probe: ssl_core::eval::LinearProbeConfig { epochs: 5, ..Default::default() },
        ..Default::default()
    };
    let report = ssl_core::eval::probe_encoder(model.encoder(), &x, &y, &x, &y, &eval, Device::Cpu).unwrap();
    assert!((0.0..=1.0).contains(&report.linear_probe_acc));
    records
}
