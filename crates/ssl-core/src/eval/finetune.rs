//! End-to-end fine-tuning: the encoder and a new linear head trained together on labels.
//!
//! The fine-tuning protocol of SimCLR (Chen et al. 2020) and MAE (He et al. 2022), reduced to its
//! core: a linear head on the representation, cross-entropy, AdamW with a cosine-decayed
//! learning rate (optionally decayed layer by layer, as MAE fine-tunes its ViTs), then top-1
//! accuracy on the held-out split. Augmentation and label smoothing are modality or method
//! choices and stay with the callers.

use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Device, Kind, Tensor};

use super::features::validate_labels;
use super::train_util::{check_loss, epoch_batches, num_classes, rows, warmup_cosine_lr, zero_linear};
use super::{accuracy, extract_features};
use crate::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use crate::rng::{rng_for, seed_torch};
use crate::{Encoder, Error, Result};
use rand::seq::SliceRandom;

/// The trainable variables of `vs`, by name, in name order.
fn trainable(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> =
        vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// Variables AdamW does not decay when fine-tuning: biases, norm weights, tokens.
fn no_decay(name: &str, shape: &[i64]) -> bool {
    shape.len() < 2 || name.ends_with("_token")
}

/// Hyper-parameters of [`finetune`]; every field has a default, unknown fields are errors.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FinetuneConfig {
    /// Passes over the train split. Default 10: a short schedule that fits the CPU budget of the
    /// default runs (the papers fine-tune for 60-100 ImageNet epochs).
    pub epochs: usize,
    /// Peak AdamW learning rate of the encoder, cosine-decayed to 0. Default `1e-3`, suited to the
    /// small encoders trained here (MAE uses `5e-4 × batch / 256` with layer decay for ViT-B).
    pub lr: f64,
    /// Decoupled (AdamW) weight decay, applied to every trainable variable of encoder and head.
    /// Default 0.05, as in MAE's fine-tuning recipe.
    pub weight_decay: f64,
    /// Rows per mini-batch; the last, smaller batch of an epoch is dropped (unless it is the only
    /// one) so that batch norm never sees a single sample. Default 64.
    pub batch_size: usize,
    /// Seed of the shuffles and of libtorch's generator (dropout) at every step. Default 0.
    pub seed: u64,
    /// The head's learning rate is `lr × head_lr_scale`. Default 1.0, one rate for everything as
    /// in SimCLR's fine-tuning; raise it when a large encoder needs a small `lr` but the head,
    /// which starts from zero, should learn fast.
    pub head_lr_scale: f64,
    /// Fine-tune on this many train rows drawn at random (from `seed`); 0, the default, uses
    /// them all. For the semi-supervised protocol (SimCLR's 1% and 10% of the labels) and for
    /// short CPU budgets. The train accuracy is measured on the same subset.
    pub train_subset: usize,
    /// Layer-wise learning-rate decay (BEiT; MAE fine-tunes ViT-B with 0.65, ViT-L with 0.75):
    /// the variables of layer `i` of an encoder `L` layers deep ([`Encoder::num_layers`],
    /// [`Encoder::layer_id`]) learn at `lr × layer_decay^(L + 1 − i)`, so the embeddings move
    /// least and the head most. Default 1.0: one rate for every layer. Encoders without layers
    /// (ResNets) ignore it.
    pub layer_decay: f64,
    /// The fraction of the steps over which the learning rates rise linearly from 0 before the
    /// cosine decay, in `[0, 1)`. Default 0 (vision recipes); BERT's fine-tuning warms up over
    /// the first 10%, which keeps a transformer from collapsing in its first steps.
    pub warmup_fraction: f64,
    /// Epochs at the start during which the encoder is frozen (evaluation mode, no gradients)
    /// and only the head learns: the linear-probe-then-fine-tune protocol (LP-FT, Kumar et al.
    /// 2022), which keeps a zero-initialised head's first, large gradients from distorting the
    /// pretrained features. The encoder's warm-up and cosine decay then run over the remaining
    /// epochs. Default 0; must be below `epochs`.
    pub freeze_epochs: usize,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            lr: 1e-3,
            weight_decay: 0.05,
            batch_size: 64,
            seed: 0,
            head_lr_scale: 1.0,
            train_subset: 0,
            layer_decay: 1.0,
            warmup_fraction: 0.0,
            freeze_epochs: 0,
        }
    }
}

