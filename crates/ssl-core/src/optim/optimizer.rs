use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::error::{Error, Result};

/// Which update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam with decoupled weight decay (Loshchilov & Hutter 2019), PyTorch's `AdamW`.
    Adamw,
    /// SGD with (optionally Nesterov) momentum and L2 weight decay, PyTorch's `SGD`.
    Sgd,
    /// Layer-wise adaptive rate scaling (You et al. 2017) over SGD momentum, as used by SimCLR
    /// and BYOL for large batches; biases and norm weights are neither decayed nor adapted.
    Lars,
}

/// Optimiser settings; fields a rule does not use are ignored by it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    /// The update rule.
    pub name: OptimizerKind,
    /// Peak learning rate (the schedule scales it per step). Recipes that state a base rate per
    /// 256 samples (`lr = base_lr × batch / 256`, SimCLR, MAE) apply that rule before this.
    pub lr: f64,
    /// Weight decay (decoupled for AdamW, L2 for SGD and LARS).
    pub weight_decay: f64,
    /// Adam's β1 and β2.
    pub betas: (f64, f64),
    /// Adam's ε.
    pub eps: f64,
    /// SGD/LARS momentum.
    pub momentum: f64,
    /// Nesterov momentum (SGD).
    pub nesterov: bool,
    /// LARS trust coefficient η (0.001 in You et al. and SimCLR).
    pub trust_coefficient: f64,
}

impl Default for OptimizerConfig {
    /// AdamW, lr 1e-3, weight decay 0.05, betas (0.9, 0.999), ε 1e-8: PyTorch's AdamW defaults
    /// with the weight decay of the MAE/MoCo v3 ViT recipes.
    fn default() -> Self {
        Self {
            name: OptimizerKind::Adamw,
            lr: 1e-3,
            weight_decay: 0.05,
            betas: (0.9, 0.999),
            eps: 1e-8,
            momentum: 0.9,
            nesterov: false,
            trust_coefficient: 0.001,
        }
    }
}

impl OptimizerConfig {
    /// Checks every field's range; errors name the field (`optimizer.lr`).
    pub fn validate(&self) -> Result<()> {
        let bad = |f: &str, m: &str| Err(Error::config(format!("optimizer.{f}"), m));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", "must be a positive number");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay", "must be >= 0");
        }
        let beta_ok = |b: f64| (0.0..1.0).contains(&b);
        if !beta_ok(self.betas.0) || !beta_ok(self.betas.1) {
            return bad("betas", "both must be in [0, 1)");
        }
        if self.eps.is_nan() || self.eps <= 0.0 {
            return bad("eps", "must be positive");
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad("momentum", "must be in [0, 1)");
        }
        if self.nesterov && self.momentum == 0.0 {
            return bad("nesterov", "needs a non-zero momentum");
        }
        if self.trust_coefficient.is_nan() || self.trust_coefficient <= 0.0 {
            return bad("trust_coefficient", "must be positive");
        }
        Ok(())
    }

    fn state_names(&self) -> &'static [&'static str] {
        match self.name {
            OptimizerKind::Adamw => &["exp_avg", "exp_avg_sq"],
            OptimizerKind::Sgd | OptimizerKind::Lars => &["momentum_buffer"],
        }
    }
}

struct Param {
    name: String,
    var: Tensor,
    /// Weight decay (and, for LARS, trust-ratio adaptation) applies.
    decay: bool,
    /// Multiplies the step's learning rate (layer-wise decay); 1 unless set.
    lr_scale: f64,
    state: Vec<Tensor>,
}

