//! wav2vec 2.0 (Baevski, Zhou, Mohamed & Auli, 2020): masked prediction of quantized speech
//! units. Reference implementation: fairseq's `Wav2Vec2Model` and `Wav2vecCriterion`.
//!
//! Raw audio → [`ConvStack`] (gradient scaled by 0.1, L2 feature penalty weight 10) →
//! LayerNorm → linear projection → span masking ([`masking`](crate::masking), a learned mask
//! embedding) → convolutional relative position embedding (kernel 128, 16 groups, weight
//! norm, GELU) added, LayerNorm → a post-LN transformer from ssl-core → a projection of the
//! masked frames. The targets are the *unmasked* LayerNormed features of the same frames, run
//! through the [`GumbelQuantizer`] and projected. Each masked frame's context vector is scored
//! by cosine similarity / 0.1 against its own quantized target and 100 distractors from other
//! masked frames of the same utterance (a distractor identical to the target is masked out);
//! the loss is the cross-entropy of picking the target, plus 0.1 × the quantizer's diversity
//! penalty and 10 × the feature penalty.
//!
//! Every step logs the code perplexity (collapse shows as a value near the number of groups),
//! the soft-code perplexity, the Gumbel temperature, the share of real frames masked and the
//! contrastive accuracy.
//!
//! Deviations from the base recipe: no LayerDrop (0.05 in the paper); masks come from a
//! generator seeded by `(seed, step, micro-step)` so runs are reproducible.
//!
//! ```
//! use ssl_audio::data::{CropBatches, CropConfig};
//! use ssl_audio::wav2vec2::{Wav2Vec2, Wav2Vec2Config};
//! use ssl_core::{Encoder, Objective, StepContext};
//! use ssl_core::tch::Device;
//! ssl_core::tch::manual_seed(0);
//! let mut model = Wav2Vec2::new(&Wav2Vec2Config::tiny(), 0, Device::Cpu)?;
//! let crops = CropBatches::new(CropConfig { crop_len: 8000, normalize: true })?;
//! let clips: Vec<Vec<f32>> =
//!     (1..3).map(|i| (0..8000).map(|t| (t as f32 * 0.01 * i as f32).sin()).collect()).collect();
//! let batch = CropBatches::stack(&clips.iter().map(|c| crops.centre(c)).collect::<Vec<_>>())?;
//! let ctx = StepContext { step: 0, total_steps: 1, micro_step: 0, device: Device::Cpu };
//! let out = model.forward(&batch, &ctx)?;
//! assert!(out.loss.double_value(&[]).is_finite());
//! assert_eq!(model.encode(&batch.wave, false).size(), [2, model.output_dim()]);
//! # Ok::<(), ssl_core::Error>(())
//! ```

use serde::{Deserialize, Serialize};
use ssl_core::blocks::{MlpActivation, NormPlacement, Transformer, TransformerConfig};
use ssl_core::error::TorchResultExt;
use ssl_core::rng::rng_for;
use ssl_core::{Encoder, Error, LossOutput, Objective, Result, StepContext};
use tch::{nn, Device, Kind, Tensor};

use crate::conv::{masked_mean, scale_grad, ConvConfig, ConvNorm, ConvStack};
use crate::data::{split_input, AudioBatch};
use crate::masking::{sample_distractors, span_mask, SpanMaskConfig};
use crate::quantizer::{CodebookInit, GumbelQuantizer, QuantizerConfig};

/// The `[model]` table of a `wav2vec2` run; the default is the paper's BASE model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Wav2Vec2Config {
    /// The feature encoder.
    pub conv: ConvConfig,
    /// Gradient scale of the feature encoder (`feature_grad_mult`, 0.1).
    pub feature_grad_mult: f64,
    /// Weight of the L2 feature penalty (10).
    pub feature_penalty: f64,
    /// Transformer width (768).
    pub dim: i64,
    /// Transformer blocks (12).
    pub depth: usize,
    /// Attention heads (12).
    pub heads: i64,
    /// MLP hidden width (3072).
    pub mlp_dim: i64,
    /// Dropout in the transformer (0.1).
    pub dropout: f64,
    /// Attention dropout (0.1).
    pub attn_dropout: f64,
    /// Dropout on the projected features before masking (`dropout_input`, 0.1).
    pub dropout_input: f64,
    /// Dropout on the features the targets are quantized from (`dropout_features`, 0.1).
    pub dropout_features: f64,
    /// Kernel of the convolutional position embedding (128).
    pub pos_conv_kernel: i64,
    /// Groups of the convolutional position embedding (16).
    pub pos_conv_groups: i64,
    /// Width of the contrastive space (`final_dim`, 256).
    pub final_dim: i64,
    /// Span masking.
    pub mask: SpanMaskConfig,
    /// The quantizer (its `dim` 0 means `final_dim`).
    pub quantizer: QuantizerConfig,
    /// Distractors per masked frame (100).
    pub distractors: usize,
    /// Temperature of the cosine logits (0.1).
    pub logit_temp: f64,
    /// Weight of the diversity penalty (0.1).
    pub diversity_weight: f64,
    /// Which transformer outputs [`Encoder::encode`] pools for probes and fine-tuning.
    pub representation: Representation,
}

