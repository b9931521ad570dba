//! CLIP (Radford et al., 2021): an image tower and a text tower trained to agree on which
//! caption goes with which image.
//!
//! - **Image tower**: ssl-vision's [`Vit`] (class token after the final norm, CLIP's `ln_post`)
//!   or [`ResNet`] (global average pool; CLIP's attention pool is not implemented), then a
//!   linear projection without bias to `embed_dim`.
//! - **Text tower**: token and learned position embeddings, ssl-core's pre-LN [`Transformer`]
//!   with a causal mask and its final LayerNorm (CLIP's `ln_final`), the state at the
//!   end-of-text token (the last real token), and a projection without bias.
//! - **Loss**: both embeddings L2-normalised; logits `exp(t) · cos` with the learnable `t`
//!   initialised to `ln(1/0.07)` and clamped to `[0, ln 100]` after every step; the symmetric
//!   cross-entropy ([`clip_loss`]), or SigLIP's sigmoid loss ([`siglip_loss`], with a learnable
//!   bias, `t = ln 10` and `b = -10` at the start) with [`ClipLoss::Sigmoid`].
//! - **Feature-cached accumulation** ([`ClipConfig::micro_batches`] > 1, open_clip's
//!   `accum_freq`): the batch's embeddings are first computed without gradients in
//!   micro-batches; then each micro-batch is encoded again with gradients and its embeddings
//!   replace their cached copies in the full-batch loss, which is back-propagated. Every
//!   example still sees the whole batch as negatives, activations are held for one micro-batch
//!   at a time, and the summed gradients equal the full batch's (the logit scale takes its
//!   gradient from the first pass only, so it is not counted `micro_batches` times). Exact for
//!   models without batch statistics (the ViT; a ResNet's BatchNorm sees micro-batches).
//!
//! ```
//! use ssl_core::tch::{Device, Kind, Tensor};
//! use ssl_multimodal::clip::{Clip, ClipConfig};
//! let cfg = ClipConfig::tiny();
//! let clip = Clip::new(&cfg, 50, 0, Device::Cpu)?;
//! let images = Tensor::randn([3, 3, 16, 16], (Kind::Float, Device::Cpu));
//! let tokens = Tensor::from_slice(&[5i64, 6, 7, 1, 0, 0, 0, 0]).view([1, 8]).repeat([3, 1]);
//! let (i, t) = clip.embeddings(&images, &tokens, false)?;
//! assert_eq!((i.size(), t.size()), (vec![3, cfg.embed_dim], vec![3, cfg.embed_dim]));
//! assert!((i.norm().double_value(&[]) - 3f64.sqrt()).abs() < 1e-4); // unit rows
//! # Ok::<(), ssl_core::Error>(())
//! ```

use serde::{Deserialize, Serialize};
use ssl_core::blocks::{init, Transformer, TransformerConfig};
use ssl_core::error::TorchResultExt;
use ssl_core::{Encoder, Error, LossOutput, Objective, Result, StepContext};
use ssl_vision::backbone::{ResNet, ResNetConfig, Vit, VitConfig, VitPool};
use tch::{nn, Kind, Tensor};

use crate::batch::PairBatch;
use crate::loss::{batch_accuracy, clip_loss, siglip_loss};

/// The image tower, chosen by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ImageTowerConfig {
    /// A Vision Transformer (class-token representation).
    Vit(VitConfig),
    /// A ResNet (average-pooled representation).
    Resnet(ResNetConfig),
}

impl ImageTowerConfig {
    /// The side of the square images the tower takes, when it fixes one (the ViT).
    pub fn image_size(&self) -> Option<i64> {
        match self {
            Self::Vit(v) => Some(v.image_size),
            Self::Resnet(_) => None,
        }
    }
}

/// The text tower.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextTowerConfig {
    /// Token ids per caption, end-of-text included (CLIP: 77).
    pub context_length: i64,
    /// Width of the transformer.
    pub width: i64,
    /// Blocks.
    pub depth: usize,
    /// Attention heads; must divide `width`.
    pub heads: i64,
    /// MLP hidden width as a multiple of `width` (4).
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
}

fn default_mlp_ratio() -> f64 {
    4.0
}

/// Which contrastive loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipLoss {
    /// CLIP's symmetric cross-entropy over the batch.
    #[default]
    Softmax,
    /// SigLIP's pairwise sigmoid loss.
    Sigmoid,
}

