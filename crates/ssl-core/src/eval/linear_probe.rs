//! The linear evaluation protocol: a softmax-regression head trained on frozen features.
//!
//! As in SimCLR (Chen et al. 2020) and MoCo (He et al. 2020) the representation is frozen and
//! only a linear classifier is trained on the labelled train split; its accuracy on the test
//! split measures how linearly separable the classes are in the representation. Features are
//! standardised with train-split statistics (the `BatchNorm` without affine parameters that MAE
//! puts in front of its linear probe plays the same role) and the head is trained with AdamW
//! instead of the papers' SGD, which is far less sensitive to the learning rate across feature
//! scales and datasets.

use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, nn::OptimizerConfig, Device, Kind, Tensor};

use super::train_util::{check_loss, cosine_lr, epoch_batches, num_classes, rows, zero_linear};
use super::{accuracy, validate_labelled, Standardizer};
use crate::error::TorchResultExt;
use crate::{Error, Result};

/// Hyper-parameters of [`linear_probe`]; every field has a default, unknown fields are errors.
///
/// ```
/// use ssl_core::eval::LinearProbeConfig;
/// let cfg: LinearProbeConfig = serde_json::from_str(r#"{"epochs": 10, "seed": 3}"#)
///     .expect("a valid config");
/// assert_eq!((cfg.epochs, cfg.batch_size, cfg.lr), (10, 256, 1e-2));
/// assert!(serde_json::from_str::<LinearProbeConfig>(r#"{"epoch": 10}"#).is_err());
/// ```
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LinearProbeConfig {
    /// Passes over the train split. Default 100, as in the MoCo / SimCLR linear evaluations.
    pub epochs: usize,
    /// Peak AdamW learning rate, decayed to 0 by a cosine schedule over all steps. Default
    /// `1e-2`: on standardised features Adam moves each weight by about `lr` per step, so a
    /// few hundred steps reach weights of order 1, enough for a well-fitted softmax head, while
    /// the cosine decay settles the solution.
    pub lr: f64,
    /// Decoupled (AdamW) weight decay. Default 0, as in the MoCo and DINO linear evaluations:
    /// the finite, decaying schedule already keeps the head small.
    pub weight_decay: f64,
    /// Rows per mini-batch (the last batch of an epoch may be smaller). Default 256.
    pub batch_size: usize,
    /// Seed of the per-epoch shuffles. Default 0.
    pub seed: u64,
}

impl Default for LinearProbeConfig {
    fn default() -> Self {
        Self { epochs: 100, lr: 1e-2, weight_decay: 0.0, batch_size: 256, seed: 0 }
    }
}

impl LinearProbeConfig {
    /// Checks every field's range; errors name the field as `linear_probe.<field>`.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::config("linear_probe.epochs", "must be at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::config("linear_probe.lr", format!("must be > 0, got {}", self.lr)));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::config(
                "linear_probe.weight_decay",
                format!("must be >= 0, got {}", self.weight_decay),
            ));
        }
        if self.batch_size == 0 {
            return Err(Error::config("linear_probe.batch_size", "must be at least 1"));
        }
        Ok(())
    }
}

/// What [`linear_probe`] measured.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LinearProbeReport {
    /// Top-1 accuracy on the test split, in `[0, 1]` (ties count as errors, see
    /// [`accuracy`](super::accuracy)).
    pub top1: f64,
    /// Top-5 accuracy on the test split; `None` when there are fewer than 5 classes.
    pub top5: Option<f64>,
    /// Top-1 accuracy of the final head on the train split (a large gap to `top1` means the
    /// probe over-fits).
    pub train_top1: f64,
    /// Number of classes `C`: the largest label in either split plus one.
    pub num_classes: i64,
    /// Rows in the train split.
    pub n_train: i64,
    /// Rows in the test split.
    pub n_test: i64,
    /// Epochs trained.
    pub epochs: usize,
}

/// Trains a linear softmax classifier on `train_x` / `train_y` and reports its accuracy on
/// `test_x` / `test_y`.
///
/// Features are `[N, D]` floating point and labels `[N]` int64 (see
/// [`validate_labelled`]; errors name the "probe train split" or "probe test split"). Both
/// splits are standardised with the train split's statistics ([`Standardizer`]); the head
/// (`Linear D -> C`, `C` = largest label + 1) starts at zero, which for this convex problem needs
/// no random initialisation, and is trained with cross-entropy, AdamW and a cosine-decayed
/// learning rate on mini-batches reshuffled every epoch from `cfg.seed`. The features are only
/// read. Training runs on `device`; libtorch's global generator is not touched, and on the CPU
/// the same inputs and config give bit-identical reports.
///
/// A NaN or infinite loss stops training with [`Error::NonFiniteLoss`].
pub fn linear_probe(
    train_x: &Tensor,
    train_y: &Tensor,
    test_x: &Tensor,
    test_y: &Tensor,
    cfg: &LinearProbeConfig,
    device: Device,
) -> Result<LinearProbeReport> {
    cfg.validate()?;
    validate_labelled(train_x, train_y, "probe train split")?;
    let scaler = Standardizer::fit(train_x)?;
    linear_probe_scaled(train_x, train_y, test_x, test_y, &scaler, cfg, device)
}

