//! The Gumbel-softmax product quantizer of wav2vec 2.0 (Baevski et al. 2020, §2; after
//! Jang et al. 2017 and vq-wav2vec).
//!
//! A linear map turns each feature frame into `G × V` logits; each of the `G` groups picks one
//! of its `V` codebook entries by a straight-through Gumbel softmax (hard one-hot in the
//! forward pass, soft gradients at temperature τ), the chosen entries are concatenated and the
//! result projected. τ anneals as `max(τ_max · decay^step, τ_min)` (2, 0.999995, 0.5 in the
//! paper). The diversity penalty `(G·V - perplexity) / (G·V)` pushes the batch-averaged soft
//! code distribution of each group towards uniform; the *code perplexity* of the hard choices
//! (summed over groups, at most `G·V`) is what to watch for collapse: a value near `G` means
//! every frame gets the same code.
//!
//! ```
//! use ssl_audio::quantizer::{GumbelQuantizer, QuantizerConfig};
//! use ssl_core::tch::{nn, Device, Kind, Tensor};
//! ssl_core::tch::manual_seed(0);
//! let vs = nn::VarStore::new(Device::Cpu);
//! let cfg = QuantizerConfig { groups: 2, entries: 8, dim: 16, ..Default::default() };
//! let q = GumbelQuantizer::new(vs.root(), 12, &cfg)?;
//! let x = Tensor::randn([3, 5, 12], (Kind::Float, Device::Cpu));
//! let out = q.forward(&x, 0, true)?;
//! assert_eq!(out.quantized.size(), [3, 5, 16]);
//! assert!(out.code_perplexity.double_value(&[]) <= 16.0);
//! # Ok::<(), ssl_core::Error>(())
//! ```

use std::borrow::Borrow;

use serde::{Deserialize, Serialize};
use ssl_core::{Error, Result};
use tch::{nn, Kind, Tensor};

/// The quantizer's shape and temperature schedule: `model.quantizer` of a `wav2vec2` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuantizerConfig {
    /// Codebooks (`latent_groups`, 2).
    pub groups: i64,
    /// Entries per codebook (`latent_vars`, 320).
    pub entries: i64,
    /// Width of the concatenated codes (`latent_dim`; 0 means the final projection width, as
    /// in fairseq's base config).
    pub dim: i64,
    /// Starting temperature (2).
    pub temp_max: f64,
    /// Lowest temperature (0.5).
    pub temp_min: f64,
    /// Per-update decay (0.999995).
    pub temp_decay: f64,
    /// How codebook entries start.
    pub codebook_init: CodebookInit,
}

/// How the codebook entries are initialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodebookInit {
    /// Uniform in [0, 1) (fairseq, Hugging Face). Every entry shares a large positive mean, so
    /// the projected targets start nearly parallel and a short run can sit at chance for a
    /// long time before they separate.
    Uniform,
    /// Standard normal: entries start spread out (the small presets' choice).
    Normal,
}

impl Default for QuantizerConfig {
    fn default() -> Self {
        Self {
            groups: 2,
            entries: 320,
            dim: 0,
            temp_max: 2.0,
            temp_min: 0.5,
            temp_decay: 0.999_995,
            codebook_init: CodebookInit::Uniform,
        }
    }
}

impl QuantizerConfig {
    /// Checks the fields; errors name them as `model.quantizer.*`.
    pub fn validate(&self) -> Result<()> {
        if self.groups < 1 || self.entries < 2 {
            return Err(Error::config("model.quantizer", "needs groups >= 1 and entries >= 2"));
        }
        if self.dim < 0 || (self.dim > 0 && self.dim % self.groups != 0) {
            return Err(Error::config("model.quantizer.dim", "must be 0 or a positive multiple of groups"));
        }
        if !(self.temp_min > 0.0 && self.temp_min <= self.temp_max) {
            return Err(Error::config("model.quantizer", "needs 0 < temp_min <= temp_max"));
        }
        if !(self.temp_decay > 0.0 && self.temp_decay <= 1.0) {
            return Err(Error::config("model.quantizer.temp_decay", "must be in (0, 1]"));
        }
        Ok(())
    }

