//! Behaviour: the example method trains on the toy set, its loss falls, and ssl-core's probe
//! evaluates its encoder.

use @LIB@::data::{Split, ToySignals};
use @LIB@::ssl_core::eval::{probe_encoder, EvalConfig};
use @LIB@::ssl_core::tch::Device;
use @LIB@::ssl_core::trainer::{TrainConfig, Trainer};
use @LIB@::ssl_core::Objective;
use @LIB@::{setup, ToyConfig};

#[test]
fn trains_lowers_the_loss_and_probes() {
    let cfg = ToyConfig { train_per_class: 32, ..ToyConfig::tiny() };
    let (loader, mut objective) = setup(&cfg, Device::Cpu).expect("setup");
    let sink = @LIB@::ssl_core::metrics::MemorySink::default();
    let train =
        TrainConfig { steps: 60, log_every: 10, progress: false, deterministic: true, ..Default::default() };
    let report = Trainer::new(train).sink(Box::new(sink.clone())).fit(&mut objective, &loader).expect("fit");
    assert_eq!(report.steps, 60);
    let losses: Vec<f64> = sink.records().iter().map(|r| r.loss).collect();
    assert!(losses.last() < losses.first(), "the loss did not fall: {losses:?}");

    let (tx, ty) = ToySignals::new(&cfg, Split::Train).expect("train").tensors();
    let (vx, vy) = ToySignals::new(&cfg, Split::Test).expect("test").tensors();
    let eval = EvalConfig::default();
    let probe = probe_encoder(objective.encoder(), &tx, &ty, &vx, &vy, &eval, Device::Cpu).expect("probe");
    assert!((0.0..=1.0).contains(&probe.linear_probe_acc), "{probe:?}");
}
