//! A synthetic, modality-free end-to-end task: contrastive pretraining (SimCLR's NT-Xent) of an
//! MLP encoder on labelled Gaussian clusters, then probing. It exercises every part of the
//! trainer (loader, augmentations, objective, optimiser, checkpoints, evaluation) in seconds, and
//! serves as the demo and test bed until a modality method is chosen.
//!
//! The data: each class has a mean in a low-dimensional *content* space; a sample's content is
//! its class mean plus isotropic noise. An observation renders content and a random *nuisance*
//! vector (larger than the class signal) through fixed random linear maps and a `tanh`. Like
//! image augmentations, which change appearance but not identity, each view re-renders the
//! sample's content with fresh nuisance, then adds noise and zeroes random features. Pretraining
//! must therefore learn to ignore nuisance, which raw inputs do not: kNN on raw inputs is
//! dominated by it. Nothing here is tuned for accuracy; it shows that the machinery trains.

use serde::{Deserialize, Serialize};
use tch::{nn, Device, Tensor};

use crate::augment::{Augmentation, Compose, FeatureDropout, GaussianNoise, RandomApply};
use crate::blocks::{MlpHead, MlpHeadConfig};
use crate::data::{BatchBuilder, DataLoader, InMemoryDataset, LoaderConfig, RandomSampler};
use crate::encoder::Encoder;
use crate::error::{Error, Result};
use crate::loss::nt_xent_stacked;
use crate::objective::{LossOutput, Objective, StepContext};
use crate::rng::{normal, rng_for, SslRng};

/// The synthetic task and model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticConfig {
    /// Number of classes (clusters).
    pub num_classes: usize,
    /// Observed dimension.
    pub dim: usize,
    /// Dimension of the class-carrying latent space.
    pub latent_dim: usize,
    /// Distance scale between class means (latent units).
    pub class_spread: f32,
    /// Standard deviation of the nuisance directions (observed units).
    pub nuisance_std: f32,
    /// Training samples per class (labels unused by pretraining).
    pub train_per_class: usize,
    /// Held-out samples per class (probe test split).
    pub test_per_class: usize,
    /// Standard deviation of the view noise.
    pub view_noise_std: f32,
    /// Probability of zeroing each feature in a view (applied to half the views).
    pub view_dropout: f64,
    /// Encoder hidden and output width.
    pub repr_dim: i64,
    /// Projection head output width.
    pub proj_dim: i64,
    /// NT-Xent temperature.
    pub temperature: f64,
    /// Samples per batch.
    pub batch_size: usize,
    /// Seed for the data, the views and the initialisation.
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            num_classes: 10,
            dim: 64,
            latent_dim: 8,
            class_spread: 2.0,
            nuisance_std: 2.0,
            train_per_class: 500,
            test_per_class: 100,
            view_noise_std: 0.5,
            view_dropout: 0.2,
            repr_dim: 128,
            proj_dim: 64,
            temperature: 0.2,
            batch_size: 256,
            seed: 0,
        }
    }
}

impl SyntheticConfig {
    /// A very small task for tests and doc examples.
    pub fn tiny() -> Self {
        Self {
            num_classes: 3,
            dim: 8,
            latent_dim: 2,
            train_per_class: 16,
            test_per_class: 8,
            repr_dim: 16,
            proj_dim: 8,
            batch_size: 8,
            ..Self::default()
        }
    }

    /// Checks the fields; errors name them (`data.dim`).
    pub fn validate(&self) -> Result<()> {
        let bad = |f: &str, m: &str| Err(Error::config(format!("data.{f}"), m));
        if self.num_classes < 2 {
            return bad("num_classes", "must be at least 2");
        }
        if self.dim == 0 || self.latent_dim == 0 || self.latent_dim > self.dim {
            return bad("latent_dim", "must be between 1 and `dim`");
        }
        if self.train_per_class == 0 || self.test_per_class == 0 {
            return bad("train_per_class", "both splits need samples");
        }
        if self.repr_dim < 1 || self.proj_dim < 1 {
            return bad("repr_dim", "widths must be positive");
        }
        if self.temperature.is_nan() || self.temperature <= 0.0 {
            return bad("temperature", "must be positive");
        }
        if self.batch_size < 2 {
            return bad("batch_size", "contrastive learning needs at least 2 samples per batch");
        }
        Ok(())
    }
}

/// Labelled samples of one split.
#[derive(Debug, Clone)]
pub struct Split {
    /// The content vector of each sample (what views share).
    pub latents: Vec<Vec<f32>>,
    /// One rendered observation of each sample (what probes see).
    pub features: Vec<Vec<f32>>,
    /// Class of each vector.
    pub labels: Vec<i64>,
}

