//! The embedded toy dataset: labelled 1-D signals, a pure function of [`ToyConfig`].
//!
//! Class `k` is a sine wave of frequency `k + 1` cycles per window, with a random amplitude and
//! phase, plus white noise. Replace it with a reader of real @NAME@ files (returning clear errors
//! that name the file) and keep this one for tests and demos.

use rand::Rng;
use serde::{Deserialize, Serialize};
use ssl_core::data::Dataset;
use ssl_core::rng::{normal, rng_for};
use ssl_core::{Error, Result};

/// The toy task and its model; every field has a default, unknown fields are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToyConfig {
    /// Classes (frequencies).
    pub num_classes: usize,
    /// Samples per signal.
    pub length: usize,
    /// Training signals per class.
    pub train_per_class: usize,
    /// Held-out signals per class.
    pub test_per_class: usize,
    /// Standard deviation of the noise in each signal.
    pub signal_noise: f32,
    /// Largest circular shift of a view, in samples.
    pub max_shift: usize,
    /// Standard deviation of the noise added to each view.
    pub noise_std: f32,
    /// Encoder width (the representation's dimension).
    pub repr_dim: i64,
    /// Projection head output width.
    pub proj_dim: i64,
    /// NT-Xent temperature (SimCLR's 0.5 for small batches).
    pub temperature: f64,
    /// Signals per batch.
    pub batch_size: usize,
    /// Seed of the data, the views and the initialisation.
    pub seed: u64,
}

impl Default for ToyConfig {
    fn default() -> Self {
        Self {
            num_classes: 6,
            length: 64,
            train_per_class: 200,
            test_per_class: 50,
            signal_noise: 0.3,
            max_shift: 16,
            noise_std: 0.1,
            repr_dim: 64,
            proj_dim: 32,
            temperature: 0.5,
            batch_size: 64,
            seed: 0,
        }
    }
}

impl ToyConfig {
    /// A very small task for tests and doc examples.
    pub fn tiny() -> Self {
        Self {
            num_classes: 3,
            length: 16,
            train_per_class: 16,
            test_per_class: 8,
            repr_dim: 16,
            proj_dim: 8,
            max_shift: 4,
            batch_size: 8,
            ..Self::default()
        }
    }

    /// Checks every field; errors name it (`data.length`).
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, why: &str| Err(Error::config(format!("data.{field}"), why));
        if self.num_classes < 2 {
            return bad("num_classes", "must be at least 2");
        }
        if self.length < 4 {
            return bad("length", "must be at least 4");
        }
        if self.train_per_class == 0 || self.test_per_class == 0 {
            return bad("train_per_class", "both splits need signals");
        }
        if self.max_shift >= self.length {
            return bad("max_shift", "must be below `length`");
        }
        if self.repr_dim < 1 || self.proj_dim < 1 {
            return bad("repr_dim", "widths must be positive");
        }
        if self.temperature.is_nan() || self.temperature <= 0.0 {
            return bad("temperature", "must be positive");
        }
        if self.batch_size < 2 {
            return bad("batch_size", "contrastive learning needs at least 2 signals per batch");
        }
        Ok(())
    }
}

/// Which split of the toy set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The training signals.
    Train,
    /// The held-out signals.
    Test,
}

/// The signals of one split with their labels.
#[derive(Debug, Clone)]
pub struct ToySignals {
    signals: Vec<Vec<f32>>,
    labels: Vec<i64>,
}

impl ToySignals {
    /// Generates a split of `cfg`.
    pub fn new(cfg: &ToyConfig, split: Split) -> Result<Self> {
        cfg.validate()?;
        let (per_class, stream) = match split {
            Split::Train => (cfg.train_per_class, "toy-train"),
            Split::Test => (cfg.test_per_class, "toy-test"),
        };
        let mut rng = rng_for(cfg.seed, stream, &[]);
        let n = per_class * cfg.num_classes;
        let mut signals = Vec::with_capacity(n);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let class = i % cfg.num_classes;
            let amplitude: f32 = rng.gen_range(0.5..1.5);
            let phase: f32 = rng.gen_range(0.0..std::f32::consts::TAU);
            let freq = (class + 1) as f32 / cfg.length as f32;
            let signal = (0..cfg.length)
                .map(|t| {
                    amplitude * (std::f32::consts::TAU * freq * t as f32 + phase).sin()
                        + normal(&mut rng, cfg.signal_noise)
                })
                .collect();
            signals.push(signal);
            labels.push(class as i64);
        }
        Ok(Self { signals, labels })
    }

    /// The label of signal `index`.
    pub fn label(&self, index: usize) -> i64 {
        self.labels[index]
    }

    /// Every signal as `[N, length]` and the labels `[N]`, for probes.
    pub fn tensors(&self) -> (ssl_core::tch::Tensor, ssl_core::tch::Tensor) {
        let len = self.signals.first().map_or(0, Vec::len) as i64;
        let flat: Vec<f32> = self.signals.iter().flatten().copied().collect();
        (
            ssl_core::tch::Tensor::from_slice(&flat).view([-1, len]),
            ssl_core::tch::Tensor::from_slice(&self.labels),
        )
    }
}

impl Dataset for ToySignals {
    type Item = Vec<f32>;

    fn len(&self) -> usize {
        self.signals.len()
    }

    fn get(&self, index: usize) -> Result<Vec<f32>> {
        self.signals.get(index).cloned().ok_or_else(|| {
            Error::data("toy signals", format!("index {index} out of range ({})", self.signals.len()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_deterministic_balanced_and_distinct() {
        let cfg = ToyConfig::tiny();
        let a = ToySignals::new(&cfg, Split::Train).expect("train");
        let b = ToySignals::new(&cfg, Split::Train).expect("train");
        let test = ToySignals::new(&cfg, Split::Test).expect("test");
        assert_eq!(a.signals, b.signals);
        assert_eq!((a.len(), test.len()), (3 * 16, 3 * 8));
        assert_ne!(a.signals[0], test.signals[0]);
        assert_eq!((0..a.len()).filter(|&i| a.label(i) == 2).count(), 16);
        assert!(a.get(a.len()).is_err());
    }

    #[test]
    fn config_errors_name_the_field() {
        let e = ToyConfig { max_shift: 99, ..ToyConfig::tiny() }.validate().expect_err("shift");
        assert!(e.to_string().contains("data.max_shift"), "{e}");
        let e = ToyConfig { batch_size: 1, ..ToyConfig::tiny() }.validate().expect_err("batch");
        assert!(e.to_string().contains("data.batch_size"), "{e}");
    }
}
