//! From clips to batches: WAV folders as datasets, random fixed-length crops with padding
//! masks, and the `[N, 2, T]` input convention the audio encoders share.
//!
//! A batch is an [`AudioBatch`]: waveforms `[B, T]` and a `Bool` mask `[B, T]`, true for real
//! samples. Clips longer than the crop are cut at a random offset; shorter ones are
//! zero-padded at the end and their mask says so, so models ignore the padding (wav2vec 2.0
//! masks attention, both methods pool and score only real frames).
//!
//! The [`Encoder`](ssl_core::Encoder) of an audio model takes one tensor, so a padded batch
//! travels as `[N, 2, T]`: channel 0 the waveform, channel 1 the mask as 0/1
//! ([`encoder_input`]); a plain `[N, T]` means every sample is real.
//!
//! ```
//! use ssl_audio::data::{CropBatches, CropConfig};
//! use ssl_core::data::BatchBuilder;
//! use ssl_core::rng::rng_for;
//! let crops = CropBatches::new(CropConfig { crop_len: 400, normalize: false })?;
//! let mut rng = rng_for(0, "doc", &[]);
//! let long = crops.prepare(vec![1.0; 1000], &mut rng)?;
//! let short = crops.prepare(vec![2.0; 100], &mut rng)?;
//! let batch = crops.collate(vec![long, short])?;
//! assert_eq!(batch.wave.size(), [2, 400]);
//! assert_eq!(i64::try_from(batch.mask.sum(ssl_core::tch::Kind::Int64))?, 400 + 100);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

use rand::Rng;
use serde::{Deserialize, Serialize};
use ssl_core::data::{Batch, BatchBuilder, Dataset};
use ssl_core::rng::SslRng;
use ssl_core::{Error, Result};
use tch::{Device, Kind, Tensor};

/// Waveforms and their padding masks.
#[derive(Debug)]
pub struct AudioBatch {
    /// `[B, T]` float32 samples.
    pub wave: Tensor,
    /// `[B, T]` `Bool`: true for real samples, false for padding.
    pub mask: Tensor,
}

impl Batch for AudioBatch {
    fn to_device(&self, device: Device) -> Self {
        Self { wave: self.wave.to_device(device), mask: self.mask.to_device(device) }
    }
    fn batch_size(&self) -> usize {
        self.wave.size().first().map_or(0, |&n| n as usize)
    }
}

impl AudioBatch {
    /// The batch as one encoder input, `[B, 2, T]` (see [`encoder_input`]).
    pub fn encoder_input(&self) -> Tensor {
        encoder_input(&self.wave, &self.mask)
    }
}

/// Packs waveforms `[N, T]` and their mask `[N, T]` into the `[N, 2, T]` encoder input.
pub fn encoder_input(wave: &Tensor, mask: &Tensor) -> Tensor {
    Tensor::stack(&[wave.to_kind(Kind::Float), mask.to_kind(Kind::Float)], 1)
}

/// Splits an encoder input into waveforms `[N, T]` and their `Bool` mask `[N, T]`: `[N, T]`
/// is all real; `[N, 2, T]` carries the mask in channel 1.
pub fn split_input(x: &Tensor) -> Result<(Tensor, Tensor)> {
    match x.size().as_slice() {
        [_, _] => {
            let wave = x.to_kind(Kind::Float);
            let mask = wave.ones_like().to_kind(Kind::Bool);
            Ok((wave, mask))
        }
        [_, 2, _] => Ok((x.select(1, 0).to_kind(Kind::Float), x.select(1, 1).gt(0.5))),
        other => Err(Error::shape("audio encoder input", "[N, T] or [N, 2, T] (waveform, mask)", other)),
    }
}

/// How training clips are cut: the `[data.crop]` part of an audio run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CropConfig {
    /// Samples per crop; longer clips are cut at a random offset, shorter ones padded.
    pub crop_len: usize,
    /// Normalise each clip to zero mean and unit variance over its real samples (as the
    /// wav2vec 2.0 large models and Hugging Face's feature extractor do; the base model of
    /// the paper does not).
    pub normalize: bool,
}

impl Default for CropConfig {
    fn default() -> Self {
        Self { crop_len: 16_000, normalize: true }
    }
}

impl CropConfig {
    /// Checks the fields.
    pub fn validate(&self) -> Result<()> {
        if self.crop_len < 400 {
            return Err(Error::config("data.crop_len", "must be at least 400 samples"));
        }
        Ok(())
    }
}

/// A clip cut or padded to the crop length, and how many of its samples are real.
#[derive(Debug, Clone)]
pub struct Crop {
    /// `crop_len` samples.
    pub samples: Vec<f32>,
    /// Real samples at the start (the rest is padding).
    pub real: usize,
}

/// Random crops of a fixed length with padding masks: a [`BatchBuilder`] over waveforms.
#[derive(Debug, Clone)]
pub struct CropBatches {
    cfg: CropConfig,
}

