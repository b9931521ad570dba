//! Tests of [`super`] (windowed-sinc resampling), kept apart for file length.
#![allow(clippy::unwrap_used)] // in tests a panic is the failure report

use std::f64::consts::PI;

use proptest::prelude::*;

use super::*;

/// `amplitude · sin(2π · freq · i / rate + phase)` for `i in 0..len`.
fn sine(freq: f64, rate: u32, len: usize, amplitude: f64, phase: f64) -> Vec<f32> {
    (0..len)
        .map(|i| (amplitude * (2.0 * PI * freq * i as f64 / f64::from(rate) + phase).sin()) as f32)
        .collect()
}

/// The root mean square of `x`.
fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

/// The part of `x` at least `margin` samples from both ends.
fn interior(x: &[f32], margin: usize) -> &[f32] {
    &x[margin..x.len() - margin]
}

/// The largest difference between `out` and the sine it should be, away from the edges.
fn sine_error(out: &[f32], freq: f64, rate: u32, amplitude: f64, phase: f64, margin: usize) -> f64 {
    let ideal = sine(freq, rate, out.len(), amplitude, phase);
    (margin..out.len() - margin).map(|i| f64::from(out[i] - ideal[i]).abs()).fold(0.0, f64::max)
}

/// Sign changes in `x`.
fn zero_crossings(x: &[f32]) -> usize {
    x.windows(2).filter(|w| (w[0] < 0.0) != (w[1] < 0.0)).count()
}

#[test]
fn zero_rates_and_bad_configs_are_errors() {
    assert!(
        matches!(Resampler::new(0, 16_000), Err(Error::InvalidArgument { name, .. }) if name == "from_rate")
    );
    assert!(
        matches!(Resampler::new(16_000, 0), Err(Error::InvalidArgument { name, .. }) if name == "to_rate")
    );
    assert!(resample(&[1.0], 0, 0).is_err());
    for (config, field) in [
        (ResamplerConfig { half_taps: 0, ..Default::default() }, "half_taps"),
        (ResamplerConfig { roll_off: 1.5, ..Default::default() }, "roll_off"),
        (ResamplerConfig { roll_off: f64::NAN, ..Default::default() }, "roll_off"),
        (ResamplerConfig { kaiser_beta: -1.0, ..Default::default() }, "kaiser_beta"),
    ] {
        let err = Resampler::with_config(48_000, 16_000, &config).unwrap_err();
        assert!(matches!(err, Error::Config { field: f, .. } if f == field));
    }
}

#[test]
fn equal_rates_copy() {
    let x = sine(440.0, 16_000, 1000, 0.5, 0.3);
    assert_eq!(resample(&x, 16_000, 16_000).unwrap(), x);
    assert_eq!(Resampler::new(8_000, 8_000).unwrap().process(&x), x);
}

#[test]
fn empty_input_gives_empty_output() {
    assert!(resample(&[], 48_000, 16_000).unwrap().is_empty());
    assert!(resample(&[], 16_000, 44_100).unwrap().is_empty());
}

#[test]
fn default_design_is_pinned() {
    // Kaiser β 8.6 (≈ 86 dB), 32 zero crossings, cut-off at 95 % of the lower Nyquist frequency.
    assert_eq!(
        ResamplerConfig::default(),
        ResamplerConfig { half_taps: 32, roll_off: 0.95, kaiser_beta: 8.6 }
    );
    let r = Resampler::new(44_100, 16_000).unwrap();
    assert_eq!((r.up, r.down), (160, 441));
    assert!(matches!(r.kernel, Taps::Table(ref t) if t.len() == 160 * r.taps));
    assert_eq!((r.from_rate(), r.to_rate()), (44_100, 16_000));
    assert!(matches!(Resampler::new(44_100, 16_001).unwrap().kernel, Taps::Direct(_)));
}

#[test]
fn bessel_i0_matches_known_values() {
    // Reference values from scipy.special.i0.
    assert_eq!(bessel_i0(0.0), 1.0);
    assert!((bessel_i0(1.0) - 1.266_065_877_752_008_2).abs() < 1e-15);
    assert!((bessel_i0(8.6) / 750.461_159_563_165_9 - 1.0).abs() < 1e-14);
    assert!((bessel_i0(5.0) - 27.239_871_823_604_442).abs() < 1e-12);
}

#[test]
fn downsampling_48k_to_16k_suppresses_tones_above_8k_by_40_db() {
    let r = Resampler::new(48_000, 16_000).unwrap();
    for freq in [8_500.0, 9_000.0, 10_000.0, 12_000.0, 15_000.0, 20_000.0, 23_900.0] {
        let x = sine(freq, 48_000, 48_000, 0.8, 0.1);
        let y = r.process(&x);
        let attenuation_db = 20.0 * (rms(interior(&y, 200)) / rms(&x)).log10();
        assert!(attenuation_db < -40.0, "{freq} Hz attenuated by only {attenuation_db:.1} dB");
    }
    // The default design does much better than required above 8.3 kHz.
    let y = r.process(&sine(9_000.0, 48_000, 48_000, 0.8, 0.1));
    assert!(20.0 * (rms(interior(&y, 200)) / 0.8f64.sqrt()).log10() < -70.0);
}

