//! Tests of [`super`] (the transformer block and stack), kept apart for file length.
#![allow(clippy::unwrap_used)] // in tests a panic is the failure report

use super::*;
use tch::{Device, IndexOp};

const D: i64 = 8;
const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

fn stack(cfg: &TransformerConfig) -> (nn::VarStore, Transformer) {
    let vs = nn::VarStore::new(Device::Cpu);
    let t = Transformer::new(vs.root(), cfg).unwrap();
    (vs, t)
}

fn small() -> TransformerConfig {
    TransformerConfig::new(D, 2, 2)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn bool_mask(rows: &[&[bool]]) -> Tensor {
    let flat: Vec<bool> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, -1])
}

#[test]
fn output_has_the_input_shape() {
    tch::manual_seed(0);
    let (_vs, t) = stack(&small());
    let x = Tensor::randn([2, 5, D], CPU);
    for causal in [false, true] {
        assert_eq!(t.forward(&x, None, causal, false).size(), [2, 5, D]);
    }
}

#[test]
fn causal_outputs_ignore_later_tokens() {
    tch::manual_seed(1);
    let (_vs, t) = stack(&small());
    let x = Tensor::randn([2, 6, D], CPU);
    let y = t.forward(&x, None, true, false);
    for pos in 0..5 {
        let x2 = x.copy();
        x2.i((.., pos + 1..)).copy_(&Tensor::randn([2, 5 - pos, D], CPU));
        let y2 = t.forward(&x2, None, true, false);
        assert!(max_diff(&y.i((.., ..=pos)), &y2.i((.., ..=pos))) < 1e-5, "pos {pos}");
        assert!(max_diff(&y.i((.., pos + 1..)), &y2.i((.., pos + 1..))) > 1e-3);
    }
}

#[test]
fn padded_tokens_do_not_change_real_outputs() {
    tch::manual_seed(2);
    let (_vs, t) = stack(&small());
    let x = Tensor::randn([2, 5, D], CPU);
    let right = bool_mask(&[&[true, true, true, false, false], &[true; 5]]);
    let left = bool_mask(&[&[false, false, true, true, true], &[true; 5]]);
    for causal in [false, true] {
        for mask in [&right, &left] {
            let y = t.forward(&x, Some(mask), causal, false);
            let noise = Tensor::randn([2, 5, D], CPU) * 10.0;
            let x2 = x.where_self(&mask.unsqueeze(-1), &noise);
            let y2 = t.forward(&x2, Some(mask), causal, false);
            let real = mask.unsqueeze(-1).expand_as(&y);
            let diff = max_diff(&y.masked_select(&real), &y2.masked_select(&real));
            assert!(diff < 1e-5, "causal {causal}: {diff}");
            assert!(y.isfinite().all().int64_value(&[]) == 1, "non-finite output");
        }
    }
}

#[test]
fn causal_with_padding_matches_causal_alone_on_unpadded_rows() {
    tch::manual_seed(3);
    let (_vs, t) = stack(&small());
    let x = Tensor::randn([2, 4, D], CPU);
    let all_real = Tensor::ones([2, 4], (Kind::Bool, Device::Cpu));
    let a = t.forward(&x, Some(&all_real), true, false);
    let b = t.forward(&x, None, true, false);
    assert!(max_diff(&a, &b) < 1e-5);
}

#[test]
fn fully_padded_sequence_stays_finite_and_isolated() {
    tch::manual_seed(4);
    let (_vs, t) = stack(&small());
    let x = Tensor::randn([2, 3, D], CPU);
    let mask = bool_mask(&[&[false; 3], &[true, true, false]]);
    let y = t.forward(&x, Some(&mask), false, false);
    assert!(y.isfinite().all().int64_value(&[]) == 1);
    let alone = t.forward(&x.i(1..), Some(&mask.i(1..)), false, false);
    assert!(max_diff(&y.i((1, ..2)), &alone.i((0, ..2))) < 1e-5);
}

#[test]
fn eval_is_deterministic_and_train_applies_dropout() {
    let cfg = TransformerConfig { dropout: 0.5, attn_dropout: 0.5, ..small() };
    let (_vs, t) = stack(&cfg);
    let x = Tensor::randn([2, 5, D], CPU);
    let a = t.forward(&x, None, false, false);
    let b = t.forward(&x, None, false, false);
    assert_eq!(max_diff(&a, &b), 0.0);
    let c = t.forward(&x, None, false, true);
    assert!(max_diff(&a, &c) > 1e-3);
}