/// An optimiser over named parameters with exportable state.
///
/// ```
/// use ssl_core::optim::{Optimizer, OptimizerConfig};
/// use ssl_core::tch::{nn, Device, Kind, Tensor};
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let w = vs.root().var("w", &[2, 2], nn::Init::Const(1.0));
/// let mut opt = Optimizer::new(OptimizerConfig::default(), vec![("w".into(), w.shallow_clone())], |_, s| s.len() < 2).unwrap();
/// w.sum(Kind::Float).backward();
/// opt.step(0.1).unwrap();
/// opt.zero_grad();
/// assert!(w.max().double_value(&[]) < 1.0);
/// assert_eq!(opt.state_tensors().len(), 2); // exp_avg and exp_avg_sq of `w`
/// ```
pub struct Optimizer {
    config: OptimizerConfig,
    params: Vec<Param>,
    steps: u64,
}

impl Optimizer {
    /// An optimiser over `params` (name, variable); `no_decay(name, shape)` exempts a parameter
    /// from weight decay and LARS adaptation. Parameters keep the order given.
    pub fn new(
        config: OptimizerConfig,
        params: Vec<(String, Tensor)>,
        no_decay: impl Fn(&str, &[i64]) -> bool,
    ) -> Result<Self> {
        config.validate()?;
        let names = config.state_names();
        let params = params
            .into_iter()
            .map(|(name, var)| {
                let shape = var.size();
                let state = names.iter().map(|_| tch::no_grad(|| var.zeros_like())).collect();
                Param { decay: !no_decay(&name, &shape), lr_scale: 1.0, name, var, state }
            })
            .collect();
        Ok(Self { config, params, steps: 0 })
    }

    /// The configuration.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// Optimiser steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The parameters, in order (for clipping).
    pub fn variables(&self) -> impl Iterator<Item = &Tensor> {
        self.params.iter().map(|p| &p.var)
    }

    /// Names of parameters exempt from weight decay.
    pub fn no_decay_names(&self) -> Vec<&str> {
        self.params.iter().filter(|p| !p.decay).map(|p| p.name.as_str()).collect()
    }

    /// Gives every parameter its own learning-rate multiplier, `scale(name)` (1 for all until
    /// set): layer-wise learning-rate decay (BEiT, MAE's fine-tuning) scales each layer's rate by
    /// `decay^(depth from the top)`. Errors name a parameter whose multiplier is negative or not
    /// finite.
    ///
    /// ```
    /// use ssl_core::optim::{Optimizer, OptimizerConfig, OptimizerKind};
    /// use ssl_core::tch::{nn, Device, Kind, Tensor};
    ///
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let a = vs.root().var("a", &[1], nn::Init::Const(1.0));
    /// let b = vs.root().var("b", &[1], nn::Init::Const(1.0));
    /// let cfg = OptimizerConfig { name: OptimizerKind::Sgd, ..Default::default() };
    /// let params = vec![("a".into(), a.shallow_clone()), ("b".into(), b.shallow_clone())];
    /// let mut opt = Optimizer::new(cfg, params, |_, _| true).unwrap();
    /// opt.set_lr_scales(|name| if name == "a" { 0.5 } else { 1.0 }).unwrap();
    /// (&a + &b).sum(Kind::Float).backward();
    /// opt.step(0.1).unwrap();
    /// assert!((a.double_value(&[0]) - 0.95).abs() < 1e-6); // half the rate
    /// assert!((b.double_value(&[0]) - 0.9).abs() < 1e-6);
    /// ```
    pub fn set_lr_scales(&mut self, scale: impl Fn(&str) -> f64) -> Result<()> {
        for p in &mut self.params {
            let s = scale(&p.name);
            if !(s.is_finite() && s >= 0.0) {
                return Err(Error::config(
                    format!("learning-rate scale of {}", p.name),
                    format!("must be a finite number >= 0, got {s}"),
                ));
            }
            p.lr_scale = s;
        }
        Ok(())
    }

