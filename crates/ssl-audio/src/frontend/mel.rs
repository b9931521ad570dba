//! Mel scales and triangular mel filterbanks, built as `librosa.filters.mel` builds them.

use ndarray::Array2;
use ssl_core::{Error, Result};

/// The Hz ↔ mel mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MelScale {
    /// `2595 · log10(1 + f / 700)` (HTK; librosa's `htk=True`).
    Htk,
    /// Slaney's Auditory Toolbox scale: linear below 1 kHz (`f / (200/3)`), logarithmic above
    /// (27 mels per factor of 6.4). librosa's default.
    #[default]
    Slaney,
}

/// Constants of the Slaney scale: the linear part's Hz per mel, where it ends, and the log step.
const SLANEY_HZ_PER_MEL: f64 = 200.0 / 3.0;
const SLANEY_BREAK_HZ: f64 = 1000.0;
const SLANEY_BREAK_MEL: f64 = SLANEY_BREAK_HZ / SLANEY_HZ_PER_MEL;

/// `ln(6.4) / 27`: the Slaney scale's log step per mel above 1 kHz.
fn slaney_log_step() -> f64 {
    6.4f64.ln() / 27.0
}

impl MelScale {
    /// `hz` on this mel scale.
    ///
    /// ```
    /// use ssl_audio::frontend::MelScale;
    ///
    /// assert!((MelScale::Slaney.hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
    /// assert!((MelScale::Htk.hz_to_mel(700.0) - 2595.0 * 2f64.log10()).abs() < 1e-9);
    /// ```
    pub fn hz_to_mel(self, hz: f64) -> f64 {
        match self {
            MelScale::Htk => 2595.0 * (1.0 + hz / 700.0).log10(),
            MelScale::Slaney if hz >= SLANEY_BREAK_HZ => {
                SLANEY_BREAK_MEL + (hz / SLANEY_BREAK_HZ).ln() / slaney_log_step()
            }
            MelScale::Slaney => hz / SLANEY_HZ_PER_MEL,
        }
    }

    /// The frequency in Hz of `mel` on this scale (the inverse of [`MelScale::hz_to_mel`]).
    pub fn mel_to_hz(self, mel: f64) -> f64 {
        match self {
            MelScale::Htk => 700.0 * (10f64.powf(mel / 2595.0) - 1.0),
            MelScale::Slaney if mel >= SLANEY_BREAK_MEL => {
                SLANEY_BREAK_HZ * (slaney_log_step() * (mel - SLANEY_BREAK_MEL)).exp()
            }
            MelScale::Slaney => mel * SLANEY_HZ_PER_MEL,
        }
    }
}

/// How each mel filter is scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MelNorm {
    /// Triangles peak at 1 (librosa's `norm=None`).
    None,
    /// Each triangle is divided by half its width in Hz, `2 / (f_hi − f_lo)`, so every filter has
    /// the same area over frequency (librosa's default `norm="slaney"`).
    #[default]
    Slaney,
}

/// The arguments of [`mel_filterbank`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct MelParams {
    pub(crate) sample_rate: u32,
    pub(crate) n_fft: usize,
    pub(crate) n_mels: usize,
    pub(crate) f_min: f32,
    pub(crate) f_max: Option<f32>,
    pub(crate) scale: MelScale,
    pub(crate) norm: MelNorm,
}

/// A mel filterbank stored sparsely: each filter's first non-zero FFT bin and its weights.
#[derive(Debug, Clone)]
pub(crate) struct MelBank {
    /// `(first bin, weights)` per filter, weights in f64.
    filters: Vec<(usize, Vec<f64>)>,
    /// FFT bins the filters are defined over (`n_fft / 2 + 1`).
    n_bins: usize,
}

