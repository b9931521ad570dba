//! Seeded synthetic data and a tiny encoder for the evaluation tests.

use rand_distr::{Distribution, StandardNormal};
use tch::{nn, nn::Module, Kind, Tensor};

use crate::rng::rng_for;
use crate::Encoder;

/// `classes` Gaussian blobs (unit variance) in `dim` dimensions, centred at `sep` times the
/// first `classes` basis vectors; `n_per_class` rows each, classes interleaved.
pub(crate) fn blobs(n_per_class: usize, classes: usize, dim: usize, sep: f32, seed: u64) -> (Tensor, Tensor) {
    assert!(classes <= dim);
    let mut rng = rng_for(seed, "blobs", &[]);
    let n = n_per_class * classes;
    let mut x = Vec::with_capacity(n * dim);
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % classes;
        for j in 0..dim {
            let noise: f32 = StandardNormal.sample(&mut rng);
            x.push(noise + if j == c { sep } else { 0.0 });
        }
        y.push(c as i64);
    }
    (Tensor::from_slice(&x).view([n as i64, dim as i64]), Tensor::from_slice(&y))
}

/// Standard-normal features with labels drawn independently of them (nothing to learn).
pub(crate) fn noise(n: usize, classes: usize, dim: usize, seed: u64) -> (Tensor, Tensor) {
    use rand::Rng;
    let mut rng = rng_for(seed, "noise", &[]);
    let x: Vec<f32> = (0..n * dim).map(|_| StandardNormal.sample(&mut rng)).collect();
    let y: Vec<i64> = (0..n).map(|_| rng.gen_range(0..classes as i64)).collect();
    (Tensor::from_slice(&x).view([n as i64, dim as i64]), Tensor::from_slice(&y))
}

/// `Linear -> ReLU -> Linear`, initialised from a host generator so that tests running in
/// parallel never race on libtorch's global seed.
pub(crate) struct TinyMlp {
    pub(crate) l1: nn::Linear,
    pub(crate) l2: nn::Linear,
    /// What `output_dim` reports (tests set it wrong on purpose).
    pub(crate) claimed_dim: i64,
    /// Report a layer structure (`w1`, `b1`: embeddings, layer 0; the rest on top, layer 2) for
    /// layer-wise learning-rate decay.
    pub(crate) layered: bool,
}

impl TinyMlp {
    pub(crate) fn new(p: &nn::Path<'_>, d_in: i64, hidden: i64, d_out: i64, seed: u64) -> Self {
        let mut rng = rng_for(seed, "tiny-mlp", &[]);
        let mut init = |name: &str, shape: &[i64], fan_in: i64| {
            let n: i64 = shape.iter().product();
            let scale = 1.0 / (fan_in as f32).sqrt();
            let v: Vec<f32> = (0..n)
                .map(|_| {
                    let z: f32 = StandardNormal.sample(&mut rng);
                    scale * z
                })
                .collect();
            p.var_copy(name, &Tensor::from_slice(&v).view(shape))
        };
        let l1 = nn::Linear { ws: init("w1", &[hidden, d_in], d_in), bs: Some(init("b1", &[hidden], d_in)) };
        let l2 =
            nn::Linear { ws: init("w2", &[d_out, hidden], hidden), bs: Some(init("b2", &[d_out], hidden)) };
        Self { l1, l2, claimed_dim: d_out, layered: false }
    }
}

impl Encoder for TinyMlp {
    fn output_dim(&self) -> i64 {
        self.claimed_dim
    }
    fn encode(&self, input: &Tensor, _train: bool) -> Tensor {
        self.l2.forward(&self.l1.forward(&input.to_kind(Kind::Float)).relu())
    }
    fn num_layers(&self) -> usize {
        usize::from(self.layered)
    }
    fn layer_id(&self, name: &str) -> usize {
        if name.ends_with("1") {
            0
        } else {
            self.num_layers() + 1
        }
    }
}
