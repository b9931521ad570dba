use rand::seq::SliceRandom;
use rand::Rng;
use ssl_core::augment::Augmentation;
use ssl_core::rng::SslRng;

use super::{luma, Image};

/// Random brightness, contrast, saturation and hue changes in a random order, with torchvision's
/// `ColorJitter` semantics: each factor is drawn from `[max(0, 1 - s), 1 + s]` (hue: a shift in
/// `[-h, h]` of the colour wheel, `h <= 0.5`), and an operation whose strength is 0 is skipped.
///
/// The papers' strengths: SimCLR `(0.8, 0.8, 0.8, 0.2)` (`s = 1`; `s = 0.5` on 32 px images),
/// MoCo v2 `(0.4, 0.4, 0.4, 0.1)`, BYOL/MoCo v3 `(0.4, 0.4, 0.2, 0.1)`, each applied with
/// probability 0.8 (wrap it in [`RandomApply`](ssl_core::augment::RandomApply)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColorJitter {
    /// Brightness strength.
    pub brightness: f32,
    /// Contrast strength.
    pub contrast: f32,
    /// Saturation strength.
    pub saturation: f32,
    /// Hue strength, at most 0.5.
    pub hue: f32,
}

impl ColorJitter {
    /// Jitter with the four strengths (hue is clamped to `[0, 0.5]`, the others to `>= 0`).
    pub fn new(brightness: f32, contrast: f32, saturation: f32, hue: f32) -> Self {
        Self {
            brightness: brightness.max(0.0),
            contrast: contrast.max(0.0),
            saturation: saturation.max(0.0),
            hue: hue.clamp(0.0, 0.5),
        }
    }
}

fn factor(strength: f32, rng: &mut SslRng) -> f32 {
    rng.gen_range((1.0 - strength).max(0.0)..=1.0 + strength)
}

fn map_pixels(img: &mut Image, f: impl Fn([f32; 3]) -> [f32; 3]) {
    for p in img.pixels_mut() {
        p.0 = f(p.0).map(|v| v.clamp(0.0, 1.0));
    }
}

/// Blends each pixel with `other(pixel)`: `factor · x + (1 - factor) · other`.
fn blend(img: &mut Image, factor: f32, other: impl Fn([f32; 3]) -> [f32; 3]) {
    map_pixels(img, |p| {
        let o = other(p);
        [0, 1, 2].map(|c| factor * p[c] + (1.0 - factor) * o[c])
    });
}

fn rgb_to_hsv([r, g, b]: [f32; 3]) -> [f32; 3] {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let delta = max - min;
    let h = if delta <= 0.0 {
        0.0
    } else if max == r {
        ((g - b) / delta).rem_euclid(6.0) / 6.0
    } else if max == g {
        ((b - r) / delta + 2.0) / 6.0
    } else {
        ((r - g) / delta + 4.0) / 6.0
    };
    let s = if max <= 0.0 { 0.0 } else { delta / max };
    [h, s, max]
}

fn hsv_to_rgb([h, s, v]: [f32; 3]) -> [f32; 3] {
    let h6 = h.rem_euclid(1.0) * 6.0;
    let i = h6.floor();
    let f = h6 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match i as u32 % 6 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

impl Augmentation<Image> for ColorJitter {
    fn apply(&self, input: &Image, rng: &mut SslRng) -> Image {
        let mut order = [0usize, 1, 2, 3];
        order.shuffle(rng);
        let b = factor(self.brightness, rng);
        let c = factor(self.contrast, rng);
        let s = factor(self.saturation, rng);
        let h = rng.gen_range(-self.hue..=self.hue);
        let mut img = input.clone();
        for op in order {
            match op {
                0 if self.brightness > 0.0 => map_pixels(&mut img, |p| p.map(|v| v * b)),
                1 if self.contrast > 0.0 => {
                    let n = (img.width() * img.height()).max(1) as f32;
                    let mean = img.pixels().map(|p| luma(p.0)).sum::<f32>() / n;
                    blend(&mut img, c, |_| [mean; 3]);
                }
                2 if self.saturation > 0.0 => blend(&mut img, s, |p| [luma(p); 3]),
                3 if self.hue > 0.0 => map_pixels(&mut img, |p| {
                    let [ph, ps, pv] = rgb_to_hsv(p);
                    hsv_to_rgb([ph + h, ps, pv])
                }),
                _ => {}
            }
        }
        img
    }
}

/// Converts to grayscale (three equal channels, ITU-R 601-2 luma) with probability `p`
/// (0.2 in SimCLR, MoCo v2, BYOL and MoCo v3).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grayscale {
    /// Probability of converting.
    pub p: f64,
}

