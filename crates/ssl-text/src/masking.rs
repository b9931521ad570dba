//! BERT's masked-language-model corruption, as the reference collator does it
//! (`DataCollatorForLanguageModeling`, and `DataCollatorForWholeWordMask` for whole words).
//!
//! Every non-special token is chosen independently with probability `probability` (0.15); of the
//! chosen tokens 80% become `[MASK]`, 10% a random token and 10% stay unchanged; the label of a
//! chosen token is its original id and every other label is [`IGNORE_INDEX`]. With whole-word
//! masking the choice is made per word (a token plus the `##` pieces that continue it) and all
//! its pieces are chosen together. The random token is drawn uniformly from the non-special ids
//! (the reference draws from the whole vocabulary, which could put a `[PAD]` mid-sequence;
//! padding here is recognised by its id, so that case is excluded).
//!
//! ```
//! use ssl_text::masking::{mask_tokens, MaskingConfig, IGNORE_INDEX};
//! use ssl_core::rng::rng_for;
//! let special = [true, true, false, false, false, false]; // ids 0 and 1 are special
//! let cont = [false; 6];
//! let tokens = [1, 2, 3, 4, 5, 0];
//! let cfg = MaskingConfig { probability: 1.0, ..MaskingConfig::default() };
//! let (inputs, labels) = mask_tokens(&tokens, &cfg, &special, &cont, 1, &mut rng_for(0, "mlm", &[]));
//! assert_eq!((inputs[0], inputs[5]), (1, 0)); // special tokens are never chosen
//! assert_eq!(labels, [IGNORE_INDEX, 2, 3, 4, 5, IGNORE_INDEX]);
//! ```

use rand::Rng;
use serde::{Deserialize, Serialize};
use ssl_core::rng::SslRng;
use ssl_core::{Error, Result};

/// The label of a position that is not predicted (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// The corruption of BERT's MLM: the `[model.masking]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskingConfig {
    /// Probability that a token (or word) is chosen for prediction.
    pub probability: f64,
    /// Of the chosen tokens, the fraction replaced by `[MASK]`.
    pub mask_fraction: f64,
    /// Of the chosen tokens, the fraction replaced by a random token (the rest stay unchanged).
    pub random_fraction: f64,
    /// Choose whole words (WordPiece `##` continuations go with their word).
    pub whole_word: bool,
}

impl Default for MaskingConfig {
    fn default() -> Self {
        Self { probability: 0.15, mask_fraction: 0.8, random_fraction: 0.1, whole_word: false }
    }
}

impl MaskingConfig {
    /// Checks the fractions; errors name the field as `model.masking.*`.
    pub fn validate(&self) -> Result<()> {
        for (field, p) in [
            ("model.masking.probability", self.probability),
            ("model.masking.mask_fraction", self.mask_fraction),
            ("model.masking.random_fraction", self.random_fraction),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::config(field, format!("must be in [0, 1], got {p}")));
            }
        }
        if self.probability == 0.0 {
            return Err(Error::config(
                "model.masking.probability",
                "must be positive: nothing would be predicted",
            ));
        }
        if self.mask_fraction + self.random_fraction > 1.0 + 1e-12 {
            return Err(Error::config(
                "model.masking.random_fraction",
                format!(
                    "mask_fraction + random_fraction must be at most 1, got {}",
                    self.mask_fraction + self.random_fraction
                ),
            ));
        }
        Ok(())
    }
}

