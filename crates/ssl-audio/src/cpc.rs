//! Contrastive Predictive Coding (van den Oord, Li & Vinyals, 2018), audio setting.
//!
//! A strided convolution stack ([`ConvConfig::cpc`]: kernels 10,8,4,4,4, strides 5,4,2,2,2,
//! ReLU; one frame every 10 ms) encodes the waveform into `z_t`; a GRU summarises
//! `z_{≤t}` into the context `c_t` (256 units); for each `k = 1..12` a linear map `W_k`
//! predicts `z_{t+k}` from `c_t`, scored by the dot product `z^T W_k c_t`. InfoNCE: each
//! prediction must pick its true future frame out of `negatives` frames drawn uniformly from
//! all real frames of the batch (other positions and other utterances); a drawn frame that is
//! the positive itself is masked out. The loss is the mean over every `(t, k)` with `t + k`
//! inside the utterance.
//!
//! Where negatives come from is [`CpcConfig::negatives_from`]: the whole batch (the default,
//! the paper's "mixed speaker" setting) or the prediction's own utterance (the paper's "current
//! sequence only", Table 2, which scores about the same on phones: a future frame must then be
//! told apart from other moments of the same recording, so clip-level constants such as the
//! speaker, the channel or the noise floor do not solve the task).
//!
//! One implementation choice: for each `k` one pool of negatives is drawn per batch (per
//! utterance with [`NegativeSource::Sequence`]) and shared by all its predictions (a matrix
//! product instead of a gather per prediction), which keeps memory flat in the number of
//! negatives.
//!
//! ```
//! use ssl_audio::cpc::{Cpc, CpcConfig};
//! use ssl_audio::data::AudioBatch;
//! use ssl_core::{Encoder, Objective, StepContext};
//! use ssl_core::tch::{Device, Kind, Tensor};
//! ssl_core::tch::manual_seed(0);
//! let mut cpc = Cpc::new(&CpcConfig::tiny(), 0, Device::Cpu)?;
//! let wave = Tensor::randn([2, 4000], (Kind::Float, Device::Cpu));
//! let batch = AudioBatch { mask: wave.ones_like().to_kind(Kind::Bool), wave };
//! let ctx = StepContext { step: 0, total_steps: 1, micro_step: 0, device: Device::Cpu };
//! let out = cpc.forward(&batch, &ctx)?;
//! // At initialisation InfoNCE is about ln(1 + negatives).
//! assert!((out.loss.double_value(&[]) - 9f64.ln()).abs() < 2.0);
//! assert_eq!(cpc.encode(&batch.wave, false).size(), [2, 16]);
//! # Ok::<(), ssl_core::Error>(())
//! ```

use rand::Rng;
use serde::{Deserialize, Serialize};
use ssl_core::error::TorchResultExt;
use ssl_core::rng::rng_for;
use ssl_core::{Encoder, Error, LossOutput, Objective, Result, StepContext};
use tch::nn::RNN;
use tch::{nn, Device, Kind, Tensor};

use crate::conv::{masked_mean, ConvConfig, ConvStack};
use crate::data::{split_input, AudioBatch};

/// The `[model]` table of a `cpc` run; the default is the paper's model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CpcConfig {
    /// The encoder (512 channels).
    pub conv: ConvConfig,
    /// GRU units (256).
    pub context_dim: i64,
    /// Future steps predicted (12).
    pub steps: usize,
    /// Negatives per prediction (128).
    pub negatives: usize,
    /// Where negatives are drawn from (`batch`).
    pub negatives_from: NegativeSource,
}

/// Where CPC draws a prediction's negatives from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NegativeSource {
    /// Any real frame of the batch: other positions and other utterances.
    #[default]
    Batch,
    /// Real frames of the prediction's own utterance only.
    Sequence,
}

impl Default for CpcConfig {
    fn default() -> Self {
        Self {
            conv: ConvConfig::cpc(),
            context_dim: 256,
            steps: 12,
            negatives: 128,
            negatives_from: NegativeSource::Batch,
        }
    }
}

