use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{BatchBuilder, Dataset, Sampler};
use crate::error::{Error, Result};
use crate::rng::rng_for;

/// How a [`DataLoader`] batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoaderConfig {
    /// Samples per batch.
    pub batch_size: usize,
    /// Drop the last, incomplete batch of each epoch (default: true for training, so every step
    /// sees the same batch size, which contrastive losses and BatchNorm rely on).
    pub drop_last: bool,
    /// Batches prepared ahead on a background thread (0 = prepare on the caller's thread).
    pub prefetch: usize,
    /// Seed of the per-sample generators handed to [`BatchBuilder::prepare`].
    pub seed: u64,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self { batch_size: 256, drop_last: true, prefetch: 2, seed: 0 }
    }
}

/// Where a loader is in its stream of batches: the next batch is batch `batch` of epoch `epoch`.
/// Saved in checkpoints so a resumed run continues with the very next batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LoaderPosition {
    /// The epoch (0-based).
    pub epoch: u64,
    /// The batch within the epoch (0-based).
    pub batch: u64,
}

/// One process's share of a data-parallel job: rank `rank` of `world` takes the `rank`-th
/// `batch_size` samples of every global batch of `batch_size · world` (see
/// [`DataLoader::iter_sharded`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This process's rank, `0..world`.
    pub rank: usize,
    /// The number of processes.
    pub world: usize,
}

impl Shard {
    /// The whole stream: one process.
    pub const WHOLE: Shard = Shard { rank: 0, world: 1 };
}

/// Cuts a sampler's order into batches, prepares samples in parallel, prefetches.
///
/// ```
/// use ssl_core::data::{BatchBuilder, DataLoader, InMemoryDataset, LoaderConfig, LoaderPosition, SequentialSampler};
/// use ssl_core::rng::SslRng;
/// use ssl_core::tch::Tensor;
///
/// struct Stack;
/// impl BatchBuilder<f32> for Stack {
///     type Sample = f32;
///     type Batch = Tensor;
///     fn prepare(&self, x: f32, _rng: &mut SslRng) -> ssl_core::Result<f32> { Ok(x * 2.0) }
///     fn collate(&self, xs: Vec<f32>) -> ssl_core::Result<Tensor> { Ok(Tensor::from_slice(&xs)) }
/// }
///
/// let ds = InMemoryDataset::new("toy", (0..5).map(|i| i as f32).collect()).unwrap();
/// let cfg = LoaderConfig { batch_size: 2, drop_last: false, ..Default::default() };
/// let loader = DataLoader::new(ds, Stack, SequentialSampler, cfg).unwrap();
/// assert_eq!(loader.batches_per_epoch(), 3);
/// let sizes: Vec<i64> = loader.epoch(0).map(|b| b.unwrap().1.size()[0]).collect();
/// assert_eq!(sizes, vec![2, 2, 1]);
/// ```
pub struct DataLoader<D, B, S> {
    dataset: Arc<D>,
    builder: Arc<B>,
    sampler: Arc<S>,
    config: LoaderConfig,
}

