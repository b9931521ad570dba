//! The embedded default dataset: synthetic spoken "words", generated procedurally and
//! deterministically from a seed, with class labels.
//!
//! Each word is a sequence of three phone-like segments drawn from a small inventory: vowels
//! (a harmonic source shaped by two or three formant resonances), fricatives (band-limited
//! noise), nasals (a low, weak resonance) and a plosive (a closure then a burst). Every clip
//! varies the things real recordings vary: the speaker's pitch and vocal-tract length (formant
//! scale), spectral tilt, speaking rate, pitch declination and vibrato, onset within the clip,
//! loudness and background noise (a random signal-to-noise ratio). Several words are
//! permutations of the same phones, so telling them apart needs temporal order, not just the
//! average spectrum a mean log-mel baseline sees.
//!
//! Clips are generated on demand from `(seed, split, index)`: the training split is as long as
//! configured without holding it in memory, and a clip is the same on every machine.
//!
//! ```
//! use ssl_audio::synth::{SynthConfig, SynthSpeech, Split};
//! use ssl_core::data::Dataset;
//! let cfg = SynthConfig { train_clips: 20, test_clips: 10, ..SynthConfig::default() };
//! let train = SynthSpeech::new(&cfg, Split::Train)?;
//! let wave = train.get(3)?;
//! assert_eq!(wave.len(), 16_000); // one second at 16 kHz
//! assert_eq!(wave, train.get(3)?); // deterministic
//! assert_eq!(train.label(3), 3 % cfg.classes as i64);
//! # Ok::<(), ssl_core::Error>(())
//! ```

use std::f32::consts::TAU;

use rand::Rng;
use serde::{Deserialize, Serialize};
use ssl_core::data::Dataset;
use ssl_core::rng::{normal, rng_for, SslRng};
use ssl_core::{Error, Result};

/// A phone-like segment.
#[derive(Debug, Clone, Copy)]
enum Phone {
    /// A voiced vowel with formant frequencies (Hz) for an average adult speaker.
    Vowel([f32; 3]),
    /// Noise band-limited to `[lo, hi]` Hz.
    Fricative(f32, f32),
    /// A voiced nasal murmur: one low resonance, a quieter voice.
    Nasal(f32),
    /// A silent closure then a broadband burst.
    Plosive,
}

use Phone::{Fricative, Nasal, Plosive, Vowel};

/// Vowel formants after Peterson & Barney (1952), rounded.
const A: Phone = Vowel([730.0, 1090.0, 2440.0]);
const I: Phone = Vowel([270.0, 2290.0, 3010.0]);
const U: Phone = Vowel([300.0, 870.0, 2240.0]);
const E: Phone = Vowel([530.0, 1840.0, 2480.0]);
const O: Phone = Vowel([570.0, 840.0, 2410.0]);
const AE: Phone = Vowel([660.0, 1720.0, 2410.0]);
const S: Phone = Fricative(4500.0, 7500.0);
const SH: Phone = Fricative(2000.0, 4200.0);
const F: Phone = Fricative(1200.0, 7000.0);
const M: Phone = Nasal(250.0);
const N: Phone = Nasal(350.0);

/// The words, in class order. Pairs (0, 1), (2, 3) and (4, 5) are the same phones in a
/// different order.
const WORDS: [(&str, [Phone; 3]); 12] = [
    ("asi", [A, S, I]),
    ("isa", [I, S, A]),
    ("ume", [U, M, E]),
    ("emu", [E, M, U]),
    ("osha", [O, SH, A]),
    ("asho", [A, SH, O]),
    ("afo", [A, F, O]),
    ("ino", [I, N, O]),
    ("aesu", [AE, S, U]),
    ("ushi", [U, SH, I]),
    ("enae", [E, N, AE]),
    ("opa", [O, Plosive, A]),
];

/// The most classes the embedded dataset has.
pub const MAX_CLASSES: usize = WORDS.len();

/// The class names of the first `classes` words.
pub fn class_names(classes: usize) -> Vec<String> {
    WORDS.iter().take(classes).map(|(w, _)| (*w).to_string()).collect()
}

/// Which part of the dataset: the unlabelled pretraining clips (whose labels probes may use
/// for a subset) or the held-out clips the probes are scored on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Training clips.
    Train,
    /// Held-out clips (other draws of speakers and noise).
    Test,
}

