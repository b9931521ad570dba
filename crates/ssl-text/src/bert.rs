//! BERT-style masked language modelling (Devlin et al., 2019).
//!
//! Token, position and segment embeddings summed and layer-normalised, a post-LN transformer
//! encoder (ssl-core's block with [`NormPlacement::Post`] and exact GELU), and the MLM head
//! (`dense → GELU → LayerNorm`, then the token embeddings, tied, plus a bias) scored on the
//! masked positions only. Weights start as BERT's do (normal 0.02, zero biases, the padding
//! embedding zero). Inputs come from [`MlmBatches`](crate::batches::MlmBatches): the
//! corruption of [`masking`](crate::masking).
//!
//! ```
//! use ssl_core::{Encoder, Objective, StepContext};
//! use ssl_core::tch::{Device, Kind, Tensor};
//! use ssl_text::bert::{Bert, BertConfig};
//! ssl_core::tch::manual_seed(0);
//! let cfg = BertConfig { vocab_size: 30, ..BertConfig::tiny() };
//! let mut bert = Bert::new(&cfg, Device::Cpu)?;
//! let ids = Tensor::from_slice(&[2i64, 7, 4, 9, 3, 0]).view([1, 6]); // [CLS] a [MASK] b [SEP] [PAD]
//! let labels = Tensor::from_slice(&[-100i64, -100, 8, -100, -100, -100]).view([1, 6]);
//! let ctx = StepContext { step: 0, total_steps: 1, micro_step: 0, device: Device::Cpu };
//! let out = bert.forward(&(ids.shallow_clone(), labels), &ctx)?;
//! assert!((out.loss.double_value(&[]) - 30f64.ln()).abs() < 1.0); // about chance at init
//! assert_eq!(bert.encode(&ids, false).size(), [1, cfg.dim]);
//! # Ok::<(), ssl_core::Error>(())
//! ```

use serde::{Deserialize, Serialize};
use ssl_core::blocks::{MlpActivation, NormPlacement, Transformer, TransformerConfig};
use ssl_core::error::TorchResultExt;
use ssl_core::{Encoder, Error, LossOutput, Objective, Result, StepContext};
use tch::{nn, Device, Kind, Tensor};

use crate::masking::{MaskingConfig, IGNORE_INDEX};
use crate::model::{self, Pooling};

/// BERT's LayerNorm epsilon.
pub const BERT_LAYER_NORM_EPS: f64 = 1e-12;

/// The shape of a BERT: the `[model]` table of a `bert` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BertConfig {
    /// Vocabulary size (set from the tokenizer).
    pub vocab_size: i64,
    /// Longest sequence (position embeddings).
    pub max_len: i64,
    /// Model width.
    pub dim: i64,
    /// Blocks.
    pub depth: usize,
    /// Attention heads.
    pub heads: i64,
    /// MLP hidden width (`intermediate_size`).
    pub mlp_dim: i64,
    /// Segment types (`type_vocab_size`).
    pub type_vocab_size: i64,
    /// Dropout on embeddings and residual branches (`hidden_dropout_prob`).
    pub dropout: f64,
    /// Dropout on attention weights.
    pub attn_dropout: f64,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// The padding id (set from the tokenizer): never attended to.
    pub pad_id: i64,
    /// How a sequence becomes one vector for probes and fine-tuning.
    pub pooling: Pooling,
    /// The MLM corruption.
    pub masking: MaskingConfig,
    /// Post-LN (BERT's, the default; what Hugging Face's BERT loads) or pre-LN blocks (with a
    /// final LayerNorm; easier to train at high learning rates, not exportable to HF's BERT).
    pub norm_placement: NormPlacement,
}

impl Default for BertConfig {
    /// BERT-base (110M parameters with a 30522-token vocabulary).
    fn default() -> Self {
        Self {
            vocab_size: 30522,
            max_len: 512,
            dim: 768,
            depth: 12,
            heads: 12,
            mlp_dim: 3072,
            type_vocab_size: 2,
            dropout: 0.1,
            attn_dropout: 0.1,
            layer_norm_eps: BERT_LAYER_NORM_EPS,
            pad_id: 0,
            pooling: Pooling::Mean,
            masking: MaskingConfig::default(),
            norm_placement: NormPlacement::Post,
        }
    }
}

impl BertConfig {
    /// A 4-block, 256-wide BERT for CPU-sized runs (the default run's model).
    pub fn small() -> Self {
        Self { max_len: 128, dim: 256, depth: 4, heads: 4, mlp_dim: 1024, ..Self::default() }
    }

