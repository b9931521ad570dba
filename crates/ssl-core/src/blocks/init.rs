//! Weight initialisers that overwrite an existing tensor in place.
//!
//! They run under [`tch::no_grad`], so they apply to variables already registered in a
//! [`VarStore`](tch::nn::VarStore) (leaf tensors that require grad): build the layer with any
//! initialiser, then re-initialise its weights with the scheme the reference implementation uses.
//!
//! Fans follow PyTorch's `torch.nn.init`: for a weight of shape `[out, in, k...]` (the layout tch
//! and PyTorch use for `Linear` and convolutions), `fan_in = in * prod(k)` and
//! `fan_out = out * prod(k)`.
//!
//! ```
//! use ssl_core::blocks::init;
//! use ssl_core::tch::{nn, Device};
//!
//! let vs = nn::VarStore::new(Device::Cpu);
//! let mut fc = nn::linear(vs.root() / "fc", 8, 4, Default::default());
//! init::trunc_normal_(&mut fc.ws, init::BERT_INIT_STD)?;
//! if let Some(b) = fc.bs.as_mut() {
//!     init::zeros_(b)?;
//! }
//! assert!(fc.ws.abs().max().double_value(&[]) <= 2.0 * init::BERT_INIT_STD);
//! # Ok::<(), ssl_core::Error>(())
//! ```

use std::f64::consts::SQRT_2;

use tch::{Kind, TchError, Tensor};

use crate::error::{Error, Result, TorchResultExt};

/// Standard deviation of the normal weight initialisation in BERT (`initializer_range = 0.02`),
/// GPT-2 (`initializer_range = 0.02`) and ViT/DeiT in timm (`trunc_normal_(std=.02)`).
pub const BERT_INIT_STD: f64 = 0.02;

/// Where [`trunc_normal_`] cuts the distribution, in standard deviations (±2, as TensorFlow's
/// `truncated_normal` and the JAX ViT code do).
pub const TRUNCATION_STDS: f64 = 2.0;

/// `erf(√2)`: the probability mass of a standard normal inside ±2.
const ERF_SQRT_2: f64 = 0.954_499_736_103_641_6;

/// Runs an in-place libtorch operation on `t` without recording it for autograd.
fn in_place(t: &mut Tensor, what: &str, op: impl FnOnce(&mut Tensor) -> Result<(), TchError>) -> Result<()> {
    tch::no_grad(|| op(t)).torch_context(what)
}

fn check_std(std: f64) -> Result<()> {
    if std.is_finite() && std >= 0.0 {
        Ok(())
    } else {
        Err(Error::invalid("std", format!("must be finite and non-negative, got {std}")))
    }
}

fn check_floating(t: &Tensor, what: &str) -> Result<()> {
    if t.is_floating_point() {
        Ok(())
    } else {
        Err(Error::invalid(what, format!("needs a floating-point tensor, got {:?}", t.kind())))
    }
}

/// `(fan_in, fan_out)` of a weight of shape `[out, in, k...]`, as `torch.nn.init` computes them.
///
/// ```
/// use ssl_core::blocks::init::fans;
/// assert_eq!(fans(&[4, 8]).unwrap(), (8, 4)); // Linear(8 -> 4) stores [out, in]
/// assert_eq!(fans(&[16, 3, 3, 3]).unwrap(), (27, 144)); // Conv2d(3 -> 16, 3x3)
/// assert!(fans(&[5]).is_err());
/// ```
pub fn fans(shape: &[i64]) -> Result<(i64, i64)> {
    if shape.len() < 2 {
        return Err(Error::shape("weight", "at least 2 dimensions ([out, in, ...])", shape));
    }
    let receptive: i64 = shape[2..].iter().product();
    Ok((shape[1] * receptive, shape[0] * receptive))
}

/// Fills `t` with samples of `N(0, std²)`.
///
/// ```
/// use ssl_core::blocks::init::normal_;
/// use ssl_core::tch::{Device, Kind, Tensor};
/// let mut t = Tensor::zeros([1000], (Kind::Float, Device::Cpu));
/// normal_(&mut t, 0.5)?;
/// assert!(t.std(true).double_value(&[]) > 0.4);
/// # Ok::<(), ssl_core::Error>(())
/// ```
pub fn normal_(t: &mut Tensor, std: f64) -> Result<()> {
    check_std(std)?;
    check_floating(t, "normal_")?;
    in_place(t, "normal_", |t| t.f_normal_(0.0, std).map(drop))
}

