//! Short-time Fourier transform power spectrograms, as `librosa.stft` frames them.

use std::sync::Arc;

use ndarray::Array2;
use realfft::{RealFftPlanner, RealToComplex};
use ssl_core::{Error, Result};

/// How a centred STFT pads the signal by `n_fft / 2` samples on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PadMode {
    /// Zeros, librosa's default since 0.10 (`pad_mode="constant"`).
    #[default]
    Constant,
    /// The signal mirrored about its first and last samples, which are not repeated
    /// (`numpy.pad(mode="reflect")`, torchaudio's default). Needs more than `n_fft / 2` samples.
    Reflect,
}

/// The analysis window, periodic (the "DFT-even" form `scipy.signal.get_window` returns for
/// spectral analysis, as librosa uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// `0.5 − 0.5 cos(2πn / N)`.
    #[default]
    Hann,
    /// `0.54 − 0.46 cos(2πn / N)`.
    Hamming,
}

impl Window {
    /// The `len` window values.
    fn values(self, len: usize) -> Vec<f64> {
        let (a, b) = match self {
            Window::Hann => (0.5, 0.5),
            Window::Hamming => (0.54, 0.46),
        };
        let step = 2.0 * std::f64::consts::PI / len as f64;
        (0..len).map(|n| a - b * (step * n as f64).cos()).collect()
    }
}

/// The framing of a short-time Fourier transform. The defaults (25 ms windows every 10 ms at
/// 16 kHz) are those of most speech models' log-mel front ends.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StftConfig {
    /// FFT size in samples (default 400); each frame has `n_fft / 2 + 1` frequency bins.
    pub n_fft: usize,
    /// Samples between the starts of consecutive frames (default 160).
    pub hop_length: usize,
    /// Window length in samples, at most `n_fft`; the window is zero-padded on both sides to
    /// `n_fft`, centred as librosa does (`None`, the default, means `n_fft`).
    pub win_length: Option<usize>,
    /// The window shape (default periodic Hann).
    pub window: Window,
    /// Whether frame `t` is centred on sample `t · hop_length`, the signal being padded by
    /// `n_fft / 2` on each side (default `true`); otherwise frame `t` starts there.
    pub center: bool,
    /// How centred frames pad the signal (default [`PadMode::Constant`], as librosa ≥ 0.10).
    pub pad_mode: PadMode,
    /// The exponent applied to the magnitudes: 2 (default) for power, 1 for magnitude.
    pub power: f32,
}

impl Default for StftConfig {
    fn default() -> Self {
        Self {
            n_fft: 400,
            hop_length: 160,
            win_length: None,
            window: Window::Hann,
            center: true,
            pad_mode: PadMode::Constant,
            power: 2.0,
        }
    }
}

impl StftConfig {
    /// Frequency bins per frame: `n_fft / 2 + 1`.
    pub fn n_bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Frames for a signal of `len` samples: `1 + (len + 2·(n_fft/2) − n_fft) / hop_length`
    /// when centred, `1 + (len − n_fft) / hop_length` otherwise (integer division), as librosa.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the signal is empty, shorter than `n_fft` without
    /// centring, or (with [`PadMode::Reflect`]) not longer than `n_fft / 2`.
    pub fn n_frames(&self, len: usize) -> Result<usize> {
        let pad = self.pad();
        if len == 0 {
            return Err(Error::invalid("x", "the signal is empty"));
        }
        if self.center && self.pad_mode == PadMode::Reflect && len <= pad {
            return Err(Error::invalid(
                "x",
                format!("reflect padding by n_fft / 2 = {pad} needs more than {pad} samples, got {len}"),
            ));
        }
        let padded = len + 2 * pad;
        if padded < self.n_fft {
            return Err(Error::invalid(
                "x",
                format!("{len} samples are fewer than n_fft = {} (without centring)", self.n_fft),
            ));
        }
        Ok(1 + (padded - self.n_fft) / self.hop_length)
    }

    /// Padding on each side of the signal.
    fn pad(&self) -> usize {
        if self.center {
            self.n_fft / 2
        } else {
            0
        }
    }

