//! Model FLOPs of the transformer methods, for the `throughput` suite's achieved FLOP/s and
//! model FLOP utilisation (MFU).
//!
//! The count is PaLM's "model FLOPs" (Chowdhery et al. 2022, App. B): the matrix multiplications
//! a training step needs, whatever the implementation recomputes or fuses; a multiply-add is 2
//! FLOPs and backward costs twice the forward, so a step is 3× the forward. Per token of a
//! transformer layer of width `d`, MLP width `m` and sequence length `s`, the forward pass does
//! `8d²` (the query, key, value and output projections) `+ 4dm` (the MLP) `+ 4sd` (the scores
//! `QKᵀ` and their weighted sum of values). Per method:
//!
//! - `bert`: the encoder on every token of the block; the MLM head (`d²` transform and the tied
//!   `dV` output) on the masked 15%.
//! - `gpt`: the decoder on every token but the last of the block and the tied output `dV` on
//!   each (causal attention is counted as full, as PaLM does).
//! - `mae`: the patch embedding and encoder on the visible patches plus the class token, the
//!   encoder-to-decoder projection, the decoder on every patch plus the class token, and the
//!   pixel prediction on every patch.
//! - `clip`: the image tower (patch embedding, ViT on every patch plus the class token) and the
//!   text tower on its context, both projections, and the `2·B·e` similarity of a sample against
//!   the batch (the ResNet image tower is not counted: no number is given then).
//!
//! Embedding lookups, norms, activations, softmax and the optimiser are left out, as in PaLM.
//! MFU divides the achieved model FLOP/s by the peak the same device and thread count reach on
//! a large matrix multiplication (the `matmul_peak` example of ssl-core), not by a datasheet.

/// Forward FLOPs per token of one transformer layer.
pub fn layer_forward_per_token(d: f64, m: f64, s: f64) -> f64 {
    8.0 * d * d + 4.0 * d * m + 4.0 * s * d
}

fn get(v: &toml::Value, path: &[&str]) -> Option<f64> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key)?;
    }
    cur.as_float().or_else(|| cur.as_integer().map(|i| i as f64))
}

/// A ViT's forward FLOPs on `tokens` tokens (patches plus the class token) of `n` patches
/// embedded, from its config table (`image_size`, `patch_size`, `in_channels`, `dim`, `depth`,
/// `mlp_ratio`).
fn vit_forward(vit: &toml::Value, embedded: f64, tokens: f64) -> Option<f64> {
    let p = get(vit, &["patch_size"])?;
    let c = get(vit, &["in_channels"]).unwrap_or(3.0);
    let d = get(vit, &["dim"])?;
    let depth = get(vit, &["depth"])?;
    let m = d * get(vit, &["mlp_ratio"]).unwrap_or(4.0);
    Some(embedded * 2.0 * p * p * c * d + depth * tokens * layer_forward_per_token(d, m, tokens))
}

