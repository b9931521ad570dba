//! Seeded augmentations: the [`Augmentation`] trait and its combinators.
//!
//! An augmentation draws all its randomness from the generator it is handed, so the same seed
//! gives the same output bit for bit (the loader hands each sample a generator seeded from
//! `(seed, epoch, index)`). Modality crates implement the trait for their sample types (images,
//! waveforms, token sequences); the combinators here work for any of them.

use rand::Rng;
use rand_distr::{Distribution, Normal};

use crate::rng::SslRng;

/// A random transformation of one sample.
///
/// Closures `Fn(&T, &mut SslRng) -> T` are augmentations too.
///
/// ```
/// use ssl_core::augment::{Augmentation, Compose, GaussianNoise, RandomApply};
/// use ssl_core::rng::rng_for;
///
/// let aug = Compose::new(vec![
///     Box::new(GaussianNoise::new(0.1)) as Box<dyn Augmentation<Vec<f32>>>,
///     Box::new(RandomApply::new(|x: &Vec<f32>, _: &mut _| x.iter().map(|v| -v).collect(), 0.5)),
/// ]);
/// let x = vec![1.0f32; 4];
/// let a = aug.apply(&x, &mut rng_for(0, "aug", &[1]));
/// let b = aug.apply(&x, &mut rng_for(0, "aug", &[1]));
/// assert_eq!(a, b);
/// ```
pub trait Augmentation<T>: Send + Sync {
    /// Returns the transformed sample; all randomness comes from `rng`.
    fn apply(&self, input: &T, rng: &mut SslRng) -> T;
}

impl<T, F> Augmentation<T> for F
where
    F: Fn(&T, &mut SslRng) -> T + Send + Sync,
{
    fn apply(&self, input: &T, rng: &mut SslRng) -> T {
        self(input, rng)
    }
}

impl<T> Augmentation<T> for Box<dyn Augmentation<T>> {
    fn apply(&self, input: &T, rng: &mut SslRng) -> T {
        (**self).apply(input, rng)
    }
}

/// Applies augmentations in order.
pub struct Compose<T> {
    steps: Vec<Box<dyn Augmentation<T>>>,
}

impl<T> Compose<T> {
    /// A pipeline of `steps`.
    pub fn new(steps: Vec<Box<dyn Augmentation<T>>>) -> Self {
        Self { steps }
    }
}

impl<T: Clone> Augmentation<T> for Compose<T> {
    fn apply(&self, input: &T, rng: &mut SslRng) -> T {
        let mut x = input.clone();
        for step in &self.steps {
            x = step.apply(&x, rng);
        }
        x
    }
}

/// Applies an augmentation with probability `p`. A draw is consumed whether or not it applies,
/// so later augmentations see the same stream either way.
pub struct RandomApply<A> {
    inner: A,
    p: f64,
}

impl<A> RandomApply<A> {
    /// Applies `inner` with probability `p` (clamped to `[0, 1]`).
    pub fn new(inner: A, p: f64) -> Self {
        Self { inner, p: p.clamp(0.0, 1.0) }
    }
}

impl<T: Clone, A: Augmentation<T>> Augmentation<T> for RandomApply<A> {
    fn apply(&self, input: &T, rng: &mut SslRng) -> T {
        if rng.gen::<f64>() < self.p {
            self.inner.apply(input, rng)
        } else {
            input.clone()
        }
    }
}

/// `n` independent views of one sample (SimCLR/BYOL/MoCo use two).
pub fn views<T, A: Augmentation<T> + ?Sized>(aug: &A, input: &T, n: usize, rng: &mut SslRng) -> Vec<T> {
    (0..n).map(|_| aug.apply(input, rng)).collect()
}

/// Adds i.i.d. Gaussian noise of standard deviation `std` to every component of a vector.
#[derive(Debug, Clone, Copy)]
pub struct GaussianNoise {
    std: f32,
}

impl GaussianNoise {
    /// Noise of standard deviation `std` (negative values are treated as 0).
    pub fn new(std: f32) -> Self {
        Self { std: std.max(0.0) }
    }
}

impl Augmentation<Vec<f32>> for GaussianNoise {
    fn apply(&self, input: &Vec<f32>, rng: &mut SslRng) -> Vec<f32> {
        match Normal::new(0.0f32, self.std) {
            Ok(normal) => input.iter().map(|v| v + normal.sample(rng)).collect(),
            Err(_) => input.clone(),
        }
    }
}

/// Zeroes each component of a vector independently with probability `p` (feature masking).
#[derive(Debug, Clone, Copy)]
pub struct FeatureDropout {
    p: f64,
}

impl FeatureDropout {
    /// Drops each component with probability `p` (clamped to `[0, 1]`).
    pub fn new(p: f64) -> Self {
        Self { p: p.clamp(0.0, 1.0) }
    }
}

impl Augmentation<Vec<f32>> for FeatureDropout {
    fn apply(&self, input: &Vec<f32>, rng: &mut SslRng) -> Vec<f32> {
        input.iter().map(|&v| if rng.gen::<f64>() < self.p { 0.0 } else { v }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::rng_for;
    use proptest::prelude::*;

    fn pipeline(std: f32, p: f64) -> Compose<Vec<f32>> {
        Compose::new(vec![
            Box::new(GaussianNoise::new(std)),
            Box::new(RandomApply::new(FeatureDropout::new(p), 0.5)),
        ])
    }

    proptest! {
        #[test]
        fn same_seed_same_bits_and_shape_preserved(
            x in proptest::collection::vec(-10f32..10.0, 0..64), seed: u64, std in 0f32..2.0, p in 0f64..1.0
        ) {
            let aug = pipeline(std, p);
            let a = aug.apply(&x, &mut rng_for(seed, "t", &[]));
            let b = aug.apply(&x, &mut rng_for(seed, "t", &[]));
            prop_assert_eq!(a.len(), x.len());
            prop_assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }

        #[test]
        fn dropout_only_zeroes(x in proptest::collection::vec(-10f32..10.0, 1..64), seed: u64, p in 0f64..1.0) {
            let y = FeatureDropout::new(p).apply(&x, &mut rng_for(seed, "d", &[]));
            for (a, b) in x.iter().zip(&y) {
                prop_assert!(*b == 0.0 || a == b);
            }
        }
    }

    #[test]
    fn extremes_behave() {
        let x = vec![1.0f32, 2.0, 3.0];
        let mut rng = rng_for(1, "e", &[]);
        assert_eq!(GaussianNoise::new(0.0).apply(&x, &mut rng), x);
        assert_eq!(FeatureDropout::new(1.0).apply(&x, &mut rng), vec![0.0; 3]);
        assert_eq!(RandomApply::new(FeatureDropout::new(1.0), 0.0).apply(&x, &mut rng), x);
        let v = views(&GaussianNoise::new(1.0), &x, 2, &mut rng);
        assert_ne!(v[0], v[1]);
    }
}
