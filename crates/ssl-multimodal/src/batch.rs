//! From image-caption pairs to the tensors CLIP consumes: caption tokenisation to a fixed
//! context with an end-of-text token, the image transforms, and the [`BatchBuilder`].
//!
//! ```
//! use ssl_multimodal::batch::CaptionTokenizer;
//! use ssl_text::tokenizer::{TextTokenizer, TokenizerKind};
//! let captions = ["a red disk", "a blue square", "the disk is red"];
//! let tok = TextTokenizer::train(TokenizerKind::ByteLevelBpe, captions.iter().copied(), 300)?;
//! let ct = CaptionTokenizer::new(tok, 8)?;
//! let ids = ct.encode("a red disk")?;
//! assert_eq!(ids.len(), 8);
//! let eot = ct.eot() as i64;
//! let pad = ct.pad() as i64;
//! let last = ids.iter().rposition(|&t| t != pad).unwrap();
//! assert_eq!(ids[last], eot); // the caption ends with end-of-text, then padding
//! # Ok::<(), ssl_core::Error>(())
//! ```

use serde::{Deserialize, Serialize};
use ssl_core::augment::Augmentation;
use ssl_core::data::{Batch, BatchBuilder};
use ssl_core::rng::SslRng;
use ssl_core::{Error, Result};
use ssl_text::tokenizer::TextTokenizer;
use ssl_vision::augment::RandomResizedCrop;
use ssl_vision::augment::{to_tensor, Image};
use ssl_vision::views::{center_view, Normalization};
use tch::{Device, Tensor};

/// The image statistics OpenAI's CLIP and open_clip normalise with.
pub const CLIP_NORMALIZATION: Normalization = Normalization {
    mean: [0.481_454_66, 0.457_827_5, 0.408_210_73],
    std: [0.268_629_54, 0.261_302_6, 0.275_777_1],
};

/// A tokenizer with an end-of-text and a padding id, encoding captions to `context_length`
/// ids: the caption's tokens (cut to `context_length - 1`), end-of-text, then padding. The
/// text encoder reads its representation at the end-of-text position.
#[derive(Debug, Clone)]
pub struct CaptionTokenizer {
    tokenizer: TextTokenizer,
    context_length: usize,
    eot: u32,
    pad: u32,
}

impl CaptionTokenizer {
    /// Wraps `tokenizer`, which must have an end-of-text token (byte-level BPE) or a `[SEP]`
    /// token (WordPiece), used as end of text.
    pub fn new(tokenizer: TextTokenizer, context_length: usize) -> Result<Self> {
        if context_length < 2 {
            return Err(Error::config("model.text.context_length", "must be at least 2"));
        }
        let specials = tokenizer.specials();
        let eot = specials.eos.or(specials.sep).ok_or_else(|| {
            Error::invalid("tokenizer", "has neither an end-of-text nor a [SEP] token to pool text at")
        })?;
        let pad = specials.pad;
        Ok(Self { tokenizer, context_length, eot, pad })
    }

    /// The wrapped tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Ids per caption.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// The end-of-text id.
    pub fn eot(&self) -> u32 {
        self.eot
    }

    /// The padding id.
    pub fn pad(&self) -> u32 {
        self.pad
    }

    /// The ids of one caption, `context_length` long.
    pub fn encode(&self, caption: &str) -> Result<Vec<i64>> {
        let mut ids: Vec<i64> = self.tokenizer.encode(caption)?.into_iter().map(i64::from).collect();
        ids.truncate(self.context_length - 1);
        ids.push(i64::from(self.eot));
        ids.resize(self.context_length, i64::from(self.pad));
        Ok(ids)
    }

    /// `[N, context_length]` int64 ids of `captions`.
    pub fn encode_all<S: AsRef<str>>(&self, captions: &[S]) -> Result<Tensor> {
        let mut flat = Vec::with_capacity(captions.len() * self.context_length);
        for c in captions {
            flat.extend(self.encode(c.as_ref())?);
        }
        Tensor::from_slice(&flat)
            .f_view([captions.len() as i64, self.context_length as i64])
            .map_err(|e| Error::invalid("captions", e.to_string()))
    }
}

/// A batch of pairs: `images: [B, 3, S, S]` normalised, `tokens: [B, context_length]` int64.
#[derive(Debug)]
pub struct PairBatch {
    /// The images.
    pub images: Tensor,
    /// The caption ids.
    pub tokens: Tensor,
}

impl Batch for PairBatch {
    fn to_device(&self, device: Device) -> Self {
        Self { images: self.images.to_device(device), tokens: self.tokens.to_device(device) }
    }
    fn batch_size(&self) -> usize {
        self.images.size().first().map_or(0, |&n| n as usize)
    }
}

/// The training image transform.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageTransform {
    /// Side of the square images the model sees.
    pub size: u32,
    /// Area range of the random resized crop (open_clip: `[0.9, 1.0]`); `[1, 1]` resizes the
    /// whole image.
    pub crop_scale: [f64; 2],
}

impl Default for ImageTransform {
    fn default() -> Self {
        Self { size: 224, crop_scale: [0.9, 1.0] }
    }
}