#[test]
fn the_default_response_is_as_documented() {
    let r = Resampler::new(48_000, 16_000).unwrap();
    let gain = |fraction: f64| {
        let x = sine(fraction * 8_000.0, 48_000, 48_000, 1.0, 0.0);
        rms(interior(&r.process(&x), 1_600)) / rms(&x)
    };
    for fraction in [0.1, 0.5, 0.8, 0.87] {
        assert!((gain(fraction) - 1.0).abs() < 2e-4, "{fraction}: {}", gain(fraction));
    }
    assert!((20.0 * gain(0.90).log10() + 0.3).abs() < 0.05);
    assert!((20.0 * gain(0.95).log10() + 6.0).abs() < 0.05);
    for fraction in [1.03, 1.05, 1.2, 1.5, 2.0, 2.9] {
        let db = 20.0 * gain(fraction).log10();
        let bound = if fraction < 1.05 { -78.0 } else { -87.0 };
        assert!(db < bound, "{fraction}: {db:.1} dB");
    }
}

#[test]
fn downsampling_keeps_the_pass_band() {
    let r = Resampler::new(48_000, 16_000).unwrap();
    for freq in [50.0, 1_000.0, 4_000.0, 6_500.0] {
        let y = r.process(&sine(freq, 48_000, 24_000, 0.9, 0.7));
        let err = sine_error(&y, freq, 16_000, 0.9, 0.7, 200);
        assert!(err < 0.9 * 2e-3, "{freq} Hz: error {err}");
    }
}

#[test]
fn upsampling_16k_to_48k_interpolates_without_images() {
    let r = Resampler::new(16_000, 48_000).unwrap();
    for freq in [100.0, 3_000.0, 7_000.0] {
        let x = sine(freq, 16_000, 8_000, 0.5, 1.1);
        let y = r.process(&x);
        assert_eq!(y.len(), 24_000);
        // Every third output sample is an input sample.
        for i in (300..7_700).step_by(97) {
            assert!((y[3 * i] - x[i]).abs() < 1e-3, "{freq} Hz, sample {i}");
        }
        // In between, the band-limited sine (an image would show up as a large error here).
        let err = sine_error(&y, freq, 48_000, 0.5, 1.1, 600);
        assert!(err < 1e-3, "{freq} Hz: error {err}");
    }
}

#[test]
fn cd_rate_to_16k() {
    let r = Resampler::new(44_100, 16_000).unwrap();
    let x = sine(1_000.0, 44_100, 44_100, 0.5, 0.0);
    let y = r.process(&x);
    assert_eq!(y.len(), 16_000);
    assert!(sine_error(&y, 1_000.0, 16_000, 0.5, 0.0, 200) < 1e-3);
    let alias = r.process(&sine(12_000.0, 44_100, 44_100, 0.5, 0.0));
    assert!(rms(interior(&alias, 200)) < 0.5 * 1e-3);
}

#[test]
fn odd_ratios_use_the_direct_kernel_and_agree_with_the_table() {
    let config = ResamplerConfig::default();
    let x = sine(300.0, 16_000, 3_000, 0.7, 0.2);
    for (from, to) in [(16_000, 22_050), (16_000, 11_025), (44_100, 16_000)] {
        let table = Resampler::build(from, to, &config, MAX_TABLE_PHASES).unwrap();
        let direct = Resampler::build(from, to, &config, 0).unwrap();
        assert!(matches!(direct.kernel, Taps::Direct(_)));
        let (a, b) = (table.process(&x), direct.process(&x));
        assert_eq!(a.len(), b.len());
        for (i, (p, q)) in a.iter().zip(&b).enumerate() {
            assert!((p - q).abs() < 1e-5, "{from} -> {to}, sample {i}: {p} vs {q}");
        }
    }
    // The interpolated kernel keeps the stop band: 44.1 kHz -> 16.001 kHz has 16001 phases.
    let r = Resampler::new(44_100, 16_001).unwrap();
    assert!(matches!(r.kernel, Taps::Direct(_)));
    for freq in [8_300.0, 9_000.0, 12_000.0, 20_000.0] {
        let x = sine(freq, 44_100, 22_050, 1.0, 0.0);
        let db = 20.0 * (rms(interior(&r.process(&x), 400)) / rms(&x)).log10();
        assert!(db < -78.0, "{freq} Hz: {db:.1} dB");
    }
    let x = sine(1_000.0, 44_100, 22_050, 0.5, 0.0);
    assert!(sine_error(&r.process(&x), 1_000.0, 16_001, 0.5, 0.0, 400) < 1e-4);
}

