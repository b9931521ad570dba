//! Data-parallel training across processes: the collective operations the trainer and the
//! contrastive objectives need, as a trait that a communication backend implements.
//!
//! ssl-core defines the seam and has no backend of its own: `ssl-dist` implements
//! [`Collective`] over PyTorch's c10d (Gloo), the engine `torch.distributed` uses, and the `ssl`
//! program builds one from torchrun's environment. With a collective set,
//! [`Trainer`](crate::trainer::Trainer) broadcasts rank 0's weights, shards every global batch
//! across ranks, averages gradients, and writes logs and checkpoints on rank 0 only.
//!
//! Contrastive losses whose negatives must span all processes call [`all_gather_with_grad`]
//! on their embeddings; the trainer completes the backward pass of what they gathered
//! ([`backward_gathered`]) before it averages parameter gradients. Without a collective (one
//! process) the function hands the local tensor back, so objectives need no special case.
//!
//! BatchNorm layers normalise with the global batch's statistics while [`sync_batch_norm`] is
//! on (the trainer's `sync_batchnorm`): see [`crate::blocks::norm`]. Their statistics sit in
//! the middle of the network, so they gather through [`Collective::all_gather_autograd`],
//! whose backward runs inside the backward pass.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use tch::Tensor;

use crate::error::{Result, TorchResultExt};

/// Collective operations over the processes of one training job. Every process must call the
/// same operations in the same order with tensors of the same shapes (as in c10d); a process
/// that dies makes the others' next call fail with an error, not hang.
pub trait Collective: Send + Sync {
    /// This process's rank, `0..world_size()`.
    fn rank(&self) -> usize;

    /// The number of processes.
    fn world_size(&self) -> usize;

    /// Replaces each tensor, in place, by its elementwise sum over all processes.
    fn all_reduce_sum(&self, tensors: &mut [Tensor]) -> Result<()>;

    /// Replaces each tensor, in place, by `root`'s.
    fn broadcast(&self, tensors: &mut [Tensor], root: usize) -> Result<()>;

    /// Every process's `tensor` (all of the same shape), in rank order.
    fn all_gather(&self, tensor: &Tensor) -> Result<Vec<Tensor>>;
    /// Every process's `tensor` concatenated along dim 0 in rank order, on the autograd graph:
    /// its backward sums the gradient of each process's rows over the processes *during* the
    /// backward pass (in ssl-dist, PyTorch's functional `all_gather_into_tensor` with a
    /// reduce-scatter backward), so it can sit in the middle of a network, as synchronised
    /// BatchNorm needs. Backends without it return an error (the default).
    fn all_gather_autograd(&self, tensor: &Tensor) -> Result<Tensor> {
        let _ = tensor;
        Err(crate::Error::Distributed {
            message: "this collective backend has no autograd-aware all-gather".into(),
        })
    }

    /// Returns once every process has called it.
    fn barrier(&self) -> Result<()>;
}

/// A one-process "collective": every operation is the identity. For tests and examples that
/// exercise the distributed code paths in a single process.
///
/// ```
/// use ssl_core::dist::{Collective, SingleProcess};
/// use ssl_core::tch::Tensor;
/// let c = SingleProcess;
/// let mut t = [Tensor::from_slice(&[1.0f32, 2.0])];
/// c.all_reduce_sum(&mut t).unwrap();
/// assert_eq!(Vec::<f32>::try_from(&t[0]).unwrap(), [1.0, 2.0]);
/// assert_eq!((c.rank(), c.world_size()), (0, 1));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _tensors: &mut [Tensor]) -> Result<()> {
        Ok(())
    }
    fn broadcast(&self, _tensors: &mut [Tensor], _root: usize) -> Result<()> {
        Ok(())
    }
    fn all_gather(&self, tensor: &Tensor) -> Result<Vec<Tensor>> {
        Ok(vec![tensor.copy()])
    }
    fn all_gather_autograd(&self, tensor: &Tensor) -> Result<Tensor> {
        Ok(tensor.shallow_clone())
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
}

thread_local! {
    static ACTIVE: RefCell<Option<Arc<dyn Collective>>> = const { RefCell::new(None) };
    /// (this process's rows, the gathered leaf they were copied into) per gather of the step.
    static PENDING: RefCell<Vec<(Tensor, Tensor)>> = const { RefCell::new(Vec::new()) };
    /// Whether BatchNorm layers in training synchronise their statistics over the processes.
    static SYNC_BN: Cell<bool> = const { Cell::new(false) };
}

