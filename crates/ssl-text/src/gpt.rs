//! GPT-style autoregressive language modelling (Radford et al., 2018; GPT-2, 2019).
//!
//! Learned token and position embeddings, a causal pre-LN transformer with GPT-2's tanh GELU and
//! final LayerNorm (`ln_f`), and an output layer tied to the token embeddings. GPT-2's
//! initialisation: every matrix `N(0, 0.02²)`, the residual output projections
//! `N(0, (0.02 / √(2 · layers))²)`. The loss is next-token cross-entropy; padding is never a
//! target. Generation (temperature, top-k, top-p, a KV cache) lives in [`generate`](crate::generate).
//!
//! ```
//! use ssl_core::{Encoder, Objective, StepContext};
//! use ssl_core::tch::{Device, Tensor};
//! use ssl_text::gpt::{Gpt, GptConfig};
//! ssl_core::tch::manual_seed(0);
//! let cfg = GptConfig { vocab_size: 30, ..GptConfig::tiny() };
//! let mut gpt = Gpt::new(&cfg, Device::Cpu)?;
//! let ids = Tensor::from_slice(&[5i64, 7, 9, 11, 2, 6]).view([2, 3]);
//! let ctx = StepContext { step: 0, total_steps: 1, micro_step: 0, device: Device::Cpu };
//! let out = gpt.forward(&ids, &ctx)?;
//! assert!((out.loss.double_value(&[]) - 30f64.ln()).abs() < 0.5); // about chance at init
//! assert_eq!(gpt.logits(&ids, false)?.size(), [2, 3, 30]);
//! # Ok::<(), ssl_core::Error>(())
//! ```

use serde::{Deserialize, Serialize};
use ssl_core::blocks::{KvCache, MlpActivation, NormPlacement, Transformer, TransformerConfig};
use ssl_core::error::TorchResultExt;
use ssl_core::{Encoder, Error, LossOutput, Objective, Result, StepContext};
use tch::{nn, Device, IndexOp, Kind, Tensor};

use crate::model::{self, Pooling};

/// GPT-2's LayerNorm epsilon.
pub const GPT2_LAYER_NORM_EPS: f64 = 1e-5;

/// The shape of a GPT: the `[model]` table of a `gpt` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GptConfig {
    /// Vocabulary size (set from the tokenizer).
    pub vocab_size: i64,
    /// Context length (`n_positions`).
    pub max_len: i64,
    /// Model width (`n_embd`).
    pub dim: i64,
    /// Blocks (`n_layer`).
    pub depth: usize,
    /// Attention heads (`n_head`).
    pub heads: i64,
    /// MLP hidden width (`n_inner`; GPT-2: 4 · dim).
    pub mlp_dim: i64,
    /// Dropout on embeddings and residual branches.
    pub dropout: f64,
    /// Dropout on attention weights.
    pub attn_dropout: f64,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// The padding id (set from the tokenizer): never a target, never attended to. `None` for a
    /// vocabulary without one (GPT-2's): every token is real, and batches must not be padded.
    pub pad_id: Option<i64>,
    /// The end-of-text id (set from the tokenizer).
    pub eos_id: i64,
    /// How a sequence becomes one vector for probes and fine-tuning.
    pub pooling: Pooling,
}

impl Default for GptConfig {
    /// GPT-2 small (124M parameters with its 50257-token vocabulary).
    fn default() -> Self {
        Self {
            vocab_size: 50257,
            max_len: 1024,
            dim: 768,
            depth: 12,
            heads: 12,
            mlp_dim: 3072,
            dropout: 0.1,
            attn_dropout: 0.1,
            layer_norm_eps: GPT2_LAYER_NORM_EPS,
            pad_id: None,
            eos_id: 50256,
            pooling: Pooling::Mean,
        }
    }
}

impl GptConfig {
    /// A 4-block, 256-wide GPT for CPU-sized runs (the default run's model).
    pub fn small() -> Self {
        Self { max_len: 128, dim: 256, depth: 4, heads: 4, mlp_dim: 1024, ..Self::default() }
    }

