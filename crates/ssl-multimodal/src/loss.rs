//! The image-text losses: CLIP's symmetric cross-entropy (Radford et al., 2021) and SigLIP's
//! pairwise sigmoid loss (Zhai et al., 2023).
//!
//! Both take L2-normalised embeddings `image, text: [N, E]` whose row `i` is a pair, and the
//! *log* of the logit scale (the learnable temperature's inverse, kept in log space as CLIP
//! does).
//!
//! ```
//! use ssl_core::tch::{Device, Kind, Tensor};
//! use ssl_multimodal::loss::clip_loss;
//! // Two orthogonal pairs, perfectly matched: the loss is ln(1 + e^-s) per row at scale s.
//! let x = Tensor::eye(2, (Kind::Float, Device::Cpu));
//! let s = Tensor::from(2.0f32.ln()); // scale 2
//! let loss = clip_loss(&x, &x, &s)?.double_value(&[]);
//! assert!((loss - (1.0 + (-2.0f64).exp()).ln()).abs() < 1e-6);
//! # Ok::<(), ssl_core::Error>(())
//! ```

use ssl_core::error::TorchResultExt;
use ssl_core::{Error, Result};
use tch::{Kind, Reduction, Tensor};

fn check(image: &Tensor, text: &Tensor) -> Result<i64> {
    let (si, st) = (image.size(), text.size());
    if si.len() != 2 || si != st || si[0] == 0 {
        return Err(Error::shape(
            "image and text embeddings",
            "two [N, E] tensors, N > 0",
            &[si, st].concat(),
        ));
    }
    Ok(si[0])
}

/// `exp(logit_scale) · image · textᵀ`, `[N, N]`: row `i` scores image `i` against every text.
pub fn logits(image: &Tensor, text: &Tensor, logit_scale: &Tensor) -> Result<Tensor> {
    check(image, text)?;
    scaled_similarities(image, text, logit_scale)
}

/// `exp(logit_scale) · rows · columnsᵀ`: every row scored against every column (the two may
/// have different counts: this process's rows against all processes' columns).
fn scaled_similarities(rows: &Tensor, columns: &Tensor, logit_scale: &Tensor) -> Result<Tensor> {
    rows.f_matmul(&columns.tr()).and_then(|s| s.f_mul(&logit_scale.f_exp()?)).torch_context("CLIP logits")
}

/// CLIP's loss: the mean of the image-to-text and text-to-image cross-entropies over the `N`
/// pairs of the batch, the other `N - 1` items of each row being the negatives.
///
/// In a data-parallel job (see `ssl_core::dist`), every process's pairs are negatives: this
/// process's images are scored against all processes' texts and its texts against all images,
/// with the labels offset by its first row, as open_clip's gathered loss does.
pub fn clip_loss(image: &Tensor, text: &Tensor, logit_scale: &Tensor) -> Result<Tensor> {
    let n = check(image, text)?;
    let (all_text, offset) = ssl_core::dist::all_gather_with_grad(text)?;
    let (all_image, _) = ssl_core::dist::all_gather_with_grad(image)?;
    // This process's rows, taken from the gathered tensors (see `all_gather_with_grad`).
    let (image, text) = (all_image.narrow(0, offset, n), all_text.narrow(0, offset, n));
    let per_image = scaled_similarities(&image, &all_text, logit_scale)?;
    let per_text = scaled_similarities(&text, &all_image, logit_scale)?;
    let labels = Tensor::arange_start(offset, offset + n, (Kind::Int64, image.device()));
    let ce = |x: &Tensor| x.f_cross_entropy_loss::<Tensor>(&labels, None, Reduction::Mean, -100, 0.0);
    let i2t = ce(&per_image).torch_context("CLIP image-to-text")?;
    let t2i = ce(&per_text).torch_context("CLIP text-to-image")?;
    Ok((i2t + t2i) / 2.0)
}

