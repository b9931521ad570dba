//! Sampling text from a [`Gpt`]: temperature, top-k, top-p (nucleus) and a KV cache.
//!
//! Each step turns the last position's logits into a distribution (divide by the temperature;
//! keep the `top_k` most likely tokens; keep the smallest set whose probability reaches
//! `top_p`; renormalise) and draws from it with a generator seeded from `seed`, on the CPU in
//! `f64`, so a seed gives the same text on every device. Temperature 0 is greedy decoding. With
//! the cache each step feeds only the new token; without it the whole sequence is re-encoded.
//! Both give the same tokens (tested).
//!
//! ```
//! use ssl_core::tch::Device;
//! use ssl_text::generate::{generate, GenerateConfig};
//! use ssl_text::gpt::{Gpt, GptConfig};
//! ssl_core::tch::manual_seed(0);
//! let gpt = Gpt::new(&GptConfig::tiny(), Device::Cpu)?;
//! let cfg = GenerateConfig { max_new_tokens: 5, stop_at_eos: false, ..GenerateConfig::default() };
//! let with_cache = generate(&gpt, &[3, 4], &cfg)?;
//! let without = generate(&gpt, &[3, 4], &GenerateConfig { use_cache: false, ..cfg })?;
//! assert_eq!(with_cache.len(), 5);
//! assert_eq!(with_cache, without);
//! # Ok::<(), ssl_core::Error>(())
//! ```

use rand::Rng;
use serde::{Deserialize, Serialize};
use ssl_core::error::TorchResultExt;
use ssl_core::rng::rng_for;
use ssl_core::{Error, Result};
use tch::{IndexOp, Kind, Tensor};

use crate::gpt::Gpt;

/// How to sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateConfig {
    /// Tokens to generate at most.
    pub max_new_tokens: usize,
    /// Softmax temperature; 0 decodes greedily.
    pub temperature: f64,
    /// Keep only the `top_k` most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (1: all).
    pub top_p: f64,
    /// The sampling seed.
    pub seed: u64,
    /// Decode incrementally with a KV cache.
    pub use_cache: bool,
    /// Stop after the end-of-text token.
    pub stop_at_eos: bool,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 50,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
            use_cache: true,
            stop_at_eos: true,
        }
    }
}

impl GenerateConfig {
    /// Checks the fields; errors name them.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(Error::config("temperature", format!("must be >= 0, got {}", self.temperature)));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::config("top_p", format!("must be in (0, 1], got {}", self.top_p)));
        }
        Ok(())
    }
}

/// The distribution of the next token from `logits` (one row), filtered as `cfg` says.
pub fn next_token_probs(logits: &[f64], cfg: &GenerateConfig) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut p: Vec<f64> = logits.iter().map(|&l| ((l - max) / cfg.temperature).exp()).collect();
    if cfg.top_k > 0 && cfg.top_k < p.len() {
        let mut sorted = p.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let kth = sorted[cfg.top_k - 1];
        p.iter_mut().filter(|x| **x < kth).for_each(|x| *x = 0.0);
    }
    let total: f64 = p.iter().sum();
    p.iter_mut().for_each(|x| *x /= total);
    if cfg.top_p < 1.0 {
        let mut order: Vec<usize> = (0..p.len()).collect();
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
        let mut cumulative = 0.0;
        let mut keep = vec![false; p.len()];
        for &i in &order {
            keep[i] = true;
            cumulative += p[i];
            if cumulative >= cfg.top_p {
                break;
            }
        }
        p.iter_mut().zip(&keep).filter(|(_, k)| !**k).for_each(|(x, _)| *x = 0.0);
        let total: f64 = p.iter().sum();
        p.iter_mut().for_each(|x| *x /= total);
    }
    p
}

fn argmax(logits: &[f64]) -> usize {
    logits
        .iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, &l)| if l > best.1 { (i, l) } else { best })
        .0
}