    /// The temperature at optimiser update `step`: `max(temp_max · decay^step, temp_min)`.
    pub fn temperature(&self, step: u64) -> f64 {
        (self.temp_max * self.temp_decay.powf(step as f64)).max(self.temp_min)
    }
}

/// What one quantizer pass gives.
#[derive(Debug)]
pub struct Quantized {
    /// The concatenated codebook entries, `[B, T, dim]`.
    pub quantized: Tensor,
    /// Perplexity of the batch-averaged soft code distribution, summed over groups (scalar);
    /// the diversity penalty's input.
    pub prob_perplexity: Tensor,
    /// Perplexity of the hard code choices, summed over groups (scalar): the collapse gauge.
    pub code_perplexity: Tensor,
    /// The diversity penalty `(G·V - prob_perplexity) / (G·V)` (scalar).
    pub diversity_loss: Tensor,
    /// The temperature used.
    pub temperature: f64,
}

/// The Gumbel-softmax product quantizer.
#[derive(Debug)]
pub struct GumbelQuantizer {
    cfg: QuantizerConfig,
    proj: nn::Linear,
    codebooks: Tensor,
    dim: i64,
}

impl GumbelQuantizer {
    /// A quantizer of `input_dim`-wide frames; `cfg.dim` must be non-zero here.
    ///
    /// Initialisation follows fairseq: the logit projection normal(0, 1) with zero bias, the
    /// codebooks uniform in [0, 1) (or normal, see [`CodebookInit`]).
    pub fn new<'a, P: Borrow<nn::Path<'a>>>(path: P, input_dim: i64, cfg: &QuantizerConfig) -> Result<Self> {
        cfg.validate()?;
        if cfg.dim == 0 {
            return Err(Error::config("model.quantizer.dim", "must be resolved to a width before building"));
        }
        let p = path.borrow();
        let (g, v) = (cfg.groups, cfg.entries);
        let proj = nn::linear(
            p / "weight_proj",
            input_dim,
            g * v,
            nn::LinearConfig {
                ws_init: nn::Init::Randn { mean: 0.0, stdev: 1.0 },
                bs_init: Some(nn::Init::Const(0.0)),
                bias: true,
            },
        );
        let init = match cfg.codebook_init {
            CodebookInit::Uniform => nn::Init::Uniform { lo: 0.0, up: 1.0 },
            CodebookInit::Normal => nn::Init::Randn { mean: 0.0, stdev: 1.0 },
        };
        let codebooks = p.var("codevectors", &[g * v, cfg.dim / g], init);
        Ok(Self { cfg: cfg.clone(), proj, codebooks, dim: cfg.dim })
    }

    /// The output width.
    pub fn dim(&self) -> i64 {
        self.dim
    }

    /// The config.
    pub fn config(&self) -> &QuantizerConfig {
        &self.cfg
    }