/// Fills `t` with samples of `N(0, std²)` truncated to `[-2 std, 2 std]` (a true truncated
/// normal, not clipped samples).
///
/// The cut is relative to `std`, as in TensorFlow's `truncated_normal`, the JAX ViT code and
/// timm's `trunc_normal_tf_`. (timm's plain `trunc_normal_` cuts at the absolute values ±2, which
/// for `std = 0.02` leaves the distribution practically untruncated.) Sampling is by inverse CDF:
/// uniform on `[Φ(-2), Φ(2)]`, mapped through `√2 · erfinv(2u - 1)`; values are drawn in `f32`
/// (`f64` for double tensors) and cast to the kind of `t`.
///
/// ```
/// use ssl_core::blocks::init::trunc_normal_;
/// use ssl_core::tch::{Device, Kind, Tensor};
/// let mut t = Tensor::zeros([1000], (Kind::Float, Device::Cpu));
/// trunc_normal_(&mut t, 0.02)?;
/// assert!(t.abs().max().double_value(&[]) <= 0.04);
/// # Ok::<(), ssl_core::Error>(())
/// ```
pub fn trunc_normal_(t: &mut Tensor, std: f64) -> Result<()> {
    check_std(std)?;
    check_floating(t, "trunc_normal_")?;
    let kind = if t.kind() == Kind::Double { Kind::Double } else { Kind::Float };
    let bound = TRUNCATION_STDS * std;
    in_place(t, "trunc_normal_", |t| {
        let samples = Tensor::f_empty(t.size(), (kind, t.device()))?
            .f_uniform_(-ERF_SQRT_2, ERF_SQRT_2)?
            .f_erfinv()?
            .f_mul_scalar(SQRT_2 * std)?
            // erfinv of a value rounded to ±ERF_SQRT_2 can land a hair outside the bound.
            .f_clamp(-bound, bound)?;
        t.f_copy_(&samples)
    })
}

/// Xavier/Glorot uniform: `U(-a, a)` with `a = √(6 / (fan_in + fan_out))` (gain 1).
///
/// MAE and the JAX ViT initialise every `Linear` this way. Errors when `t` has fewer than two
/// dimensions, since fans are then undefined.
///
/// ```
/// use ssl_core::blocks::init::xavier_uniform_;
/// use ssl_core::tch::{Device, Kind, Tensor};
/// let mut w = Tensor::zeros([4, 8], (Kind::Float, Device::Cpu)); // Linear(8 -> 4)
/// xavier_uniform_(&mut w)?;
/// let bound = (6.0f64 / (8.0 + 4.0)).sqrt(); // fan_in 8, fan_out 4
/// assert!(w.abs().max().double_value(&[]) <= bound + 1e-6);
/// # Ok::<(), ssl_core::Error>(())
/// ```
pub fn xavier_uniform_(t: &mut Tensor) -> Result<()> {
    check_floating(t, "xavier_uniform_")?;
    let (fan_in, fan_out) = fans(&t.size())?;
    if fan_in + fan_out == 0 {
        return Ok(()); // empty tensor: nothing to fill
    }
    let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
    in_place(t, "xavier_uniform_", |t| t.f_uniform_(-bound, bound).map(drop))
}

/// Kaiming/He normal for ReLU networks: `N(0, 2 / fan_in)` (gain √2, fan-in mode).
///
/// ```
/// use ssl_core::blocks::init::kaiming_normal_;
/// use ssl_core::tch::{Device, Kind, Tensor};
/// let mut w = Tensor::zeros([64, 32], (Kind::Float, Device::Cpu));
/// kaiming_normal_(&mut w)?;
/// assert!((w.std(true).double_value(&[]) - 0.25).abs() < 0.03); // √(2 / 32)
/// # Ok::<(), ssl_core::Error>(())
/// ```
pub fn kaiming_normal_(t: &mut Tensor) -> Result<()> {
    check_floating(t, "kaiming_normal_")?;
    let (fan_in, _) = fans(&t.size())?;
    if fan_in == 0 {
        return Ok(());
    }
    let std = SQRT_2 / (fan_in as f64).sqrt();
    in_place(t, "kaiming_normal_", |t| t.f_normal_(0.0, std).map(drop))
}

/// Fills `t` with zeros (biases, LayerNorm shifts).
///
/// ```
/// use ssl_core::blocks::init::zeros_;
/// use ssl_core::tch::{Device, Kind, Tensor};
/// let mut b = Tensor::ones([3], (Kind::Float, Device::Cpu));
/// zeros_(&mut b)?;
/// assert_eq!(b.sum(Kind::Float).double_value(&[]), 0.0);
/// # Ok::<(), ssl_core::Error>(())
/// ```
pub fn zeros_(t: &mut Tensor) -> Result<()> {
    in_place(t, "zeros_", |t| t.f_zero_().map(drop))
}

/// Fills `t` with ones (LayerNorm and BatchNorm scales).
///
/// ```
/// use ssl_core::blocks::init::ones_;
/// use ssl_core::tch::{Device, Kind, Tensor};
/// let mut g = Tensor::zeros([3], (Kind::Float, Device::Cpu));
/// ones_(&mut g)?;
/// assert_eq!(g.sum(Kind::Float).double_value(&[]), 3.0);
/// # Ok::<(), ssl_core::Error>(())
/// ```
pub fn ones_(t: &mut Tensor) -> Result<()> {
    in_place(t, "ones_", |t| t.f_fill_(1.0).map(drop))
}

