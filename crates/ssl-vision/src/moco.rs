//! MoCo v2 and MoCo v3.
//!
//! - **MoCo v2** ("Improved Baselines with Momentum Contrastive Learning", Chen, Fan, Girshick,
//!   He 2020, on MoCo v1, He et al. 2020; reference `facebookresearch/moco`): a query encoder
//!   (backbone + 2-layer MLP head, no BatchNorm), a key encoder following it by momentum
//!   `m = 0.999`, and a queue of the last `K` keys as negatives; InfoNCE with τ = 0.2. Keys go
//!   through the key encoder in shuffled chunks ("shuffling BN").
//! - **MoCo v3** ("An Empirical Study of Training Self-Supervised Vision Transformers", Chen,
//!   Xie, He 2021; reference `facebookresearch/moco-v3`): no queue; both views are queries and
//!   keys, the base encoder has a projector and a predictor, the momentum encoder only the
//!   projector; the symmetric InfoNCE over in-batch keys is scaled by `2τ`, and the momentum
//!   rises from 0.99 to 1 on a cosine schedule. ResNet defaults: τ = 1.0, 2-layer projector
//!   `4096 → 256` with an affine-free BatchNorm on the output, predictor `256 → 4096 → 256`.
//!
//! ```
//! use ssl_core::Objective;
//! use ssl_vision::backbone::ResNetConfig;
//! use ssl_vision::moco::{MocoV2, MocoV2Config, MocoV3, MocoV3Config};
//! let v2 = MocoV2Config { backbone: ResNetConfig::tiny(), queue_size: 64, ..MocoV2Config::default() };
//! let model = MocoV2::new(&v2, ssl_core::tch::Device::Cpu).unwrap();
//! assert_eq!(model.name(), "moco-v2");
//! let v3 = MocoV3Config { backbone: ResNetConfig::tiny(), hidden_dim: 32, out_dim: 16, ..MocoV3Config::default() };
//! assert_eq!(MocoV3::new(&v3, ssl_core::tch::Device::Cpu).unwrap().encoder().output_dim(), 64);
//! ```

use serde::{Deserialize, Serialize};
use ssl_core::blocks::ema::{MOCO_MOMENTUM, MOCO_V3_BASE_MOMENTUM};
use ssl_core::blocks::{cosine_momentum, MlpHead, MlpHeadConfig};
use ssl_core::error::TorchResultExt;
use ssl_core::loss::{info_nce, info_nce_with_queue, normalize};
use ssl_core::{Encoder, Error, LossOutput, Objective, Result, StepContext};
use tch::{nn, Device, Kind, Tensor};

use crate::backbone::ResNetConfig;
use crate::momentum::MomentumPair;

/// MoCo v2's InfoNCE temperature.
pub const MOCO_V2_TEMPERATURE: f64 = 0.2;
/// MoCo's queue length on ImageNet.
pub const MOCO_V2_QUEUE_SIZE: usize = 65536;
/// MoCo v3's temperature for ResNet backbones (0.2 for ViTs).
pub const MOCO_V3_RESNET_TEMPERATURE: f64 = 1.0;

fn small_resnet18() -> ResNetConfig {
    ResNetConfig { small_images: true, ..ResNetConfig::resnet18() }
}

fn check_views(batch: &[Tensor], method: &str) -> Result<(Tensor, Tensor)> {
    match batch {
        [a, b] => Ok((a.shallow_clone(), b.shallow_clone())),
        _ => Err(Error::invalid("batch", format!("{method} takes 2 views, got {}", batch.len()))),
    }
}

fn check_positive(value: f64, field: &str) -> Result<()> {
    if value.is_nan() || value <= 0.0 {
        return Err(Error::config(field, format!("must be positive, got {value}")));
    }
    Ok(())
}

fn check_momentum(value: f64, field: &str) -> Result<()> {
    if !(0.0..=1.0).contains(&value) {
        return Err(Error::config(field, format!("must be in [0, 1], got {value}")));
    }
    Ok(())
}