#[test]
fn block_matches_a_per_head_reference() {
    tch::manual_seed(5);
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = TransformerConfig::new(D, 1, 2);
    let blk = TransformerBlock::new(vs.root(), &cfg).unwrap();
    // Move the zero biases away from zero so that the reference checks them too.
    tch::no_grad(|| {
        for (_, mut v) in vs.variables() {
            let _ = v.f_add_(&(Tensor::randn(v.size(), CPU) * 0.1)).unwrap();
        }
    });
    let x = Tensor::randn([2, 4, D], CPU);
    let ln = |x: &Tensor, n: &nn::LayerNorm| {
        x.layer_norm([D], n.ws.as_ref(), n.bs.as_ref(), VIT_LAYER_NORM_EPS, false)
    };
    let lin = |x: &Tensor, l: &nn::Linear, rows: Option<(i64, i64)>| match rows {
        Some((start, len)) => {
            x.linear(&l.ws.narrow(0, start, len), l.bs.as_ref().map(|b| b.narrow(0, start, len)).as_ref())
        }
        None => x.linear(&l.ws, l.bs.as_ref()),
    };
    for causal in [false, true] {
        let h = ln(&x, &blk.norm1);
        let dh = D / 2;
        let heads: Vec<Tensor> = (0..2)
            .map(|j| {
                let q = lin(&h, &blk.qkv, Some((j * dh, dh)));
                let k = lin(&h, &blk.qkv, Some((D + j * dh, dh)));
                let v = lin(&h, &blk.qkv, Some((2 * D + j * dh, dh)));
                let mut s = q.matmul(&k.transpose(1, 2)) / (dh as f64).sqrt();
                if causal {
                    let above = Tensor::ones([4, 4], (Kind::Bool, Device::Cpu)).triu(1);
                    s = s.masked_fill(&above, f64::NEG_INFINITY);
                }
                s.softmax(-1, Kind::Float).matmul(&v)
            })
            .collect();
        let x1 = &x + lin(&Tensor::cat(&heads, -1), &blk.proj, None);
        let m = lin(&lin(&ln(&x1, &blk.norm2), &blk.fc1, None).gelu("none"), &blk.fc2, None);
        let expected = &x1 + m;
        let got = blk.forward(&x, None, causal, false);
        assert!(max_diff(&got, &expected) < 1e-5, "causal {causal}");
    }
}

#[test]
fn parameter_names_mirror_timm() {
    let (vs, _t) = stack(&small());
    let names = vs.variables();
    for i in 0..2 {
        for p in [
            "norm1.weight",
            "norm1.bias",
            "attn.qkv.weight",
            "attn.qkv.bias",
            "attn.proj.weight",
            "attn.proj.bias",
            "norm2.weight",
            "norm2.bias",
            "mlp.fc1.weight",
            "mlp.fc1.bias",
            "mlp.fc2.weight",
            "mlp.fc2.bias",
        ] {
            assert!(names.contains_key(&format!("blocks.{i}.{p}")), "missing blocks.{i}.{p}");
        }
    }
    assert!(names.contains_key("norm.weight") && names.contains_key("norm.bias"));
    assert_eq!(names.len(), 2 * 12 + 2);
    assert_eq!(names["blocks.0.attn.qkv.weight"].size(), [3 * D, D]);
    assert_eq!(names["blocks.0.mlp.fc1.weight"].size(), [4 * D, D]);

    let (vs, _t) = stack(&TransformerConfig { qkv_bias: false, ..small() });
    assert!(!vs.variables().contains_key("blocks.0.attn.qkv.bias"));
}

