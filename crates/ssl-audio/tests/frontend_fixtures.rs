//! `ssl_audio::frontend` against librosa 0.11: every fixture in `tests/fixtures/frontend/`
//! (written by `tests/fixtures/make_frontend_fixtures.py`, which says how to regenerate them).
//!
//! Tolerances, per element `a` (ours, f32) against `b` (librosa, float64 rounded to 7 digits):
//! - power / magnitude spectrograms, mel spectrograms and filterbanks (linear quantities):
//!   `|a − b| ≤ 1e-4 · |b| + 1e-10 · max|B|`, i.e. 1e-4 relative; the absolute term only matters
//!   for entries 100 dB or more below the matrix's peak;
//! - dB log-mels: `|a − b| ≤ 5e-4 dB`, the change in dB of a 1e-4 relative change in power;
//! - natural-log log-mels: `|a − b| ≤ 1e-4`, likewise;
//! - MFCCs (a DCT of dB values): `|a − b| ≤ 1e-3 + 1e-4 · |b|`.
#![allow(clippy::unwrap_used)] // in tests a panic is the failure report

use std::path::{Path, PathBuf};

use ndarray::Array2;
use serde::Deserialize;
use ssl_audio::frontend::{
    mel_filterbank, power_spectrogram, LogKind, LogMel, LogMelConfig, MelNorm, MelScale, Mfcc, MfccConfig,
    PadMode, StftConfig, Window,
};

/// One fixture file.
#[derive(Debug, Deserialize)]
struct Fixture {
    description: String,
    librosa_version: String,
    sample_rate: u32,
    /// The input as 16-bit sample values; the signal is `pcm / 32768`.
    pcm: Vec<i32>,
    config: Config,
    spectrogram: Matrix,
    filterbank: SparseRows,
    mel: Matrix,
    log_mel: Matrix,
    mfcc: Option<MfccReference>,
}

/// The front end in librosa's argument names.
#[derive(Debug, Deserialize)]
struct Config {
    n_fft: usize,
    hop_length: usize,
    win_length: Option<usize>,
    window: String,
    center: bool,
    pad_mode: String,
    power: f32,
    n_mels: usize,
    fmin: f32,
    fmax: Option<f32>,
    htk: bool,
    norm: Option<String>,
    log: LogKind,
}

/// A time-major matrix, row-major data.
#[derive(Debug, Deserialize)]
struct Matrix {
    shape: [usize; 2],
    data: Vec<f64>,
}

/// A filterbank: each row's first non-zero bin and its non-zero weights.
#[derive(Debug, Deserialize)]
struct SparseRows {
    shape: [usize; 2],
    rows: Vec<SparseRow>,
}

#[derive(Debug, Deserialize)]
struct SparseRow {
    start: usize,
    weights: Vec<f64>,
}

/// librosa's MFCCs and the dB settings of the log-mel they were taken of.
#[derive(Debug, Deserialize)]
struct MfccReference {
    n_mfcc: usize,
    amin: f32,
    top_db: Option<f32>,
    shape: [usize; 2],
    data: Vec<f64>,
}

impl Fixture {
    fn signal(&self) -> Vec<f32> {
        self.pcm.iter().map(|&v| v as f32 / 32768.0).collect()
    }

    fn stft(&self) -> StftConfig {
        let c = &self.config;
        StftConfig {
            n_fft: c.n_fft,
            hop_length: c.hop_length,
            win_length: c.win_length,
            window: match c.window.as_str() {
                "hann" => Window::Hann,
                "hamming" => Window::Hamming,
                other => panic!("{}: unknown window {other}", self.description),
            },
            center: c.center,
            pad_mode: match c.pad_mode.as_str() {
                "constant" => PadMode::Constant,
                "reflect" => PadMode::Reflect,
                other => panic!("{}: unknown pad mode {other}", self.description),
            },
            power: c.power,
        }
    }

    fn scale(&self) -> MelScale {
        if self.config.htk {
            MelScale::Htk
        } else {
            MelScale::Slaney
        }
    }

    fn norm(&self) -> MelNorm {
        match self.config.norm.as_deref() {
            None => MelNorm::None,
            Some("slaney") => MelNorm::Slaney,
            Some(other) => panic!("{}: unknown norm {other}", self.description),
        }
    }

    fn log_mel_config(&self) -> LogMelConfig {
        let c = &self.config;
        LogMelConfig {
            sample_rate: self.sample_rate,
            stft: self.stft(),
            n_mels: c.n_mels,
            f_min: c.fmin,
            f_max: c.fmax,
            scale: self.scale(),
            norm: self.norm(),
            log: c.log,
        }
    }
}