    /// Checks every field's range; `prefix` is the dotted path of the config for the messages.
    pub(crate) fn validate(&self, prefix: &str) -> Result<()> {
        let field = |name: &str| format!("{prefix}{name}");
        if self.n_fft < 2 {
            return Err(Error::config(field("n_fft"), format!("must be at least 2, got {}", self.n_fft)));
        }
        if self.hop_length == 0 {
            return Err(Error::config(field("hop_length"), "must be positive"));
        }
        if let Some(w) = self.win_length {
            if w == 0 || w > self.n_fft {
                return Err(Error::config(
                    field("win_length"),
                    format!("must be in 1..=n_fft ({}), got {w}", self.n_fft),
                ));
            }
        }
        if !(self.power.is_finite() && self.power > 0.0) {
            return Err(Error::config(field("power"), format!("must be positive, got {}", self.power)));
        }
        Ok(())
    }
}

/// A planned STFT: the window and the FFT plan of a [`StftConfig`], reusable across signals and
/// threads (`Send + Sync`).
#[derive(Clone)]
pub struct Stft {
    config: StftConfig,
    /// The window, zero-padded to `n_fft`.
    window: Vec<f64>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl std::fmt::Debug for Stft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stft").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Stft {
    /// Plans the STFT of `config`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the field when `n_fft < 2`, `hop_length` is 0, `win_length` is
    /// not in `1..=n_fft` or `power` is not positive.
    pub fn new(config: StftConfig) -> Result<Self> {
        config.validate("")?;
        let n_fft = config.n_fft;
        let win_length = config.win_length.unwrap_or(n_fft);
        let mut window = vec![0.0; n_fft];
        let offset = (n_fft - win_length) / 2;
        window[offset..offset + win_length].copy_from_slice(&config.window.values(win_length));
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n_fft);
        Ok(Self { config, window, fft })
    }

    /// The configuration.
    pub fn config(&self) -> &StftConfig {
        &self.config
    }

    /// The spectrogram of `x`, `[n_frames, n_fft / 2 + 1]` (time-major): `|X[t, k]|^power`, with
    /// `X` the unnormalised DFT of the windowed frame (no scaling, as `librosa.stft`).
    ///
    /// # Errors
    ///
    /// Those of [`StftConfig::n_frames`].
    pub fn power(&self, x: &[f32]) -> Result<Array2<f32>> {
        let n_frames = self.config.n_frames(x.len())?;
        let mut out = Array2::zeros((n_frames, self.config.n_bins()));
        self.for_each_frame(x, |t, power| {
            for (o, &p) in out.row_mut(t).iter_mut().zip(power) {
                *o = p as f32;
            }
        })?;
        Ok(out)
    }

    /// Calls `f(t, spectrum)` with the `|X|^power` spectrum (in f64) of every frame `t` of `x`,
    /// in order; returns the number of frames.
    pub(crate) fn for_each_frame(&self, x: &[f32], mut f: impl FnMut(usize, &[f64])) -> Result<usize> {
        let cfg = &self.config;
        let n_frames = cfg.n_frames(x.len())?;
        let (n_fft, pad, len) = (cfg.n_fft, cfg.pad() as isize, x.len() as isize);
        let mut frame = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0.0f64; cfg.n_bins()];
        let exponent = f64::from(cfg.power) / 2.0;
        for t in 0..n_frames {
            let start = (t * cfg.hop_length) as isize - pad;
            if start >= 0 && start + n_fft as isize <= len {
                let samples = &x[start as usize..start as usize + n_fft];
                for ((v, &s), &w) in frame.iter_mut().zip(samples).zip(&self.window) {
                    *v = f64::from(s) * w;
                }
            } else {
                for (j, (v, &w)) in frame.iter_mut().zip(&self.window).enumerate() {
                    *v = padded_sample(x, start + j as isize, cfg.pad_mode) * w;
                }
            }
            self.fft
                .process_with_scratch(&mut frame, &mut spectrum, &mut scratch)
                .map_err(|e| Error::invalid("n_fft", format!("FFT failed: {e}")))?;
            for (p, c) in power.iter_mut().zip(&spectrum) {
                let squared = c.norm_sqr();
                *p = if exponent == 1.0 { squared } else { squared.powf(exponent) };
            }
            f(t, &power);
        }
        Ok(n_frames)
    }
}

