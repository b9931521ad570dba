//! Tests of [`super`] (WAV reading and writing), kept apart for file length.
#![allow(clippy::unwrap_used)] // in tests a panic is the failure report

use std::path::PathBuf;

use proptest::prelude::*;

use super::*;

/// Writes interleaved integer `samples` with hound at `bits` bits per sample.
fn write_int(path: &Path, channels: u16, bits: u16, samples: &[i32]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: 22_050,
        bits_per_sample: bits,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        match bits {
            8 => w.write_sample(s as i8).unwrap(),
            16 => w.write_sample(s as i16).unwrap(),
            _ => w.write_sample(s).unwrap(),
        }
    }
    w.finalize().unwrap();
}

/// A WAV file by hand: a 16-byte `fmt ` chunk with `tag`, then a data chunk holding `data`.
fn handmade(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
    let block_align = channels * bits.div_ceil(8);
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(4 + 24 + 8 + data.len() as u32).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&tag.to_le_bytes());
    b.extend_from_slice(&channels.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(u32::from(block_align) * rate).to_le_bytes());
    b.extend_from_slice(&block_align.to_le_bytes());
    b.extend_from_slice(&bits.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(data);
    b
}

/// `name` in a fresh temporary folder (kept alive by the returned guard).
fn temp_path(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    (dir, path)
}

/// The data error of reading `path`, checking that it names the file.
fn data_message(path: &Path) -> String {
    match read_wav(path).unwrap_err() {
        Error::Data { source_name, message } => {
            assert_eq!(source_name, path.display().to_string());
            message
        }
        other => panic!("expected a data error, got {other:?}"),
    }
}

#[test]
fn pcm16_and_float32_round_trip() {
    let (_dir, path) = temp_path("a.wav");
    let samples = vec![0.0, 0.5, -0.5, -1.0, 32767.0 / 32768.0, 1.0 / 32768.0];
    let wave = Waveform { samples, sample_rate: 16_000 };
    write_wav(&path, &wave, WavFormat::Pcm16).unwrap();
    assert_eq!(read_wav(&path).unwrap(), wave);
    let wave = Waveform { samples: vec![0.1, -0.7, 1.5, 1e-9], sample_rate: 44_100 };
    write_wav(&path, &wave, WavFormat::Float32).unwrap();
    assert_eq!(read_wav(&path).unwrap(), wave, "float files are read as stored, out-of-range values too");
}

#[test]
fn pcm16_clips_out_of_range_samples() {
    let (_dir, path) = temp_path("clip.wav");
    write_wav(&path, &Waveform { samples: vec![1.0, 1.5, -3.0], sample_rate: 8_000 }, WavFormat::Pcm16)
        .unwrap();
    assert_eq!(read_wav(&path).unwrap().samples, [32767.0 / 32768.0, 32767.0 / 32768.0, -1.0]);
}

#[test]
fn integer_depths_are_scaled_by_two_to_the_bits_minus_one() {
    let (_dir, path) = temp_path("int.wav");
    for (bits, values) in [
        (8u16, vec![-128, -1, 0, 64, 127]),
        (16, vec![-32768, -1, 0, 16384, 32767]),
        (24, vec![-(1 << 23), -1, 0, 1 << 22, (1 << 23) - 1]),
        (32, vec![i32::MIN, -1, 0, 1 << 30, i32::MAX]),
    ] {
        write_int(&path, 1, bits, &values);
        let wave = read_wav(&path).unwrap();
        assert_eq!(wave.sample_rate, 22_050);
        let scale = 2f64.powi(i32::from(bits) - 1);
        let expected: Vec<f32> = values.iter().map(|&v| (f64::from(v) / scale) as f32).collect();
        assert_eq!(wave.samples, expected, "{bits}-bit");
        assert_eq!(wave.samples[0], -1.0);
    }
}

#[test]
fn eight_bit_files_store_unsigned_bytes() {
    let (_dir, path) = temp_path("u8.wav");
    // 128 is silence, 0 the most negative value, 255 the most positive.
    std::fs::write(&path, handmade(1, 1, 8_000, 8, &[128, 0, 255, 192])).unwrap();
    assert_eq!(read_wav(&path).unwrap().samples, [0.0, -1.0, 127.0 / 128.0, 0.5]);
}

