//! Rotation prediction (RotNet): "Unsupervised Representation Learning by Predicting Image
//! Rotations" (Gidaris, Singh, Komodakis, ICLR 2018).
//!
//! Every image of a batch is presented at the four rotations 0°, 90°, 180° and 270° (all four
//! in the same batch, the paper's best setting), and a linear classifier on the backbone's
//! representation predicts which rotation it sees (4-way cross-entropy). Telling upright from
//! rotated needs the orientation of objects, hence their shape. The representation probed is
//! the backbone's output.
//!
//! ```
//! use ssl_core::{Objective, StepContext};
//! use ssl_core::tch::{Device, Kind, Tensor};
//! use ssl_vision::backbone::ResNetConfig;
//! use ssl_vision::rotation::{Rotation, RotationConfig};
//! ssl_core::tch::manual_seed(0); // the initial weights and inputs are random: fix them
//! let mut model = Rotation::new(&RotationConfig { backbone: ResNetConfig::tiny() }, Device::Cpu)?;
//! let ctx = StepContext { step: 0, total_steps: 1, micro_step: 0, device: Device::Cpu };
//! let out = model.forward(&vec![Tensor::randn([2, 3, 16, 16], (Kind::Float, Device::Cpu))], &ctx)?;
//! let loss = out.loss.double_value(&[]);
//! assert!(loss.is_finite() && (loss - 4f64.ln()).abs() < 1.0); // near chance (ln 4) at init
//! # Ok::<(), ssl_core::Error>(())
//! ```

use serde::{Deserialize, Serialize};
use ssl_core::error::TorchResultExt;
use ssl_core::{Encoder, Error, LossOutput, Objective, Result, StepContext};
use tch::{nn, nn::Module, Device, Kind, Tensor};

use crate::backbone::{ResNet, ResNetConfig};

/// The number of rotation classes (0°, 90°, 180°, 270°).
pub const ROTATIONS: i64 = 4;

/// The rotation-prediction model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RotationConfig {
    /// The encoder.
    pub backbone: ResNetConfig,
}

impl Default for RotationConfig {
    fn default() -> Self {
        Self { backbone: ResNetConfig { small_images: true, ..ResNetConfig::resnet18() } }
    }
}

/// The four rotations of `images: [B, C, S, S]` stacked as `[4B, C, S, S]` (rotation `k` of
/// every image in block `k`, counter-clockwise by `k · 90°`), with the labels `[4B]`.
///
/// ```
/// use ssl_core::tch::{Device, Kind, Tensor};
/// use ssl_vision::rotation::rotations;
/// let x = Tensor::arange(4, (Kind::Float, Device::Cpu)).view([1, 1, 2, 2]); // [[0, 1], [2, 3]]
/// let (r, y) = rotations(&x)?;
/// assert_eq!(Vec::<f32>::try_from(r.get(1).flatten(0, -1)).unwrap(), [1.0, 3.0, 0.0, 2.0]);
/// assert_eq!(Vec::<i64>::try_from(&y).unwrap(), [0, 1, 2, 3]);
/// # Ok::<(), ssl_core::Error>(())
/// ```
pub fn rotations(images: &Tensor) -> Result<(Tensor, Tensor)> {
    let size = images.size();
    if size.len() != 4 || size[2] != size[3] {
        return Err(Error::shape("images", "[B, C, S, S] (square)", &size));
    }
    let b = size[0];
    let rotated: Vec<Tensor> =
        (0..ROTATIONS).map(|k| images.f_rot90(k, [2, 3])).collect::<Result<_, _>>().torch_context("rot90")?;
    let x = Tensor::f_cat(&rotated, 0).torch_context("rotations")?;
    let y = Tensor::f_arange(ROTATIONS, (Kind::Int64, images.device()))
        .and_then(|r| r.f_repeat_interleave_self_int(b, 0, None))
        .torch_context("rotation labels")?;
    Ok((x, y))
}

/// A backbone and a 4-way linear rotation classifier.
pub struct Rotation {
    vs: nn::VarStore,
    backbone: ResNet,
    classifier: nn::Linear,
}