/// SigLIP's loss: every image-text pair of the batch is a binary classification, positive on
/// the diagonal, with logits `exp(logit_scale) · cos + logit_bias`; the summed
/// `-log σ(±logit)` over all `N²` pairs is divided by `N`.
pub fn siglip_loss(
    image: &Tensor,
    text: &Tensor,
    logit_scale: &Tensor,
    logit_bias: &Tensor,
) -> Result<Tensor> {
    let n = check(image, text)?;
    // In a data-parallel job this process's images are scored against every process's texts
    // (the loss is then this process's rows of the global one, scaled so that the mean over
    // processes is the global loss).
    let (all_text, offset) = ssl_core::dist::all_gather_with_grad(text)?;
    let l = scaled_similarities(image, &all_text, logit_scale)?
        .f_add(logit_bias)
        .torch_context("SigLIP logits")?;
    let device = image.device();
    let positives = Tensor::arange_start(offset, offset + n, (Kind::Int64, device)).unsqueeze(1);
    let sign = Tensor::full(l.size(), -1.0, (Kind::Float, device)).scatter_value(1, &positives, 1.0);
    let loss = (l * sign).f_log_sigmoid().torch_context("SigLIP")?.sum(Kind::Float).neg() / n as f64;
    Ok(loss)
}

/// The share of images whose own text scores highest in the batch, and of texts whose own
/// image does: `(i2t, t2i)` accuracy, as scalar tensors.
pub fn batch_accuracy(image: &Tensor, text: &Tensor) -> Result<(Tensor, Tensor)> {
    let n = check(image, text)?;
    let s = image.f_matmul(&text.tr()).torch_context("similarities")?;
    let labels = Tensor::arange(n, (Kind::Int64, image.device()));
    let acc = |x: Tensor| x.argmax(1, false).eq_tensor(&labels).to_kind(Kind::Float).mean(Kind::Float);
    Ok((acc(s.shallow_clone()), acc(s.tr())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(rows: &[[f32; 2]]) -> Tensor {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_slice(&flat).view([rows.len() as i64, 2])
    }

    /// Hand-computed: image rows (1,0), (0.6,0.8); text rows (0.8,0.6), (0,1); scale 10.
    /// Similarities [[0.8, 0], [0.96, 0.8]], logits ×10 = [[8, 0], [9.6, 8]].
    #[test]
    fn clip_loss_matches_a_hand_computed_value() {
        let img = t(&[[1.0, 0.0], [0.6, 0.8]]);
        let txt = t(&[[0.8, 0.6], [0.0, 1.0]]);
        let s = Tensor::from(10f32.ln());
        let lse = |a: f64, b: f64| (a.exp() + b.exp()).ln();
        // Rows (image to text): -log softmax of the diagonal.
        let i2t = ((lse(8.0, 0.0) - 8.0) + (lse(9.6, 8.0) - 8.0)) / 2.0;
        // Columns (text to image): column 0 is [8, 9.6], column 1 is [0, 8].
        let t2i = ((lse(8.0, 9.6) - 8.0) + (lse(0.0, 8.0) - 8.0)) / 2.0;
        let want = (i2t + t2i) / 2.0;
        let got = clip_loss(&img, &txt, &s).unwrap().double_value(&[]);
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn siglip_loss_matches_a_hand_computed_value() {
        let img = t(&[[1.0, 0.0], [0.6, 0.8]]);
        let txt = t(&[[0.8, 0.6], [0.0, 1.0]]);
        let (s, b) = (Tensor::from(10f32.ln()), Tensor::from(-5.0f32));
        // Logits [[8, 0], [9.6, 8]] - 5 = [[3, -5], [4.6, 3]]; positives on the diagonal.
        let nls = |x: f64| (1.0 + (-x).exp()).ln(); // -log σ(x)
        let want = (nls(3.0) + nls(5.0) + nls(-4.6) + nls(3.0)) / 2.0;
        let got = siglip_loss(&img, &txt, &s, &b).unwrap().double_value(&[]);
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn batch_accuracy_and_shape_errors() {
        let img = t(&[[1.0, 0.0], [0.6, 0.8]]);
        let txt = t(&[[0.8, 0.6], [0.0, 1.0]]);
        let (i2t, t2i) = batch_accuracy(&img, &txt).unwrap();
        // Row 1 prefers text 0 (0.96 > 0.8); column 0 prefers image 1.
        assert_eq!((i2t.double_value(&[]), t2i.double_value(&[])), (0.5, 0.5));
        let e = clip_loss(&img, &t(&[[1.0, 0.0]]), &Tensor::from(0.0f32)).unwrap_err().to_string();
        assert!(e.contains("image and text embeddings"), "{e}");
    }
}