#[test]
fn channels_are_averaged() {
    let (_dir, path) = temp_path("stereo.wav");
    write_int(&path, 2, 16, &[16384, -8192, 0, 32767, -32768, -32768]);
    let wave = read_wav(&path).unwrap();
    assert_eq!(wave.samples, [0.125, 32767.0 / 65536.0, -1.0]);
    write_int(&path, 3, 24, &[3 << 20, 0, 0, -(3 << 20), 3 << 20, 3 << 20]);
    assert_eq!(read_wav(&path).unwrap().samples, [0.125, 0.125]);
}

#[test]
fn a_text_file_is_not_a_wav_file() {
    let (_dir, path) = temp_path("notes.wav");
    std::fs::write(&path, "these are not the samples you are looking for").unwrap();
    assert_eq!(data_message(&path), "not a WAV file: no RIFF header");
    std::fs::write(&path, "RI").unwrap();
    assert!(data_message(&path).starts_with("not a WAV file"));
    let mut riff = handmade(1, 1, 8_000, 16, &[0, 0]);
    riff[8..12].copy_from_slice(b"AVI ");
    std::fs::write(&path, riff).unwrap();
    assert!(data_message(&path).contains("form type is not WAVE"));
}

#[test]
fn a_truncated_data_chunk_is_reported_as_such() {
    let (_dir, path) = temp_path("cut.wav");
    write_int(&path, 1, 16, &vec![1000; 1000]);
    let full = std::fs::read(&path).unwrap();
    std::fs::write(&path, &full[..full.len() - 1000]).unwrap();
    assert_eq!(
        data_message(&path),
        "truncated data: the data chunk declares 1000 samples but the file ends after 500"
    );
}

#[test]
fn empty_audio_is_an_error() {
    let (_dir, path) = temp_path("empty.wav");
    write_wav(&path, &Waveform { samples: vec![], sample_rate: 16_000 }, WavFormat::Pcm16).unwrap();
    assert_eq!(data_message(&path), "no audio: the data chunk holds 0 samples");
}

#[test]
fn unsupported_encodings_are_named() {
    let (_dir, path) = temp_path("odd.wav");
    // A-law (format tag 6), 8 bits.
    std::fs::write(&path, handmade(6, 1, 8_000, 8, &[0xd5; 4])).unwrap();
    let message = data_message(&path);
    assert!(message.starts_with("unsupported encoding") && message.contains("A-law"), "{message}");
    // 64-bit float.
    std::fs::write(&path, handmade(3, 1, 8_000, 64, &[0; 16])).unwrap();
    assert!(data_message(&path).contains("64-bit float is not read"));
    // 40-bit integers in 5-byte containers.
    std::fs::write(&path, handmade(1, 1, 8_000, 40, &[0; 10])).unwrap();
    assert_eq!(
        data_message(&path),
        "unsupported encoding: 40-bit integer PCM (8, 16, 24 and 32 bits are read)"
    );
}

#[test]
fn zero_channels_and_zero_rates_are_errors() {
    let (_dir, path) = temp_path("zero.wav");
    std::fs::write(&path, handmade(1, 0, 8_000, 16, &[0; 4])).unwrap();
    assert_eq!(data_message(&path), "the file has 0 channels");
    std::fs::write(&path, handmade(1, 1, 0, 16, &[0; 4])).unwrap();
    assert_eq!(data_message(&path), "the sample rate is 0");
}

#[test]
fn non_finite_float_samples_are_errors() {
    let (_dir, path) = temp_path("nan.wav");
    let data: Vec<u8> = [0.5f32, -0.5, 0.25, f32::NAN].iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(&path, handmade(3, 2, 8_000, 32, &data)).unwrap();
    assert_eq!(data_message(&path), "sample 1 of channel 1 is NaN (float samples must be finite)");
}