/// The `[model]` table of a `clip` run; the default is CLIP ViT-B/16.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipConfig {
    /// The image tower.
    pub image: ImageTowerConfig,
    /// The text tower.
    pub text: TextTowerConfig,
    /// Width of the shared embedding space.
    pub embed_dim: i64,
    /// The loss.
    #[serde(default)]
    pub loss: ClipLoss,
    /// Initial log logit scale (default `ln(1/0.07)` for softmax, `ln 10` for sigmoid).
    #[serde(default)]
    pub init_logit_scale: Option<f64>,
    /// Initial logit bias of the sigmoid loss (-10).
    #[serde(default = "default_bias")]
    pub init_logit_bias: f64,
    /// The largest logit scale; the log scale is clamped to `[0, ln max_logit_scale]` after
    /// every step (100).
    #[serde(default = "default_max_scale")]
    pub max_logit_scale: f64,
    /// Micro-batches of the feature-cached accumulation (1: none).
    #[serde(default = "default_one")]
    pub micro_batches: usize,
}

fn default_bias() -> f64 {
    -10.0
}
fn default_max_scale() -> f64 {
    100.0
}
fn default_one() -> usize {
    1
}

impl Default for ClipConfig {
    fn default() -> Self {
        Self {
            image: ImageTowerConfig::Vit(VitConfig::base(224)),
            text: TextTowerConfig { context_length: 77, width: 512, depth: 12, heads: 8, mlp_ratio: 4.0 },
            embed_dim: 512,
            loss: ClipLoss::Softmax,
            init_logit_scale: None,
            init_logit_bias: default_bias(),
            max_logit_scale: default_max_scale(),
            micro_batches: 1,
        }
    }
}

impl ClipConfig {
    /// A CPU-sized model for 32 px images: ViT 128 wide, 4 blocks, patch 4; text 128 wide,
    /// 3 blocks, 24 tokens; 128-d embeddings.
    pub fn small() -> Self {
        Self {
            image: ImageTowerConfig::Vit(VitConfig { dim: 128, depth: 4, heads: 4, ..VitConfig::tiny(32) }),
            text: TextTowerConfig { context_length: 24, width: 128, depth: 3, heads: 4, mlp_ratio: 4.0 },
            embed_dim: 128,
            ..Self::default()
        }
    }

    /// A model for tests: 16 px images, 8 tokens.
    pub fn tiny() -> Self {
        Self {
            image: ImageTowerConfig::Vit(VitConfig::test()),
            text: TextTowerConfig { context_length: 8, width: 32, depth: 2, heads: 2, mlp_ratio: 2.0 },
            embed_dim: 16,
            ..Self::default()
        }
    }

    /// The initial log logit scale.
    pub fn initial_logit_scale(&self) -> f64 {
        self.init_logit_scale.unwrap_or(match self.loss {
            ClipLoss::Softmax => (1.0f64 / 0.07).ln(),
            ClipLoss::Sigmoid => 10f64.ln(),
        })
    }

    /// Checks the fields; errors name them as `model.*`.
    pub fn validate(&self) -> Result<()> {
        match &self.image {
            ImageTowerConfig::Vit(v) => v.validate()?,
            ImageTowerConfig::Resnet(r) => r.validate()?,
        }
        let t = &self.text;
        if t.context_length < 2 {
            return Err(Error::config("model.text.context_length", "must be at least 2"));
        }
        if t.width < 1 || t.heads < 1 || t.width % t.heads != 0 {
            return Err(Error::config("model.text.heads", "must be at least 1 and divide model.text.width"));
        }
        if t.depth < 1 {
            return Err(Error::config("model.text.depth", "must be at least 1"));
        }
        if self.embed_dim < 1 {
            return Err(Error::config("model.embed_dim", "must be at least 1"));
        }
        if !(self.max_logit_scale >= 1.0 && self.max_logit_scale.is_finite()) {
            return Err(Error::config("model.max_logit_scale", "must be a finite number >= 1"));
        }
        let s = self.initial_logit_scale();
        if !(0.0..=self.max_logit_scale.ln()).contains(&s) {
            return Err(Error::config(
                "model.init_logit_scale",
                "must lie in [0, ln max_logit_scale] (it is a log scale)",
            ));
        }
        if self.micro_batches < 1 {
            return Err(Error::config("model.micro_batches", "must be at least 1"));
        }
        Ok(())
    }
}

#[derive(Debug)]
enum ImageTower {
    Vit(Vit),
    ResNet(ResNet),
}