/// [`linear_probe`] with the standardisation statistics given: for probes trained on a few
/// labelled examples of a larger unlabelled set (label-efficiency curves), whose feature
/// statistics are better estimated on the whole unlabelled set than on the labelled few.
pub fn linear_probe_scaled(
    train_x: &Tensor,
    train_y: &Tensor,
    test_x: &Tensor,
    test_y: &Tensor,
    scaler: &Standardizer,
    cfg: &LinearProbeConfig,
    device: Device,
) -> Result<LinearProbeReport> {
    cfg.validate()?;
    validate_labelled(train_x, train_y, "probe train split")?;
    validate_labelled(test_x, test_y, "probe test split")?;
    let d = train_x.size()[1];
    if test_x.size()[1] != d {
        return Err(Error::shape("probe test split features", format!("[N, {d}]"), &test_x.size()));
    }
    let c = num_classes(train_y, test_y)?;
    let (n_train, n_test) = (rows(train_x), rows(test_x));

    let prep = |x: &Tensor| scaler.apply(x).to_kind(Kind::Float).to_device(device).detach();
    let (xtr, xte) = (prep(train_x), prep(test_x));
    let (ytr, yte) = (train_y.to_device(device), test_y.to_device(device));

    let vs = nn::VarStore::new(device);
    let head = zero_linear(vs.root() / "head", d, c);
    let mut opt = nn::adamw(0.9, 0.999, cfg.weight_decay)
        .build(&vs, cfg.lr)
        .torch_context("building the linear-probe optimiser")?;

    let steps_per_epoch = (n_train as usize).div_ceil(cfg.batch_size);
    let total = cfg.epochs * steps_per_epoch;
    let mut step = 0;
    for epoch in 0..cfg.epochs {
        let batches = epoch_batches(n_train, cfg.batch_size, cfg.seed, "linear-probe", epoch, false, device);
        let mut last = None;
        for idx in batches {
            opt.set_lr(cosine_lr(cfg.lr, step, total));
            let logits = head.forward(&xtr.index_select(0, &idx));
            let loss = logits.cross_entropy_for_logits(&ytr.index_select(0, &idx));
            opt.backward_step(&loss);
            last = Some(loss);
            step += 1;
        }
        if let Some(loss) = last {
            check_loss(&loss, step - 1)?;
        }
    }

    tch::no_grad(|| {
        let test_logits = head.forward(&xte);
        Ok(LinearProbeReport {
            top1: accuracy(&test_logits, &yte, 1),
            top5: (c >= 5).then(|| accuracy(&test_logits, &yte, 5)),
            train_top1: accuracy(&head.forward(&xtr), &ytr, 1),
            num_classes: c,
            n_train,
            n_test,
            epochs: cfg.epochs,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::testutil::{blobs, noise};

    fn quick() -> LinearProbeConfig {
        LinearProbeConfig { epochs: 30, batch_size: 32, seed: 11, ..Default::default() }
    }

    #[test]
    fn separable_blobs_are_probed_almost_perfectly() {
        let (xtr, ytr) = blobs(60, 3, 8, 4.0, 1);
        let (xte, yte) = blobs(30, 3, 8, 4.0, 2);
        let r = linear_probe(&xtr, &ytr, &xte, &yte, &quick(), Device::Cpu).expect("probe");
        assert!(r.top1 > 0.95 && r.train_top1 > 0.95, "{r:?}");
        assert_eq!((r.num_classes, r.n_train, r.n_test, r.top5), (3, 180, 90, None));
    }

    #[test]
    fn random_labels_stay_near_chance() {
        let (xtr, ytr) = noise(200, 2, 8, 3);
        let (xte, yte) = noise(400, 2, 8, 4);
        let r = linear_probe(&xtr, &ytr, &xte, &yte, &quick(), Device::Cpu).expect("probe");
        assert!(r.top1 < 0.6, "{r:?}");
    }

    #[test]
    fn top5_is_reported_from_five_classes() {
        let (xtr, ytr) = blobs(10, 6, 8, 4.0, 5);
        let (xte, yte) = blobs(4, 6, 8, 4.0, 6);
        let r = linear_probe(&xtr, &ytr, &xte, &yte, &quick(), Device::Cpu).expect("probe");
        let top5 = r.top5.expect("6 classes");
        assert!(top5 >= r.top1 && top5 > 0.95, "{r:?}");
    }

    #[test]
    fn same_config_and_seed_give_identical_reports() {
        let (xtr, ytr) = noise(100, 3, 8, 7);
        let (xte, yte) = noise(50, 3, 8, 8);
        let run = |cfg: &LinearProbeConfig| {
            let r = linear_probe(&xtr, &ytr, &xte, &yte, cfg, Device::Cpu).expect("probe");
            serde_json::to_string(&r).expect("json")
        };
        assert_eq!(run(&quick()), run(&quick()));
    }

    #[test]
    fn bad_splits_and_configs_are_named() {
        let (x, y) = blobs(4, 2, 3, 1.0, 9);
        let cfg = quick();
        let e = linear_probe(&x, &y, &x.narrow(0, 0, 5), &y, &cfg, Device::Cpu).expect_err("N");
        assert!(e.to_string().contains("probe test split"), "{e}");
        let e = linear_probe(&x.narrow(0, 0, 0), &y.narrow(0, 0, 0), &x, &y, &cfg, Device::Cpu)
            .expect_err("empty");
        assert!(e.to_string().contains("probe train split"), "{e}");
        let e = linear_probe(&x, &y, &x.narrow(1, 0, 2), &y, &cfg, Device::Cpu).expect_err("D");
        assert!(e.to_string().contains("probe test split"), "{e}");
        let bad = LinearProbeConfig { lr: f64::NAN, ..cfg };
        let e = linear_probe(&x, &y, &x, &y, &bad, Device::Cpu).expect_err("lr");
        assert!(e.to_string().contains("linear_probe.lr"), "{e}");
    }
}