#[test]
fn initialisation_follows_the_config() {
    tch::manual_seed(6);
    let cfg = TransformerConfig { dim: 64, depth: 8, heads: 4, ..small() };
    let (vs, _t) = stack(&cfg);
    let v = vs.variables();
    let max_abs = |n: &str| v[n].abs().max().double_value(&[]);
    assert_eq!(max_abs("blocks.0.attn.qkv.bias"), 0.0);
    assert_eq!(max_abs("blocks.3.mlp.fc2.bias"), 0.0);
    assert_eq!(v["norm.weight"].min().double_value(&[]), 1.0);
    assert_eq!(max_abs("blocks.0.norm1.bias"), 0.0);
    assert!(max_abs("blocks.0.attn.proj.weight") <= 2.0 * BERT_INIT_STD);
    let std = v["blocks.0.mlp.fc1.weight"].std(true).double_value(&[]);
    assert!((std - 0.8796 * BERT_INIT_STD).abs() < 0.002, "{std}");

    let scaled = TransformerConfig { scaled_residual_init: true, ..cfg.clone() };
    let (vs, _t) = stack(&scaled);
    let v = vs.variables();
    let bound = 2.0 * init::scaled_residual_std(BERT_INIT_STD, 8);
    for n in ["blocks.2.attn.proj.weight", "blocks.5.mlp.fc2.weight"] {
        assert!(v[n].abs().max().double_value(&[]) <= bound, "{n}");
    }
    assert!(v["blocks.2.attn.qkv.weight"].abs().max().double_value(&[]) > bound);

    let xavier = TransformerConfig { init: InitScheme::XavierUniform, ..cfg };
    let (vs, _t) = stack(&xavier);
    let qkv = &vs.variables()["blocks.0.attn.qkv.weight"];
    let a = (6.0f64 / (64.0 + 192.0)).sqrt(); // fused [3D, D] matrix, as MAE
    assert!(qkv.abs().max().double_value(&[]) <= a + 1e-6);
    assert!(qkv.abs().max().double_value(&[]) > 0.9 * a);
}

#[test]
fn validation_names_the_field() {
    let field_of = |cfg: TransformerConfig| match cfg.validate() {
        Err(Error::Config { field, .. }) => field,
        other => panic!("expected a config error, got {other:?}"),
    };
    assert_eq!(field_of(TransformerConfig::new(0, 2, 2)), "dim");
    assert_eq!(field_of(TransformerConfig::new(8, 2, 0)), "heads");
    assert_eq!(field_of(TransformerConfig::new(8, 2, 3)), "heads");
    assert_eq!(field_of(TransformerConfig::new(8, 0, 2)), "depth");
    assert_eq!(field_of(TransformerConfig { mlp_ratio: 0.0, ..small() }), "mlp_ratio");
    assert_eq!(field_of(TransformerConfig { mlp_ratio: f64::NAN, ..small() }), "mlp_ratio");
    assert_eq!(field_of(TransformerConfig { dropout: 1.0, ..small() }), "dropout");
    assert_eq!(field_of(TransformerConfig { attn_dropout: -0.1, ..small() }), "attn_dropout");
    assert_eq!(field_of(TransformerConfig { layer_norm_eps: 0.0, ..small() }), "layer_norm_eps");
    assert!(small().validate().is_ok());
    let vs = nn::VarStore::new(Device::Cpu);
    assert!(Transformer::new(vs.root(), &TransformerConfig::new(8, 2, 3)).is_err());
    assert!(TransformerBlock::new(vs.root(), &TransformerConfig::new(8, 2, 3)).is_err());
}