/// MoCo v2's model and loss. Defaults: the ImageNet recipe on a small-image ResNet-18
/// (m = 0.999, K = 65536, τ = 0.2, head `in → in → 128`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MocoV2Config {
    /// The encoder.
    pub backbone: ResNetConfig,
    /// Output width of the MLP head (128).
    pub out_dim: i64,
    /// Number of negative keys kept (K). Must not exceed the number of training images: a
    /// queue longer than the dataset holds several keys of the same image as "negatives".
    pub queue_size: usize,
    /// Key-encoder momentum m (0.999; 0.99 suits small datasets and short runs).
    pub momentum: f64,
    /// InfoNCE temperature τ.
    pub temperature: f64,
    /// Chunks the key batch is shuffled into for BatchNorm (the reference's per-GPU batches:
    /// 8 GPUs); 1 turns shuffling BN off. In a data-parallel job the global batch is shuffled
    /// across the processes and each process cuts its share into `splits / processes` chunks.
    pub shuffle_bn_splits: usize,
}

impl Default for MocoV2Config {
    fn default() -> Self {
        Self {
            backbone: small_resnet18(),
            out_dim: ssl_core::blocks::mlp::MOCO_V2_PROJECTION_DIM,
            queue_size: MOCO_V2_QUEUE_SIZE,
            momentum: MOCO_MOMENTUM,
            temperature: MOCO_V2_TEMPERATURE,
            shuffle_bn_splits: 8,
        }
    }
}

impl MocoV2Config {
    /// Checks the fields; errors name them (`model.queue_size`).
    pub fn validate(&self) -> Result<()> {
        self.backbone.validate()?;
        if self.out_dim < 1 {
            return Err(Error::config("model.out_dim", "must be positive"));
        }
        if self.queue_size == 0 {
            return Err(Error::config("model.queue_size", "must be at least 1"));
        }
        check_momentum(self.momentum, "model.momentum")?;
        check_positive(self.temperature, "model.temperature")
    }

    /// Refuses a queue longer than the training set (`dataset_len` images).
    pub fn check_dataset(&self, dataset_len: usize) -> Result<()> {
        if self.queue_size > dataset_len {
            return Err(Error::config(
                "model.queue_size",
                format!(
                    "the queue of {} keys is longer than the {dataset_len} training images; it would hold \
                     keys of the query's own image as negatives. Set model.queue_size <= {dataset_len}",
                    self.queue_size
                ),
            ));
        }
        Ok(())
    }
}

/// MoCo v2: query/key encoders and the queue of negatives; see the [module docs](self).
pub struct MocoV2 {
    vs: nn::VarStore,
    pair: MomentumPair,
    /// `[K, out_dim]`, L2-normalised keys (a non-trainable variable, so checkpoints hold it).
    queue: Tensor,
    /// Where the next keys are written.
    queue_ptr: usize,
    momentum: f64,
    temperature: f64,
    shuffle_bn_splits: usize,
}

impl MocoV2 {
    /// A freshly initialised model on `device` (seed libtorch first for a reproducible init);
    /// the queue starts as random unit vectors, as in the reference.
    pub fn new(cfg: &MocoV2Config, device: Device) -> Result<Self> {
        cfg.validate()?;
        let vs = nn::VarStore::new(device);
        let head = MlpHeadConfig::moco_v2_projector(cfg.backbone.output_dim());
        let head = MlpHeadConfig { out_dim: cfg.out_dim, ..head };
        let pair = MomentumPair::new(&vs, &cfg.backbone, &head)?;
        let queue = vs
            .root()
            .f_var("queue", &[cfg.queue_size as i64, cfg.out_dim], nn::Init::Randn { mean: 0.0, stdev: 1.0 })
            .torch_context("creating the MoCo queue")?;
        let queue = queue.set_requires_grad(false);
        tch::no_grad(|| queue.shallow_clone().copy_(&normalize(&queue)));
        Ok(Self {
            vs,
            pair,
            queue,
            queue_ptr: 0,
            momentum: cfg.momentum,
            temperature: cfg.temperature,
            shuffle_bn_splits: cfg.shuffle_bn_splits,
        })
    }

