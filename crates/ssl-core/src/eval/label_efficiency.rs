//! Label efficiency: how test accuracy grows with the number of labelled training examples.
//!
//! For each [`LabelBudget`] (labels per class, a percentage of the train split, or all of it)
//! and each of several seeds, a stratified subset of the train split is drawn
//! ([`stratified_subset`]), a linear probe is trained on its features (standardised with the
//! statistics of the whole train split, which need no labels) and scored on the whole test split; the rows give mean and spread over the seeds, for each set of features (the
//! pretrained encoder's, the untrained encoder's, the raw inputs'). Only train-split indices
//! are ever drawn: the test split is never used for training.
//!
//! ```
//! use ssl_core::eval::label_efficiency::{parse_budgets, stratified_subset, LabelBudget};
//! let budgets = parse_budgets("1,5,10%,all")?;
//! assert_eq!(budgets, [LabelBudget::PerClass(1), LabelBudget::PerClass(5), LabelBudget::Percent(10.0), LabelBudget::All]);
//! let labels = [0, 1, 0, 1, 0, 1, 2, 2];
//! let pick = stratified_subset(&labels, LabelBudget::PerClass(2), 7);
//! assert_eq!(pick.len(), 6); // two of each class
//! assert_eq!(pick, stratified_subset(&labels, LabelBudget::PerClass(2), 7)); // seeded
//! # Ok::<(), ssl_core::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use super::features::Standardizer;
use super::linear_probe::{linear_probe_scaled, LinearProbeConfig};
use crate::error::{Error, Result};
use crate::rng::rng_for;

/// How many labelled training examples a probe may use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LabelBudget {
    /// This many examples of each class (all of a class that has fewer).
    PerClass(usize),
    /// This percentage of each class's examples (at least one), in `(0, 100]`.
    Percent(f64),
    /// The whole train split.
    All,
}

impl fmt::Display for LabelBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PerClass(k) => write!(f, "{k}"),
            Self::Percent(p) => write!(f, "{p}%"),
            Self::All => write!(f, "all"),
        }
    }
}

impl FromStr for LabelBudget {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let bad = |why: &str| Error::invalid("--label-budget", format!("`{s}`: {why}"));
        if s.eq_ignore_ascii_case("all") {
            return Ok(Self::All);
        }
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad("not a percentage"))?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(bad("a percentage must be in (0, 100]"));
            }
            return Ok(Self::Percent(p));
        }
        match s.parse::<usize>() {
            Ok(0) => Err(bad("at least one label per class")),
            Ok(k) => Ok(Self::PerClass(k)),
            Err(_) => Err(bad("expected labels per class (10), a percentage (1%) or `all`")),
        }
    }
}

/// Parses a comma-separated list of budgets (`1,5,10,50,all`, `1%,10%`).
pub fn parse_budgets(list: &str) -> Result<Vec<LabelBudget>> {
    let budgets =
        list.split(',').filter(|s| !s.trim().is_empty()).map(str::parse).collect::<Result<Vec<_>>>()?;
    if budgets.is_empty() {
        return Err(Error::invalid("--label-budget", "no budgets given"));
    }
    Ok(budgets)
}

/// Indices into `labels` (the train split) of a subset with `budget` examples per class,
/// drawn without replacement with a generator of `seed`; sorted. Classes are the distinct
/// labels; each keeps at least one example.
pub fn stratified_subset(labels: &[i64], budget: LabelBudget, seed: u64) -> Vec<usize> {
    let mut by_class: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, &y) in labels.iter().enumerate() {
        by_class.entry(y).or_default().push(i);
    }
    let mut picked = Vec::new();
    for (class, mut idx) in by_class {
        let take = match budget {
            LabelBudget::All => idx.len(),
            LabelBudget::PerClass(k) => k.min(idx.len()),
            LabelBudget::Percent(p) => ((idx.len() as f64 * p / 100.0).round() as usize).clamp(1, idx.len()),
        };
        idx.shuffle(&mut rng_for(seed, "label-budget", &[class as u64]));
        picked.extend_from_slice(&idx[..take]);
    }
    picked.sort_unstable();
    picked
}

