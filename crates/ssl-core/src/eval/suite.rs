//! The standard evaluation of a pretrained encoder, as `summary.json` reports it.

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use super::{
    extract_features, knn_classify, linear_probe, KnnConfig, KnnReport, LinearProbeConfig, LinearProbeReport,
};
use crate::encoder::Encoder;
use crate::error::{Error, Result};

/// The probes run after pretraining.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// The linear probe.
    pub linear_probe: LinearProbeConfig,
    /// The kNN classifier; `knn_acc` reports its first `k`.
    pub knn: KnnConfig,
    /// Inputs per forward pass during feature extraction.
    pub batch_size: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self { linear_probe: LinearProbeConfig::default(), knn: KnnConfig::default(), batch_size: 256 }
    }
}

impl EvalConfig {
    /// Checks every field; errors name the field (`eval.knn.ks`).
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::config("eval.batch_size", "must be at least 1"));
        }
        let prefix = |e: Error| match e {
            Error::Config { field, message } => Error::Config { field: format!("eval.{field}"), message },
            other => other,
        };
        self.linear_probe.validate().map_err(prefix)?;
        self.knn.validate().map_err(prefix)
    }
}

/// Probe results on one set of features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeSummary {
    /// Linear-probe top-1 accuracy on the test split.
    pub linear_probe_acc: f64,
    /// kNN top-1 accuracy for the first configured `k`.
    pub knn_acc: f64,
    /// The full linear-probe report.
    pub linear_probe: LinearProbeReport,
    /// The full kNN report (every `k`).
    pub knn: KnnReport,
}

/// Linear probe and kNN on precomputed features (raw inputs flattened to `[N, D]` work too).
pub fn probe_features(
    train_x: &Tensor,
    train_y: &Tensor,
    test_x: &Tensor,
    test_y: &Tensor,
    cfg: &EvalConfig,
    device: Device,
) -> Result<ProbeSummary> {
    let flat = |t: &Tensor| if t.dim() > 2 { t.flatten(1, -1) } else { t.shallow_clone() };
    let (train_x, test_x) = (flat(train_x), flat(test_x));
    let linear = linear_probe(&train_x, train_y, &test_x, test_y, &cfg.linear_probe, device)?;
    let knn = knn_classify(&train_x, train_y, &test_x, test_y, &cfg.knn, device)?;
    let first_k = cfg.knn.ks.first().copied().unwrap_or(20);
    Ok(ProbeSummary {
        linear_probe_acc: linear.top1,
        knn_acc: knn.top1(first_k).unwrap_or(f64::NAN),
        linear_probe: linear,
        knn,
    })
}

/// Extracts frozen features with `encoder` (eval mode) and runs [`probe_features`].
pub fn probe_encoder(
    encoder: &dyn Encoder,
    train_x: &Tensor,
    train_y: &Tensor,
    test_x: &Tensor,
    test_y: &Tensor,
    cfg: &EvalConfig,
    device: Device,
) -> Result<ProbeSummary> {
    let train_f = extract_features(encoder, train_x, cfg.batch_size, device)?;
    let test_f = extract_features(encoder, test_x, cfg.batch_size, device)?;
    probe_features(&train_f, train_y, &test_f, test_y, cfg, device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_field_errors_are_prefixed() {
        let mut cfg = EvalConfig::default();
        cfg.knn.ks.clear();
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("eval.knn."), "{e}");
        let e = EvalConfig { batch_size: 0, ..Default::default() }.validate().unwrap_err().to_string();
        assert!(e.contains("eval.batch_size"), "{e}");
    }

    #[test]
    fn raw_images_are_flattened_for_the_probe() {
        let x = Tensor::from_slice(&[1.0f32, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0]).view([2, 1, 2, 2]);
        let y = Tensor::from_slice(&[0i64, 1]);
        let cfg = EvalConfig { knn: KnnConfig { ks: vec![1], ..Default::default() }, ..Default::default() };
        let s = probe_features(&x, &y, &x, &y, &cfg, Device::Cpu).unwrap();
        assert_eq!((s.linear_probe_acc, s.knn_acc), (1.0, 1.0));
    }
}
