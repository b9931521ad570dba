//! Hugging Face interoperability: BERT and GPT-2 weights in the `transformers` safetensors naming,
//! with `config.json`, both ways.
//!
//! A folder written by [`save_bert`] loads with `BertForMaskedLM.from_pretrained`, one written by
//! [`save_gpt2`] with `GPT2LMHeadModel.from_pretrained`, and [`load_bert`] / [`load_gpt2`] read
//! what `save_pretrained` writes (a `bert.`/`transformer.` prefix is optional, so base-model
//! checkpoints load too). The mapping:
//!
//! - BERT's separate `query`/`key`/`value` projections are stacked into the fused `qkv`
//!   (`[q; k; v]` rows, the layout ssl-core's attention splits), and split again on export;
//!   the MLM decoder is tied to the word embeddings, its bias is `cls.predictions.bias`;
//! - GPT-2's `Conv1D` layers store `[in, out]` weights: they are transposed both ways; the
//!   `lm_head` is tied to `wte` and not stored; the causal-mask buffers (`attn.bias`) are
//!   ignored.
//!
//! `tests/hf_interop.rs` checks logits against `transformers` within 1e-4 on committed fixtures.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Value};
use ssl_core::error::TorchResultExt;
use ssl_core::{Error, Objective, Result};
use tch::{Device, Tensor};

use crate::bert::{Bert, BertConfig};
use crate::gpt::{Gpt, GptConfig};
use crate::model::Pooling;

/// The weights file of a HF folder.
pub const WEIGHTS: &str = "model.safetensors";
/// The config file of a HF folder.
pub const CONFIG: &str = "config.json";

/// How a tensor of ours is stored on the HF side.
enum Hf {
    /// The same tensor under another name.
    Same(String),
    /// Transposed (GPT-2's Conv1D).
    Transposed(String),
    /// Row blocks of ours stored as separate tensors (BERT's q, k, v).
    Split(Vec<String>),
}

fn bert_names(cfg: &BertConfig) -> Vec<(String, Hf)> {
    let s = |n: &str| Hf::Same(n.to_string());
    let mut v = vec![
        ("embed.tokens".into(), s("bert.embeddings.word_embeddings.weight")),
        ("embed.positions".into(), s("bert.embeddings.position_embeddings.weight")),
        ("embed.segments".into(), s("bert.embeddings.token_type_embeddings.weight")),
        ("embed.norm.weight".into(), s("bert.embeddings.LayerNorm.weight")),
        ("embed.norm.bias".into(), s("bert.embeddings.LayerNorm.bias")),
        ("mlm.dense.weight".into(), s("cls.predictions.transform.dense.weight")),
        ("mlm.dense.bias".into(), s("cls.predictions.transform.dense.bias")),
        ("mlm.norm.weight".into(), s("cls.predictions.transform.LayerNorm.weight")),
        ("mlm.norm.bias".into(), s("cls.predictions.transform.LayerNorm.bias")),
        ("mlm.bias".into(), s("cls.predictions.bias")),
    ];
    for i in 0..cfg.depth {
        let (o, h) = (format!("encoder.blocks.{i}"), format!("bert.encoder.layer.{i}"));
        for p in ["weight", "bias"] {
            let qkv = ["query", "key", "value"].map(|n| format!("{h}.attention.self.{n}.{p}")).to_vec();
            v.push((format!("{o}.attn.qkv.{p}"), Hf::Split(qkv)));
            v.push((format!("{o}.attn.proj.{p}"), s(&format!("{h}.attention.output.dense.{p}"))));
            v.push((format!("{o}.norm1.{p}"), s(&format!("{h}.attention.output.LayerNorm.{p}"))));
            v.push((format!("{o}.mlp.fc1.{p}"), s(&format!("{h}.intermediate.dense.{p}"))));
            v.push((format!("{o}.mlp.fc2.{p}"), s(&format!("{h}.output.dense.{p}"))));
            v.push((format!("{o}.norm2.{p}"), s(&format!("{h}.output.LayerNorm.{p}"))));
        }
    }
    v
}