impl ImageTower {
    fn features(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Self::Vit(v) => v.f_encode(images, train),
            Self::ResNet(r) => r.f_forward_t(images, train),
        }
    }
    fn dim(&self) -> i64 {
        match self {
            Self::Vit(v) => v.output_dim(),
            Self::ResNet(r) => r.output_dim(),
        }
    }
}

/// A CLIP model: the `clip` objective, image and text embeddings, and the image encoder that
/// probes consume.
#[derive(Debug)]
pub struct Clip {
    vs: nn::VarStore,
    cfg: ClipConfig,
    vocab_size: i64,
    pad_id: i64,
    image: ImageTower,
    image_proj: Tensor,
    token_embedding: Tensor,
    positional_embedding: Tensor,
    text: Transformer,
    text_proj: Tensor,
    logit_scale: Tensor,
    logit_bias: Option<Tensor>,
}

impl Clip {
    /// The method's CLI name.
    pub const NAME: &'static str = "clip";
    /// One line for `ssl methods`.
    pub const ABOUT: &'static str =
        "CLIP: image and text towers, symmetric InfoNCE (or SigLIP) over image-caption pairs; zero-shot, retrieval";

    /// A freshly initialised model for a vocabulary of `vocab_size` ids with padding id
    /// `pad_id`, on `device`.
    ///
    /// Initialisation as CLIP's: token embeddings `N(0, 0.02)`, position embeddings
    /// `N(0, 0.01)`, projections `N(0, width^-1/2)`; the towers' blocks as ssl-core's.
    pub fn new(cfg: &ClipConfig, vocab_size: i64, pad_id: i64, device: tch::Device) -> Result<Self> {
        cfg.validate()?;
        if vocab_size < 2 || !(0..vocab_size).contains(&pad_id) {
            return Err(Error::config(
                "model.vocab_size",
                format!("{vocab_size} ids with padding id {pad_id}"),
            ));
        }
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let image = match &cfg.image {
            ImageTowerConfig::Vit(v) => {
                ImageTower::Vit(Vit::new(&root / "visual", &VitConfig { pool: VitPool::Cls, ..v.clone() })?)
            }
            ImageTowerConfig::Resnet(r) => ImageTower::ResNet(ResNet::new(&root / "visual", r)?),
        };
        let e = cfg.embed_dim;
        let normal = |path: &nn::Path<'_>, name: &str, dims: &[i64], std: f64| -> Result<Tensor> {
            let mut t = path.f_zeros(name, dims).torch_context(name)?;
            init::normal_(&mut t, std)?;
            Ok(t)
        };
        let image_proj =
            normal(&(&root / "visual"), "proj", &[image.dim(), e], (image.dim() as f64).powf(-0.5))?;
        let t = &cfg.text;
        let token_embedding = normal(&(&root / "token_embedding"), "weight", &[vocab_size, t.width], 0.02)?;
        let positional_embedding = normal(&root, "positional_embedding", &[t.context_length, t.width], 0.01)?;
        let tcfg =
            TransformerConfig { mlp_ratio: t.mlp_ratio, ..TransformerConfig::new(t.width, t.depth, t.heads) };
        let text = Transformer::new(&root / "transformer", &tcfg)?;
        let text_proj = normal(&root, "text_projection", &[t.width, e], (t.width as f64).powf(-0.5))?;
        let logit_scale = root
            .f_var("logit_scale", &[], nn::Init::Const(cfg.initial_logit_scale()))
            .torch_context("logit_scale")?;
        let logit_bias = match cfg.loss {
            ClipLoss::Softmax => None,
            ClipLoss::Sigmoid => Some(
                root.f_var("logit_bias", &[], nn::Init::Const(cfg.init_logit_bias))
                    .torch_context("logit_bias")?,
            ),
        };
        Ok(Self {
            vs,
            cfg: cfg.clone(),
            vocab_size,
            pad_id,
            image,
            image_proj,
            token_embedding,
            positional_embedding,
            text,
            text_proj,
            logit_scale,
            logit_bias,
        })
    }

    /// The config.
    pub fn config(&self) -> &ClipConfig {
        &self.cfg
    }

    /// The current log logit scale.
    pub fn logit_scale(&self) -> f64 {
        self.logit_scale.double_value(&[])
    }

    /// The image embeddings `[N, embed_dim]`, not normalised.
    pub fn encode_image(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        self.image.features(images, train)?.f_matmul(&self.image_proj).torch_context("image projection")
    }

    /// The text embeddings `[N, embed_dim]` of token ids `[N, T]` (`T <= context_length`,
    /// right-padded with the padding id), not normalised: the state at the last real token.
    pub fn encode_text(&self, tokens: &Tensor, train: bool) -> Result<Tensor> {
        let size = tokens.size();
        let ctx = self.cfg.text.context_length;
        if size.len() != 2 || size[1] < 1 || size[1] > ctx || tokens.kind() != Kind::Int64 {
            return Err(Error::shape("caption ids", format!("[N, T] int64 with 1 <= T <= {ctx}"), &size));
        }
        if size[0] > 0 {
            let (lo, hi) = (tokens.min().int64_value(&[]), tokens.max().int64_value(&[]));
            if lo < 0 || hi >= self.vocab_size {
                return Err(Error::invalid(
                    "caption ids",
                    format!("ids must lie in [0, {}), got [{lo}, {hi}]", self.vocab_size),
                ));
            }
        }
        let t = size[1];
        let x = Tensor::f_embedding(&self.token_embedding, tokens, self.pad_id, false, false)
            .and_then(|x| x.f_add(&self.positional_embedding.narrow(0, 0, t)))
            .torch_context("text embedding")?;
        // Right padding after the end-of-text token: a causal mask alone keeps padding out
        // of every real position.
        let h = self.text.f_forward(&x, None, true, train)?;
        let real = tokens.ne(self.pad_id);
        let last = (real.sum_dim_intlist(1, false, Kind::Int64) - 1).clamp_min(0);
        let w = self.cfg.text.width;
        let pooled = h.gather(1, &last.view([-1, 1, 1]).expand([-1, 1, w], false), false).squeeze_dim(1);
        pooled.f_matmul(&self.text_proj).torch_context("text projection")
    }

    /// L2-normalised image and text embeddings of a batch of pairs.
    pub fn embeddings(&self, images: &Tensor, tokens: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        let i = normalize(&self.encode_image(images, train)?);
        let t = normalize(&self.encode_text(tokens, train)?);
        Ok((i, t))
    }

    /// The loss of normalised embeddings at the given log scale (and bias, for SigLIP).
    fn objective_loss(
        &self,
        image: &Tensor,
        text: &Tensor,
        scale: &Tensor,
        bias: Option<&Tensor>,
    ) -> Result<Tensor> {
        match (self.cfg.loss, bias) {
            (ClipLoss::Sigmoid, Some(b)) => siglip_loss(image, text, scale, b),
            _ => clip_loss(image, text, scale),
        }
    }

    /// The loss of a batch and its metrics, back-propagated in micro-batches when
    /// [`ClipConfig::micro_batches`] > 1 (see the module docs).
    pub fn step_loss(&self, batch: &PairBatch) -> Result<LossOutput> {
        let n = batch.images.size().first().copied().unwrap_or(0);
        if batch.tokens.size().first().copied() != Some(n) || n < 2 {
            return Err(Error::shape(
                "clip batch",
                "as many captions as images, at least 2",
                &[batch.images.size(), batch.tokens.size()].concat(),
            ));
        }
        let k = (self.cfg.micro_batches as i64).min(n);
        let bias = self.logit_bias.as_ref();
        if k <= 1 {
            let (i, t) = self.embeddings(&batch.images, &batch.tokens, true)?;
            let loss = self.objective_loss(&i, &t, &self.logit_scale, bias)?;
            return self.with_metrics(LossOutput::new(loss), &i, &t);
        }
        let images = batch.images.chunk(k, 0);
        let tokens = batch.tokens.chunk(k, 0);
        let mut cached: Vec<(Tensor, Tensor)> = tch::no_grad(|| {
            images.iter().zip(&tokens).map(|(i, t)| self.embeddings(i, t, true)).collect::<Result<_>>()
        })?;
        let mut loss = Tensor::zeros([], (Kind::Float, batch.images.device()));
        for j in 0..images.len() {
            let live = self.embeddings(&images[j], &tokens[j], true)?;
            let all = |pick: fn(&(Tensor, Tensor)) -> &Tensor, live: &Tensor| {
                let parts: Vec<&Tensor> =
                    cached.iter().enumerate().map(|(m, c)| if m == j { live } else { pick(c) }).collect();
                Tensor::cat(&parts, 0)
            };
            let (ai, at) = (all(|c| &c.0, &live.0), all(|c| &c.1, &live.1));
            // The scale and bias get their gradient once, not once per micro-batch.
            let (scale, b) = if j == 0 {
                (self.logit_scale.shallow_clone(), bias.map(Tensor::shallow_clone))
            } else {
                (self.logit_scale.detach(), bias.map(Tensor::detach))
            };
            let l = self.objective_loss(&ai, &at, &scale, b.as_ref())?;
            l.backward();
            // In a data-parallel job, the other processes' share of this chunk's gradient.
            ssl_core::dist::backward_gathered()?;
            loss = l.detach();
            cached[j] = (live.0.detach(), live.1.detach());
        }
        let image = Tensor::cat(&cached.iter().map(|c| &c.0).collect::<Vec<_>>(), 0);
        let text = Tensor::cat(&cached.iter().map(|c| &c.1).collect::<Vec<_>>(), 0);
        self.with_metrics(LossOutput::backward_done(loss), &image, &text)
    }

    fn with_metrics(&self, out: LossOutput, image: &Tensor, text: &Tensor) -> Result<LossOutput> {
        let (i2t, t2i) = tch::no_grad(|| batch_accuracy(&image.detach(), &text.detach()))?;
        let mut out = out
            .with_metric("i2t_accuracy", &i2t)
            .with_metric("t2i_accuracy", &t2i)
            .with_metric("logit_scale", &self.logit_scale.exp());
        if let Some(b) = &self.logit_bias {
            out = out.with_metric("logit_bias", b);
        }
        Ok(out)
    }
}