impl CropBatches {
    /// Validates `cfg`.
    pub fn new(cfg: CropConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self { cfg })
    }

    /// Cuts `clip` at `offset` (clamped) to the crop length, or pads it.
    pub fn crop_at(&self, clip: &[f32], offset: usize) -> Crop {
        let len = self.cfg.crop_len;
        let offset = offset.min(clip.len().saturating_sub(len));
        let real = (clip.len() - offset).min(len);
        let mut samples = vec![0.0; len];
        samples[..real].copy_from_slice(&clip[offset..offset + real]);
        if self.cfg.normalize {
            normalize(&mut samples[..real]);
        }
        Crop { samples, real }
    }

    /// The centre crop (evaluation).
    pub fn centre(&self, clip: &[f32]) -> Crop {
        self.crop_at(clip, clip.len().saturating_sub(self.cfg.crop_len) / 2)
    }

    /// Stacks crops into a batch.
    pub fn stack(crops: &[Crop]) -> Result<AudioBatch> {
        let Some(first) = crops.first() else {
            return Err(Error::invalid("audio batch", "no clips to stack"));
        };
        let len = first.samples.len();
        let mut wave = Vec::with_capacity(crops.len() * len);
        let mut mask = Vec::with_capacity(crops.len() * len);
        for c in crops {
            if c.samples.len() != len {
                return Err(Error::shape("audio crop", format!("[{len}]"), &[c.samples.len() as i64]));
            }
            wave.extend_from_slice(&c.samples);
            mask.extend((0..len).map(|i| i < c.real));
        }
        let shape = [crops.len() as i64, len as i64];
        Ok(AudioBatch {
            wave: Tensor::from_slice(&wave).view(shape),
            mask: Tensor::from_slice(&mask).view(shape),
        })
    }
}

/// Zero mean, unit variance in place (a silent clip stays zero).
pub fn normalize(x: &mut [f32]) {
    if x.is_empty() {
        return;
    }
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = x.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
    let inv = 1.0 / (var + 1e-7).sqrt();
    for v in x {
        *v = ((f64::from(*v) - mean) * inv) as f32;
    }
}

impl BatchBuilder<Vec<f32>> for CropBatches {
    type Sample = Crop;
    type Batch = AudioBatch;
    fn prepare(&self, clip: Vec<f32>, rng: &mut SslRng) -> Result<Crop> {
        let room = clip.len().saturating_sub(self.cfg.crop_len);
        let offset = if room > 0 { rng.gen_range(0..=room) } else { 0 };
        Ok(self.crop_at(&clip, offset))
    }
    fn collate(&self, samples: Vec<Crop>) -> Result<AudioBatch> {
        Self::stack(&samples)
    }
}

/// Every `.wav` file under `root` (recursively, case-insensitive extension), sorted; an
/// error naming `root` when there is none or it cannot be read.
pub fn wav_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    collect(root, &mut out)?;
    out.sort();
    if out.is_empty() {
        return Err(Error::data(root.display().to_string(), "no .wav files found"));
    }
    Ok(out)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
    if meta.is_file() {
        out.push(dir.to_path_buf());
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("wav")) {
            out.push(path);
        }
    }
    Ok(())
}

/// An unlabelled folder of WAV files (searched recursively), decoded and resampled to the
/// model rate when a clip is read.
#[derive(Debug, Clone)]
pub struct WavFolder {
    files: Vec<PathBuf>,
    rate: u32,
}

impl WavFolder {
    /// The `.wav` files under `root` (or `root` itself, a single file), read at `rate` Hz.
    pub fn open(root: &Path, rate: u32) -> Result<Self> {
        Ok(Self { files: wav_files(root)?, rate })
    }

