//! CLIP's evaluations: zero-shot classification from class names and prompt templates, and
//! image-text retrieval (Recall@K and median rank in both directions).
//!
//! ```
//! use ssl_core::tch::{Device, Kind, Tensor};
//! use ssl_multimodal::eval::retrieval;
//! // Image i matches text i, except that image 1 prefers text 0.
//! let img = Tensor::from_slice(&[1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0]).view([3, 2]);
//! let txt = Tensor::from_slice(&[0.9f32, 0.44, 0.6, 0.8, -0.2, 0.98]).view([3, 2]);
//! let r = retrieval(&img, &txt)?;
//! assert_eq!(r.i2t_ranks, [1, 2, 1]);
//! assert!((r.i2t_recall_at(1) - 2.0 / 3.0).abs() < 1e-9 && r.i2t_recall_at(5) == 1.0);
//! # Ok::<(), ssl_core::Error>(())
//! ```

use serde::{Deserialize, Serialize};
use ssl_core::error::TorchResultExt;
use ssl_core::{Error, Result};
use tch::{Kind, Tensor};

use crate::batch::CaptionTokenizer;
use crate::clip::{normalize, Clip};

/// OpenAI CLIP's short ensemble of ImageNet prompt templates (`{}` is the class name), the
/// default for a labelled folder of photos.
pub const PHOTO_TEMPLATES: &[&str] = &[
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
];

/// Normalised image embeddings of `images` (`[N, 3, S, S]`, on any device), computed in
/// chunks of `batch` without gradients, in evaluation mode; `[N, E]` on the CPU.
pub fn image_embeddings(clip: &Clip, images: &Tensor, batch: i64) -> Result<Tensor> {
    let device = clip_device(clip);
    chunked(images, batch, |x| clip.encode_image(&x.to_device(device), false).map(|e| normalize(&e)))
}

/// Normalised text embeddings of token ids `[N, T]`, like [`image_embeddings`].
pub fn text_embeddings(clip: &Clip, tokens: &Tensor, batch: i64) -> Result<Tensor> {
    let device = clip_device(clip);
    chunked(tokens, batch, |x| clip.encode_text(&x.to_device(device), false).map(|e| normalize(&e)))
}

fn clip_device(clip: &Clip) -> tch::Device {
    ssl_core::Objective::var_store(clip).device()
}

fn chunked(x: &Tensor, batch: i64, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let n = x.size().first().copied().unwrap_or(0);
    if n == 0 {
        return Err(Error::invalid("embeddings", "no inputs"));
    }
    tch::no_grad(|| {
        let parts = (0..n)
            .step_by(batch.max(1) as usize)
            .map(|s| f(&x.narrow(0, s, batch.min(n - s))).map(|e| e.to_device(tch::Device::Cpu)))
            .collect::<Result<Vec<_>>>()?;
        Tensor::f_cat(&parts, 0).torch_context("embeddings")
    })
}

/// The zero-shot classifier: for each class, the text embeddings of every template filled
/// with its name, averaged and renormalised (CLIP's prompt ensembling). `[C, E]`.
pub fn zero_shot_weights(
    clip: &Clip,
    tokenizer: &CaptionTokenizer,
    classes: &[String],
    templates: &[String],
) -> Result<Tensor> {
    if classes.is_empty() {
        return Err(Error::invalid("zero-shot classes", "none given"));
    }
    if templates.is_empty() {
        return Err(Error::config("eval.templates", "needs at least one template"));
    }
    if let Some(t) = templates.iter().find(|t| !t.contains("{}")) {
        return Err(Error::config(
            "eval.templates",
            format!("template `{t}` has no `{{}}` for the class name"),
        ));
    }
    let mut rows = Vec::with_capacity(classes.len());
    for class in classes {
        let prompts: Vec<String> = templates.iter().map(|t| t.replace("{}", class)).collect();
        let e = text_embeddings(clip, &tokenizer.encode_all(&prompts)?, 256)?;
        rows.push(normalize(&e.mean_dim(0, true, Kind::Float)));
    }
    Tensor::f_cat(&rows, 0).torch_context("zero-shot weights")
}

/// What zero-shot classification scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZeroShot {
    /// Top-1 accuracy.
    pub top1: f64,
    /// Top-5 accuracy (equal to 1 with five classes or fewer).
    pub top5: f64,
    /// Chance level, `1 / classes`.
    pub chance: f64,
    /// Classes.
    pub num_classes: usize,
    /// Images scored.
    pub n: usize,
}

/// Scores normalised image embeddings `[N, E]` against class weights `[C, E]`.
pub fn zero_shot(images: &Tensor, weights: &Tensor, labels: &Tensor) -> Result<ZeroShot> {
    let (n, c) = (images.size()[0], weights.size()[0]);
    if labels.size() != [n] {
        return Err(Error::shape("zero-shot labels", format!("[{n}]"), &labels.size()));
    }
    let logits = images.f_matmul(&weights.tr()).torch_context("zero-shot logits")?;
    let labels = labels.to_kind(Kind::Int64);
    let top1 = logits.argmax(1, false).eq_tensor(&labels).to_kind(Kind::Float).mean(Kind::Float);
    let k = c.min(5);
    let (_, top) = logits.topk(k, 1, true, true);
    let top5 = top.eq_tensor(&labels.unsqueeze(1)).any_dim(1, false).to_kind(Kind::Float).mean(Kind::Float);
    Ok(ZeroShot {
        top1: top1.double_value(&[]),
        top5: top5.double_value(&[]),
        chance: 1.0 / c as f64,
        num_classes: c as usize,
        n: n as usize,
    })
}

