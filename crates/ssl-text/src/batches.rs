//! Turning token blocks into training batches: [`MlmBatches`] (BERT: masked inputs and labels)
//! and [`LmBatches`] (GPT: the blocks themselves), for ssl-core's
//! [`DataLoader`](ssl_core::data::DataLoader).
//!
//! ```
//! use ssl_core::data::{DataLoader, LoaderConfig, SequentialSampler};
//! use ssl_text::batches::LmBatches;
//! use ssl_text::tokens::TokenBlocks;
//! let blocks = TokenBlocks::from_vec((0..12).collect(), 4)?;
//! let cfg = LoaderConfig { batch_size: 2, drop_last: true, prefetch: 1, seed: 0 };
//! let loader = DataLoader::new(blocks, LmBatches, SequentialSampler, cfg)?;
//! let (_, batch) = loader.epoch(0).next().unwrap()?;
//! assert_eq!(batch.size(), [2, 4]);
//! # Ok::<(), ssl_core::Error>(())
//! ```

use ssl_core::data::BatchBuilder;
use ssl_core::rng::SslRng;
use ssl_core::{Error, Result};
use tch::Tensor;

use crate::masking::{mask_tokens, MaskingConfig};
use crate::tokenizer::TextTokenizer;

fn stack(rows: Vec<Vec<i64>>) -> Result<Tensor> {
    let b = rows.len() as i64;
    let t = rows.first().map_or(0, Vec::len);
    if rows.iter().any(|r| r.len() != t) {
        return Err(Error::invalid("batch", "token blocks of different lengths"));
    }
    let flat: Vec<i64> = rows.into_iter().flatten().collect();
    Ok(Tensor::from_slice(&flat).view([b, t as i64]))
}

/// GPT batches: `[B, T]` int64 token blocks.
#[derive(Debug, Clone, Copy)]
pub struct LmBatches;

impl BatchBuilder<Vec<u32>> for LmBatches {
    type Sample = Vec<i64>;
    type Batch = Tensor;

    fn prepare(&self, item: Vec<u32>, _rng: &mut SslRng) -> Result<Vec<i64>> {
        Ok(item.into_iter().map(i64::from).collect())
    }

    fn collate(&self, samples: Vec<Vec<i64>>) -> Result<Tensor> {
        stack(samples)
    }
}

/// BERT batches: `(inputs, labels)`, each `[B, T]` int64, corrupted per sample with its own
/// seeded generator (so the masking of a sample depends on the run seed, epoch and index only).
#[derive(Debug, Clone)]
pub struct MlmBatches {
    masking: MaskingConfig,
    special: Vec<bool>,
    continuation: Vec<bool>,
    mask_id: u32,
}

impl MlmBatches {
    /// Batches for `tokenizer`'s vocabulary (its special tokens are never masked).
    pub fn new(masking: MaskingConfig, tokenizer: &TextTokenizer) -> Result<Self> {
        masking.validate()?;
        let mask_id = tokenizer
            .specials()
            .mask
            .ok_or_else(|| Error::invalid("tokenizer", "masked language modelling needs a [MASK] token"))?;
        let mut special = vec![false; tokenizer.vocab_size()];
        for id in tokenizer.specials().all() {
            if let Some(s) = special.get_mut(id as usize) {
                *s = true;
            }
        }
        Ok(Self { masking, special, continuation: tokenizer.continuation_flags(), mask_id })
    }
}

impl BatchBuilder<Vec<u32>> for MlmBatches {
    type Sample = (Vec<i64>, Vec<i64>);
    type Batch = (Tensor, Tensor);

    fn prepare(&self, item: Vec<u32>, rng: &mut SslRng) -> Result<(Vec<i64>, Vec<i64>)> {
        Ok(mask_tokens(&item, &self.masking, &self.special, &self.continuation, self.mask_id, rng))
    }

    fn collate(&self, samples: Vec<(Vec<i64>, Vec<i64>)>) -> Result<(Tensor, Tensor)> {
        let (inputs, labels): (Vec<_>, Vec<_>) = samples.into_iter().unzip();
        Ok((stack(inputs)?, stack(labels)?))
    }
}