impl MelBank {
    /// The filterbank of [`mel_filterbank`]; `prefix` is the dotted path of the config fields for
    /// the error messages.
    pub(crate) fn new(params: MelParams, prefix: &str) -> Result<Self> {
        let MelParams { sample_rate, n_fft, n_mels, f_min, f_max, scale, norm } = params;
        let field = |name: &str| format!("{prefix}{name}");
        if sample_rate == 0 {
            return Err(Error::config(field("sample_rate"), "must be positive"));
        }
        if n_fft < 2 {
            return Err(Error::config(field("n_fft"), format!("must be at least 2, got {n_fft}")));
        }
        if n_mels == 0 {
            return Err(Error::config(field("n_mels"), "must be positive"));
        }
        let nyquist = f64::from(sample_rate) / 2.0;
        let (lo, hi) = (f64::from(f_min), f_max.map_or(nyquist, f64::from));
        if !(lo.is_finite() && lo >= 0.0) {
            return Err(Error::config(
                field("f_min"),
                format!("must be finite and non-negative, got {f_min}"),
            ));
        }
        if !(hi.is_finite() && hi > lo && hi <= nyquist) {
            return Err(Error::config(
                field("f_max"),
                format!("must be above f_min ({lo} Hz) and at most the Nyquist frequency ({nyquist} Hz), got {hi}"),
            ));
        }
        let n_bins = n_fft / 2 + 1;
        let bin_hz = |k: usize| k as f64 * f64::from(sample_rate) / n_fft as f64;
        // n_mels + 2 points equally spaced in mel: the edges and centres of the triangles.
        let (mel_lo, mel_hi) = (scale.hz_to_mel(lo), scale.hz_to_mel(hi));
        let step = (mel_hi - mel_lo) / (n_mels + 1) as f64;
        let hz: Vec<f64> = (0..n_mels + 2)
            .map(|i| scale.mel_to_hz(if i == n_mels + 1 { mel_hi } else { mel_lo + step * i as f64 }))
            .collect();
        let filters = (0..n_mels)
            .map(|m| {
                let (left, centre, right) = (hz[m], hz[m + 1], hz[m + 2]);
                let gain = match norm {
                    MelNorm::None => 1.0,
                    MelNorm::Slaney => 2.0 / (right - left),
                };
                let weight = |k: usize| {
                    let f = bin_hz(k);
                    let rising = (f - left) / (centre - left);
                    let falling = (right - f) / (right - centre);
                    rising.min(falling).max(0.0) * gain
                };
                let first = (0..n_bins).find(|&k| weight(k) > 0.0).unwrap_or(n_bins);
                let end = (first..n_bins).find(|&k| weight(k) <= 0.0).unwrap_or(n_bins);
                (first, (first..end).map(weight).collect())
            })
            .collect();
        Ok(Self { filters, n_bins })
    }

    /// The number of filters.
    pub(crate) fn n_mels(&self) -> usize {
        self.filters.len()
    }

    /// The filters as a dense `[n_mels, n_bins]` matrix.
    pub(crate) fn dense(&self) -> Array2<f32> {
        let mut out = Array2::zeros((self.filters.len(), self.n_bins));
        for (m, (first, weights)) in self.filters.iter().enumerate() {
            for (k, &w) in weights.iter().enumerate() {
                out[[m, first + k]] = w as f32;
            }
        }
        out
    }

    /// Writes the filter outputs `Σ_k W[m, k] · spectrum[k]` for one frame into `out`.
    pub(crate) fn apply(&self, spectrum: &[f64], out: &mut [f64]) {
        for (o, (first, weights)) in out.iter_mut().zip(&self.filters) {
            *o = weights.iter().zip(&spectrum[*first..]).map(|(w, s)| w * s).sum();
        }
    }
}