#[test]
fn parallel_chunks_match_a_single_pass() {
    let r = Resampler::new(48_000, 16_000).unwrap();
    let x: Vec<f32> = (0..3 * (2 * CHUNK + 123)).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    let parallel = r.process(&x);
    let mut serial = vec![0.0; r.output_len(x.len())];
    r.process_chunk(&x, 0, &mut serial);
    assert_eq!(parallel, serial);
}

#[test]
fn output_len_handles_huge_inputs() {
    let r = Resampler::new(44_100, 16_000).unwrap();
    // Ten days of CD audio: the product len · up does not fit in 32 bits.
    let len = 10 * 24 * 3600 * 44_100usize;
    assert_eq!(r.output_len(len), 10 * 24 * 3600 * 16_000);
    assert_eq!(r.output_len(1), 1);
    assert_eq!(r.output_len(441), 160);
    assert_eq!(r.output_len(442), 161);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn output_length_is_the_ceiling_of_len_times_ratio(
        len in 0usize..5_000,
        from in 1u32..200_000,
        to in 1u32..200_000,
    ) {
        let r = Resampler::new(from, to).unwrap();
        let expected = (len as u64 * u64::from(to)).div_ceil(u64::from(from)) as usize;
        prop_assert_eq!(r.output_len(len), expected);
        if len <= 400 {
            prop_assert_eq!(r.process(&vec![0.1; len]).len(), expected);
        }
    }

    #[test]
    fn a_constant_stays_constant_away_from_the_edges(
        from in prop::sample::select(vec![8_000u32, 11_025, 16_000, 22_050, 24_000, 44_100, 48_000, 96_000]),
        to in prop::sample::select(vec![8_000u32, 16_000, 22_050, 32_000, 44_100, 48_000]),
        level in -1.0f32..1.0,
    ) {
        let len = from as usize / 10;
        let y = resample(&vec![level; len], from, to).unwrap();
        // The kernel reaches 32 / 0.95 ≈ 34 periods of the lower rate: 40 output samples
        // (at the output rate, or fewer) are clear of the zero padding.
        let margin = 40 * (to as usize).div_ceil(from.min(to) as usize);
        for (i, &v) in y.iter().enumerate().take(y.len() - margin).skip(margin) {
            prop_assert!((v - level).abs() < 1e-3, "sample {} of {}: {} vs {}", i, y.len(), v, level);
        }
    }

    #[test]
    fn a_slow_sine_keeps_its_frequency_and_amplitude(
        from in prop::sample::select(vec![8_000u32, 16_000, 22_050, 44_100, 48_000]),
        to in prop::sample::select(vec![8_000u32, 12_000, 16_000, 24_000, 44_100]),
        fraction in 0.02f64..0.4,
        amplitude in 0.1f64..1.0,
        phase in 0.0f64..std::f64::consts::TAU,
    ) {
        // `fraction` of the lower Nyquist frequency, well inside the pass band.
        let freq = fraction * f64::from(from.min(to)) / 2.0;
        let x = sine(freq, from, from as usize / 4, amplitude, phase);
        let y = resample(&x, from, to).unwrap();
        let margin = 40 * (to as usize).div_ceil(from.min(to) as usize);
        let err = sine_error(&y, freq, to, amplitude, phase, margin);
        prop_assert!(err < 0.02 * amplitude, "{} Hz, {} -> {}: error {}", freq, from, to, err);
        let inner = interior(&y, margin);
        let expected = 2.0 * freq * inner.len() as f64 / f64::from(to);
        let found = zero_crossings(inner) as f64;
        prop_assert!((found - expected).abs() <= 2.0, "{} crossings, expected {}", found, expected);
        let peak = inner.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
        prop_assert!(peak <= amplitude * 1.02, "peak {} for amplitude {}", peak, amplitude);
    }
}

/// Resampler throughput on a 60 s signal; run with
/// `cargo test --release -p ssl-audio resampler_throughput -- --ignored --nocapture`.
#[test]
#[ignore = "timing, not a check: run in release mode by hand"]
fn resampler_throughput() {
    // 44.1 kHz -> 16.001 kHz has 16001 phases: the kernel is evaluated per output sample.
    for (from, to) in [(48_000u32, 16_000u32), (44_100, 16_000), (44_100, 16_001)] {
        let x = sine(440.0, from, 60 * from as usize, 0.5, 0.0);
        let r = Resampler::new(from, to).unwrap();
        let start = std::time::Instant::now();
        let y = r.process(&x);
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{from} -> {to}: {} input samples in {:.3} s = {:.1} M input samples/s ({} threads), {} outputs",
            x.len(),
            secs,
            x.len() as f64 / secs / 1e6,
            rayon::current_num_threads(),
            y.len()
        );
    }
}
