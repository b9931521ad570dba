//! Tests of [`super`] (log-mel features and MFCCs), kept apart for file length.
#![allow(clippy::unwrap_used)] // in tests a panic is the failure report

use proptest::prelude::*;
use rayon::prelude::*;

use super::*;
use crate::frontend::power_spectrogram;

/// A chirp from 100 Hz upwards at 16 kHz, `len` samples.
fn chirp(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let t = i as f64 / 16_000.0;
            (0.5 * (2.0 * std::f64::consts::PI * (100.0 * t + 2_000.0 * t * t)).sin()) as f32
        })
        .collect()
}

/// The field of a config error.
fn config_field(err: Error) -> String {
    match err {
        Error::Config { field, .. } => field,
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn defaults_are_pinned() {
    let c = LogMelConfig::default();
    assert_eq!((c.sample_rate, c.n_mels, c.f_min, c.f_max), (16_000, 80, 0.0, None));
    assert_eq!((c.scale, c.norm), (MelScale::Slaney, MelNorm::Slaney));
    assert_eq!(c.log, LogKind::Db { amin: 1e-10, top_db: None });
    assert_eq!(c.stft, StftConfig::default());
    let m = MfccConfig::default();
    assert_eq!(m.n_mfcc, 20);
    assert_eq!(m.log_mel, LogMelConfig { log: LogKind::Db { amin: 1e-10, top_db: Some(80.0) }, ..c });
}

#[test]
fn front_ends_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<LogMel>();
    check::<Mfcc>();
    check::<Stft>();
}

#[test]
fn bad_configs_name_the_field() {
    let c = LogMelConfig::default();
    for (bad, field) in [
        (LogMelConfig { sample_rate: 0, ..c }, "sample_rate"),
        (LogMelConfig { n_mels: 0, ..c }, "n_mels"),
        (LogMelConfig { f_max: Some(9_000.0), ..c }, "f_max"),
        (LogMelConfig { stft: StftConfig { hop_length: 0, ..c.stft }, ..c }, "stft.hop_length"),
        (LogMelConfig { log: LogKind::Db { amin: 0.0, top_db: None }, ..c }, "log.amin"),
        (LogMelConfig { log: LogKind::Db { amin: 1e-10, top_db: Some(-1.0) }, ..c }, "log.top_db"),
        (LogMelConfig { log: LogKind::Natural { offset: 0.0 }, ..c }, "log.offset"),
    ] {
        assert_eq!(config_field(LogMel::new(bad).unwrap_err()), field);
    }
    let m = MfccConfig::default();
    assert_eq!(config_field(Mfcc::new(MfccConfig { n_mfcc: 81, ..m }).unwrap_err()), "n_mfcc");
    assert_eq!(config_field(Mfcc::new(MfccConfig { n_mfcc: 0, ..m }).unwrap_err()), "n_mfcc");
    let bad_rate = MfccConfig { log_mel: LogMelConfig { n_mels: 0, ..m.log_mel }, ..m };
    assert_eq!(config_field(Mfcc::new(bad_rate).unwrap_err()), "log_mel.n_mels");
}

#[test]
fn the_mel_spectrogram_is_the_filterbank_times_the_power_spectrogram() {
    let c = LogMelConfig { n_mels: 40, ..Default::default() };
    let x = chirp(4_000);
    let front_end = LogMel::new(c).unwrap();
    let expected = power_spectrogram(&x, &c.stft).unwrap().dot(&front_end.filterbank().t());
    let mel = front_end.mel_spectrogram(&x).unwrap();
    assert_eq!(mel.dim(), (26, 40));
    for (a, b) in mel.iter().zip(&expected) {
        assert!((a - b).abs() <= 1e-5 * b.abs() + 1e-9, "{a} vs {b}");
    }
    let log = front_end.compute(&x).unwrap();
    for (l, m) in log.iter().zip(&mel) {
        assert!((l - 10.0 * m.max(1e-10).log10()).abs() < 1e-4);
    }
}

#[test]
fn the_log_floor_is_applied() {
    let mut x = vec![0.0f32; 3_200];
    x[1_600] = 1.0; // one click among silence
    let db = log_mel(&x, &LogMelConfig::default()).unwrap();
    assert!(db.iter().all(|&v| v >= -100.0));
    assert!(db.row(0).iter().all(|&v| v == -100.0));
    assert!(db.row(10).iter().any(|&v| v > -50.0));
    let amin = LogMelConfig { log: LogKind::Db { amin: 1e-4, top_db: None }, ..Default::default() };
    assert!(log_mel(&x, &amin).unwrap().iter().all(|&v| v >= -40.0 - 1e-4));
    let natural = LogMelConfig { log: LogKind::Natural { offset: 1e-6 }, ..Default::default() };
    let ln = log_mel(&x, &natural).unwrap();
    let floor = 1e-6f64.ln() as f32;
    assert!(ln.row(0).iter().all(|&v| (v - floor).abs() < 1e-5));
    assert!(ln.iter().all(|&v| v >= floor - 1e-5));
}

#[test]
fn top_db_clips_below_the_loudest_value() {
    let x = chirp(8_000);
    let c = LogMelConfig { log: LogKind::Db { amin: 1e-10, top_db: Some(30.0) }, ..Default::default() };
    let clipped = log_mel(&x, &c).unwrap();
    let full = log_mel(&x, &LogMelConfig::default()).unwrap();
    let max = full.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    for (c, f) in clipped.iter().zip(&full) {
        assert!((c - f.max(max - 30.0)).abs() < 1e-4, "{c} vs {f}");
        assert!(*c >= max - 30.0 - 1e-4);
    }
    assert!(full.iter().any(|&v| v < max - 30.0), "the test signal must have values to clip");
}

#[test]
fn the_dct_is_orthonormal() {
    let n = 12;
    let d = dct_ii_orthonormal(n, n);
    for i in 0..n {
        for j in 0..n {
            let dot: f64 = (0..n).map(|m| d[i * n + m] * d[j * n + m]).sum();
            assert!((dot - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12, "{i} {j}: {dot}");
        }
    }
}

#[test]
fn silence_has_only_a_zeroth_coefficient() {
    let coefs = mfcc(&vec![0.0; 4_000], &MfccConfig::default()).unwrap();
    // Every mel band is at the -100 dB floor: c0 = -100 · sqrt(80), the rest vanish.
    for row in coefs.outer_iter() {
        assert!((row[0] + 100.0 * 80f32.sqrt()).abs() < 1e-3, "{}", row[0]);
        assert!(row.iter().skip(1).all(|c| c.abs() < 1e-3));
    }
}

#[test]
fn mfccs_are_the_dct_of_the_log_mel() {
    let x = chirp(6_000);
    let c = MfccConfig::default();
    let log = log_mel(&x, &c.log_mel).unwrap();
    let coefs = mfcc(&x, &c).unwrap();
    assert_eq!(coefs.dim(), (38, 20));
    let d = dct_ii_orthonormal(20, 80);
    for (frame, row) in log.outer_iter().zip(coefs.outer_iter()) {
        for (k, &got) in row.iter().enumerate() {
            let want: f64 = (0..80).map(|m| d[k * 80 + m] * f64::from(frame[m])).sum();
            assert!((f64::from(got) - want).abs() < 1e-3, "{got} vs {want}");
        }
    }
}

#[test]
fn one_front_end_serves_many_threads() {
    let front_end = LogMel::new(LogMelConfig::default()).unwrap();
    let clips: Vec<Vec<f32>> = (1..9).map(|k| chirp(1_000 * k)).collect();
    let parallel: Vec<Array2<f32>> = clips.par_iter().map(|c| front_end.compute(c).unwrap()).collect();
    for (clip, features) in clips.iter().zip(&parallel) {
        assert_eq!(features, &front_end.compute(clip).unwrap());
    }
}

#[test]
fn configs_deserialise_with_defaults() {
    let c: LogMelConfig = serde_json::from_str(
        r#"{"n_mels": 64, "stft": {"n_fft": 512}, "log": {"kind": "natural", "offset": 1e-6}}"#,
    )
    .unwrap();
    assert_eq!(c.n_mels, 64);
    assert_eq!(c.stft, StftConfig { n_fft: 512, ..Default::default() });
    assert_eq!(c.log, LogKind::Natural { offset: 1e-6 });
    let db: LogKind = serde_json::from_str(r#"{"kind": "db", "top_db": 80.0}"#).unwrap();
    assert_eq!(db, LogKind::Db { amin: DEFAULT_AMIN, top_db: Some(80.0) });
    assert!(serde_json::from_str::<LogMelConfig>(r#"{"n_mel": 64}"#).is_err());
    let m: MfccConfig = serde_json::from_str(r#"{"n_mfcc": 13}"#).unwrap();
    assert_eq!(m, MfccConfig { n_mfcc: 13, ..Default::default() });
}

/// Log-mel throughput on 60 s of 16 kHz audio; run with
/// `cargo test --release -p ssl-audio log_mel_throughput -- --ignored --nocapture`.
#[test]
#[ignore = "timing, not a check: run in release mode by hand"]
fn log_mel_throughput() {
    let x = chirp(60 * 16_000);
    let front_end = LogMel::new(LogMelConfig::default()).unwrap();
    let start = std::time::Instant::now();
    let features = front_end.compute(&x).unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "log-mel of 60 s at 16 kHz: {:?} in {secs:.3} s ({:.0}x real time, one thread)",
        features.dim(),
        60.0 / secs
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn features_are_finite_and_shaped_time_major(
        len in 1usize..4_000,
        n_mels in 1usize..64,
        hop in 40usize..400,
        seed in any::<u32>(),
    ) {
        let x: Vec<f32> = (0..len).map(|i| (((i as u64 * 2_654_435_761 + u64::from(seed)) % 1_000) as f32) / 500.0 - 1.0).collect();
        let c = MfccConfig {
            log_mel: LogMelConfig { n_mels, stft: StftConfig { hop_length: hop, ..Default::default() }, ..Default::default() },
            n_mfcc: n_mels.min(13),
        };
        let frames = 1 + len / hop;
        let log = log_mel(&x, &c.log_mel).unwrap();
        prop_assert_eq!(log.dim(), (frames, n_mels));
        prop_assert!(log.iter().all(|v| v.is_finite() && *v >= -100.0));
        let coefs = mfcc(&x, &c).unwrap();
        prop_assert_eq!(coefs.dim(), (frames, n_mels.min(13)));
        prop_assert!(coefs.iter().all(|v| v.is_finite()));
    }
}
