//! # ssl-audio
//!
//! Self-supervised speech and audio representation learning from raw waveforms:
//! wav2vec 2.0-style masked prediction and CPC, with the audio input and front end they need.
//!
//! Modules, one concept each:
//! - [`wav`]: WAV files to mono `f32` waveforms (any integer depth or 32-bit float, any channel
//!   count) and back, with errors that name the file;
//! - [`resample`]: band-limited (Kaiser-windowed sinc) resampling between any two rates;
//! - [`frontend`]: STFT power spectrograms, mel filterbanks, log-mel features and MFCCs, as
//!   librosa computes them, time-major (`[frames, features]`);
//! - [`data`]: WAV folders as datasets, random crops with padding masks, the `[N, 2, T]`
//!   encoder input;
//! - [`synth`]: the embedded default dataset, synthetic spoken words with labels;
//! - [`conv`]: the strided convolution stacks on raw audio;
//! - [`masking`]: span masking and distractor sampling;
//! - [`quantizer`]: the Gumbel-softmax product quantizer;
//! - [`wav2vec2`] and [`cpc`]: the two methods, each an `ssl_core::Objective` and `Encoder`;
//! - [`eval`]: probe inputs and the mean log-mel baseline.
//!
//! **Invariant: depends on `ssl-core` and on nothing else of ours.**

pub mod conv;
pub mod cpc;
pub mod data;
pub mod eval;
pub mod frontend;
pub mod masking;
pub mod quantizer;
pub mod resample;
pub mod synth;
pub mod wav;
pub mod wav2vec2;

pub use ssl_core;
