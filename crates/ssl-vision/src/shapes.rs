//! The embedded default dataset: procedurally drawn shapes, generated deterministically from a
//! seed, with no files.
//!
//! Each image shows a few copies (2 to 4 by default) of its class's shape (disk, square,
//! triangle, cross, ring, star, ellipse, half-disk), each at its own position, size and rotation,
//! in one colour on a background colour, with pixel noise. Colour, position, count and
//! orientation carry no class information, so raw pixels are a poor feature; the shape is what
//! SSL augmentations (crops, colour jitter, flips) leave invariant, so it is learnable without
//! labels. Two choices keep it so:
//! - several copies: a random-resized crop down to 8% of the image, as the papers' recipes
//!   take, still shows at least part of one copy, as a crop of a natural image shows part of
//!   its object; with a single shape most small crops show background or a featureless edge;
//! - a small palette (4 colours): the colour pair is then shared by many images of a batch, so
//!   a contrastive learner cannot tell the images apart by colour alone and has to look at
//!   the shapes.
//!
//! Sample `i` of a split is a pure function of `(seed, split, i)`: nothing is stored, and any
//! size can be asked for.

use rand::Rng;
use serde::{Deserialize, Serialize};
use ssl_core::data::Dataset;
use ssl_core::rng::{normal, rng_for, SslRng};
use ssl_core::{Error, Result};

use crate::augment::{luma, Image};

/// The shape classes, in label order.
pub const CLASSES: &[&str] = &["disk", "square", "triangle", "cross", "ring", "star", "ellipse", "half_disk"];

/// The dataset's size and look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShapesConfig {
    /// Image side in pixels.
    pub image_size: u32,
    /// Number of classes, the first `num_classes` of [`CLASSES`].
    pub num_classes: usize,
    /// Samples per class in the training split (the pretraining set).
    pub train_per_class: usize,
    /// Samples per class in the held-out split.
    pub test_per_class: usize,
    /// Standard deviation of the additive pixel noise.
    pub noise_std: f32,
    /// Range of a shape's radius, as a fraction of the image side.
    pub radius: [f32; 2],
    /// Range of the number of copies of the class's shape in an image (each with its own
    /// position, size and rotation; placed apart where 32 random tries find room, which with
    /// the defaults fails for about 5% of the images).
    pub count: [usize; 2],
    /// Number of colours backgrounds and shapes are drawn from (a palette derived from the
    /// seed, spread over the brightness range); 0 draws every colour uniformly from the RGB
    /// cube. A small palette makes colour a weak cue for telling two images apart, so a
    /// contrastive learner cannot separate the images of a batch by colour alone and has to
    /// look at the shapes.
    pub palette: usize,
    /// The largest rotation of a shape from its upright pose, in degrees: 180 (the default)
    /// turns every copy at random, so orientation tells nothing (and rotation prediction has
    /// nothing to learn); a small angle keeps the shapes about upright, as objects in photos
    /// are, which is what rotation prediction relies on.
    pub max_rotation: f32,
    /// The seed the images derive from.
    pub seed: u64,
}

impl Default for ShapesConfig {
    fn default() -> Self {
        Self {
            image_size: 32,
            num_classes: CLASSES.len(),
            train_per_class: 1000,
            test_per_class: 200,
            noise_std: 0.05,
            radius: [0.12, 0.22],
            count: [2, 4],
            palette: 4,
            max_rotation: 180.0,
            seed: 0,
        }
    }
}

impl ShapesConfig {
    /// Checks the fields; errors name them (`data.shapes.num_classes`).
    pub fn validate(&self) -> Result<()> {
        if !(2..=CLASSES.len()).contains(&self.num_classes) {
            return Err(Error::config(
                "data.shapes.num_classes",
                format!("must be between 2 and {}", CLASSES.len()),
            ));
        }
        if self.image_size < 8 {
            return Err(Error::config("data.shapes.image_size", "must be at least 8 pixels"));
        }
        if self.train_per_class == 0 || self.test_per_class == 0 {
            return Err(Error::config("data.shapes.train_per_class", "both splits need samples"));
        }
        let [r0, r1] = self.radius;
        if !(r0 > 0.0 && r0 <= r1 && r1 <= 0.5) {
            return Err(Error::config(
                "data.shapes.radius",
                "must be a range [min, max] with 0 < min <= max <= 0.5",
            ));
        }
        let [c0, c1] = self.count;
        if !(c0 >= 1 && c0 <= c1) {
            return Err(Error::config(
                "data.shapes.count",
                "must be a range [min, max] with 1 <= min <= max",
            ));
        }
        if self.palette == 1 {
            return Err(Error::config(
                "data.shapes.palette",
                "needs at least 2 colours (or 0 for any colour)",
            ));
        }
        if !(0.0..=180.0).contains(&self.max_rotation) {
            return Err(Error::config("data.shapes.max_rotation", "must be in [0, 180] degrees"));
        }
        if !(0.0..=1.0).contains(&self.noise_std) {
            return Err(Error::config("data.shapes.noise_std", "must be in [0, 1]"));
        }
        Ok(())
    }
}