/// GPT-2's scaled initialisation of residual output projections: `base_std / √(2 · num_layers)`.
///
/// GPT-2 (Radford et al., 2019, §2.3) scales the weights of residual layers by `1/√N`, with `N` the
/// number of residual layers; each transformer block adds two (attention and MLP), hence
/// `2 · num_layers` for `num_layers` blocks. `num_layers = 0` is treated as 1.
///
/// ```
/// use ssl_core::blocks::init::{scaled_residual_std, BERT_INIT_STD};
/// assert!((scaled_residual_std(BERT_INIT_STD, 12) - 0.02 / 24f64.sqrt()).abs() < 1e-15);
/// ```
pub fn scaled_residual_std(base_std: f64, num_layers: usize) -> f64 {
    base_std / (2.0 * num_layers.max(1) as f64).sqrt()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;
    use tch::{nn, Device};

    fn zeros(shape: &[i64]) -> Tensor {
        Tensor::zeros(shape, (Kind::Float, Device::Cpu))
    }

    fn std_of(t: &Tensor) -> f64 {
        t.std(true).double_value(&[])
    }

    #[test]
    fn constants_are_pinned() {
        assert_eq!(BERT_INIT_STD, 0.02);
        assert_eq!(TRUNCATION_STDS, 2.0);
        // erf(√2) = 1 - 2 Φ(-2), with Φ(-2) = 0.0227501319...
        assert!((ERF_SQRT_2 - (1.0 - 2.0 * 0.022_750_131_948_179_2)).abs() < 1e-15);
    }

    #[test]
    fn scaled_residual_std_is_pinned() {
        assert!((scaled_residual_std(0.02, 12) - 0.004_082_482_904_638_63).abs() < 1e-15);
        assert!((scaled_residual_std(0.02, 2) - 0.01).abs() < 1e-15);
        assert_eq!(scaled_residual_std(0.02, 0), scaled_residual_std(0.02, 1));
    }

    #[test]
    fn trunc_normal_respects_bounds_and_std() {
        tch::manual_seed(0);
        let mut t = zeros(&[100_000]);
        trunc_normal_(&mut t, 0.5).unwrap();
        assert!(t.abs().max().double_value(&[]) <= 1.0);
        // The std of N(0,1) truncated at ±2 is 0.8796; times 0.5.
        assert!((std_of(&t) - 0.5 * 0.8796).abs() < 0.01, "std {}", std_of(&t));
        assert!(t.mean(Kind::Float).double_value(&[]).abs() < 0.01);
    }

    #[test]
    fn trunc_normal_keeps_the_kind() {
        let mut t = Tensor::zeros([64], (Kind::Double, Device::Cpu));
        trunc_normal_(&mut t, 1.0).unwrap();
        assert_eq!(t.kind(), Kind::Double);
        assert!(t.abs().max().double_value(&[]) <= 2.0);
    }

    #[test]
    fn normal_and_kaiming_have_the_right_std() {
        tch::manual_seed(1);
        let mut t = zeros(&[256, 400]);
        normal_(&mut t, 0.02).unwrap();
        assert!((std_of(&t) - 0.02).abs() < 0.001);
        kaiming_normal_(&mut t).unwrap();
        assert!((std_of(&t) - (2.0f64 / 400.0).sqrt()).abs() < 0.002);
    }

    #[test]
    fn xavier_uniform_bound_and_std() {
        tch::manual_seed(2);
        let mut t = zeros(&[200, 400]);
        xavier_uniform_(&mut t).unwrap();
        let bound = (6.0f64 / 600.0).sqrt();
        assert!(t.abs().max().double_value(&[]) <= bound + 1e-6);
        // U(-a, a) has std a / √3.
        assert!((std_of(&t) - bound / 3f64.sqrt()).abs() < 0.002);
    }

    #[test]
    fn fan_based_initialisers_reject_vectors() {
        let mut v = zeros(&[5]);
        assert!(matches!(xavier_uniform_(&mut v), Err(Error::Shape { .. })));
        assert!(matches!(kaiming_normal_(&mut v), Err(Error::Shape { .. })));
    }

    #[test]
    fn invalid_std_and_integer_tensors_are_rejected() {
        let mut t = zeros(&[3]);
        let err = normal_(&mut t, -1.0).unwrap_err();
        assert!(err.to_string().contains("std"), "{err}");
        assert!(trunc_normal_(&mut t, f64::NAN).is_err());
        let mut ints = Tensor::zeros([3], (Kind::Int64, Device::Cpu));
        assert!(trunc_normal_(&mut ints, 1.0).is_err());
    }

    #[test]
    fn works_on_var_store_variables() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut fc = nn::linear(vs.root() / "fc", 3, 2, Default::default());
        assert!(fc.ws.requires_grad());
        ones_(&mut fc.ws).unwrap();
        let b = fc.bs.as_mut().unwrap();
        zeros_(b).unwrap();
        let stored = vs.variables();
        assert_eq!(stored["fc.weight"].sum(Kind::Float).double_value(&[]), 6.0);
        assert_eq!(stored["fc.bias"].abs().sum(Kind::Float).double_value(&[]), 0.0);
        assert!(stored["fc.weight"].requires_grad());
    }
}