    /// Writes `keys` into the queue at the pointer, wrapping around.
    fn enqueue(&mut self, keys: &Tensor) {
        let k = self.queue.size()[0] as usize;
        let n = (keys.size()[0] as usize).min(k);
        let keys = keys.narrow(0, 0, n as i64);
        tch::no_grad(|| {
            let first = n.min(k - self.queue_ptr);
            self.queue.narrow(0, self.queue_ptr as i64, first as i64).copy_(&keys.narrow(0, 0, first as i64));
            if first < n {
                self.queue.narrow(0, 0, (n - first) as i64).copy_(&keys.narrow(
                    0,
                    first as i64,
                    (n - first) as i64,
                ));
            }
        });
        self.queue_ptr = (self.queue_ptr + n) % k;
    }
}

impl Objective for MocoV2 {
    type Batch = Vec<Tensor>;

    fn name(&self) -> &str {
        "moco-v2"
    }

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn forward(&mut self, batch: &Vec<Tensor>, _ctx: &StepContext) -> Result<LossOutput> {
        let (im_q, im_k) = check_views(batch, "MoCo v2")?;
        let q = self.pair.online.forward(&im_q, true)?;
        let k = normalize(&self.pair.target_forward_shuffled(&im_k, self.shuffle_bn_splits)?);
        let queue = self.queue.detach().copy();
        let loss = info_nce_with_queue(&q, &k, &queue, self.temperature)?;
        let acc = tch::no_grad(|| {
            let qn = normalize(&q);
            let pos = (&qn * &k).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
            let neg = qn.matmul(&queue.transpose(0, 1)).amax([1i64].as_slice(), false);
            pos.gt_tensor(&neg).to_kind(Kind::Float).mean(Kind::Float)
        });
        // In a data-parallel job every process enqueues all processes' keys, in rank order, so
        // the queues stay identical (the reference's `concat_all_gather`).
        let (all_keys, _) = ssl_core::dist::all_gather_with_grad(&k)?;
        self.enqueue(&all_keys);
        Ok(LossOutput::new(loss).with_metric("pretext_acc", &acc))
    }

    fn after_step(&mut self, _ctx: &StepContext) -> Result<()> {
        self.pair.update(self.momentum)
    }

    fn encoder(&self) -> &dyn Encoder {
        self.pair.encoder()
    }

    fn state(&self) -> serde_json::Value {
        serde_json::json!({ "queue_ptr": self.queue_ptr })
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let ptr = state
            .get("queue_ptr")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| Error::invalid("checkpoint state", "a MoCo v2 checkpoint needs `queue_ptr`"))?
            as usize;
        if ptr >= self.queue.size()[0] as usize {
            return Err(Error::invalid("checkpoint state", format!("queue_ptr {ptr} is past the queue")));
        }
        self.queue_ptr = ptr;
        Ok(())
    }
}

/// MoCo v3's model and loss for ResNet backbones. Defaults: the reference's ResNet recipe
/// (τ = 1.0, base momentum 0.99 with the cosine ramp, projector `in → 4096 → 256`, predictor
/// `256 → 4096 → 256`) on a small-image ResNet-18.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MocoV3Config {
    /// The encoder.
    pub backbone: ResNetConfig,
    /// Hidden width of the projector and predictor MLPs (4096).
    pub hidden_dim: i64,
    /// Output width of the projector and predictor (256).
    pub out_dim: i64,
    /// Starting momentum; raised to 1 by a cosine schedule over the run when `momentum_cosine`.
    pub momentum: f64,
    /// The cosine momentum ramp (the reference's `--moco-m-cos`, used in all its recipes).
    pub momentum_cosine: bool,
    /// Temperature τ (1.0 for ResNets, 0.2 for ViTs); the loss is scaled by `2τ`.
    pub temperature: f64,
}

impl Default for MocoV3Config {
    fn default() -> Self {
        Self {
            backbone: small_resnet18(),
            hidden_dim: ssl_core::blocks::mlp::MOCO_V3_HIDDEN_DIM,
            out_dim: ssl_core::blocks::mlp::MOCO_V3_PROJECTION_DIM,
            momentum: MOCO_V3_BASE_MOMENTUM,
            momentum_cosine: true,
            temperature: MOCO_V3_RESNET_TEMPERATURE,
        }
    }
}