/// Which split of the dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The training (pretraining) split.
    Train,
    /// The held-out split.
    Test,
}

/// One split of the shapes dataset.
///
/// ```
/// use ssl_core::data::Dataset;
/// use ssl_vision::shapes::{Shapes, ShapesConfig, Split};
/// let ds = Shapes::new(&ShapesConfig::default(), Split::Test).unwrap();
/// let (img, label) = ds.get(3).unwrap();
/// assert_eq!((img.dimensions(), label), ((32, 32), 3));
/// assert_eq!(ds.get(3).unwrap().0, img); // a pure function of (seed, split, index)
/// ```
#[derive(Debug, Clone)]
pub struct Shapes {
    config: ShapesConfig,
    split: Split,
    palette: Vec<[f32; 3]>,
}

impl Shapes {
    /// The `split` of the dataset `config` describes.
    pub fn new(config: &ShapesConfig, split: Split) -> Result<Self> {
        config.validate()?;
        Ok(Self { config: config.clone(), split, palette: palette(config) })
    }

    /// Where the copies of an image's shape go: `count` copies of radius within `radius`,
    /// wholly inside the image, each redrawn (up to 32 times) until it overlaps no earlier one.
    fn layout(&self, rng: &mut SslRng) -> Vec<Placed> {
        let c = &self.config;
        let size = c.image_size as f32;
        let copies = rng.gen_range(c.count[0]..=c.count[1]);
        let mut placed: Vec<Placed> = Vec::with_capacity(copies);
        for _ in 0..copies {
            let mut shape = Placed::draw(rng, size, c.radius, c.max_rotation);
            for _ in 0..32 {
                if placed.iter().all(|p| !p.overlaps(&shape)) {
                    break;
                }
                shape = Placed::draw(rng, size, c.radius, c.max_rotation);
            }
            placed.push(shape);
        }
        placed
    }

    /// Draws sample `index`.
    pub fn render(&self, index: usize) -> (Image, i64) {
        let c = &self.config;
        let class = index % c.num_classes;
        let split = match self.split {
            Split::Train => 0,
            Split::Test => 1,
        };
        let mut rng = rng_for(c.seed, "shapes", &[split, index as u64]);
        let placed = self.layout(&mut rng);
        let palette = &self.palette;
        let colour = |rng: &mut SslRng| match palette.len() {
            0 => [rng.gen(), rng.gen(), rng.gen()],
            n => palette[rng.gen_range(0..n)],
        };
        let background: [f32; 3] = colour(&mut rng);
        // A foreground clearly distinct from the background in brightness.
        let mut foreground: [f32; 3] = colour(&mut rng);
        for _ in 0..64 {
            if (luma(foreground) - luma(background)).abs() >= 0.25 {
                break;
            }
            foreground = colour(&mut rng);
        }
        let mut img = Image::new(c.image_size, c.image_size);
        for (x, y, p) in img.enumerate_pixels_mut() {
            // 2x2 supersampling for smooth edges.
            let mut cover = 0.0;
            for (dx, dy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
                if placed.iter().any(|s| s.covers(class, x as f32 + dx, y as f32 + dy)) {
                    cover += 0.25;
                }
            }
            let noise: [f32; 3] = [0, 1, 2].map(|_| normal(&mut rng, 1.0) * c.noise_std);
            p.0 = [0, 1, 2]
                .map(|k| (cover * foreground[k] + (1.0 - cover) * background[k] + noise[k]).clamp(0.0, 1.0));
        }
        (img, class as i64)
    }
}