/// One budget's result for one set of features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetResult {
    /// The budget as given (`10`, `1%`, `all`).
    pub budget: String,
    /// Mean labelled examples per class actually used.
    pub labels_per_class: f64,
    /// Seeds (subsets) averaged.
    pub seeds: usize,
    /// Mean test accuracy over the seeds.
    pub mean_acc: f64,
    /// Population standard deviation of the test accuracy over the seeds.
    pub std_acc: f64,
    /// Each seed's test accuracy.
    pub accs: Vec<f64>,
}

/// What a label-efficiency curve probes: the budgets, the subsets per budget, the probe.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelCurveConfig {
    /// The budgets, in order.
    pub budgets: Vec<LabelBudget>,
    /// Subsets (and probes) per budget; `All` is probed once.
    pub seeds: usize,
    /// The linear probe; subset `s` shuffles with `probe.seed + s`.
    pub probe: LinearProbeConfig,
}

/// Probes features `train [N, D]` (labels `train_y`) at every budget with `cfg.seeds` subsets
/// each, scoring on `test [M, D]`. `All` is probed once (every seed would draw the same subset).
pub fn label_curve(
    train: &Tensor,
    train_y: &Tensor,
    test: &Tensor,
    test_y: &Tensor,
    cfg: &LabelCurveConfig,
    device: Device,
) -> Result<Vec<BudgetResult>> {
    let probe = &cfg.probe;
    // Standardisation statistics from the whole train split: its features are known without
    // labels, and a handful of labelled rows would estimate them poorly.
    let scaler = Standardizer::fit(train)?;
    label_curve_with(train_y, &cfg.budgets, cfg.seeds, |idx, seed| {
        let (x, y) = (
            train.index_select(0, &idx.to_device(train.device())),
            train_y.index_select(0, &idx.to_device(train_y.device())),
        );
        let cfg = LinearProbeConfig { seed: probe.seed.wrapping_add(seed), ..probe.clone() };
        Ok(linear_probe_scaled(&x, &y, test, test_y, &scaler, &cfg, device)?.top1)
    })
}

