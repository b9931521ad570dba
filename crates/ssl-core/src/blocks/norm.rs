//! BatchNorm over its tensors, with the batch statistics optionally taken over every process
//! of a data-parallel job: SimCLR's "global BN" (Chen et al., 2020, §B.9), PyTorch's
//! `SyncBatchNorm`.
//!
//! Every BatchNorm of ssl-rs's blocks and backbones goes through [`batch_norm`]. In training,
//! with [`dist::sync_batch_norm`] on and a collective of more than one process active (the
//! trainer's `sync_batchnorm`), each process computes its per-channel mean and variance, the
//! processes all-gather them (with the count of values behind each) through the
//! collective's autograd-aware all-gather, and every process normalises with the pooled
//! statistics of the global batch. The gather's backward sums the gradients of the statistics
//! over the processes inside the backward pass, so N processes train exactly like one process
//! with the N-times batch. Otherwise it is libtorch's `batch_norm`.
//!
//! ```
//! use ssl_core::blocks::norm::batch_norm;
//! use ssl_core::tch::{Device, Kind, Tensor};
//! let x = Tensor::randn([8, 3, 4, 4], (Kind::Float, Device::Cpu));
//! let (mean, var) = (Tensor::zeros([3], (Kind::Float, Device::Cpu)), Tensor::ones([3], (Kind::Float, Device::Cpu)));
//! let y = batch_norm(&x, None, None, &mean, &var, true, 0.1, 1e-5)?;
//! let per_channel = y.mean_dim([0i64, 2, 3].as_slice(), false, Kind::Float);
//! assert!(per_channel.abs().max().double_value(&[]) < 1e-5);
//! # Ok::<(), ssl_core::tch::TchError>(())
//! ```

use tch::{Kind, TchError, Tensor};

use crate::dist::{self, Collective};

/// BatchNorm of `x` (`[N, C, ...]`): normalised with the batch statistics in training (the
/// global batch's under synchronisation, see the module docs) and the running statistics
/// otherwise; `running_mean` and `running_var` are updated in place in training with
/// `momentum` (PyTorch's convention: `new = (1 - momentum)·old + momentum·batch`, the variance
/// unbiased).
#[allow(clippy::too_many_arguments)] // libtorch's batch_norm takes the same eight
pub fn batch_norm(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    running_mean: &Tensor,
    running_var: &Tensor,
    train: bool,
    momentum: f64,
    eps: f64,
) -> Result<Tensor, TchError> {
    match dist::sync_batch_norm_group().filter(|_| train) {
        Some(group) => {
            let layer = Layer { weight, bias, running_mean, running_var, momentum, eps };
            synchronised(x, &layer, group.as_ref())
        }
        None => {
            x.f_batch_norm(weight, bias, Some(running_mean), Some(running_var), train, momentum, eps, true)
        }
    }
}

/// A BatchNorm layer's tensors and constants.
struct Layer<'a> {
    weight: Option<&'a Tensor>,
    bias: Option<&'a Tensor>,
    running_mean: &'a Tensor,
    running_var: &'a Tensor,
    momentum: f64,
    eps: f64,
}