/// One copy of a shape: centre, radius and rotation (as sine and cosine) in pixels.
struct Placed {
    cx: f32,
    cy: f32,
    radius: f32,
    sin: f32,
    cos: f32,
}

impl Placed {
    /// A copy of radius `radius` (fractions of `size`) lying wholly inside the image.
    fn draw(rng: &mut SslRng, size: f32, radius: [f32; 2], max_rotation: f32) -> Self {
        let radius = size * rng.gen_range(radius[0]..=radius[1]);
        let centre = |rng: &mut SslRng| {
            if radius * 2.0 >= size {
                size / 2.0
            } else {
                rng.gen_range(radius..size - radius)
            }
        };
        let (cx, cy) = (centre(rng), centre(rng));
        let angle = if max_rotation >= 180.0 {
            rng.gen_range(0.0..std::f32::consts::TAU)
        } else {
            rng.gen_range(-max_rotation..=max_rotation).to_radians()
        };
        let (sin, cos) = angle.sin_cos();
        Self { cx, cy, radius, sin, cos }
    }

    fn overlaps(&self, other: &Placed) -> bool {
        (self.cx - other.cx).hypot(self.cy - other.cy) < self.radius + other.radius
    }

    /// Whether the point `(x, y)` (pixels) is inside this copy of shape `class`.
    fn covers(&self, class: usize, x: f32, y: f32) -> bool {
        let (px, py) = ((x - self.cx) / self.radius, (y - self.cy) / self.radius);
        shape_covers(class, self.cos * px + self.sin * py, -self.sin * px + self.cos * py)
    }
}

/// The colours of `config`'s palette (empty when `palette` is 0): `palette` colours spread over
/// the luma range, so every colour has partners distinct enough in brightness.
fn palette(config: &ShapesConfig) -> Vec<[f32; 3]> {
    let n = config.palette;
    let mut rng = rng_for(config.seed, "shapes-palette", &[]);
    (0..n)
        .map(|i| {
            let target = (i as f32 + 0.5) / n as f32;
            let mut best = [0.0; 3];
            let mut err = f32::INFINITY;
            for _ in 0..32 {
                let c: [f32; 3] = [rng.gen(), rng.gen(), rng.gen()];
                let e = (luma(c) - target).abs();
                if e < err {
                    (best, err) = (c, e);
                }
            }
            best
        })
        .collect()
}

/// Whether the point `(u, v)`, in a shape's unit frame (centre at the origin, radius 1), is
/// inside shape `class` (an index into [`CLASSES`]): the rasteriser other generated datasets
/// (ssl-multimodal's captioned scenes) draw with.
///
/// ```
/// use ssl_vision::shapes::shape_covers;
/// assert!(shape_covers(0, 0.5, 0.5) && !shape_covers(0, 0.9, 0.9)); // disk
/// assert!(shape_covers(1, 0.7, 0.7) && !shape_covers(4, 0.0, 0.0)); // square; ring has a hole
/// ```
pub fn shape_covers(class: usize, u: f32, v: f32) -> bool {
    let r = (u * u + v * v).sqrt();
    match class {
        0 => r <= 1.0,
        1 => u.abs().max(v.abs()) <= 0.8,
        2 => v >= -0.5 && 3f32.sqrt() * u.abs() + v <= 1.0,
        3 => (u.abs() <= 0.3 && v.abs() <= 1.0) || (v.abs() <= 0.3 && u.abs() <= 1.0),
        4 => (0.6..=1.0).contains(&r),
        5 => r <= 0.45 + 0.55 * (2.5 * v.atan2(u)).cos().abs(),
        6 => u * u + (v / 0.4) * (v / 0.4) <= 1.0,
        _ => r <= 1.0 && v >= 0.0,
    }
}

impl Dataset for Shapes {
    type Item = (Image, i64);

    fn len(&self) -> usize {
        let per_class = match self.split {
            Split::Train => self.config.train_per_class,
            Split::Test => self.config.test_per_class,
        };
        per_class * self.config.num_classes
    }

