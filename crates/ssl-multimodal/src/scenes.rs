//! The embedded default paired set: generated images of one coloured shape, each with a caption
//! that describes it, and held-out colour-shape combinations for zero-shot evaluation.
//!
//! An image shows one shape (disk, square, triangle, ...: ssl-vision's [`CLASSES`]) in one of
//! [`COLOURS`], `small` or `large`, at one of nine places (`top left` ... `bottom right`), on a
//! dark background of random tint, with pixel noise and a random rotation. Its caption says
//! some of that, in one of several phrasings ("a small red star at the top left", "the star is
//! red", ...): every caption names the colour and the shape, and some the size and place.
//!
//! **Held-out combinations.** Two shapes per colour never appear together in the training
//! split ([`ScenesConfig::held_out`]: colour `i` with shapes `i` and `i + 3`, so each colour
//! and each shape is held out twice). The zero-shot split shows only those combinations: a
//! model can name them only by composing a colour and a shape it learned apart, and with two
//! held-out shapes per colour and two colours per shape neither attribute alone is enough.
//!
//! Sample `i` of a split is a pure function of `(seed, split, i)`: nothing is stored.
//!
//! ```
//! use ssl_multimodal::scenes::{Scenes, ScenesConfig, SceneSplit};
//! let train = Scenes::new(&ScenesConfig::default(), SceneSplit::Train)?;
//! let (image, caption) = train.pair(7);
//! assert_eq!(image.dimensions(), (32, 32));
//! assert!(!caption.is_empty() && train.pair(7).1 == caption);
//! let zs = Scenes::new(&ScenesConfig::default(), SceneSplit::ZeroShot)?;
//! assert_eq!(zs.class_names().len(), 16); // the held-out combinations
//! # Ok::<(), ssl_core::Error>(())
//! ```

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use ssl_core::data::Dataset;
use ssl_core::rng::{normal, rng_for, SslRng};
use ssl_core::{Error, Result};
use ssl_vision::augment::Image;
use ssl_vision::shapes::{shape_covers, CLASSES};

/// The colour names and their RGB values, in order.
pub const COLOURS: &[(&str, [f32; 3])] = &[
    ("red", [0.9, 0.15, 0.1]),
    ("green", [0.15, 0.8, 0.2]),
    ("blue", [0.2, 0.35, 0.95]),
    ("yellow", [0.95, 0.9, 0.15]),
    ("purple", [0.6, 0.2, 0.8]),
    ("orange", [1.0, 0.55, 0.05]),
    ("white", [0.95, 0.95, 0.95]),
    ("cyan", [0.1, 0.85, 0.9]),
];

/// The nine places, row by row; `PLACES[3 * row + col]`.
pub const PLACES: [&str; 9] =
    ["top left", "top", "top right", "left", "centre", "right", "bottom left", "bottom", "bottom right"];

/// How a caption phrases the place: "at the top left", "in the centre".
fn place_phrase(place: usize) -> String {
    match PLACES[place] {
        "centre" => "in the centre".into(),
        "left" | "right" => format!("on the {}", PLACES[place]),
        p => format!("at the {p}"),
    }
}

/// The name of shape `class` in captions ("half_disk" reads "half disk").
pub fn shape_name(class: usize) -> String {
    CLASSES[class].replace('_', " ")
}

/// The size and make-up of the dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScenesConfig {
    /// Image side in pixels.
    pub image_size: u32,
    /// Training pairs (seen combinations only).
    pub train_pairs: usize,
    /// Held-out pairs of seen combinations, for retrieval.
    pub test_pairs: usize,
    /// Zero-shot images per held-out combination.
    pub zero_shot_per_class: usize,
    /// Standard deviation of the additive pixel noise.
    pub noise_std: f32,
    /// The seed the pairs derive from.
    pub seed: u64,
}