    /// A 2-block, 32-wide BERT for tests.
    pub fn tiny() -> Self {
        Self { vocab_size: 100, max_len: 64, dim: 32, depth: 2, heads: 4, mlp_dim: 64, ..Self::default() }
    }

    /// The encoder's transformer config.
    pub fn transformer(&self) -> TransformerConfig {
        TransformerConfig {
            mlp_ratio: model::mlp_ratio(self.mlp_dim, self.dim),
            dropout: self.dropout,
            attn_dropout: self.attn_dropout,
            layer_norm_eps: self.layer_norm_eps,
            norm_placement: self.norm_placement,
            activation: MlpActivation::Gelu,
            ..TransformerConfig::new(self.dim, self.depth, self.heads)
        }
    }

    /// Checks every field; errors name it as `model.*`.
    pub fn validate(&self) -> Result<()> {
        model::check_sizes(self.vocab_size, self.max_len, self.pad_id)?;
        if self.type_vocab_size < 1 {
            return Err(Error::config("model.type_vocab_size", "must be at least 1"));
        }
        if self.mlp_dim < 1 {
            return Err(Error::config("model.mlp_dim", "must be at least 1"));
        }
        self.transformer().validate().map_err(model::prefix_field)?;
        self.masking.validate()
    }
}

/// A BERT with its MLM head: the `bert` objective, and the encoder probes consume.
#[derive(Debug)]
pub struct Bert {
    vs: nn::VarStore,
    cfg: BertConfig,
    tokens: Tensor,
    positions: Tensor,
    segments: Tensor,
    embed_norm: nn::LayerNorm,
    encoder: Transformer,
    head_dense: nn::Linear,
    head_norm: nn::LayerNorm,
    head_bias: Tensor,
}

impl Bert {
    /// The method's CLI name.
    pub const NAME: &'static str = "bert";
    /// One line for `ssl methods`.
    pub const ABOUT: &'static str =
        "BERT-style masked language modelling (80/10/10 masking, tied MLM head, post-LN encoder)";

    /// Builds the model on `device` after validating `cfg`.
    pub fn new(cfg: &BertConfig, device: Device) -> Result<Self> {
        cfg.validate()?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let e = &root / "embed";
        let (d, eps) = (cfg.dim, cfg.layer_norm_eps);
        let zeros = nn::Init::Const(0.0);
        let tokens = e.var("tokens", &[cfg.vocab_size, d], zeros);
        let positions = e.var("positions", &[cfg.max_len, d], zeros);
        let segments = e.var("segments", &[cfg.type_vocab_size, d], zeros);
        let ln =
            |p: nn::Path<'_>| nn::layer_norm(p, vec![d], nn::LayerNormConfig { eps, ..Default::default() });
        let embed_norm = ln(&e / "norm");
        let encoder = Transformer::new(&root / "encoder", &cfg.transformer())?;
        let h = &root / "mlm";
        let head_dense = nn::linear(&h / "dense", d, d, Default::default());
        let head_norm = ln(&h / "norm");
        let head_bias = h.var("bias", &[cfg.vocab_size], zeros);
        let model = Self {
            vs,
            cfg: cfg.clone(),
            tokens,
            positions,
            segments,
            embed_norm,
            encoder,
            head_dense,
            head_norm,
            head_bias,
        };
        model::bert_style_init(&model.vs, 0)?;
        model::zero_row(&model.tokens, cfg.pad_id)?;
        Ok(model)
    }

    /// The config.
    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    /// The padding mask of `ids`: true for real tokens.
    pub fn real_tokens(&self, ids: &Tensor) -> Tensor {
        ids.ne(self.cfg.pad_id)
    }

    /// The final hidden states of `ids: [B, T]` (segment 0 everywhere): `[B, T, D]`.
    pub fn hidden_states(&self, ids: &Tensor, train: bool) -> Result<Tensor> {
        self.hidden_states_with_segments(ids, None, train)
    }