/// The mel filterbank `[n_mels, n_fft / 2 + 1]`: `n_mels` triangles over the FFT bin frequencies
/// `k · sample_rate / n_fft` (Hz), whose edges and centres are `n_mels + 2` points equally spaced
/// on the mel `scale` from `f_min` to `f_max` (`None`: `sample_rate / 2`), scaled by `norm`.
/// The same construction as `librosa.filters.mel(sr=…, n_fft=…, n_mels=…, fmin=…, fmax=…,
/// htk=…, norm=…)`. Filters narrower than the bin spacing can be all zero, as in librosa (which
/// warns about them); use fewer mels or a larger `n_fft` then.
///
/// # Errors
///
/// [`Error::Config`] naming the argument when `sample_rate` or `n_mels` is 0, `n_fft < 2`,
/// `f_min` is negative, or `f_max` is not above `f_min` or exceeds the Nyquist frequency.
///
/// # Examples
///
/// ```
/// use ssl_audio::frontend::{mel_filterbank, MelNorm, MelScale};
///
/// let fb = mel_filterbank(16_000, 400, 80, 0.0, None, MelScale::Slaney, MelNorm::Slaney)?;
/// assert_eq!(fb.dim(), (80, 201));
/// assert!(fb.iter().all(|&w| w >= 0.0));
/// # Ok::<(), ssl_core::Error>(())
/// ```
pub fn mel_filterbank(
    sample_rate: u32,
    n_fft: usize,
    n_mels: usize,
    f_min: f32,
    f_max: Option<f32>,
    scale: MelScale,
    norm: MelNorm,
) -> Result<Array2<f32>> {
    let params = MelParams { sample_rate, n_fft, n_mels, f_min, f_max, scale, norm };
    Ok(MelBank::new(params, "")?.dense())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in tests a panic is the failure report

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn scales_invert_and_pin_their_break_points() {
        for scale in [MelScale::Htk, MelScale::Slaney] {
            for hz in [0.0, 1.0, 440.0, 999.9, 1000.0, 4000.0, 22_050.0] {
                assert!((scale.mel_to_hz(scale.hz_to_mel(hz)) - hz).abs() < 1e-9 * hz.max(1.0));
            }
        }
        assert_eq!(MelScale::Slaney.hz_to_mel(200.0 / 3.0), 1.0);
        assert!((MelScale::Slaney.hz_to_mel(6400.0) - 42.0).abs() < 1e-12);
        assert!((MelScale::Htk.hz_to_mel(1000.0) - 999.985_537_139_624_4).abs() < 1e-9);
    }

    #[test]
    fn bad_arguments_name_the_field() {
        let s = (MelScale::Slaney, MelNorm::Slaney);
        for (result, field) in [
            (mel_filterbank(0, 400, 80, 0.0, None, s.0, s.1), "sample_rate"),
            (mel_filterbank(16_000, 1, 80, 0.0, None, s.0, s.1), "n_fft"),
            (mel_filterbank(16_000, 400, 0, 0.0, None, s.0, s.1), "n_mels"),
            (mel_filterbank(16_000, 400, 80, -1.0, None, s.0, s.1), "f_min"),
            (mel_filterbank(16_000, 400, 80, f32::NAN, None, s.0, s.1), "f_min"),
            (mel_filterbank(16_000, 400, 80, 100.0, Some(100.0), s.0, s.1), "f_max"),
            (mel_filterbank(16_000, 400, 80, 0.0, Some(8000.5), s.0, s.1), "f_max"),
        ] {
            assert!(matches!(result, Err(Error::Config { field: f, .. }) if f == field), "{field}");
        }
    }

    #[test]
    fn htk_triangles_peak_at_one_and_touch_their_neighbours() {
        // With 1 Hz bins every triangle's centre falls (almost) on a bin.
        let fb = mel_filterbank(1000, 1000, 10, 0.0, None, MelScale::Htk, MelNorm::None).unwrap();
        for row in fb.outer_iter() {
            let peak = row.iter().cloned().fold(0.0f32, f32::max);
            assert!(peak > 0.95 && peak <= 1.0, "{peak}");
        }
        // Inside the covered band, consecutive triangles sum to 1.
        let sums = fb.sum_axis(ndarray::Axis(0));
        let mel_edges = MelScale::Htk.hz_to_mel(500.0) / 11.0;
        let (first_centre, last_centre) =
            (MelScale::Htk.mel_to_hz(mel_edges), MelScale::Htk.mel_to_hz(10.0 * mel_edges));
        for (k, &s) in sums.iter().enumerate() {
            if (k as f64) > first_centre + 1.0 && (k as f64) < last_centre - 1.0 {
                assert!((s - 1.0).abs() < 1e-5, "bin {k}: {s}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Rows are non-negative; with Slaney normalisation each triangle's area over frequency
        /// (trapezoid rule over the bins, in Hz) is 1 when it spans many bins.
        #[test]
        fn filters_are_non_negative_with_unit_area(
            rate in prop::sample::select(vec![8_000u32, 16_000, 22_050, 44_100]),
            n_mels in 4usize..40,
            htk in any::<bool>(),
        ) {
            let n_fft = 8192;
            let scale = if htk { MelScale::Htk } else { MelScale::Slaney };
            let fb = mel_filterbank(rate, n_fft, n_mels, 0.0, None, scale, MelNorm::Slaney).unwrap();
            prop_assert!(fb.iter().all(|&w| w >= 0.0 && w.is_finite()));
            let bin_hz = f64::from(rate) / n_fft as f64;
            for (m, row) in fb.outer_iter().enumerate() {
                let area: f64 = row.iter().map(|&w| f64::from(w) * bin_hz).sum();
                prop_assert!((area - 1.0).abs() < 0.02, "filter {}: area {}", m, area);
            }
            let plain = mel_filterbank(rate, n_fft, n_mels, 0.0, None, scale, MelNorm::None).unwrap();
            prop_assert!(plain.iter().all(|&w| (0.0..=1.0).contains(&w)));
        }
    }
}