impl CpcConfig {
    /// A CPU-sized model: 128 conv channels, 128 GRU units; the paper's 12 steps.
    pub fn small() -> Self {
        Self { conv: ConvConfig { channels: 128, ..ConvConfig::cpc() }, context_dim: 128, ..Self::default() }
    }

    /// A model for tests.
    pub fn tiny() -> Self {
        Self {
            conv: ConvConfig { channels: 16, ..ConvConfig::cpc() },
            context_dim: 16,
            steps: 4,
            negatives: 8,
            ..Self::default()
        }
    }

    /// Checks the fields; errors name them as `model.*`.
    pub fn validate(&self) -> Result<()> {
        self.conv.validate()?;
        if self.context_dim < 1 {
            return Err(Error::config("model.context_dim", "must be at least 1"));
        }
        if self.steps < 1 {
            return Err(Error::config("model.steps", "must be at least 1"));
        }
        if self.negatives < 1 {
            return Err(Error::config("model.negatives", "must be at least 1"));
        }
        Ok(())
    }
}

/// A CPC model: the `cpc` objective and the encoder probes consume.
#[derive(Debug)]
pub struct Cpc {
    vs: nn::VarStore,
    cfg: CpcConfig,
    seed: u64,
    conv: ConvStack,
    gru: nn::GRU,
    predictors: Vec<nn::Linear>,
}

impl Cpc {
    /// The method's CLI name.
    pub const NAME: &'static str = "cpc";
    /// One line for `ssl methods`.
    pub const ABOUT: &'static str =
        "CPC: a GRU context predicts conv features 1..12 steps ahead, InfoNCE over in-batch negatives";

    /// A freshly initialised model on `device`; `seed` drives the negatives.
    pub fn new(cfg: &CpcConfig, seed: u64, device: Device) -> Result<Self> {
        cfg.validate()?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let conv = ConvStack::new(&root / "encoder", &cfg.conv)?;
        let gru = nn::gru(
            &root / "context",
            cfg.conv.channels,
            cfg.context_dim,
            nn::RNNConfig { batch_first: true, ..Default::default() },
        );
        let predictors = (0..cfg.steps)
            .map(|k| {
                // The paper's log-bilinear score z·W_k c: a linear map without bias.
                let no_bias = nn::LinearConfig { bias: false, ..Default::default() };
                nn::linear(&root / "predictors" / k, cfg.context_dim, cfg.conv.channels, no_bias)
            })
            .collect();
        Ok(Self { vs, cfg: cfg.clone(), seed, conv, gru, predictors })
    }

    /// The config.
    pub fn config(&self) -> &CpcConfig {
        &self.cfg
    }

    /// Encodings `z: [B, T, C]`, contexts `c: [B, T, H]` and the frame mask `[B, T]`.
    fn encode_all(&self, wave: &Tensor, mask: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let frames = self.conv.frame_mask(mask);
        let z = self.conv.forward(wave)?.transpose(1, 2);
        let (c, _) = self.gru.seq(&z.contiguous());
        Ok((z, c, frames))
    }

