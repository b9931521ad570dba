use rand::Rng;
use ssl_core::augment::Augmentation;
use ssl_core::rng::SslRng;

use super::Image;

/// Gaussian blur with a random standard deviation, applied with probability `p`.
///
/// SimCLR blurs with σ drawn from `[0.1, 2.0]` and a kernel of 10% of the image side (23 px at
/// 224); MoCo v2 uses p = 0.5, BYOL and MoCo v3 p = 1.0 for the first view and 0.1 for the second.
/// The kernel size here is the odd number nearest to `kernel_fraction × min(width, height)`
/// (at least 3), with reflected borders, as torchvision's `GaussianBlur`. σ is in pixels of the
/// image it is applied to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GaussianBlur {
    /// Range of σ in pixels.
    pub sigma: (f32, f32),
    /// Kernel side as a fraction of the image's shorter side (0.1 in SimCLR).
    pub kernel_fraction: f32,
    /// Probability of blurring.
    pub p: f64,
}

impl GaussianBlur {
    /// SimCLR's blur (σ in [0.1, 2], kernel 10% of the image) with probability `p`.
    pub fn simclr(p: f64) -> Self {
        Self { sigma: (0.1, 2.0), kernel_fraction: 0.1, p }
    }

    fn kernel(&self, side: u32, sigma: f32) -> Vec<f32> {
        let k = ((side as f32 * self.kernel_fraction).round() as usize).max(3) | 1;
        let r = (k / 2) as f32;
        let mut w: Vec<f32> =
            (0..k).map(|i| (-((i as f32 - r).powi(2)) / (2.0 * sigma * sigma)).exp()).collect();
        let s: f32 = w.iter().sum();
        w.iter_mut().for_each(|v| *v /= s);
        w
    }
}

/// Index reflected into `0..n` (torchvision's "reflect" padding: the edge is not repeated).
fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let m = i.rem_euclid(period);
    (if m >= n as isize { period - m } else { m }) as usize
}

fn convolve(img: &Image, kernel: &[f32], horizontal: bool) -> Image {
    let (w, h) = img.dimensions();
    let r = (kernel.len() / 2) as isize;
    Image::from_fn(w, h, |x, y| {
        let mut acc = [0f32; 3];
        for (k, wk) in kernel.iter().enumerate() {
            let off = k as isize - r;
            let (sx, sy) = if horizontal {
                (reflect(x as isize + off, w as usize) as u32, y)
            } else {
                (x, reflect(y as isize + off, h as usize) as u32)
            };
            let p = img.get_pixel(sx, sy).0;
            for c in 0..3 {
                acc[c] += wk * p[c];
            }
        }
        image::Rgb(acc.map(|v| v.clamp(0.0, 1.0)))
    })
}

impl Augmentation<Image> for GaussianBlur {
    fn apply(&self, input: &Image, rng: &mut SslRng) -> Image {
        let apply = rng.gen::<f64>() < self.p;
        let sigma = rng.gen_range(self.sigma.0..=self.sigma.1).max(1e-3);
        if !apply || input.width() == 0 || input.height() == 0 {
            return input.clone();
        }
        let kernel = self.kernel(input.width().min(input.height()), sigma);
        convolve(&convolve(input, &kernel, true), &kernel, false)
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
        fn blur_keeps_shape_range_and_constant_images(img in image(), seed: u64) {
            let b = GaussianBlur::simclr(1.0);
            let out = b.apply(&img, &mut rng_for(seed, "b", &[]));
            prop_assert_eq!(out.dimensions(), img.dimensions());
            prop_assert!(in_unit_range(&out));
            prop_assert_eq!(bits(&GaussianBlur::simclr(0.0).apply(&img, &mut rng_for(seed, "b", &[]))), bits(&img));
            let flat = Image::from_pixel(img.width(), img.height(), image::Rgb([0.3, 0.6, 0.9]));
            let blurred = b.apply(&flat, &mut rng_for(seed, "b", &[]));
            prop_assert!(blurred.iter().zip(flat.iter()).all(|(a, b)| (a - b).abs() < 1e-5));
        }

        #[test]
        fn reflection_stays_inside(i in -100isize..100, n in 1usize..20) {
            prop_assert!(reflect(i, n) < n);
        }
    }

    #[test]
    fn kernel_size_follows_simclr_and_sums_to_one() {
        let b = GaussianBlur::simclr(1.0);
        assert_eq!(b.kernel(224, 1.0).len(), 23);
        assert_eq!(b.kernel(32, 1.0).len(), 3);
        assert!((b.kernel(96, 0.7).iter().sum::<f32>() - 1.0).abs() < 1e-6);
        // Blurring smooths an impulse.
        let mut img = Image::new(9, 9);
        img.put_pixel(4, 4, image::Rgb([1.0, 1.0, 1.0]));
        let out = GaussianBlur { sigma: (1.0, 1.0), kernel_fraction: 0.5, p: 1.0 }
            .apply(&img, &mut rng_for(0, "i", &[]));
        assert!(out.get_pixel(4, 4).0[0] < 1.0 && out.get_pixel(3, 4).0[0] > 0.0);
    }
}
