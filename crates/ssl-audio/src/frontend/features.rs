//! Log-mel spectrograms and MFCCs, as `librosa.feature.melspectrogram`, `librosa.power_to_db`
//! and `librosa.feature.mfcc` compute them.

use ndarray::Array2;
use ssl_core::{Error, Result};

use super::mel::{MelBank, MelNorm, MelParams, MelScale};
use super::stft::{Stft, StftConfig};

/// The default floor of [`LogKind::Db`] (librosa's `amin`).
pub const DEFAULT_AMIN: f32 = 1e-10;

/// `DEFAULT_AMIN` for serde.
fn default_amin() -> f32 {
    DEFAULT_AMIN
}

/// How mel energies become log features.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LogKind {
    /// Decibels, `10 · log10(max(S, amin))`, then, with `top_db`, raised to at least the clip's
    /// maximum minus `top_db`: `librosa.power_to_db(S, ref=1.0, amin=amin, top_db=top_db)`.
    /// (librosa's own default is `top_db=80`; ours is `None`, no clipping.)
    Db {
        /// The floor applied before the logarithm (default [`DEFAULT_AMIN`], −100 dB).
        #[serde(default = "default_amin")]
        amin: f32,
        /// The dynamic range kept below the clip's loudest value, in dB (`None`: all of it).
        #[serde(default)]
        top_db: Option<f32>,
    },
    /// The natural logarithm `ln(S + offset)`, common in speech toolkits.
    Natural {
        /// Added before the logarithm so that silence stays finite (e.g. `1e-6`).
        offset: f32,
    },
}

impl Default for LogKind {
    fn default() -> Self {
        LogKind::Db { amin: DEFAULT_AMIN, top_db: None }
    }
}

impl LogKind {
    /// Checks the parameters; `field` is the config path of the log kind.
    fn validate(&self, field: &str) -> Result<()> {
        match *self {
            LogKind::Db { amin, top_db } => {
                if !(amin.is_finite() && amin > 0.0) {
                    return Err(Error::config(
                        format!("{field}.amin"),
                        format!("must be positive, got {amin}"),
                    ));
                }
                if let Some(t) = top_db.filter(|t| !(t.is_finite() && *t >= 0.0)) {
                    return Err(Error::config(
                        format!("{field}.top_db"),
                        format!("must be non-negative, got {t}"),
                    ));
                }
            }
            LogKind::Natural { offset } if !(offset.is_finite() && offset > 0.0) => {
                return Err(Error::config(
                    format!("{field}.offset"),
                    format!("must be positive, got {offset}"),
                ));
            }
            LogKind::Natural { .. } => {}
        }
        Ok(())
    }

    /// Applies the logarithm to every element of `mel` in place, then the `top_db` clipping.
    fn apply(&self, mel: &mut Array2<f64>) {
        match *self {
            LogKind::Db { amin, top_db } => {
                let amin = f64::from(amin);
                mel.mapv_inplace(|s| 10.0 * s.max(amin).log10());
                if let Some(top_db) = top_db {
                    let floor = mel.iter().cloned().fold(f64::NEG_INFINITY, f64::max) - f64::from(top_db);
                    mel.mapv_inplace(|v| v.max(floor));
                }
            }
            LogKind::Natural { offset } => {
                let offset = f64::from(offset);
                mel.mapv_inplace(|s| (s + offset).ln());
            }
        }
    }
}

/// A log-mel front end. The defaults are 80 Slaney-normalised Slaney-scale mels over 0–8 kHz of
/// 25 ms / 10 ms frames of 16 kHz audio, in dB: `librosa.power_to_db(librosa.feature.melspectrogram(
/// y, sr=16000, n_fft=400, hop_length=160, n_mels=80), top_db=None)`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogMelConfig {
    /// The signal's sample rate in Hz (default 16000); it places the mel filters.
    pub sample_rate: u32,
    /// The framing and the spectrogram exponent (power by default).
    pub stft: StftConfig,
    /// Mel filters (default 80).
    pub n_mels: usize,
    /// The lowest filter edge in Hz (default 0).
    pub f_min: f32,
    /// The highest filter edge in Hz (default `None`: `sample_rate / 2`).
    pub f_max: Option<f32>,
    /// The mel scale (default [`MelScale::Slaney`], as librosa).
    pub scale: MelScale,
    /// The filter normalisation (default [`MelNorm::Slaney`], as librosa).
    pub norm: MelNorm,
    /// The logarithm (default dB with a −100 dB floor and no `top_db`).
    pub log: LogKind,
}

impl Default for LogMelConfig {
    fn default() -> Self {
        Self {
            sample_rate: 16_000,
            stft: StftConfig::default(),
            n_mels: 80,
            f_min: 0.0,
            f_max: None,
            scale: MelScale::Slaney,
            norm: MelNorm::Slaney,
            log: LogKind::default(),
        }
    }
}