impl MocoV3Config {
    /// Checks the fields; errors name them (`model.temperature`).
    pub fn validate(&self) -> Result<()> {
        self.backbone.validate()?;
        if self.hidden_dim < 1 || self.out_dim < 1 {
            return Err(Error::config("model.hidden_dim", "MLP widths must be positive"));
        }
        check_momentum(self.momentum, "model.momentum")?;
        check_positive(self.temperature, "model.temperature")
    }
}

/// MoCo v3 with a ResNet backbone; see the [module docs](self).
pub struct MocoV3 {
    vs: nn::VarStore,
    pair: MomentumPair,
    predictor: MlpHead,
    cfg: MocoV3Config,
}

impl MocoV3 {
    /// A freshly initialised model on `device` (seed libtorch first for a reproducible init).
    pub fn new(cfg: &MocoV3Config, device: Device) -> Result<Self> {
        cfg.validate()?;
        let vs = nn::VarStore::new(device);
        // The ResNet variant: a 2-layer projector (`_build_mlp(2, ...)` with the last BN).
        let projector = MlpHeadConfig {
            layers: 2,
            hidden_dim: cfg.hidden_dim,
            out_dim: cfg.out_dim,
            ..MlpHeadConfig::moco_v3_projector(cfg.backbone.output_dim())
        };
        let pair = MomentumPair::new(&vs, &cfg.backbone, &projector)?;
        let predictor =
            MlpHeadConfig { hidden_dim: cfg.hidden_dim, ..MlpHeadConfig::moco_v3_predictor(cfg.out_dim) };
        let predictor = MlpHead::new(vs.root() / "predictor", &predictor)?;
        Ok(Self { vs, pair, predictor, cfg: cfg.clone() })
    }

    fn query(&self, x: &Tensor) -> Result<Tensor> {
        self.predictor.f_forward_t(&self.pair.online.forward(x, true)?, true)
    }

    /// `2τ · CE(q · kᵀ / τ)`: the reference's scaling, which makes the gradient's size
    /// independent of τ.
    fn contrastive(&self, q: &Tensor, k: &Tensor) -> Result<Tensor> {
        let tau = self.cfg.temperature;
        Ok(info_nce(q, k, tau)? * (2.0 * tau))
    }
}

/// Fraction of rows of `q` whose most similar row of `k` is the one with the same index.
fn in_batch_accuracy(q: &Tensor, k: &Tensor) -> Tensor {
    tch::no_grad(|| {
        let sim = normalize(q).matmul(&normalize(k).transpose(0, 1));
        let target = Tensor::arange(q.size()[0], (Kind::Int64, q.device()));
        sim.argmax(1, false).eq_tensor(&target).to_kind(Kind::Float).mean(Kind::Float)
    })
}

impl Objective for MocoV3 {
    type Batch = Vec<Tensor>;

    fn name(&self) -> &str {
        "moco-v3"
    }

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn forward(&mut self, batch: &Vec<Tensor>, _ctx: &StepContext) -> Result<LossOutput> {
        let (x1, x2) = check_views(batch, "MoCo v3")?;
        let (q1, q2) = (self.query(&x1)?, self.query(&x2)?);
        let (k1, k2) = (self.pair.target_forward(&x1)?, self.pair.target_forward(&x2)?);
        let loss = self.contrastive(&q1, &k2)? + self.contrastive(&q2, &k1)?;
        let acc = in_batch_accuracy(&q1, &k2);
        Ok(LossOutput::new(loss).with_metric("pretext_acc", &acc))
    }

    fn after_step(&mut self, ctx: &StepContext) -> Result<()> {
        let m = if self.cfg.momentum_cosine {
            cosine_momentum(self.cfg.momentum, ctx.step + 1, ctx.total_steps)
        } else {
            self.cfg.momentum
        };
        self.pair.update(m)
    }

    fn encoder(&self) -> &dyn Encoder {
        self.pair.encoder()
    }
}

#[cfg(test)]
mod tests;