fn synchronised(x: &Tensor, layer: &Layer<'_>, group: &dyn Collective) -> Result<Tensor, TchError> {
    let Layer { weight, bias, running_mean, running_var, momentum, eps } = *layer;
    let size = x.size();
    if size.len() < 2 || size[1] == 0 {
        return Err(TchError::Shape(format!("BatchNorm needs an input [N, C, ...], got {size:?}")));
    }
    let c = size[1];
    // Statistics in fp32 at least, as PyTorch's SyncBatchNorm computes them.
    let xf = match x.kind() {
        Kind::Float | Kind::Double => x.shallow_clone(),
        _ => x.f_to_kind(Kind::Float)?,
    };
    let kind = xf.kind();
    let dims: Vec<i64> = (0..size.len() as i64).filter(|&d| d != 1).collect();
    let count = (xf.numel() as i64 / c) as f64;
    let (var, mean) = xf.f_var_mean_correction(dims.as_slice(), 0, false)?;
    let local =
        Tensor::f_cat(&[mean, var, Tensor::f_full([1], count, (kind, x.device()))?], 0)?.f_unsqueeze(0)?;
    let all = group
        .all_gather_autograd(&local)
        .map_err(|e| TchError::Torch(format!("synchronised BatchNorm: {e}")))?; // [world, 2C + 1]
    let (means, vars, counts) = (all.f_narrow(1, 0, c)?, all.f_narrow(1, c, c)?, all.f_narrow(1, 2 * c, 1)?);
    let n = counts.f_sum(kind)?;
    // Pooled over processes: mean = Σ n_r m_r / N, var = Σ n_r (v_r + (m_r - mean)²) / N.
    let mean = (&means * &counts).f_sum_dim_intlist(0, false, kind)?.f_div(&n)?;
    let spread = &means - &mean;
    let var = ((&vars + &spread * &spread) * &counts).f_sum_dim_intlist(0, false, kind)?.f_div(&n)?;
    tch::no_grad(|| -> Result<(), TchError> {
        let unbiased = &var * (&n / (&n - 1.0).f_clamp_min(1.0)?);
        for (stat, batch) in [(running_mean, &mean), (running_var, &unbiased)] {
            let updated = stat * (1.0 - momentum) + batch.f_to_kind(stat.kind())? * momentum;
            stat.shallow_clone().f_copy_(&updated)?;
        }
        Ok(())
    })?;
    let mut shape = vec![1i64; size.len()];
    shape[1] = c;
    let mut y = (&xf - mean.f_view(shape.as_slice())?) * (var + eps).f_rsqrt()?.f_view(shape.as_slice())?;
    if let Some(w) = weight {
        y = y.f_mul(&w.f_view(shape.as_slice())?)?;
    }
    if let Some(b) = bias {
        y = y.f_add(&b.f_view(shape.as_slice())?)?;
    }
    if y.kind() != x.kind() {
        y = y.f_to_kind(x.kind())?;
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tch::Device;

    /// Rank 0 of two, whose peer's statistics row is fixed in advance.
    struct WithPeer {
        peer: std::sync::Mutex<Tensor>,
    }

    impl Collective for WithPeer {
        fn rank(&self) -> usize {
            0
        }
        fn world_size(&self) -> usize {
            2
        }
        fn all_reduce_sum(&self, _: &mut [Tensor]) -> crate::Result<()> {
            unreachable!("BatchNorm only gathers")
        }
        fn broadcast(&self, _: &mut [Tensor], _: usize) -> crate::Result<()> {
            unreachable!("BatchNorm only gathers")
        }
        fn all_gather(&self, _: &Tensor) -> crate::Result<Vec<Tensor>> {
            unreachable!("BatchNorm gathers with autograd")
        }
        fn all_gather_autograd(&self, t: &Tensor) -> crate::Result<Tensor> {
            Ok(Tensor::cat(&[t, &*self.peer.lock().unwrap()], 0))
        }
        fn barrier(&self) -> crate::Result<()> {
            Ok(())
        }
    }

    fn stats_row(x: &Tensor) -> Tensor {
        let (var, mean) = x.var_mean_correction([0i64, 2].as_slice(), 0, false);
        let n = Tensor::full([1], (x.size()[0] * x.size()[2]) as f64, (Kind::Float, Device::Cpu));
        Tensor::cat(&[mean, var, n], 0).unsqueeze(0)
    }

    #[test]
    fn synchronised_statistics_are_those_of_the_pooled_batch() {
        tch::manual_seed(0);
        let opts = (Kind::Float, Device::Cpu);
        let mine = Tensor::randn([4, 3, 5], opts);
        // The peer's batch is larger and shifted: pooling must weight by counts.
        let theirs = Tensor::randn([6, 3, 5], opts) * 2.0 + 1.5;
        let (w, b) = (Tensor::randn([3], opts), Tensor::randn([3], opts));
        let fresh = || (Tensor::zeros([3], opts), Tensor::ones([3], opts));

        let (rm, rv) = fresh();
        let pooled = Tensor::cat(&[&mine, &theirs], 0);
        let expected =
            batch_norm(&pooled, Some(&w), Some(&b), &rm, &rv, true, 0.1, 1e-5).unwrap().narrow(0, 0, 4);

        let _active = dist::activate(Arc::new(WithPeer { peer: std::sync::Mutex::new(stats_row(&theirs)) }));
        let (lrm, lrv) = fresh();
        let local = batch_norm(&mine, Some(&w), Some(&b), &lrm, &lrv, true, 0.1, 1e-5).unwrap();
        assert!(!local.allclose(&expected, 1e-3, 1e-3, false), "synchronised while switched off");
        let _on = dist::sync_batch_norm(true);
        let (srm, srv) = fresh();
        let synced = batch_norm(&mine, Some(&w), Some(&b), &srm, &srv, true, 0.1, 1e-5).unwrap();
        let diff = (&synced - &expected).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "output differs from the pooled batch's by {diff}");
        assert!(srm.allclose(&rm, 1e-5, 1e-6, false), "running mean {srm} vs {rm}");
        assert!(srv.allclose(&rv, 1e-5, 1e-6, false), "running var {srv} vs {rv}");
        // Evaluation uses the running statistics, never the peers.
        let eval = batch_norm(&mine, Some(&w), Some(&b), &srm, &srv, false, 0.1, 1e-5).unwrap();
        let plain = mine.batch_norm(Some(&w), Some(&b), Some(&srm), Some(&srv), false, 0.1, 1e-5, true);
        assert!(eval.allclose(&plain, 1e-6, 1e-6, false));
    }
}