fn gpt2_names(cfg: &GptConfig) -> Vec<(String, Hf)> {
    let s = |n: &str| Hf::Same(n.to_string());
    let t = |n: &str| Hf::Transposed(n.to_string());
    let mut v = vec![
        ("embed.tokens".into(), s("transformer.wte.weight")),
        ("embed.positions".into(), s("transformer.wpe.weight")),
        ("decoder.norm.weight".into(), s("transformer.ln_f.weight")),
        ("decoder.norm.bias".into(), s("transformer.ln_f.bias")),
    ];
    for i in 0..cfg.depth {
        let (o, h) = (format!("decoder.blocks.{i}"), format!("transformer.h.{i}"));
        v.push((format!("{o}.attn.qkv.weight"), t(&format!("{h}.attn.c_attn.weight"))));
        v.push((format!("{o}.attn.qkv.bias"), s(&format!("{h}.attn.c_attn.bias"))));
        v.push((format!("{o}.attn.proj.weight"), t(&format!("{h}.attn.c_proj.weight"))));
        v.push((format!("{o}.attn.proj.bias"), s(&format!("{h}.attn.c_proj.bias"))));
        v.push((format!("{o}.mlp.fc1.weight"), t(&format!("{h}.mlp.c_fc.weight"))));
        v.push((format!("{o}.mlp.fc1.bias"), s(&format!("{h}.mlp.c_fc.bias"))));
        v.push((format!("{o}.mlp.fc2.weight"), t(&format!("{h}.mlp.c_proj.weight"))));
        v.push((format!("{o}.mlp.fc2.bias"), s(&format!("{h}.mlp.c_proj.bias"))));
        for (ours, theirs) in [("norm1", "ln_1"), ("norm2", "ln_2")] {
            for p in ["weight", "bias"] {
                v.push((format!("{o}.{ours}.{p}"), s(&format!("{h}.{theirs}.{p}"))));
            }
        }
    }
    v
}

/// The HF tensors of `vars` under `names`.
fn export(vars: &HashMap<String, Tensor>, names: &[(String, Hf)]) -> Result<Vec<(String, Tensor)>> {
    let mut out = Vec::new();
    for (ours, hf) in names {
        let t = vars
            .get(ours)
            .ok_or_else(|| Error::invalid("model", format!("has no variable `{ours}`")))?
            .detach()
            .to_device(Device::Cpu);
        match hf {
            Hf::Same(n) => out.push((n.clone(), t.contiguous())),
            Hf::Transposed(n) => out.push((n.clone(), t.tr().contiguous())),
            Hf::Split(parts) => {
                for (n, chunk) in parts.iter().zip(t.chunk(parts.len() as i64, 0)) {
                    out.push((n.clone(), chunk.contiguous()));
                }
            }
        }
    }
    Ok(out)
}

/// Copies the HF tensors `file` into `vars` under `names`; `prefix` (`bert.`, `transformer.`)
/// may be absent from the file's names. Errors name the missing tensor or the wrong shape.
fn import(vars: &HashMap<String, Tensor>, names: &[(String, Hf)], file: &Path, prefix: &str) -> Result<()> {
    let tensors: HashMap<String, Tensor> = Tensor::read_safetensors(file)
        .map_err(|e| Error::data(file.display().to_string(), format!("not a safetensors file: {e}")))?
        .into_iter()
        .map(|(n, t)| (n.strip_prefix(prefix).map(str::to_string).unwrap_or(n), t))
        .collect();
    let get = |hf_name: &str| -> Result<Tensor> {
        let key = hf_name.strip_prefix(prefix).unwrap_or(hf_name);
        // BERT's decoder bias is also saved as `cls.predictions.decoder.bias`.
        let alt = key.replace("cls.predictions.bias", "cls.predictions.decoder.bias");
        tensors
            .get(key)
            .or_else(|| tensors.get(&alt))
            .map(Tensor::shallow_clone)
            .ok_or_else(|| Error::data(file.display().to_string(), format!("has no tensor `{hf_name}`")))
    };
    for (ours, hf) in names {
        let dst =
            vars.get(ours).ok_or_else(|| Error::invalid("model", format!("has no variable `{ours}`")))?;
        let src = match hf {
            Hf::Same(n) => get(n)?,
            Hf::Transposed(n) => get(n)?.tr(),
            Hf::Split(parts) => Tensor::cat(&parts.iter().map(|n| get(n)).collect::<Result<Vec<_>>>()?, 0),
        };
        if src.size() != dst.size() {
            return Err(Error::data(
                file.display().to_string(),
                format!("`{ours}` has shape {:?} in the file, the config says {:?}", src.size(), dst.size()),
            ));
        }
        tch::no_grad(|| dst.shallow_clone().f_copy_(&src)).torch_context(format!("loading `{ours}`"))?;
    }
    Ok(())
}