    /// Hidden states with explicit segment ids `[B, T]` (`token_type_ids`).
    pub fn hidden_states_with_segments(
        &self,
        ids: &Tensor,
        segments: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        let (_, t) = model::check_ids(ids, self.cfg.max_len)?;
        let pos = Tensor::arange(t, (Kind::Int64, ids.device()));
        let seg = match segments {
            Some(s) => s.shallow_clone(),
            None => ids.zeros_like(),
        };
        let x = Tensor::f_embedding(&self.tokens, ids, -1, false, false)
            .and_then(|x| x.f_add(&self.positions.f_index_select(0, &pos)?))
            .and_then(|x| x.f_add(&Tensor::f_embedding(&self.segments, &seg, -1, false, false)?))
            .and_then(|x| {
                x.f_layer_norm(
                    [self.cfg.dim],
                    self.embed_norm.ws.as_ref(),
                    self.embed_norm.bs.as_ref(),
                    self.cfg.layer_norm_eps,
                    true,
                )
            })
            .and_then(|x| if train { x.f_dropout(self.cfg.dropout, true) } else { Ok(x) })
            .torch_context("bert embeddings")?;
        self.encoder.f_forward(&x, Some(&self.real_tokens(ids)), false, train)
    }

    /// MLM logits of hidden states `h: [..., D]`: `[..., V]`.
    pub fn mlm_logits(&self, h: &Tensor) -> Result<Tensor> {
        h.f_linear(&self.head_dense.ws, self.head_dense.bs.as_ref())
            .and_then(|x| x.f_gelu("none"))
            .and_then(|x| {
                x.f_layer_norm(
                    [self.cfg.dim],
                    self.head_norm.ws.as_ref(),
                    self.head_norm.bs.as_ref(),
                    self.cfg.layer_norm_eps,
                    true,
                )
            })
            .and_then(|x| x.f_linear(&self.tokens, Some(&self.head_bias)))
            .torch_context("mlm head")
    }

    /// The MLM loss and masked-token accuracy of `(inputs, labels)`, scoring only the positions
    /// whose label is not [`IGNORE_INDEX`]: `(loss, correct, predicted)`.
    pub fn mlm_loss(
        &self,
        inputs: &Tensor,
        labels: &Tensor,
        train: bool,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        if labels.size() != inputs.size() {
            return Err(Error::shape(
                "labels",
                format!("{:?} (the inputs' shape)", inputs.size()),
                &labels.size(),
            ));
        }
        let h = self.hidden_states(inputs, train)?;
        let chosen = labels.ne(IGNORE_INDEX);
        let h = h.f_index(&[Some(&chosen)]).torch_context("masked positions")?; // [M, D]
        let targets = labels.f_index(&[Some(&chosen)]).torch_context("masked labels")?;
        let logits = self.mlm_logits(&h)?;
        let n = targets.size()[0];
        let loss = if n == 0 {
            // No position chosen (a very short batch): a zero loss that still has a graph.
            logits.sum(Kind::Float) * 0.0
        } else {
            logits
                .f_cross_entropy_loss::<Tensor>(&targets, None, tch::Reduction::Mean, IGNORE_INDEX, 0.0)
                .torch_context("mlm loss")?
        };
        let correct = logits.argmax(-1, false).eq_tensor(&targets).sum(Kind::Float);
        Ok((loss, correct, Tensor::from(n as f32).to_device(inputs.device())))
    }
}

impl Encoder for Bert {
    fn output_dim(&self) -> i64 {
        self.cfg.dim
    }

    fn encode(&self, input: &Tensor, train: bool) -> Tensor {
        let h = self.hidden_states(input, train).unwrap_or_else(|e| panic!("{e}"));
        model::pool(&h, &self.real_tokens(input), self.cfg.pooling)
    }

    fn num_layers(&self) -> usize {
        self.cfg.depth
    }

    fn layer_id(&self, name: &str) -> usize {
        model::layer_id(name, "embed.", "encoder.blocks.", self.cfg.depth)
    }
}

impl Objective for Bert {
    type Batch = (Tensor, Tensor);

    fn name(&self) -> &str {
        Self::NAME
    }

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn forward(&mut self, batch: &Self::Batch, _ctx: &StepContext) -> Result<LossOutput> {
        let (loss, correct, n) = self.mlm_loss(&batch.0, &batch.1, true)?;
        let acc = &correct / n.clamp_min(1.0);
        Ok(LossOutput::new(loss).with_metric("masked_accuracy", &acc))
    }

    fn encoder(&self) -> &dyn Encoder {
        self
    }

    fn no_weight_decay(&self, name: &str, shape: &[i64]) -> bool {
        // BERT exempts biases and LayerNorm weights (every 1-D parameter).
        shape.len() < 2 || name.ends_with("bias")
    }
}
