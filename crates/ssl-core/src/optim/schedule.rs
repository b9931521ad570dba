use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The shape of the learning-rate curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// Linear warm-up, then half-cosine decay to `min_lr_ratio × lr` at the last step
    /// (SimCLR, BYOL, MoCo v3, MAE, BERT-style pretraining all use this shape).
    WarmupCosine,
    /// Linear warm-up, then constant.
    Constant,
}

/// A per-step learning-rate schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// The curve.
    pub name: ScheduleKind,
    /// Warm-up steps (linear from `lr / warmup_steps` to `lr`).
    pub warmup_steps: u64,
    /// Final learning rate as a fraction of the peak (cosine only).
    pub min_lr_ratio: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self { name: ScheduleKind::WarmupCosine, warmup_steps: 0, min_lr_ratio: 0.0 }
    }
}

impl ScheduleConfig {
    /// Checks the fields; errors name them (`schedule.min_lr_ratio`).
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return Err(Error::config("schedule.min_lr_ratio", "must be in [0, 1]"));
        }
        Ok(())
    }

    /// The learning rate of optimiser step `step` (0-based) out of `total_steps`, for peak `lr`.
    ///
    /// ```
    /// use ssl_core::optim::{ScheduleConfig, ScheduleKind};
    /// let s = ScheduleConfig { name: ScheduleKind::WarmupCosine, warmup_steps: 10, min_lr_ratio: 0.0 };
    /// assert_eq!(s.lr_at(1.0, 0, 110), 0.1);      // warm-up
    /// assert_eq!(s.lr_at(1.0, 10, 110), 1.0);     // peak
    /// assert!((s.lr_at(1.0, 60, 110) - 0.5).abs() < 1e-12); // half-way down the cosine
    /// ```
    pub fn lr_at(&self, lr: f64, step: u64, total_steps: u64) -> f64 {
        if step < self.warmup_steps {
            return lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.name {
            ScheduleKind::Constant => lr,
            ScheduleKind::WarmupCosine => {
                let span = total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
                let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
                let min = lr * self.min_lr_ratio;
                min + (lr - min) * 0.5 * (1.0 + (PI * progress).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn cosine_is_bounded_and_monotone_after_warmup(
            warmup in 0u64..50, extra in 1u64..500, min in 0f64..1.0, lr in 1e-5f64..10.0
        ) {
            let s = ScheduleConfig { name: ScheduleKind::WarmupCosine, warmup_steps: warmup, min_lr_ratio: min };
            let total = warmup + extra;
            let mut prev = 0.0;
            for step in 0..total {
                let v = s.lr_at(lr, step, total);
                prop_assert!(v > 0.0 || min == 0.0);
                prop_assert!(v <= lr * (1.0 + 1e-12));
                prop_assert!(v >= lr * min * (1.0 - 1e-12) || step < warmup);
                if step < warmup { prop_assert!(v >= prev); } else if step > warmup { prop_assert!(v <= prev * (1.0 + 1e-12)); }
                prev = v;
            }
            prop_assert!((s.lr_at(lr, total, total) - lr * min).abs() < 1e-9 * lr.max(1.0));
        }

        #[test]
        fn constant_is_constant_after_warmup(warmup in 0u64..20, step in 0u64..100) {
            let s = ScheduleConfig { name: ScheduleKind::Constant, warmup_steps: warmup, min_lr_ratio: 0.0 };
            if step >= warmup { prop_assert_eq!(s.lr_at(0.3, step, 100), 0.3); }
        }
    }

    #[test]
    fn bad_ratio_names_the_field() {
        let s = ScheduleConfig { min_lr_ratio: 2.0, ..Default::default() };
        assert!(s.validate().unwrap_err().to_string().contains("schedule.min_lr_ratio"));
    }
}