/// Sample `i` of `x` padded on both sides by `mode` (zeros, or a reflection that does not repeat
/// the edge sample; the caller guarantees that a reflection stays inside `x`).
fn padded_sample(x: &[f32], i: isize, mode: PadMode) -> f64 {
    let len = x.len() as isize;
    let j = match mode {
        _ if (0..len).contains(&i) => i,
        PadMode::Constant => return 0.0,
        PadMode::Reflect if i < 0 => -i,
        PadMode::Reflect => 2 * (len - 1) - i,
    };
    x.get(j as usize).map_or(0.0, |&v| f64::from(v))
}

/// The spectrogram of `x` under `config`, `[n_frames, n_fft / 2 + 1]` (time-major): the power
/// spectrogram `|STFT|²` by default, the magnitude with `power = 1`. Equals
/// `np.abs(librosa.stft(x, n_fft=…, hop_length=…, win_length=…, center=…, pad_mode=…)) ** power`
/// transposed. Plan a [`Stft`] instead to transform many signals.
///
/// # Errors
///
/// Those of [`Stft::new`] and [`StftConfig::n_frames`].
///
/// # Examples
///
/// ```
/// use ssl_audio::frontend::{power_spectrogram, StftConfig};
///
/// // A 1 kHz tone at 16 kHz falls in bin 1000 / (16000 / 400) = 25.
/// let x: Vec<f32> = (0..16_000).map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16_000.0).sin()).collect();
/// let spec = power_spectrogram(&x, &StftConfig::default())?;
/// assert_eq!(spec.dim(), (101, 201)); // 1 + 16000 / 160 frames, 400 / 2 + 1 bins
/// let frame = spec.row(50);
/// let peak = (0..201).max_by(|&a, &b| frame[a].total_cmp(&frame[b])).unwrap_or(0);
/// assert_eq!(peak, 25);
/// # Ok::<(), ssl_core::Error>(())
/// ```
pub fn power_spectrogram(x: &[f32], config: &StftConfig) -> Result<Array2<f32>> {
    Stft::new(*config)?.power(x)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in tests a panic is the failure report

    use proptest::prelude::*;

    use super::*;

    /// A deterministic pseudo-random signal in `[-1, 1)`.
    fn noise(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn defaults_are_pinned() {
        let c = StftConfig::default();
        assert_eq!((c.n_fft, c.hop_length, c.win_length, c.center), (400, 160, None, true));
        assert_eq!((c.window, c.pad_mode, c.power), (Window::Hann, PadMode::Constant, 2.0));
        assert_eq!(c.n_bins(), 201);
    }

    #[test]
    fn frame_counts_follow_librosa() {
        let c = StftConfig::default();
        assert_eq!(c.n_frames(16_000).unwrap(), 101);
        assert_eq!(c.n_frames(1).unwrap(), 1);
        assert_eq!(c.n_frames(159).unwrap(), 1);
        assert_eq!(c.n_frames(160).unwrap(), 2);
        let odd = StftConfig { n_fft: 5, hop_length: 2, ..c };
        assert_eq!(odd.n_frames(1).unwrap(), 1); // padded to 1 + 2 + 2 = 5
        assert_eq!(odd.n_frames(4).unwrap(), 2);
        let plain = StftConfig { center: false, ..c };
        assert_eq!(plain.n_frames(400).unwrap(), 1);
        assert_eq!(plain.n_frames(719).unwrap(), 2);
        assert_eq!(plain.n_frames(720).unwrap(), 3);
    }

    #[test]
    fn short_and_empty_signals_are_errors() {
        let c = StftConfig::default();
        assert!(matches!(c.n_frames(0), Err(Error::InvalidArgument { .. })));
        let err = StftConfig { center: false, ..c }.n_frames(399).unwrap_err().to_string();
        assert!(err.contains("399 samples are fewer than n_fft = 400"), "{err}");
        let reflect = StftConfig { pad_mode: PadMode::Reflect, ..c };
        assert!(reflect.n_frames(200).is_err());
        assert_eq!(reflect.n_frames(201).unwrap(), 2);
        assert!(power_spectrogram(&[], &c).is_err());
    }

    #[test]
    fn bad_configs_name_the_field() {
        let c = StftConfig::default();
        for (bad, field) in [
            (StftConfig { n_fft: 1, ..c }, "n_fft"),
            (StftConfig { hop_length: 0, ..c }, "hop_length"),
            (StftConfig { win_length: Some(401), ..c }, "win_length"),
            (StftConfig { win_length: Some(0), ..c }, "win_length"),
            (StftConfig { power: 0.0, ..c }, "power"),
            (StftConfig { power: f32::NAN, ..c }, "power"),
        ] {
            assert!(matches!(Stft::new(bad), Err(Error::Config { field: f, .. }) if f == field), "{field}");
        }
    }

    #[test]
    fn windows_are_periodic_and_centred() {
        let hann = Window::Hann.values(4);
        assert!(hann.iter().zip([0.0, 0.5, 1.0, 0.5]).all(|(a, b)| (a - b).abs() < 1e-15), "{hann:?}");
        let hamming = Window::Hamming.values(2);
        assert!((hamming[0] - 0.08).abs() < 1e-15 && (hamming[1] - 1.0).abs() < 1e-15);
        let stft = Stft::new(StftConfig { n_fft: 8, win_length: Some(4), ..Default::default() }).unwrap();
        let expected = [0.0, 0.0, 0.0, 0.5, 1.0, 0.5, 0.0, 0.0];
        assert!(stft.window.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-15), "{:?}", stft.window);
    }

    #[test]
    fn padding_reflects_without_repeating_the_edge() {
        let x = [1.0, 2.0, 3.0, 4.0];
        let reflect: Vec<f64> = (-3..7).map(|i| padded_sample(&x, i, PadMode::Reflect)).collect();
        assert_eq!(reflect, [4.0, 3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.0]);
        let constant: Vec<f64> = (-1..5).map(|i| padded_sample(&x, i, PadMode::Constant)).collect();
        assert_eq!(constant, [0.0, 1.0, 2.0, 3.0, 4.0, 0.0]);
    }

    #[test]
    fn magnitude_is_the_square_root_of_power() {
        let x = noise(1000, 3);
        let c = StftConfig::default();
        let power = power_spectrogram(&x, &c).unwrap();
        let magnitude = power_spectrogram(&x, &StftConfig { power: 1.0, ..c }).unwrap();
        for (p, m) in power.iter().zip(&magnitude) {
            assert!((p.sqrt() - m).abs() <= 1e-5 * m.max(1.0));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        #[test]
        fn frame_count_matches_the_spectrogram(
            len in 1usize..3_000,
            n_fft in 2usize..600,
            hop in 1usize..300,
            center in any::<bool>(),
        ) {
            let c = StftConfig { n_fft, hop_length: hop, center, ..Default::default() };
            match c.n_frames(len) {
                Ok(frames) => {
                    let padded = if center { len + 2 * (n_fft / 2) } else { len };
                    prop_assert_eq!(frames, 1 + (padded - n_fft) / hop);
                    let spec = power_spectrogram(&noise(len, 1), &c).unwrap();
                    prop_assert_eq!(spec.dim(), (frames, n_fft / 2 + 1));
                }
                Err(_) => prop_assert!(!center && len < n_fft),
            }
        }

        /// Parseval: `Σ_n |w·x|² = (|X_0|² + 2 Σ_{0<k<N/2} |X_k|² + |X_{N/2}|²) / N` for even `N`.
        #[test]
        fn frame_energy_is_preserved(seed in any::<u64>(), half_fft in 1usize..300, win_fraction in 0.1f64..1.0) {
            let n_fft = 2 * half_fft;
            let win_length = ((n_fft as f64 * win_fraction) as usize).max(1);
            let c = StftConfig {
                n_fft, hop_length: n_fft / 2 + 1, win_length: Some(win_length), center: false, ..Default::default()
            };
            let x = noise(3 * n_fft, seed);
            let stft = Stft::new(c).unwrap();
            let spec = stft.power(&x).unwrap();
            for (t, row) in spec.outer_iter().enumerate() {
                let start = t * c.hop_length;
                let time: f64 = (0..n_fft).map(|j| (f64::from(x[start + j]) * stft.window[j]).powi(2)).sum();
                let last = row.len() - 1;
                let inner: f64 = row.iter().skip(1).take(last - 1).map(|&p| f64::from(p)).sum();
                let freq = (f64::from(row[0]) + 2.0 * inner + f64::from(row[last])) / n_fft as f64;
                prop_assert!((time - freq).abs() <= 1e-5 * time.max(1e-6), "frame {}: {} vs {}", t, time, freq);
            }
        }
    }
}
