use super::*;
use crate::augment::presets;
use crate::testutil::tiny_pretrain_and_probe;

fn tiny_v2(queue_size: usize) -> MocoV2Config {
    MocoV2Config { backbone: ResNetConfig::tiny(), queue_size, momentum: 0.99, ..Default::default() }
}

fn tiny_v3() -> MocoV3Config {
    MocoV3Config { backbone: ResNetConfig::tiny(), hidden_dim: 32, out_dim: 16, ..Default::default() }
}

#[test]
fn recipe_constants_are_the_papers() {
    let v2 = MocoV2Config::default();
    assert_eq!((v2.momentum, v2.temperature, v2.queue_size, v2.out_dim), (0.999, 0.2, 65536, 128));
    let v3 = MocoV3Config::default();
    assert_eq!((v3.momentum, v3.temperature, v3.hidden_dim, v3.out_dim), (0.99, 1.0, 4096, 256));
    assert!(v3.momentum_cosine);
}

#[test]
fn a_queue_longer_than_the_dataset_is_refused_by_name() {
    let e = tiny_v2(100).check_dataset(64).unwrap_err().to_string();
    assert!(e.contains("model.queue_size") && e.contains("64"), "{e}");
    tiny_v2(64).check_dataset(64).unwrap();
    let e = MocoV2Config { temperature: 0.0, ..tiny_v2(8) }.validate().unwrap_err().to_string();
    assert!(e.contains("model.temperature"), "{e}");
    let e = MocoV3Config { momentum: 1.5, ..tiny_v3() }.validate().unwrap_err().to_string();
    assert!(e.contains("model.momentum"), "{e}");
}

#[test]
fn the_queue_wraps_around_and_its_pointer_is_checkpoint_state() {
    tch::manual_seed(0);
    let mut model = MocoV2::new(&tiny_v2(5), Device::Cpu).unwrap();
    let norms = model.queue.norm_scalaropt_dim(2, [1], false);
    assert!(norms.allclose(&Tensor::ones([5], (Kind::Float, Device::Cpu)), 1e-5, 1e-5, false));
    let keys = |v: f32| Tensor::full([3, 128], v as f64, (Kind::Float, Device::Cpu));
    model.enqueue(&keys(1.0));
    model.enqueue(&keys(2.0));
    // Rows 0-2 got 1s, then 3-4 and (wrapping) 0 got 2s.
    let first_col: Vec<f32> = Vec::try_from(model.queue.select(1, 0)).unwrap();
    assert_eq!(first_col, [2.0, 1.0, 1.0, 2.0, 2.0]);
    assert_eq!(model.state(), serde_json::json!({ "queue_ptr": 1 }));
    model.load_state(&serde_json::json!({ "queue_ptr": 4 })).unwrap();
    assert_eq!(model.queue_ptr, 4);
    assert!(model.load_state(&serde_json::json!({ "queue_ptr": 5 })).is_err());
    assert!(model.load_state(&serde_json::Value::Null).is_err());
}

#[test]
fn moco_v3_loss_is_the_scaled_symmetric_info_nce() {
    tch::manual_seed(0);
    let model = MocoV3::new(&MocoV3Config { temperature: 0.5, ..tiny_v3() }, Device::Cpu).unwrap();
    // Two orthogonal unit queries, keys equal to them: logits [[2, 0], [0, 2]] at τ = 0.5.
    let q = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0]).view([2, 2]);
    let ce = -(2f64.exp() / (2f64.exp() + 1.0)).ln();
    let got = model.contrastive(&q, &q).unwrap().double_value(&[]);
    assert!((got - 2.0 * 0.5 * ce).abs() < 1e-6, "{got}");
    assert_eq!(in_batch_accuracy(&q, &q).double_value(&[]), 1.0);
}

#[test]
fn moco_v2_trains_end_to_end() {
    tch::manual_seed(0);
    let mut model = MocoV2::new(&tiny_v2(16), Device::Cpu).unwrap();
    tiny_pretrain_and_probe(&mut model, presets::moco_v2(16), 3e-3, 40, Some("pretext_acc"));
    // The key encoder moved towards the query encoder but is not a copy of it.
    let vars = model.var_store().variables();
    let (q, k) = (&vars["online.backbone.conv1.weight"], &vars["target.backbone.conv1.weight"]);
    assert!(!q.equal(k));
}

#[test]
fn moco_v3_trains_end_to_end() {
    tch::manual_seed(0);
    // τ = 0.2 (the paper's ViT setting): at τ = 1 the logits of a 16-sample batch stay within
    // [-1, 1], so 40 tiny steps move the loss by less than its step-to-step noise.
    let mut model = MocoV3::new(&MocoV3Config { temperature: 0.2, ..tiny_v3() }, Device::Cpu).unwrap();
    tiny_pretrain_and_probe(&mut model, presets::moco_v3(16), 3e-3, 40, Some("pretext_acc"));
}