/// The frame representation an encoder pools over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Representation {
    /// The last block's output (what fine-tuning in the paper starts from).
    Last,
    /// The mean of every block's output: the unweighted form of the layer average SUPERB
    /// probes use, since the last blocks of a pretrained wav2vec 2.0 specialise in the
    /// pretext task (Pasad et al., 2021).
    LayerMean,
    /// Every stage's output, concatenated: the projected features, then each block's
    /// (`(depth + 1) · dim` wide). A linear probe on it can weight the layers as SUPERB's
    /// learned weighted sum does (`W Σ wₗ hₗ = Σ (wₗ W) hₗ`), and per channel besides.
    Concat,
}

impl Default for Wav2Vec2Config {
    /// wav2vec 2.0 BASE (95M parameters).
    fn default() -> Self {
        Self {
            conv: ConvConfig::wav2vec2(),
            feature_grad_mult: 0.1,
            feature_penalty: 10.0,
            dim: 768,
            depth: 12,
            heads: 12,
            mlp_dim: 3072,
            dropout: 0.1,
            attn_dropout: 0.1,
            dropout_input: 0.1,
            dropout_features: 0.1,
            pos_conv_kernel: 128,
            pos_conv_groups: 16,
            final_dim: 256,
            mask: SpanMaskConfig::default(),
            quantizer: QuantizerConfig::default(),
            distractors: 100,
            logit_temp: 0.1,
            diversity_weight: 0.1,
            representation: Representation::Last,
        }
    }
}

impl Wav2Vec2Config {
    /// A CPU-sized model: 128 conv channels, a 4-block 192-wide transformer, position kernel
    /// 32; the masking, quantizer and contrastive loss are the paper's. Four choices differ
    /// from BASE, each measured on short CPU runs (see the crate README): no normalisation in
    /// the conv stack (the first layer's per-channel GroupNorm removes every channel's mean
    /// over the clip, which is what mean-pooled probes read), no feature penalty
    /// (with it, and a few hundred Adam steps, the conv weights shrink until the contrastive
    /// loss sits at chance; Hugging Face's implementation has none either), normally
    /// initialised codebooks ([`CodebookInit::Normal`]), and probes on every stage's output
    /// ([`Representation::Concat`]).
    pub fn small() -> Self {
        Self {
            conv: ConvConfig { channels: 128, norm: ConvNorm::None, ..ConvConfig::wav2vec2() },
            feature_penalty: 0.0,
            dim: 192,
            depth: 4,
            heads: 4,
            mlp_dim: 768,
            pos_conv_kernel: 32,
            final_dim: 128,
            quantizer: QuantizerConfig { codebook_init: CodebookInit::Normal, ..QuantizerConfig::default() },
            representation: Representation::Concat,
            ..Self::default()
        }
    }

    /// A model for tests.
    pub fn tiny() -> Self {
        Self {
            conv: ConvConfig { channels: 16, ..ConvConfig::wav2vec2() },
            dim: 32,
            depth: 1,
            heads: 2,
            mlp_dim: 64,
            pos_conv_kernel: 8,
            pos_conv_groups: 4,
            final_dim: 16,
            quantizer: QuantizerConfig { entries: 16, ..QuantizerConfig::default() },
            distractors: 10,
            ..Self::default()
        }
    }

    /// The transformer's config.
    pub fn transformer(&self) -> TransformerConfig {
        TransformerConfig {
            mlp_ratio: self.mlp_dim as f64 / self.dim as f64,
            dropout: self.dropout,
            attn_dropout: self.attn_dropout,
            layer_norm_eps: 1e-5,
            norm_placement: NormPlacement::Post,
            activation: MlpActivation::Gelu,
            ..TransformerConfig::new(self.dim, self.depth, self.heads)
        }
    }

