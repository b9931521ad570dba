//! The view pipelines of the papers, exactly as published (order included), per view.
//!
//! | preset | crop scale | jitter (b, c, s, h), p | gray | blur p | solarize p | source |
//! |---|---|---|---|---|---|---|
//! | [`simclr`] | (0.08, 1) | (0.8, 0.8, 0.8, 0.2), 0.8 | 0.2 | 0.5 | – | Chen et al. 2020, App. A |
//! | [`simclr`] small images | (0.08, 1) | (0.4, 0.4, 0.4, 0.1), 0.8 | 0.2 | – | – | same, CIFAR-10 (s = 0.5, no blur) |
//! | [`moco_v2`] | (0.2, 1) | (0.4, 0.4, 0.4, 0.1), 0.8 | 0.2 | 0.5 | – | Chen et al. 2020 (MoCo v2) |
//! | [`byol`] view 1 / 2 | (0.08, 1) | (0.4, 0.4, 0.2, 0.1), 0.8 | 0.2 | 1.0 / 0.1 | 0 / 0.2 | Grill et al. 2020, Table 6 |
//! | [`moco_v3`] view 1 / 2 | as BYOL | | | | | Chen et al. 2021 |
//! | [`mae`] (one view) | (0.2, 1), bicubic | – | – | – | – | He et al. 2022 |
//! | [`rotation`] (one view) | (0.2, 1) | – | – | – | – | crop and flip, as MAE's |
//! | [`supervised`] (one view) | (0.08, 1) | – | – | – | – | the standard ImageNet recipe |
//!
//! Every pipeline flips horizontally with p = 0.5 after the crop.

use ssl_core::augment::{Augmentation, Compose, RandomApply};

use super::{ColorJitter, GaussianBlur, Grayscale, HorizontalFlip, Image, RandomResizedCrop, Solarize};

/// The augmentation pipeline of each view.
pub struct ViewPipelines {
    views: Vec<Compose<Image>>,
}

impl ViewPipelines {
    /// Pipelines from explicit per-view compositions.
    pub fn new(views: Vec<Compose<Image>>) -> Self {
        Self { views }
    }

    /// The number of views.
    pub fn len(&self) -> usize {
        self.views.len()
    }

    /// Whether there are no views.
    pub fn is_empty(&self) -> bool {
        self.views.is_empty()
    }

    /// The pipeline of view `i` (the last one for larger `i`).
    ///
    /// # Panics
    /// If there are no views.
    pub fn view(&self, i: usize) -> &Compose<Image> {
        &self.views[i.min(self.views.len() - 1)]
    }
}

struct Recipe {
    scale: (f64, f64),
    jitter: ColorJitter,
    blur_p: Option<f64>,
    solarize_p: Option<f64>,
}

fn pipeline(size: u32, r: &Recipe) -> Compose<Image> {
    let mut steps: Vec<Box<dyn Augmentation<Image>>> = vec![
        Box::new(RandomResizedCrop::new(size, r.scale)),
        Box::new(HorizontalFlip { p: 0.5 }),
        Box::new(RandomApply::new(r.jitter, 0.8)),
        Box::new(Grayscale { p: 0.2 }),
    ];
    if let Some(p) = r.blur_p {
        steps.push(Box::new(GaussianBlur::simclr(p)));
    }
    if let Some(p) = r.solarize_p {
        steps.push(Box::new(Solarize { threshold: 0.5, p }));
    }
    Compose::new(steps)
}

/// SimCLR: two views from one pipeline. `small_images` (32 px, CIFAR) halves the jitter strength
/// and drops the blur, as the paper does.
pub fn simclr(size: u32, small_images: bool) -> ViewPipelines {
    let s = if small_images { 0.5 } else { 1.0 };
    let recipe = Recipe {
        scale: (0.08, 1.0),
        jitter: ColorJitter::new(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s),
        blur_p: (!small_images).then_some(0.5),
        solarize_p: None,
    };
    ViewPipelines::new(vec![pipeline(size, &recipe), pipeline(size, &recipe)])
}

