//! Which stage of a wav2vec 2.0 encoder holds what a probe needs: a linear probe on each
//! stage's mean-pooled frames (the projected features, then every block), on all of them
//! concatenated and on the mean of the blocks, each next to the same encoder untrained, as in
//! the layer-wise analysis of Pasad et al. (2021).
//!
//! ```text
//! cargo run --release -p ssl-audio --example layer_probe -- RUN_DIR [TRAIN_DIR TEST_DIR]
//! ```
//!
//! `RUN_DIR` is an `ssl pretrain wav2vec2` run directory or checkpoint folder. The probes use
//! the run's own labelled split of the embedded set (its `data.probe_train_clips` training clips,
//! scored on the held-out clips), or two labelled folders (one sub-folder of WAV files per
//! class), cut as the run cuts its training crops.

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use ssl_audio::data::{CropBatches, CropConfig, LabelledWavFolder};
use ssl_audio::eval::clip_inputs;
use ssl_audio::synth::{Split, SynthConfig, SynthSpeech};
use ssl_audio::wav2vec2::{Representation, Wav2Vec2, Wav2Vec2Config};
use ssl_core::checkpoint::{self, LoadedCheckpoint};
use ssl_core::eval::{extract_features, probe_features, EvalConfig};
use ssl_core::tch::{Device, Tensor};
use ssl_core::{Error, Objective, Result};

/// Encoder inputs `[N, 2, T]` and labels `[N]`.
struct Labelled {
    inputs: Tensor,
    labels: Tensor,
}

/// A field of the run's stored config, or `fallback` where the run has none.
fn stored<T: DeserializeOwned>(ck: &LoadedCheckpoint, pointer: &str, fallback: T) -> Result<T> {
    match ck.meta.config.pointer(pointer) {
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| Error::checkpoint(&ck.path, format!("stored config {pointer}: {e}"))),
        None => Ok(fallback),
    }
}

fn labelled((clips, labels): (Vec<Vec<f32>>, Vec<i64>), crops: &CropBatches) -> Result<Labelled> {
    Ok(Labelled { inputs: clip_inputs(&clips, crops)?.0, labels: Tensor::from_slice(&labels) })
}

/// The probe rows of one encoder, built with [`Representation::Concat`] so that its features
/// hold every stage's mean-pooled frames side by side: `(name, train features, test features)`.
fn rows(model: &Wav2Vec2, train: &Labelled, test: &Labelled) -> Result<Vec<(String, Tensor, Tensor)>> {
    let features = |l: &Labelled| extract_features(model, &l.inputs, 256, Device::Cpu);
    let (tr_all, te_all) = (features(train)?, features(test)?);
    let dim = model.config().dim;
    let (tr, te) = (tr_all.split(dim, 1), te_all.split(dim, 1));
    let blocks = (tr.len() - 1) as f64;
    let mean = |s: &[Tensor]| s[2..].iter().fold(s[1].shallow_clone(), |sum, h| sum + h) / blocks;
    let mut out =
        vec![("concat".to_string(), tr_all, te_all), ("block mean".to_string(), mean(&tr), mean(&te))];
    for (i, (a, b)) in tr.into_iter().zip(te).enumerate() {
        let name = if i == 0 { "features".to_string() } else { format!("block {i}") };
        out.push((name, a, b));
    }
    Ok(out)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("layer_probe: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || Error::invalid("arguments", "usage: layer_probe RUN_DIR [TRAIN_DIR TEST_DIR]");
    let (run, dirs) = match args.as_slice() {
        [run] => (PathBuf::from(run), None),
        [run, train, test] => (PathBuf::from(run), Some((PathBuf::from(train), PathBuf::from(test)))),
        _ => return Err(usage()),
    };
    let ck = checkpoint::load(&run)?;
    if ck.meta.method != Wav2Vec2::NAME {
        return Err(Error::checkpoint(
            &ck.path,
            format!("is a `{}` checkpoint, not wav2vec2", ck.meta.method),
        ));
    }
    let model_cfg = Wav2Vec2Config {
        representation: Representation::Concat,
        ..stored(&ck, "/model", Wav2Vec2Config::default())?
    };
    let mut crop: CropConfig = stored(&ck, "/data/crop", CropConfig { crop_len: 16_000, normalize: true })?;
    // The run's probe length (0: its training crop length).
    let probe_len: usize = stored(&ck, "/data/probe_len", 0)?;
    if probe_len > 0 {
        crop.crop_len = probe_len;
    }
    let rate: u32 = stored(&ck, "/data/sample_rate", 16_000)?;
    let crops = CropBatches::new(crop)?;
    let (train, test) = match &dirs {
        Some((train, test)) => {
            let (tr, te) = LabelledWavFolder::open_pair(train, test, rate)?;
            (labelled(tr.load_all()?, &crops)?, labelled(te.load_all()?, &crops)?)
        }
        None => {
            let synth: SynthConfig = stored(&ck, "/data/synth", SynthConfig::default())?;
            let n: usize = stored(&ck, "/data/probe_train_clips", 2000)?;
            let split = |split, n| SynthSpeech::new(&synth, split)?.labelled(n);
            (
                labelled(split(Split::Train, n)?, &crops)?,
                labelled(split(Split::Test, synth.test_clips)?, &crops)?,
            )
        }
    };

    let device = Device::Cpu;
    let build = || {
        ssl_core::rng::seed_torch(ck.meta.seed, "init", &[]);
        Wav2Vec2::new(&model_cfg, ck.meta.seed, device)
    };
    let untrained = build()?;
    let trained = build()?;
    checkpoint::restore_variables(trained.var_store(), &ck.model, &ck.path)?;

    let eval = EvalConfig::default();
    let acc = |tr: &Tensor, te: &Tensor| {
        probe_features(tr, &train.labels, te, &test.labels, &eval, device).map(|p| p.linear_probe_acc)
    };
    println!(
        "checkpoint {} (step {}): {} train / {} test clips",
        ck.path.display(),
        ck.meta.step,
        train.labels.size()[0],
        test.labels.size()[0]
    );
    println!("{:<11} {:>8} {:>12} {:>7}", "stage", "trained", "random init", "margin");
    for ((name, a_tr, a_te), (_, b_tr, b_te)) in
        rows(&trained, &train, &test)?.into_iter().zip(rows(&untrained, &train, &test)?)
    {
        let (a, b) = (acc(&a_tr, &a_te)?, acc(&b_tr, &b_te)?);
        println!("{name:<11} {a:>8.3} {b:>12.3} {:>+7.1}", 100.0 * (a - b));
    }
    Ok(())
}
