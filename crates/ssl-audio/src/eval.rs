//! What probes of an audio encoder need: labelled clips as encoder inputs, and the mean
//! log-mel baseline.
//!
//! ```
//! use ssl_audio::data::{CropBatches, CropConfig};
//! use ssl_audio::eval::{clip_inputs, logmel_means};
//! use ssl_audio::frontend::LogMelConfig;
//! let crops = CropBatches::new(CropConfig { crop_len: 1600, normalize: true })?;
//! let clips = vec![vec![0.5f32; 3000], (0..800).map(|i| (i as f32 * 0.3).sin()).collect()];
//! let (inputs, real) = clip_inputs(&clips, &crops)?;
//! assert_eq!(inputs.size(), [2, 2, 1600]);
//! assert_eq!(real, [1600, 800]);
//! let mel = logmel_means(&clips, &real, &crops, &LogMelConfig::default())?;
//! assert_eq!(mel.size()[0], 2);
//! # Ok::<(), ssl_core::Error>(())
//! ```

use rayon::prelude::*;
use ssl_core::{Error, Result};
use tch::Tensor;

use crate::data::{Crop, CropBatches};
use crate::frontend::{LogMel, LogMelConfig};

/// Centre crops (or padded clips) of `clips` as encoder inputs `[N, 2, T]` (waveform, mask),
/// with each crop's count of real samples.
pub fn clip_inputs(clips: &[Vec<f32>], crops: &CropBatches) -> Result<(Tensor, Vec<usize>)> {
    let cut: Vec<Crop> = clips.par_iter().map(|c| crops.centre(c)).collect();
    let real = cut.iter().map(|c| c.real).collect();
    Ok((CropBatches::stack(&cut)?.encoder_input(), real))
}

/// The log-mel spectrogram of each clip's centre crop (its real samples), averaged over
/// frames: `[N, n_mels]`, the baseline `logmel_linear_probe_acc` reports.
pub fn logmel_means(
    clips: &[Vec<f32>],
    real: &[usize],
    crops: &CropBatches,
    cfg: &LogMelConfig,
) -> Result<Tensor> {
    if clips.len() != real.len() {
        return Err(Error::invalid("log-mel baseline", "one real-sample count per clip is needed"));
    }
    let front = LogMel::new(*cfg)?;
    let rows: Vec<Vec<f32>> = clips
        .par_iter()
        .zip(real)
        .map(|(clip, &n)| {
            let crop = crops.centre(clip);
            let mel = front.compute(&crop.samples[..n.min(crop.samples.len())])?;
            let frames = mel.nrows().max(1) as f32;
            Ok(mel.sum_axis(ndarray::Axis(0)).iter().map(|v| v / frames).collect())
        })
        .collect::<Result<_>>()?;
    let width = rows.first().map_or(0, Vec::len);
    let flat: Vec<f32> = rows.concat();
    Ok(Tensor::from_slice(&flat).view([clips.len() as i64, width as i64]))
}