impl Split {
    /// `([N, dim] float tensor, [N] int64 labels)`.
    pub fn tensors(&self) -> (Tensor, Tensor) {
        let dim = self.features.first().map_or(0, Vec::len) as i64;
        let flat: Vec<f32> = self.features.iter().flatten().copied().collect();
        (Tensor::from_slice(&flat).view([-1, dim]), Tensor::from_slice(&self.labels))
    }
}

/// The fixed generative model of the task: class means and the rendering maps.
#[derive(Debug, Clone)]
pub struct World {
    means: Vec<Vec<f32>>,
    signal: Vec<Vec<f32>>,
    nuisance: Vec<Vec<f32>>,
    nuisance_std: f32,
}

fn gaussian(rng: &mut SslRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| normal(rng, scale)).collect()
}

fn matvec(m: &[Vec<f32>], v: &[f32]) -> Vec<f32> {
    m.iter().map(|row| row.iter().zip(v).map(|(a, b)| a * b).sum()).collect()
}

impl World {
    /// The world of `cfg` (a pure function of it).
    pub fn new(cfg: &SyntheticConfig) -> Result<Self> {
        cfg.validate()?;
        let mut rng = rng_for(cfg.seed, "synthetic-world", &[]);
        let means =
            (0..cfg.num_classes).map(|_| gaussian(&mut rng, cfg.latent_dim, cfg.class_spread)).collect();
        let nuisance_dims = (cfg.dim - cfg.latent_dim).max(1);
        let signal = (0..cfg.dim)
            .map(|_| gaussian(&mut rng, cfg.latent_dim, 1.0 / (cfg.latent_dim as f32).sqrt()))
            .collect();
        let nuisance = (0..cfg.dim)
            .map(|_| gaussian(&mut rng, nuisance_dims, 1.0 / (nuisance_dims as f32).sqrt()))
            .collect();
        Ok(Self { means, signal, nuisance, nuisance_std: cfg.nuisance_std })
    }

    /// Renders content `z` with a fresh nuisance draw: `tanh(S·z + N·u)`.
    pub fn render(&self, z: &[f32], rng: &mut SslRng) -> Vec<f32> {
        let u = gaussian(rng, self.nuisance.first().map_or(0, Vec::len), self.nuisance_std);
        matvec(&self.signal, z).iter().zip(matvec(&self.nuisance, &u)).map(|(s, n)| (s + n).tanh()).collect()
    }

    /// `per_class` labelled samples of every class, rendered once.
    pub fn sample(&self, per_class: usize, rng: &mut SslRng) -> Split {
        let n = per_class * self.means.len();
        let mut split = Split {
            latents: Vec::with_capacity(n),
            features: Vec::with_capacity(n),
            labels: Vec::with_capacity(n),
        };
        for i in 0..n {
            let c = i % self.means.len();
            let z: Vec<f32> = self.means[c]
                .iter()
                .zip(gaussian(rng, self.means[c].len(), 1.0))
                .map(|(m, e)| m + e)
                .collect();
            split.features.push(self.render(&z, rng));
            split.latents.push(z);
            split.labels.push(c as i64);
        }
        split
    }
}

/// Generates the train and test splits (a pure function of the config).
pub fn generate(cfg: &SyntheticConfig) -> Result<(Split, Split)> {
    let world = World::new(cfg)?;
    let mut rng = rng_for(cfg.seed, "synthetic-data", &[]);
    let train = world.sample(cfg.train_per_class, &mut rng);
    let test = world.sample(cfg.test_per_class, &mut rng);
    Ok((train, test))
}

/// Renders two views of each sample's content (fresh nuisance each), augments them, and
/// collates them into `[views1, views2]`.
pub struct TwoViews {
    world: World,
    aug: Compose<Vec<f32>>,
}

impl TwoViews {
    /// Views of `world` with the config's noise and dropout.
    pub fn new(world: World, cfg: &SyntheticConfig) -> Self {
        Self {
            world,
            aug: Compose::new(vec![
                Box::new(GaussianNoise::new(cfg.view_noise_std)) as Box<dyn Augmentation<Vec<f32>>>,
                Box::new(RandomApply::new(FeatureDropout::new(cfg.view_dropout), 0.5)),
            ]),
        }
    }
}

impl BatchBuilder<Vec<f32>> for TwoViews {
    type Sample = Vec<Vec<f32>>;
    type Batch = Vec<Tensor>;

    fn prepare(&self, content: Vec<f32>, rng: &mut SslRng) -> Result<Vec<Vec<f32>>> {
        Ok((0..2).map(|_| self.aug.apply(&self.world.render(&content, rng), rng)).collect())
    }

    fn collate(&self, samples: Vec<Vec<Vec<f32>>>) -> Result<Vec<Tensor>> {
        let dim = samples.first().and_then(|v| v.first()).map_or(0, Vec::len) as i64;
        Ok((0..2)
            .map(|v| {
                let flat: Vec<f32> = samples.iter().flat_map(|s| s[v].iter().copied()).collect();
                Tensor::from_slice(&flat).view([-1, dim])
            })
            .collect())
    }
}