/// MoCo v2: crop scale (0.2, 1), jitter (0.4, 0.4, 0.4, 0.1), blur p = 0.5.
pub fn moco_v2(size: u32) -> ViewPipelines {
    let recipe = Recipe {
        scale: (0.2, 1.0),
        jitter: ColorJitter::new(0.4, 0.4, 0.4, 0.1),
        blur_p: Some(0.5),
        solarize_p: None,
    };
    ViewPipelines::new(vec![pipeline(size, &recipe), pipeline(size, &recipe)])
}

/// BYOL's asymmetric views: blur p = 1.0 / 0.1, solarize p = 0 / 0.2.
pub fn byol(size: u32) -> ViewPipelines {
    let view = |blur_p, solarize_p| Recipe {
        scale: (0.08, 1.0),
        jitter: ColorJitter::new(0.4, 0.4, 0.2, 0.1),
        blur_p: Some(blur_p),
        solarize_p: Some(solarize_p),
    };
    ViewPipelines::new(vec![pipeline(size, &view(1.0, 0.0)), pipeline(size, &view(0.1, 0.2))])
}

/// The standard supervised augmentation: one view, random resized crop (0.08, 1) and flip.
pub fn supervised(size: u32) -> ViewPipelines {
    ViewPipelines::new(vec![Compose::new(vec![
        Box::new(RandomResizedCrop::new(size, (0.08, 1.0))),
        Box::new(HorizontalFlip { p: 0.5 }),
    ])])
}

/// Rotation prediction's augmentation: one view, random resized crop (0.2, 1) and flip; the
/// four rotations are made by the objective.
pub fn rotation(size: u32) -> ViewPipelines {
    crop_and_flip(size)
}

/// Inpainting's augmentation: one view, random resized crop (0.2, 1) and flip (the Context
/// Encoder trains on plain crops); the hole is cut by the objective.
pub fn inpainting(size: u32) -> ViewPipelines {
    crop_and_flip(size)
}

/// The autoencoders' augmentation: one view, random resized crop (0.2, 1) and flip; a denoising
/// autoencoder's corruption is applied by the objective.
pub fn autoencoder(size: u32) -> ViewPipelines {
    crop_and_flip(size)
}

/// One view: random resized crop (0.2, 1) and flip.
fn crop_and_flip(size: u32) -> ViewPipelines {
    ViewPipelines::new(vec![Compose::new(vec![
        Box::new(RandomResizedCrop::new(size, (0.2, 1.0))),
        Box::new(HorizontalFlip { p: 0.5 }),
    ])])
}

/// MAE's pretraining augmentation: one view, random resized crop (0.2, 1) with bicubic
/// interpolation, and flip (`main_pretrain.py`).
pub fn mae(size: u32) -> ViewPipelines {
    let crop = RandomResizedCrop {
        interpolation: super::Interpolation::Bicubic,
        ..RandomResizedCrop::new(size, (0.2, 1.0))
    };
    ViewPipelines::new(vec![Compose::new(vec![Box::new(crop), Box::new(HorizontalFlip { p: 0.5 })])])
}

/// MoCo v3 uses BYOL's views.
pub fn moco_v3(size: u32) -> ViewPipelines {
    byol(size)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{bits, image, in_unit_range};
    use super::*;
    use proptest::prelude::*;
    use ssl_core::rng::rng_for;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn every_preset_gives_seeded_in_range_views_of_the_size(img in image(), seed: u64, size in 4u32..24) {
            for views in [simclr(size, true), simclr(size, false), moco_v2(size), byol(size), moco_v3(size)] {
                prop_assert_eq!(views.len(), 2);
                for v in 0..2 {
                    let a = views.view(v).apply(&img, &mut rng_for(seed, "p", &[v as u64]));
                    let b = views.view(v).apply(&img, &mut rng_for(seed, "p", &[v as u64]));
                    prop_assert_eq!(a.dimensions(), (size, size));
                    prop_assert!(in_unit_range(&a));
                    prop_assert_eq!(bits(&a), bits(&b));
                }
            }
        }
    }

    #[test]
    fn views_differ() {
        let img = Image::from_fn(32, 32, |x, y| image::Rgb([x as f32 / 31.0, y as f32 / 31.0, 0.5]));
        let v = simclr(16, true);
        let a = v.view(0).apply(&img, &mut rng_for(1, "v", &[0]));
        let b = v.view(1).apply(&img, &mut rng_for(1, "v", &[1]));
        assert_ne!(bits(&a), bits(&b));
    }
}