    /// The quantizer config with its width resolved.
    pub fn quantizer(&self) -> QuantizerConfig {
        let dim = if self.quantizer.dim == 0 { self.final_dim } else { self.quantizer.dim };
        QuantizerConfig { dim, ..self.quantizer.clone() }
    }

    /// Checks every field; errors name it as `model.*`.
    pub fn validate(&self) -> Result<()> {
        self.conv.validate()?;
        self.mask.validate()?;
        self.quantizer().validate()?;
        self.transformer().validate().map_err(|e| match e {
            Error::Config { field, message } => Error::Config { field: format!("model.{field}"), message },
            other => other,
        })?;
        if self.final_dim < 1 || self.mlp_dim < 1 {
            return Err(Error::config("model", "final_dim and mlp_dim must be at least 1"));
        }
        if self.pos_conv_kernel < 2 || self.pos_conv_groups < 1 || self.dim % self.pos_conv_groups != 0 {
            return Err(Error::config(
                "model.pos_conv_groups",
                "pos_conv_kernel must be at least 2 and dim a multiple of pos_conv_groups",
            ));
        }
        if self.distractors < 1 {
            return Err(Error::config("model.distractors", "must be at least 1"));
        }
        for (name, v) in [
            ("model.dropout", self.dropout),
            ("model.attn_dropout", self.attn_dropout),
            ("model.dropout_input", self.dropout_input),
            ("model.dropout_features", self.dropout_features),
        ] {
            if !(0.0..1.0).contains(&v) {
                return Err(Error::config(name, "must be in [0, 1)"));
            }
        }
        if self.logit_temp.is_nan() || self.logit_temp <= 0.0 {
            return Err(Error::config("model.logit_temp", "must be positive"));
        }
        if !(self.feature_grad_mult >= 0.0 && self.feature_penalty >= 0.0 && self.diversity_weight >= 0.0) {
            return Err(Error::config(
                "model",
                "feature_grad_mult, feature_penalty, diversity_weight must be >= 0",
            ));
        }
        Ok(())
    }
}

/// The convolutional relative position embedding: a grouped, weight-normalised (over the
/// kernel axis, as fairseq's `weight_norm(dim=2)`) convolution, then GELU.
#[derive(Debug)]
struct PosConv {
    v: Tensor,
    g: Tensor,
    bias: Tensor,
    kernel: i64,
    groups: i64,
}

impl PosConv {
    fn new(p: nn::Path<'_>, dim: i64, kernel: i64, groups: i64, dropout: f64) -> Result<Self> {
        // fairseq: normal(0, sqrt(4 (1 - dropout) / (kernel · dim))), bias 0.
        let std = (4.0 * (1.0 - dropout) / (kernel * dim) as f64).sqrt();
        let v = p.var("weight_v", &[dim, dim / groups, kernel], nn::Init::Randn { mean: 0.0, stdev: std });
        let norm =
            tch::no_grad(|| v.square().sum_dim_intlist([0i64, 1].as_slice(), true, Kind::Float).sqrt());
        let mut g = p.var("weight_g", &[1, 1, kernel], nn::Init::Const(0.0));
        tch::no_grad(|| g.copy_(&norm));
        let bias = p.var("bias", &[dim], nn::Init::Const(0.0));
        Ok(Self { v, g, bias, kernel, groups })
    }

    /// `x: [B, T, D]` → `[B, T, D]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let norm =
            self.v.square().sum_dim_intlist([0i64, 1].as_slice(), true, Kind::Float).sqrt().clamp_min(1e-12);
        let w = &self.v * (&self.g / norm);
        let t = x.size()[1];
        let y = x
            .transpose(1, 2)
            .f_conv1d(&w, Some(&self.bias), [1], [self.kernel / 2], [1], self.groups)
            .torch_context("position convolution")?;
        // An even kernel yields one extra frame (fairseq's SamePad drops it).
        Ok(y.narrow(2, 0, t).gelu("none").transpose(1, 2))
    }
}

