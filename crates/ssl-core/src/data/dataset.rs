use crate::error::{Error, Result};
use crate::rng::SslRng;

/// Random access to the samples of a data source.
///
/// `get` is called from several threads at once; implementations read files lazily or hold
/// decoded samples in memory. A sample that cannot be read is an [`Error::Data`] naming the
/// file (or the index), never a panic.
pub trait Dataset: Send + Sync {
    /// One sample as stored (decoded image, token ids, waveform, feature vector, ...).
    type Item: Send;
    /// The number of samples.
    fn len(&self) -> usize;
    /// Whether the dataset has no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The sample at `index` (`index < len()`).
    fn get(&self, index: usize) -> Result<Self::Item>;
}

/// Turns dataset items into a batch: `prepare` runs per sample, in parallel, with a generator
/// seeded from `(seed, epoch, index)` (augmentations, views, masking); `collate` stacks the
/// prepared samples into the batch type an objective consumes.
pub trait BatchBuilder<I>: Send + Sync {
    /// A prepared sample (for example two augmented views).
    type Sample: Send;
    /// The collated batch.
    type Batch: crate::data::Batch;
    /// Prepares one sample; `rng` is private to this sample and this epoch.
    fn prepare(&self, item: I, rng: &mut SslRng) -> Result<Self::Sample>;
    /// Collates prepared samples, in sampler order, into a batch.
    fn collate(&self, samples: Vec<Self::Sample>) -> Result<Self::Batch>;
}

/// A dataset held in memory as a vector of cloneable items.
///
/// ```
/// use ssl_core::data::{Dataset, InMemoryDataset};
/// let ds = InMemoryDataset::new("toy", vec![1.0f32, 2.0, 3.0]).unwrap();
/// assert_eq!(ds.len(), 3);
/// assert_eq!(ds.get(1).unwrap(), 2.0);
/// assert!(ds.get(3).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct InMemoryDataset<T> {
    name: String,
    items: Vec<T>,
}

impl<T: Clone + Send + Sync> InMemoryDataset<T> {
    /// Wraps `items`; an empty vector is an error naming the dataset.
    pub fn new(name: impl Into<String>, items: Vec<T>) -> Result<Self> {
        let name = name.into();
        if items.is_empty() {
            return Err(Error::data(name, "the dataset is empty"));
        }
        Ok(Self { name, items })
    }

    /// The items.
    pub fn items(&self) -> &[T] {
        &self.items
    }
}

impl<T: Clone + Send + Sync> Dataset for InMemoryDataset<T> {
    type Item = T;
    fn len(&self) -> usize {
        self.items.len()
    }
    fn get(&self, index: usize) -> Result<T> {
        self.items.get(index).cloned().ok_or_else(|| {
            Error::data(
                format!("{}[{index}]", self.name),
                format!("index out of range (len {})", self.items.len()),
            )
        })
    }
}