    fn get(&self, index: usize) -> Result<(Image, i64)> {
        if index >= self.len() {
            return Err(Error::data("shapes", format!("index {index} out of range (len {})", self.len())));
        }
        Ok(self.render(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn samples_are_deterministic_balanced_and_in_range(seed: u64, index in 0usize..800) {
            let cfg = ShapesConfig { seed, ..Default::default() };
            let ds = Shapes::new(&cfg, Split::Train).unwrap();
            let (a, label) = ds.get(index).unwrap();
            prop_assert_eq!(&a, &ds.get(index).unwrap().0);
            prop_assert_eq!(label, (index % CLASSES.len()) as i64);
            prop_assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
            let other = Shapes::new(&cfg, Split::Test).unwrap().get(index).unwrap().0;
            prop_assert_ne!(a, other);
        }
    }

    #[test]
    fn every_shape_covers_a_distinct_area_of_the_unit_frame() {
        // Coverage of the [-1, 1]^2 frame: each class differs from every other.
        let area = |c: usize| {
            let n = 200;
            (0..n * n)
                .filter(|i| {
                    shape_covers(
                        c,
                        (i % n) as f32 / n as f32 * 2.0 - 1.0,
                        (i / n) as f32 / n as f32 * 2.0 - 1.0,
                    )
                })
                .count()
        };
        let areas: Vec<usize> = (0..CLASSES.len()).map(area).collect();
        for (i, a) in areas.iter().enumerate() {
            assert!(*a > 2000, "{} is almost empty", CLASSES[i]);
            for (j, b) in areas.iter().enumerate().skip(i + 1) {
                assert_ne!(a, b, "{} and {} cover the same area", CLASSES[i], CLASSES[j]);
            }
        }
    }

    #[test]
    fn config_errors_name_the_field() {
        let e = ShapesConfig { num_classes: 9, ..Default::default() }.validate().unwrap_err().to_string();
        assert!(e.contains("data.shapes.num_classes"), "{e}");
        let e = ShapesConfig { image_size: 4, ..Default::default() }.validate().unwrap_err().to_string();
        assert!(e.contains("data.shapes.image_size"), "{e}");
        assert!(Shapes::new(&ShapesConfig::default(), Split::Test).unwrap().get(10_000).is_err());
        for radius in [[0.0, 0.2], [0.3, 0.2], [0.2, 0.6]] {
            let e = ShapesConfig { radius, ..Default::default() }.validate().unwrap_err().to_string();
            assert!(e.contains("data.shapes.radius"), "{e}");
        }
        for count in [[0, 2], [3, 2]] {
            let e = ShapesConfig { count, ..Default::default() }.validate().unwrap_err().to_string();
            assert!(e.contains("data.shapes.count"), "{e}");
        }
        let e =
            ShapesConfig { max_rotation: 190.0, ..Default::default() }.validate().unwrap_err().to_string();
        assert!(e.contains("data.shapes.max_rotation"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn copies_are_counted_sized_and_inside_the_image(
            seed: u64, lo in 1usize..4, extra in 0usize..3, r0 in 0.05f32..0.3, dr in 0.0f32..0.2,
        ) {
            let cfg = ShapesConfig { seed, count: [lo, lo + extra], radius: [r0, r0 + dr], ..Default::default() };
            let ds = Shapes::new(&cfg, Split::Train).unwrap();
            let placed = ds.layout(&mut rng_for(seed, "test", &[]));
            let size = cfg.image_size as f32;
            prop_assert!((lo..=lo + extra).contains(&placed.len()));
            for p in &placed {
                prop_assert!(p.radius >= size * r0 - 1e-3 && p.radius <= size * (r0 + dr) + 1e-3);
                prop_assert!(p.cx - p.radius >= -1e-3 && p.cx + p.radius <= size + 1e-3);
                prop_assert!(p.cy - p.radius >= -1e-3 && p.cy + p.radius <= size + 1e-3);
            }
        }
    }

    #[test]
    fn default_images_show_separate_copies_of_the_shape() {
        let ds = Shapes::new(&ShapesConfig::default(), Split::Train).unwrap();
        let mut rng = rng_for(0, "test", &[]);
        let mut overlapping = 0;
        for _ in 0..500 {
            let placed = ds.layout(&mut rng);
            assert!((2..=4).contains(&placed.len()));
            let overlap =
                placed.iter().enumerate().any(|(i, a)| placed[i + 1..].iter().any(|b| a.overlaps(b)));
            overlapping += usize::from(overlap);
        }
        // Rejection sampling gives up after 32 tries (about 5% of the default images, where 4
        // large copies do not fit apart); that must stay the exception.
        assert!(overlapping <= 40, "{overlapping} of 500 images have overlapping copies");
    }
}