impl Default for ScenesConfig {
    fn default() -> Self {
        Self {
            image_size: 32,
            train_pairs: 50_000,
            test_pairs: 1_000,
            zero_shot_per_class: 50,
            noise_std: 0.04,
            seed: 0,
        }
    }
}

impl ScenesConfig {
    /// Checks the fields; errors name them (`data.scenes.image_size`).
    pub fn validate(&self) -> Result<()> {
        if self.image_size < 16 {
            return Err(Error::config("data.scenes.image_size", "must be at least 16 pixels"));
        }
        if self.train_pairs == 0 || self.test_pairs == 0 || self.zero_shot_per_class == 0 {
            return Err(Error::config(
                "data.scenes",
                "train_pairs, test_pairs and zero_shot_per_class must all be at least 1",
            ));
        }
        if !(0.0..=1.0).contains(&self.noise_std) {
            return Err(Error::config("data.scenes.noise_std", "must be in [0, 1]"));
        }
        Ok(())
    }

    /// Whether colour `colour` with shape `shape` is held out of training: shapes `colour` and
    /// `colour + 3` (mod the number of shapes) for each colour.
    pub fn held_out(colour: usize, shape: usize) -> bool {
        let n = CLASSES.len();
        shape == colour % n || shape == (colour + 3) % n
    }

    /// Every `(colour, shape)` combination with `held_out` equal to `held`, colour-major.
    pub fn combinations(held: bool) -> Vec<(usize, usize)> {
        (0..COLOURS.len())
            .flat_map(|c| (0..CLASSES.len()).map(move |s| (c, s)))
            .filter(|&(c, s)| Self::held_out(c, s) == held)
            .collect()
    }
}

/// Which split of the scenes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SceneSplit {
    /// Pretraining pairs, seen combinations.
    Train,
    /// Held-out pairs of seen combinations (retrieval).
    Test,
    /// Images of the held-out combinations, labelled by combination (zero-shot).
    ZeroShot,
}

/// What one scene shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scene {
    /// Index into [`COLOURS`].
    pub colour: usize,
    /// Index into ssl-vision's shape [`CLASSES`].
    pub shape: usize,
    /// Large (true) or small.
    pub large: bool,
    /// Index into [`PLACES`].
    pub place: usize,
}

impl Scene {
    /// The class name a zero-shot classifier uses: "red star".
    pub fn class_name(&self) -> String {
        format!("{} {}", COLOURS[self.colour].0, shape_name(self.shape))
    }

    /// A caption in one of the dataset's phrasings, drawn with `rng`.
    pub fn caption(&self, rng: &mut SslRng) -> String {
        let colour = COLOURS[self.colour].0;
        let shape = shape_name(self.shape);
        let size = if self.large { "large" } else { "small" };
        let place = place_phrase(self.place);
        match rng.gen_range(0..7) {
            0 => format!("a {size} {colour} {shape} {place}"),
            1 => format!("a {colour} {shape}"),
            2 => format!("there is a {colour} {shape} {place}"),
            3 => format!("the {shape} is {colour}"),
            4 => format!("a {size} {shape} coloured {colour}"),
            5 => format!("{place} , a {colour} {shape}"),
            _ => format!("a picture of a {size} {colour} {shape}"),
        }
    }
}

/// The prompt templates zero-shot classification averages over for this dataset (`{}` is the
/// class name).
pub const TEMPLATES: &[&str] =
    &["a {}", "a small {}", "a large {}", "there is a {} in the centre", "a picture of a {}"];

/// One split of the scenes.
#[derive(Debug, Clone)]
pub struct Scenes {
    config: ScenesConfig,
    split: SceneSplit,
    combos: Vec<(usize, usize)>,
}

impl Scenes {
    /// The `split` of the dataset `config` describes.
    pub fn new(config: &ScenesConfig, split: SceneSplit) -> Result<Self> {
        config.validate()?;
        let combos = ScenesConfig::combinations(split == SceneSplit::ZeroShot);
        Ok(Self { config: config.clone(), split, combos })
    }