/// An MLP encoder: `dim → repr → repr` with BatchNorm and ReLU on the hidden layer.
pub struct MlpEncoder {
    net: MlpHead,
    out: i64,
}

impl MlpEncoder {
    /// An encoder under `path`.
    pub fn new(path: nn::Path<'_>, in_dim: i64, repr_dim: i64) -> Result<Self> {
        let cfg = MlpHeadConfig { layers: 2, batch_norm: true, ..MlpHeadConfig::simclr(in_dim, repr_dim) };
        let cfg = MlpHeadConfig { hidden_dim: repr_dim, ..cfg };
        Ok(Self { net: MlpHead::new(path, &cfg)?, out: repr_dim })
    }
}

impl Encoder for MlpEncoder {
    fn output_dim(&self) -> i64 {
        self.out
    }
    fn encode(&self, input: &Tensor, train: bool) -> Tensor {
        self.net.forward_t(input, train)
    }
}

/// SimCLR's objective on vectors: encoder, projection head, NT-Xent between two views.
pub struct VectorSimclr {
    vs: nn::VarStore,
    encoder: MlpEncoder,
    head: MlpHead,
    temperature: f64,
}

impl VectorSimclr {
    /// A freshly initialised model on `device` (initialisation seeded by `cfg.seed`).
    pub fn new(cfg: &SyntheticConfig, device: Device) -> Result<Self> {
        cfg.validate()?;
        crate::rng::seed_torch(cfg.seed, "init", &[]);
        let vs = nn::VarStore::new(device);
        let encoder = MlpEncoder::new(vs.root() / "encoder", cfg.dim as i64, cfg.repr_dim)?;
        let head = MlpHead::new(vs.root() / "head", &MlpHeadConfig::simclr(cfg.repr_dim, cfg.proj_dim))?;
        Ok(Self { vs, encoder, head, temperature: cfg.temperature })
    }
}

impl Objective for VectorSimclr {
    type Batch = Vec<Tensor>;

    fn name(&self) -> &str {
        "synthetic"
    }

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn forward(&mut self, batch: &Vec<Tensor>, _ctx: &StepContext) -> Result<LossOutput> {
        let [a, b] = batch.as_slice() else {
            return Err(Error::invalid("batch", format!("expected 2 views, got {}", batch.len())));
        };
        let z = self.head.forward_t(&self.encoder.encode(&Tensor::cat(&[a, b], 0), true), true);
        nt_xent_stacked(&z, self.temperature)
    }

    fn encoder(&self) -> &dyn Encoder {
        &self.encoder
    }
}

/// The loader type of the synthetic task.
pub type SyntheticLoader = DataLoader<InMemoryDataset<Vec<f32>>, TwoViews, RandomSampler>;

/// The training loader and a fresh objective for `cfg` on `device`.
pub fn setup(cfg: &SyntheticConfig, device: Device) -> Result<(SyntheticLoader, VectorSimclr)> {
    let (train, _) = generate(cfg)?;
    let dataset = InMemoryDataset::new("synthetic train split", train.latents)?;
    let loader_cfg =
        LoaderConfig { batch_size: cfg.batch_size, drop_last: true, prefetch: 2, seed: cfg.seed };
    let loader = DataLoader::new(
        dataset,
        TwoViews::new(World::new(cfg)?, cfg),
        RandomSampler::new(cfg.seed),
        loader_cfg,
    )?;
    Ok((loader, VectorSimclr::new(cfg, device)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_a_pure_function_of_the_config() {
        let cfg = SyntheticConfig::tiny();
        let (a, at) = generate(&cfg).unwrap();
        let (b, _) = generate(&cfg).unwrap();
        assert_eq!(a.features, b.features);
        assert_eq!(a.labels.len(), 3 * 16);
        assert_eq!(at.labels.len(), 3 * 8);
        let (x, y) = a.tensors();
        assert_eq!(x.size(), vec![48, 8]);
        assert_eq!(y.size(), vec![48]);
        let other = generate(&SyntheticConfig { seed: 1, ..cfg }).unwrap().0;
        assert_ne!(a.features, other.features);
    }

    #[test]
    fn config_errors_name_the_field() {
        let e = SyntheticConfig { latent_dim: 100, ..SyntheticConfig::tiny() }.validate().unwrap_err();
        assert!(e.to_string().contains("data.latent_dim"), "{e}");
        let e = SyntheticConfig { batch_size: 1, ..SyntheticConfig::tiny() }.validate().unwrap_err();
        assert!(e.to_string().contains("data.batch_size"), "{e}");
    }
}