    /// The InfoNCE loss of a batch.
    pub fn loss(&self, batch: &AudioBatch, step: u64, micro: usize) -> Result<LossOutput> {
        let (z, c, frames) = self.encode_all(&batch.wave, &batch.mask)?;
        let (b, t, ch) = (z.size()[0], z.size()[1], z.size()[2]);
        let device = z.device();
        let flat_z = z.reshape([b * t, ch]);
        let frame_flags = Vec::<bool>::try_from(frames.reshape([-1]))
            .map_err(|e| Error::invalid("frame mask", e.to_string()))?;
        // Real frame indices into `flat_z`: one list for the batch, or one per utterance.
        let pools: Vec<Vec<i64>> = match self.cfg.negatives_from {
            NegativeSource::Batch => {
                vec![(0..b * t).filter(|&i| frame_flags[i as usize]).collect()]
            }
            NegativeSource::Sequence => (0..b)
                .map(|row| (row * t..(row + 1) * t).filter(|&i| frame_flags[i as usize]).collect())
                .collect(),
        };
        if pools.iter().any(|p| p.len() < 2) {
            return Err(Error::invalid("cpc batch", "fewer than two real frames: use longer clips"));
        }
        let mut rng = rng_for(self.seed, "cpc-negatives", &[step, micro as u64]);
        let n = self.cfg.negatives as i64;
        let (mut total, mut count, mut correct) = (Tensor::zeros([], (Kind::Float, device)), 0i64, 0i64);
        let positions = Tensor::arange(b * t, (Kind::Int64, device)).view([b, t]);
        for (k, w) in self.predictors.iter().enumerate() {
            let k = k as i64 + 1;
            if t - k < 1 {
                break;
            }
            let pred = c.narrow(1, 0, t - k).apply(w); // [B, T-k, C]
            let pos = z.narrow(1, k, t - k);
            let valid = frames.narrow(1, k, t - k).reshape([-1]);
            let pos_score = (&pred * &pos).sum_dim_intlist(-1, false, Kind::Float).reshape([-1, 1]);
            let mut pool = Vec::with_capacity(pools.len() * n as usize);
            for p in &pools {
                pool.extend((0..n).map(|_| p[rng.gen_range(0..p.len())]));
            }
            let pool = Tensor::from_slice(&pool).to_device(device).view([pools.len() as i64, n]);
            // [B(T-k), n]: against one shared pool, or each utterance against its own.
            let (neg_score, drawn) = if pools.len() == 1 {
                let drawn = pool.view([1, n]);
                (
                    pred.reshape([b * (t - k), ch]).matmul(&flat_z.index_select(0, &drawn.view([-1])).tr()),
                    drawn,
                )
            } else {
                let negs = flat_z.index_select(0, &pool.view([-1])).view([b, n, ch]);
                let drawn = pool.unsqueeze(1).expand([b, t - k, n], false).reshape([b * (t - k), n]);
                (pred.bmm(&negs.transpose(1, 2)).reshape([b * (t - k), n]), drawn)
            };
            let target_pos = positions.narrow(1, k, t - k).reshape([-1, 1]);
            let neg_score = neg_score.masked_fill(&drawn.eq_tensor(&target_pos), f64::NEG_INFINITY);
            let logits =
                Tensor::cat(&[pos_score, neg_score], 1).index(&[Some(valid.nonzero().squeeze_dim(1))]);
            let rows = logits.size()[0];
            if rows == 0 {
                continue;
            }
            let targets = Tensor::zeros([rows], (Kind::Int64, device));
            total += logits
                .f_cross_entropy_loss::<Tensor>(&targets, None, tch::Reduction::Sum, -100, 0.0)
                .torch_context("cpc InfoNCE")?;
            correct += i64::try_from(logits.argmax(-1, false).eq(0).sum(Kind::Int64)).unwrap_or(0);
            count += rows;
        }
        if count == 0 {
            return Err(Error::invalid("cpc batch", "utterances are too short to predict one step ahead"));
        }
        let loss = total / count as f64;
        let accuracy = Tensor::from(correct as f64 / count as f64);
        Ok(LossOutput::new(loss).with_metric("accuracy", &accuracy))
    }
}

impl Objective for Cpc {
    type Batch = AudioBatch;
    fn name(&self) -> &str {
        Self::NAME
    }
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
    fn forward(&mut self, batch: &AudioBatch, ctx: &StepContext) -> Result<LossOutput> {
        self.loss(batch, ctx.step, ctx.micro_step)
    }
    fn encoder(&self) -> &dyn Encoder {
        self
    }
}

