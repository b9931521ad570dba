//! The example method: SimCLR's contrastive objective (Chen et al. 2020) on signals. The
//! encoder's representation goes through a projection head; NT-Xent pulls the two views of a
//! signal together and pushes the other signals of the batch away.

use ssl_core::blocks::{MlpHead, MlpHeadConfig};
use ssl_core::loss::nt_xent_stacked;
use ssl_core::tch::{nn, Device, Tensor};
use ssl_core::{Encoder, Error, LossOutput, Objective, Result, StepContext};

use crate::data::ToyConfig;
use crate::encoder::MlpEncoder;

/// Encoder, projection head and temperature, in one `VarStore`.
pub struct Contrastive {
    vs: nn::VarStore,
    encoder: MlpEncoder,
    head: MlpHead,
    temperature: f64,
}

impl Contrastive {
    /// A freshly initialised model on `device` (initialisation seeded by `cfg.seed`).
    pub fn new(cfg: &ToyConfig, device: Device) -> Result<Self> {
        cfg.validate()?;
        ssl_core::rng::seed_torch(cfg.seed, "init", &[]);
        let vs = nn::VarStore::new(device);
        let encoder = MlpEncoder::new(vs.root() / "encoder", cfg.length as i64, cfg.repr_dim)?;
        let head = MlpHead::new(vs.root() / "head", &MlpHeadConfig::simclr(cfg.repr_dim, cfg.proj_dim))?;
        Ok(Self { vs, encoder, head, temperature: cfg.temperature })
    }
}

impl Objective for Contrastive {
    type Batch = Vec<Tensor>;

    fn name(&self) -> &str {
        "@NAME@-contrastive"
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
