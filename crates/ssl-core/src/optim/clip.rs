use tch::{Kind, Tensor};

/// Scales gradients in place so that their global L2 norm is at most `max_norm`, as PyTorch's
/// `clip_grad_norm_`; returns the norm before clipping as a scalar tensor (no device sync).
///
/// ```
/// use ssl_core::optim::clip_grad_norm;
/// use ssl_core::tch::{Kind, Tensor};
/// let w = Tensor::from_slice(&[3.0f32, 4.0]).set_requires_grad(true);
/// (&w * &w).sum(Kind::Float).backward();          // grad = [6, 8], norm 10
/// let norm = clip_grad_norm([&w], 5.0);
/// assert!((norm.double_value(&[]) - 10.0).abs() < 1e-6);
/// assert!((w.grad().norm().double_value(&[]) - 5.0).abs() < 1e-3);
/// ```
pub fn clip_grad_norm<'a>(params: impl IntoIterator<Item = &'a Tensor>, max_norm: f64) -> Tensor {
    let _guard = tch::no_grad_guard();
    let grads: Vec<Tensor> = params.into_iter().map(Tensor::grad).filter(Tensor::defined).collect();
    if grads.is_empty() {
        return Tensor::from(0.0f32);
    }
    let squares: Vec<Tensor> =
        grads.iter().map(|g| g.to_kind(Kind::Float).square().sum(Kind::Float)).collect();
    let total = Tensor::stack(&squares, 0).sum(Kind::Float).sqrt();
    let coef = (max_norm / (&total + 1e-6)).clamp_max(1.0);
    for mut g in grads {
        let _ = g.f_mul_(&coef);
    }
    total
}