    /// The files, sorted.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

impl Dataset for WavFolder {
    type Item = Vec<f32>;
    fn len(&self) -> usize {
        self.files.len()
    }
    fn get(&self, index: usize) -> Result<Vec<f32>> {
        let path = self.files.get(index).ok_or_else(|| {
            Error::data(
                format!("wav folder[{index}]"),
                format!("index out of range (len {})", self.files.len()),
            )
        })?;
        crate::wav::load_wav(path, self.rate)
    }
}

/// A labelled folder: one sub-folder per class (sorted names are the classes), WAV files in
/// each (searched recursively).
#[derive(Debug, Clone)]
pub struct LabelledWavFolder {
    /// Class names, sorted.
    pub classes: Vec<String>,
    /// `(file, class index)`, sorted by file.
    pub items: Vec<(PathBuf, i64)>,
    rate: u32,
}

impl LabelledWavFolder {
    /// Opens `root`; with `classes`, sub-folders are mapped onto those names (the training
    /// split's) and an unknown class is an error naming it.
    pub fn open(root: &Path, rate: u32, classes: Option<&[String]>) -> Result<Self> {
        let name = root.display().to_string();
        let mut dirs: Vec<(String, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(root).map_err(|e| Error::io(root, e))? {
            let path = entry.map_err(|e| Error::io(root, e))?.path();
            if path.is_dir() {
                let class = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                dirs.push((class, path));
            }
        }
        dirs.sort();
        if dirs.len() < 2 && classes.is_none() {
            return Err(Error::data(name, "a labelled folder needs one sub-folder per class (at least two)"));
        }
        let names: Vec<String> = match classes {
            Some(c) => c.to_vec(),
            None => dirs.iter().map(|(c, _)| c.clone()).collect(),
        };
        let mut items = Vec::new();
        for (class, dir) in &dirs {
            let Some(label) = names.iter().position(|c| c == class) else {
                return Err(Error::data(
                    dir.display().to_string(),
                    format!("class `{class}` is not one of the training classes {names:?}"),
                ));
            };
            for f in wav_files(dir)? {
                items.push((f, label as i64));
            }
        }
        if items.is_empty() {
            return Err(Error::data(name, "no .wav files in the class folders"));
        }
        items.sort();
        Ok(Self { classes: names, items, rate })
    }

    /// A training and a test folder, the test folder's sub-folders mapped onto the training
    /// folder's classes.
    pub fn open_pair(train: &Path, test: &Path, rate: u32) -> Result<(Self, Self)> {
        let tr = Self::open(train, rate, None)?;
        let te = Self::open(test, rate, Some(&tr.classes))?;
        Ok((tr, te))
    }

    /// Decodes every clip (in parallel), with its label.
    pub fn load_all(&self) -> Result<(Vec<Vec<f32>>, Vec<i64>)> {
        use rayon::prelude::*;
        let clips: Result<Vec<Vec<f32>>> =
            self.items.par_iter().map(|(p, _)| crate::wav::load_wav(p, self.rate)).collect();
        Ok((clips?, self.items.iter().map(|(_, l)| *l).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ssl_core::rng::rng_for;

    proptest! {
        #[test]
        fn crops_have_the_crop_length_and_an_honest_mask(len in 1usize..3000, crop in 400usize..1200, seed: u64) {
            let b = CropBatches::new(CropConfig { crop_len: crop, normalize: false }).unwrap();
            let clip: Vec<f32> = (0..len).map(|i| i as f32 + 1.0).collect();
            let c = b.prepare(clip, &mut rng_for(seed, "t", &[])).unwrap();
            prop_assert_eq!(c.samples.len(), crop);
            prop_assert_eq!(c.real, len.min(crop));
            // Real samples are a contiguous run of the clip; padding is zero.
            let first = c.samples[0];
            for i in 0..c.real {
                prop_assert_eq!(c.samples[i], first + i as f32);
            }
            prop_assert!(c.samples[c.real..].iter().all(|&x| x == 0.0));
            prop_assert!(first >= 1.0 && first + (c.real as f32) - 1.0 <= len as f32);
        }
    }

    #[test]
    fn normalised_crops_have_zero_mean_and_unit_variance_over_real_samples() {
        let b = CropBatches::new(CropConfig { crop_len: 1000, normalize: true }).unwrap();
        let clip: Vec<f32> = (0..600).map(|i| (i as f32 * 0.1).sin() * 3.0 + 1.0).collect();
        let c = b.centre(&clip);
        let real = &c.samples[..c.real];
        let mean = real.iter().sum::<f32>() / real.len() as f32;
        let var = real.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / real.len() as f32;
        assert!(mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3, "{mean} {var}");
        assert!(c.samples[c.real..].iter().all(|&x| x == 0.0));
    }

    #[test]
    fn encoder_inputs_round_trip_their_mask() {
        let wave = Tensor::randn([3, 10], (Kind::Float, Device::Cpu));
        let mask = Tensor::arange(10, (Kind::Int64, Device::Cpu)).lt(7).unsqueeze(0).expand([3, 10], false);
        let (w, m) = split_input(&encoder_input(&wave, &mask)).unwrap();
        assert!(w.equal(&wave) && m.equal(&mask));
        let (_, all) = split_input(&wave).unwrap();
        assert_eq!(i64::try_from(all.sum(Kind::Int64)).unwrap(), 30);
        assert!(split_input(&Tensor::zeros([2, 3, 4], (Kind::Float, Device::Cpu))).is_err());
    }

    #[test]
    fn empty_and_unlabelled_folders_are_errors_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let e = wav_files(dir.path()).unwrap_err().to_string();
        assert!(e.contains(&dir.path().display().to_string()) && e.contains("no .wav"), "{e}");
        let e = LabelledWavFolder::open(dir.path(), 16000, None).unwrap_err().to_string();
        assert!(e.contains("sub-folder per class"), "{e}");
    }
}
