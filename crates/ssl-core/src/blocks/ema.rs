//! Exponential moving average of a parameter set: the target (momentum, teacher) network of
//! BYOL, MoCo and DINO.
//!
//! An [`Ema`] pairs every tensor of an online network with the tensor of the same name in a
//! target network, **buffers included** (BatchNorm running statistics are variables of the
//! `VarStore` too, and are averaged like weights). After each optimiser step,
//! `target = m · target + (1 - m) · online`, in place and without autograd.
//!
//! ```
//! use ssl_core::blocks::{cosine_momentum, ema::BYOL_BASE_MOMENTUM, Ema};
//! use ssl_core::tch::{nn, Device};
//!
//! let (online, target) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
//! nn::linear(online.root() / "fc", 4, 2, Default::default());
//! nn::linear(target.root() / "fc", 4, 2, Default::default());
//! let ema = Ema::from_var_stores(&online, &target)?;
//! ema.copy_online_to_target()?;
//! for step in 0..10 {
//!     // ... optimiser step on `online` ...
//!     ema.update(cosine_momentum(BYOL_BASE_MOMENTUM, step, 10))?;
//! }
//! # Ok::<(), ssl_core::Error>(())
//! ```

use std::collections::BTreeMap;
use std::f64::consts::PI;

use tch::{nn, TchError, Tensor};

use crate::error::{Error, Result, TorchResultExt};

/// BYOL's base target decay `τ_base = 0.996`, raised to 1 by [`cosine_momentum`] (Grill et al.,
/// 2020).
pub const BYOL_BASE_MOMENTUM: f64 = 0.996;
/// MoCo v1/v2's constant key-encoder momentum `m = 0.999` (He et al., 2020).
pub const MOCO_MOMENTUM: f64 = 0.999;
/// MoCo v3's base momentum `m = 0.99`, raised to 1 with a cosine schedule (Chen, Xie, He, 2021).
pub const MOCO_V3_BASE_MOMENTUM: f64 = 0.99;
/// DINO's base teacher momentum `λ = 0.996`, raised to 1 with a cosine schedule (Caron et al.,
/// 2021).
pub const DINO_BASE_MOMENTUM: f64 = 0.996;

/// BYOL's cosine momentum schedule: `1 - (1 - base) · (cos(π · step / total_steps) + 1) / 2`.
///
/// Starts at `base` (step 0) and reaches 1 at `step = total_steps`; later steps stay at 1. MoCo v3
/// and DINO use the same schedule. With `total_steps = 0` there is no schedule and `base` is
/// returned.
///
/// ```
/// use ssl_core::blocks::cosine_momentum;
/// assert_eq!(cosine_momentum(0.996, 0, 100), 0.996);
/// assert!((cosine_momentum(0.996, 50, 100) - 0.998).abs() < 1e-12);
/// assert_eq!(cosine_momentum(0.996, 100, 100), 1.0);
/// ```
pub fn cosine_momentum(base: f64, step: u64, total_steps: u64) -> f64 {
    if total_steps == 0 {
        return base;
    }
    let progress = step.min(total_steps) as f64 / total_steps as f64;
    1.0 - (1.0 - base) * ((PI * progress).cos() + 1.0) / 2.0
}

#[derive(Debug)]
struct Pair {
    name: String,
    online: Tensor,
    target: Tensor,
}

/// Online/target tensor pairs updated by exponential moving average; see the [module docs](self).
#[derive(Debug)]
pub struct Ema {
    pairs: Vec<Pair>,
}

