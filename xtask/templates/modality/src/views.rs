//! Two augmented views of each signal: a random circular shift (the class, a frequency, does
//! not depend on where the window starts) and additive noise; collated into `[a, b]`, two
//! `[B, length]` tensors.

use rand::Rng;
use ssl_core::augment::{Augmentation, GaussianNoise};
use ssl_core::data::BatchBuilder;
use ssl_core::rng::SslRng;
use ssl_core::tch::Tensor;
use ssl_core::{Error, Result};

/// Rotates a signal left by a random `0..=max_shift` samples.
#[derive(Debug, Clone, Copy)]
pub struct RandomShift {
    max_shift: usize,
}

impl RandomShift {
    /// Shifts of up to `max_shift` samples.
    pub fn new(max_shift: usize) -> Self {
        Self { max_shift }
    }
}

impl Augmentation<Vec<f32>> for RandomShift {
    fn apply(&self, input: &Vec<f32>, rng: &mut SslRng) -> Vec<f32> {
        let mut out = input.clone();
        if !out.is_empty() {
            let k = rng.gen_range(0..=self.max_shift) % out.len();
            out.rotate_left(k);
        }
        out
    }
}

/// Makes two views of every signal (shift, then noise) and stacks each view of a batch.
pub struct TwoViews {
    shift: RandomShift,
    noise: GaussianNoise,
}

impl TwoViews {
    /// Views shifted by up to `max_shift` samples with noise of `noise_std`.
    pub fn new(max_shift: usize, noise_std: f32) -> Self {
        Self { shift: RandomShift::new(max_shift), noise: GaussianNoise::new(noise_std) }
    }
}

impl BatchBuilder<Vec<f32>> for TwoViews {
    type Sample = [Vec<f32>; 2];
    type Batch = Vec<Tensor>;

    fn prepare(&self, signal: Vec<f32>, rng: &mut SslRng) -> Result<[Vec<f32>; 2]> {
        let mut view = || self.noise.apply(&self.shift.apply(&signal, rng), rng);
        Ok([view(), view()])
    }

    fn collate(&self, samples: Vec<[Vec<f32>; 2]>) -> Result<Vec<Tensor>> {
        let len = samples.first().map_or(0, |s| s[0].len());
        if samples.iter().any(|s| s[0].len() != len || s[1].len() != len) {
            return Err(Error::data("toy batch", "signals of different lengths in one batch"));
        }
        Ok((0..2)
            .map(|v| {
                let flat: Vec<f32> = samples.iter().flat_map(|s| s[v].iter().copied()).collect();
                Tensor::from_slice(&flat).view([-1, len as i64])
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ssl_core::rng::rng_for;

    proptest! {
        /// A shift is a rotation: same length, same values, and undone by rotating back.
        #[test]
        fn shifts_rotate_the_signal(signal in proptest::collection::vec(-10.0f32..10.0, 1..64), max in 0usize..80, seed: u64) {
            let out = RandomShift::new(max).apply(&signal, &mut rng_for(seed, "t", &[]));
            prop_assert_eq!(out.len(), signal.len());
            let k = (0..signal.len()).find(|&k| { let mut s = signal.clone(); s.rotate_left(k); s == out });
            prop_assert!(k.is_some_and(|k| k <= max), "not a rotation by at most {}", max);
        }

        /// Batches hold two views of every signal, each `[B, length]`.
        #[test]
        fn batches_have_two_views_of_every_signal(b in 1usize..8, len in 1usize..32, seed: u64) {
            let views = TwoViews::new(len / 2, 0.1);
            let mut rng = rng_for(seed, "t", &[]);
            let samples: Vec<[Vec<f32>; 2]> = (0..b).map(|i| views.prepare(vec![i as f32; len], &mut rng).expect("prepare")).collect();
            let batch = views.collate(samples).expect("collate");
            prop_assert_eq!(batch.len(), 2);
            for v in &batch {
                prop_assert_eq!(v.size(), vec![b as i64, len as i64]);
            }
        }
    }
}