impl FinetuneConfig {
    /// Checks every field's range; errors name the field as `finetune.<field>`.
    pub fn validate(&self) -> Result<()> {
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::config(format!("finetune.{name}"), format!("must be > 0, got {v}")))
            }
        };
        if self.epochs == 0 {
            return Err(Error::config("finetune.epochs", "must be at least 1"));
        }
        positive("lr", self.lr)?;
        positive("head_lr_scale", self.head_lr_scale)?;
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::config(
                "finetune.weight_decay",
                format!("must be >= 0, got {}", self.weight_decay),
            ));
        }
        if self.batch_size == 0 {
            return Err(Error::config("finetune.batch_size", "must be at least 1"));
        }
        if !(0.0..1.0).contains(&self.warmup_fraction) {
            return Err(Error::config(
                "finetune.warmup_fraction",
                format!("must be in [0, 1), got {}", self.warmup_fraction),
            ));
        }
        if self.freeze_epochs >= self.epochs {
            return Err(Error::config(
                "finetune.freeze_epochs",
                format!(
                    "must be below finetune.epochs ({}) so the encoder trains at all, got {}",
                    self.epochs, self.freeze_epochs
                ),
            ));
        }
        if !(self.layer_decay > 0.0 && self.layer_decay <= 1.0) {
            return Err(Error::config(
                "finetune.layer_decay",
                format!("must be in (0, 1] (1 turns it off), got {}", self.layer_decay),
            ));
        }
        Ok(())
    }
}

/// What [`finetune`] measured.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FinetuneReport {
    /// Top-1 accuracy on the test split after fine-tuning, in `[0, 1]`.
    pub top1: f64,
    /// Top-1 accuracy on the train split, measured after training in evaluation mode.
    pub train_top1: f64,
    /// Epochs trained.
    pub epochs: usize,
    /// Number of classes of the head (the largest label + 1).
    pub classes: i64,
}

/// A fine-tuned head and what [`finetune_with_head`] measured; the encoder was changed in place.
#[derive(Debug)]
pub struct Finetuned {
    /// The accuracies.
    pub report: FinetuneReport,
    /// The linear head: `head.weight` `[classes, output_dim]` and `head.bias` `[classes]`.
    pub head: nn::VarStore,
}