    /// The combination names, in label order: the zero-shot classes.
    pub fn class_names(&self) -> Vec<String> {
        self.combos
            .iter()
            .map(|&(colour, shape)| Scene { colour, shape, large: false, place: 0 }.class_name())
            .collect()
    }

    fn rng(&self, index: usize, what: &str) -> SslRng {
        let split = match self.split {
            SceneSplit::Train => 0,
            SceneSplit::Test => 1,
            SceneSplit::ZeroShot => 2,
        };
        rng_for(self.config.seed, what, &[split, index as u64])
    }

    /// What sample `index` shows, and its label (the combination's index in
    /// [`class_names`](Self::class_names)).
    pub fn scene(&self, index: usize) -> (Scene, i64) {
        let mut rng = self.rng(index, "scenes");
        let label = match self.split {
            SceneSplit::ZeroShot => index % self.combos.len(),
            _ => rng.gen_range(0..self.combos.len()),
        };
        let (colour, shape) = self.combos[label];
        let scene = Scene { colour, shape, large: rng.gen(), place: rng.gen_range(0..PLACES.len()) };
        (scene, label as i64)
    }

    /// The caption of sample `index`.
    pub fn caption(&self, index: usize) -> String {
        self.scene(index).0.caption(&mut self.rng(index, "scenes-caption"))
    }

    /// Sample `index`'s image and caption.
    pub fn pair(&self, index: usize) -> (Image, String) {
        (self.render(index), self.caption(index))
    }

    /// Draws sample `index`'s image.
    pub fn render(&self, index: usize) -> Image {
        let (scene, _) = self.scene(index);
        let mut rng = self.rng(index, "scenes-pixels");
        let size = self.config.image_size as f32;
        let cell = size / 3.0;
        let radius = size * if scene.large { rng.gen_range(0.17..0.21) } else { rng.gen_range(0.1..0.13) };
        let jitter = cell * 0.15;
        let (row, col) = ((scene.place / 3) as f32, (scene.place % 3) as f32);
        let cx = ((col + 0.5) * cell + rng.gen_range(-jitter..=jitter)).clamp(radius, size - radius);
        let cy = ((row + 0.5) * cell + rng.gen_range(-jitter..=jitter)).clamp(radius, size - radius);
        let (sin, cos) = rng.gen_range(0.0..std::f32::consts::TAU).sin_cos();
        let mut background = [0.0f32; 3];
        let base = rng.gen_range(0.05..0.3f32);
        for b in &mut background {
            *b = (base + rng.gen_range(-0.05..0.05f32)).clamp(0.0, 1.0);
        }
        let mut foreground = COLOURS[scene.colour].1;
        let shade = rng.gen_range(0.85..1.0f32);
        foreground.iter_mut().for_each(|v| *v *= shade);
        let mut img = Image::new(self.config.image_size, self.config.image_size);
        for (x, y, p) in img.enumerate_pixels_mut() {
            let mut cover = 0.0;
            for (dx, dy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
                let (px, py) = ((x as f32 + dx - cx) / radius, (y as f32 + dy - cy) / radius);
                if shape_covers(scene.shape, cos * px + sin * py, -sin * px + cos * py) {
                    cover += 0.25;
                }
            }
            let noise: [f32; 3] = [0, 1, 2].map(|_| normal(&mut rng, 1.0) * self.config.noise_std);
            p.0 = [0, 1, 2]
                .map(|k| (cover * foreground[k] + (1.0 - cover) * background[k] + noise[k]).clamp(0.0, 1.0));
        }
        img
    }

    /// Every caption of the split, for training a tokenizer.
    pub fn captions(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.len()).map(|i| self.caption(i))
    }

    /// Shuffled indices of the split (for sub-sampling).
    pub fn shuffled(&self, seed: u64) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.len()).collect();
        idx.shuffle(&mut rng_for(seed, "scenes-shuffle", &[]));
        idx
    }
}

