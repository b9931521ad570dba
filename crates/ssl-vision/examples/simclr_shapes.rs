//! SimCLR on the embedded shapes dataset, then a linear probe and kNN against the same encoder
//! untrained and the raw pixels.
//!
//! `cargo run --release -p ssl-vision --example simclr_shapes -- [steps] [base_width] [batch]`

use ssl_core::data::{DataLoader, LoaderConfig, RandomSampler};
use ssl_core::eval::{probe_encoder, probe_features, EvalConfig};
use ssl_core::tch::Device;
use ssl_core::trainer::{TrainConfig, Trainer};
use ssl_core::Objective;
use ssl_vision::augment::presets;
use ssl_vision::backbone::ResNetConfig;
use ssl_vision::shapes::{Shapes, ShapesConfig, Split};
use ssl_vision::simclr::{Simclr, SimclrConfig};
use ssl_vision::views::{labelled_tensors, Normalization, ViewBatches};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg =
        |i: usize, default: u64| args.get(i).map(|s| s.parse()).transpose().map(|v| v.unwrap_or(default));
    let (steps, width, batch) = (arg(0, 200)?, arg(1, 16)? as i64, arg(2, 256)? as usize);

    let data = ShapesConfig::default();
    let size = data.image_size;
    let train_set = Shapes::new(&data, Split::Train)?;
    let views = ViewBatches::new(presets::simclr(size, true), Normalization::IMAGENET);
    let loader = DataLoader::new(
        train_set,
        views,
        RandomSampler::new(0),
        LoaderConfig { batch_size: batch, ..Default::default() },
    )?;
    let model_cfg = SimclrConfig {
        backbone: ResNetConfig { base_width: width, ..SimclrConfig::small_images().backbone },
        hidden_dim: 512,
        ..SimclrConfig::small_images()
    };
    ssl_core::rng::seed_torch(0, "init", &[]);
    let mut model = Simclr::new(&model_cfg, Device::Cpu)?;
    let mut train = TrainConfig { steps, log_every: 10, ..Default::default() };
    train.optimizer.lr = 1e-3 * batch as f64 / 256.0;
    train.optimizer.weight_decay = 1e-4;
    train.schedule.warmup_steps = steps / 10;
    let report = Trainer::new(train).fit(&mut model, &loader)?;

    let labelled = |split| Shapes::new(&ShapesConfig { train_per_class: 200, ..data.clone() }, split);
    let (train_x, train_y) = labelled_tensors(&labelled(Split::Train)?, size, Normalization::IMAGENET)?;
    let (test_x, test_y) = labelled_tensors(&labelled(Split::Test)?, size, Normalization::IMAGENET)?;
    let eval = EvalConfig::default();
    let ours = probe_encoder(model.encoder(), &train_x, &train_y, &test_x, &test_y, &eval, Device::Cpu)?;
    ssl_core::rng::seed_torch(0, "init", &[]);
    let untrained = Simclr::new(&model_cfg, Device::Cpu)?;
    let random =
        probe_encoder(untrained.encoder(), &train_x, &train_y, &test_x, &test_y, &eval, Device::Cpu)?;
    let raw = probe_features(&train_x, &train_y, &test_x, &test_y, &eval, Device::Cpu)?;
    println!(
        "steps {} | {:.0} samples/s | {:.0} s",
        report.steps, report.samples_per_sec, report.wall_seconds
    );
    println!("{:<12} {:>8} {:>8}", "features", "linear", "kNN");
    for (name, r) in [("simclr", &ours), ("random init", &random), ("raw pixels", &raw)] {
        println!("{name:<12} {:>8.3} {:>8.3}", r.linear_probe_acc, r.knn_acc);
    }
    Ok(())
}
