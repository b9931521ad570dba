//! The audio input pipeline alone: WAV read plus the log-mel front end (wav2vec 2.0 and CPC
//! baselines' 25 ms / 10 ms, 80 mel bands), on one thread and on every rayon thread.
//! `cargo xtask bench data` runs it; by hand:
//!
//! ```text
//! cargo run --release -p ssl-audio --example audio_data [-- --quick] [-- --json]
//! ```
//!
//! The clips are the embedded synthetic utterances (1 s at 16 kHz), written as 16-bit PCM WAV
//! files to a temporary folder first; only reading them back and computing log-mel is timed.

use std::time::Instant;

use rayon::prelude::*;
use ssl_audio::frontend::{LogMel, LogMelConfig};
use ssl_audio::synth::{Split, SynthConfig, SynthSpeech};
use ssl_audio::wav::{read_wav, write_wav, WavFormat, Waveform};
use ssl_core::data::Dataset;
use ssl_core::metrics::PipelineThroughput;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (json, quick) = (args.iter().any(|a| a == "--json"), args.iter().any(|a| a == "--quick"));
    let n = if quick { 100 } else { 1000 };
    let cfg = SynthConfig::default();
    let synth = SynthSpeech::new(&cfg, Split::Train)?;
    let dir = tempfile::tempdir()?;
    let mut paths = Vec::with_capacity(n);
    for i in 0..n.min(synth.len()) {
        let path = dir.path().join(format!("{i:05}.wav"));
        write_wav(
            &path,
            &Waveform { samples: synth.get(i)?, sample_rate: cfg.sample_rate },
            WavFormat::Pcm16,
        )?;
        paths.push(path);
    }
    let logmel = LogMel::new(LogMelConfig::default())?;
    let one = |p: &std::path::PathBuf| -> Result<f64, ssl_core::Error> {
        let wave = read_wav(p)?;
        logmel.compute(&wave.samples)?;
        Ok(wave.duration_secs())
    };
    one(&paths[0])?; // warm-up
    let started = Instant::now();
    let seconds: f64 = paths.iter().map(one).sum::<Result<f64, _>>()?;
    let single = paths.len() as f64 / started.elapsed().as_secs_f64();
    let threads = rayon::current_num_threads();
    let started = Instant::now();
    paths.par_iter().map(one).collect::<Result<Vec<f64>, _>>()?;
    let all = paths.len() as f64 / started.elapsed().as_secs_f64();
    let name = format!("WAV read + log-mel ({:.1} s clips)", seconds / paths.len() as f64);
    PipelineThroughput::new(&name, "clips", 1, single).print(json);
    PipelineThroughput::new(&name, "clips", threads, all).print(json);
    Ok(())
}
