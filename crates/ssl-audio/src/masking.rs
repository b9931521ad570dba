//! Span masking of feature frames and the sampling of contrastive distractors (wav2vec 2.0,
//! Baevski et al. 2020, §3.1 and §3.2; fairseq's `compute_mask_indices` and
//! `sample_negatives`).
//!
//! **Spans.** For a sequence of `n` real frames, `round_random(p · n / span)` start frames
//! (at least `min_spans`) are drawn without replacement from the first `n - span` frames, and
//! the `span` frames after each are masked; spans may overlap, so about `1 - e^{-p}` of the
//! frames end up masked (49% at the paper's `p = 0.65`, span 10). Rows of a batch are then cut
//! to the same number of masked frames (the smallest), dropping random ones, so masked frames
//! reshape to `[B, M, D]`.
//!
//! **Distractors.** For each masked frame, `k` distractors are drawn uniformly with
//! replacement from the *other* masked frames of the same utterance: an index is drawn from
//! `M - 1` and shifted past the positive, so it is never the positive itself.
//!
//! ```
//! use ssl_audio::masking::{span_mask, SpanMaskConfig};
//! use ssl_core::rng::rng_for;
//! let cfg = SpanMaskConfig::default(); // p 0.65, span 10, at least 2 spans
//! let mask = span_mask(&cfg, &[200, 150], 200, &mut rng_for(0, "doc", &[]))?;
//! let counts: Vec<usize> = mask.iter().map(|row| row.iter().filter(|&&m| m).count()).collect();
//! assert_eq!(counts[0], counts[1]); // rows are equalised
//! assert!(mask[1][150..].iter().all(|&m| !m)); // padding is never masked
//! # Ok::<(), ssl_core::Error>(())
//! ```

use rand::seq::index::sample;
use rand::Rng;
use serde::{Deserialize, Serialize};
use ssl_core::rng::SslRng;
use ssl_core::{Error, Result};

/// The span masking of wav2vec 2.0: the `mask` part of a `wav2vec2` model config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpanMaskConfig {
    /// fairseq's `mask_prob` (0.65 for wav2vec 2.0 base): about `prob × frames / span` spans start
    /// (the paper's per-frame start probability p = 0.065 is `prob / span`); overlapping spans
    /// make the masked share lower (about 49% at the defaults).
    pub prob: f64,
    /// Frames per span (`mask_length`, 10).
    pub span: usize,
    /// At least this many spans per utterance (`min_masks`, 2).
    pub min_spans: usize,
}

impl Default for SpanMaskConfig {
    fn default() -> Self {
        Self { prob: 0.65, span: 10, min_spans: 2 }
    }
}

impl SpanMaskConfig {
    /// Checks the fields; errors name them as `model.mask.*`.
    pub fn validate(&self) -> Result<()> {
        if !(self.prob > 0.0 && self.prob <= 1.0) {
            return Err(Error::config("model.mask.prob", "must be in (0, 1]"));
        }
        if self.span < 1 {
            return Err(Error::config("model.mask.span", "must be at least 1"));
        }
        if self.min_spans < 1 {
            return Err(Error::config(
                "model.mask.min_spans",
                "must be at least 1 (nothing to predict otherwise)",
            ));
        }
        Ok(())
    }

    /// The expected share of masked frames in one utterance of `n` real frames, before rows
    /// are equalised (exact: averages the chance of a frame escaping every span).
    pub fn expected_share(&self, n: usize) -> f64 {
        let starts = n.saturating_sub(self.span).max(1);
        let x = self.prob * n as f64 / self.span as f64;
        let (lo, frac) = (x.floor() as usize, x - x.floor());
        let share_for = |k: usize| -> f64 {
            let k = k.max(self.min_spans).min(starts);
            let mut total = 0.0;
            for i in 0..n {
                // Starts covering frame i: s in [i + 1 - span, i] ∩ [0, starts).
                let first = (i + 1).saturating_sub(self.span);
                let covering = (i + 1).min(starts).saturating_sub(first);
                // P(no chosen start covers i) = C(starts - c, k) / C(starts, k).
                let mut p_free = 1.0;
                for j in 0..k {
                    p_free *= (starts - covering) as f64 - j as f64;
                    p_free /= (starts - j) as f64;
                    if p_free <= 0.0 {
                        p_free = 0.0;
                        break;
                    }
                }
                total += 1.0 - p_free;
            }
            total / n as f64
        };
        (1.0 - frac) * share_for(lo) + frac * share_for(lo + 1)
    }
}

/// The spans of one utterance with `n` real frames out of `t`: a `[t]` mask.
pub fn span_mask_row(cfg: &SpanMaskConfig, n: usize, t: usize, rng: &mut SslRng) -> Vec<bool> {
    let n = n.min(t);
    let mut row = vec![false; t];
    if n == 0 {
        return row;
    }
    let span = cfg.span.min(n);
    // fairseq: int(mask_prob * sz / mask_length + np.random.rand()).
    let wanted = (cfg.prob * n as f64 / cfg.span as f64 + rng.gen::<f64>()) as usize;
    let starts = n.saturating_sub(span).max(1);
    let k = wanted.max(cfg.min_spans).min(starts);
    for s in sample(rng, starts, k) {
        for m in &mut row[s..(s + span).min(n)] {
            *m = true;
        }
    }
    row
}