/// A wav2vec 2.0 model: the `wav2vec2` objective and the encoder probes consume.
#[derive(Debug)]
pub struct Wav2Vec2 {
    vs: nn::VarStore,
    cfg: Wav2Vec2Config,
    seed: u64,
    conv: ConvStack,
    feature_norm: nn::LayerNorm,
    post_extract_proj: nn::Linear,
    mask_emb: Tensor,
    pos_conv: PosConv,
    encoder_norm: nn::LayerNorm,
    encoder: Transformer,
    final_proj: nn::Linear,
    quantizer: GumbelQuantizer,
    project_q: nn::Linear,
}

/// Context features of a batch: `[B, T, D]` and the frame mask `[B, T]`.
struct Context {
    hidden: Tensor,
    frames: Tensor,
}

impl Wav2Vec2 {
    /// The method's CLI name.
    pub const NAME: &'static str = "wav2vec2";
    /// One line for `ssl methods`.
    pub const ABOUT: &'static str =
        "wav2vec 2.0: span-masked contrastive prediction of Gumbel-quantized conv features (raw audio)";

    /// A freshly initialised model on `device` (seed libtorch first for a reproducible init);
    /// `seed` drives the masks and distractors.
    pub fn new(cfg: &Wav2Vec2Config, seed: u64, device: Device) -> Result<Self> {
        cfg.validate()?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let c = cfg.conv.channels;
        let conv = ConvStack::new(&root / "feature_extractor", &cfg.conv)?;
        let feature_norm = nn::layer_norm(&root / "layer_norm", vec![c], Default::default());
        let post_extract_proj = nn::linear(&root / "post_extract_proj", c, cfg.dim, Default::default());
        let mask_emb = root.var("mask_emb", &[cfg.dim], nn::Init::Uniform { lo: 0.0, up: 1.0 });
        let e = &root / "encoder";
        let pos_conv =
            PosConv::new(&e / "pos_conv", cfg.dim, cfg.pos_conv_kernel, cfg.pos_conv_groups, cfg.dropout)?;
        let encoder_norm = nn::layer_norm(&e / "layer_norm", vec![cfg.dim], Default::default());
        let encoder = Transformer::new(&e / "layers", &cfg.transformer())?;
        let final_proj = nn::linear(&root / "final_proj", cfg.dim, cfg.final_dim, Default::default());
        let qcfg = cfg.quantizer();
        let quantizer = GumbelQuantizer::new(&root / "quantizer", c, &qcfg)?;
        let project_q = nn::linear(&root / "project_q", qcfg.dim, cfg.final_dim, Default::default());
        Ok(Self {
            vs,
            cfg: cfg.clone(),
            seed,
            conv,
            feature_norm,
            post_extract_proj,
            mask_emb,
            pos_conv,
            encoder_norm,
            encoder,
            final_proj,
            quantizer,
            project_q,
        })
    }

    /// The config.
    pub fn config(&self) -> &Wav2Vec2Config {
        &self.cfg
    }

    /// LayerNormed conv features `[B, T, C]` of `wave: [B, samples]`, with the feature
    /// penalty (mean square of the raw conv output).
    fn features(&self, wave: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        let z = self.conv.forward(wave)?;
        let z = if train { scale_grad(&z, self.cfg.feature_grad_mult) } else { z };
        let penalty = z.square().mean(Kind::Float);
        Ok((z.transpose(1, 2).apply(&self.feature_norm), penalty))
    }

    /// The transformer over projected features `x: [B, T, D]` with frame mask `[B, T]`.
    fn context(&self, x: &Tensor, frames: &Tensor, train: bool) -> Result<Tensor> {
        let x = self.context_input(x, frames, train)?;
        self.encoder.f_forward(&x, Some(frames), false, train)
    }

    /// The transformer's input: the position embedding added, normalised.
    fn context_input(&self, x: &Tensor, frames: &Tensor, train: bool) -> Result<Tensor> {
        let x = x * frames.unsqueeze(-1).to_kind(x.kind());
        let x = &x + self.pos_conv.forward(&x)?;
        Ok(x.apply(&self.encoder_norm).dropout(self.cfg.dropout, train))
    }

    fn encode_context(&self, input: &Tensor, train: bool) -> Result<Context> {
        let (wave, mask) = split_input(input)?;
        let frames = self.conv.frame_mask(&mask);
        let (z, _) = self.features(&wave, train)?;
        let x = z.apply(&self.post_extract_proj).dropout(self.cfg.dropout_input, train);
        let hidden = match self.cfg.representation {
            Representation::Last => self.context(&x, &frames, train)?,
            Representation::LayerMean => {
                let states = self.stages(&x, &frames, train)?;
                let blocks = &states[1..];
                blocks.iter().skip(1).fold(blocks[0].shallow_clone(), |sum, h| sum + h) / blocks.len() as f64
            }
            Representation::Concat => Tensor::cat(&self.stages(&x, &frames, train)?, -1),
        };
        Ok(Context { hidden, frames })
    }

