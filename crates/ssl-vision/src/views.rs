//! From images to the tensors objectives and probes consume: a [`BatchBuilder`] that makes the
//! augmented views of each image, and the labelled tensors of a split for evaluation.

use image::imageops::{self, FilterType};
use rayon::prelude::*;
use ssl_core::augment::Augmentation;
use ssl_core::data::{BatchBuilder, Dataset};
use ssl_core::rng::SslRng;
use ssl_core::{Error, Result};
use tch::Tensor;

use crate::augment::presets::ViewPipelines;
use crate::augment::{to_tensor, Image};

/// Per-channel normalisation applied when images become tensors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    /// Channel means.
    pub mean: [f32; 3],
    /// Channel standard deviations.
    pub std: [f32; 3],
}

impl Normalization {
    /// ImageNet's statistics, used by every recipe here.
    pub const IMAGENET: Self =
        Self { mean: crate::augment::IMAGENET_MEAN, std: crate::augment::IMAGENET_STD };
}

/// Makes `pipelines.len()` augmented views of each image and collates view `v` of every sample
/// into tensor `v` of the batch (`[B, 3, S, S]`). Labels are ignored (this is pretraining)
/// unless [`with_labels`](Self::with_labels) appends them as a last `[B]` int64 tensor.
pub struct ViewBatches {
    pipelines: ViewPipelines,
    norm: Normalization,
    labels: bool,
}

impl ViewBatches {
    /// Views from `pipelines`, normalised with `norm`.
    pub fn new(pipelines: ViewPipelines, norm: Normalization) -> Self {
        Self { pipelines, norm, labels: false }
    }

    /// Batches that end with the labels (for supervised training).
    pub fn with_labels(mut self, labels: bool) -> Self {
        self.labels = labels;
        self
    }
}

impl BatchBuilder<(Image, i64)> for ViewBatches {
    type Sample = Vec<Tensor>;
    type Batch = Vec<Tensor>;

    fn prepare(&self, (img, label): (Image, i64), rng: &mut SslRng) -> Result<Vec<Tensor>> {
        let mut sample: Vec<Tensor> = (0..self.pipelines.len())
            .map(|v| to_tensor(&self.pipelines.view(v).apply(&img, rng), self.norm.mean, self.norm.std))
            .collect();
        if self.labels {
            sample.push(Tensor::from(label));
        }
        Ok(sample)
    }

    fn collate(&self, samples: Vec<Vec<Tensor>>) -> Result<Vec<Tensor>> {
        let parts = self.pipelines.len() + usize::from(self.labels);
        (0..parts)
            .map(|v| {
                let views: Vec<&Tensor> = samples.iter().map(|s| &s[v]).collect();
                Tensor::f_stack(&views, 0)
                    .map_err(|e| Error::data("view batch", format!("cannot stack part {v}: {e}")))
            })
            .collect()
    }
}

/// The evaluation view of an image: shorter side resized to `size`, centre-cropped to
/// `size × size` (the "resize + centre crop" of linear evaluation, without the 1.14 ratio, since
/// the embedded images are already at their training size).
pub fn center_view(img: &Image, size: u32) -> Image {
    let (w, h) = img.dimensions();
    let resized = if w.min(h) == size { img.clone() } else { crate::data::resize_shorter_side(img, size) };
    let (w, h) = resized.dimensions();
    let crop =
        imageops::crop_imm(&resized, (w - size.min(w)) / 2, (h - size.min(h)) / 2, size, size).to_image();
    if crop.dimensions() == (size, size) {
        crop
    } else {
        imageops::resize(&crop, size, size, FilterType::Triangle)
    }
}

/// The single view of a one-view method's batch (MAE, inpainting, rotation, autoencoder);
/// errors name `method` and the number of views it got.
///
/// ```
/// use ssl_core::tch::{Device, Kind, Tensor};
/// use ssl_vision::views::one_view;
/// let x = Tensor::zeros([2, 3, 8, 8], (Kind::Float, Device::Cpu));
/// assert!(one_view(&[x.shallow_clone()], "MAE").is_ok());
/// let e = one_view(&[x.shallow_clone(), x], "MAE").unwrap_err();
/// assert!(e.to_string().contains("MAE takes 1 view, got 2"));
/// ```
pub fn one_view<'a>(batch: &'a [Tensor], method: &str) -> Result<&'a Tensor> {
    match batch {
        [images] => Ok(images),
        _ => Err(Error::invalid("batch", format!("{method} takes 1 view, got {}", batch.len()))),
    }
}

/// Every sample of a labelled dataset as `([N, 3, size, size] normalised, [N] labels)`, decoded
/// in parallel. Errors name the sample that failed.
pub fn labelled_tensors<D>(dataset: &D, size: u32, norm: Normalization) -> Result<(Tensor, Tensor)>
where
    D: Dataset<Item = (Image, i64)>,
{
    labelled_tensors_of(dataset, 0..dataset.len(), size, norm)
}

/// Like [`labelled_tensors`] for the samples `range` of the dataset (clamped to its length).
pub fn labelled_tensors_of<D>(
    dataset: &D,
    range: std::ops::Range<usize>,
    size: u32,
    norm: Normalization,
) -> Result<(Tensor, Tensor)>
where
    D: Dataset<Item = (Image, i64)>,
{
    let range = range.start.min(dataset.len())..range.end.min(dataset.len());
    let samples = range
        .into_par_iter()
        .map(|i| {
            dataset
                .get(i)
                .map(|(img, label)| (to_tensor(&center_view(&img, size), norm.mean, norm.std), label))
        })
        .collect::<Result<Vec<_>>>()?;
    if samples.is_empty() {
        return Err(Error::data("labelled split", "no samples"));
    }
    let images: Vec<&Tensor> = samples.iter().map(|s| &s.0).collect();
    let labels: Vec<i64> = samples.iter().map(|s| s.1).collect();
    let x = Tensor::f_stack(&images, 0).map_err(|e| Error::data("labelled split", e.to_string()))?;
    Ok((x, Tensor::from_slice(&labels)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::presets;
    use crate::shapes::{Shapes, ShapesConfig, Split};
    use ssl_core::data::{DataLoader, LoaderConfig, RandomSampler};

    #[test]
    fn view_batches_have_two_normalised_image_tensors() {
        let cfg =
            ShapesConfig { train_per_class: 2, test_per_class: 1, image_size: 16, ..Default::default() };
        let ds = Shapes::new(&cfg, Split::Train).unwrap();
        let views = ViewBatches::new(presets::simclr(12, true), Normalization::IMAGENET);
        let loader_cfg = LoaderConfig { batch_size: 4, drop_last: true, prefetch: 1, seed: 1 };
        let loader = DataLoader::new(ds, views, RandomSampler::new(1), loader_cfg).unwrap();
        let (_, batch) = loader.epoch(0).next().unwrap().unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].size(), vec![4, 3, 12, 12]);
        assert!(!batch[0].equal(&batch[1]));
    }

    #[test]
    fn labelled_tensors_cover_the_split() {
        let cfg =
            ShapesConfig { train_per_class: 2, test_per_class: 1, image_size: 16, ..Default::default() };
        let (x, y) =
            labelled_tensors(&Shapes::new(&cfg, Split::Test).unwrap(), 16, Normalization::IMAGENET).unwrap();
        assert_eq!(x.size(), vec![8, 3, 16, 16]);
        assert_eq!(Vec::<i64>::try_from(&y).unwrap(), (0..8).collect::<Vec<_>>());
        let big = Image::new(40, 20);
        assert_eq!(center_view(&big, 10).dimensions(), (10, 10));
    }
}