/// Retrieval ranks on a paired split: item `i`'s partner is item `i` of the other modality.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retrieval {
    /// For each image, the 1-based rank of its own text among all texts.
    pub i2t_ranks: Vec<usize>,
    /// For each text, the 1-based rank of its own image among all images.
    pub t2i_ranks: Vec<usize>,
}

impl Retrieval {
    fn recall(ranks: &[usize], k: usize) -> f64 {
        ranks.iter().filter(|&&r| r <= k).count() as f64 / ranks.len().max(1) as f64
    }
    fn median(ranks: &[usize]) -> f64 {
        let mut r = ranks.to_vec();
        r.sort_unstable();
        match r.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => r[n / 2] as f64,
            n => (r[n / 2 - 1] + r[n / 2]) as f64 / 2.0,
        }
    }
    /// Image-to-text Recall@k.
    pub fn i2t_recall_at(&self, k: usize) -> f64 {
        Self::recall(&self.i2t_ranks, k)
    }
    /// Text-to-image Recall@k.
    pub fn t2i_recall_at(&self, k: usize) -> f64 {
        Self::recall(&self.t2i_ranks, k)
    }
    /// Median rank of the true text.
    pub fn i2t_median_rank(&self) -> f64 {
        Self::median(&self.i2t_ranks)
    }
    /// Median rank of the true image.
    pub fn t2i_median_rank(&self) -> f64 {
        Self::median(&self.t2i_ranks)
    }
    /// Recall@k of a random ranking: `k / N`.
    pub fn chance_at(&self, k: usize) -> f64 {
        (k as f64 / self.i2t_ranks.len().max(1) as f64).min(1.0)
    }
}

/// Ranks every partner among all candidates by cosine similarity (ties count against the
/// partner: its rank is one plus the number of candidates scoring at least as high).
pub fn retrieval(images: &Tensor, texts: &Tensor) -> Result<Retrieval> {
    let (si, st) = (images.size(), texts.size());
    if si.len() != 2 || si != st || si[0] == 0 {
        return Err(Error::shape("retrieval embeddings", "two [N, E] tensors, N > 0", &[si, st].concat()));
    }
    let sim = images.f_matmul(&texts.tr()).torch_context("retrieval similarities")?;
    let ranks = |s: &Tensor| -> Result<Vec<usize>> {
        let own = s.diagonal(0, 0, 1).unsqueeze(1);
        let eye = Tensor::eye(s.size()[0], (Kind::Bool, s.device()));
        let better =
            s.ge_tensor(&own).logical_and(&eye.logical_not()).sum_dim_intlist(1, false, Kind::Int64) + 1;
        Vec::<i64>::try_from(better)
            .map(|v| v.into_iter().map(|r| r as usize).collect())
            .map_err(|e| Error::invalid("retrieval ranks", e.to_string()))
    };
    Ok(Retrieval { i2t_ranks: ranks(&sim)?, t2i_ranks: ranks(&sim.tr())? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn ranks_recall_and_median_by_hand() {
        // Similarities (rows images, columns texts):
        // [[0.9, 0.6, 0.0], [0.8, 0.7, 0.5], [0.1, 0.2, 0.3]] via unit vectors is fiddly; use
        // raw scores, which retrieval does not require to be normalised.
        let img = Tensor::eye(3, (Kind::Float, Device::Cpu));
        let txt = Tensor::from_slice(&[0.9f32, 0.8, 0.1, 0.6, 0.7, 0.2, 0.0, 0.5, 0.3]).view([3, 3]);
        // sim = txtᵀ: row i = image i's scores over texts.
        let r = retrieval(&img, &txt).unwrap();
        // Image 0: [0.9, 0.6, 0.0] → own 0.9, rank 1. Image 1: [0.8, 0.7, 0.5] → own 0.7, rank 2.
        // Image 2: [0.1, 0.2, 0.3] → own 0.3, rank 1.
        assert_eq!(r.i2t_ranks, [1, 2, 1]);
        // Text 0: [0.9, 0.8, 0.1] → rank 1. Text 1: [0.6, 0.7, 0.2] → rank 1. Text 2: [0.0, 0.5, 0.3] → rank 2.
        assert_eq!(r.t2i_ranks, [1, 1, 2]);
        assert_eq!((r.i2t_median_rank(), r.t2i_median_rank()), (1.0, 1.0));
        assert!((r.t2i_recall_at(1) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.chance_at(1), 1.0 / 3.0);
    }

    #[test]
    fn zero_shot_top1_top5_and_chance() {
        let w = Tensor::eye(6, (Kind::Float, Device::Cpu));
        let img = Tensor::eye(6, (Kind::Float, Device::Cpu)).narrow(0, 0, 4);
        let labels = Tensor::from_slice(&[0i64, 1, 3, 5]);
        let z = zero_shot(&img, &w, &labels).unwrap();
        assert_eq!((z.top1, z.chance, z.num_classes, z.n), (0.5, 1.0 / 6.0, 6, 4));
        // Rows 2 and 3 score classes 2 and 3 first; with ties among the rest, the true class may
        // or may not be in the top 5, but the top 5 is at least the top 1.
        assert!(z.top5 >= z.top1);
        assert!(zero_shot(&img, &w, &Tensor::from_slice(&[0i64])).is_err());
    }
}