/// Span masks for a batch: row `b` has `lengths[b]` real frames out of `t`; then every row
/// is cut (at random) to the smallest row's masked count. An utterance shorter than two
/// frames is an error (nothing could be contrasted).
pub fn span_mask(
    cfg: &SpanMaskConfig,
    lengths: &[usize],
    t: usize,
    rng: &mut SslRng,
) -> Result<Vec<Vec<bool>>> {
    cfg.validate()?;
    if let Some(&short) = lengths.iter().find(|&&n| n.min(t) < 2) {
        return Err(Error::invalid(
            "span mask",
            format!("an utterance has {short} feature frames; at least 2 are needed (use longer clips)"),
        ));
    }
    let mut rows: Vec<Vec<bool>> = lengths.iter().map(|&n| span_mask_row(cfg, n, t, rng)).collect();
    let min = rows.iter().map(|r| r.iter().filter(|&&m| m).count()).min().unwrap_or(0);
    for row in &mut rows {
        let on: Vec<usize> = row.iter().enumerate().filter(|(_, &m)| m).map(|(i, _)| i).collect();
        if on.len() > min {
            for drop in sample(rng, on.len(), on.len() - min) {
                row[on[drop]] = false;
            }
        }
    }
    Ok(rows)
}

/// For each of `m` positives, `k` distractor indices in `0..m`, never the positive's own
/// index (row-major `[m, k]`). Needs `m >= 2`.
pub fn sample_distractors(m: usize, k: usize, rng: &mut SslRng) -> Result<Vec<usize>> {
    if m < 2 {
        return Err(Error::invalid("distractors", format!("{m} candidate frames; at least 2 are needed")));
    }
    let mut out = Vec::with_capacity(m * k);
    for pos in 0..m {
        for _ in 0..k {
            let j = rng.gen_range(0..m - 1);
            out.push(if j >= pos { j + 1 } else { j });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ssl_core::rng::rng_for;

    #[test]
    fn the_papers_recipe_masks_about_half_the_frames() {
        let cfg = SpanMaskConfig::default();
        let expected = cfg.expected_share(500);
        assert!((expected - (1.0 - (-0.65f64).exp())).abs() < 0.03, "{expected}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn the_masked_share_matches_its_expectation(
            n in 30usize..300, prob in 0.1f64..0.9, span in 1usize..12, seed: u64,
        ) {
            let cfg = SpanMaskConfig { prob, span, min_spans: 2 };
            let mut rng = rng_for(seed, "share", &[]);
            let trials = 300;
            let masked: usize = (0..trials)
                .map(|_| span_mask_row(&cfg, n, n, &mut rng).iter().filter(|&&m| m).count())
                .sum();
            let share = masked as f64 / (trials * n) as f64;
            let expected = cfg.expected_share(n);
            // Five standard errors of a mean of 300 shares, at least 0.02.
            prop_assert!((share - expected).abs() < 0.03, "share {} expected {}", share, expected);
        }

        #[test]
        fn masks_respect_bounds_and_equalise_rows(
            lengths in proptest::collection::vec(2usize..120, 1..6), extra in 0usize..20, seed: u64,
        ) {
            let t = lengths.iter().copied().max().unwrap_or(2) + extra;
            let cfg = SpanMaskConfig::default();
            let rows = span_mask(&cfg, &lengths, t, &mut rng_for(seed, "rows", &[])).unwrap();
            let counts: Vec<usize> = rows.iter().map(|r| r.iter().filter(|&&m| m).count()).collect();
            prop_assert!(counts.iter().all(|&c| c == counts[0] && c >= 1));
            for (row, &n) in rows.iter().zip(&lengths) {
                prop_assert_eq!(row.len(), t);
                prop_assert!(row[n..].iter().all(|&m| !m), "padding masked");
            }
        }

        #[test]
        fn distractors_are_never_the_positive(m in 2usize..60, k in 1usize..120, seed: u64) {
            let idx = sample_distractors(m, k, &mut rng_for(seed, "neg", &[])).unwrap();
            prop_assert_eq!(idx.len(), m * k);
            for (i, &j) in idx.iter().enumerate() {
                prop_assert!(j < m);
                prop_assert_ne!(j, i / k);
            }
        }
    }

    #[test]
    fn distractors_cover_every_other_frame() {
        let idx = sample_distractors(3, 300, &mut rng_for(1, "cover", &[])).unwrap();
        for pos in 0..3 {
            let mut seen = [false; 3];
            for &j in &idx[pos * 300..(pos + 1) * 300] {
                seen[j] = true;
            }
            assert_eq!(seen.iter().filter(|&&s| s).count(), 2);
        }
        assert!(sample_distractors(1, 5, &mut rng_for(1, "cover", &[])).is_err());
    }

    #[test]
    fn too_short_utterances_are_errors() {
        let e = span_mask(&SpanMaskConfig::default(), &[1], 10, &mut rng_for(0, "x", &[])).unwrap_err();
        assert!(e.to_string().contains("at least 2"), "{e}");
    }
}
