//! Held-out language-model metrics and their unigram baselines, and labelled text as tensors
//! for ssl-core's probes and fine-tuning.
//!
//! - GPT: perplexity `exp(mean next-token cross-entropy)` on held-out blocks, against the
//!   perplexity of the training set's unigram distribution (add-one smoothed) on the same
//!   targets;
//! - BERT: masked-token accuracy on held-out blocks (masked with a fixed seed), against always
//!   guessing the most frequent non-special training token.
//!
//! ```
//! use ssl_text::eval::{unigram_counts, unigram_perplexity};
//! use ssl_text::tokens::TokenBlocks;
//! let train = TokenBlocks::from_vec(vec![5, 5, 6, 5], 4)?;
//! let counts = unigram_counts(&train, 10, None);
//! assert_eq!(counts[5], 3);
//! // A uniform guess over a 10-token vocabulary has perplexity 10; the unigram model does better.
//! assert!(unigram_perplexity(&counts, &train, None) < 10.0);
//! # Ok::<(), ssl_core::Error>(())
//! ```

use ssl_core::data::{BatchBuilder, Dataset};
use ssl_core::error::TorchResultExt;
use ssl_core::rng::rng_for;
use ssl_core::{Error, Result};
use tch::{Device, Kind, Tensor};

use crate::batches::MlmBatches;
use crate::bert::Bert;
use crate::gpt::Gpt;
use crate::masking::IGNORE_INDEX;
use crate::pack::Layout;
use crate::tokenizer::TextTokenizer;
use crate::tokens::TokenBlocks;

/// How often each id occurs in `blocks` (padding excluded).
pub fn unigram_counts(blocks: &TokenBlocks, vocab_size: usize, pad: Option<u32>) -> Vec<u64> {
    let mut counts = vec![0u64; vocab_size];
    blocks.for_each_block(|b| {
        for &t in b {
            if Some(t) != pad {
                if let Some(c) = counts.get_mut(t as usize) {
                    *c += 1;
                }
            }
        }
    });
    counts
}

/// The perplexity of the add-one-smoothed unigram distribution of `counts` on the next-token
/// targets of `blocks` (every token but each block's first, padding excluded): the baseline of
/// [`gpt_perplexity`].
pub fn unigram_perplexity(counts: &[u64], blocks: &TokenBlocks, pad: Option<u32>) -> f64 {
    let total = counts.iter().sum::<u64>() as f64 + counts.len() as f64;
    let (mut nll, mut n) = (0.0f64, 0u64);
    blocks.for_each_block(|b| {
        for &t in b.iter().skip(1) {
            if Some(t) == pad {
                continue;
            }
            let c = counts.get(t as usize).copied().unwrap_or(0) as f64 + 1.0;
            nll -= (c / total).ln();
            n += 1;
        }
    });
    (nll / n.max(1) as f64).exp()
}

fn batch_of(blocks: &TokenBlocks, start: usize, end: usize) -> Result<Tensor> {
    let mut flat = Vec::with_capacity((end - start) * blocks.block_len());
    for i in start..end {
        flat.extend(blocks.get(i)?.into_iter().map(i64::from));
    }
    Ok(Tensor::from_slice(&flat).view([(end - start) as i64, blocks.block_len() as i64]))
}

/// GPT's perplexity on `blocks`: `exp` of the mean next-token cross-entropy over all targets.
pub fn gpt_perplexity(model: &Gpt, blocks: &TokenBlocks, batch_size: usize, device: Device) -> Result<f64> {
    if blocks.is_empty() {
        return Err(Error::data("held-out split", "no blocks to score"));
    }
    let (mut nll, mut n) = (0.0f64, 0i64);
    tch::no_grad(|| -> Result<()> {
        for start in (0..blocks.len()).step_by(batch_size.max(1)) {
            let end = (start + batch_size.max(1)).min(blocks.len());
            let ids = batch_of(blocks, start, end)?.to_device(device);
            let (loss, count) = model.lm_loss(&ids, false)?;
            nll += loss.double_value(&[]) * count as f64;
            n += count;
        }
        Ok(())
    })?;
    Ok((nll / n.max(1) as f64).exp())
}