/// Training FLOPs per sample of `method` at the resolved config `cfg` (`config.toml` of its run);
/// `None` for methods that are not transformers or configs that lack a field.
pub fn training_flops_per_sample(method: &str, cfg: &toml::Value) -> Option<f64> {
    let forward = match method {
        "bert" | "gpt" => {
            let s = get(cfg, &["data", "block_len"])?;
            let d = get(cfg, &["model", "dim"])?;
            let m = get(cfg, &["model", "mlp_dim"])?;
            let depth = get(cfg, &["model", "depth"])?;
            let v = get(cfg, &["model", "vocab_size"])?;
            if method == "bert" {
                let masked = s * get(cfg, &["model", "masking", "probability"]).unwrap_or(0.15);
                s * depth * layer_forward_per_token(d, m, s) + masked * 2.0 * (d * d + d * v)
            } else {
                let t = s - 1.0;
                t * depth * layer_forward_per_token(d, m, t) + t * 2.0 * d * v
            }
        }
        "mae" => {
            let enc = cfg.get("model")?.get("encoder")?;
            let side = get(enc, &["image_size"])? / get(enc, &["patch_size"])?;
            let n = side * side;
            let p = get(enc, &["patch_size"])?;
            let c = get(enc, &["in_channels"]).unwrap_or(3.0);
            let visible = n - (n * get(cfg, &["model", "mask_ratio"])?).round();
            let d = get(enc, &["dim"])?;
            let dd = get(cfg, &["model", "decoder_dim"])?;
            let ddepth = get(cfg, &["model", "decoder_depth"])?;
            vit_forward(enc, visible, visible + 1.0)?
                + (visible + 1.0) * 2.0 * d * dd
                + ddepth * (n + 1.0) * layer_forward_per_token(dd, 4.0 * dd, n + 1.0)
                + n * 2.0 * dd * p * p * c
        }
        "clip" => {
            let model = cfg.get("model")?;
            let image = model.get("image")?;
            if image.get("kind").and_then(toml::Value::as_str) != Some("vit") {
                return None;
            }
            let side = get(image, &["image_size"])? / get(image, &["patch_size"])?;
            let n = side * side;
            let text = model.get("text")?;
            let s = get(text, &["context_length"])?;
            let w = get(text, &["width"])?;
            let tm = w * get(text, &["mlp_ratio"]).unwrap_or(4.0);
            let e = get(model, &["embed_dim"])?;
            let b = get(cfg, &["data", "batch_size"])?;
            vit_forward(image, n, n + 1.0)?
                + get(text, &["depth"])? * s * layer_forward_per_token(w, tm, s)
                + 2.0 * (get(image, &["dim"])? + w) * e
                + 2.0 * 2.0 * b * e
        }
        _ => return None,
    };
    Some(3.0 * forward)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gpt_layer_by_hand() {
        // d = 2, m = 8, s = 3: 8·4 + 4·2·8 + 4·3·2 = 32 + 64 + 24.
        assert_eq!(layer_forward_per_token(2.0, 8.0, 3.0), 120.0);
        let cfg: toml::Value =
            "[data]\nblock_len = 4\n[model]\ndim = 2\nmlp_dim = 8\ndepth = 2\nvocab_size = 10\n"
                .parse()
                .unwrap();
        // 3 tokens × 2 layers × 120 + 3 × 2·2·10 = 720 + 120, times 3 for training.
        assert_eq!(training_flops_per_sample("gpt", &cfg), Some(3.0 * 840.0));
        assert_eq!(training_flops_per_sample("simclr", &cfg), None);
    }

    #[test]
    fn mae_counts_the_visible_patches_in_the_encoder_only() {
        let cfg = |ratio: f64| -> toml::Value {
            format!(
                "[model]\ndecoder_dim = 8\ndecoder_depth = 1\nmask_ratio = {ratio}\n\
                 [model.encoder]\nimage_size = 8\npatch_size = 4\nin_channels = 3\ndim = 16\ndepth = 2\nmlp_ratio = 4.0\n"
            )
            .parse()
            .unwrap()
        };
        let (half, none) = (
            training_flops_per_sample("mae", &cfg(0.5)).unwrap(),
            training_flops_per_sample("mae", &cfg(0.0)).unwrap(),
        );
        assert!(half < none, "{half} vs {none}");
        // The decoder side does not change with the ratio; the encoder's 2 vs 4 patches do.
        let enc = |v: f64| {
            vit_forward(&cfg(0.0)["model"]["encoder"], v, v + 1.0).unwrap() + (v + 1.0) * 2.0 * 16.0 * 8.0
        };
        assert!((none - half - 3.0 * (enc(4.0) - enc(2.0))).abs() < 1e-6);
    }

    #[test]
    fn the_default_configs_give_plausible_counts() {
        // BERT at the default run (d 128, 4 layers, 64 tokens): a few hundred MFLOPs per sample.
        let bert: toml::Value =
            "[data]\nblock_len = 64\n[model]\ndim = 128\nmlp_dim = 512\ndepth = 4\nvocab_size = 549\n\
                                 [model.masking]\nprobability = 0.15\n"
                .parse()
                .unwrap();
        let f = training_flops_per_sample("bert", &bert).unwrap();
        assert!((1e8..1e9).contains(&f), "{f}");
    }
}