impl<D, B, S> DataLoader<D, B, S>
where
    D: Dataset + 'static,
    B: BatchBuilder<D::Item> + 'static,
    S: Sampler + 'static,
{
    /// A loader over `dataset`; an empty dataset, a zero batch size, or (with `drop_last`) fewer
    /// samples than one batch are errors naming the problem.
    pub fn new(dataset: D, builder: B, sampler: S, config: LoaderConfig) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(Error::config("batch_size", "must be at least 1"));
        }
        let n = dataset.len();
        if n == 0 {
            return Err(Error::data("dataset", "the dataset is empty"));
        }
        let probe = sampler.indices(0, n).len();
        if config.drop_last && probe < config.batch_size {
            return Err(Error::config(
                "batch_size",
                format!(
                    "batch size {} exceeds the {probe} samples an epoch has (with drop_last no batch would be formed)",
                    config.batch_size
                ),
            ));
        }
        Ok(Self {
            dataset: Arc::new(dataset),
            builder: Arc::new(builder),
            sampler: Arc::new(sampler),
            config,
        })
    }

    /// The loader's configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// The dataset.
    pub fn dataset(&self) -> &D {
        &self.dataset
    }

    /// Batches in one epoch.
    pub fn batches_per_epoch(&self) -> u64 {
        let n = self.sampler.indices(0, self.dataset.len()).len();
        let bs = self.config.batch_size;
        (if self.config.drop_last { n / bs } else { n.div_ceil(bs) }) as u64
    }

    /// An endless stream of batches starting at `position`, crossing epochs. Each item carries
    /// the position *after* that batch (what a checkpoint taken then must store).
    pub fn iter_from(&self, position: LoaderPosition) -> BatchIter<B::Batch> {
        self.spawn(position, None)
    }

    /// The batches of one epoch, in order.
    pub fn epoch(&self, epoch: u64) -> BatchIter<B::Batch> {
        self.spawn(LoaderPosition { epoch, batch: 0 }, Some(epoch))
    }

    /// [`iter_from`](Self::iter_from) for one process of a data-parallel job: the sampler's
    /// order (the same on every rank: it depends on the seed and the epoch only) is cut into
    /// global batches of `batch_size · world`, and this rank gets samples
    /// `rank·batch_size .. (rank+1)·batch_size` of each, so `world` processes together see
    /// exactly the batches one process with `batch_size · world` would, with the same
    /// augmentations (per-sample seeds do not depend on the rank). Positions count global
    /// batches, so checkpoints resume the same way. With more than one process an incomplete
    /// last global batch is always dropped, so every rank takes the same number of steps.
    ///
    /// ```
    /// use ssl_core::data::{DataLoader, InMemoryDataset, LoaderConfig, LoaderPosition, SequentialSampler, Shard};
    /// # use ssl_core::data::BatchBuilder;
    /// # use ssl_core::tch::Tensor;
    /// # struct Ids;
    /// # impl BatchBuilder<i64> for Ids {
    /// #     type Sample = i64;
    /// #     type Batch = Tensor;
    /// #     fn prepare(&self, x: i64, _: &mut ssl_core::rng::SslRng) -> ssl_core::Result<i64> { Ok(x) }
    /// #     fn collate(&self, xs: Vec<i64>) -> ssl_core::Result<Tensor> { Ok(Tensor::from_slice(&xs)) }
    /// # }
    /// let ds = InMemoryDataset::new("ids", (0..8i64).collect()).unwrap();
    /// let cfg = LoaderConfig { batch_size: 2, ..Default::default() };
    /// let loader = DataLoader::new(ds, Ids, SequentialSampler, cfg).unwrap();
    /// let mut rank1 = loader.iter_sharded(LoaderPosition::default(), Shard { rank: 1, world: 2 }).unwrap();
    /// let first: Vec<i64> = Vec::try_from(rank1.next().unwrap().unwrap().1).unwrap();
    /// assert_eq!(first, [2, 3]); // global batch 0 is samples 0..4
    /// ```
    pub fn iter_sharded(&self, position: LoaderPosition, shard: Shard) -> Result<BatchIter<B::Batch>> {
        if shard.world == 0 || shard.rank >= shard.world {
            return Err(Error::invalid(
                "shard",
                format!("rank {} of a world of {}", shard.rank, shard.world),
            ));
        }
        let n = self.sampler.indices(0, self.dataset.len()).len();
        let global = self.config.batch_size.saturating_mul(shard.world);
        if shard.world > 1 && n < global {
            return Err(Error::config(
                "batch_size",
                format!(
                    "{} processes x batch size {} = {global} exceeds the {n} samples an epoch has",
                    shard.world, self.config.batch_size
                ),
            ));
        }
        Ok(self.spawn_shard(position, None, shard))
    }

    fn producer(&self, position: LoaderPosition, only_epoch: Option<u64>, shard: Shard) -> Producer<D, B, S> {
        Producer {
            shard,
            dataset: Arc::clone(&self.dataset),
            builder: Arc::clone(&self.builder),
            sampler: Arc::clone(&self.sampler),
            config: self.config.clone(),
            position,
            only_epoch,
            order: None,
        }
    }

    fn spawn(&self, start: LoaderPosition, only_epoch: Option<u64>) -> BatchIter<B::Batch> {
        self.spawn_shard(start, only_epoch, Shard::WHOLE)
    }

    fn spawn_shard(
        &self,
        start: LoaderPosition,
        only_epoch: Option<u64>,
        shard: Shard,
    ) -> BatchIter<B::Batch> {
        let inline = || BatchIter {
            inner: Inner::Inline(Box::new(self.producer(start, only_epoch, shard))),
            stop: None,
            handle: None,
        };
        // The caller's thread keeps its libtorch thread count: settle it before the loader's
        // threads set theirs (see `single_threaded_torch`).
        let _ = tch::get_num_threads();
        if self.config.prefetch == 0 {
            return inline();
        }
        let (tx, rx) = sync_channel(self.config.prefetch);
        let stop = Arc::new(AtomicBool::new(false));
        let stop_thread = Arc::clone(&stop);
        let mut producer = self.producer(start, only_epoch, shard);
        let spawned = std::thread::Builder::new().name("ssl-loader".into()).spawn(move || {
            single_threaded_torch();
            while !stop_thread.load(Ordering::Relaxed) {
                let Some(item) = producer.next_batch() else { break };
                let failed = item.is_err();
                if tx.send(item).is_err() || failed {
                    break;
                }
            }
        });
        match spawned {
            Ok(handle) => BatchIter { inner: Inner::Threaded(rx), stop: Some(stop), handle: Some(handle) },
            // No thread to be had: prepare batches on the caller's thread instead.
            Err(_) => inline(),
        }
    }
}

