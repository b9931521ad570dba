//! Weighted k-nearest-neighbour classification on L2-normalised features.
//!
//! The non-parametric evaluation of Wu et al. 2018 ("Unsupervised Feature Learning via
//! Non-Parametric Instance Discrimination", InstDisc), popularised by DINO's `eval_knn.py`: each
//! test sample takes its `k` most cosine-similar train samples, each neighbour votes for its
//! class with weight `exp(similarity / T)`, and the class with the largest total wins. It needs
//! no training and no hyper-parameter search, so it is a cheap, stable signal during pretraining.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::train_util::{num_classes, rows};
use super::{correct_topk, validate_labelled};
use crate::{Error, Result};

/// Hyper-parameters of [`knn_classify`]; every field has a default, unknown fields are errors.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KnnConfig {
    /// Neighbour counts to evaluate, one result each. Default `[20, 200]`: 20 is the k DINO
    /// reports, 200 the one InstDisc used. All are served by one neighbour search.
    pub ks: Vec<usize>,
    /// Temperature `T` of the vote weights `exp(similarity / T)`. Default 0.1; DINO and
    /// solo-learn use 0.07, InstDisc's `τ`. Smaller values trust the closest neighbours more.
    pub temperature: f64,
    /// Test rows per similarity block; memory is `chunk_size × n_train` floats. Default 256.
    pub chunk_size: usize,
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self { ks: vec![20, 200], temperature: 0.1, chunk_size: 256 }
    }
}

impl KnnConfig {
    /// Checks every field's range; errors name the field as `knn.<field>`.
    pub fn validate(&self) -> Result<()> {
        if self.ks.is_empty() {
            return Err(Error::config("knn.ks", "needs at least one k"));
        }
        if self.ks.contains(&0) {
            return Err(Error::config("knn.ks", "every k must be at least 1"));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(Error::config("knn.temperature", format!("must be > 0, got {}", self.temperature)));
        }
        if self.chunk_size == 0 {
            return Err(Error::config("knn.chunk_size", "must be at least 1"));
        }
        Ok(())
    }
}

/// The accuracy for one `k`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct KnnResult {
    /// The `k` requested in [`KnnConfig::ks`] (at most `n_train` neighbours are actually used).
    pub k: usize,
    /// Top-1 accuracy on the test split, in `[0, 1]`.
    pub top1: f64,
}

/// What [`knn_classify`] measured: one result per requested `k`, in the order of
/// [`KnnConfig::ks`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct KnnReport {
    /// One entry per requested `k`.
    pub results: Vec<KnnResult>,
}

impl KnnReport {
    /// The top-1 accuracy for `k`, if it was requested.
    pub fn top1(&self, k: usize) -> Option<f64> {
        self.results.iter().find(|r| r.k == k).map(|r| r.top1)
    }
}

/// Classifies every test row by a weighted vote of its nearest train rows and reports top-1
/// accuracy for each `k` in `cfg.ks`.
///
/// Features are `[N, D]` floating point and labels `[N]` int64 (see [`validate_labelled`];
/// errors name the "kNN train split" or "kNN test split"). Rows are L2-normalised, so
/// similarity is cosine similarity; the test split is processed `cfg.chunk_size` rows at a time
/// on `device`, so memory stays bounded by `chunk_size × n_train`. A `k` larger than the train
/// split is clamped to `n_train` (every train row votes); the report still records the `k`
/// requested. Weights are computed as `exp((s - s_max) / T)`, the same vote up to a per-row
/// factor, so a small temperature cannot overflow. Deterministic: no randomness is involved.
///
/// ```
/// use ssl_core::eval::{knn_classify, KnnConfig};
/// use ssl_core::tch::Tensor;
/// // Two far neighbours of class 0 against one very close neighbour of class 1.
/// let train = Tensor::from_slice(&[1.0f32, 0.5, 1.0, -0.5, 1.0, 0.1]).view([3, 2]);
/// let labels = Tensor::from_slice(&[0i64, 0, 1]);
/// let query = Tensor::from_slice(&[1.0f32, 0.0]).view([1, 2]);
/// let truth = Tensor::from_slice(&[1i64]);
/// let vote = |temperature| {
///     let cfg = KnnConfig { ks: vec![3], temperature, ..Default::default() };
///     knn_classify(&train, &labels, &query, &truth, &cfg, ssl_core::tch::Device::Cpu)
/// };
/// assert_eq!(vote(0.01)?.top1(3), Some(1.0)); // the close neighbour dominates
/// assert_eq!(vote(100.0)?.top1(3), Some(0.0)); // almost a plain majority vote
/// # Ok::<(), ssl_core::Error>(())
/// ```
pub fn knn_classify(
    train_x: &Tensor,
    train_y: &Tensor,
    test_x: &Tensor,
    test_y: &Tensor,
    cfg: &KnnConfig,
    device: Device,
) -> Result<KnnReport> {
    cfg.validate()?;
    validate_labelled(train_x, train_y, "kNN train split")?;
    validate_labelled(test_x, test_y, "kNN test split")?;
    let d = train_x.size()[1];
    if test_x.size()[1] != d {
        return Err(Error::shape("kNN test split features", format!("[N, {d}]"), &test_x.size()));
    }
    let c = num_classes(train_y, test_y)?;
    let (n_train, n_test) = (rows(train_x), rows(test_x));
    let clamp = |k: usize| i64::try_from(k).unwrap_or(i64::MAX).min(n_train);
    let ks: Vec<i64> = cfg.ks.iter().map(|&k| clamp(k)).collect();
    let k_max = ks.iter().copied().max().unwrap_or(1);
    let chunk = i64::try_from(cfg.chunk_size).unwrap_or(i64::MAX);

    let _no_grad = tch::no_grad_guard();
    let bank = l2_normalise(&train_x.to_device(device)).tr();
    let bank_labels = train_y.to_device(device);
    let mut correct = vec![0i64; ks.len()];
    let mut start = 0;
    while start < n_test {
        let len = chunk.min(n_test - start);
        let query = l2_normalise(&test_x.narrow(0, start, len).to_device(device));
        let truth = test_y.narrow(0, start, len).to_device(device);
        let (sims, idx) = query.matmul(&bank).topk(k_max, 1, true, true);
        let neighbour_labels = bank_labels.index_select(0, &idx.flatten(0, -1)).view([len, k_max]);
        // Sorted descending, so column 0 holds each row's largest similarity.
        let weights = ((&sims - sims.narrow(1, 0, 1)) / cfg.temperature).exp();
        for (hits, &k) in correct.iter_mut().zip(&ks) {
            let scores = Tensor::zeros([len, c], (Kind::Float, device)).scatter_add(
                1,
                &neighbour_labels.narrow(1, 0, k),
                &weights.narrow(1, 0, k),
            );
            *hits += correct_topk(&scores, &truth, 1);
        }
        start += len;
    }
    let results = cfg
        .ks
        .iter()
        .zip(correct)
        .map(|(&k, hits)| KnnResult { k, top1: hits as f64 / n_test as f64 })
        .collect();
    Ok(KnnReport { results })
}