/// Every fixture, in file-name order.
fn fixtures() -> Vec<Fixture> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/frontend");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 5, "expected the fixtures in {}", dir.display());
    paths
        .iter()
        .map(|p| {
            let f: Fixture = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            assert!(f.librosa_version.starts_with("0.11."), "{}", p.display());
            f
        })
        .collect()
}

/// Checks `got` against `want` element by element with `ok(got, want, max |want|)`, reporting
/// the worst element; returns the largest relative error seen (for the log).
fn check(
    what: &str,
    got: &Array2<f32>,
    shape: [usize; 2],
    want: &[f64],
    ok: impl Fn(f64, f64, f64) -> bool,
) -> f64 {
    assert_eq!(got.dim(), (shape[0], shape[1]), "{what}: shape");
    assert_eq!(want.len(), shape[0] * shape[1], "{what}: fixture data length");
    let peak = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let mut worst = 0.0f64;
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        let a = f64::from(a);
        assert!(
            ok(a, b, peak),
            "{what}: element [{}, {}] is {a}, librosa {b} (peak {peak})",
            i / shape[1],
            i % shape[1]
        );
        if b != 0.0 {
            worst = worst.max((a - b).abs() / b.abs());
        }
    }
    worst
}

/// The linear-quantity tolerance of the module docs.
fn linear(a: f64, b: f64, peak: f64) -> bool {
    (a - b).abs() <= 1e-4 * b.abs() + 1e-10 * peak
}

#[test]
fn spectrograms_match_librosa() {
    for f in fixtures() {
        let got = power_spectrogram(&f.signal(), &f.stft()).unwrap();
        let worst = check(&f.description, &got, f.spectrogram.shape, &f.spectrogram.data, linear);
        println!("{}: spectrogram {:?}, worst relative error {worst:.1e}", f.description, got.dim());
    }
}

#[test]
fn filterbanks_match_librosa() {
    for f in fixtures() {
        let c = &f.config;
        let got =
            mel_filterbank(f.sample_rate, c.n_fft, c.n_mels, c.fmin, c.fmax, f.scale(), f.norm()).unwrap();
        let [rows, cols] = f.filterbank.shape;
        let mut dense = vec![0.0; rows * cols];
        for (m, row) in f.filterbank.rows.iter().enumerate() {
            dense[m * cols + row.start..m * cols + row.start + row.weights.len()]
                .copy_from_slice(&row.weights);
        }
        let worst = check(&f.description, &got, f.filterbank.shape, &dense, linear);
        println!("{}: filterbank {:?}, worst relative error {worst:.1e}", f.description, got.dim());
        // LogMel exposes the same matrix.
        assert_eq!(LogMel::new(f.log_mel_config()).unwrap().filterbank(), got);
    }
}

#[test]
fn mel_spectrograms_match_librosa() {
    for f in fixtures() {
        let got = LogMel::new(f.log_mel_config()).unwrap().mel_spectrogram(&f.signal()).unwrap();
        let worst = check(&f.description, &got, f.mel.shape, &f.mel.data, linear);
        println!("{}: mel {:?}, worst relative error {worst:.1e}", f.description, got.dim());
    }
}

#[test]
fn log_mels_match_librosa() {
    let mut kinds = (0, 0);
    for f in fixtures() {
        let config = f.log_mel_config();
        let got = LogMel::new(config).unwrap().compute(&f.signal()).unwrap();
        let tolerance = match config.log {
            LogKind::Db { .. } => {
                kinds.0 += 1;
                5e-4
            }
            LogKind::Natural { .. } => {
                kinds.1 += 1;
                1e-4
            }
        };
        let worst = check(&f.description, &got, f.log_mel.shape, &f.log_mel.data, |a, b, _| {
            (a - b).abs() <= tolerance
        });
        println!("{}: log-mel {:?}, worst relative error {worst:.1e}", f.description, got.dim());
    }
    assert!(kinds.0 > 0 && kinds.1 > 0, "fixtures cover dB and natural logs: {kinds:?}");
}

#[test]
fn mfccs_match_librosa() {
    let mut seen = 0;
    for f in fixtures() {
        let Some(reference) = &f.mfcc else { continue };
        let config = MfccConfig {
            log_mel: LogMelConfig {
                log: LogKind::Db { amin: reference.amin, top_db: reference.top_db },
                ..f.log_mel_config()
            },
            n_mfcc: reference.n_mfcc,
        };
        let got = Mfcc::new(config).unwrap().compute(&f.signal()).unwrap();
        let worst = check(&f.description, &got, reference.shape, &reference.data, |a, b, _| {
            (a - b).abs() <= 1e-3 + 1e-4 * b.abs()
        });
        println!("{}: mfcc {:?}, worst relative error {worst:.1e}", f.description, got.dim());
        seen += 1;
    }
    assert!(seen >= 3, "expected MFCC references in at least 3 fixtures, found {seen}");
}