/// A planned log-mel front end: the FFT plan and the filterbank of a [`LogMelConfig`], built once.
/// [`LogMel::compute`] only allocates its output and one frame's buffers, and `LogMel` is
/// `Send + Sync`: share one across threads to featurise many clips in parallel, e.g.
/// `clips.par_iter().map(|c| front_end.compute(c))` with rayon.
#[derive(Debug, Clone)]
pub struct LogMel {
    config: LogMelConfig,
    stft: Stft,
    bank: MelBank,
}

impl LogMel {
    /// Plans the front end of `config`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the field (`stft.n_fft`, `n_mels`, `f_max`, `log.amin`, ...) when
    /// one is out of range; see [`Stft::new`] and [`mel_filterbank`](super::mel_filterbank).
    ///
    /// # Examples
    ///
    /// ```
    /// use ssl_audio::frontend::{LogMel, LogMelConfig};
    ///
    /// let front_end = LogMel::new(LogMelConfig::default())?;
    /// let clip: Vec<f32> = (0..16_000).map(|i| (i as f32 * 0.3).sin() * 0.1).collect();
    /// let features = front_end.compute(&clip)?;
    /// assert_eq!(features.dim(), (101, 80)); // [frames, mels]
    /// # Ok::<(), ssl_core::Error>(())
    /// ```
    pub fn new(config: LogMelConfig) -> Result<Self> {
        Self::with_prefix(config, "")
    }

    /// [`LogMel::new`], naming fields under `prefix` (a dotted path ending in `.`, or empty).
    fn with_prefix(config: LogMelConfig, prefix: &str) -> Result<Self> {
        config.stft.validate(&format!("{prefix}stft."))?;
        config.log.validate(&format!("{prefix}log"))?;
        let params = MelParams {
            sample_rate: config.sample_rate,
            n_fft: config.stft.n_fft,
            n_mels: config.n_mels,
            f_min: config.f_min,
            f_max: config.f_max,
            scale: config.scale,
            norm: config.norm,
        };
        let bank = MelBank::new(params, prefix)?;
        Ok(Self { config, stft: Stft::new(config.stft)?, bank })
    }

    /// The configuration.
    pub fn config(&self) -> &LogMelConfig {
        &self.config
    }

    /// The mel filterbank, `[n_mels, n_fft / 2 + 1]`.
    pub fn filterbank(&self) -> Array2<f32> {
        self.bank.dense()
    }

    /// The mel spectrogram of `x` before the logarithm, `[n_frames, n_mels]` (time-major):
    /// `librosa.feature.melspectrogram(...)` transposed.
    ///
    /// # Errors
    ///
    /// Those of [`StftConfig::n_frames`] (an empty or too short signal).
    pub fn mel_spectrogram(&self, x: &[f32]) -> Result<Array2<f32>> {
        Ok(self.mel_f64(x)?.mapv(|v| v as f32))
    }

    /// The log-mel features of `x`, `[n_frames, n_mels]` (time-major).
    ///
    /// # Errors
    ///
    /// Those of [`StftConfig::n_frames`] (an empty or too short signal).
    pub fn compute(&self, x: &[f32]) -> Result<Array2<f32>> {
        Ok(self.log_mel_f64(x)?.mapv(|v| v as f32))
    }

    /// The mel spectrogram in f64.
    fn mel_f64(&self, x: &[f32]) -> Result<Array2<f64>> {
        let n_frames = self.config.stft.n_frames(x.len())?;
        let mut out = Array2::zeros((n_frames, self.bank.n_mels()));
        let mut row = vec![0.0; self.bank.n_mels()];
        self.stft.for_each_frame(x, |t, spectrum| {
            self.bank.apply(spectrum, &mut row);
            out.row_mut(t).iter_mut().zip(&row).for_each(|(o, &v)| *o = v);
        })?;
        Ok(out)
    }

    /// The log-mel features in f64.
    fn log_mel_f64(&self, x: &[f32]) -> Result<Array2<f64>> {
        let mut mel = self.mel_f64(x)?;
        self.config.log.apply(&mut mel);
        Ok(mel)
    }
}

/// The log-mel features of `x` under `config`, `[n_frames, n_mels]` (time-major). Plan a
/// [`LogMel`] instead to featurise many signals.
///
/// # Errors
///
/// Those of [`LogMel::new`] and [`LogMel::compute`].
///
/// # Examples
///
/// ```
/// use ssl_audio::frontend::{log_mel, LogMelConfig};
///
/// let silence = vec![0.0f32; 8_000];
/// let features = log_mel(&silence, &LogMelConfig::default())?;
/// assert_eq!(features.dim(), (51, 80));
/// assert!(features.iter().all(|&db| db == -100.0)); // the 1e-10 floor
/// # Ok::<(), ssl_core::Error>(())
/// ```
pub fn log_mel(x: &[f32], config: &LogMelConfig) -> Result<Array2<f32>> {
    LogMel::new(*config)?.compute(x)
}