/// Rows scaled to unit L2 norm, in float32 (an all-zero row stays zero).
fn l2_normalise(x: &Tensor) -> Tensor {
    let x = x.to_kind(Kind::Float);
    let norm = x.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
    x / norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::testutil::{blobs, noise};

    #[test]
    fn separable_blobs_are_classified_almost_perfectly() {
        let (xtr, ytr) = blobs(60, 3, 8, 4.0, 1);
        let (xte, yte) = blobs(30, 3, 8, 4.0, 2);
        let cfg = KnnConfig { chunk_size: 7, ..Default::default() };
        let r = knn_classify(&xtr, &ytr, &xte, &yte, &cfg, Device::Cpu).expect("knn");
        assert_eq!(r.results.iter().map(|r| r.k).collect::<Vec<_>>(), vec![20, 200]);
        for res in &r.results {
            assert!(res.top1 > 0.95, "{r:?}");
        }
    }

    #[test]
    fn random_labels_stay_near_chance() {
        let (xtr, ytr) = noise(200, 2, 8, 3);
        let (xte, yte) = noise(400, 2, 8, 4);
        let r = knn_classify(&xtr, &ytr, &xte, &yte, &KnnConfig::default(), Device::Cpu).expect("knn");
        for res in &r.results {
            assert!(res.top1 < 0.6, "{r:?}");
        }
    }

    /// Query `[1, 0]`; class 0 at `[1, ±0.5]` (cosine 0.894), class 1 at `[1, 0.1]` (0.995).
    fn tiny() -> (Tensor, Tensor, Tensor, Tensor) {
        (
            Tensor::from_slice(&[1.0f32, 0.5, 1.0, -0.5, 1.0, 0.1]).view([3, 2]),
            Tensor::from_slice(&[0i64, 0, 1]),
            Tensor::from_slice(&[1.0f32, 0.0, 1.0, 0.0]).view([2, 2]),
            Tensor::from_slice(&[1i64, 1]),
        )
    }

    #[test]
    fn one_close_neighbour_outvotes_two_far_ones_at_low_temperature() {
        let (xtr, ytr, xte, yte) = tiny();
        let vote = |temperature, ks: Vec<usize>| {
            let cfg = KnnConfig { ks, temperature, chunk_size: 1 };
            knn_classify(&xtr, &ytr, &xte, &yte, &cfg, Device::Cpu).expect("knn")
        };
        // T = 0.001 would overflow exp(s / T) without the max subtraction.
        for t in [0.01, 0.001] {
            assert_eq!(vote(t, vec![3]).top1(3), Some(1.0));
        }
        assert_eq!(vote(100.0, vec![3]).top1(3), Some(0.0));
        // k = 1 sees only the closest neighbour, whatever the temperature.
        assert_eq!(vote(100.0, vec![1]).top1(1), Some(1.0));
    }

    #[test]
    fn k_beyond_the_train_split_is_clamped() {
        let (xtr, ytr, xte, yte) = tiny();
        let cfg = KnnConfig { ks: vec![10, 3], temperature: 0.01, chunk_size: 5 };
        let r = knn_classify(&xtr, &ytr, &xte, &yte, &cfg, Device::Cpu).expect("knn");
        assert_eq!(r.results[0].k, 10);
        assert_eq!(r.top1(10), r.top1(3));
        assert_eq!(r.top1(10), Some(1.0));
        assert_eq!(r.top1(4), None);
    }

    #[test]
    fn same_config_gives_identical_reports_and_errors_are_named() {
        let (xtr, ytr) = noise(50, 3, 4, 1);
        let (xte, yte) = noise(20, 3, 4, 2);
        let run = || {
            let r = knn_classify(&xtr, &ytr, &xte, &yte, &KnnConfig::default(), Device::Cpu);
            serde_json::to_string(&r.expect("knn")).expect("json")
        };
        assert_eq!(run(), run());
        let bad = KnnConfig { ks: vec![], ..Default::default() };
        let e = knn_classify(&xtr, &ytr, &xte, &yte, &bad, Device::Cpu).expect_err("ks");
        assert!(e.to_string().contains("knn.ks"), "{e}");
        let e = knn_classify(&xtr, &ytr, &xte, &yte.to_kind(Kind::Float), &KnnConfig::default(), Device::Cpu)
            .expect_err("float labels");
        assert!(e.to_string().contains("kNN test split"), "{e}");
    }
}
