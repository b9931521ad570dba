//! The online/target ("query/key", "student/teacher") network pair that MoCo v2, MoCo v3 and
//! BYOL share: a backbone and a projection head under `online.*`, an identical copy under
//! `target.*` that receives no gradient and follows the online weights by exponential moving
//! average ([`Ema`], BatchNorm statistics included).

use ssl_core::blocks::{Ema, MlpHead, MlpHeadConfig};
use ssl_core::{Encoder, Result};
use tch::{nn, Tensor};

use crate::backbone::{ResNet, ResNetConfig};

/// A backbone followed by a projection head.
pub(crate) struct Branch {
    pub(crate) backbone: ResNet,
    pub(crate) projector: MlpHead,
}

impl Branch {
    fn new(path: nn::Path<'_>, backbone: &ResNetConfig, projector: &MlpHeadConfig) -> Result<Self> {
        Ok(Self {
            backbone: ResNet::new(&path / "backbone", backbone)?,
            projector: MlpHead::new(&path / "projector", projector)?,
        })
    }

    /// Projections `[B, out]` of images `[B, 3, H, W]`.
    pub(crate) fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.projector.f_forward_t(&self.backbone.f_forward_t(x, train)?, train)
    }
}

/// The online branch, its moving-average target, and the pairing between them.
pub(crate) struct MomentumPair {
    pub(crate) online: Branch,
    target: Branch,
    ema: Ema,
}

impl MomentumPair {
    /// Both branches in `vs` (the target a copy of the freshly initialised online branch).
    pub(crate) fn new(vs: &nn::VarStore, backbone: &ResNetConfig, projector: &MlpHeadConfig) -> Result<Self> {
        let online = Branch::new(vs.root() / "online", backbone, projector)?;
        let target = Branch::new(vs.root() / "target", backbone, projector)?;
        let ema = Ema::from_prefixes(vs, "online", "target")?;
        ema.copy_online_to_target()?;
        Ok(Self { online, target, ema })
    }

    /// The target's projections, without gradient. The target runs in training mode, as in
    /// the references: its BatchNorm normalises with the batch's statistics.
    pub(crate) fn target_forward(&self, x: &Tensor) -> Result<Tensor> {
        tch::no_grad(|| self.target.forward(x, true))
    }

    /// The target's projections of `x` computed in `splits` chunks of a random permutation of
    /// the (global) batch, returned in the original order: MoCo's "shuffling BN" (He et al.
    /// 2020, §3.3), across processes in a data-parallel job ([`ssl_core::dist::apply_shuffled`]).
    /// Each chunk's BatchNorm sees a different random subset of the batch, so a key is never
    /// normalised with the statistics its query was normalised with, and the model cannot
    /// match them through batch statistics. `splits <= 1` is a plain forward.
    pub(crate) fn target_forward_shuffled(&self, x: &Tensor, splits: usize) -> Result<Tensor> {
        tch::no_grad(|| ssl_core::dist::apply_shuffled(x, splits, |chunk| self.target.forward(chunk, true)))
    }

    /// `target = m · target + (1 - m) · online`.
    pub(crate) fn update(&self, momentum: f64) -> Result<()> {
        self.ema.update(momentum)
    }

    /// The online backbone: the encoder evaluation probes.
    pub(crate) fn encoder(&self) -> &dyn Encoder {
        &self.online.backbone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn shuffled_chunks_come_back_in_the_original_order() {
        tch::manual_seed(3);
        let x = Tensor::randn([10, 4], (Kind::Float, Device::Cpu));
        let same = ssl_core::dist::apply_shuffled(&x, 3, |c| Ok(c.copy())).unwrap();
        assert!(same.equal(&x));
        // Per-chunk centring really works per chunk: each chunk's rows sum to zero.
        let centred =
            ssl_core::dist::apply_shuffled(&x, 2, |c| Ok(c - c.mean_dim(0, true, Kind::Float))).unwrap();
        assert_eq!(centred.size(), x.size());
        assert!(centred.sum(Kind::Float).abs().double_value(&[]) < 1e-4);
        assert!(!centred.allclose(&(&x - x.mean_dim(0, true, Kind::Float)), 1e-5, 1e-6, false));
    }
}