    /// Every stage's frame representations of `input` (`[N, T]` or `[N, 2, T]`), as Hugging
    /// Face's `output_hidden_states` gives them: the projected features, then each block's
    /// output (`depth + 1` tensors of `[N, frames, dim]`), and the frame mask `[N, frames]`.
    pub fn hidden_states(&self, input: &Tensor) -> Result<(Vec<Tensor>, Tensor)> {
        let (wave, mask) = split_input(input)?;
        let frames = self.conv.frame_mask(&mask);
        let (z, _) = self.features(&wave, false)?;
        let states = self.stages(&z.apply(&self.post_extract_proj), &frames, false)?;
        Ok((states, frames))
    }

    /// The projected features `x` and every block's output over them (`depth + 1` tensors).
    fn stages(&self, x: &Tensor, frames: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        let mut states = vec![x.shallow_clone()];
        let mut h = self.context_input(x, frames, train)?;
        for block in self.encoder.blocks() {
            h = block.f_forward(&h, Some(frames), false, train)?;
            states.push(h.shallow_clone());
        }
        Ok(states)
    }

    /// The loss of a batch and its diagnostics.
    pub fn loss(&self, batch: &AudioBatch, step: u64, micro: usize, train: bool) -> Result<LossOutput> {
        let frames = self.conv.frame_mask(&batch.mask);
        let (b, t) = (frames.size()[0], frames.size()[1]);
        let (z, penalty) = self.features(&batch.wave, train)?;
        let unmasked = z.dropout(self.cfg.dropout_features, train);
        let x = z.apply(&self.post_extract_proj).dropout(self.cfg.dropout_input, train);
        // Span masks and distractors from a generator of (seed, step, micro-step).
        let mut rng = rng_for(self.seed, "wav2vec2-mask", &[step, micro as u64]);
        let lengths: Vec<usize> = Vec::<i64>::try_from(frames.sum_dim_intlist(1, false, Kind::Int64))
            .map_err(|e| Error::invalid("frame mask", e.to_string()))?
            .into_iter()
            .map(|n| n as usize)
            .collect();
        let rows = span_mask(&self.cfg.mask, &lengths, t as usize, &mut rng)?;
        let m = rows[0].iter().filter(|&&v| v).count() as i64;
        let flat: Vec<bool> = rows.concat();
        let masked = Tensor::from_slice(&flat).view([b, t]).to_device(x.device());
        let x = x.where_self(
            &masked.logical_not().unsqueeze(-1),
            &self.mask_emb.view([1, 1, -1]).to_kind(x.kind()),
        );
        let hidden = self.context(&x, &frames, train)?;
        // Masked frames in order, row by row: [B, M, ·].
        let pick = |h: &Tensor| {
            let d = h.size()[2];
            h.masked_select(&masked.unsqueeze(-1)).view([b, m, d])
        };
        let pred = pick(&hidden).apply(&self.final_proj);
        let q = self.quantizer.forward(&pick(&unmasked), step, train)?;
        let targets = q.quantized.apply(&self.project_q); // [B, M, F]
        let k = self.cfg.distractors as i64;
        // Each utterance draws its own distractors (fairseq's `sample_negatives`), from its own
        // masked frames.
        let mut idx: Vec<i64> = Vec::with_capacity((b * m * k) as usize);
        for _ in 0..b {
            idx.extend(
                sample_distractors(m as usize, self.cfg.distractors, &mut rng)?.into_iter().map(|i| i as i64),
            );
        }
        let idx = Tensor::from_slice(&idx).to_device(x.device()).view([b, m * k]);
        let f = targets.size()[2];
        let negs =
            targets.gather(1, &idx.unsqueeze(-1).expand([b, m * k, f], false), false).view([b, m, k, f]);
        let cands = Tensor::cat(&[targets.unsqueeze(2), negs.shallow_clone()], 2); // [B, M, 1+K, F]
        let logits = Tensor::cosine_similarity(&pred.unsqueeze(2), &cands, -1, 1e-8) / self.cfg.logit_temp; // [B, M, 1+K]
                                                                                                            // A distractor equal to the target (the same codes) cannot be told apart: mask it.
        let same = negs.eq_tensor(&targets.unsqueeze(2)).all_dim(-1, false);
        let same = Tensor::cat(&[same.zeros_like().narrow(2, 0, 1), same], 2);
        let logits = logits.masked_fill(&same, f64::NEG_INFINITY).view([b * m, 1 + k]);
        let target_idx = Tensor::zeros([b * m], (Kind::Int64, x.device()));
        let contrastive = logits.cross_entropy_for_logits(&target_idx);
        let loss = &contrastive
            + &q.diversity_loss * self.cfg.diversity_weight
            + &penalty * self.cfg.feature_penalty;
        let accuracy = logits.argmax(-1, false).eq(0).to_kind(Kind::Float).mean(Kind::Float);
        let real = frames.sum(Kind::Float);
        let share = Tensor::from((b * m) as f32).to_device(x.device()) / real;
        Ok(LossOutput::new(loss)
            .with_metric("contrastive", &contrastive)
            .with_metric("accuracy", &accuracy)
            .with_metric("code_perplexity", &q.code_perplexity)
            .with_metric("prob_perplexity", &q.prob_perplexity)
            .with_metric("temperature", &Tensor::from(q.temperature))
            .with_metric("masked_share", &share)
            .with_metric("feature_penalty", &penalty))
    }
}