/// Makes BatchNorm layers in training mode on this thread normalise with the statistics of
/// the global batch (all processes) instead of this process's, until the guard is dropped:
/// SimCLR's global BatchNorm, PyTorch's `SyncBatchNorm`. It takes effect only while a
/// collective of more than one process is [`active`]; the trainer sets it from
/// [`TrainConfig::sync_batchnorm`](crate::trainer::TrainConfig::sync_batchnorm).
///
/// ```
/// use ssl_core::dist::{sync_batch_norm, sync_batch_norm_group};
/// let _on = sync_batch_norm(true);
/// assert!(sync_batch_norm_group().is_none()); // no multi-process collective is active
/// ```
pub fn sync_batch_norm(on: bool) -> SyncBatchNormGuard {
    SyncBatchNormGuard { previous: SYNC_BN.with(|s| s.replace(on)) }
}

/// Restores the previous BatchNorm synchronisation when dropped (see [`sync_batch_norm`]).
pub struct SyncBatchNormGuard {
    previous: bool,
}

impl Drop for SyncBatchNormGuard {
    fn drop(&mut self) {
        SYNC_BN.with(|s| s.set(self.previous));
    }
}

/// The collective BatchNorm layers synchronise over: the [`active`] one when
/// [`sync_batch_norm`] is on and it has more than one process.
pub fn sync_batch_norm_group() -> Option<Arc<dyn Collective>> {
    if !SYNC_BN.with(Cell::get) {
        return None;
    }
    active().filter(|c| c.world_size() > 1)
}

/// The collective the trainer set on this thread for the duration of a `fit`, if any.
pub fn active() -> Option<Arc<dyn Collective>> {
    ACTIVE.with(|a| a.borrow().clone())
}

/// Makes `collective` the [`active`] one on this thread until the guard is dropped.
///
/// ```
/// use std::sync::Arc;
/// use ssl_core::dist::{activate, active, SingleProcess};
/// {
///     let _guard = activate(Arc::new(SingleProcess));
///     assert_eq!(active().unwrap().world_size(), 1);
/// }
/// assert!(active().is_none());
/// ```
pub fn activate(collective: Arc<dyn Collective>) -> ActiveGuard {
    let previous = ACTIVE.with(|a| a.borrow_mut().replace(collective));
    PENDING.with(|p| p.borrow_mut().clear());
    ActiveGuard { previous }
}

/// Restores the previously active collective when dropped (see [`activate`]).
pub struct ActiveGuard {
    previous: Option<Arc<dyn Collective>>,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        ACTIVE.with(|a| *a.borrow_mut() = previous);
        PENDING.with(|p| p.borrow_mut().clear());
    }
}

/// Gathers `local` (`[n, ...]`, the same `n` on every process) from all processes into one
/// `[world·n, ...]` tensor in rank order, and returns it with this process's first row
/// (`rank·n`): labels of a contrastive loss over the gathered rows are offset by it.
///
/// The gathered tensor is a fresh leaf that requires a gradient. After the loss's backward,
/// [`backward_gathered`] (which the trainer calls) sums its gradient over the processes and
/// back-propagates this process's slice into `local`'s graph, so every sample's gradient
/// counts the loss terms of every process where it appears, as in one process with the global
/// batch. **The loss must use the gathered tensor's own rows (`narrow(0, offset, n)`) in place
/// of `local`**: `local`'s graph is back-propagated once, by [`backward_gathered`]. A `local`
/// that needs no gradient (a momentum encoder's keys) is gathered without
/// any of this. Without an active collective of more than one process, `local` itself
/// (sharing its graph) and offset 0 come back.
///
/// ```
/// use ssl_core::dist::all_gather_with_grad;
/// use ssl_core::tch::{Kind, Tensor};
/// let z = Tensor::randn([4, 8], (Kind::Float, ssl_core::tch::Device::Cpu));
/// let (all, offset) = all_gather_with_grad(&z).unwrap();
/// assert_eq!((all.size(), offset), (vec![4, 8], 0));
/// ```
pub fn all_gather_with_grad(local: &Tensor) -> Result<(Tensor, i64)> {
    let Some(c) = active().filter(|c| c.world_size() > 1) else {
        return Ok((local.shallow_clone(), 0));
    };
    let parts = c.all_gather(&local.detach().contiguous())?;
    let offset = c.rank() as i64 * local.size()[0];
    if !local.requires_grad() {
        // Keys of a momentum encoder, say: nothing to send back.
        return Ok((Tensor::cat(&parts, 0), offset));
    }
    let gathered = Tensor::cat(&parts, 0).set_requires_grad(true);
    PENDING.with(|p| p.borrow_mut().push((local.shallow_clone(), gathered.shallow_clone())));
    Ok((gathered, offset))
}

