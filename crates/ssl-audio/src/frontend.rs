//! Spectral features of mono waveforms: STFT power spectrograms, mel filterbanks, log-mel
//! spectrograms and MFCCs, computed as librosa 0.11 computes them (checked against librosa
//! output in `tests/frontend_fixtures.rs`).
//!
//! Every feature matrix is an [`ndarray::Array2<f32>`] shaped `[n_frames, n_features]`:
//! **time-major**, one row per frame, the transpose of librosa's `[n_features, n_frames]`.
//! Internally the FFT and the mel projection run in f64, so the f32 results agree with librosa's
//! float64 output to about 1e-6 relative, over the whole dynamic range.
//!
//! - [`power_spectrogram`] / [`Stft`]: `|STFT|^power` framed by a [`StftConfig`];
//! - [`mel_filterbank`]: triangular filters on the [`MelScale`], normalised by [`MelNorm`];
//! - [`log_mel`] / [`LogMel`]: log-mel features (dB or natural log, see [`LogKind`]);
//! - [`mfcc`] / [`Mfcc`]: orthonormal DCT-II of the dB log-mel features.
//!
//! The free functions plan the transform on every call; the structs plan it once and are
//! `Send + Sync`, for featurising many clips.
//!
//! ```
//! use ssl_audio::frontend::{LogMel, LogMelConfig};
//!
//! let front_end = LogMel::new(LogMelConfig { n_mels: 64, ..LogMelConfig::default() })?;
//! let one_second = vec![0.0f32; 16_000];
//! assert_eq!(front_end.compute(&one_second)?.dim(), (101, 64));
//! # Ok::<(), ssl_core::Error>(())
//! ```

mod features;
mod mel;
mod stft;

pub use features::{log_mel, mfcc, LogKind, LogMel, LogMelConfig, Mfcc, MfccConfig, DEFAULT_AMIN};
pub use mel::{mel_filterbank, MelNorm, MelScale};
pub use stft::{power_spectrogram, PadMode, Stft, StftConfig, Window};