impl Dataset for Scenes {
    /// The image and its caption.
    type Item = (Image, String);

    fn len(&self) -> usize {
        match self.split {
            SceneSplit::Train => self.config.train_pairs,
            SceneSplit::Test => self.config.test_pairs,
            SceneSplit::ZeroShot => self.config.zero_shot_per_class * self.combos.len(),
        }
    }

    fn get(&self, index: usize) -> Result<(Image, String)> {
        if index >= self.len() {
            return Err(Error::data("scenes", format!("index {index} out of range (len {})", self.len())));
        }
        Ok(self.pair(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn held_out_combinations_cover_each_colour_and_shape_twice() {
        let held = ScenesConfig::combinations(true);
        assert_eq!(held.len(), 2 * COLOURS.len());
        for c in 0..COLOURS.len() {
            assert_eq!(held.iter().filter(|h| h.0 == c).count(), 2);
        }
        for s in 0..CLASSES.len() {
            assert_eq!(held.iter().filter(|h| h.1 == s).count(), 2);
        }
        assert_eq!(ScenesConfig::combinations(false).len(), COLOURS.len() * CLASSES.len() - held.len());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn pairs_are_deterministic_and_truthful(seed: u64, index in 0usize..2000) {
            let cfg = ScenesConfig { seed, ..Default::default() };
            for split in [SceneSplit::Train, SceneSplit::Test, SceneSplit::ZeroShot] {
                let ds = Scenes::new(&cfg, split).unwrap();
                let index = index % ds.len();
                let (img, caption) = ds.get(index).unwrap();
                prop_assert_eq!(&img, &ds.get(index).unwrap().0);
                prop_assert!(img.iter().all(|v| (0.0..=1.0).contains(v)));
                let (scene, label) = ds.scene(index);
                // Seen combinations only in training; the label names the combination.
                prop_assert_eq!(ScenesConfig::held_out(scene.colour, scene.shape), split == SceneSplit::ZeroShot);
                prop_assert_eq!(&ds.class_names()[label as usize], &scene.class_name());
                // The caption names the colour and the shape.
                prop_assert!(caption.contains(COLOURS[scene.colour].0), "{}", caption);
                prop_assert!(caption.contains(&shape_name(scene.shape)), "{}", caption);
            }
        }
    }

    #[test]
    fn the_shape_is_drawn_where_the_caption_says() {
        let ds =
            Scenes::new(&ScenesConfig { noise_std: 0.0, ..Default::default() }, SceneSplit::Train).unwrap();
        for index in 0..200 {
            let (scene, _) = ds.scene(index);
            let img = ds.render(index);
            // The centroid of the foreground-coloured pixels lies in the named third.
            let fg = COLOURS[scene.colour].1;
            let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
            for (x, y, p) in img.enumerate_pixels() {
                let d: f32 = (0..3).map(|k| (p.0[k] - fg[k] * 0.92).abs()).sum();
                if d < 0.3 {
                    sx += x as f32;
                    sy += y as f32;
                    n += 1.0;
                }
            }
            assert!(n >= 3.0, "sample {index}: shape not visible: {scene:?}");
            let third = |v: f32| ((v / n + 0.5) / (32.0 / 3.0)).floor().clamp(0.0, 2.0) as usize;
            assert_eq!(3 * third(sy) + third(sx), scene.place, "sample {index}: {scene:?}");
        }
    }

    #[test]
    fn config_errors_name_the_field() {
        let e = ScenesConfig { image_size: 8, ..Default::default() }.validate().unwrap_err().to_string();
        assert!(e.contains("data.scenes.image_size"), "{e}");
        let e = ScenesConfig { test_pairs: 0, ..Default::default() }.validate().unwrap_err().to_string();
        assert!(e.contains("data.scenes"), "{e}");
        let ds = Scenes::new(&ScenesConfig::default(), SceneSplit::Test).unwrap();
        assert!(ds.get(1000).is_err());
    }
}
