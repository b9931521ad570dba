use rand::seq::SliceRandom;

use crate::rng::rng_for;

/// Fixes the order in which an epoch visits a dataset.
///
/// The order is a pure function of `(epoch, len)` and the sampler's own parameters, so a resumed
/// run sees exactly the batches the uninterrupted run would have seen.
pub trait Sampler: Send + Sync {
    /// The dataset indices of `epoch`, in visiting order.
    fn indices(&self, epoch: u64, len: usize) -> Vec<usize>;
}

/// Visits `0..len` in order every epoch (evaluation, feature extraction).
#[derive(Debug, Clone, Copy, Default)]
pub struct SequentialSampler;

impl Sampler for SequentialSampler {
    fn indices(&self, _epoch: u64, len: usize) -> Vec<usize> {
        (0..len).collect()
    }
}

/// A fresh seeded permutation every epoch.
///
/// ```
/// use ssl_core::data::{RandomSampler, Sampler};
/// let s = RandomSampler::new(7);
/// let mut e0 = s.indices(0, 10);
/// assert_eq!(e0, s.indices(0, 10));      // same epoch, same order
/// assert_ne!(e0, s.indices(1, 10));      // a new order each epoch
/// e0.sort();
/// assert_eq!(e0, (0..10).collect::<Vec<_>>());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RandomSampler {
    seed: u64,
}

impl RandomSampler {
    /// A sampler shuffling with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }
}

impl Sampler for RandomSampler {
    fn indices(&self, epoch: u64, len: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..len).collect();
        order.shuffle(&mut rng_for(self.seed, "shuffle", &[epoch]));
        order
    }
}

/// One process's share of another sampler's order, for data-parallel training.
///
/// Like PyTorch's `DistributedSampler`: the epoch order is padded by wrapping around to a
/// multiple of `world_size`, and rank `r` takes positions `r, r + world, r + 2·world, ...`, so
/// every rank gets the same number of samples and together they cover the whole dataset.
///
/// ```
/// use ssl_core::data::{Sampler, SequentialSampler, ShardedSampler};
/// let a = ShardedSampler::new(SequentialSampler, 0, 2).unwrap();
/// let b = ShardedSampler::new(SequentialSampler, 1, 2).unwrap();
/// assert_eq!(a.indices(0, 5), vec![0, 2, 4]);
/// assert_eq!(b.indices(0, 5), vec![1, 3, 0]);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ShardedSampler<S> {
    inner: S,
    rank: usize,
    world_size: usize,
}

impl<S: Sampler> ShardedSampler<S> {
    /// Shards `inner` for process `rank` of `world_size`.
    pub fn new(inner: S, rank: usize, world_size: usize) -> crate::Result<Self> {
        if world_size == 0 || rank >= world_size {
            return Err(crate::Error::invalid("rank", format!("rank {rank} is not in 0..{world_size}")));
        }
        Ok(Self { inner, rank, world_size })
    }
}

impl<S: Sampler> Sampler for ShardedSampler<S> {
    fn indices(&self, epoch: u64, len: usize) -> Vec<usize> {
        let order = self.inner.indices(epoch, len);
        if order.is_empty() {
            return order;
        }
        let per_rank = order.len().div_ceil(self.world_size);
        (0..per_rank).map(|i| order[(i * self.world_size + self.rank) % order.len()]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn random_sampler_is_a_seeded_permutation(seed: u64, epoch in 0u64..100, len in 0usize..300) {
            let s = RandomSampler::new(seed);
            let order = s.indices(epoch, len);
            prop_assert_eq!(&order, &s.indices(epoch, len));
            let mut sorted = order.clone();
            sorted.sort_unstable();
            prop_assert_eq!(sorted, (0..len).collect::<Vec<_>>());
        }

        #[test]
        fn shards_are_equal_sized_and_cover_everything(
            seed: u64, epoch in 0u64..10, len in 1usize..200, world in 1usize..9
        ) {
            let shards: Vec<Vec<usize>> = (0..world)
                .map(|r| ShardedSampler::new(RandomSampler::new(seed), r, world).unwrap().indices(epoch, len))
                .collect();
            let per = len.div_ceil(world);
            let mut seen = vec![0usize; len];
            for s in &shards {
                prop_assert_eq!(s.len(), per);
                for &i in s { seen[i] += 1; }
            }
            // Every index at least once; padding repeats at most world-1 of them once more.
            prop_assert!(seen.iter().all(|&c| c >= 1));
            prop_assert_eq!(seen.iter().sum::<usize>(), per * world);
            prop_assert!(seen.iter().filter(|&&c| c > 1).count() < world.max(1));
        }
    }

    #[test]
    fn bad_rank_is_an_error() {
        assert!(ShardedSampler::new(SequentialSampler, 2, 2).is_err());
        assert!(ShardedSampler::new(SequentialSampler, 0, 0).is_err());
    }
}