#[test]
fn serde_fills_defaults_and_rejects_unknown_fields() {
    let cfg: TransformerConfig =
        serde_json::from_str(r#"{"dim": 8, "depth": 2, "heads": 2, "init": "xavier_uniform"}"#).unwrap();
    assert_eq!(cfg, TransformerConfig { init: InitScheme::XavierUniform, ..small() });
    assert_eq!(cfg.mlp_ratio, 4.0);
    assert_eq!(cfg.layer_norm_eps, 1e-6);
    assert!(cfg.qkv_bias && !cfg.scaled_residual_init);
    let err = serde_json::from_str::<TransformerConfig>(r#"{"dim": 8, "depth": 2, "heads": 2, "drop": 0.1}"#)
        .unwrap_err();
    assert!(err.to_string().contains("drop"), "{err}");
    let back: TransformerConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
    assert_eq!(back, cfg);
}

#[test]
fn constants_are_pinned() {
    assert_eq!(DEFAULT_MLP_RATIO, 4.0);
    assert_eq!(VIT_LAYER_NORM_EPS, 1e-6);
}

#[test]
fn bad_inputs_are_errors() {
    let (_vs, t) = stack(&small());
    let x = Tensor::randn([2, 3, D], CPU);
    assert!(matches!(
        t.f_forward(&Tensor::randn([2, 3, D + 1], CPU), None, false, false),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(t.f_forward(&x.i(0), None, false, false), Err(Error::Shape { .. })));
    let wrong_shape = Tensor::ones([2, 4], (Kind::Bool, Device::Cpu));
    let err = t.f_forward(&x, Some(&wrong_shape), false, false).unwrap_err();
    assert!(err.to_string().contains("key_padding_mask"), "{err}");
    let not_bool = Tensor::ones([2, 3], (Kind::Int64, Device::Cpu));
    let err = t.f_forward(&x, Some(&not_bool), true, false).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
}

#[test]
fn post_ln_block_matches_a_reference_and_has_no_final_norm() {
    tch::manual_seed(8);
    let cfg = TransformerConfig {
        norm_placement: NormPlacement::Post,
        activation: MlpActivation::GeluTanh,
        layer_norm_eps: 1e-12,
        ..TransformerConfig::new(D, 1, 2)
    };
    let (vs, t) = stack(&cfg);
    assert!(!vs.variables().contains_key("norm.weight"));
    assert_eq!(vs.variables().len(), 12);
    let v = vs.variables();
    let x = Tensor::randn([2, 3, D], CPU);
    let lin = |x: &Tensor, n: &str| {
        x.linear(&v[&format!("blocks.0.{n}.weight")], Some(&v[&format!("blocks.0.{n}.bias")]))
    };
    let ln = |x: &Tensor, n: &str| {
        let (w, b) = (&v[&format!("blocks.0.{n}.weight")], &v[&format!("blocks.0.{n}.bias")]);
        x.layer_norm([D], Some(w), Some(b), 1e-12, false)
    };
    // Attention written out per head, as `block_matches_a_per_head_reference` does.
    let qkv = lin(&x, "attn.qkv").view([2, 3, 3, 2, D / 2]).permute([2, 0, 3, 1, 4]);
    let (q, k, vv) = (qkv.get(0), qkv.get(1), qkv.get(2));
    let w = (q.matmul(&k.transpose(-2, -1)) / ((D / 2) as f64).sqrt()).softmax(-1, Kind::Float);
    let a = lin(&w.matmul(&vv).transpose(1, 2).reshape([2, 3, D]), "attn.proj");
    let x1 = ln(&(&x + a), "norm1");
    let m = lin(&lin(&x1, "mlp.fc1").gelu("tanh"), "mlp.fc2");
    let expected = ln(&(&x1 + m), "norm2");
    assert!(max_diff(&t.forward(&x, None, false, false), &expected) < 1e-5);
}

#[test]
fn cached_decoding_matches_the_full_causal_pass() {
    tch::manual_seed(9);
    for placement in [NormPlacement::Pre, NormPlacement::Post] {
        let (_vs, t) =
            stack(&TransformerConfig { norm_placement: placement, ..TransformerConfig::new(D, 3, 2) });
        let x = Tensor::randn([2, 7, D], CPU);
        let full = t.forward(&x, None, true, false);
        // A prompt of 3 tokens, then 2, then one at a time.
        let (y0, caches) = t.f_forward_cached(&x.i((.., ..3)), None).unwrap();
        let (y1, caches) = t.f_forward_cached(&x.i((.., 3..5)), Some(&caches)).unwrap();
        let (y2, caches) = t.f_forward_cached(&x.i((.., 5..6)), Some(&caches)).unwrap();
        let (y3, caches) = t.f_forward_cached(&x.i((.., 6..)), Some(&caches)).unwrap();
        let pieces = Tensor::cat(&[y0, y1, y2, y3], 1);
        assert!(max_diff(&pieces, &full) < 1e-5, "{placement:?}");
        assert_eq!(caches.len(), 3);
        assert_eq!(caches[0].keys.size(), [2, 2, 7, D / 2]);
        assert_eq!(caches[2].len(), 7);
    }
    let (_vs, t) = stack(&small());
    let x = Tensor::randn([1, 2, D], CPU);
    let (_, caches) = t.f_forward_cached(&x, None).unwrap();
    assert!(matches!(t.f_forward_cached(&x, Some(&caches[..1])), Err(Error::InvalidArgument { .. })));
}
