//! PNG grids of image tensors: what a method does to a fixed batch (MAE's original / masked /
//! reconstruction / pasted), written atomically next to a run's checkpoints.

use std::path::Path;

use ssl_core::error::TorchResultExt;
use ssl_core::{Error, Result};
use tch::{Device, Kind, Tensor};

use crate::views::Normalization;

/// Writes `columns` (each `[N, 3, H, W]`, normalised with `norm`) as a PNG grid: sample `i` on
/// row `i`, column `j` from `columns[j]`, with a 1-pixel white border between tiles. The file
/// is written under a temporary name and renamed, so a reader never sees half a picture.
///
/// ```
/// use ssl_core::tch::{Device, Kind, Tensor};
/// use ssl_vision::pictures::write_grid;
/// use ssl_vision::views::Normalization;
/// let dir = std::env::temp_dir().join(format!("ssl-vision-doc-grid-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let x = Tensor::zeros([2, 3, 8, 8], (Kind::Float, Device::Cpu));
/// let path = dir.join("grid.png");
/// write_grid(&[x.shallow_clone(), x], Normalization::IMAGENET, &path)?;
/// let png = image::open(&path).expect("a PNG");
/// assert_eq!((png.width(), png.height()), (2 * 9 + 1, 2 * 9 + 1));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_grid(columns: &[Tensor], norm: Normalization, path: &Path) -> Result<()> {
    let Some(first) = columns.first() else {
        return Err(Error::invalid("columns", "no images to draw"));
    };
    let size = first.size();
    if size.len() != 4 || size[1] != 3 || columns.iter().any(|c| c.size() != size) {
        return Err(Error::shape("picture columns", "equal [N, 3, H, W] tensors", &size));
    }
    let (n, h, w) = (size[0], size[2], size[3]);
    let cols = columns.len() as i64;
    let mean = Tensor::from_slice(&norm.mean).view([1, 3, 1, 1]);
    let std = Tensor::from_slice(&norm.std).view([1, 3, 1, 1]);
    let (gw, gh) = ((cols * (w + 1) + 1) as u32, (n * (h + 1) + 1) as u32);
    let mut grid = image::RgbImage::from_pixel(gw, gh, image::Rgb([255, 255, 255]));
    for (j, column) in columns.iter().enumerate() {
        let pixels = column
            .f_to_device(Device::Cpu)
            .and_then(|c| c.f_to_kind(Kind::Float))
            .and_then(|c| c.f_mul(&std))
            .and_then(|c| c.f_add(&mean))
            .and_then(|c| c.f_clamp(0.0, 1.0))
            .and_then(|c| c.f_mul_scalar(255.0))
            .and_then(|c| c.f_round())
            .and_then(|c| c.f_to_kind(Kind::Uint8))
            .and_then(|c| c.f_permute([0, 2, 3, 1])) // [N, H, W, 3]
            .and_then(|c| c.f_contiguous())
            .torch_context("picture pixels")?;
        let bytes = Vec::<u8>::try_from(pixels.flatten(0, -1)).torch_context("picture pixels")?;
        for i in 0..n {
            for y in 0..h {
                for x in 0..w {
                    let o = (((i * h + y) * w + x) * 3) as usize;
                    let px = image::Rgb([bytes[o], bytes[o + 1], bytes[o + 2]]);
                    let (gx, gy) = (j as i64 * (w + 1) + 1 + x, i * (h + 1) + 1 + y);
                    grid.put_pixel(gx as u32, gy as u32, px);
                }
            }
        }
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("picture.png");
    let tmp = dir.join(format!(".{name}.tmp"));
    let write = || -> std::result::Result<(), String> {
        grid.save_with_format(&tmp, image::ImageFormat::Png).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, path).map_err(|e| e.to_string())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::data(path.display().to_string(), format!("cannot write the picture: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixels_are_denormalised_and_placed_by_sample_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let norm = Normalization { mean: [0.5; 3], std: [0.5; 3] };
        // Column 0 all black (-1 normalised), column 1 all white (+1), two samples of 2x2.
        let black = Tensor::full([2, 3, 2, 2], -1.0, (Kind::Float, Device::Cpu));
        let white = Tensor::full([2, 3, 2, 2], 1.0, (Kind::Float, Device::Cpu));
        let path = dir.path().join("g.png");
        write_grid(&[black, white], norm, &path).unwrap();
        let png = image::open(&path).unwrap().to_rgb8();
        assert_eq!(png.dimensions(), (7, 7));
        assert_eq!(png.get_pixel(1, 4).0, [0, 0, 0]); // sample 1, column 0
        assert_eq!(png.get_pixel(4, 1).0, [255, 255, 255]); // sample 0, column 1
        assert!(!dir.path().join(".g.png.tmp").exists());
        let bad = Tensor::zeros([2, 1, 2, 2], (Kind::Float, Device::Cpu));
        assert!(write_grid(&[bad], norm, &path).is_err());
    }
}