struct Producer<D, B, S> {
    dataset: Arc<D>,
    builder: Arc<B>,
    sampler: Arc<S>,
    config: LoaderConfig,
    shard: Shard,
    position: LoaderPosition,
    only_epoch: Option<u64>,
    /// The order of `position.epoch`, computed once per epoch.
    order: Option<(u64, Vec<usize>)>,
}

impl<D, B, S> Producer<D, B, S>
where
    D: Dataset,
    B: BatchBuilder<D::Item>,
    S: Sampler,
{
    fn next_batch(&mut self) -> Option<Result<(LoaderPosition, B::Batch)>> {
        let bs = self.config.batch_size;
        loop {
            let epoch = self.position.epoch;
            if self.only_epoch.is_some_and(|e| e != epoch) {
                return None;
            }
            if self.order.as_ref().is_none_or(|(e, _)| *e != epoch) {
                self.order = Some((epoch, self.sampler.indices(epoch, self.dataset.len())));
            }
            let order = &self.order.as_ref()?.1;
            let Shard { rank, world } = self.shard;
            let global = bs * world;
            let global_start = (self.position.batch as usize).saturating_mul(global);
            let global_end = global_start.saturating_add(global).min(order.len());
            let start = global_start.saturating_add(rank * bs).min(global_end);
            let end = (start + bs).min(global_end);
            let full = global_end.saturating_sub(global_start) == global;
            if start < end && (full || (world == 1 && !self.config.drop_last)) {
                let indices = &order[start..end];
                let batch = build_batch(&*self.dataset, &*self.builder, self.config.seed, epoch, indices);
                self.position.batch += 1;
                return Some(batch.map(|b| (self.position, b)));
            }
            self.position = LoaderPosition { epoch: epoch + 1, batch: 0 };
        }
    }
}