#[test]
fn missing_files_are_io_errors() {
    let (_dir, path) = temp_path("missing.wav");
    assert!(matches!(read_wav(&path), Err(Error::Io { path: p, .. }) if p == path));
}

#[test]
fn load_wav_resamples_only_when_needed() {
    let (_dir, path) = temp_path("load.wav");
    let samples: Vec<f32> = (0..4800).map(|i| (i as f32 * 0.01).sin() * 0.5).collect();
    write_wav(&path, &Waveform { samples: samples.clone(), sample_rate: 48_000 }, WavFormat::Float32)
        .unwrap();
    assert_eq!(load_wav(&path, 48_000).unwrap(), samples);
    let down = load_wav(&path, 16_000).unwrap();
    assert_eq!(down.len(), 1600);
    // A 76 Hz sine: every third input sample, away from the edges.
    for i in 200..1400 {
        assert!((down[i] - samples[3 * i]).abs() < 1e-3, "sample {i}");
    }
    assert!(matches!(load_wav(&path, 0), Err(Error::InvalidArgument { .. })));
}

#[test]
fn writing_rejects_bad_waves_and_leaves_no_temporary_files() {
    let (dir, path) = temp_path("out.wav");
    let nan = Waveform { samples: vec![0.0, f32::INFINITY], sample_rate: 8_000 };
    assert!(matches!(write_wav(&path, &nan, WavFormat::Float32), Err(Error::InvalidArgument { .. })));
    let no_rate = Waveform { samples: vec![0.0], sample_rate: 0 };
    assert!(matches!(write_wav(&path, &no_rate, WavFormat::Pcm16), Err(Error::InvalidArgument { .. })));
    assert!(!path.exists());
    std::fs::write(&path, "old").unwrap();
    let wave = Waveform { samples: vec![0.25; 10], sample_rate: 8_000 };
    write_wav(&path, &wave, WavFormat::Pcm16).unwrap();
    assert_eq!(read_wav(&path).unwrap(), wave);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["out.wav"]);
    let missing_dir = dir.path().join("no/such/dir/x.wav");
    assert!(matches!(write_wav(&missing_dir, &wave, WavFormat::Pcm16), Err(Error::Io { .. })));
}

#[cfg(unix)]
#[test]
fn written_files_are_not_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, path) = temp_path("perm.wav");
    write_wav(&path, &Waveform { samples: vec![0.0], sample_rate: 8_000 }, WavFormat::Pcm16).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    // Whatever the umask, the owner may read and write and the file is not the 0o600 of a temp file
    // unless the umask itself says so.
    assert_eq!(mode & 0o600, 0o600);
}

#[test]
fn duration_is_samples_over_rate() {
    assert_eq!(Waveform { samples: vec![0.0; 8000], sample_rate: 16_000 }.duration_secs(), 0.5);
    assert_eq!(Waveform { samples: vec![0.0; 8], sample_rate: 0 }.duration_secs(), 0.0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn float32_round_trips_exactly(samples in prop::collection::vec(-2.0f32..2.0, 1..300), rate in 1u32..200_000) {
        let (_dir, path) = temp_path("p.wav");
        let wave = Waveform { samples, sample_rate: rate };
        write_wav(&path, &wave, WavFormat::Float32).unwrap();
        prop_assert_eq!(read_wav(&path).unwrap(), wave);
    }

    #[test]
    fn pcm16_round_trips_within_half_a_step(samples in prop::collection::vec(-1.0f32..1.0, 1..300)) {
        let (_dir, path) = temp_path("p.wav");
        write_wav(&path, &Waveform { samples: samples.clone(), sample_rate: 16_000 }, WavFormat::Pcm16).unwrap();
        let back = read_wav(&path).unwrap().samples;
        prop_assert_eq!(back.len(), samples.len());
        for (a, b) in back.iter().zip(&samples) {
            // 16-bit PCM stops at 32767 / 32768: values above it come back as that.
            let b = b.min(32767.0 / 32768.0);
            prop_assert!((a - b).abs() <= 0.5 / 32768.0 + 1e-7, "{} vs {}", a, b);
        }
    }
}