/// The protocol of [`label_curve`] with any learner: for every budget and seed `s` (one run
/// for `All`), `score(indices, s)` trains on the rows `indices` (an int64 CPU tensor into the
/// train split, from [`stratified_subset`]) and returns the test accuracy. Fine-tuning curves
/// use this with [`finetune`](super::finetune).
///
/// ```
/// use ssl_core::eval::label_efficiency::{label_curve_with, parse_budgets};
/// use ssl_core::tch::Tensor;
///
/// let labels = Tensor::from_slice(&[0i64, 0, 0, 1, 1, 1]);
/// let budgets = parse_budgets("1,all")?;
/// // A "learner" whose accuracy is the share of the split it saw.
/// let rows = label_curve_with(&labels, &budgets, 2, |idx, _seed| Ok(idx.size()[0] as f64 / 6.0))?;
/// assert_eq!((rows[0].seeds, rows[0].mean_acc), (2, 2.0 / 6.0));
/// assert_eq!((rows[1].seeds, rows[1].mean_acc, rows[1].labels_per_class), (1, 1.0, 3.0));
/// # Ok::<(), ssl_core::Error>(())
/// ```
pub fn label_curve_with(
    train_y: &Tensor,
    budgets: &[LabelBudget],
    seeds: usize,
    mut score: impl FnMut(&Tensor, u64) -> Result<f64>,
) -> Result<Vec<BudgetResult>> {
    if seeds == 0 {
        return Err(Error::invalid("--seeds", "must be at least 1"));
    }
    let labels = Vec::<i64>::try_from(train_y.to_device(Device::Cpu))
        .map_err(|e| Error::invalid("train labels", e.to_string()))?;
    let classes = labels.iter().collect::<std::collections::BTreeSet<_>>().len().max(1);
    let mut rows = Vec::with_capacity(budgets.len());
    for &budget in budgets {
        let runs = if budget == LabelBudget::All { 1 } else { seeds };
        let mut accs = Vec::with_capacity(runs);
        let mut used = 0usize;
        for seed in 0..runs {
            let idx = stratified_subset(&labels, budget, seed as u64);
            used = idx.len();
            let idx = Tensor::from_slice(&idx.iter().map(|&i| i as i64).collect::<Vec<_>>());
            accs.push(score(&idx, seed as u64)?);
        }
        let mean = accs.iter().sum::<f64>() / accs.len() as f64;
        let var = accs.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / accs.len() as f64;
        rows.push(BudgetResult {
            budget: budget.to_string(),
            labels_per_class: used as f64 / classes as f64,
            seeds: runs,
            mean_acc: mean,
            std_acc: var.sqrt(),
            accs,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// Subsets are stratified (each class gets min(k, its count)), drawn only from the
        /// given split, free of repeats, and a pure function of the seed.
        #[test]
        fn subsets_are_stratified_seeded_and_inside_the_split(
            labels in proptest::collection::vec(0i64..6, 1..200), k in 1usize..30, seed: u64, pct in 0.5f64..100.0,
        ) {
            let pick = stratified_subset(&labels, LabelBudget::PerClass(k), seed);
            prop_assert_eq!(&pick, &stratified_subset(&labels, LabelBudget::PerClass(k), seed));
            prop_assert!(pick.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(pick.iter().all(|&i| i < labels.len()));
            for c in 0..6 {
                let have = labels.iter().filter(|&&y| y == c).count();
                let got = pick.iter().filter(|&&i| labels[i] == c).count();
                prop_assert_eq!(got, k.min(have));
            }
            let pick = stratified_subset(&labels, LabelBudget::Percent(pct), seed);
            for c in 0..6 {
                let have = labels.iter().filter(|&&y| y == c).count();
                let got = pick.iter().filter(|&&i| labels[i] == c).count();
                if have > 0 {
                    prop_assert!(got >= 1 && got <= have);
                    prop_assert!((got as f64 - have as f64 * pct / 100.0).abs() <= 1.0);
                }
            }
            prop_assert_eq!(stratified_subset(&labels, LabelBudget::All, seed).len(), labels.len());
        }
    }

    #[test]
    fn different_seeds_draw_different_subsets() {
        let labels: Vec<i64> = (0..100).map(|i| i % 2).collect();
        let a = stratified_subset(&labels, LabelBudget::PerClass(5), 0);
        let b = stratified_subset(&labels, LabelBudget::PerClass(5), 1);
        assert_ne!(a, b);
    }

    #[test]
    fn budgets_parse_and_bad_ones_name_the_flag() {
        assert_eq!(
            parse_budgets(" 1, 50 ,ALL").unwrap(),
            [LabelBudget::PerClass(1), LabelBudget::PerClass(50), LabelBudget::All]
        );
        for bad in ["0", "x", "150%", "-3", ""] {
            let e = parse_budgets(bad).unwrap_err().to_string();
            assert!(e.contains("--label-budget"), "{bad}: {e}");
        }
        assert_eq!(LabelBudget::Percent(1.0).to_string(), "1%");
    }

    #[test]
    fn the_curve_rises_with_labels_on_separable_features() {
        tch::manual_seed(0);
        // Two noisy classes: more labels, better probes; accuracy in [0, 1], spreads finite.
        let n = 200;
        let y = Tensor::arange(n, (tch::Kind::Int64, Device::Cpu)).remainder(2);
        let x = Tensor::randn([n, 8], (tch::Kind::Float, Device::Cpu)) * 2.0
            + y.unsqueeze(1).to_kind(tch::Kind::Float);
        let cfg = LabelCurveConfig {
            budgets: vec![LabelBudget::PerClass(1), LabelBudget::All],
            seeds: 3,
            probe: LinearProbeConfig { epochs: 30, ..Default::default() },
        };
        let rows = label_curve(&x, &y, &x, &y, &cfg, Device::Cpu).unwrap();
        assert_eq!((rows[0].seeds, rows[1].seeds), (3, 1));
        assert_eq!(rows[0].labels_per_class, 1.0);
        assert!(rows[1].mean_acc > 0.65 && rows[1].mean_acc > rows[0].mean_acc - 0.05, "{rows:?}");
        assert!(rows.iter().all(|r| (0.0..=1.0).contains(&r.mean_acc) && r.std_acc.is_finite()));
    }
}