    /// Applies one update with learning rate `lr` (times each parameter's
    /// [scale](Self::set_lr_scales)) to every parameter that has a gradient.
    pub fn step(&mut self, base_lr: f64) -> Result<()> {
        let _guard = tch::no_grad_guard();
        self.steps += 1;
        let c = self.config.clone();
        let t = self.steps as i32;
        for p in &mut self.params {
            let g = p.var.grad();
            if !g.defined() {
                continue;
            }
            let wd = if p.decay { c.weight_decay } else { 0.0 };
            let lr = base_lr * p.lr_scale;
            match c.name {
                OptimizerKind::Adamw => {
                    let (b1, b2) = c.betas;
                    if wd > 0.0 {
                        let _ = p.var.f_mul_scalar_(1.0 - lr * wd).map_err(|e| torch_err(&p.name, e))?;
                    }
                    let (m, rest) = p.state.split_at_mut(1);
                    let (m, v) = (&mut m[0], &mut rest[0]);
                    // In place where libtorch allows, as torch.optim.AdamW's single-tensor path:
                    // two temporaries per parameter (g², the denominator).
                    let _ = m.f_lerp_(&g, 1.0 - b1).map_err(|e| torch_err(&p.name, e))?;
                    let _ = v.f_lerp_(&g.square(), 1.0 - b2).map_err(|e| torch_err(&p.name, e))?;
                    if lr != 0.0 {
                        let bc1 = 1.0 - b1.powi(t);
                        let bc2 = 1.0 - b2.powi(t);
                        // p -= lr / bc1 · m / (√v / √bc2 + eps), as p += m / denom with the
                        // step folded into denom (addcdiv_ takes no scale here).
                        let mut denom = v.sqrt();
                        let _ = denom.f_div_scalar_(bc2.sqrt()).map_err(|e| torch_err(&p.name, e))?;
                        let _ = denom.f_add_scalar_(c.eps).map_err(|e| torch_err(&p.name, e))?;
                        let _ = denom.f_mul_scalar_(-bc1 / lr).map_err(|e| torch_err(&p.name, e))?;
                        let _ = p.var.f_addcdiv_(&*m, &denom).map_err(|e| torch_err(&p.name, e))?;
                    }
                }
                OptimizerKind::Sgd | OptimizerKind::Lars => {
                    let mut d = if wd > 0.0 { &g + &p.var * wd } else { g.shallow_clone() };
                    if c.name == OptimizerKind::Lars && p.decay {
                        let pn = p.var.norm();
                        let gn = d.norm();
                        let ratio = (&pn / &gn) * c.trust_coefficient;
                        let ok = pn.gt(0.0).logical_and(&gn.gt(0.0));
                        let trust = ratio.where_self(&ok, &ratio.ones_like());
                        d *= trust;
                    }
                    let buf = &mut p.state[0];
                    let _ = buf.f_mul_scalar_(c.momentum).map_err(|e| torch_err(&p.name, e))?;
                    let _ = buf.f_add_(&d).map_err(|e| torch_err(&p.name, e))?;
                    let dir = if c.nesterov { d + &*buf * c.momentum } else { buf.shallow_clone() };
                    let _ = p.var.f_sub_(&(dir * lr)).map_err(|e| torch_err(&p.name, e))?;
                }
            }
        }
        Ok(())
    }

    /// Zeroes every parameter's gradient.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.var.zero_grad();
        }
    }

    /// The state tensors, named `<param>.<state>` (for checkpoints).
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let names = self.config.state_names();
        self.params
            .iter()
            .flat_map(|p| {
                names.iter().zip(&p.state).map(move |(n, t)| (format!("{}.{n}", p.name), t.shallow_clone()))
            })
            .collect()
    }

    /// Restores state saved by [`state_tensors`](Self::state_tensors) and the step count.
    /// Every expected tensor must be present with the parameter's shape; errors name the tensor.
    pub fn load_state(&mut self, mut tensors: HashMap<String, Tensor>, steps: u64) -> Result<()> {
        let names = self.config.state_names();
        let _guard = tch::no_grad_guard();
        for p in &mut self.params {
            for (n, dst) in names.iter().zip(&mut p.state) {
                let key = format!("{}.{n}", p.name);
                let src = tensors
                    .remove(&key)
                    .ok_or_else(|| Error::invalid("optimizer state", format!("tensor `{key}` is missing")))?;
                if src.size() != dst.size() {
                    return Err(Error::shape(
                        format!("optimizer state `{key}`"),
                        format!("{:?}", dst.size()),
                        &src.size(),
                    ));
                }
                dst.f_copy_(&src).map_err(|e| torch_err(&key, e))?;
            }
        }
        if let Some(extra) = tensors.keys().next() {
            return Err(Error::invalid(
                "optimizer state",
                format!("tensor `{extra}` matches no parameter (was the checkpoint made with another optimiser or model?)"),
            ));
        }
        self.steps = steps;
        Ok(())
    }
}

