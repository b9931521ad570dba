//! Datasets, samplers, batching and the parallel, prefetching [`DataLoader`].
//!
//! Data flows: a [`Dataset`] gives random access to samples; a [`Sampler`] fixes the order of an
//! epoch (seeded, shardable across processes); the [`DataLoader`] cuts that order into batches,
//! prepares the samples of a batch in parallel with rayon (each with its own seeded generator, so
//! augmentations do not depend on the number of threads), collates them with a [`BatchBuilder`],
//! and keeps a few batches ready on a background thread.

mod batch;
mod dataset;
mod loader;
mod sampler;

pub use batch::Batch;
pub use dataset::{BatchBuilder, Dataset, InMemoryDataset};
pub use loader::{BatchIter, DataLoader, LoaderConfig, LoaderPosition, Shard};
pub use sampler::{RandomSampler, Sampler, SequentialSampler, ShardedSampler};