impl Augmentation<Image> for Grayscale {
    fn apply(&self, input: &Image, rng: &mut SslRng) -> Image {
        let mut img = input.clone();
        if rng.gen::<f64>() < self.p {
            map_pixels(&mut img, |p| [luma(p); 3]);
        }
        img
    }
}

/// Inverts every value at or above `threshold` with probability `p` (BYOL: threshold 0.5, i.e.
/// 128 of 255; p = 0 for the first view and 0.2 for the second, as in MoCo v3).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Solarize {
    /// Values at or above it are inverted.
    pub threshold: f32,
    /// Probability of solarizing.
    pub p: f64,
}

impl Augmentation<Image> for Solarize {
    fn apply(&self, input: &Image, rng: &mut SslRng) -> Image {
        let mut img = input.clone();
        if rng.gen::<f64>() < self.p {
            for v in img.iter_mut() {
                if *v >= self.threshold {
                    *v = 1.0 - *v;
                }
            }
        }
        img
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
        fn jitter_stays_in_range_and_is_seeded(img in image(), seed: u64, b in 0f32..1.0, c in 0f32..1.0, s in 0f32..1.0, h in 0f32..0.5) {
            let j = ColorJitter::new(b, c, s, h);
            let x = j.apply(&img, &mut rng_for(seed, "j", &[]));
            prop_assert!(in_unit_range(&x));
            prop_assert_eq!(bits(&x), bits(&j.apply(&img, &mut rng_for(seed, "j", &[]))));
            prop_assert_eq!(x.dimensions(), img.dimensions());
        }

        #[test]
        fn zero_strengths_and_zero_probabilities_are_identities(img in image(), seed: u64) {
            let mut rng = rng_for(seed, "id", &[]);
            prop_assert_eq!(bits(&ColorJitter::new(0.0, 0.0, 0.0, 0.0).apply(&img, &mut rng)), bits(&img));
            prop_assert_eq!(bits(&Grayscale { p: 0.0 }.apply(&img, &mut rng)), bits(&img));
            prop_assert_eq!(bits(&Solarize { threshold: 0.5, p: 0.0 }.apply(&img, &mut rng)), bits(&img));
        }

        #[test]
        fn hsv_round_trips(r in 0f32..=1.0, g in 0f32..=1.0, b in 0f32..=1.0) {
            let back = hsv_to_rgb(rgb_to_hsv([r, g, b]));
            for (x, y) in back.iter().zip([r, g, b]) {
                prop_assert!((x - y).abs() < 1e-5);
            }
        }

        #[test]
        fn grayscale_has_equal_channels_and_solarize_is_an_involution_above_half(img in image(), seed: u64) {
            let g = Grayscale { p: 1.0 }.apply(&img, &mut rng_for(seed, "g", &[]));
            prop_assert!(g.pixels().all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]));
            let s = Solarize { threshold: 0.5, p: 1.0 };
            let once = s.apply(&img, &mut rng_for(seed, "s", &[]));
            prop_assert!(in_unit_range(&once));
            let solarized = |(o, i): (&f32, &f32)| if *i >= 0.5 { *o == 1.0 - i } else { o == i };
            prop_assert!(once.iter().zip(img.iter()).all(solarized));
        }
    }

    #[test]
    fn pinned_values() {
        // A pure hue shift of a third of the wheel turns red into green.
        let [r, g, b] = hsv_to_rgb([1.0 / 3.0, 1.0, 1.0]);
        assert!(r.abs() < 1e-6 && (g - 1.0).abs() < 1e-6 && b.abs() < 1e-6);
        assert!((luma([1.0, 0.0, 0.0]) - 0.299).abs() < 1e-7);
        // Brightness alone at strength 1 can only scale by [0, 2].
        let img = Image::from_pixel(1, 1, image::Rgb([0.25, 0.25, 0.25]));
        let out = ColorJitter::new(1.0, 0.0, 0.0, 0.0).apply(&img, &mut rng_for(3, "b", &[]));
        let v = out.get_pixel(0, 0).0;
        assert!(v[0] == v[1] && v[1] == v[2] && (0.0..=0.5).contains(&v[0]));
    }
}
