//! # ssl-audio
//!
//! Audio methods: wav2vec 2.0-style masked prediction and CPC over a log-mel / waveform front end.
//!
//! Modules, one concept each:
//! - [`wav`]: WAV files to mono `f32` waveforms (any integer depth or 32-bit float, any channel
//!   count) and back, with errors that name the file;
//! - [`resample`]: band-limited (Kaiser-windowed sinc) resampling between any two rates;
//! - [`frontend`]: STFT power spectrograms, mel filterbanks, log-mel features and MFCCs, as
//!   librosa computes them, time-major (`[frames, features]`).
//!
//! This crate depends on `ssl-core` and implements its traits (`Encoder`, `Objective`,
//! `Augmentation`, `Dataset`/`BatchBuilder`); the methods arrive with their own issues.

pub mod frontend;
pub mod resample;
pub mod wav;

pub use ssl_core;