/// Fine-tunes `encoder` with a new linear head on the train split and reports top-1 accuracy on
/// the test split.
///
/// **The encoder's variables are modified**: pass a copy (a second encoder whose `VarStore` was
/// loaded with the same weights) to keep the pretrained ones. `encoder_vars` must hold the
/// encoder's variables and live on `device`; its trainable variables are optimised (a frozen
/// store trains only the head). Inputs are any `[N, ...]` tensor the encoder accepts, labels
/// `[N]` int64 (errors name the "fine-tune train split" or "fine-tune test split").
///
/// The head (`Linear output_dim -> C`, `C` = largest label + 1, in its own `VarStore` on
/// `device`) starts at zero. Training calls `encoder.encode(x, true)` on seeded mini-batches with
/// cross-entropy (during `freeze_epochs`, `encode(x, false)` without gradients, and only the head
/// steps); encoder and head each get an AdamW optimiser ([`Optimizer`]) over their own
/// store, which is the same update as one AdamW with two parameter groups and makes
/// `head_lr_scale` a plain second learning rate. Biases and normalisation weights (variables of
/// fewer than two dimensions) and `*_token` variables are not decayed, as in MAE's fine-tuning;
/// with `layer_decay < 1` each encoder variable's rate is scaled by its layer. Both follow the
/// same cosine decay. libtorch's generator is seeded from
/// `(seed, step)` before each step, so dropout is reproducible. Evaluation uses
/// [`extract_features`] (`train = false`, `no_grad`).
///
/// A NaN or infinite loss stops training with [`Error::NonFiniteLoss`].
///
/// ```
/// use ssl_core::eval::{finetune, FinetuneConfig};
/// use ssl_core::{Encoder, tch::{nn, nn::Module, Device, Tensor}};
///
/// struct Lin(nn::Linear);
/// impl Encoder for Lin {
///     fn output_dim(&self) -> i64 { 4 }
///     fn encode(&self, x: &Tensor, _train: bool) -> Tensor { self.0.forward(x) }
/// }
/// ssl_core::tch::manual_seed(0);
/// let vs = nn::VarStore::new(Device::Cpu);
/// let encoder = Lin(nn::linear(vs.root() / "enc", 2, 4, Default::default()));
/// let x = Tensor::from_slice(&[1.0f32, 0.2, 0.9, -0.1, -1.0, 0.1, -1.1, 0.3]).view([4, 2]);
/// let y = Tensor::from_slice(&[1i64, 1, 0, 0]);
/// let cfg = FinetuneConfig { epochs: 30, lr: 1e-2, batch_size: 4, ..Default::default() };
/// let report = finetune(&encoder, &vs, &x, &y, &x, &y, &cfg, Device::Cpu)?;
/// assert_eq!((report.top1, report.epochs), (1.0, 30));
/// # Ok::<(), ssl_core::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn finetune(
    encoder: &dyn Encoder,
    encoder_vars: &nn::VarStore,
    train_inputs: &Tensor,
    train_labels: &Tensor,
    test_inputs: &Tensor,
    test_labels: &Tensor,
    cfg: &FinetuneConfig,
    device: Device,
) -> Result<FinetuneReport> {
    finetune_with_head(
        encoder,
        encoder_vars,
        train_inputs,
        train_labels,
        test_inputs,
        test_labels,
        cfg,
        device,
    )
    .map(|done| done.report)
}