/// The shape of the embedded dataset: the `[data.synth]` table of an audio run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynthConfig {
    /// Samples per second.
    pub sample_rate: u32,
    /// Clip length in seconds.
    pub clip_seconds: f32,
    /// Number of words (classes), at most [`MAX_CLASSES`].
    pub classes: usize,
    /// Clips in the training split.
    pub train_clips: usize,
    /// Clips in the held-out split.
    pub test_clips: usize,
    /// The dataset's seed (independent of the training seed).
    pub seed: u64,
    /// Signal-to-noise ratio range in dB, drawn uniformly per clip.
    pub snr_db: (f32, f32),
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            sample_rate: 16_000,
            clip_seconds: 1.0,
            classes: 10,
            train_clips: 10_000,
            test_clips: 1_000,
            seed: 0,
            snr_db: (5.0, 30.0),
        }
    }
}

impl SynthConfig {
    /// Samples per clip.
    pub fn clip_len(&self) -> usize {
        (self.clip_seconds * self.sample_rate as f32).round() as usize
    }

    /// Checks every field; errors name it as `data.synth.*`.
    pub fn validate(&self) -> Result<()> {
        if !(8_000..=96_000).contains(&self.sample_rate) {
            return Err(Error::config("data.synth.sample_rate", "must be in 8000..=96000"));
        }
        if !(self.clip_seconds >= 0.8 && self.clip_seconds <= 10.0) {
            return Err(Error::config(
                "data.synth.clip_seconds",
                "must be in 0.8..=10 (a word lasts up to 0.75 s)",
            ));
        }
        if !(2..=MAX_CLASSES).contains(&self.classes) {
            return Err(Error::config("data.synth.classes", format!("must be in 2..={MAX_CLASSES}")));
        }
        if self.train_clips < self.classes || self.test_clips < self.classes {
            return Err(Error::config(
                "data.synth",
                "train_clips and test_clips must each be at least `classes`",
            ));
        }
        let (lo, hi) = self.snr_db;
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(Error::config("data.synth.snr_db", "must be a finite range [low, high]"));
        }
        Ok(())
    }
}

/// One split of the embedded dataset as a [`Dataset`] of waveforms; [`label`](Self::label)
/// gives each clip's class (clips cycle through the classes, so every class is balanced).
#[derive(Debug, Clone)]
pub struct SynthSpeech {
    cfg: SynthConfig,
    split: Split,
}

impl SynthSpeech {
    /// The `split` of the dataset `cfg` describes (validated).
    pub fn new(cfg: &SynthConfig, split: Split) -> Result<Self> {
        cfg.validate()?;
        Ok(Self { cfg: cfg.clone(), split })
    }

    /// The class of clip `index`.
    pub fn label(&self, index: usize) -> i64 {
        (index % self.cfg.classes) as i64
    }

    /// The config.
    pub fn config(&self) -> &SynthConfig {
        &self.cfg
    }

    /// The first `n` clips (at most the split's length) and their labels: what probes train
    /// or are scored on.
    ///
    /// ```
    /// use ssl_audio::synth::{SynthConfig, SynthSpeech, Split};
    /// let cfg = SynthConfig { train_clips: 20, test_clips: 10, ..SynthConfig::default() };
    /// let (clips, labels) = SynthSpeech::new(&cfg, Split::Test)?.labelled(15)?;
    /// assert_eq!((clips.len(), labels.len(), labels[3]), (10, 10, 3));
    /// # Ok::<(), ssl_core::Error>(())
    /// ```
    pub fn labelled(&self, n: usize) -> Result<(Vec<Vec<f32>>, Vec<i64>)> {
        let n = n.min(self.len());
        let clips = (0..n).map(|i| self.get(i)).collect::<Result<Vec<_>>>()?;
        Ok((clips, (0..n).map(|i| self.label(i)).collect()))
    }
}

impl Dataset for SynthSpeech {
    type Item = Vec<f32>;
    fn len(&self) -> usize {
        match self.split {
            Split::Train => self.cfg.train_clips,
            Split::Test => self.cfg.test_clips,
        }
    }
    fn get(&self, index: usize) -> Result<Vec<f32>> {
        if index >= self.len() {
            return Err(Error::data(
                format!("synthetic speech[{index}]"),
                format!("index out of range (len {})", self.len()),
            ));
        }
        let stream = match self.split {
            Split::Train => "synth-speech-train",
            Split::Test => "synth-speech-test",
        };
        let mut rng = rng_for(self.cfg.seed, stream, &[index as u64]);
        Ok(render_word(&self.cfg, index % self.cfg.classes, &mut rng))
    }
}

/// What makes one clip's voice.
struct Voice {
    f0: f32,
    formant_scale: f32,
    tilt: f32,
    rate: f32,
    vibrato_hz: f32,
    vibrato_depth: f32,
}