/// Generates up to `cfg.max_new_tokens` tokens after `prompt` (an empty prompt starts from the
/// end-of-text token, as GPT-2 does), stopping at the context length; returns the new tokens.
pub fn generate(model: &Gpt, prompt: &[u32], cfg: &GenerateConfig) -> Result<Vec<u32>> {
    cfg.validate()?;
    let m = model.config();
    let mut seq: Vec<i64> = prompt.iter().map(|&t| i64::from(t)).collect();
    if seq.is_empty() {
        seq.push(m.eos_id);
    }
    if let Some(&bad) = seq.iter().find(|&&t| t >= m.vocab_size) {
        return Err(Error::invalid(
            "prompt",
            format!("token id {bad} is outside the model's {}-token vocabulary", m.vocab_size),
        ));
    }
    if seq.len() as i64 >= m.max_len {
        return Err(Error::invalid(
            "prompt",
            format!("{} tokens leave no room in a context of {}", seq.len(), m.max_len),
        ));
    }
    let device = ssl_core::Objective::var_store(model).device();
    let mut rng = rng_for(cfg.seed, "generate", &[]);
    let mut out = Vec::new();
    let mut caches = None;
    let mut fed = 0usize; // tokens of `seq` the cache holds
    tch::no_grad(|| -> Result<()> {
        while out.len() < cfg.max_new_tokens && (seq.len() as i64) < m.max_len {
            let logits = if cfg.use_cache {
                let new = Tensor::from_slice(&seq[fed..]).view([1, -1]).to_device(device);
                let (logits, c) = model.logits_cached(&new, caches.as_deref())?;
                caches = Some(c);
                fed = seq.len();
                logits
            } else {
                let all = Tensor::from_slice(&seq).view([1, -1]).to_device(device);
                model.logits(&all, false)?
            };
            let last = logits.i((0, -1)).to_kind(Kind::Double).to_device(tch::Device::Cpu);
            let row = Vec::<f64>::try_from(&last).torch_context("logits to host")?;
            let next = if cfg.temperature == 0.0 {
                argmax(&row)
            } else {
                let p = next_token_probs(&row, cfg);
                let u: f64 = rng.gen();
                let mut acc = 0.0;
                p.iter()
                    .position(|&x| {
                        acc += x;
                        u < acc
                    })
                    .unwrap_or_else(|| argmax(&p))
            };
            seq.push(next as i64);
            out.push(next as u32);
            if cfg.stop_at_eos && next as i64 == m.eos_id {
                break;
            }
        }
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::gpt::GptConfig;
    use proptest::prelude::*;
    use tch::Device;

    #[test]
    fn cached_and_uncached_generation_agree_greedy_and_sampled() {
        tch::manual_seed(3);
        let gpt = Gpt::new(&GptConfig { max_len: 40, ..GptConfig::tiny() }, Device::Cpu).unwrap();
        for cfg in [
            GenerateConfig { temperature: 0.0, max_new_tokens: 30, stop_at_eos: false, ..Default::default() },
            GenerateConfig {
                temperature: 0.9,
                top_k: 20,
                top_p: 0.9,
                max_new_tokens: 30,
                seed: 7,
                ..Default::default()
            },
        ] {
            let a = generate(&gpt, &[5, 6, 7], &cfg).unwrap();
            let b = generate(&gpt, &[5, 6, 7], &GenerateConfig { use_cache: false, ..cfg.clone() }).unwrap();
            assert_eq!(a, b, "{cfg:?}");
            assert!(!a.is_empty());
        }
        // The context length bounds the output.
        let cfg = GenerateConfig { max_new_tokens: 100, stop_at_eos: false, ..Default::default() };
        assert_eq!(generate(&gpt, &[5, 6, 7], &cfg).unwrap().len(), 37);
        assert!(generate(&gpt, &[500], &cfg).is_err());
    }

    proptest! {
        #[test]
        fn filtered_distributions_are_distributions(
            logits in proptest::collection::vec(-10.0f64..10.0, 2..40),
            top_k in 0usize..10,
            top_p in 0.05f64..1.0,
            temperature in 0.1f64..3.0,
        ) {
            let cfg = GenerateConfig { top_k, top_p, temperature, ..Default::default() };
            let p = next_token_probs(&logits, &cfg);
            prop_assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            let kept = p.iter().filter(|&&x| x > 0.0).count();
            prop_assert!(kept >= 1);
            if top_k > 0 {
                // Ties at the k-th value may keep a few more.
                let mut s = logits.clone();
                s.sort_by(|a, b| b.total_cmp(a));
                let ties = s.iter().filter(|&&x| x == s[top_k.min(s.len()) - 1]).count();
                prop_assert!(kept <= top_k + ties);
            }
            // The most likely token is always kept.
            prop_assert!(p[argmax(&logits)] > 0.0);
        }
    }
}