impl ImageTransform {
    /// Checks the fields; errors name them as `data.transform.*`.
    pub fn validate(&self) -> Result<()> {
        if self.size < 8 {
            return Err(Error::config("data.transform.size", "must be at least 8 pixels"));
        }
        let [a, b] = self.crop_scale;
        if !(a > 0.0 && a <= b && b <= 1.0) {
            return Err(Error::config(
                "data.transform.crop_scale",
                "must be [min, max] with 0 < min <= max <= 1",
            ));
        }
        Ok(())
    }

    /// The training view of `img`.
    pub fn train(&self, img: &Image, rng: &mut SslRng) -> Image {
        RandomResizedCrop::new(self.size, (self.crop_scale[0], self.crop_scale[1])).apply(img, rng)
    }

    /// The evaluation view: shorter side to `size`, centre crop.
    pub fn eval(&self, img: &Image) -> Image {
        center_view(img, self.size)
    }
}

/// Turns `(image, caption)` items into [`PairBatch`]es: the training transform, CLIP's
/// normalisation, captions tokenised in the loader's workers.
#[derive(Debug, Clone)]
pub struct PairBatches {
    tokenizer: CaptionTokenizer,
    transform: ImageTransform,
}

impl PairBatches {
    /// A builder with `tokenizer` and `transform`.
    pub fn new(tokenizer: CaptionTokenizer, transform: ImageTransform) -> Result<Self> {
        transform.validate()?;
        Ok(Self { tokenizer, transform })
    }
}

impl BatchBuilder<(Image, String)> for PairBatches {
    type Sample = (Tensor, Vec<i64>);
    type Batch = PairBatch;

    fn prepare(&self, (img, caption): (Image, String), rng: &mut SslRng) -> Result<Self::Sample> {
        let view = self.transform.train(&img, rng);
        let n = CLIP_NORMALIZATION;
        Ok((to_tensor(&view, n.mean, n.std), self.tokenizer.encode(&caption)?))
    }

    fn collate(&self, samples: Vec<Self::Sample>) -> Result<PairBatch> {
        let images: Vec<&Tensor> = samples.iter().map(|s| &s.0).collect();
        let images = Tensor::f_stack(&images, 0).map_err(|e| Error::data("pair batch", e.to_string()))?;
        let ctx = self.tokenizer.context_length as i64;
        let flat: Vec<i64> = samples.iter().flat_map(|s| s.1.iter().copied()).collect();
        let tokens = Tensor::from_slice(&flat).view([samples.len() as i64, ctx]);
        Ok(PairBatch { images, tokens })
    }
}

/// The evaluation tensor of each image (`[N, 3, S, S]`, centre view, CLIP normalisation).
pub fn eval_images(images: &[Image], transform: &ImageTransform) -> Result<Tensor> {
    use rayon::prelude::*;
    let n = CLIP_NORMALIZATION;
    let views: Vec<Tensor> =
        images.par_iter().map(|img| to_tensor(&transform.eval(img), n.mean, n.std)).collect();
    Tensor::f_stack(&views, 0).map_err(|e| Error::data("images", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ssl_text::tokenizer::TokenizerKind;

    fn tokenizer(ctx: usize) -> CaptionTokenizer {
        let corpus = ["a red disk at the top", "a blue square", "the star is green", "a large white ring"];
        let tok = TextTokenizer::train(TokenizerKind::ByteLevelBpe, corpus.iter().copied(), 300).unwrap();
        CaptionTokenizer::new(tok, ctx).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any caption becomes exactly `context_length` ids: its tokens (cut), one end-of-text,
        /// then only padding.
        #[test]
        fn captions_are_cut_terminated_and_padded(caption in "[a-z ]{0,60}", ctx in 2usize..24) {
            let ct = tokenizer(ctx);
            let ids = ct.encode(&caption).unwrap();
            prop_assert_eq!(ids.len(), ctx);
            let (eot, pad) = (ct.eot() as i64, ct.pad() as i64);
            let end = ids.iter().position(|&t| t == eot).unwrap();
            prop_assert!(ids[end + 1..].iter().all(|&t| t == pad));
            prop_assert!(ids[..end].iter().all(|&t| t != pad && t != eot));
            let full = ct.tokenizer().encode(&caption).unwrap();
            prop_assert_eq!(end, full.len().min(ctx - 1));
        }
    }

    #[test]
    fn batches_hold_normalised_images_and_ids() {
        let b = PairBatches::new(tokenizer(6), ImageTransform { size: 8, crop_scale: [0.9, 1.0] }).unwrap();
        let img = Image::from_pixel(10, 12, image::Rgb([0.5, 0.5, 0.5]));
        let mut rng = ssl_core::rng::rng_for(0, "t", &[]);
        let samples = vec![
            b.prepare((img.clone(), "a red disk".into()), &mut rng).unwrap(),
            b.prepare((img, "a blue square".into()), &mut rng).unwrap(),
        ];
        let batch = b.collate(samples).unwrap();
        assert_eq!(batch.images.size(), [2, 3, 8, 8]);
        assert_eq!(batch.tokens.size(), [2, 6]);
        assert_eq!(batch.batch_size(), 2);
        let e = ImageTransform { size: 8, crop_scale: [0.0, 1.0] }.validate().unwrap_err().to_string();
        assert!(e.contains("data.transform.crop_scale"), "{e}");
    }
}
