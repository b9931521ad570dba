//! Reading and writing WAV files as mono `f32` waveforms.
//!
//! [`read_wav`] accepts uncompressed WAV: 8-, 16-, 24- and 32-bit integer PCM and 32-bit IEEE
//! float, any number of channels (mixed down to mono by averaging) and any sample rate.
//! Integer samples are scaled by `1 / 2^(bits - 1)`, so they land in `[-1, 1)`; float samples are
//! returned as stored (not clipped). [`load_wav`] also resamples to the rate a model expects, and
//! [`write_wav`] writes 16-bit PCM or 32-bit float, atomically.
//!
//! Every error names the file: [`Error::Io`] when it cannot be opened, [`Error::Data`] when it is
//! not a WAV file, is truncated, uses an encoding we do not read, holds no audio or holds NaN or
//! infinite float samples.

use std::cell::Cell;
use std::io::{BufReader, BufWriter, Read};
use std::path::Path;
use std::rc::Rc;

use ssl_core::{Error, Result};

use crate::resample::resample;

/// The most samples [`read_wav`] reserves room for before reading them (16 Mi, 64 MiB).
const MAX_PREALLOCATED_SAMPLES: usize = 1 << 24;

/// Mono audio: samples (nominally in `[-1, 1]`) and their sample rate in Hz.
#[derive(Debug, Clone, PartialEq)]
pub struct Waveform {
    /// The samples, one per frame, mono.
    pub samples: Vec<f32>,
    /// Samples per second.
    pub sample_rate: u32,
}

impl Waveform {
    /// The duration in seconds (`0.0` when the sample rate is 0).
    pub fn duration_secs(&self) -> f64 {
        if self.sample_rate == 0 {
            return 0.0;
        }
        self.samples.len() as f64 / f64::from(self.sample_rate)
    }
}

/// The sample encoding [`write_wav`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WavFormat {
    /// 16-bit signed integer PCM: each sample is clipped to `[-1, 1]`, multiplied by 32768,
    /// rounded and clamped to `[-32768, 32767]`, so [`read_wav`] gives back `k / 32768` exactly.
    #[default]
    Pcm16,
    /// 32-bit IEEE float, lossless for `f32` samples.
    Float32,
}

/// Reads a WAV file as a mono [`Waveform`] at the file's own sample rate.
///
/// Channels are averaged; integer samples are divided by `2^(bits - 1)` (8-bit files store
/// unsigned bytes, which are re-centred first).
///
/// # Errors
///
/// [`Error::Io`] when the file cannot be opened or read; [`Error::Data`] naming the file when it is
/// not a WAV file, its data chunk is truncated, its encoding is not one of those listed in the
/// [module docs](self), it has zero channels, a zero sample rate or no samples, or a float sample
/// is NaN or infinite.
///
/// # Examples
///
/// ```
/// use ssl_audio::wav::{read_wav, write_wav, WavFormat, Waveform};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("tone.wav");
/// let samples: Vec<f32> = (0..1600).map(|i| 0.5 * (i as f32 * 0.1).sin()).collect();
/// write_wav(&path, &Waveform { samples, sample_rate: 16_000 }, WavFormat::Float32)?;
/// let wave = read_wav(&path)?;
/// assert_eq!((wave.samples.len(), wave.sample_rate), (1600, 16_000));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_wav(path: &Path) -> Result<Waveform> {
    let name = || path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let at_end = Rc::new(Cell::new(false));
    let input = EndFlag { inner: BufReader::new(file), at_end: Rc::clone(&at_end) };
    let mut reader = hound::WavReader::new(input).map_err(|e| open_error(path, e, at_end.get()))?;
    let spec = reader.spec();
    if spec.sample_rate == 0 {
        return Err(Error::data(name(), "the sample rate is 0"));
    }
    let channels = usize::from(spec.channels);
    let declared = reader.len() as usize;
    if declared == 0 {
        return Err(Error::data(name(), "no audio: the data chunk holds 0 samples"));
    }
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => read_samples(&mut reader, path, declared, &at_end, |x: f32| x)?,
        hound::SampleFormat::Int => {
            let bits = spec.bits_per_sample;
            if !matches!(bits, 8 | 16 | 24 | 32) {
                return Err(Error::data(
                    name(),
                    format!("unsupported encoding: {bits}-bit integer PCM (8, 16, 24 and 32 bits are read)"),
                ));
            }
            let scale = 1.0 / f64::from(1u32 << (bits - 1));
            read_samples(&mut reader, path, declared, &at_end, |x: i32| (f64::from(x) * scale) as f32)?
        }
    };
    if let Some(i) = interleaved.iter().position(|x| !x.is_finite()) {
        return Err(Error::data(
            name(),
            format!(
                "sample {} of channel {} is {} (float samples must be finite)",
                i / channels,
                i % channels,
                interleaved[i]
            ),
        ));
    }
    Ok(Waveform { samples: mix_down(&interleaved, channels), sample_rate: spec.sample_rate })
}