/// Joins a prefix and a relative name the way tch names variables.
fn full_name(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Lists up to 8 names for an error message.
fn list(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(8).map(String::as_str).collect();
    let more = names.len().saturating_sub(shown.len());
    let more = if more > 0 { format!(" and {more} more") } else { String::new() };
    format!("`{}`{more}", shown.join("`, `"))
}

impl Ema {
    /// Pairs every variable of `online` with the variable of the same name in `target`.
    ///
    /// Errors, naming the variables, when a name is in one store only, or when a pair differs in
    /// shape, kind or device. The target tensors are set not to require grad (a later
    /// `VarStore::unfreeze` on `target` would undo that).
    pub fn from_var_stores(online: &nn::VarStore, target: &nn::VarStore) -> Result<Self> {
        let online = online.variables().into_iter().collect();
        let target = target.variables().into_iter().collect();
        Self::pair_up(online, target, ("online", ""), ("target", ""))
    }

    /// Pairs `online_prefix.x` with `target_prefix.x` for every variable `x` under
    /// `online_prefix` in one store (`/` is accepted as the separator too).
    ///
    /// Errors when a prefix is empty, when one prefix contains the other, when nothing is found
    /// under `online_prefix`, or as [`from_var_stores`](Self::from_var_stores) does.
    ///
    /// ```
    /// use ssl_core::blocks::Ema;
    /// use ssl_core::tch::{nn, Device};
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// nn::linear(vs.root() / "student" / "fc", 4, 2, Default::default());
    /// nn::linear(vs.root() / "teacher" / "fc", 4, 2, Default::default());
    /// let ema = Ema::from_prefixes(&vs, "student", "teacher/")?;
    /// assert_eq!(ema.len(), 2);
    /// assert!(!vs.variables()["teacher.fc.weight"].requires_grad());
    /// # Ok::<(), ssl_core::Error>(())
    /// ```
    pub fn from_prefixes(vs: &nn::VarStore, online_prefix: &str, target_prefix: &str) -> Result<Self> {
        let normalise = |name: &str, p: &str| -> Result<String> {
            let p = p.trim().replace('/', ".");
            let p = p.trim_matches('.').to_string();
            if p.is_empty() {
                return Err(Error::invalid(name, "must not be empty"));
            }
            Ok(p)
        };
        let on = normalise("online_prefix", online_prefix)?;
        let tg = normalise("target_prefix", target_prefix)?;
        let nested = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}."));
        if nested(&on, &tg) || nested(&tg, &on) {
            let message = format!("`{on}` and `{tg}` overlap; they must name disjoint sub-trees");
            return Err(Error::invalid("target_prefix", message));
        }
        let under = |prefix: &str| -> BTreeMap<String, Tensor> {
            let dotted = format!("{prefix}.");
            vs.variables()
                .into_iter()
                .filter_map(|(k, t)| k.strip_prefix(&dotted).map(|rest| (rest.to_string(), t)))
                .collect()
        };
        let online = under(&on);
        if online.is_empty() {
            let message = format!("no variable under `{on}` in the store");
            return Err(Error::invalid("online_prefix", message));
        }
        Self::pair_up(online, under(&tg), ("online", &on), ("target", &tg))
    }

    fn pair_up(
        mut online: BTreeMap<String, Tensor>,
        mut target: BTreeMap<String, Tensor>,
        (on_label, on_prefix): (&str, &str),
        (tg_label, tg_prefix): (&str, &str),
    ) -> Result<Self> {
        let missing: Vec<String> =
            online.keys().filter(|k| !target.contains_key(*k)).map(|k| full_name(tg_prefix, k)).collect();
        let extra: Vec<String> =
            target.keys().filter(|k| !online.contains_key(*k)).map(|k| full_name(tg_prefix, k)).collect();
        if !missing.is_empty() || !extra.is_empty() {
            let mut parts = vec![];
            if !missing.is_empty() {
                parts.push(format!("missing {} (present in {on_label})", list(&missing)));
            }
            if !extra.is_empty() {
                parts.push(format!("unexpected {} (absent from {on_label})", list(&extra)));
            }
            let message = format!("does not mirror {on_label}: {}", parts.join("; "));
            return Err(Error::invalid(tg_label, message));
        }
        if online.is_empty() {
            return Err(Error::invalid(on_label, "has no variables to average"));
        }
        let mut pairs = Vec::with_capacity(online.len());
        for (name, on) in std::mem::take(&mut online) {
            let Some(tg) = target.remove(&name) else {
                continue;
            };
            let tg_name = full_name(tg_prefix, &name);
            if on.size() != tg.size() {
                let expected = format!("{:?}, the shape of `{}`", on.size(), full_name(on_prefix, &name));
                return Err(Error::shape(format!("`{tg_name}`"), expected, &tg.size()));
            }
            if on.kind() != tg.kind() || on.device() != tg.device() {
                let message = format!(
                    "`{tg_name}` is {:?} on {:?} but `{}` is {:?} on {:?}",
                    tg.kind(),
                    tg.device(),
                    full_name(on_prefix, &name),
                    on.kind(),
                    on.device()
                );
                return Err(Error::invalid(tg_label, message));
            }
            let target = tg.set_requires_grad(false);
            pairs.push(Pair { name, online: on, target });
        }
        Ok(Self { pairs })
    }

    /// Number of tensor pairs (parameters and buffers).
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True when there is no pair (never, for an `Ema` built by the constructors).
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The paired names, relative to the prefixes (or the full names for two stores), sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|p| p.name.as_str())
    }

    /// Copies every online tensor into its target: the initialisation of BYOL, MoCo and DINO.
    pub fn copy_online_to_target(&self) -> Result<()> {
        self.for_each("copy online to target", |target, online| target.f_copy_(online))
    }

    /// `target = momentum · target + (1 - momentum) · online` for every floating-point pair;
    /// other kinds (counters, integer buffers) are copied. `momentum = 0` copies, `1` keeps the
    /// target (both exactly).
    ///
    /// Errors unless `momentum` is in `[0, 1]`.
    pub fn update(&self, momentum: f64) -> Result<()> {
        if !(0.0..=1.0).contains(&momentum) {
            return Err(Error::invalid("momentum", format!("must be in [0, 1], got {momentum}")));
        }
        self.for_each("EMA update", |target, online| {
            if target.is_floating_point() {
                // lerp: target + w · (online - target), exact at w = 0 and w = 1.
                target.f_lerp_(online, 1.0 - momentum).map(drop)
            } else {
                target.f_copy_(online)
            }
        })
    }

    fn for_each(&self, what: &str, op: impl Fn(&mut Tensor, &Tensor) -> Result<(), TchError>) -> Result<()> {
        tch::no_grad(|| {
            for p in &self.pairs {
                let mut target = p.target.shallow_clone();
                op(&mut target, &p.online).torch_context(format!("{what} `{}`", p.name))?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;