impl Objective for Wav2Vec2 {
    type Batch = AudioBatch;
    fn name(&self) -> &str {
        Self::NAME
    }
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
    fn forward(&mut self, batch: &AudioBatch, ctx: &StepContext) -> Result<LossOutput> {
        self.loss(batch, ctx.step, ctx.micro_step, true)
    }
    fn encoder(&self) -> &dyn Encoder {
        self
    }
}

impl Encoder for Wav2Vec2 {
    fn output_dim(&self) -> i64 {
        match self.cfg.representation {
            Representation::Concat => self.cfg.dim * (self.cfg.depth as i64 + 1),
            Representation::Last | Representation::LayerMean => self.cfg.dim,
        }
    }
    /// The configured [`Representation`] of the unmasked input, mean-pooled over real frames:
    /// `[N, output_dim]` from `[N, T]` or `[N, 2, T]` (waveform, mask).
    fn encode(&self, input: &Tensor, train: bool) -> Tensor {
        let ctx = self.encode_context(input, train).unwrap_or_else(|e| panic!("{e}"));
        masked_mean(&ctx.hidden, &ctx.frames)
    }
    fn num_layers(&self) -> usize {
        self.cfg.depth
    }
    fn layer_id(&self, name: &str) -> usize {
        match name.strip_prefix("encoder.layers.blocks.") {
            Some(rest) => rest.split('.').next().and_then(|i| i.parse::<usize>().ok()).map_or(0, |i| i + 1),
            None if name.starts_with("encoder.") => 0,
            None if name.starts_with("final_proj")
                || name.starts_with("quantizer")
                || name.starts_with("project_q") =>
            {
                self.cfg.depth + 1
            }
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(b: i64, t: i64, real: &[i64]) -> AudioBatch {
        let idx = Tensor::arange(t, (Kind::Int64, Device::Cpu)).unsqueeze(0);
        let lens = Tensor::from_slice(real).unsqueeze(1);
        let mask = idx.lt_tensor(&lens);
        let wave = Tensor::randn([b, t], (Kind::Float, Device::Cpu)) * mask.to_kind(Kind::Float);
        AudioBatch { wave, mask }
    }

    #[test]
    fn the_base_recipe_constants_are_the_papers() {
        let c = Wav2Vec2Config::default();
        assert_eq!((c.dim, c.depth, c.heads, c.mlp_dim, c.final_dim), (768, 12, 12, 3072, 256));
        assert_eq!((c.pos_conv_kernel, c.pos_conv_groups, c.distractors), (128, 16, 100));
        assert_eq!(
            (c.feature_grad_mult, c.feature_penalty, c.diversity_weight, c.logit_temp),
            (0.1, 10.0, 0.1, 0.1)
        );
        assert_eq!((c.mask.prob, c.mask.span, c.mask.min_spans), (0.65, 10, 2));
        assert_eq!((c.quantizer.groups, c.quantizer.entries), (2, 320));
        c.validate().unwrap();
    }

    #[test]
    fn loss_is_finite_logs_the_gauges_and_trains_every_part() {
        tch::manual_seed(0);
        let model = Wav2Vec2::new(&Wav2Vec2Config::tiny(), 0, Device::Cpu).unwrap();
        let out = model.loss(&batch(3, 8000, &[8000, 8000, 6000]), 0, 0, true).unwrap();
        assert!(out.loss.double_value(&[]).is_finite());
        let names: Vec<&str> = out.metrics.iter().map(|(n, _)| n.as_str()).collect();
        for want in ["code_perplexity", "masked_share", "temperature", "accuracy"] {
            assert!(names.contains(&want), "{names:?}");
        }
        let share = out.metrics.iter().find(|(n, _)| n == "masked_share").unwrap().1.double_value(&[]);
        assert!(share > 0.2 && share < 0.8, "{share}");
        out.loss.backward();
        for (name, v) in model.var_store().variables() {
            let g = v.grad();
            assert!(
                g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0,
                "no gradient for {name}"
            );
        }
    }

    #[test]
    fn the_padding_mask_keeps_padding_out_of_the_representation() {
        tch::manual_seed(1);
        let model = Wav2Vec2::new(&Wav2Vec2Config::tiny(), 0, Device::Cpu).unwrap();
        let wave = Tensor::randn([1, 6400], (Kind::Float, Device::Cpu));
        let alone = model.encode(&wave, false);
        let padded =
            Tensor::cat(&[wave.shallow_clone(), Tensor::zeros([1, 6400], (Kind::Float, Device::Cpu))], 1);
        let mask = Tensor::arange(12800, (Kind::Int64, Device::Cpu)).lt(6400).unsqueeze(0);
        let rel = |z: &Tensor| ((z - &alone).norm() / alone.norm()).double_value(&[]);
        let masked = rel(&model.encode(&crate::data::encoder_input(&padded, &mask), false));
        let unmasked = rel(&model.encode(&padded, false));
        // GroupNorm on the first layer sees the padding, so equality is approximate.
        assert!(masked < 0.5 * unmasked, "masked {masked} unmasked {unmasked}");
    }

    #[test]
    fn hidden_states_hold_every_stage_and_the_layer_mean_pools_them() {
        tch::manual_seed(2);
        let cfg =
            Wav2Vec2Config { depth: 2, representation: Representation::LayerMean, ..Wav2Vec2Config::tiny() };
        let model = Wav2Vec2::new(&cfg, 0, Device::Cpu).unwrap();
        let wave = Tensor::randn([2, 4000], (Kind::Float, Device::Cpu));
        let (states, frames) = model.hidden_states(&wave).unwrap();
        assert_eq!(states.len(), 3);
        let mean = (masked_mean(&states[1], &frames) + masked_mean(&states[2], &frames)) / 2.0;
        let z = model.encode(&wave, false);
        assert!((z - mean).abs().max().double_value(&[]) < 1e-5);
    }

    #[test]
    fn the_concatenated_representation_holds_every_stage_in_order() {
        tch::manual_seed(2);
        let cfg =
            Wav2Vec2Config { depth: 2, representation: Representation::Concat, ..Wav2Vec2Config::tiny() };
        let model = Wav2Vec2::new(&cfg, 0, Device::Cpu).unwrap();
        assert_eq!(model.output_dim(), 3 * cfg.dim);
        let wave = Tensor::randn([2, 4000], (Kind::Float, Device::Cpu));
        let (states, frames) = model.hidden_states(&wave).unwrap();
        let pooled: Vec<Tensor> = states.iter().map(|h| masked_mean(h, &frames)).collect();
        let z = model.encode(&wave, false);
        assert_eq!(z.size(), [2, 3 * cfg.dim]);
        assert!((z - Tensor::cat(&pooled, 1)).abs().max().double_value(&[]) < 1e-5);
    }

    #[test]
    fn bad_configs_name_the_field() {
        let e = Wav2Vec2Config { distractors: 0, ..Wav2Vec2Config::tiny() }.validate().unwrap_err();
        assert!(e.to_string().contains("model.distractors"), "{e}");
        let e = Wav2Vec2Config { pos_conv_groups: 5, ..Wav2Vec2Config::tiny() }.validate().unwrap_err();
        assert!(e.to_string().contains("model.pos_conv_groups"), "{e}");
    }
}
