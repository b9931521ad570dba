//! Contrastive pretraining on the synthetic task, then a linear probe and kNN on held-out data.
//!
//! `cargo run --release -p ssl-core --example synthetic -- [steps] [run-dir]`

use ssl_core::eval::{probe_encoder, EvalConfig};
use ssl_core::synthetic::{self, SyntheticConfig};
use ssl_core::tch::Device;
use ssl_core::trainer::{TrainConfig, Trainer};
use ssl_core::Objective;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let steps = args.next().map(|s| s.parse()).transpose()?.unwrap_or(500);
    let run_dir = args.next().unwrap_or_else(|| "runs/example-synthetic".into());

    let data = SyntheticConfig::default();
    let device = ssl_core::device::DeviceSpec::Auto.resolve()?;
    let (loader, mut objective) = synthetic::setup(&data, device)?;
    let train = TrainConfig { steps, log_every: 50, ..Default::default() };
    let report = Trainer::new(train).run_dir(&run_dir).fit(&mut objective, &loader)?;
    println!(
        "trained {} steps, final loss {:.4}, {:.0} samples/s",
        report.steps, report.final_loss, report.samples_per_sec
    );

    let (train_split, test_split) = synthetic::generate(&data)?;
    let (train_x, train_y) = train_split.tensors();
    let (test_x, test_y) = test_split.tensors();
    let eval = probe_encoder(
        objective.encoder(),
        &train_x,
        &train_y,
        &test_x,
        &test_y,
        &EvalConfig::default(),
        Device::Cpu,
    )?;
    println!("linear probe {:.3}, kNN {:.3}", eval.linear_probe_acc, eval.knn_acc);
    Ok(())
}