fn render_word(cfg: &SynthConfig, class: usize, rng: &mut SslRng) -> Vec<f32> {
    let sr = cfg.sample_rate as f32;
    let len = cfg.clip_len();
    let voice = Voice {
        f0: 85.0 * (3.0f32).powf(rng.gen::<f32>()), // 85..255 Hz, log-uniform
        formant_scale: rng.gen_range(0.85..1.2),
        tilt: rng.gen_range(0.6..1.4),
        rate: rng.gen_range(0.8..1.25),
        vibrato_hz: rng.gen_range(4.0..7.0),
        vibrato_depth: rng.gen_range(0.0..0.02),
    };
    let phones = WORDS[class].1;
    let durations: Vec<usize> = phones
        .iter()
        .map(|p| {
            let base = match p {
                Vowel(_) => rng.gen_range(0.16..0.22),
                Fricative(..) => rng.gen_range(0.10..0.14),
                Nasal(_) => rng.gen_range(0.08..0.11),
                Plosive => rng.gen_range(0.08..0.10),
            };
            ((base / voice.rate) * sr) as usize
        })
        .collect();
    let total: usize = durations.iter().sum();
    let mut out = vec![0.0f32; len];
    let onset = rng.gen_range(0..=len.saturating_sub(total).max(1) - 1);
    let mut start = onset;
    let mut phase = rng.gen::<f32>() * TAU;
    for (i, (phone, &dur)) in phones.iter().zip(&durations).enumerate() {
        let end = (start + dur).min(len);
        // Pitch falls slowly over the word (declination).
        let f0 = voice.f0 * (1.0 - 0.08 * i as f32 / phones.len() as f32);
        let seg = &mut out[start..end];
        match *phone {
            Vowel(formants) => {
                phase = voiced(seg, sr, f0, &formants, 1.0, &voice, phase);
            }
            Nasal(f) => {
                phase = voiced(seg, sr, f0, &[f, 2.5 * f], 0.4, &voice, phase);
            }
            Fricative(lo, hi) => {
                let scale = voice.formant_scale;
                band_noise(seg, sr, (lo * scale).min(0.45 * sr), (hi * scale).min(0.48 * sr), 0.35, rng);
            }
            Plosive => {
                let closure = seg.len() * 2 / 3;
                band_noise(&mut seg[closure..], sr, 500.0, 0.45 * sr, 0.6, rng);
            }
        }
        envelope(seg, (0.012 * sr) as usize);
        start = end;
        if start >= len {
            break;
        }
    }
    // Loudness, then background noise at the drawn SNR.
    let peak = out.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-6);
    let gain = rng.gen_range(0.1..0.8) / peak;
    let mut signal_power = 0.0f64;
    for x in &mut out[onset..(onset + total).min(len)] {
        *x *= gain;
        signal_power += f64::from(*x) * f64::from(*x);
    }
    signal_power /= total.max(1) as f64;
    let (lo, hi) = cfg.snr_db;
    let snr = if hi > lo { rng.gen_range(lo..hi) } else { lo };
    let noise_std = (signal_power / 10f64.powf(f64::from(snr) / 10.0)).sqrt() as f32;
    for x in &mut out {
        *x += normal(rng, noise_std);
    }
    out
}

/// Adds a voiced sound: harmonics of `f0` shaped by resonances at `formants` (scaled by the
/// voice) and a spectral tilt; returns the source phase at the end, so segments join.
fn voiced(
    seg: &mut [f32],
    sr: f32,
    f0: f32,
    formants: &[f32],
    level: f32,
    voice: &Voice,
    phase0: f32,
) -> f32 {
    let nyquist = 0.5 * sr;
    let max_freq = nyquist.min(5_500.0);
    let bandwidth = |f: f32| 60.0 + 0.06 * f;
    let gain = |f: f32| -> f32 {
        let res: f32 = formants
            .iter()
            .enumerate()
            .map(|(k, &fm)| {
                let fm = fm * voice.formant_scale;
                let d = (f - fm) / bandwidth(fm);
                // Higher formants are weaker.
                (0.7f32).powi(k as i32) / (1.0 + d * d)
            })
            .sum();
        res * (f0 / f).powf(voice.tilt)
    };
    let harmonics = (max_freq / f0).floor() as usize;
    let gains: Vec<f32> = (1..=harmonics).map(|h| gain(h as f32 * f0)).collect();
    let norm = gains.iter().map(|g| g * g).sum::<f32>().sqrt().max(1e-6);
    // The instantaneous fundamental phase, with vibrato.
    let mut phase = phase0;
    let mut phases = Vec::with_capacity(seg.len());
    for n in 0..seg.len() {
        let t = n as f32 / sr;
        let f = f0 * (1.0 + voice.vibrato_depth * (TAU * voice.vibrato_hz * t).sin());
        phases.push(phase);
        phase = (phase + TAU * f / sr) % TAU;
    }
    for (h, g) in gains.iter().enumerate() {
        let g = level * g / norm;
        if g < 1e-3 * level {
            continue;
        }
        let m = (h + 1) as f32;
        for (x, p) in seg.iter_mut().zip(&phases) {
            *x += g * (m * p).sin();
        }
    }
    phase
}

