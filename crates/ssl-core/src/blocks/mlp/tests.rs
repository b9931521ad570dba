//! Tests of [`super`] (projection and prediction heads), kept apart for file length.
#![allow(clippy::unwrap_used)] // in tests a panic is the failure report

use super::*;
use std::collections::BTreeSet;
use tch::{Device, Kind};

const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

/// The preset with its widths shrunk (`hidden -> 12`, and `out -> 6` where the preset fixes it),
/// so tests stay tiny while keeping the preset's structure.
fn shrink(cfg: MlpHeadConfig) -> MlpHeadConfig {
    let out_dim = if cfg.out_dim == cfg.in_dim { cfg.in_dim } else { 6 };
    MlpHeadConfig { hidden_dim: 12, out_dim, ..cfg }
}

fn build(cfg: &MlpHeadConfig) -> (nn::VarStore, MlpHead) {
    let vs = nn::VarStore::new(Device::Cpu);
    let head = MlpHead::new(vs.root(), cfg).unwrap();
    (vs, head)
}

fn names(vs: &nn::VarStore) -> BTreeSet<String> {
    vs.variables().into_keys().collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn presets_have_the_papers_shapes() {
    let c = MlpHeadConfig::simclr(2048, SIMCLR_PROJECTION_DIM);
    assert_eq!((c.layers, c.hidden_dim, c.out_dim), (2, 2048, 128));
    assert!(c.batch_norm && !c.last_batch_norm && c.bias && c.activation == Activation::Relu);

    let c = MlpHeadConfig::byol_projector(2048);
    assert_eq!((c.layers, c.hidden_dim, c.out_dim), (2, 4096, 256));
    assert!(c.batch_norm && !c.last_batch_norm && c.bias);
    let c = MlpHeadConfig::byol_predictor(256);
    assert_eq!((c.in_dim, c.hidden_dim, c.out_dim), (256, 4096, 256));

    let c = MlpHeadConfig::moco_v3_projector(384);
    assert_eq!((c.layers, c.hidden_dim, c.out_dim), (3, 4096, 256));
    assert!(c.batch_norm && c.last_batch_norm && !c.bias);
    let c = MlpHeadConfig::moco_v3_predictor(256);
    assert_eq!((c.layers, c.in_dim, c.hidden_dim, c.out_dim), (2, 256, 4096, 256));
    assert!(c.batch_norm && !c.last_batch_norm && !c.bias);

    let c = MlpHeadConfig::moco_v2_projector(2048);
    assert_eq!((c.layers, c.hidden_dim, c.out_dim), (2, 2048, 128));
    assert!(!c.batch_norm && !c.last_batch_norm && c.bias);
}

#[test]
fn constants_are_pinned() {
    assert_eq!(SIMCLR_PROJECTION_DIM, 128);
    assert_eq!((BYOL_HIDDEN_DIM, BYOL_PROJECTION_DIM), (4096, 256));
    assert_eq!((MOCO_V3_HIDDEN_DIM, MOCO_V3_PROJECTION_DIM), (4096, 256));
    assert_eq!(MOCO_V2_PROJECTION_DIM, 128);
    assert_eq!((BN_EPS, BN_MOMENTUM), (1e-5, 0.1));
}

#[test]
fn every_preset_maps_to_the_output_width() {
    for cfg in [
        MlpHeadConfig::simclr(8, 4),
        shrink(MlpHeadConfig::byol_projector(8)),
        shrink(MlpHeadConfig::byol_predictor(6)),
        shrink(MlpHeadConfig::moco_v3_projector(8)),
        shrink(MlpHeadConfig::moco_v3_predictor(6)),
        shrink(MlpHeadConfig::moco_v2_projector(8)),
        MlpHeadConfig { activation: Activation::Gelu, ..shrink(MlpHeadConfig::moco_v2_projector(8)) },
        MlpHeadConfig { layers: 1, ..shrink(MlpHeadConfig::byol_projector(8)) },
    ] {
        let (_vs, head) = build(&cfg);
        let x = Tensor::randn([5, cfg.in_dim], CPU);
        for train in [true, false] {
            assert_eq!(head.forward_t(&x, train).size(), [5, cfg.out_dim], "{cfg:?}");
        }
    }
}

#[test]
fn batch_norm_presence_shows_in_parameter_names() {
    let (vs, _) = build(&shrink(MlpHeadConfig::moco_v2_projector(8)));
    let expected = set(&[
        "layers.0.linear.weight",
        "layers.0.linear.bias",
        "layers.1.linear.weight",
        "layers.1.linear.bias",
    ]);
    assert_eq!(names(&vs), expected);

    // BYOL: the Linear before BN loses its bias; the output Linear keeps it.
    let (vs, _) = build(&shrink(MlpHeadConfig::byol_projector(8)));
    let expected = set(&[
        "layers.0.linear.weight",
        "layers.0.bn.weight",
        "layers.0.bn.bias",
        "layers.0.bn.running_mean",
        "layers.0.bn.running_var",
        "layers.1.linear.weight",
        "layers.1.linear.bias",
    ]);
    assert_eq!(names(&vs), expected);
}

#[test]
fn last_batch_norm_has_no_affine_parameters() {
    let (vs, head) = build(&shrink(MlpHeadConfig::moco_v3_projector(8)));
    let n = names(&vs);
    assert!(n.contains("layers.2.bn.running_mean") && n.contains("layers.2.bn.running_var"));
    assert!(!n.contains("layers.2.bn.weight") && !n.contains("layers.2.bn.bias"));
    assert!(n.contains("layers.1.bn.weight") && n.contains("layers.1.bn.bias"));
    assert!(!n.iter().any(|k| k.ends_with("linear.bias")), "MoCo v3 Linear layers have no bias");
    // Affine-free BN in training: each output feature has batch mean 0 and variance 1.
    let z = head.forward_t(&Tensor::randn([16, 8], CPU), true);
    let mean = z.mean_dim(0, false, Kind::Float).abs().max().double_value(&[]);
    let var = z.var_dim(0, false, false);
    assert!(mean < 1e-5);
    assert!((var - 1.0).abs().max().double_value(&[]) < 1e-3);
}

#[test]
fn training_updates_batch_norm_statistics_and_eval_does_not() {
    let (vs, head) = build(&shrink(MlpHeadConfig::byol_projector(8)));
    let running = vs.variables()["layers.0.bn.running_mean"].shallow_clone();
    let x = Tensor::randn([4, 8], CPU) + 3.0;
    let _ = head.forward_t(&x, false);
    assert_eq!(running.abs().sum(Kind::Float).double_value(&[]), 0.0);
    let _ = head.forward_t(&x, true);
    assert!(running.abs().sum(Kind::Float).double_value(&[]) > 0.0);
}

#[test]
fn initialisation_is_pytorchs_linear_default() {
    tch::manual_seed(0);
    let (vs, _) = build(&MlpHeadConfig::moco_v2_projector(64));
    let v = vs.variables();
    for n in ["layers.0.linear.weight", "layers.0.linear.bias"] {
        let m = v[n].abs().max().double_value(&[]);
        assert!(m <= 1.0 / 8.0 && m > 0.1, "{n}: {m}");
    }
    let (vs, _) = build(&shrink(MlpHeadConfig::byol_projector(8)));
    assert_eq!(vs.variables()["layers.0.bn.weight"].min().double_value(&[]), 1.0);
}

#[test]
fn validation_names_the_field() {
    let field_of = |cfg: MlpHeadConfig| match cfg.validate() {
        Err(Error::Config { field, .. }) => field,
        other => panic!("expected a config error, got {other:?}"),
    };
    let base = MlpHeadConfig::simclr(8, 4);
    assert_eq!(field_of(MlpHeadConfig { layers: 0, ..base.clone() }), "layers");
    assert_eq!(field_of(MlpHeadConfig { in_dim: 0, ..base.clone() }), "in_dim");
    assert_eq!(field_of(MlpHeadConfig { out_dim: -1, ..base.clone() }), "out_dim");
    assert_eq!(field_of(MlpHeadConfig { hidden_dim: 0, ..base.clone() }), "hidden_dim");
    assert!(MlpHeadConfig { hidden_dim: 0, layers: 1, ..base.clone() }.validate().is_ok());
    let vs = nn::VarStore::new(Device::Cpu);
    assert!(MlpHead::new(vs.root(), &MlpHeadConfig { layers: 0, ..base }).is_err());
}

#[test]
fn serde_round_trips_and_rejects_unknown_fields() {
    let cfg = MlpHeadConfig::moco_v3_projector(384);
    let json = serde_json::to_string(&cfg).unwrap();
    assert!(json.contains(r#""activation":"relu""#), "{json}");
    assert_eq!(serde_json::from_str::<MlpHeadConfig>(&json).unwrap(), cfg);
    let err =
        serde_json::from_str::<MlpHeadConfig>(r#"{"in_dim": 8, "hidden_dim": 8, "out_dim": 4, "bn": true}"#)
            .unwrap_err();
    assert!(err.to_string().contains("bn"), "{err}");
}

#[test]
fn bad_inputs_are_errors() {
    let (_vs, head) = build(&shrink(MlpHeadConfig::byol_projector(8)));
    let err = head.f_forward_t(&Tensor::randn([4, 7], CPU), false).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    assert!(head.f_forward_t(&Tensor::randn([4, 2, 8], CPU), false).is_err());
    let one = Tensor::randn([1, 8], CPU);
    assert!(matches!(head.f_forward_t(&one, true), Err(Error::InvalidArgument { .. })));
    assert_eq!(head.forward_t(&one, false).size(), [1, 6]);
}

#[test]
fn works_as_a_tch_module() {
    let (_vs, head) = build(&MlpHeadConfig::simclr(8, 4));
    let seq = nn::seq_t().add(head);
    let x = Tensor::randn([3, 8], CPU);
    assert_eq!(nn::ModuleT::forward_t(&seq, &x, false).size(), [3, 4]);
}
