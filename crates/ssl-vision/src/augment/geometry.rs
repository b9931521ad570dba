use image::imageops::{self, FilterType};
use rand::Rng;
use serde::{Deserialize, Serialize};
use ssl_core::augment::Augmentation;
use ssl_core::rng::SslRng;

use super::Image;

/// Resampling filter of a resize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// Bilinear (a triangle filter, antialiased when shrinking), torchvision's default.
    #[default]
    Bilinear,
    /// Bicubic (Catmull-Rom), as in the MAE and DeiT fine-tuning recipes.
    Bicubic,
}

impl Interpolation {
    fn filter(self) -> FilterType {
        match self {
            Interpolation::Bilinear => FilterType::Triangle,
            Interpolation::Bicubic => FilterType::CatmullRom,
        }
    }
}

/// Crops a random region of random area and aspect ratio and resizes it to `size × size`
/// (Szegedy et al. 2015; torchvision's `RandomResizedCrop`, same sampling: ten tries, then a
/// central crop clamped to the ratio range).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomResizedCrop {
    /// Output side length.
    pub size: u32,
    /// Range of the crop's area as a fraction of the image (SimCLR/BYOL: (0.08, 1); MoCo v2: (0.2, 1)).
    pub scale: (f64, f64),
    /// Range of the crop's aspect ratio (width / height), default (3/4, 4/3).
    pub ratio: (f64, f64),
    /// The resize filter.
    pub interpolation: Interpolation,
}

impl RandomResizedCrop {
    /// A crop to `size` with `scale`, the default ratio range and bilinear resizing.
    pub fn new(size: u32, scale: (f64, f64)) -> Self {
        Self { size, scale, ratio: (3.0 / 4.0, 4.0 / 3.0), interpolation: Interpolation::Bilinear }
    }

    /// The crop `(x, y, width, height)` for an image of `width × height`.
    pub fn sample_region(&self, width: u32, height: u32, rng: &mut SslRng) -> (u32, u32, u32, u32) {
        let (w0, h0) = (f64::from(width), f64::from(height));
        let area = w0 * h0;
        let (lr0, lr1) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target = area * rng.gen_range(self.scale.0..=self.scale.1);
            let aspect = rng.gen_range(lr0..=lr1).exp();
            let w = (target * aspect).sqrt().round();
            let h = (target / aspect).sqrt().round();
            if w >= 1.0 && h >= 1.0 && w <= w0 && h <= h0 {
                let (w, h) = (w as u32, h as u32);
                let x = rng.gen_range(0..=width - w);
                let y = rng.gen_range(0..=height - h);
                return (x, y, w, h);
            }
        }
        let in_ratio = w0 / h0;
        let (w, h) = if in_ratio < self.ratio.0 {
            (w0, (w0 / self.ratio.0).round())
        } else if in_ratio > self.ratio.1 {
            ((h0 * self.ratio.1).round(), h0)
        } else {
            (w0, h0)
        };
        let (w, h) = ((w as u32).clamp(1, width), (h as u32).clamp(1, height));
        ((width - w) / 2, (height - h) / 2, w, h)
    }
}

impl Augmentation<Image> for RandomResizedCrop {
    fn apply(&self, input: &Image, rng: &mut SslRng) -> Image {
        let (width, height) = input.dimensions();
        if width == 0 || height == 0 || self.size == 0 {
            return input.clone();
        }
        let (x, y, w, h) = self.sample_region(width, height, rng);
        let crop = imageops::crop_imm(input, x, y, w, h).to_image();
        let mut out = imageops::resize(&crop, self.size, self.size, self.interpolation.filter());
        // Bicubic overshoots; keep the [0, 1] invariant.
        for v in out.iter_mut() {
            *v = v.clamp(0.0, 1.0);
        }
        out
    }
}

/// Mirrors the image left-right with probability `p` (0.5 in every recipe here).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HorizontalFlip {
    /// Probability of flipping.
    pub p: f64,
}

impl Augmentation<Image> for HorizontalFlip {
    fn apply(&self, input: &Image, rng: &mut SslRng) -> Image {
        if rng.gen::<f64>() < self.p {
            imageops::flip_horizontal(input)
        } else {
            input.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{bits, image, in_unit_range};
    use super::*;
    use proptest::prelude::*;
    use ssl_core::rng::rng_for;

    proptest! {
        #[test]
        fn crops_have_the_output_size_stay_in_range_and_are_seeded(
            img in image(), size in 1u32..20, seed: u64, lo in 0.05f64..1.0, bicubic: bool
        ) {
            let mut rrc = RandomResizedCrop::new(size, (lo, 1.0));
            if bicubic { rrc.interpolation = Interpolation::Bicubic; }
            let a = rrc.apply(&img, &mut rng_for(seed, "rrc", &[]));
            let b = rrc.apply(&img, &mut rng_for(seed, "rrc", &[]));
            prop_assert_eq!(a.dimensions(), (size, size));
            prop_assert!(in_unit_range(&a));
            prop_assert_eq!(bits(&a), bits(&b));
        }

        #[test]
        fn regions_lie_inside_the_image(w in 1u32..300, h in 1u32..300, seed: u64, lo in 0.01f64..1.0) {
            let rrc = RandomResizedCrop::new(8, (lo, 1.0));
            let (x, y, cw, ch) = rrc.sample_region(w, h, &mut rng_for(seed, "r", &[]));
            prop_assert!(cw >= 1 && ch >= 1 && x + cw <= w && y + ch <= h);
        }

        #[test]
        fn flip_twice_is_identity_and_p0_is_identity(img in image(), seed: u64) {
            let f = HorizontalFlip { p: 1.0 };
            let back = f.apply(&f.apply(&img, &mut rng_for(seed, "f", &[])), &mut rng_for(seed, "g", &[]));
            prop_assert_eq!(bits(&back), bits(&img));
            prop_assert_eq!(bits(&HorizontalFlip { p: 0.0 }.apply(&img, &mut rng_for(seed, "f", &[]))), bits(&img));
        }
    }

    #[test]
    fn full_scale_square_crop_of_a_square_image_is_a_resize() {
        // scale (1, 1) and ratio (1, 1) leave only the whole image.
        let rrc = RandomResizedCrop { ratio: (1.0, 1.0), ..RandomResizedCrop::new(4, (1.0, 1.0)) };
        assert_eq!(rrc.sample_region(10, 10, &mut rng_for(0, "x", &[])), (0, 0, 10, 10));
    }
}
