//! Pieces shared by the trained protocols (linear probe, fine-tuning): class count, seeded
//! mini-batch order, cosine schedule, loss check.

use rand::seq::SliceRandom;
use tch::{nn, Device, Tensor};

use crate::error::TorchResultExt;
use crate::rng::rng_for;
use crate::{Error, Result};

/// `max label + 1` over both splits (labels already validated as non-negative int64).
pub(crate) fn num_classes(train_y: &Tensor, test_y: &Tensor) -> Result<i64> {
    let max_train = i64::try_from(train_y.max()).torch_context("largest train label")?;
    let max_test = i64::try_from(test_y.max()).torch_context("largest test label")?;
    Ok(max_train.max(max_test) + 1)
}

/// The mini-batches of one epoch: row indices `0..n` shuffled by a generator derived from
/// `(seed, stream, epoch)`, cut into batches of `batch_size` (the last one may be shorter).
///
/// With `drop_last`, a shorter last batch is dropped unless it is the only one (fine-tuning
/// does this so batch norm never sees a batch of one sample).
pub(crate) fn epoch_batches(
    n: i64,
    batch_size: usize,
    seed: u64,
    stream: &str,
    epoch: usize,
    drop_last: bool,
    device: Device,
) -> Vec<Tensor> {
    let mut order: Vec<i64> = (0..n).collect();
    order.shuffle(&mut rng_for(seed, stream, &[epoch as u64]));
    let mut batches: Vec<&[i64]> = order.chunks(batch_size.max(1)).collect();
    if drop_last && batches.len() > 1 && batches.last().is_some_and(|b| b.len() < batch_size) {
        batches.pop();
    }
    batches.into_iter().map(|b| Tensor::from_slice(b).to_device(device)).collect()
}

/// Cosine decay from `base` at step 0 towards 0 at step `total` (no warm-up), as in SGDR with a
/// single cycle.
pub(crate) fn cosine_lr(base: f64, step: usize, total: usize) -> f64 {
    let t = step as f64 / total.max(1) as f64;
    base * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
}

/// [`cosine_lr`] after a linear warm-up over the first `warmup` steps (from `base / warmup` at
/// step 0 to `base`), the cosine then spanning the remaining steps.
pub(crate) fn warmup_cosine_lr(base: f64, step: usize, total: usize, warmup: usize) -> f64 {
    if step < warmup {
        base * (step + 1) as f64 / warmup as f64
    } else {
        cosine_lr(base, step - warmup, total.saturating_sub(warmup))
    }
}

/// Errors with [`Error::NonFiniteLoss`] when `loss` is NaN or infinite.
pub(crate) fn check_loss(loss: &Tensor, step: usize) -> Result<()> {
    let value = f64::try_from(loss).torch_context("reading the training loss")?;
    if value.is_finite() {
        Ok(())
    } else {
        Err(Error::NonFiniteLoss { step: step as u64, loss: value })
    }
}

/// A `Linear d_in -> d_out` classifier head with weight and bias initialised to zero.
///
/// Zero is the natural start of a softmax-regression head (the problem is convex, so no random
/// symmetry breaking is needed) and keeps the protocols free of libtorch's global generator.
pub(crate) fn zero_linear(path: nn::Path<'_>, d_in: i64, d_out: i64) -> nn::Linear {
    let zero =
        nn::LinearConfig { ws_init: nn::Init::Const(0.0), bs_init: Some(nn::Init::Const(0.0)), bias: true };
    nn::linear(path, d_in, d_out, zero)
}

/// Row count of a validated `[N, ...]` tensor.
pub(crate) fn rows(t: &Tensor) -> i64 {
    t.size().first().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_row_once_and_are_seeded() {
        let batches = epoch_batches(10, 4, 7, "s", 0, false, Device::Cpu);
        let sizes: Vec<i64> = batches.iter().map(|b| b.size()[0]).collect();
        assert_eq!(sizes, vec![4, 4, 2]);
        let mut all: Vec<i64> = Vec::try_from(Tensor::cat(&batches, 0)).expect("i64 indices");
        let again: Vec<i64> =
            Vec::try_from(Tensor::cat(&epoch_batches(10, 4, 7, "s", 0, false, Device::Cpu), 0))
                .expect("i64 indices");
        let other: Vec<i64> =
            Vec::try_from(Tensor::cat(&epoch_batches(10, 4, 7, "s", 1, false, Device::Cpu), 0))
                .expect("i64 indices");
        assert_eq!(all, again);
        assert_ne!(all, other);
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<i64>>());
        let dropped = epoch_batches(10, 4, 7, "s", 0, true, Device::Cpu);
        assert_eq!(dropped.len(), 2);
        assert_eq!(epoch_batches(3, 4, 7, "s", 0, true, Device::Cpu).len(), 1);
    }

    #[test]
    fn warmup_rises_linearly_then_hands_over_to_the_cosine() {
        assert!((warmup_cosine_lr(0.1, 0, 20, 10) - 0.01).abs() < 1e-12);
        assert!((warmup_cosine_lr(0.1, 9, 20, 10) - 0.1).abs() < 1e-12);
        assert_eq!(warmup_cosine_lr(0.1, 10, 20, 10), 0.1);
        assert_eq!(warmup_cosine_lr(0.1, 20, 20, 10), 0.0);
        assert_eq!(warmup_cosine_lr(0.1, 3, 20, 0), cosine_lr(0.1, 3, 20));
    }

    #[test]
    fn cosine_lr_starts_at_base_and_decays() {
        assert_eq!(cosine_lr(0.1, 0, 10), 0.1);
        assert!((cosine_lr(0.1, 5, 10) - 0.05).abs() < 1e-12);
        assert!(cosine_lr(0.1, 9, 10) < 0.01);
        assert_eq!(cosine_lr(0.1, 10, 10), 0.0);
    }
}
