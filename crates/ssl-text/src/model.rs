//! What BERT and GPT share: pooling a sequence into one vector, input checks, initialisation,
//! layer ids for layer-wise learning-rate decay.
//!
//! ```
//! use ssl_core::tch::{Device, Kind, Tensor};
//! use ssl_text::model::{pool, Pooling};
//! let h = Tensor::arange(6, (Kind::Float, Device::Cpu)).view([1, 3, 2]); // tokens [0,1] [2,3] [4,5]
//! let real = Tensor::from_slice(&[true, true, false]).view([1, 3]);
//! let v = |p| Vec::<f32>::try_from(pool(&h, &real, p).view([-1])).unwrap();
//! assert_eq!(v(Pooling::Cls), [0.0, 1.0]);
//! assert_eq!(v(Pooling::Mean), [1.0, 2.0]);
//! assert_eq!(v(Pooling::Last), [2.0, 3.0]);
//! ```

use serde::{Deserialize, Serialize};
use ssl_core::blocks::init;
use ssl_core::{Error, Result};
use tch::{nn, Kind, Tensor};

/// The standard deviation of BERT's and GPT-2's weight initialisation (`initializer_range`).
pub const INIT_STD: f64 = 0.02;

/// How a sequence of hidden states becomes one representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The first token's state (BERT's `[CLS]`).
    Cls,
    /// The mean over real (non-padding) tokens.
    Mean,
    /// The last real token's state (GPT: the only one that has seen the whole sequence).
    Last,
}

/// Pools `h: [B, T, D]` with `real: [B, T]` (true for real tokens; right padding) to `[B, D]`.
pub fn pool(h: &Tensor, real: &Tensor, pooling: Pooling) -> Tensor {
    match pooling {
        Pooling::Cls => h.select(1, 0),
        Pooling::Mean => {
            let w = real.to_kind(h.kind()).unsqueeze(-1);
            (h * &w).sum_dim_intlist(1, false, h.kind())
                / w.sum_dim_intlist(1, false, h.kind()).clamp_min(1.0)
        }
        Pooling::Last => {
            let last = (real.sum_dim_intlist(1, false, Kind::Int64) - 1).clamp_min(0); // [B]
            let d = h.size()[2];
            h.gather(1, &last.view([-1, 1, 1]).expand([-1, 1, d], false), false).squeeze_dim(1)
        }
    }
}

/// Checks that `ids` is `[B, T]` int64 with `0 < T <= max_len`; returns `(B, T)`.
pub fn check_ids(ids: &Tensor, max_len: i64) -> Result<(i64, i64)> {
    let size = ids.size();
    if size.len() != 2 || size[1] == 0 || ids.kind() != Kind::Int64 {
        return Err(Error::shape("token ids", "[B, T] int64 with T > 0", &size));
    }
    if size[1] > max_len {
        return Err(Error::shape("token ids", format!("at most {max_len} tokens (model.max_len)"), &size));
    }
    Ok((size[0], size[1]))
}

/// Checks vocabulary, length and padding id of a config.
pub fn check_sizes(vocab_size: i64, max_len: i64, pad_id: i64) -> Result<()> {
    if vocab_size < 2 {
        return Err(Error::config("model.vocab_size", format!("must be at least 2, got {vocab_size}")));
    }
    if max_len < 2 {
        return Err(Error::config("model.max_len", format!("must be at least 2, got {max_len}")));
    }
    if !(0..vocab_size).contains(&pad_id) {
        return Err(Error::config(
            "model.pad_id",
            format!("{pad_id} is not an id of a {vocab_size}-token vocabulary"),
        ));
    }
    Ok(())
}

/// The `mlp_ratio` that gives exactly `mlp_dim` hidden units for width `dim`.
pub fn mlp_ratio(mlp_dim: i64, dim: i64) -> f64 {
    (mlp_dim as f64 + 0.5) / dim.max(1) as f64
}

/// A transformer config error's field, named as under `[model]`.
pub fn prefix_field(e: Error) -> Error {
    match e {
        Error::Config { field, message } => Error::Config { field: format!("model.{field}"), message },
        other => other,
    }
}

/// BERT's and GPT-2's initialisation of every matrix of `vs` (linear weights and embeddings):
/// `N(0, 0.02²)`; with `depth > 0`, the residual output projections (`attn.proj`, `mlp.fc2`)
/// get GPT-2's `0.02 / √(2 · depth)`. Biases stay zero and LayerNorms at weight 1, bias 0.
pub fn bert_style_init(vs: &nn::VarStore, depth: usize) -> Result<()> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0)); // a fixed order: the same seed gives the same weights
    for (name, mut t) in vars {
        if t.dim() < 2 || name.contains("norm") {
            continue;
        }
        let residual = name.ends_with("attn.proj.weight") || name.ends_with("mlp.fc2.weight");
        let std = if depth > 0 && residual { init::scaled_residual_std(INIT_STD, depth) } else { INIT_STD };
        init::normal_(&mut t, std)?;
    }
    Ok(())
}

/// Zeroes row `row` of an embedding (the padding token's, as `nn.Embedding(padding_idx)`).
pub fn zero_row(embedding: &Tensor, row: i64) -> Result<()> {
    tch::no_grad(|| embedding.get(row).f_zero_().map(drop))
        .map_err(|e| Error::invalid("embedding", format!("cannot zero row {row}: {e}")))
}

/// Layer ids for layer-wise decay: `embed_prefix*` → 0, `blocks_prefix{i}.*` → `i + 1`,
/// everything else (final norm, heads) → `depth + 1`.
pub fn layer_id(name: &str, embed_prefix: &str, blocks_prefix: &str, depth: usize) -> usize {
    if name.starts_with(embed_prefix) {
        return 0;
    }
    name.strip_prefix(blocks_prefix)
        .and_then(|rest| rest.split('.').next())
        .and_then(|i| i.parse::<usize>().ok())
        .map_or(depth + 1, |i| i + 1)
}
