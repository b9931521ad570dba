//! CLIP through ssl-core's trainer: feature-cached micro-batches (the objective back-propagates
//! itself), the logit-scale clamp after every step, a ResNet image tower, and the refusal of
//! trainer-level accumulation on top of the objective's own.
#![allow(clippy::unwrap_used)]

use ssl_core::data::{DataLoader, LoaderConfig, RandomSampler};
use ssl_core::tch::Device;
use ssl_core::trainer::{TrainConfig, Trainer};
use ssl_multimodal::batch::{CaptionTokenizer, ImageTransform, PairBatches};
use ssl_multimodal::clip::{Clip, ClipConfig, ImageTowerConfig};
use ssl_multimodal::scenes::{SceneSplit, Scenes, ScenesConfig};
use ssl_text::tokenizer::{TextTokenizer, TokenizerKind};
use ssl_vision::backbone::ResNetConfig;

fn setup(cfg: &ClipConfig) -> (DataLoader<Scenes, PairBatches, RandomSampler>, Clip) {
    let scenes_cfg = ScenesConfig { image_size: 16, train_pairs: 48, ..Default::default() };
    let scenes = Scenes::new(&scenes_cfg, SceneSplit::Train).unwrap();
    let tok = TextTokenizer::train(TokenizerKind::ByteLevelBpe, scenes.captions(), 300).unwrap();
    let tok = CaptionTokenizer::new(tok, cfg.text.context_length as usize).unwrap();
    let clip =
        Clip::new(cfg, tok.tokenizer().vocab_size() as i64, i64::from(tok.pad()), Device::Cpu).unwrap();
    let builder = PairBatches::new(tok, ImageTransform { size: 16, crop_scale: [0.9, 1.0] }).unwrap();
    let loader_cfg = LoaderConfig { batch_size: 12, drop_last: true, prefetch: 1, seed: 0 };
    (DataLoader::new(scenes, builder, RandomSampler::new(0), loader_cfg).unwrap(), clip)
}

#[test]
fn micro_batched_training_steps_and_keeps_the_scale_clamped() {
    // A high starting scale and a large rate push it past the clamp; it must stay at ln 100.
    let cfg = ClipConfig { micro_batches: 3, init_logit_scale: Some(100f64.ln()), ..ClipConfig::tiny() };
    let (loader, mut clip) = setup(&cfg);
    let mut train = TrainConfig { steps: 4, progress: false, ..Default::default() };
    train.optimizer.lr = 0.5;
    train.schedule.warmup_steps = 0;
    let report = Trainer::new(train).fit(&mut clip, &loader).unwrap();
    assert_eq!(report.steps, 4);
    assert!(report.final_loss.is_finite());
    assert!(clip.logit_scale() <= 100f64.ln() + 1e-6 && clip.logit_scale() >= 0.0, "{}", clip.logit_scale());
}

#[test]
fn a_resnet_tower_trains_and_trainer_accumulation_is_refused_with_micro_batches() {
    let resnet = ClipConfig { image: ImageTowerConfig::Resnet(ResNetConfig::tiny()), ..ClipConfig::tiny() };
    let (loader, mut clip) = setup(&resnet);
    let train = TrainConfig { steps: 2, progress: false, ..Default::default() };
    assert!(Trainer::new(train).fit(&mut clip, &loader).unwrap().final_loss.is_finite());

    let cfg = ClipConfig { micro_batches: 2, ..ClipConfig::tiny() };
    let (loader, mut clip) = setup(&cfg);
    let train = TrainConfig { steps: 2, accumulation_steps: 2, progress: false, ..Default::default() };
    let e = Trainer::new(train).fit(&mut clip, &loader).unwrap_err().to_string();
    assert!(e.contains("train.accumulation_steps") && e.contains("clip"), "{e}");
}