/// Completes the backward pass through the tensors gathered by [`all_gather_with_grad`] since
/// the last call: sums each gathered leaf's gradient over the processes and back-propagates
/// this process's rows into the local graph. The trainer calls it after every `backward`; it
/// does nothing when nothing was gathered.
pub fn backward_gathered() -> Result<()> {
    let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    let Some(c) = active() else { return Ok(()) };
    let mut pairs = Vec::with_capacity(pending.len());
    let mut grads = Vec::with_capacity(pending.len());
    for (local, gathered) in pending {
        let grad = gathered.grad();
        let grad = if grad.defined() { grad.contiguous() } else { gathered.zeros_like() };
        pairs.push(local);
        grads.push(grad);
    }
    if pairs.is_empty() {
        return Ok(());
    }
    c.all_reduce_sum(&mut grads)?;
    let rank = c.rank() as i64;
    let mut surrogate: Option<Tensor> = None;
    for (local, grad) in pairs.iter().zip(&grads) {
        let n = local.size()[0];
        let mine = grad.narrow(0, rank * n, n).to_kind(local.kind());
        // d/d(local) of sum(local · g) is g: one backward pushes every slice into the graph.
        let term = (local * mine).sum(local.kind());
        surrogate = Some(match surrogate {
            Some(s) => s + term,
            None => term,
        });
    }
    if let Some(s) = surrogate {
        if s.requires_grad() {
            s.f_backward().torch_context(
                "back-propagating gathered embeddings (a loss must use the gathered tensor's own \
                 rows, not the local tensor, or the local graph is freed twice)",
            )?;
        }
    }
    Ok(())
}