/// Corrupts one sequence: returns `(inputs, labels)`.
///
/// - `special[id]`: the id is special (never chosen, never drawn as a random token);
/// - `continuation[id]`: the id continues the word before it (whole-word masking);
/// - `mask_id`: the `[MASK]` id.
///
/// Ids beyond `special`'s length count as special.
pub fn mask_tokens(
    tokens: &[u32],
    cfg: &MaskingConfig,
    special: &[bool],
    continuation: &[bool],
    mask_id: u32,
    rng: &mut SslRng,
) -> (Vec<i64>, Vec<i64>) {
    let is_special = |t: u32| special.get(t as usize).copied().unwrap_or(true);
    let mut chosen = vec![false; tokens.len()];
    let mut i = 0;
    while i < tokens.len() {
        // A unit is one token, or with whole words a token and its continuations.
        let mut end = i + 1;
        if cfg.whole_word && !is_special(tokens[i]) {
            while end < tokens.len()
                && !is_special(tokens[end])
                && continuation.get(tokens[end] as usize).copied().unwrap_or(false)
            {
                end += 1;
            }
        }
        if !is_special(tokens[i]) && rng.gen_bool(cfg.probability) {
            chosen[i..end].iter_mut().for_each(|c| *c = true);
        }
        i = end;
    }
    let candidates: Vec<u32> = (0..special.len() as u32).filter(|&t| !is_special(t)).collect();
    let mut inputs = Vec::with_capacity(tokens.len());
    let mut labels = Vec::with_capacity(tokens.len());
    for (&t, &c) in tokens.iter().zip(&chosen) {
        if !c {
            inputs.push(i64::from(t));
            labels.push(IGNORE_INDEX);
            continue;
        }
        labels.push(i64::from(t));
        let u: f64 = rng.gen();
        let replaced = if u < cfg.mask_fraction {
            mask_id
        } else if u < cfg.mask_fraction + cfg.random_fraction && !candidates.is_empty() {
            candidates[rng.gen_range(0..candidates.len())]
        } else {
            t
        };
        inputs.push(i64::from(replaced));
    }
    (inputs, labels)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ssl_core::rng::rng_for;

    const V: usize = 50;
    const MASK: u32 = 4;

    fn special() -> Vec<bool> {
        (0..V).map(|t| t < 5).collect()
    }

    /// Ids 40.. continue a word.
    fn continuation() -> Vec<bool> {
        (0..V).map(|t| t >= 40).collect()
    }

    proptest! {
        #[test]
        fn special_tokens_are_never_chosen_and_labels_are_the_originals(
            tokens in proptest::collection::vec(0u32..V as u32, 0..64),
            seed in any::<u64>(),
            whole_word: bool,
        ) {
            let cfg = MaskingConfig { whole_word, probability: 0.5, ..MaskingConfig::default() };
            let (inputs, labels) = mask_tokens(&tokens, &cfg, &special(), &continuation(), MASK, &mut rng_for(seed, "t", &[]));
            prop_assert_eq!(inputs.len(), tokens.len());
            for ((&t, &x), &y) in tokens.iter().zip(&inputs).zip(&labels) {
                if t < 5 {
                    prop_assert_eq!((x, y), (i64::from(t), IGNORE_INDEX));
                }
                if y == IGNORE_INDEX {
                    prop_assert_eq!(x, i64::from(t));
                } else {
                    prop_assert_eq!(y, i64::from(t));
                    // A replacement is [MASK], the token itself, or a non-special token.
                    prop_assert!(x == i64::from(MASK) || x >= 5);
                }
            }
            if whole_word {
                // A chosen continuation's word start is chosen too, and a chosen word start's
                // continuations are chosen.
                for i in 1..tokens.len() {
                    let cont = tokens[i] >= 40 && tokens[i - 1] >= 5;
                    if cont {
                        prop_assert_eq!(labels[i] == IGNORE_INDEX, labels[i - 1] == IGNORE_INDEX);
                    }
                }
            }
        }
    }

    #[test]
    fn proportions_match_the_reference_over_many_draws() {
        let tokens: Vec<u32> = (0..2000).map(|i| 5 + (i % 30) as u32).collect();
        let cfg = MaskingConfig::default();
        let (mut chosen, mut masked, mut random, mut kept) = (0usize, 0usize, 0usize, 0usize);
        for seed in 0..50 {
            let (inputs, labels) =
                mask_tokens(&tokens, &cfg, &special(), &continuation(), MASK, &mut rng_for(seed, "t", &[]));
            for ((&t, &x), &y) in tokens.iter().zip(&inputs).zip(&labels) {
                if y == IGNORE_INDEX {
                    continue;
                }
                chosen += 1;
                if x == i64::from(MASK) {
                    masked += 1;
                } else if x == i64::from(t) {
                    kept += 1;
                } else {
                    random += 1;
                }
            }
        }
        let n = (tokens.len() * 50) as f64;
        let rate = chosen as f64 / n;
        assert!((rate - 0.15).abs() < 0.005, "chosen {rate}");
        let c = chosen as f64;
        assert!((masked as f64 / c - 0.8).abs() < 0.01, "masked {}", masked as f64 / c);
        // A random draw can pick the token itself (1 in 45), which counts as kept.
        assert!((random as f64 / c - 0.1 * 44.0 / 45.0).abs() < 0.01, "random {}", random as f64 / c);
        assert!((kept as f64 / c - (0.1 + 0.1 / 45.0)).abs() < 0.01, "kept {}", kept as f64 / c);
    }

    #[test]
    fn whole_word_masking_chooses_words_at_the_rate() {
        // Words of 3 tokens: a start (5..40) and two continuations (40..).
        let tokens: Vec<u32> =
            (0..3000).map(|i| if i % 3 == 0 { 5 + (i % 35) as u32 } else { 40 + (i % 10) as u32 }).collect();
        let cfg = MaskingConfig { whole_word: true, ..MaskingConfig::default() };
        let mut words = 0usize;
        for seed in 0..20 {
            let (_, labels) =
                mask_tokens(&tokens, &cfg, &special(), &continuation(), MASK, &mut rng_for(seed, "w", &[]));
            for w in labels.chunks(3) {
                let chosen = w.iter().filter(|&&y| y != IGNORE_INDEX).count();
                assert!(chosen == 0 || chosen == 3);
                words += usize::from(chosen == 3);
            }
        }
        let rate = words as f64 / (1000.0 * 20.0);
        assert!((rate - 0.15).abs() < 0.01, "{rate}");
    }

    #[test]
    fn bad_configs_name_the_field() {
        let e = MaskingConfig { probability: 1.5, ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("model.masking.probability"), "{e}");
        let e = MaskingConfig { mask_fraction: 0.9, random_fraction: 0.2, ..Default::default() }
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("random_fraction"), "{e}");
        assert!(MaskingConfig::default().validate().is_ok());
    }
}