/// Rows scaled to unit L2 norm.
pub fn normalize(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2, [-1], true).clamp_min(1e-12)
}

impl Objective for Clip {
    type Batch = PairBatch;

    fn name(&self) -> &str {
        Self::NAME
    }

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn forward(&mut self, batch: &PairBatch, _ctx: &StepContext) -> Result<LossOutput> {
        self.step_loss(batch)
    }

    /// Clamps the log logit scale to `[0, ln max_logit_scale]`.
    fn after_step(&mut self, _ctx: &StepContext) -> Result<()> {
        let max = self.cfg.max_logit_scale.ln();
        tch::no_grad(|| {
            let clamped = self.logit_scale.clamp(0.0, max);
            self.logit_scale.f_copy_(&clamped).torch_context("clamping logit_scale")
        })
    }

    fn encoder(&self) -> &dyn Encoder {
        self
    }

    /// No weight decay on biases, norms, embeddings, the logit scale and bias (open_clip's
    /// exclusions: every parameter with fewer than two dimensions, plus the embeddings).
    fn no_weight_decay(&self, name: &str, shape: &[i64]) -> bool {
        shape.len() < 2 || name.contains("embedding")
    }
}

impl Encoder for Clip {
    /// The image tower's width (the representation before the projection).
    fn output_dim(&self) -> i64 {
        self.image.dim()
    }

