//! Evaluation shared by every modality: feature extraction, linear probe, weighted kNN and
//! fine-tuning.
//!
//! **Everything here works on tensors, never on images, tokens or audio**: a modality crate
//! turns its held-out data into an input tensor, [`extract_features`] runs any
//! [`Encoder`](crate::Encoder) over it, and the protocols below consume the resulting `[N, D]`
//! features with `[N]` int64 labels. Only [`finetune`] needs the encoder itself.
//!
//! | protocol | what it measures | reference |
//! |---|---|---|
//! | [`linear_probe`] | a softmax-regression head on frozen, standardised features | the linear evaluation protocol of SimCLR / MoCo |
//! | [`knn_classify`] | cosine-similarity weighted k-nearest neighbours | Wu et al. 2018 (InstDisc), DINO's `eval_knn.py` |
//! | [`finetune`] | encoder and a linear head trained end to end | the fine-tuning protocol of SimCLR / MAE |
//! | [`label_efficiency`] | linear probes on stratified labelled subsets (labels per class, percentages), several seeds | the semi-supervised protocols of SimCLR / BYOL (1% and 10% of ImageNet labels) |
//!
//! All randomness is seeded from the `seed` field of the configs, so on CPU the same inputs and
//! config give bit-identical reports. Every report is a small serde struct meant to be written
//! into `summary.json`.
//!
//! ```
//! use ssl_core::eval::{knn_classify, linear_probe, KnnConfig, LinearProbeConfig};
//! use ssl_core::tch::{Device, Kind, Tensor};
//!
//! // Two classes: feature 0 says which.
//! let x = Tensor::from_slice(&[1.0f32, 0.1, 1.1, -0.2, -1.0, 0.3, -0.9, 0.0]).view([4, 2]);
//! let y = Tensor::from_slice(&[1i64, 1, 0, 0]);
//! let cfg = LinearProbeConfig { epochs: 20, ..Default::default() };
//! let probe = linear_probe(&x, &y, &x, &y, &cfg, Device::Cpu)?;
//! assert_eq!(probe.top1, 1.0);
//! assert_eq!(probe.top5, None); // fewer than 5 classes
//!
//! let knn = knn_classify(&x, &y, &x, &y, &KnnConfig { ks: vec![1], ..Default::default() }, Device::Cpu)?;
//! assert_eq!(knn.top1(1), Some(1.0));
//! # Ok::<(), ssl_core::Error>(())
//! ```

mod features;
mod finetune;
mod knn;
pub mod label_efficiency;
mod linear_probe;
mod suite;
mod train_util;

#[cfg(test)]
mod testutil;

pub use features::{extract_features, validate_labelled, Standardizer};
pub use finetune::{finetune, finetune_with_head, FinetuneConfig, FinetuneReport, Finetuned};
pub use knn::{knn_classify, KnnConfig, KnnReport, KnnResult};
pub use linear_probe::{linear_probe, linear_probe_scaled, LinearProbeConfig, LinearProbeReport};
pub use suite::{probe_encoder, probe_features, EvalConfig, ProbeSummary};

use tch::{Kind, Tensor};

/// Top-`k` accuracy of `logits` (`[N, C]`) against `labels` (`[N]`, int64), in `[0, 1]`.
///
/// A sample counts as correct when fewer than `k` other classes score *at least* as high as its
/// label. Ties therefore count against the prediction: constant logits score 0 for `k < C`
/// instead of flattering a collapsed model, and NaN scores never count as correct. With this
/// rule the accuracy is monotone in `k` and is 1 for `k >= C`. Labels outside `0..C` are never
/// correct; `k <= 0` and an empty batch give 0.
///
/// # Panics
/// If `logits` is not 2-D or `labels` is not 1-D with the same `N` (callers validate first).
///
/// ```
/// use ssl_core::eval::accuracy;
/// use ssl_core::tch::Tensor;
/// let logits = Tensor::from_slice(&[0.1f32, 0.7, 0.2, 0.5, 0.3, 0.2]).view([2, 3]);
/// let labels = Tensor::from_slice(&[1i64, 2]);
/// assert_eq!(accuracy(&logits, &labels, 1), 0.5); // sample 0 right, sample 1 wrong
/// assert_eq!(accuracy(&logits, &labels, 3), 1.0);
/// ```
pub fn accuracy(logits: &Tensor, labels: &Tensor, k: i64) -> f64 {
    let n = labels.size().first().copied().unwrap_or(0);
    if n == 0 {
        return 0.0;
    }
    correct_topk(logits, labels, k) as f64 / n as f64
}

/// The number of samples counted correct by [`accuracy`].
pub(crate) fn correct_topk(logits: &Tensor, labels: &Tensor, k: i64) -> i64 {
    let (ls, ys) = (logits.size(), labels.size());
    assert!(
        ls.len() == 2 && ys.len() == 1 && ls[0] == ys[0],
        "accuracy: logits must be [N, C] and labels [N], got {ls:?} and {ys:?}"
    );
    let (n, c) = (ls[0], ls[1]);
    if n == 0 || c == 0 || k <= 0 {
        return 0;
    }
    let labels = labels.to_device(logits.device()).to_kind(Kind::Int64);
    let in_range = labels.ge(0).logical_and(&labels.lt(c));
    let own = logits.gather(1, &labels.clamp(0, c - 1).unsqueeze(1), false);
    // Classes not strictly below the label's score (NaN compares false, so it counts here too);
    // the label itself is always among them.
    let rivals = logits.lt_tensor(&own).logical_not().sum_dim_intlist(1, false, Kind::Int64) - 1;
    let correct = rivals.lt(k).logical_and(&in_range);
    i64::try_from(correct.sum(Kind::Int64)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accuracy_ties_count_against_the_prediction() {
        let logits = Tensor::zeros([4, 3], (Kind::Float, tch::Device::Cpu));
        let labels = Tensor::from_slice(&[0i64, 1, 2, 0]);
        assert_eq!(accuracy(&logits, &labels, 1), 0.0);
        assert_eq!(accuracy(&logits, &labels, 2), 0.0);
        assert_eq!(accuracy(&logits, &labels, 3), 1.0);
    }

    #[test]
    fn accuracy_nan_and_out_of_range_labels_are_wrong() {
        let logits = Tensor::from_slice(&[f32::NAN, 0.0, 1.0, 0.0]).view([2, 2]);
        let labels = Tensor::from_slice(&[0i64, 5]);
        assert_eq!(accuracy(&logits, &labels, 1), 0.0);
        assert_eq!(accuracy(&logits, &labels, 0), 0.0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn accuracy_is_monotone_in_k_and_one_at_k_eq_c(
            (n, c, vals, labels) in (1usize..12, 1usize..8).prop_flat_map(|(n, c)| (
                Just(n),
                Just(c),
                proptest::collection::vec(-3i32..3, n * c),
                proptest::collection::vec(0..c as i64, n),
            ))
        ) {
            // Small integer scores so that ties are common.
            let vals: Vec<f32> = vals.into_iter().map(|v| v as f32).collect();
            let logits = Tensor::from_slice(&vals).view([n as i64, c as i64]);
            let labels = Tensor::from_slice(&labels);
            let mut prev = 0.0;
            for k in 1..=c as i64 {
                let acc = accuracy(&logits, &labels, k);
                prop_assert!(acc >= prev, "k={} acc={} prev={}", k, acc, prev);
                prev = acc;
            }
            prop_assert_eq!(accuracy(&logits, &labels, c as i64), 1.0);
        }
    }
}
