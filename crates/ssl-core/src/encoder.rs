//! The [`Encoder`] trait: what every evaluation (probe, kNN, fine-tune) needs from a model.

use tch::Tensor;

/// A network that maps a batch of inputs to one representation vector per input.
///
/// Inputs are a single tensor whose first dimension is the batch: images `[B, C, H, W]`, token
/// ids `[B, T]` (padding is recovered from the pad id), waveforms `[B, L]`, or plain feature
/// vectors `[B, D]`. The output is `[B, output_dim()]`, the representation probes are trained on
/// (for vision, the backbone output before any projection head, as in the SimCLR and MoCo papers).
///
/// `train` switches dropout and batch-norm statistics; evaluation always passes `false`.
///
/// ```
/// use ssl_core::{Encoder, tch::{nn, nn::Module, Device, Kind, Tensor}};
///
/// struct Linear(nn::Linear, i64);
/// impl Encoder for Linear {
///     fn output_dim(&self) -> i64 { self.1 }
///     fn encode(&self, input: &Tensor, _train: bool) -> Tensor { self.0.forward(input) }
/// }
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let enc = Linear(nn::linear(vs.root(), 8, 4, Default::default()), 4);
/// let z = enc.encode(&Tensor::zeros([3, 8], (Kind::Float, Device::Cpu)), false);
/// assert_eq!(z.size(), vec![3, enc.output_dim()]);
/// ```
pub trait Encoder {
    /// The size of each representation vector.
    fn output_dim(&self) -> i64;
    /// Encodes a batch: `[B, ...] -> [B, output_dim()]`.
    fn encode(&self, input: &Tensor, train: bool) -> Tensor;

    /// How many blocks deep the encoder is, for layer-wise learning-rate decay when
    /// fine-tuning (BEiT; MAE's fine-tuning recipe): 0, the default, for an encoder without
    /// such a stack, which makes the decay a no-op.
    fn num_layers(&self) -> usize {
        0
    }

    /// The layer of the variable `name` (its full name in the encoder's `VarStore`, any prefix
    /// included), for layer-wise learning-rate decay: 0 for the input embeddings, `i + 1` for
    /// block `i`, `num_layers() + 1` for what follows the last block. The default puts every
    /// variable on top.
    fn layer_id(&self, _name: &str) -> usize {
        self.num_layers() + 1
    }
}