/// MoCo's "shuffling BN" (He et al. 2020, §3.3): runs `f` (a key encoder in training mode)
/// on `splits` chunks of a random permutation of the *global* batch and returns `f`'s output
/// for this process's rows of `x`, in `x`'s order. Each chunk's BatchNorm then normalises with
/// the statistics of a random subset of the samples, so a key never shares batch statistics
/// with its query.
///
/// With an [`active`] collective of `W > 1` processes, `x` is all-gathered, one permutation
/// (rank 0's, broadcast) orders the global batch, each process runs `f` on its slice of it in
/// `max(1, splits / W)` chunks, and the outputs are all-gathered and put back in order: with
/// `splits = W` this is the reference's `_batch_shuffle_ddp` / `_batch_unshuffle_ddp`, one
/// shuffled chunk per process. In one process, `x` is permuted and cut into `splits` chunks
/// (emulating `splits` devices). `splits <= 1` runs `f` on `x` as it is, and so does a batch
/// too small for chunks of 2 rows (in one process; across processes each process then takes
/// its slice of the shuffled global batch whole). No gradient flows back through the shuffle:
/// it is meant for momentum encoders under `no_grad`.
///
/// ```
/// use ssl_core::dist::apply_shuffled;
/// use ssl_core::tch::{Device, Kind, Tensor};
/// let x = Tensor::randn([8, 3], (Kind::Float, Device::Cpu));
/// // A per-chunk centring: every row loses the mean of the chunk it was put in.
/// let y = apply_shuffled(&x, 2, |c| Ok(c - c.mean_dim(0, true, Kind::Float)))?;
/// assert_eq!(y.size(), [8, 3]);
/// assert!(y.sum(Kind::Float).abs().double_value(&[]) < 1e-4);
/// # Ok::<(), ssl_core::Error>(())
/// ```
pub fn apply_shuffled(x: &Tensor, splits: usize, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let n = x.size().first().copied().unwrap_or(0);
    let group = active().filter(|c| c.world_size() > 1);
    let (world, rank) = group.as_ref().map_or((1, 0), |c| (c.world_size() as i64, c.rank() as i64));
    if splits <= 1 || (group.is_none() && n < 2 * splits as i64) {
        return f(x);
    }
    // This process's share of the chunks, each of at least 2 rows (BatchNorm needs them).
    let wanted = (splits as i64 / world).max(1);
    let chunks = if n >= 2 * wanted { wanted } else { 1 };
    let global = match &group {
        Some(c) => {
            Tensor::f_cat(&c.all_gather(&x.detach().contiguous())?, 0).torch_context("gathering a batch")?
        }
        None => x.shallow_clone(),
    };
    let mut perm =
        [Tensor::f_randperm(world * n, (tch::Kind::Int64, x.device())).torch_context("shuffling a batch")?];
    if let Some(c) = &group {
        c.broadcast(&mut perm, 0)?;
    }
    let [perm] = perm;
    let outputs = global
        .f_index_select(0, &perm.narrow(0, rank * n, n))
        .and_then(|mine| mine.f_chunk(chunks, 0))
        .torch_context("shuffling a batch")?
        .iter()
        .map(&f)
        .collect::<Result<Vec<_>>>()?;
    let out = Tensor::f_cat(&outputs, 0).torch_context("shuffling a batch")?;
    let all = match &group {
        Some(c) => {
            Tensor::f_cat(&c.all_gather(&out.detach().contiguous())?, 0).torch_context("gathering keys")?
        }
        None => out,
    };
    // Row i of `all` is row perm[i] of the global batch: invert the permutation.
    all.f_index_select(0, &perm.argsort(0, false))
        .map(|all| all.narrow(0, rank * n, n))
        .torch_context("unshuffling a batch")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tch::{Device, Kind};

    /// An in-process stand-in for `world` ranks, run one after the other: rank r's gather
    /// returns what every rank contributed (recorded in advance), and all-reduce adds the
    /// other ranks' recorded gradients. Enough to check the gradient algebra exactly.
    struct Recorded {
        rank: usize,
        world: usize,
        gathered: Mutex<Vec<Tensor>>,
        grads: Mutex<Vec<Tensor>>,
    }

    impl Collective for Recorded {
        fn rank(&self) -> usize {
            self.rank
        }
        fn world_size(&self) -> usize {
            self.world
        }
        fn all_reduce_sum(&self, tensors: &mut [Tensor]) -> Result<()> {
            let all = self.grads.lock().unwrap();
            for t in tensors.iter_mut() {
                let sum = all.iter().fold(t.copy(), |acc, g| acc + g);
                t.copy_(&sum);
            }
            Ok(())
        }
        fn broadcast(&self, _: &mut [Tensor], _: usize) -> Result<()> {
            Ok(())
        }
        fn all_gather(&self, _: &Tensor) -> Result<Vec<Tensor>> {
            Ok(self.gathered.lock().unwrap().iter().map(|t| t.copy()).collect())
        }
        fn barrier(&self) -> Result<()> {
            Ok(())
        }
    }

    /// A symmetric loss over all rows: every row is a negative of every other.
    fn loss_of(all: &Tensor) -> Tensor {
        let sim = all.matmul(&all.tr());
        sim.log_softmax(1, Kind::Float).diagonal(0, 0, 1).mean(Kind::Float).neg()
    }

    #[test]
    fn gathered_gradients_equal_the_single_process_gradients() {
        tch::manual_seed(0);
        let (world, n, d) = (3usize, 2i64, 4i64);
        let x = Tensor::randn([world as i64 * n, d], (Kind::Float, Device::Cpu));
        // One process, the whole batch; the loss is a mean over rows, so each rank's loss is
        // its rows' share and the global loss is their average (what DDP's mean gives).
        let w = Tensor::eye(d, (Kind::Float, Device::Cpu)).set_requires_grad(true);
        loss_of(&x.matmul(&w)).backward();
        let reference = w.grad().copy();

        // Each rank's loss: its own rows as anchors against all rows (as SimCLR does).
        let rows_loss = |all: &Tensor, offset: i64| {
            let sim = all.narrow(0, offset, n).matmul(&all.tr());
            let lp = sim.log_softmax(1, Kind::Float);
            let idx = Tensor::arange_start(offset, offset + n, (Kind::Int64, Device::Cpu));
            lp.gather(1, &idx.unsqueeze(1), false).mean(Kind::Float).neg()
        };
        // First pass: every rank's gathered-leaf gradient (what the all-reduce sums).
        let locals: Vec<Tensor> = (0..world).map(|r| x.narrow(0, r as i64 * n, n)).collect();
        let mut leaf_grads = Vec::new();
        for r in 0..world {
            let all = Tensor::cat(&locals, 0).set_requires_grad(true);
            rows_loss(&all, r as i64 * n).backward();
            leaf_grads.push(all.grad().copy());
        }
        // Second pass: the real code path on every rank; parameter gradients averaged.
        let mut sum = Tensor::zeros([d, d], (Kind::Float, Device::Cpu));
        for r in 0..world {
            let w = Tensor::eye(d, (Kind::Float, Device::Cpu)).set_requires_grad(true);
            let c = Recorded {
                rank: r,
                world,
                gathered: Mutex::new(locals.iter().map(|l| l.matmul(&w).detach()).collect()),
                grads: Mutex::new(
                    leaf_grads.iter().enumerate().filter(|(i, _)| *i != r).map(|(_, g)| g.copy()).collect(),
                ),
            };
            let _guard = activate(Arc::new(c));
            let z = locals[r].matmul(&w);
            let (all, offset) = all_gather_with_grad(&z).unwrap();
            assert_eq!(offset, r as i64 * n);
            rows_loss(&all, offset).backward();
            backward_gathered().unwrap();
            sum += w.grad();
        }
        let averaged = sum / world as f64;
        assert!(averaged.allclose(&reference, 1e-5, 1e-6, false), "{averaged} vs {reference}");
    }

    #[test]
    fn without_a_collective_gathering_is_the_identity() {
        let z = Tensor::ones([2, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let (all, offset) = all_gather_with_grad(&z).unwrap();
        assert_eq!(offset, 0);
        all.sum(Kind::Float).backward();
        backward_gathered().unwrap();
        assert_eq!(z.grad().sum(Kind::Float).double_value(&[]), 6.0);
    }
}