    /// Quantizes `x: [B, T, C]` at update `step`; `train` draws Gumbel noise (straight-through
    /// hard choices), otherwise the argmax is taken.
    pub fn forward(&self, x: &Tensor, step: u64, train: bool) -> Result<Quantized> {
        let size = x.size();
        let [b, t, _] = size[..] else {
            return Err(Error::shape("quantizer input", "[B, T, C]", &size));
        };
        let (g, v) = (self.cfg.groups, self.cfg.entries);
        let tau = self.cfg.temperature(step);
        let logits = x.apply(&self.proj).to_kind(Kind::Float).view([b * t * g, v]);
        let hard_idx = logits.argmax(-1, true);
        let hard = logits.zeros_like().scatter_value(-1, &hard_idx, 1.0);
        // Perplexity of the hard choices, per group, summed.
        let perplexity = |probs: &Tensor| -> Tensor {
            let p = probs.view([b * t, g, v]).mean_dim(0, false, Kind::Float);
            (-(&p * (&p + 1e-7).log()).sum_dim_intlist(-1, false, Kind::Float)).exp().sum(Kind::Float)
        };
        let code_perplexity = perplexity(&hard);
        let soft = logits.softmax(-1, Kind::Float);
        let prob_perplexity = perplexity(&soft);
        let onehot = if train {
            // Straight-through Gumbel softmax: hard in the forward pass, soft gradients.
            let u = logits.rand_like().clamp(1e-10, 1.0 - 1e-7);
            let gumbel = -(-u.log()).log();
            let y = ((&logits + gumbel) / tau).softmax(-1, Kind::Float);
            let idx = y.argmax(-1, true);
            let y_hard = y.zeros_like().scatter_value(-1, &idx, 1.0);
            (y_hard - y.detach()) + y
        } else {
            hard
        };
        // [G, B·T, V] one-hots times [G, V, d] codebooks: each group picks one row.
        let onehot = onehot.view([b * t, g, v]).transpose(0, 1);
        let picked = onehot.bmm(&self.codebooks.view([g, v, -1])).transpose(0, 1);
        let quantized = picked.reshape([b, t, self.dim]);
        let num = (g * v) as f64;
        let diversity_loss = (num - &prob_perplexity) / num;
        Ok(Quantized { quantized, prob_perplexity, code_perplexity, diversity_loss, temperature: tau })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn quantizer(g: i64, v: i64) -> (nn::VarStore, GumbelQuantizer) {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let q = GumbelQuantizer::new(
            vs.root(),
            6,
            &QuantizerConfig { groups: g, entries: v, dim: 4 * g, ..Default::default() },
        )
        .unwrap();
        (vs, q)
    }

    #[test]
    fn the_temperature_follows_the_papers_schedule() {
        let cfg = QuantizerConfig::default();
        assert_eq!(cfg.temperature(0), 2.0);
        assert!((cfg.temperature(100_000) - 2.0 * 0.999_995f64.powi(100_000)).abs() < 1e-12);
        assert_eq!(cfg.temperature(10_000_000), 0.5);
    }

    #[test]
    fn outputs_are_codebook_rows_and_gradients_reach_the_logits() {
        let (vs, q) = quantizer(2, 5);
        let x = Tensor::randn([2, 7, 6], (Kind::Float, Device::Cpu));
        let out = q.forward(&x, 0, true).unwrap();
        // Every group's slice of the output equals one row of its group's codebook.
        let books = q.codebooks.view([2, 5, 4]);
        let y = out.quantized.view([14, 2, 4]);
        for i in 0..14 {
            for grp in 0..2 {
                let row = y.get(i).get(grp);
                let hits = (books.get(grp) - row.unsqueeze(0))
                    .abs()
                    .sum_dim_intlist(-1, false, Kind::Float)
                    .lt(1e-6);
                assert_eq!(i64::try_from(hits.sum(Kind::Int64)).unwrap(), 1);
            }
        }
        (out.quantized.sum(Kind::Float) + out.diversity_loss).backward();
        let w = vs.variables().into_iter().find(|(n, _)| n.contains("weight_proj.weight")).unwrap().1;
        assert!(w.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }

    #[test]
    fn perplexities_are_bounded_and_collapse_is_visible() {
        let (_vs, q) = quantizer(2, 5);
        let x = Tensor::randn([4, 50, 6], (Kind::Float, Device::Cpu)) * 10.0;
        let out = q.forward(&x, 0, false).unwrap();
        let cp = out.code_perplexity.double_value(&[]);
        assert!(cp > 2.0 && cp <= 10.0 + 1e-4, "{cp}");
        // The same frame everywhere: one code per group, perplexity G.
        let same = Tensor::ones([4, 50, 6], (Kind::Float, Device::Cpu));
        let out = q.forward(&same, 0, false).unwrap();
        assert!((out.code_perplexity.double_value(&[]) - 2.0).abs() < 1e-3);
        let d = out.diversity_loss.double_value(&[]);
        assert!((0.0..=1.0).contains(&d));
    }
}