fn write_folder(dir: &Path, tensors: &[(String, Tensor)], config: &Value) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = dir.join(format!(".{WEIGHTS}.tmp"));
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    Tensor::write_safetensors(&refs, &tmp).torch_context(format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(WEIGHTS)).map_err(|e| Error::io(dir.join(WEIGHTS), e))?;
    let text = serde_json::to_string_pretty(config).map_err(|e| Error::invalid("config", e.to_string()))?;
    let tmp = dir.join(format!(".{CONFIG}.tmp"));
    std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, dir.join(CONFIG)).map_err(|e| Error::io(dir.join(CONFIG), e))
}

fn read_config(dir: &Path) -> Result<Value> {
    let path = dir.join(CONFIG);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::data(path.display().to_string(), format!("invalid JSON: {e}")))
}

fn field_i64(cfg: &Value, key: &str, dir: &Path) -> Result<i64> {
    cfg.get(key).and_then(Value::as_i64).ok_or_else(|| {
        Error::data(dir.join(CONFIG).display().to_string(), format!("needs an integer `{key}`"))
    })
}

fn field_f64(cfg: &Value, key: &str, default: f64) -> f64 {
    cfg.get(key).and_then(Value::as_f64).unwrap_or(default)
}

fn expect_str(cfg: &Value, key: &str, allowed: &[&str], dir: &Path) -> Result<()> {
    match cfg.get(key).and_then(Value::as_str) {
        None => Ok(()),
        Some(v) if allowed.contains(&v) => Ok(()),
        Some(v) => Err(Error::data(
            dir.join(CONFIG).display().to_string(),
            format!("`{key}` = {v:?} is not supported (expected one of {allowed:?})"),
        )),
    }
}

/// Writes `model` as a HF `BertForMaskedLM` folder (`model.safetensors`, `config.json`).
pub fn save_bert(model: &Bert, dir: &Path) -> Result<()> {
    let c = model.config();
    if c.norm_placement != ssl_core::blocks::NormPlacement::Post {
        return Err(Error::invalid(
            "model.norm_placement",
            "Hugging Face's BERT is post-LN; a pre-LN BERT has no HF equivalent to export to",
        ));
    }
    let tensors = export(&model.var_store().variables(), &bert_names(c))?;
    let config = json!({
        "architectures": ["BertForMaskedLM"],
        "model_type": "bert",
        "vocab_size": c.vocab_size,
        "hidden_size": c.dim,
        "num_hidden_layers": c.depth,
        "num_attention_heads": c.heads,
        "intermediate_size": c.mlp_dim,
        "hidden_act": "gelu",
        "hidden_dropout_prob": c.dropout,
        "attention_probs_dropout_prob": c.attn_dropout,
        "max_position_embeddings": c.max_len,
        "type_vocab_size": c.type_vocab_size,
        "initializer_range": crate::model::INIT_STD,
        "layer_norm_eps": c.layer_norm_eps,
        "pad_token_id": c.pad_id,
        "position_embedding_type": "absolute",
    });
    write_folder(dir, &tensors, &config)
}