/// BERT's masked-token accuracy on `blocks`, masked as `batches` masks, with generators seeded
/// from `seed` (the same positions for every model), and the accuracy of always guessing the
/// most frequent non-special training token (`counts`) on the same positions:
/// `(accuracy, unigram_accuracy, masked positions)`.
#[allow(clippy::too_many_arguments)]
pub fn bert_masked_accuracy(
    model: &Bert,
    blocks: &TokenBlocks,
    batches: &MlmBatches,
    counts: &[u64],
    tokenizer: &TextTokenizer,
    seed: u64,
    batch_size: usize,
    device: Device,
) -> Result<(f64, f64, u64)> {
    if blocks.is_empty() {
        return Err(Error::data("held-out split", "no blocks to score"));
    }
    let special = tokenizer.specials().all();
    let most_frequent = counts
        .iter()
        .enumerate()
        .filter(|(t, _)| !special.contains(&(*t as u32)))
        .max_by_key(|(t, c)| (**c, std::cmp::Reverse(*t)))
        .map_or(0, |(t, _)| t as i64);
    let (mut correct, mut guessed, mut n) = (0.0f64, 0u64, 0u64);
    tch::no_grad(|| -> Result<()> {
        for start in (0..blocks.len()).step_by(batch_size.max(1)) {
            let end = (start + batch_size.max(1)).min(blocks.len());
            let mut samples = Vec::with_capacity(end - start);
            for i in start..end {
                let mut rng = rng_for(seed, "held-out-masking", &[i as u64]);
                samples.push(batches.prepare(blocks.get(i)?, &mut rng)?);
            }
            let (inputs, labels) = batches.collate(samples)?;
            for &y in Vec::<i64>::try_from(labels.view([-1])).torch_context("labels")?.iter() {
                if y != IGNORE_INDEX {
                    n += 1;
                    guessed += u64::from(y == most_frequent);
                }
            }
            let (_, c, _) = model.mlm_loss(&inputs.to_device(device), &labels.to_device(device), false)?;
            correct += c.double_value(&[]);
        }
        Ok(())
    })?;
    let n_f = n.max(1) as f64;
    Ok((correct / n_f, guessed as f64 / n_f, n))
}

/// Labelled texts as `(ids [N, T], labels [N])` for probes and fine-tuning: each text tokenised,
/// framed as the layout frames blocks (`[CLS] text [SEP]` for BERT), cut to `max_len` and padded.
pub fn labelled_tensors(
    texts: &[String],
    labels: &[i64],
    tokenizer: &TextTokenizer,
    layout: Layout,
    max_len: usize,
) -> Result<(Tensor, Tensor)> {
    if texts.len() != labels.len() || texts.is_empty() {
        return Err(Error::invalid(
            "labelled texts",
            format!("{} texts and {} labels", texts.len(), labels.len()),
        ));
    }
    let encoded = tokenizer.encode_batch(texts)?;
    let mut flat = Vec::with_capacity(texts.len() * max_len);
    for ids in encoded {
        let mut row: Vec<i64> = match layout {
            Layout::Bert { cls, sep, .. } => std::iter::once(cls)
                .chain(ids.into_iter().take(max_len.saturating_sub(2)))
                .chain(std::iter::once(sep))
                .map(i64::from)
                .collect(),
            Layout::Gpt { .. } => ids.into_iter().take(max_len).map(i64::from).collect(),
        };
        if row.is_empty() {
            return Err(Error::data("labelled texts", "a text has no tokens"));
        }
        row.resize(max_len, i64::from(layout.pad()));
        flat.extend(row);
    }
    let x = Tensor::from_slice(&flat).view([texts.len() as i64, max_len as i64]);
    Ok((x, Tensor::from_slice(labels).to_kind(Kind::Int64)))
}
