//! Tests of [`super`] (ResNet backbones), kept apart for file length.
#![allow(clippy::unwrap_used)] // in tests a panic is the failure report

use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;
use tch::{Device, Kind};

const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

fn build(cfg: &ResNetConfig) -> (nn::VarStore, ResNet) {
    let vs = nn::VarStore::new(Device::Cpu);
    let net = ResNet::new(vs.root(), cfg).unwrap();
    (vs, net)
}

fn trainable_params(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}

/// The number of trainable parameters, counted from the paper's tables rather than from the
/// module tree: a `k x k` convolution from `a` to `b` channels has `k² a b` weights, a
/// BatchNorm over `c` channels `2c` (weight and bias).
fn expected_params(cfg: &ResNetConfig) -> i64 {
    let (w, e) = (cfg.base_width, cfg.depth.expansion());
    let stem_kernel = if cfg.small_images { 3 } else { 7 };
    let mut n = stem_kernel * stem_kernel * cfg.in_channels * w + 2 * w;
    let mut c_in = w;
    for (i, blocks) in cfg.depth.blocks().into_iter().enumerate() {
        let p = w << i;
        for b in 0..blocks {
            n += if cfg.depth.bottleneck() {
                c_in * p + 9 * p * p + p * 4 * p + 2 * (2 * p) + 2 * (4 * p)
            } else {
                9 * c_in * p + 9 * p * p + 2 * (2 * p)
            };
            let stride = if i > 0 && b == 0 { 2 } else { 1 };
            if stride != 1 || c_in != p * e {
                n += c_in * p * e + 2 * (p * e);
            }
            c_in = p * e;
        }
    }
    n
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

fn var(vs: &nn::VarStore, name: &str) -> Tensor {
    vs.variables().remove(name).unwrap_or_else(|| panic!("no variable {name}"))
}

#[test]
fn constants_are_pinned() {
    assert_eq!((BN_EPS, BN_MOMENTUM), (1e-5, 0.1));
    assert_eq!((STANDARD_BASE_WIDTH, BOTTLENECK_EXPANSION, TINY_BASE_WIDTH), (64, 4, 8));
    assert_eq!(ResNetDepth::R18.blocks(), [2, 2, 2, 2]);
    assert_eq!(ResNetDepth::R34.blocks(), [3, 4, 6, 3]);
    assert_eq!(ResNetDepth::R50.blocks(), [3, 4, 6, 3]);
    let expansions: Vec<_> = ResNetDepth::ALL.iter().map(|d| d.expansion()).collect();
    assert_eq!(expansions, [1, 1, 4]);
    assert_eq!(ResNetDepth::R34.to_string(), "ResNet-34");
}

#[test]
fn presets() {
    for (cfg, depth, dim) in [
        (ResNetConfig::resnet18(), ResNetDepth::R18, 512),
        (ResNetConfig::resnet34(), ResNetDepth::R34, 512),
        (ResNetConfig::resnet50(), ResNetDepth::R50, 2048),
    ] {
        assert_eq!(cfg.depth, depth);
        assert_eq!(
            (cfg.base_width, cfg.in_channels, cfg.small_images, cfg.zero_init_residual),
            (64, 3, false, false)
        );
        assert_eq!(cfg.output_dim(), dim);
    }
    let tiny = ResNetConfig::tiny();
    assert_eq!((tiny.depth, tiny.base_width, tiny.small_images), (ResNetDepth::R18, 8, true));
    assert_eq!(tiny.output_dim(), 64);
}

/// torchvision's `resnet18/34/50()` have 11,689,512 / 21,797,672 / 25,557,032 parameters; their
/// `fc` (512 → 1000, or 2048 → 1000, with bias) has 513,000 / 513,000 / 2,049,000.
#[test]
fn parameter_counts_match_torchvision_without_fc() {
    for (cfg, torchvision_total, fc) in [
        (ResNetConfig::resnet18(), 11_689_512, 512 * 1000 + 1000),
        (ResNetConfig::resnet34(), 21_797_672, 512 * 1000 + 1000),
        (ResNetConfig::resnet50(), 25_557_032, 2048 * 1000 + 1000),
    ] {
        let (vs, net) = build(&cfg);
        assert_eq!(trainable_params(&vs), torchvision_total - fc, "{}", cfg.depth);
        assert_eq!(trainable_params(&vs), expected_params(&cfg), "{}", cfg.depth);
        assert_eq!(net.output_dim(), cfg.output_dim());
    }
    assert_eq!(expected_params(&ResNetConfig::resnet18()), 11_176_512);
    assert_eq!(expected_params(&ResNetConfig::resnet50()), 23_508_032);
}

#[test]
fn tiny_is_small() {
    let (vs, _) = build(&ResNetConfig::tiny());
    assert_eq!(trainable_params(&vs), 175_752);
}

/// The full key set of torchvision's `resnet18().state_dict()` minus `fc.*` and
/// `*.num_batches_tracked`.
fn torchvision_resnet18_keys() -> BTreeSet<String> {
    let bn = |p: &str| ["weight", "bias", "running_mean", "running_var"].map(|s| format!("{p}.{s}"));
    let mut keys: BTreeSet<String> = BTreeSet::from(["conv1.weight".to_string()]);
    keys.extend(bn("bn1"));
    for layer in 1..=4 {
        for block in 0..2 {
            let p = format!("layer{layer}.{block}");
            for i in 1..=2 {
                keys.insert(format!("{p}.conv{i}.weight"));
                keys.extend(bn(&format!("{p}.bn{i}")));
            }
            if layer > 1 && block == 0 {
                keys.insert(format!("{p}.downsample.0.weight"));
                keys.extend(bn(&format!("{p}.downsample.1")));
            }
        }
    }
    keys
}

#[test]
fn names_mirror_torchvision_state_dict_keys() {
    let (vs, _) = build(&ResNetConfig::tiny());
    let names: BTreeSet<String> = vs.variables().into_keys().collect();
    assert_eq!(names, torchvision_resnet18_keys());

    let cfg = ResNetConfig { base_width: 4, ..ResNetConfig::resnet50() };
    let (vs, _) = build(&cfg);
    let vars = vs.variables();
    for (name, shape) in [
        ("conv1.weight", vec![4, 3, 7, 7]),
        ("layer1.0.conv1.weight", vec![4, 4, 1, 1]),
        ("layer1.0.conv3.weight", vec![16, 4, 1, 1]),
        ("layer1.0.bn3.running_var", vec![16]),
        ("layer1.0.downsample.0.weight", vec![16, 4, 1, 1]), // channels change in layer1 too
        ("layer2.0.conv2.weight", vec![8, 8, 3, 3]),
        ("layer2.0.downsample.1.bias", vec![32]),
        ("layer4.2.conv3.weight", vec![128, 32, 1, 1]),
    ] {
        assert_eq!(vars.get(name).map(Tensor::size), Some(shape), "{name}");
    }
    assert!(!vars.contains_key("layer1.1.downsample.0.weight"));
    assert!(!vars.keys().any(|k| k.contains("conv") && k.ends_with(".bias")), "convolutions have no bias");
    assert_eq!(vars.keys().filter(|k| k.ends_with("downsample.0.weight")).count(), 4);
}

#[test]
fn names_nest_under_the_given_path() {
    let vs = nn::VarStore::new(Device::Cpu);
    let _ = ResNet::new(vs.root() / "online" / "backbone", &ResNetConfig::tiny()).unwrap();
    let names = vs.variables();
    assert!(names.contains_key("online.backbone.layer3.0.downsample.0.weight"));
    assert!(names.keys().all(|k| k.starts_with("online.backbone.")));
}

#[test]
fn bottleneck_strides_on_the_3x3_convolution() {
    let (_, net) = build(&ResNetConfig { base_width: 4, ..ResNetConfig::resnet50() });
    let strides =
        |b: &Block| b.branch.iter().map(|cb| (cb.conv.ws.size()[2], cb.conv.stride)).collect::<Vec<_>>();
    assert_eq!(strides(&net.stages[0][0]), [(1, 1), (3, 1), (1, 1)]);
    for stage in &net.stages[1..] {
        assert_eq!(strides(&stage[0]), [(1, 1), (3, 2), (1, 1)]);
        assert_eq!(stage[0].downsample.as_ref().unwrap().conv.stride, 2);
    }
    let (_, net) = build(&ResNetConfig::tiny());
    assert_eq!(strides(&net.stages[1][0]), [(3, 2), (3, 1)]);
    assert!(net.stages[0][0].downsample.is_none(), "basic layer1 keeps the shape");
}

#[test]
fn output_shapes_for_both_stems() {
    let r50 = ResNetConfig { base_width: 4, ..ResNetConfig::resnet50() };
    // (config, input side, side of the last feature map)
    for (cfg, side, out_side) in [
        (ResNetConfig::tiny(), 32, 4), // output stride 8
        (ResNetConfig::tiny(), 16, 2),
        (ResNetConfig { small_images: false, ..ResNetConfig::tiny() }, 32, 1), // output stride 32
        (ResNetConfig { small_images: true, ..r50.clone() }, 16, 2),
        (r50.clone(), 32, 1),
        (r50, 17, 1), // odd sides round up at each stride
    ] {
        let (_, net) = build(&cfg);
        let x = Tensor::randn([2, 3, side, side], CPU);
        let features = net.features(&x, false).unwrap();
        assert_eq!(features.size(), [2, cfg.output_dim(), out_side, out_side], "{cfg:?} on {side} px");
        for train in [false, true] {
            let h = net.forward_t(&x, train);
            assert_eq!(h.size(), [2, cfg.output_dim()], "{cfg:?}");
        }
        // The representation is the spatial mean of the last feature map.
        let features = net.features(&x, false).unwrap();
        let h = net.forward_t(&x, false);
        assert!(max_abs(&(h - features.mean_dim([2, 3].as_slice(), false, None))) < 1e-6);
    }
}

#[test]
fn encoder_is_forward_t() {
    let (_, net) = build(&ResNetConfig::tiny());
    let x = Tensor::randn([3, 3, 8, 8], CPU);
    assert_eq!(net.output_dim(), 64);
    assert_eq!(net.encode(&x, false), net.forward_t(&x, false));
    assert_eq!(nn::ModuleT::forward_t(&net, &x, false), net.forward_t(&x, false));
}

#[test]
fn grayscale_input() {
    let (vs, net) = build(&ResNetConfig { in_channels: 1, ..ResNetConfig::tiny() });
    assert_eq!(var(&vs, "conv1.weight").size(), [8, 1, 3, 3]);
    assert_eq!(net.forward_t(&Tensor::randn([2, 1, 16, 16], CPU), true).size(), [2, 64]);
}

#[test]
fn eval_is_deterministic_and_train_updates_running_stats() {
    tch::manual_seed(0);
    let (vs, net) = build(&ResNetConfig::tiny());
    let x = Tensor::randn([4, 3, 16, 16], CPU) * 3.0 + 1.0;
    let stats = || {
        [
            "bn1.running_mean",
            "bn1.running_var",
            "layer4.1.bn2.running_mean",
            "layer2.0.downsample.1.running_var",
        ]
        .map(|n| var(&vs, n).copy())
    };

    let before = stats();
    let a = net.forward_t(&x, false);
    let b = net.forward_t(&x, false);
    assert_eq!(a, b, "eval mode is deterministic");
    for (s, t) in before.iter().zip(stats().iter()) {
        assert_eq!(s, t, "eval mode leaves the running statistics alone");
    }

    let _ = net.forward_t(&x, true);
    for (s, t) in before.iter().zip(stats().iter()) {
        assert!(max_abs(&(s - t)) > 1e-4, "train mode updates the running statistics");
    }
    // The stem's running mean moved by momentum · (batch mean - 0).
    let conv = net.stem.conv.forward(&x).unwrap();
    let batch_mean = conv.mean_dim([0, 2, 3].as_slice(), false, None);
    assert!(max_abs(&(var(&vs, "bn1.running_mean") - batch_mean * BN_MOMENTUM)) < 1e-5);
    // Train mode normalises with batch statistics, so it differs from eval mode.
    assert!(max_abs(&(net.forward_t(&x, true) - net.forward_t(&x, false))) > 1e-4);
}

#[test]
fn init_matches_torchvision() {
    tch::manual_seed(1);
    let (vs, _) = build(&ResNetConfig::tiny());
    // Every convolution weight divided by its fan-out standard deviation √(2 / (out · k²)) is
    // standard normal (a fan-in scaling would give 1.4 to 2 for the stem and the wider layers).
    let normalised: Vec<Tensor> = vs
        .variables()
        .into_iter()
        .filter(|(k, _)| k.ends_with("weight") && vs.variables()[k].dim() == 4)
        .map(|(_, w)| {
            let s = w.size();
            let fan_out = (s[0] * s[2] * s[3]) as f64;
            w.flatten(0, -1) / (2.0 / fan_out).sqrt()
        })
        .collect();
    let all = Tensor::cat(&normalised, 0);
    assert!(all.numel() > 170_000);
    let std = all.std(true).double_value(&[]);
    assert!((std - 1.0).abs() < 0.02, "normalised std {std}");
    assert!(all.mean(Kind::Float).double_value(&[]).abs() < 0.02);

    for (name, t) in vs.variables() {
        if t.dim() != 1 {
            continue;
        }
        let expected = if name.ends_with("weight") || name.ends_with("running_var") { 1.0 } else { 0.0 };
        assert!(max_abs(&(t - expected)) == 0.0, "{name} starts at {expected}");
    }
}

#[test]
fn zero_init_residual_makes_every_block_start_as_its_shortcut() {
    let r50 = ResNetConfig { base_width: 4, ..ResNetConfig::resnet50() };
    for cfg in [ResNetConfig::tiny(), r50] {
        let cfg = ResNetConfig { zero_init_residual: true, ..cfg };
        let (vs, net) = build(&cfg);
        let last_bn = if cfg.depth.bottleneck() { "bn3" } else { "bn2" };
        let mut zeroed = 0;
        for (name, t) in vs.variables() {
            if name.ends_with(&format!("{last_bn}.weight")) {
                assert_eq!(max_abs(&t), 0.0, "{name}");
                zeroed += 1;
            } else if name.ends_with("weight") && t.dim() == 1 {
                assert_eq!(max_abs(&(t - 1.0)), 0.0, "{name} (the shortcut's BN is not zeroed)");
            }
        }
        assert_eq!(zeroed, cfg.depth.blocks().iter().sum::<usize>());

        for train in [false, true] {
            let x = Tensor::randn([2, 3, 16, 16], CPU);
            let mut h = net.stem.forward(&x, train).unwrap().relu();
            for block in net.stages.iter().flatten() {
                assert_eq!(max_abs(&block.residual(&h, train).unwrap()), 0.0);
                let out = block.forward(&h, train).unwrap();
                let shortcut = block.shortcut(&h, train).unwrap();
                assert_eq!(out, shortcut.relu(), "block output = relu(shortcut)");
                if block.downsample.is_none() {
                    assert_eq!(out, h, "an identity block passes its (non-negative) input through");
                }
                h = out;
            }
        }
    }
    // Without the flag the branches are live.
    let (_, net) = build(&ResNetConfig::tiny());
    let h = net.stem.forward(&Tensor::randn([2, 3, 8, 8], CPU), false).unwrap().relu();
    assert!(max_abs(&net.stages[0][0].residual(&h, false).unwrap()) > 0.0);
}

fn shape_error(net: &ResNet, x: &Tensor) -> (String, String, Vec<i64>) {
    match net.f_forward_t(x, false) {
        Err(Error::Shape { what, expected, actual }) => (what, expected, actual),
        other => panic!("expected a shape error, got {other:?}"),
    }
}

#[test]
fn input_shape_errors_name_the_input() {
    let (_, net) = build(&ResNetConfig::tiny());
    for shape in [vec![3, 16, 16], vec![2, 3, 16, 16, 1], vec![2, 1, 16, 16], vec![2, 4, 16, 16]] {
        let (what, expected, actual) = shape_error(&net, &Tensor::zeros(shape.as_slice(), CPU));
        assert_eq!((what.as_str(), expected.as_str(), actual), ("ResNet input", "[B, 3, H, W]", shape));
    }
    let err = net.f_forward_t(&Tensor::zeros([2, 1, 8, 8], CPU), false).unwrap_err();
    assert!(err.to_string().contains("ResNet input"), "{err}");
}

#[test]
#[should_panic(expected = "ResNet input")]
fn forward_t_panics_on_a_bad_input() {
    let (_, net) = build(&ResNetConfig::tiny());
    let _ = net.forward_t(&Tensor::zeros([2, 16, 16], CPU), false);
}

#[test]
fn training_on_one_value_per_channel_is_an_error_not_a_panic() {
    // Training BatchNorm on one image whose last feature map is 1x1 sees one value per channel.
    let (_, net) = build(&ResNetConfig::tiny());
    assert_eq!(net.output_stride(), 8);
    for side in [1, 7, 8] {
        let x = Tensor::randn([1, 3, side, side], CPU);
        match net.f_forward_t(&x, true) {
            Err(Error::InvalidArgument { name, message }) => {
                assert_eq!(name, "x");
                assert!(message.contains("1x1x1 at the last stage"), "{message}");
            }
            other => panic!("expected an invalid argument, got {other:?}"),
        }
        assert!(net.f_forward_t(&x, false).is_ok(), "eval mode uses the running statistics");
    }
    // One more pixel, or one more image, is enough.
    assert!(net.f_forward_t(&Tensor::randn([1, 3, 8, 9], CPU), true).is_ok());
    assert!(net.f_forward_t(&Tensor::randn([2, 3, 8, 8], CPU), true).is_ok());
    let (_, net) = build(&ResNetConfig { small_images: false, ..ResNetConfig::tiny() });
    assert_eq!(net.output_stride(), 32);
    assert!(net.f_forward_t(&Tensor::randn([1, 3, 32, 32], CPU), true).is_err());
    assert!(net.f_forward_t(&Tensor::randn([1, 3, 33, 32], CPU), true).is_ok());
}

fn config_error_field(cfg: &ResNetConfig) -> String {
    match cfg.validate() {
        Err(Error::Config { field, .. }) => field,
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn config_validation_names_the_field() {
    for cfg in
        [ResNetConfig::resnet18(), ResNetConfig::resnet34(), ResNetConfig::resnet50(), ResNetConfig::tiny()]
    {
        cfg.validate().unwrap();
    }
    let base = ResNetConfig::tiny();
    for (cfg, field) in [
        (ResNetConfig { base_width: 0, ..base.clone() }, "base_width"),
        (ResNetConfig { base_width: -8, ..base.clone() }, "base_width"),
        (ResNetConfig { in_channels: 0, ..base.clone() }, "in_channels"),
    ] {
        assert_eq!(config_error_field(&cfg), field);
        let vs = nn::VarStore::new(Device::Cpu);
        let err = ResNet::new(vs.root(), &cfg).unwrap_err();
        assert!(err.to_string().contains(field), "{err}");
        assert!(vs.variables().is_empty(), "nothing is created from an invalid config");
    }
}

#[test]
fn serde_round_trip_and_defaults() {
    for cfg in [
        ResNetConfig::resnet18(),
        ResNetConfig::resnet34(),
        ResNetConfig::resnet50(),
        ResNetConfig::tiny(),
        ResNetConfig { in_channels: 1, zero_init_residual: true, ..ResNetConfig::tiny() },
    ] {
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(serde_json::from_str::<ResNetConfig>(&json).unwrap(), cfg, "{json}");
    }
    let json = serde_json::to_value(ResNetConfig::resnet50()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "depth": "50", "base_width": 64, "small_images": false, "in_channels": 3,
            "zero_init_residual": false, "channels_last": true
        })
    );

    let parse = |s: &str| serde_json::from_str::<ResNetConfig>(s);
    assert_eq!(parse(r#"{"depth": "34"}"#).unwrap(), ResNetConfig::resnet34());
    assert_eq!(parse(r#"{"depth": 50}"#).unwrap(), ResNetConfig::resnet50());
    let tiny = r#"{"depth": "18", "base_width": 8, "small_images": true}"#;
    assert_eq!(parse(tiny).unwrap(), ResNetConfig::tiny());

    let err = parse(r#"{"depth": "18", "zero_init": true}"#).unwrap_err().to_string();
    assert!(err.contains("unknown field `zero_init`"), "{err}");
    let err = parse(r#"{"base_width": 8}"#).unwrap_err().to_string();
    assert!(err.contains("missing field `depth`"), "{err}");
    for bad in [r#""101""#, "101", "-18", r#""resnet18""#, "18.0"] {
        let err = parse(&format!(r#"{{"depth": {bad}}}"#)).unwrap_err().to_string();
        assert!(err.contains(r#""18", "34" or "50""#), "{bad}: {err}");
    }
}

/// The channels-last layout changes the memory order only: outputs and gradients match the
/// NCHW network's.
#[test]
fn channels_last_computes_the_same_function() {
    let cfg = ResNetConfig { small_images: true, channels_last: false, ..ResNetConfig::tiny() };
    // The same weights by copy, not by re-seeding: tests running in parallel share libtorch's
    // global generator.
    let (vs, nchw) = build(&cfg);
    let (mut vs_cl, nhwc) = build(&ResNetConfig { channels_last: true, ..cfg });
    vs_cl.copy(&vs).unwrap();
    let x = Tensor::randn([4, 3, 16, 16], CPU);
    let (a, b) = (nchw.forward_t(&x, true), nhwc.forward_t(&x, true));
    assert!(a.allclose(&b, 1e-4, 1e-5, false), "max diff {}", (&a - &b).abs().max().double_value(&[]));
    b.sum(Kind::Float).backward();
    let grad = vs_cl.variables()["conv1.weight"].grad();
    assert!(
        bool::try_from(grad.isfinite().all()).unwrap() && grad.abs().sum(Kind::Float).double_value(&[]) > 0.0
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Any valid config builds a network with the closed-form parameter count that shrinks any
    /// image by its output stride (rounding up) and maps it to `[B, output_dim]`.
    #[test]
    fn any_config_maps_any_size_to_the_output_dim(
        depth in prop::sample::select(ResNetDepth::ALL.to_vec()),
        base_width in 1i64..=4,
        small_images in any::<bool>(),
        in_channels in 1i64..=3,
        zero_init_residual in any::<bool>(),
        channels_last in any::<bool>(),
        (h, w) in (1i64..=24, 1i64..=24),
    ) {
        let cfg =
            ResNetConfig { depth, base_width, small_images, in_channels, zero_init_residual, channels_last };
        let (vs, net) = build(&cfg);
        prop_assert_eq!(trainable_params(&vs), expected_params(&cfg));
        let x = Tensor::randn([2, in_channels, h, w], CPU);
        let s = net.output_stride();
        let side = |n: i64| (n + s - 1) / s;
        prop_assert_eq!(net.features(&x, false).unwrap().size(), vec![2, cfg.output_dim(), side(h), side(w)]);
        let y = net.f_forward_t(&x, false).unwrap();
        prop_assert_eq!(y.size(), vec![2, cfg.output_dim()]);
        prop_assert!(bool::try_from(y.isfinite().all()).unwrap());
    }
}