impl Rotation {
    /// A freshly initialised model on `device` (seed libtorch first for a reproducible init).
    pub fn new(cfg: &RotationConfig, device: Device) -> Result<Self> {
        cfg.backbone.validate()?;
        let vs = nn::VarStore::new(device);
        let backbone = ResNet::new(vs.root() / "backbone", &cfg.backbone)?;
        let classifier =
            nn::linear(vs.root() / "fc", cfg.backbone.output_dim(), ROTATIONS, Default::default());
        Ok(Self { vs, backbone, classifier })
    }
}

impl Objective for Rotation {
    /// `[images]`: one augmented view; the rotations are made here.
    type Batch = Vec<Tensor>;

    fn name(&self) -> &str {
        "rotation"
    }

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn forward(&mut self, batch: &Vec<Tensor>, _ctx: &StepContext) -> Result<LossOutput> {
        let images = crate::views::one_view(batch, "rotation prediction")?;
        let (x, y) = rotations(images)?;
        let logits = self.classifier.forward(&self.backbone.f_forward_t(&x, true)?);
        let loss = logits
            .f_cross_entropy_loss::<Tensor>(&y, None, tch::Reduction::Mean, -100, 0.0)
            .torch_context("cross-entropy")?;
        let acc =
            tch::no_grad(|| logits.argmax(1, false).eq_tensor(&y).to_kind(Kind::Float).mean(Kind::Float));
        Ok(LossOutput::new(loss).with_metric("pretext_acc", &acc))
    }

    fn encoder(&self) -> &dyn Encoder {
        &self.backbone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn four_quarter_turns_are_the_identity_and_labels_follow_blocks(b in 1i64..4, s in 1i64..6) {
            let x = Tensor::randn([b, 3, s, s], (Kind::Float, Device::Cpu));
            let (r, y) = rotations(&x).unwrap();
            prop_assert_eq!(r.size(), vec![4 * b, 3, s, s]);
            prop_assert!(r.narrow(0, 0, b).equal(&x));
            // Rotating block k by another 4 - k quarter turns gives the input back.
            for k in 1..4 {
                prop_assert!(r.narrow(0, k * b, b).rot90(4 - k, [2, 3]).equal(&x));
            }
            let expected = Tensor::arange(4, (Kind::Int64, Device::Cpu)).repeat_interleave_self_int(b, 0, None);
            prop_assert!(y.equal(&expected));
        }
    }

    #[test]
    fn tiny_pretraining_runs_end_to_end() {
        tch::manual_seed(0);
        let mut model =
            Rotation::new(&RotationConfig { backbone: ResNetConfig::tiny() }, Device::Cpu).unwrap();
        let views = crate::augment::presets::rotation(16);
        crate::testutil::tiny_pretrain_and_probe(&mut model, views, 3e-3, 40, Some("pretext_acc"));
    }

    #[test]
    fn learns_to_tell_rotations_of_an_asymmetric_pattern() {
        tch::manual_seed(0);
        let mut model =
            Rotation::new(&RotationConfig { backbone: ResNetConfig::tiny() }, Device::Cpu).unwrap();
        let opt_vars = model.var_store();
        let mut opt = nn::OptimizerConfig::build(nn::adam(0.9, 0.999, 0.0), opt_vars, 1e-2).unwrap();
        // A bright top-left corner block in every image: its rotation is obvious.
        let x = Tensor::randn([8, 3, 8, 8], (Kind::Float, Device::Cpu)) * 0.1;
        let _ = x.narrow(2, 0, 3).narrow(3, 0, 3).fill_(2.0);
        let ctx = StepContext { step: 0, total_steps: 1, micro_step: 0, device: Device::Cpu };
        let mut acc = 0.0;
        for _ in 0..40 {
            let out = model.forward(&vec![x.shallow_clone()], &ctx).unwrap();
            opt.backward_step(&out.loss);
            acc = out.metrics[0].1.double_value(&[]);
        }
        assert!(acc > 0.9, "rotation accuracy {acc}");
        assert!(rotations(&Tensor::zeros([1, 3, 4, 5], (Kind::Float, Device::Cpu))).is_err());
    }
}