/// Makes libtorch single-threaded on the current thread (once per thread): the loader's
/// threads (its prefetch thread and rayon's workers) are parallel already, and a libtorch op
/// that opened its own OpenMP team on each of them would leave more OpenMP threads than cores.
/// libgomp then stops spinning between parallel regions and puts its threads to sleep, so
/// every small op of the training thread pays a futex wake-up (measured: without this, CPC's
/// model step at 2 threads ran at 46 samples/s instead of 78).
///
/// Only this thread's OpenMP setting changes (`omp_set_num_threads`, found in the OpenMP
/// runtime libtorch loaded). `at::set_num_threads` is not used: it also stores the count as
/// the process-wide default that every thread touching libtorch later starts from, so the
/// training thread of the next run, or a user's own thread, would silently run one-threaded
/// (and reduce in a different order). libtorch's lazy per-thread initialisation runs first,
/// so it cannot later undo the setting. Without an OpenMP runtime this does nothing.
fn single_threaded_torch() {
    thread_local! {
        static DONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    DONE.with(|done| {
        if !done.get() {
            let _ = tch::get_num_threads();
            omp::set_this_threads_count(1);
            done.set(true);
        }
    });
}

/// The one OpenMP call the loader makes, looked up once in the running process.
#[allow(unsafe_code)]
mod omp {
    use std::os::raw::c_int;
    use std::sync::OnceLock;

    type SetNumThreads = unsafe extern "C" fn(c_int);

    fn lookup() -> Option<SetNumThreads> {
        // libtorch_cpu needs its OpenMP runtime, so it is loaded (in the global scope) by now.
        let this = libloading::os::unix::Library::this();
        // SAFETY: `omp_set_num_threads` has this signature in every OpenMP runtime (libgomp,
        // libiomp5, libomp: OpenMP API 5.2 §3.2.1); the copied pointer stays valid because the
        // runtime is never unloaded while libtorch is mapped.
        let f = unsafe { this.get::<SetNumThreads>(b"omp_set_num_threads\0") }.ok().map(|s| *s);
        std::mem::forget(this);
        f
    }

    /// Sets the calling thread's OpenMP thread count (its `nthreads-var`), nothing else.
    pub(super) fn set_this_threads_count(n: c_int) {
        static SET: OnceLock<Option<SetNumThreads>> = OnceLock::new();
        if let Some(f) = SET.get_or_init(lookup) {
            // SAFETY: the function only writes the calling thread's internal control variable.
            unsafe { f(n.max(1)) }
        }
    }
}

fn build_batch<D: Dataset, B: BatchBuilder<D::Item>>(
    dataset: &D,
    builder: &B,
    seed: u64,
    epoch: u64,
    indices: &[usize],
) -> Result<B::Batch> {
    let samples = indices
        .par_iter()
        .map(|&i| {
            single_threaded_torch();
            let mut rng = rng_for(seed, "sample", &[epoch, i as u64]);
            builder.prepare(dataset.get(i)?, &mut rng)
        })
        .collect::<Result<Vec<_>>>()?;
    builder.collate(samples)
}

enum Inner<T> {
    Threaded(Receiver<Result<(LoaderPosition, T)>>),
    Inline(Box<dyn InlineProducer<T>>),
}

trait InlineProducer<T>: Send {
    fn produce(&mut self) -> Option<Result<(LoaderPosition, T)>>;
}

impl<D, B, S> InlineProducer<B::Batch> for Producer<D, B, S>
where
    D: Dataset,
    B: BatchBuilder<D::Item>,
    S: Sampler,
{
    fn produce(&mut self) -> Option<Result<(LoaderPosition, B::Batch)>> {
        self.next_batch()
    }
}

/// Iterator over `(position after the batch, batch)`; the first error ends it.
/// Dropping it stops the background thread.
pub struct BatchIter<T> {
    inner: Inner<T>,
    stop: Option<Arc<AtomicBool>>,
    handle: Option<JoinHandle<()>>,
}

impl<T> Iterator for BatchIter<T> {
    type Item = Result<(LoaderPosition, T)>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            Inner::Threaded(rx) => rx.recv().ok(),
            Inner::Inline(p) => p.produce(),
        }
    }
}