/// Adds white noise band-passed to `[lo, hi]` Hz by a sum of two one-pole sections (a cheap
/// but clearly band-limited spectrum) at RMS `level`.
fn band_noise(seg: &mut [f32], sr: f32, lo: f32, hi: f32, level: f32, rng: &mut SslRng) {
    let coef = |fc: f32| (-TAU * fc / sr).exp();
    let (a_lo, a_hi) = (coef(lo), coef(hi));
    let (mut lp_hi, mut lp_lo) = (0.0f32, 0.0f32);
    let mut band = Vec::with_capacity(seg.len());
    for _ in 0..seg.len() {
        let w = normal(rng, 1.0);
        // Low-pass at `hi` minus low-pass at `lo`: a band-pass; twice for steeper skirts.
        lp_hi = a_hi * lp_hi + (1.0 - a_hi) * w;
        lp_lo = a_lo * lp_lo + (1.0 - a_lo) * w;
        band.push(lp_hi - lp_lo);
    }
    let rms = (band.iter().map(|x| x * x).sum::<f32>() / band.len().max(1) as f32).sqrt().max(1e-9);
    for (x, b) in seg.iter_mut().zip(band) {
        *x += level * b / rms;
    }
}

/// Linear fade-in and fade-out of `ramp` samples.
fn envelope(seg: &mut [f32], ramp: usize) {
    let n = seg.len();
    let ramp = ramp.min(n / 2).max(1);
    for i in 0..ramp {
        let g = i as f32 / ramp as f32;
        seg[i] *= g;
        seg[n - 1 - i] *= g;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SynthConfig {
        SynthConfig { train_clips: 24, test_clips: 12, ..SynthConfig::default() }
    }

    #[test]
    fn clips_are_deterministic_finite_and_differ_between_splits() {
        let cfg = small();
        let train = SynthSpeech::new(&cfg, Split::Train).unwrap();
        let test = SynthSpeech::new(&cfg, Split::Test).unwrap();
        for i in 0..cfg.classes {
            let a = train.get(i).unwrap();
            assert_eq!(a.len(), cfg.clip_len());
            assert!(a.iter().all(|x| x.is_finite() && x.abs() < 2.0));
            assert_eq!(a, train.get(i).unwrap());
            assert_ne!(a, test.get(i).unwrap());
        }
        assert!(train.get(cfg.train_clips).is_err());
    }

    #[test]
    fn a_word_is_louder_than_the_background() {
        let cfg = SynthConfig { snr_db: (20.0, 20.0), ..small() };
        let ds = SynthSpeech::new(&cfg, Split::Train).unwrap();
        let x = ds.get(0).unwrap();
        let frame = 400;
        let energies: Vec<f32> = x.chunks(frame).map(|c| c.iter().map(|v| v * v).sum::<f32>()).collect();
        let max = energies.iter().cloned().fold(0.0, f32::max);
        let min = energies.iter().cloned().fold(f32::MAX, f32::min);
        assert!(max > 30.0 * min, "max {max} min {min}");
    }

    #[test]
    fn labels_cycle_through_the_classes() {
        let cfg = SynthConfig { classes: 4, ..small() };
        let ds = SynthSpeech::new(&cfg, Split::Test).unwrap();
        let labels: Vec<i64> = (0..8).map(|i| ds.label(i)).collect();
        assert_eq!(labels, [0, 1, 2, 3, 0, 1, 2, 3]);
        assert_eq!(class_names(2), ["asi", "isa"]);
    }

    #[test]
    fn bad_configs_name_the_field() {
        let e = SynthConfig { classes: 99, ..small() }.validate().unwrap_err().to_string();
        assert!(e.contains("data.synth.classes"), "{e}");
        let e = SynthConfig { snr_db: (10.0, 5.0), ..small() }.validate().unwrap_err().to_string();
        assert!(e.contains("data.synth.snr_db"), "{e}");
    }
}