    /// The image tower's representation of `[N, 3, H, W]` images, before the projection, as
    /// CLIP's linear probes use.
    fn encode(&self, input: &Tensor, train: bool) -> Tensor {
        self.image.features(input, train).unwrap_or_else(|e| panic!("{e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn batch(n: i64) -> PairBatch {
        let images = Tensor::randn([n, 3, 16, 16], (Kind::Float, Device::Cpu));
        let tokens = Tensor::randint(45, [n, 8], (Kind::Int64, Device::Cpu)) + 3;
        // Real tokens, end-of-text (2), padding (0) of varying lengths.
        let lens: Vec<i64> = (0..n).map(|i| 2 + i % 5).collect();
        let idx = Tensor::arange(8, (Kind::Int64, Device::Cpu)).unsqueeze(0);
        let len = Tensor::from_slice(&lens).unsqueeze(1);
        let tokens = tokens.where_self(&idx.lt_tensor(&len), &Tensor::from(0i64));
        let tokens = tokens.where_self(&idx.ne_tensor(&len), &Tensor::from(2i64));
        PairBatch { images, tokens }
    }

    fn grads(clip: &Clip) -> Vec<(String, Tensor)> {
        let mut g: Vec<(String, Tensor)> =
            clip.vs.variables().into_iter().map(|(n, v)| (n, v.grad().copy())).collect();
        g.sort_by(|a, b| a.0.cmp(&b.0));
        g
    }

    #[test]
    fn feature_cached_accumulation_gives_the_full_batch_gradients() {
        for loss in [ClipLoss::Softmax, ClipLoss::Sigmoid] {
            tch::manual_seed(0);
            let b = batch(12);
            let cfg = ClipConfig { loss, ..ClipConfig::tiny() };
            let full = Clip::new(&cfg, 50, 0, Device::Cpu).unwrap();
            let out = full.step_loss(&b).unwrap();
            assert!(!out.backward_done);
            out.loss.backward();
            let mut cached = Clip::new(&ClipConfig { micro_batches: 3, ..cfg }, 50, 0, Device::Cpu).unwrap();
            cached.vs.copy(&full.vs).unwrap();
            let out2 = cached.step_loss(&b).unwrap();
            assert!(out2.backward_done);
            assert!((out.loss.double_value(&[]) - out2.loss.double_value(&[])).abs() < 1e-5);
            for ((name, a), (_, c)) in grads(&full).iter().zip(grads(&cached)) {
                let scale = a.abs().max().double_value(&[]).max(1e-6);
                let diff = (a - &c).abs().max().double_value(&[]);
                assert!(diff <= 1e-4 * scale + 1e-7, "{loss:?} {name}: max diff {diff} (scale {scale})");
            }
        }
    }

    #[test]
    fn the_logit_scale_starts_at_ln_1_over_0_07_and_is_clamped_to_ln_100() {
        let mut clip = Clip::new(&ClipConfig::tiny(), 50, 0, Device::Cpu).unwrap();
        assert!((clip.logit_scale() - (1.0f64 / 0.07).ln()).abs() < 1e-6);
        let ctx = StepContext { step: 0, total_steps: 1, micro_step: 0, device: Device::Cpu };
        let _ = tch::no_grad(|| clip.logit_scale.fill_(7.0));
        clip.after_step(&ctx).unwrap();
        assert!((clip.logit_scale() - 100f64.ln()).abs() < 1e-6);
        let _ = tch::no_grad(|| clip.logit_scale.fill_(-1.0));
        clip.after_step(&ctx).unwrap();
        assert_eq!(clip.logit_scale(), 0.0);
        let sig =
            Clip::new(&ClipConfig { loss: ClipLoss::Sigmoid, ..ClipConfig::tiny() }, 50, 0, Device::Cpu)
                .unwrap();
        assert!((sig.logit_scale() - 10f64.ln()).abs() < 1e-6);
        assert_eq!(sig.logit_bias.as_ref().unwrap().double_value(&[]), -10.0);
    }

    #[test]
    fn padding_after_the_end_of_text_does_not_change_the_text_embedding() {
        tch::manual_seed(0);
        let clip = Clip::new(&ClipConfig::tiny(), 50, 0, Device::Cpu).unwrap();
        let short = Tensor::from_slice(&[5i64, 6, 2]).view([1, 3]);
        let padded = Tensor::from_slice(&[5i64, 6, 2, 0, 0, 0, 0, 0]).view([1, 8]);
        let a = clip.encode_text(&short, false).unwrap();
        let b = clip.encode_text(&padded, false).unwrap();
        assert!((a - b).abs().max().double_value(&[]) < 1e-5);
        let e = clip.encode_text(&Tensor::from_slice(&[60i64, 2]).view([1, 2]), false).unwrap_err();
        assert!(e.to_string().contains("[0, 50)"), "{e}");
        let e = clip.encode_text(&Tensor::zeros([1, 9], (Kind::Int64, Device::Cpu)), false).unwrap_err();
        assert!(e.to_string().contains("caption ids"), "{e}");
    }

    #[test]
    fn config_errors_name_the_field() {
        let bad = |cfg: ClipConfig, field: &str| {
            let e = cfg.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        };
        let t = ClipConfig::tiny();
        bad(
            ClipConfig { text: TextTowerConfig { heads: 3, ..t.text.clone() }, ..t.clone() },
            "model.text.heads",
        );
        bad(ClipConfig { micro_batches: 0, ..t.clone() }, "model.micro_batches");
        bad(ClipConfig { init_logit_scale: Some(5.0), ..t.clone() }, "model.init_logit_scale");
        bad(ClipConfig { embed_dim: 0, ..t }, "model.embed_dim");
        let toml = "embed_dim = 8\n[image]\nkind = \"vit\"\nimage_size = 16\npatch_size = 4\ndim = 8\ndepth = 1\nheads = 2\n\
                    [text]\ncontext_length = 4\nwidth = 8\ndepth = 1\nheads = 2\n";
        let cfg: ClipConfig = toml::from_str(toml).unwrap();
        assert_eq!(cfg.image.image_size(), Some(16));
    }
}