/// MFCCs: the orthonormal DCT-II of each frame's log-mel features, first `n_mfcc` coefficients.
/// The defaults give `librosa.feature.mfcc(y, sr=16000, n_mfcc=20, n_fft=400, hop_length=160,
/// n_mels=80)` (whose log-mel is in dB with `top_db=80`), transposed.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MfccConfig {
    /// The log-mel front end (default: [`LogMelConfig::default`] with `top_db = 80`, as librosa's
    /// `mfcc`). librosa's MFCCs use [`LogKind::Db`]; [`LogKind::Natural`] works too.
    pub log_mel: LogMelConfig,
    /// Coefficients kept, at most `log_mel.n_mels` (default 20).
    pub n_mfcc: usize,
}

impl Default for MfccConfig {
    fn default() -> Self {
        Self {
            log_mel: LogMelConfig {
                log: LogKind::Db { amin: DEFAULT_AMIN, top_db: Some(80.0) },
                ..LogMelConfig::default()
            },
            n_mfcc: 20,
        }
    }
}

/// A planned MFCC front end (a [`LogMel`] and the DCT matrix), `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Mfcc {
    log_mel: LogMel,
    /// `[n_mfcc, n_mels]`, row-major: the first rows of the orthonormal DCT-II.
    dct: Vec<f64>,
    n_mfcc: usize,
}

impl Mfcc {
    /// Plans the MFCCs of `config`.
    ///
    /// # Errors
    ///
    /// Those of [`LogMel::new`] (fields named under `log_mel.`); [`Error::Config`] for `n_mfcc`
    /// when it is 0 or above `log_mel.n_mels`.
    pub fn new(config: MfccConfig) -> Result<Self> {
        let log_mel = LogMel::with_prefix(config.log_mel, "log_mel.")?;
        let (n_mfcc, n_mels) = (config.n_mfcc, config.log_mel.n_mels);
        if n_mfcc == 0 || n_mfcc > n_mels {
            return Err(Error::config("n_mfcc", format!("must be in 1..=n_mels ({n_mels}), got {n_mfcc}")));
        }
        Ok(Self { log_mel, dct: dct_ii_orthonormal(n_mfcc, n_mels), n_mfcc })
    }

    /// The MFCCs of `x`, `[n_frames, n_mfcc]` (time-major).
    ///
    /// # Errors
    ///
    /// Those of [`StftConfig::n_frames`] (an empty or too short signal).
    pub fn compute(&self, x: &[f32]) -> Result<Array2<f32>> {
        let log_mel = self.log_mel.log_mel_f64(x)?;
        let n_mels = log_mel.ncols();
        let mut out = Array2::zeros((log_mel.nrows(), self.n_mfcc));
        for (frame, mut coefs) in log_mel.outer_iter().zip(out.outer_iter_mut()) {
            for (c, basis) in coefs.iter_mut().zip(self.dct.chunks_exact(n_mels)) {
                *c = basis.iter().zip(frame.iter()).map(|(b, v)| b * v).sum::<f64>() as f32;
            }
        }
        Ok(out)
    }
}

/// The first `rows` rows of the orthonormal DCT-II matrix of size `n`:
/// `sqrt((1 or 2) / n) · cos(π k (2m + 1) / 2n)`, the factor 1 for `k = 0`.
fn dct_ii_orthonormal(rows: usize, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(rows * n);
    for k in 0..rows {
        let scale = if k == 0 { (1.0 / n as f64).sqrt() } else { (2.0 / n as f64).sqrt() };
        for m in 0..n {
            let angle = std::f64::consts::PI * k as f64 * (2 * m + 1) as f64 / (2 * n) as f64;
            out.push(scale * angle.cos());
        }
    }
    out
}

/// The MFCCs of `x` under `config`, `[n_frames, n_mfcc]` (time-major): `librosa.feature.mfcc`
/// (`dct_type=2`, `norm="ortho"`, `lifter=0`) transposed. Plan an [`Mfcc`] to featurise many
/// signals.
///
/// # Errors
///
/// Those of [`Mfcc::new`] and [`Mfcc::compute`].
///
/// # Examples
///
/// ```
/// use ssl_audio::frontend::{mfcc, MfccConfig};
///
/// let x: Vec<f32> = (0..16_000).map(|i| ((i * 7919) % 200) as f32 / 100.0 - 1.0).collect();
/// let coefs = mfcc(&x, &MfccConfig::default())?;
/// assert_eq!(coefs.dim(), (101, 20));
/// # Ok::<(), ssl_core::Error>(())
/// ```
pub fn mfcc(x: &[f32], config: &MfccConfig) -> Result<Array2<f32>> {
    Mfcc::new(*config)?.compute(x)
}

#[cfg(test)]
mod tests;