    /// A 2-block, 32-wide GPT for tests.
    pub fn tiny() -> Self {
        Self {
            vocab_size: 100,
            max_len: 64,
            dim: 32,
            depth: 2,
            heads: 4,
            mlp_dim: 128,
            pad_id: Some(1),
            eos_id: 0,
            ..Self::default()
        }
    }

    /// The decoder's transformer config.
    pub fn transformer(&self) -> TransformerConfig {
        TransformerConfig {
            mlp_ratio: model::mlp_ratio(self.mlp_dim, self.dim),
            dropout: self.dropout,
            attn_dropout: self.attn_dropout,
            layer_norm_eps: self.layer_norm_eps,
            norm_placement: NormPlacement::Pre,
            activation: MlpActivation::GeluTanh,
            ..TransformerConfig::new(self.dim, self.depth, self.heads)
        }
    }

    /// Checks every field; errors name it as `model.*`.
    pub fn validate(&self) -> Result<()> {
        model::check_sizes(self.vocab_size, self.max_len, self.pad_id.unwrap_or(0))?;
        if self.pad_id == Some(self.eos_id) {
            return Err(Error::config(
                "model.pad_id",
                "must differ from eos_id (padding is recognised by its id); leave it out when the vocabulary has no padding token",
            ));
        }
        if !(0..self.vocab_size).contains(&self.eos_id) {
            return Err(Error::config(
                "model.eos_id",
                format!("{} is not an id of the vocabulary", self.eos_id),
            ));
        }
        if self.mlp_dim < 1 {
            return Err(Error::config("model.mlp_dim", "must be at least 1"));
        }
        self.transformer().validate().map_err(model::prefix_field)
    }
}

/// A GPT language model: the `gpt` objective, and the encoder probes consume.
#[derive(Debug)]
pub struct Gpt {
    vs: nn::VarStore,
    cfg: GptConfig,
    tokens: Tensor,
    positions: Tensor,
    decoder: Transformer,
}

impl Gpt {
    /// The method's CLI name.
    pub const NAME: &'static str = "gpt";
    /// One line for `ssl methods`.
    pub const ABOUT: &'static str =
        "GPT-style autoregressive language modelling (causal pre-LN decoder, tied output, GPT-2 init)";

    /// Builds the model on `device` after validating `cfg`.
    pub fn new(cfg: &GptConfig, device: Device) -> Result<Self> {
        cfg.validate()?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let e = &root / "embed";
        let zeros = nn::Init::Const(0.0);
        let tokens = e.var("tokens", &[cfg.vocab_size, cfg.dim], zeros);
        let positions = e.var("positions", &[cfg.max_len, cfg.dim], zeros);
        let decoder = Transformer::new(&root / "decoder", &cfg.transformer())?;
        let m = Self { vs, cfg: cfg.clone(), tokens, positions, decoder };
        model::bert_style_init(&m.vs, cfg.depth)?;
        Ok(m)
    }

    /// The config.
    pub fn config(&self) -> &GptConfig {
        &self.cfg
    }

    fn embed(&self, ids: &Tensor, start: i64, train: bool) -> Result<Tensor> {
        let (_, t) = ids.size2().torch_context("token ids")?;
        if start + t > self.cfg.max_len {
            return Err(Error::shape(
                "token ids",
                format!("at most {} positions (model.max_len)", self.cfg.max_len),
                &[start + t],
            ));
        }
        let pos = Tensor::arange_start(start, start + t, (Kind::Int64, ids.device()));
        Tensor::f_embedding(&self.tokens, ids, -1, false, false)
            .and_then(|x| x.f_add(&self.positions.f_index_select(0, &pos)?))
            .and_then(|x| if train { x.f_dropout(self.cfg.dropout, true) } else { Ok(x) })
            .torch_context("gpt embeddings")
    }

    /// The final hidden states of `ids: [B, T]` (after `ln_f`): `[B, T, D]`. Padding (the pad
    /// id) is masked out of attention.
    pub fn hidden_states(&self, ids: &Tensor, train: bool) -> Result<Tensor> {
        model::check_ids(ids, self.cfg.max_len)?;
        let x = self.embed(ids, 0, train)?;
        let real = self.real_tokens(ids);
        self.decoder.f_forward(&x, real.as_ref(), true, train)
    }