impl<T> Drop for BatchIter<T> {
    fn drop(&mut self) {
        if let Some(stop) = &self.stop {
            stop.store(true, Ordering::Relaxed);
        }
        // Unblock a producer waiting on a full channel, then wait for it.
        if let Inner::Threaded(rx) = &self.inner {
            while rx.try_recv().is_ok() {}
        }
        self.inner = Inner::Inline(Box::new(Exhausted));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

struct Exhausted;
impl<T> InlineProducer<T> for Exhausted {
    fn produce(&mut self) -> Option<Result<(LoaderPosition, T)>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{InMemoryDataset, RandomSampler, SequentialSampler};
    use crate::rng::SslRng;
    use proptest::prelude::*;
    use rand::Rng;

    /// Emits (index, a random draw) so tests can see order and per-sample seeding.
    struct Tag;
    impl BatchBuilder<u32> for Tag {
        type Sample = (u32, u32);
        type Batch = tch::Tensor;
        fn prepare(&self, x: u32, rng: &mut SslRng) -> Result<(u32, u32)> {
            if x == 999 {
                return Err(Error::data(format!("sample {x}"), "corrupt"));
            }
            Ok((x, rng.gen()))
        }
        fn collate(&self, xs: Vec<(u32, u32)>) -> Result<tch::Tensor> {
            let flat: Vec<i64> = xs.iter().flat_map(|&(a, b)| [i64::from(a), i64::from(b)]).collect();
            Ok(tch::Tensor::from_slice(&flat).view([-1, 2]))
        }
    }

    /// Records libtorch's thread count where samples are prepared and batches collated.
    struct Threads;
    impl BatchBuilder<u32> for Threads {
        type Sample = i64;
        type Batch = tch::Tensor;
        fn prepare(&self, _: u32, _: &mut SslRng) -> Result<i64> {
            Ok(i64::from(tch::get_num_threads()))
        }
        fn collate(&self, mut xs: Vec<i64>) -> Result<tch::Tensor> {
            xs.push(i64::from(tch::get_num_threads()));
            Ok(tch::Tensor::from_slice(&xs))
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Ranks' batches, side by side, are the one-process batches of `batch · world`.
        #[test]
        fn shards_of_a_global_batch_are_the_one_process_batch(
            n in 1u32..40, bs in 1usize..5, world in 1usize..4, start in 0u64..3
        ) {
            let ds = || InMemoryDataset::new("n", (0..n).collect()).unwrap();
            let cfg = |batch_size| LoaderConfig { batch_size, drop_last: true, prefetch: 0, seed: 9 };
            let whole = DataLoader::new(ds(), Tag, RandomSampler::new(2), cfg(bs * world));
            let Ok(whole) = whole else { return Ok(()) }; // fewer samples than one global batch
            let part = DataLoader::new(ds(), Tag, RandomSampler::new(2), cfg(bs)).unwrap();
            let from = LoaderPosition { epoch: start, batch: 0 };
            let expected = collect(whole.iter_from(from), 5);
            let shards: Vec<_> = (0..world)
                .map(|rank| collect(part.iter_sharded(from, Shard { rank, world }).unwrap(), 5))
                .collect();
            for (i, (pos, batch)) in expected.iter().enumerate() {
                let joined: Vec<i64> = shards.iter().flat_map(|s| s[i].1.clone()).collect();
                proptest::prop_assert_eq!(&joined, batch);
                proptest::prop_assert!(shards.iter().all(|s| s[i].0 == *pos));
            }
        }
    }

    #[test]
    fn a_global_batch_larger_than_the_dataset_is_refused() {
        let ds = InMemoryDataset::new("n", (0..6u32).collect()).unwrap();
        let cfg = LoaderConfig { batch_size: 4, drop_last: true, prefetch: 0, seed: 0 };
        let loader = DataLoader::new(ds, Tag, RandomSampler::new(0), cfg).unwrap();
        let e = loader.iter_sharded(LoaderPosition::default(), Shard { rank: 0, world: 2 }).err().unwrap();
        assert!(e.to_string().contains("2 processes x batch size 4"), "{e}");
        assert!(loader.iter_sharded(LoaderPosition::default(), Shard { rank: 2, world: 2 }).is_err());
    }

    #[test]
    fn threads_started_after_a_loader_keep_libtorchs_default_thread_count() {
        let fresh = || std::thread::spawn(tch::get_num_threads).join().unwrap();
        let default = fresh();
        let ds = InMemoryDataset::new("n", (0..16u32).collect()).unwrap();
        let cfg = LoaderConfig { batch_size: 4, drop_last: true, prefetch: 2, seed: 0 };
        let loader = DataLoader::new(ds, Threads, SequentialSampler, cfg).unwrap();
        let seen: Vec<i64> =
            loader.epoch(0).flat_map(|b| Vec::<i64>::try_from(b.unwrap().1).unwrap()).collect();
        assert!(seen.iter().all(|&t| t == 1), "{seen:?}");
        assert_eq!(fresh(), default, "a thread that first uses libtorch after the loader ran");
    }

    #[test]
    fn loader_threads_run_libtorch_single_threaded_and_leave_the_caller_alone() {
        let before = tch::get_num_threads();
        let ds = InMemoryDataset::new("n", (0..16u32).collect()).unwrap();
        let cfg = LoaderConfig { batch_size: 4, drop_last: true, prefetch: 2, seed: 0 };
        let loader = DataLoader::new(ds, Threads, SequentialSampler, cfg).unwrap();
        let seen: Vec<i64> =
            loader.epoch(0).flat_map(|b| Vec::<i64>::try_from(b.unwrap().1).unwrap()).collect();
        assert_eq!(seen.len(), 4 * 5, "4 batches of 4 samples and the collating thread");
        assert!(seen.iter().all(|&t| t == 1), "{seen:?}");
        assert_eq!(tch::get_num_threads(), before, "the caller keeps its thread count");
    }

    fn loader(
        n: u32,
        bs: usize,
        drop_last: bool,
        prefetch: usize,
    ) -> DataLoader<InMemoryDataset<u32>, Tag, RandomSampler> {
        let ds = InMemoryDataset::new("t", (0..n).collect()).unwrap();
        let cfg = LoaderConfig { batch_size: bs, drop_last, prefetch, seed: 3 };
        DataLoader::new(ds, Tag, RandomSampler::new(5), cfg).unwrap()
    }

    fn collect(it: BatchIter<tch::Tensor>, n: usize) -> Vec<(LoaderPosition, Vec<i64>)> {
        it.take(n)
            .map(|r| {
                let (p, t) = r.unwrap();
                (p, Vec::<i64>::try_from(t.flatten(0, -1)).unwrap())
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn resuming_mid_stream_gives_the_same_batches(
            n in 1u32..40, bs in 1usize..8, drop_last: bool, skip in 0usize..12, prefetch in 0usize..3
        ) {
            prop_assume!(!drop_last || n as usize >= bs);
            let l = loader(n, bs, drop_last, prefetch);
            let all = collect(l.iter_from(LoaderPosition::default()), skip + 6);
            let resume_at = if skip == 0 { LoaderPosition::default() } else { all[skip - 1].0 };
            let resumed = collect(l.iter_from(resume_at), 6);
            prop_assert_eq!(&all[skip..], &resumed[..]);
        }

        #[test]
        fn an_epoch_visits_each_sample_once(n in 1u32..50, bs in 1usize..9, drop_last: bool) {
            prop_assume!(!drop_last || n as usize >= bs);
            let l = loader(n, bs, drop_last, 1);
            let mut seen: Vec<i64> = collect(l.epoch(2), usize::MAX)
                .into_iter()
                .flat_map(|(_, v)| v.chunks(2).map(|c| c[0]).collect::<Vec<_>>())
                .collect();
            let expected = if drop_last { (n as usize / bs) * bs } else { n as usize };
            prop_assert_eq!(seen.len(), expected);
            prop_assert_eq!(l.batches_per_epoch() as usize, if drop_last { n as usize / bs } else { (n as usize).div_ceil(bs) });
            seen.sort_unstable();
            seen.dedup();
            prop_assert_eq!(seen.len(), expected);
        }
    }

    #[test]
    fn per_sample_randomness_does_not_depend_on_threads_or_prefetch() {
        let a = collect(loader(30, 4, true, 0).epoch(1), 100);
        let b = collect(loader(30, 4, true, 3).epoch(1), 100);
        assert_eq!(a, b);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let c = pool.install(|| collect(loader(30, 4, true, 0).epoch(1), 100));
        assert_eq!(a, c);
    }

    #[test]
    fn errors_name_the_sample_and_end_the_stream() {
        let ds = InMemoryDataset::new("t", vec![1u32, 999, 3, 4]).unwrap();
        let cfg = LoaderConfig { batch_size: 4, drop_last: true, prefetch: 2, seed: 0 };
        let l = DataLoader::new(ds, Tag, SequentialSampler, cfg).unwrap();
        let mut it = l.iter_from(LoaderPosition::default());
        let err = it.next().unwrap().err().unwrap().to_string();
        assert!(err.contains("sample 999"), "{err}");
        assert!(it.next().is_none());
    }

    #[test]
    fn bad_configs_are_rejected() {
        let ds = || InMemoryDataset::new("t", vec![1u32, 2, 3]).unwrap();
        let cfg = |bs, drop_last| LoaderConfig { batch_size: bs, drop_last, prefetch: 0, seed: 0 };
        assert!(DataLoader::new(ds(), Tag, SequentialSampler, cfg(0, false)).is_err());
        let e = DataLoader::new(ds(), Tag, SequentialSampler, cfg(4, true)).err().unwrap().to_string();
        assert!(e.contains("batch_size"), "{e}");
        assert!(DataLoader::new(ds(), Tag, SequentialSampler, cfg(4, false)).is_ok());
    }

    #[test]
    fn dropping_an_endless_iterator_stops_its_thread() {
        let l = loader(20, 2, true, 2);
        let mut it = l.iter_from(LoaderPosition::default());
        assert!(it.next().is_some());
        drop(it); // must not hang
    }
}
