//! Tests of [`super`] (ResNet backbones), kept apart for file length.
#![allow(clippy::unwrap_used)] // in tests a panic is the failure report

use super::*;
use ssl_core::Error;

#[test]
fn constants_are_pinned() {
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
            "zero_init_residual": false
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