impl Encoder for Cpc {
    fn output_dim(&self) -> i64 {
        self.cfg.context_dim
    }
    /// The GRU contexts mean-pooled over real frames: `[N, context_dim]` from `[N, T]` or
    /// `[N, 2, T]` (waveform, mask).
    fn encode(&self, input: &Tensor, _train: bool) -> Tensor {
        let (wave, mask) = split_input(input).unwrap_or_else(|e| panic!("{e}"));
        let (_, c, frames) = self.encode_all(&wave, &mask).unwrap_or_else(|e| panic!("{e}"));
        masked_mean(&c, &frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::OptimizerConfig;

    #[test]
    fn the_papers_constants() {
        let c = CpcConfig::default();
        assert_eq!((c.conv.channels, c.context_dim, c.steps), (512, 256, 12));
        assert_eq!(
            (c.conv.kernels.as_slice(), c.conv.strides.as_slice()),
            ([10, 8, 4, 4, 4].as_slice(), [5, 4, 2, 2, 2].as_slice())
        );
    }

    #[test]
    fn training_lowers_the_loss_and_every_part_gets_gradients() {
        tch::manual_seed(0);
        let mut cpc = Cpc::new(&CpcConfig::tiny(), 0, Device::Cpu).unwrap();
        // Sines of random frequencies: the future is predictable.
        let t = Tensor::arange(4000, (Kind::Float, Device::Cpu)).unsqueeze(0);
        let f = Tensor::rand([8, 1], (Kind::Float, Device::Cpu)) * 0.2 + 0.02;
        let wave = (t * f).sin();
        let batch = AudioBatch { mask: wave.ones_like().to_kind(Kind::Bool), wave };
        let mut opt = nn::Adam::default().build(&cpc.vs, 2e-3).unwrap();
        let ctx = |step| StepContext { step, total_steps: 60, micro_step: 0, device: Device::Cpu };
        let first = cpc.forward(&batch, &ctx(0)).unwrap().loss.double_value(&[]);
        let mut last = first;
        for step in 0..60 {
            let out = cpc.forward(&batch, &ctx(step)).unwrap();
            opt.zero_grad();
            out.loss.backward();
            if step == 0 {
                for (name, v) in cpc.vs.variables() {
                    assert!(v.grad().defined(), "no gradient for {name}");
                }
            }
            opt.step();
            last = out.loss.double_value(&[]);
        }
        assert!(last < 0.7 * first, "{first} -> {last}");
    }

    #[test]
    fn padded_frames_are_never_predicted_nor_drawn() {
        tch::manual_seed(2);
        let cpc = Cpc::new(&CpcConfig::tiny(), 0, Device::Cpu).unwrap();
        let wave = Tensor::randn([2, 4000], (Kind::Float, Device::Cpu));
        let idx = Tensor::arange(4000, (Kind::Int64, Device::Cpu)).unsqueeze(0);
        let mask = Tensor::cat(&[idx.lt(4000), idx.lt(1000)], 0);
        // Garbage in the padding must not change the loss.
        let a = cpc
            .loss(&AudioBatch { wave: &wave * mask.to_kind(Kind::Float), mask: mask.shallow_clone() }, 0, 0)
            .unwrap();
        let noisy = wave.where_self(&mask, &(Tensor::randn([2, 4000], (Kind::Float, Device::Cpu)) * 100.0));
        let b = cpc.loss(&AudioBatch { wave: noisy, mask }, 0, 0).unwrap();
        assert!((a.loss.double_value(&[]) - b.loss.double_value(&[])).abs() < 1e-4);
    }

    /// With per-utterance negatives the loss separates over utterances: swapping the second
    /// clip between two batches moves the total by exactly the swapped clips' terms. With
    /// batch-wide negatives clips score against each other and the identity fails.
    #[test]
    fn sequence_negatives_stay_inside_the_utterance() {
        tch::manual_seed(3);
        let clip = || Tensor::randn([1, 4000], (Kind::Float, Device::Cpu));
        let (x, x2, y, y2) = (clip(), clip(), clip(), clip());
        let gap = |from: NegativeSource| {
            let cfg = CpcConfig { negatives_from: from, ..CpcConfig::tiny() };
            let cpc = Cpc::new(&cfg, 7, Device::Cpu).unwrap();
            let loss = |a: &Tensor, b: &Tensor| {
                let wave = Tensor::cat(&[a, b], 0);
                let batch = AudioBatch { mask: wave.ones_like().to_kind(Kind::Bool), wave };
                cpc.loss(&batch, 0, 0).unwrap().loss.double_value(&[])
            };
            (loss(&x, &y) + loss(&x2, &y2) - loss(&x, &y2) - loss(&x2, &y)).abs()
        };
        assert!(gap(NegativeSource::Sequence) < 1e-5, "{}", gap(NegativeSource::Sequence));
        assert!(gap(NegativeSource::Batch) > 1e-3, "{}", gap(NegativeSource::Batch));
    }
}