/// A reader that records whether it reached the end of its input, so that a failed read can be
/// told apart as a truncated file whatever error kind the decoder reports.
struct EndFlag<R> {
    inner: R,
    at_end: Rc<Cell<bool>>,
}

impl<R: Read> Read for EndFlag<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.at_end.set(true);
        }
        Ok(n)
    }
}

/// Whether `e` is a read that ran out of input.
fn is_end_of_file(e: &hound::Error, at_end: bool) -> bool {
    matches!(e, hound::Error::IoError(e) if at_end || e.kind() == std::io::ErrorKind::UnexpectedEof)
}

/// Reads every sample of `reader` (there are `declared` of them) through `convert`, turning
/// early ends of the file into a "truncated" error.
fn read_samples<S: hound::Sample, R: Read>(
    reader: &mut hound::WavReader<R>,
    path: &Path,
    declared: usize,
    at_end: &Cell<bool>,
    convert: impl Fn(S) -> f32,
) -> Result<Vec<f32>> {
    // The header's count is not trusted for the allocation: a corrupt one could ask for gigabytes.
    let mut out = Vec::with_capacity(declared.min(MAX_PREALLOCATED_SAMPLES));
    for sample in reader.samples::<S>() {
        match sample {
            Ok(x) => out.push(convert(x)),
            Err(e) if is_end_of_file(&e, at_end.get()) => {
                return Err(Error::data(
                    path.display().to_string(),
                    format!(
                        "truncated data: the data chunk declares {declared} samples but the file ends \
                         after {}",
                        out.len()
                    ),
                ));
            }
            Err(e) => return Err(hound_error(path, e)),
        }
    }
    Ok(out)
}

/// Averages interleaved frames of `channels` samples into one sample each.
fn mix_down(interleaved: &[f32], channels: usize) -> Vec<f32> {
    if channels == 1 {
        return interleaved.to_vec();
    }
    let inv = 1.0 / channels as f64;
    interleaved
        .chunks_exact(channels)
        .map(|frame| (frame.iter().map(|&x| f64::from(x)).sum::<f64>() * inv) as f32)
        .collect()
}

/// The error for a file hound could not open.
fn open_error(path: &Path, e: hound::Error, at_end: bool) -> Error {
    let message = match e {
        e if is_end_of_file(&e, at_end) => {
            "not a WAV file, or its header is truncated (the file ends inside the header)".to_string()
        }
        hound::Error::FormatError("no RIFF tag found") => "not a WAV file: no RIFF header".to_string(),
        hound::Error::FormatError("no WAVE tag found") => {
            "not a WAV file: a RIFF file whose form type is not WAVE".to_string()
        }
        hound::Error::FormatError("file contains zero channels") => "the file has 0 channels".to_string(),
        hound::Error::FormatError("bits per sample is not 32") => {
            "unsupported encoding: float samples that are not 32-bit (64-bit float is not read)".to_string()
        }
        other => return hound_error(path, other),
    };
    Error::data(path.display().to_string(), message)
}

/// The error for any other hound failure.
fn hound_error(path: &Path, e: hound::Error) -> Error {
    let message = match e {
        hound::Error::IoError(e) => return Error::io(path, e),
        hound::Error::FormatError(reason) => format!("malformed WAV file: {reason}"),
        hound::Error::Unsupported | hound::Error::TooWide | hound::Error::InvalidSampleFormat => {
            "unsupported encoding: only 8/16/24/32-bit integer PCM and 32-bit float are read \
             (compressed encodings such as A-law, mu-law or ADPCM are not)"
                .to_string()
        }
        other => other.to_string(),
    };
    Error::data(path.display().to_string(), message)
}