/// The [`BertConfig`] of a HF BERT `config.json`.
pub fn bert_config(dir: &Path) -> Result<BertConfig> {
    let c = read_config(dir)?;
    expect_str(&c, "hidden_act", &["gelu"], dir)?;
    expect_str(&c, "position_embedding_type", &["absolute"], dir)?;
    let d = BertConfig::default();
    Ok(BertConfig {
        vocab_size: field_i64(&c, "vocab_size", dir)?,
        max_len: field_i64(&c, "max_position_embeddings", dir)?,
        dim: field_i64(&c, "hidden_size", dir)?,
        depth: field_i64(&c, "num_hidden_layers", dir)? as usize,
        heads: field_i64(&c, "num_attention_heads", dir)?,
        mlp_dim: field_i64(&c, "intermediate_size", dir)?,
        type_vocab_size: c.get("type_vocab_size").and_then(Value::as_i64).unwrap_or(2),
        dropout: field_f64(&c, "hidden_dropout_prob", d.dropout),
        attn_dropout: field_f64(&c, "attention_probs_dropout_prob", d.attn_dropout),
        layer_norm_eps: field_f64(&c, "layer_norm_eps", d.layer_norm_eps),
        pad_id: c.get("pad_token_id").and_then(Value::as_i64).unwrap_or(0),
        ..d
    })
}

/// Loads a HF BERT folder (`BertForMaskedLM`, or a base `BertModel` plus an MLM head) onto
/// `device`.
pub fn load_bert(dir: &Path, device: Device) -> Result<Bert> {
    let cfg = bert_config(dir)?;
    let model = Bert::new(&cfg, device)?;
    import(&model.var_store().variables(), &bert_names(&cfg), &dir.join(WEIGHTS), "bert.")?;
    Ok(model)
}

/// Writes `model` as a HF `GPT2LMHeadModel` folder (`model.safetensors`, `config.json`).
pub fn save_gpt2(model: &Gpt, dir: &Path) -> Result<()> {
    let c = model.config();
    let tensors = export(&model.var_store().variables(), &gpt2_names(c))?;
    let config = json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": c.vocab_size,
        "n_positions": c.max_len,
        "n_embd": c.dim,
        "n_layer": c.depth,
        "n_head": c.heads,
        "n_inner": c.mlp_dim,
        "activation_function": "gelu_new",
        "resid_pdrop": c.dropout,
        "embd_pdrop": c.dropout,
        "attn_pdrop": c.attn_dropout,
        "layer_norm_epsilon": c.layer_norm_eps,
        "initializer_range": crate::model::INIT_STD,
        "bos_token_id": c.eos_id,
        "eos_token_id": c.eos_id,
        "pad_token_id": c.pad_id,
    });
    write_folder(dir, &tensors, &config)
}

/// The [`GptConfig`] of a HF GPT-2 `config.json`.
pub fn gpt2_config(dir: &Path) -> Result<GptConfig> {
    let c = read_config(dir)?;
    expect_str(&c, "activation_function", &["gelu_new", "gelu_pytorch_tanh"], dir)?;
    for flag in ["scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"] {
        if c.get(flag).and_then(Value::as_bool) == Some(true) {
            return Err(Error::data(
                dir.join(CONFIG).display().to_string(),
                format!("`{flag}` is not supported"),
            ));
        }
    }
    let d = GptConfig::default();
    let dim = field_i64(&c, "n_embd", dir)?;
    let eos = c.get("eos_token_id").and_then(Value::as_i64).unwrap_or(d.eos_id);
    Ok(GptConfig {
        vocab_size: field_i64(&c, "vocab_size", dir)?,
        max_len: field_i64(&c, "n_positions", dir)?,
        dim,
        depth: field_i64(&c, "n_layer", dir)? as usize,
        heads: field_i64(&c, "n_head", dir)?,
        mlp_dim: c.get("n_inner").and_then(Value::as_i64).unwrap_or(4 * dim),
        dropout: field_f64(&c, "resid_pdrop", d.dropout),
        attn_dropout: field_f64(&c, "attn_pdrop", d.attn_dropout),
        layer_norm_eps: field_f64(&c, "layer_norm_epsilon", d.layer_norm_eps),
        pad_id: c.get("pad_token_id").and_then(Value::as_i64).filter(|&p| p != eos),
        eos_id: eos,
        pooling: Pooling::Mean,
    })
}

/// Loads a HF GPT-2 folder (`GPT2LMHeadModel` or `GPT2Model`) onto `device`.
pub fn load_gpt2(dir: &Path, device: Device) -> Result<Gpt> {
    let cfg = gpt2_config(dir)?;
    let model = Gpt::new(&cfg, device)?;
    import(&model.var_store().variables(), &gpt2_names(&cfg), &dir.join(WEIGHTS), "transformer.")?;
    Ok(model)
}
