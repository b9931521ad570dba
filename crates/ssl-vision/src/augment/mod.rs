//! Image augmentations for view-based self-supervised learning, as in the SimCLR, MoCo v2,
//! BYOL and MoCo v3 papers, and their exact presets.
//!
//! Images are [`Image`]s: RGB, `f32` in `[0, 1]`, height × width. Every augmentation implements
//! [`ssl_core::augment::Augmentation`], draws all its randomness from the generator it is handed
//! (same seed, same bits) and keeps values in `[0, 1]`. Normalisation happens when an image becomes
//! a tensor ([`to_tensor`]). The loader runs pipelines per sample in parallel with rayon.
//!
//! ```
//! use ssl_core::augment::Augmentation;
//! use ssl_core::rng::rng_for;
//! use ssl_vision::augment::{presets, Image};
//!
//! let img = Image::from_pixel(40, 30, image::Rgb([0.2, 0.5, 0.9]));
//! let views = presets::simclr(32, true);
//! let a = views.view(0).apply(&img, &mut rng_for(7, "views", &[0]));
//! assert_eq!(a.dimensions(), (32, 32));
//! assert!(a.pixels().all(|p| p.0.iter().all(|v| (0.0..=1.0).contains(v))));
//! ```

mod blur;
mod color;
mod geometry;
pub mod presets;

pub use blur::GaussianBlur;
pub use color::{ColorJitter, Grayscale, Solarize};
pub use geometry::{HorizontalFlip, Interpolation, RandomResizedCrop};

use tch::Tensor;

/// An RGB image with `f32` channels in `[0, 1]`.
pub type Image = image::Rgb32FImage;

/// Per-channel mean of ImageNet, the normalisation of every ImageNet-pretrained recipe.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// Per-channel standard deviation of ImageNet.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Converts an image to a `[3, H, W]` float tensor normalised as `(x - mean) / std`.
///
/// ```
/// use ssl_vision::augment::{to_tensor, Image};
/// let img = Image::from_pixel(4, 2, image::Rgb([0.5, 0.5, 0.5]));
/// let t = to_tensor(&img, [0.5; 3], [0.25; 3]);
/// assert_eq!(t.size(), vec![3, 2, 4]);
/// assert_eq!(t.abs().sum(tch::Kind::Float).double_value(&[]), 0.0);
/// ```
pub fn to_tensor(img: &Image, mean: [f32; 3], std: [f32; 3]) -> Tensor {
    let (w, h) = img.dimensions();
    let n = (w * h) as usize;
    let mut chw = vec![0f32; 3 * n];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            chw[c * n + i] = (p.0[c] - mean[c]) / std[c];
        }
    }
    Tensor::from_slice(&chw).view([3, i64::from(h), i64::from(w)])
}

/// The luma of ITU-R 601-2, as torchvision's `rgb_to_grayscale`.
pub(crate) fn luma(p: [f32; 3]) -> f32 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::Image;
    use proptest::prelude::*;

    /// Random small images with values in [0, 1].
    pub fn image() -> impl Strategy<Value = Image> {
        (1u32..24, 1u32..24).prop_flat_map(|(w, h)| {
            proptest::collection::vec(0f32..=1.0, (w * h * 3) as usize)
                .prop_map(move |v| Image::from_raw(w, h, v).unwrap_or_else(|| Image::new(w, h)))
        })
    }

    pub fn in_unit_range(img: &Image) -> bool {
        img.pixels().all(|p| p.0.iter().all(|v| (0.0..=1.0).contains(v)))
    }

    pub fn bits(img: &Image) -> Vec<u32> {
        img.as_raw().iter().map(|v| v.to_bits()).collect()
    }
}