/// Reads a WAV file (see [`read_wav`]) and resamples it to `rate` Hz when the file's rate
/// differs (see [`crate::resample`]).
///
/// # Errors
///
/// Those of [`read_wav`]; [`Error::InvalidArgument`] when `rate` is 0.
///
/// # Examples
///
/// ```
/// use ssl_audio::wav::{load_wav, write_wav, WavFormat, Waveform};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("clip.wav");
/// write_wav(&path, &Waveform { samples: vec![0.25; 4410], sample_rate: 44_100 }, WavFormat::Pcm16)?;
/// let samples = load_wav(&path, 16_000)?;
/// assert_eq!(samples.len(), 1600); // ceil(4410 * 16000 / 44100)
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load_wav(path: &Path, rate: u32) -> Result<Vec<f32>> {
    if rate == 0 {
        return Err(Error::invalid("rate", "the target sample rate must be positive"));
    }
    let wave = read_wav(path)?;
    if wave.sample_rate == rate {
        return Ok(wave.samples);
    }
    resample(&wave.samples, wave.sample_rate, rate)
}

/// Writes `wave` as a mono WAV file in `format`, atomically: the file is written to a temporary
/// file in the same folder, then renamed over `path`, so readers see either the old file or the
/// whole new one.
///
/// # Errors
///
/// [`Error::InvalidArgument`] when the sample rate is 0 or a sample is NaN or infinite;
/// [`Error::Io`] naming `path` when the temporary file cannot be created, written or renamed.
///
/// # Examples
///
/// ```
/// use ssl_audio::wav::{read_wav, write_wav, WavFormat, Waveform};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("half.wav");
/// let wave = Waveform { samples: vec![0.5, -0.5, 0.0], sample_rate: 8_000 };
/// write_wav(&path, &wave, WavFormat::Pcm16)?;
/// assert_eq!(read_wav(&path)?, wave);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_wav(path: &Path, wave: &Waveform, format: WavFormat) -> Result<()> {
    if wave.sample_rate == 0 {
        return Err(Error::invalid("wave.sample_rate", "must be positive"));
    }
    if let Some(i) = wave.samples.iter().position(|x| !x.is_finite()) {
        return Err(Error::invalid("wave.samples", format!("sample {i} is {}", wave.samples[i])));
    }
    let (bits_per_sample, sample_format) = match format {
        WavFormat::Pcm16 => (16, hound::SampleFormat::Int),
        WavFormat::Float32 => (32, hound::SampleFormat::Float),
    };
    let spec = hound::WavSpec { channels: 1, sample_rate: wave.sample_rate, bits_per_sample, sample_format };
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let tmp = temp_builder().tempfile_in(dir).map_err(|e| Error::io(path, e))?;
    {
        let writer = BufWriter::new(tmp.as_file());
        let mut wav = hound::WavWriter::new(writer, spec).map_err(|e| write_error(path, e))?;
        for &x in &wave.samples {
            let written = match format {
                WavFormat::Pcm16 => wav.write_sample(pcm16(x)),
                WavFormat::Float32 => wav.write_sample(x),
            };
            written.map_err(|e| write_error(path, e))?;
        }
        wav.finalize().map_err(|e| write_error(path, e))?;
    }
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// A temporary-file builder whose files get the permissions a plain `File::create` would give
/// (`0o666` less the umask on Unix) rather than the owner-only default of temporary files.
fn temp_builder() -> tempfile::Builder<'static, 'static> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".ssl-audio-").suffix(".wav.tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder
}

/// `x` as a 16-bit sample: clipped, scaled by 32768 and rounded.
fn pcm16(x: f32) -> i16 {
    (f64::from(x.clamp(-1.0, 1.0)) * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// The error for a failed write to `path`.
fn write_error(path: &Path, e: hound::Error) -> Error {
    match e {
        hound::Error::IoError(e) => Error::io(path, e),
        other => Error::io(path, std::io::Error::other(other.to_string())),
    }
}

#[cfg(test)]
mod tests;
