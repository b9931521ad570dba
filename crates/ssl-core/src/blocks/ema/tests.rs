//! Tests of [`super`] (exponential moving averages), kept apart for file length.
#![allow(clippy::unwrap_used)] // in tests a panic is the failure report

use super::*;
use proptest::prelude::*;
use tch::{nn::ModuleT, Device, Kind};

const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

/// A Linear + BatchNorm1d network under `path`.
fn net(path: nn::Path<'_>) -> (nn::Linear, nn::BatchNorm) {
    let fc = nn::linear(&path / "fc", 3, 4, Default::default());
    let bn = nn::batch_norm1d(&path / "bn", 4, Default::default());
    (fc, bn)
}

fn stores() -> (nn::VarStore, nn::VarStore) {
    let (online, target) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
    net(online.root());
    net(target.root());
    (online, target)
}

fn var(vs: &nn::VarStore, name: &str) -> Tensor {
    vs.variables()[name].shallow_clone()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn all_equal(online: &nn::VarStore, target: &nn::VarStore) -> bool {
    let t = target.variables();
    online.variables().iter().all(|(k, v)| max_diff(v, &t[k]) == 0.0)
}

#[test]
fn momentum_constants_are_pinned() {
    assert_eq!(BYOL_BASE_MOMENTUM, 0.996);
    assert_eq!(MOCO_MOMENTUM, 0.999);
    assert_eq!(MOCO_V3_BASE_MOMENTUM, 0.99);
    assert_eq!(DINO_BASE_MOMENTUM, 0.996);
}

#[test]
fn cosine_momentum_is_pinned() {
    assert_eq!(cosine_momentum(0.996, 0, 1000), 0.996);
    assert_eq!(cosine_momentum(0.996, 1000, 1000), 1.0);
    assert_eq!(cosine_momentum(0.996, 5000, 1000), 1.0);
    assert!((cosine_momentum(0.99, 500, 1000) - 0.995).abs() < 1e-12);
    // a quarter of the way: 1 - 0.004 · (cos(π/4) + 1) / 2
    let quarter = 1.0 - 0.004 * (std::f64::consts::FRAC_1_SQRT_2 + 1.0) / 2.0;
    assert!((cosine_momentum(0.996, 250, 1000) - quarter).abs() < 1e-12);
    assert_eq!(cosine_momentum(0.9, 7, 0), 0.9);
    let mut last = 0.0;
    for s in 0..=100 {
        let m = cosine_momentum(0.996, s, 100);
        assert!(m >= last);
        last = m;
    }
}

#[test]
fn pairs_parameters_and_buffers() {
    let (online, target) = stores();
    let ema = Ema::from_var_stores(&online, &target).unwrap();
    assert_eq!(ema.len(), 6);
    assert!(!ema.is_empty());
    let names: Vec<&str> = ema.names().collect();
    assert_eq!(names, ["bn.bias", "bn.running_mean", "bn.running_var", "bn.weight", "fc.bias", "fc.weight"]);
    assert!(target.trainable_variables().iter().all(|t| !t.requires_grad()));
    assert!(online.trainable_variables().iter().all(|t| t.requires_grad()));
}

#[test]
fn momentum_zero_copies_and_one_keeps() {
    let (online, target) = stores();
    let ema = Ema::from_var_stores(&online, &target).unwrap();
    let before = var(&target, "fc.weight").copy();
    ema.update(1.0).unwrap();
    assert_eq!(max_diff(&var(&target, "fc.weight"), &before), 0.0);
    assert!(!all_equal(&online, &target));
    ema.update(0.0).unwrap();
    assert!(all_equal(&online, &target));
}

#[test]
fn copy_online_to_target_then_update_is_a_fixed_point() {
    let (online, target) = stores();
    let ema = Ema::from_var_stores(&online, &target).unwrap();
    ema.copy_online_to_target().unwrap();
    assert!(all_equal(&online, &target));
    ema.update(0.7).unwrap();
    let t = target.variables();
    assert!(online.variables().iter().all(|(k, v)| max_diff(v, &t[k]) < 1e-7));
}

#[test]
fn buffers_are_averaged_too() {
    let (online, target) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
    let (_, bn) = net(online.root());
    net(target.root());
    let ema = Ema::from_var_stores(&online, &target).unwrap();
    ema.copy_online_to_target().unwrap();
    // One training-mode pass moves the online running mean towards the batch mean (momentum 0.1).
    let x = Tensor::ones([8, 4], CPU) * 10.0 + Tensor::randn([8, 4], CPU) * 0.01;
    let _ = bn.forward_t(&x, true);
    let online_mean = var(&online, "bn.running_mean");
    assert!(online_mean.min().double_value(&[]) > 0.9);
    ema.update(0.5).unwrap();
    let expected = &online_mean * 0.5; // target was all zeros
    assert!(max_diff(&var(&target, "bn.running_mean"), &expected) < 1e-6);
}

#[test]
fn non_floating_tensors_are_copied() {
    let (online, target) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
    let counter = Tensor::from_slice(&[5i64]);
    let _ = online.root().add("steps", counter, false);
    let _ = target.root().add("steps", Tensor::from_slice(&[0i64]), false);
    let ema = Ema::from_var_stores(&online, &target).unwrap();
    ema.update(0.9).unwrap();
    assert_eq!(var(&target, "steps").int64_value(&[0]), 5);
}

#[test]
fn mismatched_stores_name_the_variable() {
    let (online, target) = stores();
    nn::linear(online.root() / "extra", 2, 2, Default::default());
    let err = Ema::from_var_stores(&online, &target).unwrap_err().to_string();
    assert!(err.contains("extra.weight") && err.contains("missing"), "{err}");

    let (online, target) = stores();
    let _ = target.root().zeros("only_here", &[1]);
    let err = Ema::from_var_stores(&online, &target).unwrap_err().to_string();
    assert!(err.contains("only_here") && err.contains("unexpected"), "{err}");

    let (online, target) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
    nn::linear(online.root() / "fc", 3, 4, Default::default());
    nn::linear(target.root() / "fc", 3, 5, Default::default());
    let err = Ema::from_var_stores(&online, &target).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    assert!(err.to_string().contains("fc."), "{err}");

    let (online, target) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
    let _ = online.root().add("w", Tensor::zeros([2], CPU), true);
    let _ = target.root().add("w", Tensor::zeros([2], (Kind::Double, Device::Cpu)), true);
    let err = Ema::from_var_stores(&online, &target).unwrap_err().to_string();
    assert!(err.contains("`w`") && err.contains("Double"), "{err}");

    let empty = nn::VarStore::new(Device::Cpu);
    assert!(Ema::from_var_stores(&empty, &nn::VarStore::new(Device::Cpu)).is_err());
}

#[test]
fn prefixes_pair_sub_trees_of_one_store() {
    let vs = nn::VarStore::new(Device::Cpu);
    net(vs.root() / "model" / "online");
    net(vs.root() / "model" / "target");
    net(vs.root() / "other");
    let ema = Ema::from_prefixes(&vs, "model/online", "model.target").unwrap();
    assert_eq!(ema.len(), 6);
    ema.update(0.0).unwrap();
    let v = vs.variables();
    assert_eq!(max_diff(&v["model.online.fc.weight"], &v["model.target.fc.weight"]), 0.0);
    assert!(!v["model.target.fc.weight"].requires_grad());
    assert!(v["model.online.fc.weight"].requires_grad());
    assert!(max_diff(&v["other.fc.weight"], &v["model.target.fc.weight"]) > 0.0);
}

#[test]
fn bad_prefixes_are_errors() {
    let vs = nn::VarStore::new(Device::Cpu);
    net(vs.root() / "online");
    net(vs.root() / "target");
    nn::linear(vs.root() / "online" / "head", 2, 2, Default::default());
    let err = Ema::from_prefixes(&vs, "online", "target").unwrap_err().to_string();
    assert!(err.contains("target.head.weight"), "{err}");
    let name_of = |r: Result<Ema>| match r {
        Err(Error::InvalidArgument { name, .. }) => name,
        other => panic!("expected an invalid argument, got {other:?}"),
    };
    assert_eq!(name_of(Ema::from_prefixes(&vs, "", "target")), "online_prefix");
    assert_eq!(name_of(Ema::from_prefixes(&vs, "online", "/")), "target_prefix");
    assert_eq!(name_of(Ema::from_prefixes(&vs, "online", "online.head")), "target_prefix");
    assert_eq!(name_of(Ema::from_prefixes(&vs, "nothing", "target")), "online_prefix");
}

#[test]
fn momentum_out_of_range_is_an_error() {
    let (online, target) = stores();
    let ema = Ema::from_var_stores(&online, &target).unwrap();
    for m in [-0.1, 1.5, f64::NAN] {
        assert!(matches!(ema.update(m), Err(Error::InvalidArgument { .. })), "{m}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn update_lands_between_target_and_online(
        values in prop::collection::vec((-100.0f32..100.0, -100.0f32..100.0), 1..16),
        m in 0.0f64..=1.0,
    ) {
        let (on, tg): (Vec<f32>, Vec<f32>) = values.into_iter().unzip();
        let (online, target) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
        let _ = online.root().add("w", Tensor::from_slice(&on), true);
        let _ = target.root().add("w", Tensor::from_slice(&tg), false);
        let ema = Ema::from_var_stores(&online, &target).unwrap();
        ema.update(m).unwrap();
        let new = Vec::<f32>::try_from(var(&target, "w")).unwrap();
        for ((n, o), t) in new.iter().zip(&on).zip(&tg) {
            let (lo, hi) = (o.min(*t), o.max(*t));
            let tol = 1e-5 * (1.0 + hi.abs().max(lo.abs()));
            prop_assert!(*n >= lo - tol && *n <= hi + tol, "{n} not in [{lo}, {hi}]");
            let expected = m * f64::from(*t) + (1.0 - m) * f64::from(*o);
            prop_assert!((f64::from(*n) - expected).abs() <= f64::from(tol) * 10.0);
        }
    }
}