fn torch_err(name: &str, source: tch::TchError) -> Error {
    Error::Torch { context: format!("optimiser update of `{name}`"), source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn param(values: &[f32]) -> Tensor {
        Tensor::from_slice(values).set_requires_grad(true)
    }

    fn set_grad(p: &Tensor, g: &[f32]) {
        // Produce the gradient `g` through a linear function of p.
        (p * Tensor::from_slice(g)).sum(Kind::Float).backward();
    }

    /// Reference values computed with torch.optim (2.x) for one parameter [1, -2] and gradients
    /// [0.5, 0.25] then [-1, 2], lr 0.1.
    #[test]
    fn adamw_matches_pytorch() {
        let p = param(&[1.0, -2.0]);
        let cfg = OptimizerConfig { weight_decay: 0.1, ..Default::default() };
        let mut opt = Optimizer::new(cfg, vec![("w".into(), p.shallow_clone())], |_, _| false).unwrap();
        for g in [[0.5f32, 0.25], [-1.0, 2.0]] {
            set_grad(&p, &g);
            opt.step(0.1).unwrap();
            opt.zero_grad();
        }
        // Two AdamW steps by hand: step 1 moves each weight by -lr·sign(g) (after decay).
        let mut w = [1.0f64, -2.0];
        let (mut m, mut v) = ([0.0f64; 2], [0.0f64; 2]);
        for (t, g) in [[0.5f64, 0.25], [-1.0, 2.0]].iter().enumerate() {
            let t = (t + 1) as i32;
            for i in 0..2 {
                w[i] *= 1.0 - 0.1 * 0.1;
                m[i] = 0.9 * m[i] + 0.1 * g[i];
                v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
                let denom = (v[i] / (1.0 - 0.999f64.powi(t))).sqrt() + 1e-8;
                w[i] -= 0.1 / (1.0 - 0.9f64.powi(t)) * m[i] / denom;
            }
        }
        let got = Vec::<f32>::try_from(&p).unwrap();
        for i in 0..2 {
            assert!((f64::from(got[i]) - w[i]).abs() < 1e-6, "{got:?} vs {w:?}");
        }
    }

    #[test]
    fn sgd_momentum_and_nesterov_match_the_definition() {
        for nesterov in [false, true] {
            let p = param(&[1.0]);
            let cfg = OptimizerConfig {
                name: OptimizerKind::Sgd,
                weight_decay: 0.0,
                momentum: 0.9,
                nesterov,
                ..Default::default()
            };
            let mut opt = Optimizer::new(cfg, vec![("w".into(), p.shallow_clone())], |_, _| false).unwrap();
            let (mut w, mut buf) = (1.0f64, 0.0f64);
            for g in [1.0f32, 2.0, -1.0] {
                set_grad(&p, &[g]);
                opt.step(0.5).unwrap();
                opt.zero_grad();
                buf = 0.9 * buf + f64::from(g);
                w -= 0.5 * if nesterov { f64::from(g) + 0.9 * buf } else { buf };
            }
            let got = f64::from(Vec::<f32>::try_from(&p).unwrap()[0]);
            assert!((got - w).abs() < 1e-6, "nesterov={nesterov}: {got} vs {w}");
        }
    }

    #[test]
    fn lars_scales_by_the_trust_ratio_and_exempts_no_decay_params() {
        let w = param(&[3.0, 4.0]); // ||w|| = 5
        let b = param(&[3.0, 4.0]);
        let cfg = OptimizerConfig {
            name: OptimizerKind::Lars,
            weight_decay: 0.0,
            momentum: 0.0,
            trust_coefficient: 0.01,
            ..Default::default()
        };
        let mut opt = Optimizer::new(
            cfg,
            vec![("w".into(), w.shallow_clone()), ("b".into(), b.shallow_clone())],
            |n, _| n == "b",
        )
        .unwrap();
        set_grad(&w, &[0.0, 1.0]); // ||g|| = 1 -> trust = 0.01 * 5 / 1 = 0.05
        set_grad(&b, &[0.0, 1.0]);
        opt.step(1.0).unwrap();
        assert_eq!(Vec::<f32>::try_from(&w).unwrap(), vec![3.0, 4.0 - 0.05]);
        assert_eq!(Vec::<f32>::try_from(&b).unwrap(), vec![3.0, 3.0]);
        assert_eq!(opt.no_decay_names(), vec!["b"]);
    }

    #[test]
    fn no_decay_params_are_not_decayed() {
        let w = param(&[1.0]);
        let cfg = OptimizerConfig { weight_decay: 0.5, ..Default::default() };
        let mut opt = Optimizer::new(cfg, vec![("bias".into(), w.shallow_clone())], |_, _| true).unwrap();
        set_grad(&w, &[0.0]);
        opt.step(0.1).unwrap();
        assert_eq!(Vec::<f32>::try_from(&w).unwrap(), vec![1.0]);
    }

    #[test]
    fn state_round_trips_and_mismatches_are_named() {
        let p = param(&[1.0, 2.0]);
        let mut opt =
            Optimizer::new(OptimizerConfig::default(), vec![("w".into(), p.shallow_clone())], |_, _| false)
                .unwrap();
        set_grad(&p, &[1.0, 1.0]);
        opt.step(0.1).unwrap();
        let saved: HashMap<String, Tensor> =
            opt.state_tensors().into_iter().map(|(n, t)| (n, t.copy())).collect();
        let q = param(&[1.0, 2.0]);
        let mut other =
            Optimizer::new(OptimizerConfig::default(), vec![("w".into(), q)], |_, _| false).unwrap();
        other
            .load_state(saved.iter().map(|(k, v)| (k.clone(), v.copy())).collect::<HashMap<_, _>>(), 1)
            .unwrap();
        assert_eq!(other.steps(), 1);
        for ((_, a), (_, b)) in opt.state_tensors().iter().zip(other.state_tensors().iter()) {
            assert!(a.equal(b));
        }
        let copy = |m: &HashMap<String, Tensor>| -> HashMap<String, Tensor> {
            m.iter().map(|(k, v)| (k.clone(), v.copy())).collect()
        };
        let mut missing = copy(&saved);
        missing.remove("w.exp_avg");
        let e = other.load_state(missing, 1).unwrap_err().to_string();
        assert!(e.contains("w.exp_avg"), "{e}");
        let mut wrong = saved;
        wrong.insert("w.exp_avg".into(), Tensor::zeros([3], (Kind::Float, Device::Cpu)));
        let e = other.load_state(wrong, 1).unwrap_err().to_string();
        assert!(e.contains("w.exp_avg") && e.contains("[3]"), "{e}");
    }

    #[test]
    fn config_errors_name_the_field() {
        for (cfg, field) in [
            (OptimizerConfig { lr: 0.0, ..Default::default() }, "optimizer.lr"),
            (OptimizerConfig { lr: f64::NAN, ..Default::default() }, "optimizer.lr"),
            (OptimizerConfig { betas: (0.9, 1.0), ..Default::default() }, "optimizer.betas"),
            (OptimizerConfig { momentum: 1.5, ..Default::default() }, "optimizer.momentum"),
            (OptimizerConfig { weight_decay: -1.0, ..Default::default() }, "optimizer.weight_decay"),
        ] {
            let e = cfg.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
    }
}