/// [`finetune`], also returning the trained head, so that the fine-tuned classifier (the
/// changed encoder and this head) can be saved and used.
///
/// ```
/// use ssl_core::eval::{finetune_with_head, FinetuneConfig};
/// use ssl_core::{Encoder, tch::{nn, nn::Module, Device, Tensor}};
///
/// struct Lin(nn::Linear);
/// impl Encoder for Lin {
///     fn output_dim(&self) -> i64 { 4 }
///     fn encode(&self, x: &Tensor, _train: bool) -> Tensor { self.0.forward(x) }
/// }
/// ssl_core::tch::manual_seed(0);
/// let vs = nn::VarStore::new(Device::Cpu);
/// let encoder = Lin(nn::linear(vs.root() / "enc", 2, 4, Default::default()));
/// let x = Tensor::from_slice(&[1.0f32, 0.2, 0.9, -0.1, -1.0, 0.1, -1.1, 0.3]).view([4, 2]);
/// let y = Tensor::from_slice(&[1i64, 1, 0, 0]);
/// // Two epochs of training the head alone, then the encoder too.
/// let cfg = FinetuneConfig { epochs: 30, freeze_epochs: 2, lr: 1e-2, batch_size: 4, ..Default::default() };
/// let done = finetune_with_head(&encoder, &vs, &x, &y, &x, &y, &cfg, Device::Cpu)?;
/// assert_eq!(done.report.classes, 2);
/// let names: Vec<String> = done.head.variables().into_keys().collect();
/// assert!(names.contains(&"head.weight".to_string()), "{names:?}");
/// # Ok::<(), ssl_core::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn finetune_with_head(
    encoder: &dyn Encoder,
    encoder_vars: &nn::VarStore,
    train_inputs: &Tensor,
    train_labels: &Tensor,
    test_inputs: &Tensor,
    test_labels: &Tensor,
    cfg: &FinetuneConfig,
    device: Device,
) -> Result<Finetuned> {
    cfg.validate()?;
    if encoder_vars.device() != device {
        return Err(Error::Device {
            requested: format!("{device:?}"),
            message: format!("the encoder's variables live on {:?}", encoder_vars.device()),
        });
    }
    validate_labels(train_labels, rows(train_inputs), "fine-tune train split")?;
    validate_labels(test_labels, rows(test_inputs), "fine-tune test split")?;
    let c = num_classes(train_labels, test_labels)?;
    let subset;
    let (train_inputs, train_labels) = match cfg.train_subset {
        k if k > 0 && (k as i64) < rows(train_inputs) => {
            let mut order: Vec<i64> = (0..rows(train_inputs)).collect();
            order.shuffle(&mut rng_for(cfg.seed, "finetune-subset", &[]));
            order.truncate(k);
            let idx = Tensor::from_slice(&order);
            subset = (
                train_inputs.index_select(0, &idx.to_device(train_inputs.device())),
                train_labels.index_select(0, &idx.to_device(train_labels.device())),
            );
            (&subset.0, &subset.1)
        }
        _ => (train_inputs, train_labels),
    };
    let d = encoder.output_dim();
    if d <= 0 {
        return Err(Error::shape("encoder output", "output_dim() > 0", &[d]));
    }

    let head_vars = nn::VarStore::new(device);
    let head = zero_linear(head_vars.root() / "head", d, c);
    let adamw = OptimizerConfig {
        name: OptimizerKind::Adamw,
        lr: cfg.lr,
        weight_decay: cfg.weight_decay,
        ..OptimizerConfig::default()
    };
    let mut enc_opt = Optimizer::new(adamw.clone(), trainable(encoder_vars), no_decay)?;
    if cfg.layer_decay < 1.0 && encoder.num_layers() > 0 {
        let top = encoder.num_layers() + 1;
        enc_opt.set_lr_scales(|name| {
            let depth = top.saturating_sub(encoder.layer_id(name).min(top));
            cfg.layer_decay.powi(depth as i32)
        })?;
    }
    let mut head_opt = Optimizer::new(adamw, trainable(&head_vars), no_decay)?;
    let head_lr = cfg.lr * cfg.head_lr_scale;

    let n_train = rows(train_inputs);
    let (input_device, label_device) = (train_inputs.device(), train_labels.device());
    let full = n_train as usize / cfg.batch_size;
    let steps_per_epoch = if full == 0 { 1 } else { full };
    let total = cfg.epochs * steps_per_epoch;
    // The encoder's schedule starts when it is unfrozen.
    let frozen_steps = cfg.freeze_epochs * steps_per_epoch;
    let enc_total = total - frozen_steps;
    let enc_warmup = (cfg.warmup_fraction * enc_total as f64).round() as usize;
    let head_warmup = (cfg.warmup_fraction * total as f64).round() as usize;
    let mut step = 0;
    for epoch in 0..cfg.epochs {
        let frozen = epoch < cfg.freeze_epochs;
        let batches = epoch_batches(n_train, cfg.batch_size, cfg.seed, "finetune", epoch, true, Device::Cpu);
        let mut last = None;
        for idx in batches {
            seed_torch(cfg.seed, "finetune", &[step as u64]);
            let x = train_inputs.index_select(0, &idx.to_device(input_device)).to_device(device);
            let y = train_labels.index_select(0, &idx.to_device(label_device)).to_device(device);
            let z =
                if frozen { tch::no_grad(|| encoder.encode(&x, false)) } else { encoder.encode(&x, true) };
            let b = rows(&x);
            if z.size() != [b, d] {
                return Err(Error::shape("encoder output", format!("[{b}, {d}]"), &z.size()));
            }
            let loss = head.forward(&z.to_kind(Kind::Float)).cross_entropy_for_logits(&y);
            enc_opt.zero_grad();
            head_opt.zero_grad();
            loss.backward();
            if !frozen {
                enc_opt.step(warmup_cosine_lr(cfg.lr, step - frozen_steps, enc_total, enc_warmup))?;
            }
            head_opt.step(warmup_cosine_lr(head_lr, step, total, head_warmup))?;
            last = Some(loss);
            step += 1;
        }
        if let Some(loss) = last {
            check_loss(&loss, step - 1)?;
        }
    }

    let evaluate = |inputs: &Tensor, labels: &Tensor| -> Result<f64> {
        let feats = extract_features(encoder, inputs, cfg.batch_size, device)?;
        let logits = tch::no_grad(|| head.forward(&feats.to_device(device)));
        Ok(accuracy(&logits, &labels.to_device(device), 1))
    };
    let report = FinetuneReport {
        top1: evaluate(test_inputs, test_labels)?,
        train_top1: evaluate(train_inputs, train_labels)?,
        epochs: cfg.epochs,
        classes: c,
    };
    Ok(Finetuned { report, head: head_vars })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::testutil::{blobs, TinyMlp};

    fn setup(seed: u64) -> (nn::VarStore, TinyMlp) {
        let vs = nn::VarStore::new(Device::Cpu);
        let enc = TinyMlp::new(&(vs.root() / "enc"), 8, 16, 4, seed);
        (vs, enc)
    }

    fn quick() -> FinetuneConfig {
        FinetuneConfig { epochs: 15, lr: 1e-2, batch_size: 16, seed: 3, ..Default::default() }
    }

    #[test]
    fn tiny_mlp_learns_separable_blobs_and_its_weights_change() {
        let (xtr, ytr) = blobs(40, 3, 8, 4.0, 1);
        let (xte, yte) = blobs(20, 3, 8, 4.0, 2);
        let (vs, enc) = setup(7);
        let before: Vec<Tensor> = vs.trainable_variables().iter().map(|t| t.copy()).collect();
        let r = finetune(&enc, &vs, &xtr, &ytr, &xte, &yte, &quick(), Device::Cpu).expect("finetune");
        assert!(r.top1 > 0.95 && r.train_top1 > 0.95, "{r:?}");
        let after = vs.trainable_variables();
        assert_eq!(before.len(), after.len());
        for (b, a) in before.iter().zip(&after) {
            assert!(!b.allclose(a, 1e-6, 1e-6, false), "a variable did not change");
        }
    }

    #[test]
    fn a_train_subset_changes_the_training_and_all_rows_is_no_subset() {
        let (xtr, ytr) = blobs(40, 3, 8, 1.0, 1);
        let (xte, yte) = blobs(20, 3, 8, 1.0, 2);
        let weights = |train_subset: usize| {
            let (vs, enc) = setup(7);
            let cfg = FinetuneConfig { epochs: 2, train_subset, ..quick() };
            finetune(&enc, &vs, &xtr, &ytr, &xte, &yte, &cfg, Device::Cpu).expect("finetune");
            vs.trainable_variables()[0].copy()
        };
        let all = weights(0);
        assert!(all.equal(&weights(120)), "a subset of every row is the whole split");
        assert!(!all.equal(&weights(30)), "a 30-row subset trained like the whole split");
        assert_eq!(weights(5).isnan().any().int64_value(&[]), 0, "a subset below one batch trains");
    }

    #[test]
    fn layer_decay_slows_the_lower_layers_only() {
        let (xtr, ytr) = blobs(20, 3, 8, 1.0, 4);
        let (xte, yte) = blobs(10, 3, 8, 1.0, 5);
        // How far w1 (layer 0) and w2 (the top layer) move.
        let moved = |layered: bool, layer_decay: f64| {
            let (vs, mut enc) = setup(9);
            enc.layered = layered;
            let start = (enc.l1.ws.copy(), enc.l2.ws.copy());
            let cfg = FinetuneConfig { epochs: 2, layer_decay, ..quick() };
            finetune(&enc, &vs, &xtr, &ytr, &xte, &yte, &cfg, Device::Cpu).expect("finetune");
            let d = |a: &Tensor, b: &Tensor| (a - b).norm().double_value(&[]);
            (d(&enc.l1.ws, &start.0), d(&enc.l2.ws, &start.1))
        };
        let (plain, decayed) = (moved(true, 1.0), moved(true, 0.1));
        // Adam moves a weight by about its learning rate: layer 0 gets 0.1² of it.
        assert!(decayed.0 < 0.05 * plain.0, "{decayed:?} against {plain:?}");
        assert!(decayed.1 > 0.5 * plain.1, "{decayed:?} against {plain:?}");
        // An encoder without layers ignores the decay.
        assert_eq!(moved(false, 0.1), plain);
        let bad = FinetuneConfig { layer_decay: 1.5, ..quick() };
        let e = bad.validate().expect_err("decay above 1");
        assert!(e.to_string().contains("finetune.layer_decay"), "{e}");
    }

    #[test]
    fn frozen_epochs_train_the_head_alone_then_the_encoder() {
        let (xtr, ytr) = blobs(20, 3, 8, 1.0, 4);
        let (xte, yte) = blobs(10, 3, 8, 1.0, 5);
        let run = |epochs: usize, freeze_epochs: usize| {
            let (vs, enc) = setup(9);
            let start = enc.l1.ws.copy();
            let cfg = FinetuneConfig { epochs, freeze_epochs, ..quick() };
            let done = finetune_with_head(&enc, &vs, &xtr, &ytr, &xte, &yte, &cfg, Device::Cpu).expect("ft");
            let head = done.head.variables()["head.weight"].copy();
            ((&enc.l1.ws - start).abs().max().double_value(&[]), head)
        };
        // One frozen epoch of two: the encoder moves only in the second.
        let (moved, head) = run(2, 1);
        assert!(moved > 0.0);
        assert_eq!(head.size(), [3, 4]);
        assert!(head.abs().sum(Kind::Float).double_value(&[]) > 0.0, "the head learned nothing");
        let (unfrozen, _) = run(2, 0);
        assert_ne!(moved, unfrozen);
        let e = FinetuneConfig { epochs: 2, freeze_epochs: 2, ..quick() }.validate().expect_err("all frozen");
        assert!(e.to_string().contains("finetune.freeze_epochs"), "{e}");
    }

    #[test]
    fn same_config_and_seed_give_identical_reports() {
        let (xtr, ytr) = blobs(20, 3, 8, 1.0, 4);
        let (xte, yte) = blobs(10, 3, 8, 1.0, 5);
        let run = || {
            let (vs, enc) = setup(9);
            let cfg = FinetuneConfig { epochs: 2, ..quick() };
            let r = finetune(&enc, &vs, &xtr, &ytr, &xte, &yte, &cfg, Device::Cpu).expect("finetune");
            let w: Vec<f32> = Vec::try_from(vs.trainable_variables()[0].flatten(0, -1)).expect("f32");
            (serde_json::to_string(&r).expect("json"), w)
        };
        let (a, b) = (run(), run());
        assert_eq!(a.0, b.0);
        assert_eq!(
            a.1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.1.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn errors_name_the_split_and_the_encoder_output() {
        let (x, y) = blobs(4, 2, 8, 1.0, 6);
        let (vs, enc) = setup(1);
        let e = finetune(&enc, &vs, &x, &y.narrow(0, 0, 3), &x, &y, &quick(), Device::Cpu).expect_err("N");
        assert!(e.to_string().contains("fine-tune train split"), "{e}");
        let e = finetune(&enc, &vs, &x, &y, &x, &y.to_kind(Kind::Float), &quick(), Device::Cpu)
            .expect_err("float labels");
        assert!(e.to_string().contains("fine-tune test split"), "{e}");
        let (vs2, mut wrong) = setup(2);
        wrong.claimed_dim = 3;
        let e = finetune(&wrong, &vs2, &x, &y, &x, &y, &quick(), Device::Cpu).expect_err("dim");
        assert!(matches!(&e, Error::Shape { what, .. } if what == "encoder output"), "{e}");
        let bad = FinetuneConfig { head_lr_scale: 0.0, ..quick() };
        let e = finetune(&enc, &vs, &x, &y, &x, &y, &bad, Device::Cpu).expect_err("cfg");
        assert!(e.to_string().contains("finetune.head_lr_scale"), "{e}");
    }
}
