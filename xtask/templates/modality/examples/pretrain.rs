//! Pretrains the example method on the toy set and compares the linear probe of its encoder with
//! the same encoder untrained.
//!
//! ```text
//! cargo run --release -p @CRATE@ --example pretrain
//! ```

use @LIB@::data::{Split, ToySignals};
use @LIB@::ssl_core::eval::{probe_encoder, EvalConfig};
use @LIB@::ssl_core::tch::Device;
use @LIB@::ssl_core::trainer::{TrainConfig, Trainer};
use @LIB@::ssl_core::Objective;
use @LIB@::{setup, Contrastive, ToyConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = ToyConfig::default();
    let (loader, mut objective) = setup(&cfg, Device::Cpu)?;
    let report =
        Trainer::new(TrainConfig { steps: 500, ..Default::default() }).fit(&mut objective, &loader)?;
    let (tx, ty) = ToySignals::new(&cfg, Split::Train)?.tensors();
    let (vx, vy) = ToySignals::new(&cfg, Split::Test)?.tensors();
    let eval = EvalConfig::default();
    let ours = probe_encoder(objective.encoder(), &tx, &ty, &vx, &vy, &eval, Device::Cpu)?;
    let untrained = Contrastive::new(&cfg, Device::Cpu)?;
    let random = probe_encoder(untrained.encoder(), &tx, &ty, &vx, &vy, &eval, Device::Cpu)?;
    println!(
        "{} steps, final loss {:.3}: linear probe {:.3} (random init {:.3})",
        report.steps, report.final_loss, ours.linear_probe_acc, random.linear_probe_acc
    );
    Ok(())
}