    /// The padding mask of `ids` (true for real tokens); `None` without a padding id.
    pub fn real_tokens(&self, ids: &Tensor) -> Option<Tensor> {
        self.cfg.pad_id.map(|p| ids.ne(p))
    }

    /// Next-token logits of `ids: [B, T]`: `[B, T, V]`.
    pub fn logits(&self, ids: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.hidden_states(ids, train)?;
        h.f_linear::<Tensor>(&self.tokens, None).torch_context("lm head")
    }

    /// Logits of the new tokens `ids: [B, T]` that follow the cached ones (`past`, one cache per
    /// block; `None` at the start) and the extended caches: incremental decoding, no padding.
    pub fn logits_cached(&self, ids: &Tensor, past: Option<&[KvCache]>) -> Result<(Tensor, Vec<KvCache>)> {
        let start = past.and_then(|p| p.first()).map_or(0, KvCache::len);
        let x = self.embed(ids, start, false)?;
        let (h, caches) = self.decoder.f_forward_cached(&x, past)?;
        Ok((h.f_linear::<Tensor>(&self.tokens, None).torch_context("lm head")?, caches))
    }

    /// The mean next-token cross-entropy of `ids` (targets that are padding excluded) and the
    /// number of targets scored: `(loss, count)`.
    pub fn lm_loss(&self, ids: &Tensor, train: bool) -> Result<(Tensor, i64)> {
        let (_, t) = model::check_ids(ids, self.cfg.max_len)?;
        if t < 2 {
            return Err(Error::shape(
                "token ids",
                "[B, T] with T >= 2 (a next token to predict)",
                &ids.size(),
            ));
        }
        let logits = self.logits(&ids.i((.., ..t - 1)), train)?;
        let targets = ids.i((.., 1..));
        let v = self.cfg.vocab_size;
        let flat_targets = targets.reshape([-1]);
        let scored = match self.cfg.pad_id {
            Some(p) => flat_targets.ne(p),
            None => flat_targets.ones_like().to_kind(Kind::Bool),
        };
        let count = i64::try_from(scored.sum(Kind::Int64)).torch_context("target count")?;
        let targets = flat_targets.where_scalarother(&scored, -100);
        let loss = logits
            .reshape([-1, v])
            .f_cross_entropy_loss::<Tensor>(&targets, None, tch::Reduction::Mean, -100, 0.0)
            .torch_context("lm loss")?;
        Ok((loss, count))
    }
}

impl Encoder for Gpt {
    fn output_dim(&self) -> i64 {
        self.cfg.dim
    }

    fn encode(&self, input: &Tensor, train: bool) -> Tensor {
        let h = self.hidden_states(input, train).unwrap_or_else(|e| panic!("{e}"));
        let real = self.real_tokens(input).unwrap_or_else(|| input.ones_like().to_kind(Kind::Bool));
        model::pool(&h, &real, self.cfg.pooling)
    }

    fn num_layers(&self) -> usize {
        self.cfg.depth
    }

    fn layer_id(&self, name: &str) -> usize {
        model::layer_id(name, "embed.", "decoder.blocks.", self.cfg.depth)
    }
}

impl Objective for Gpt {
    type Batch = Tensor;

    fn name(&self) -> &str {
        Self::NAME
    }

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn forward(&mut self, batch: &Tensor, _ctx: &StepContext) -> Result<LossOutput> {
        let (loss, _) = self.lm_loss(batch, true)?;
        let ppl = loss.detach().exp();
        Ok(LossOutput::new(loss).with_metric("perplexity", &ppl))
    }

    fn encoder(&self) -> &dyn Encoder {
        self
    }

    fn no_weight_decay(&self, _name: &str, shape: &[i64]) -> bool {
        // GPT-2 recipes decay matrices only (embeddings included), not biases and LayerNorms.
        shape.len() < 2
    }
}
