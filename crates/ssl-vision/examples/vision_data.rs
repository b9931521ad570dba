//! The vision input pipeline alone: JPEG decode plus SimCLR's two augmented 224 px views,
//! normalised into tensors, on one thread and on every rayon thread. `cargo xtask bench data`
//! runs it; by hand:
//!
//! ```text
//! cargo run --release -p ssl-vision --example vision_data -- [--quick] [--json] [--images DIR] [--one-thread]
//! ```
//!
//! The images are 256 × 256 JPEGs written to a temporary folder first (the embedded shapes,
//! upscaled: a stand-in for photos at ImageNet's usual decode size); only reading them back
//! and augmenting is timed. `--images DIR` writes them to `DIR` and keeps them (the torchvision
//! comparison of `cargo xtask bench data --vs-pytorch` reads the same files);
//! `--one-thread` skips the all-threads measurement.

use std::time::Instant;

use rayon::prelude::*;
use ssl_core::data::{BatchBuilder, Dataset};
use ssl_core::metrics::PipelineThroughput;
use ssl_core::rng::rng_for;
use ssl_vision::augment::presets::simclr;
use ssl_vision::data::{FolderOptions, ImageFiles};
use ssl_vision::shapes::{Shapes, ShapesConfig, Split};
use ssl_vision::views::{Normalization, ViewBatches};

/// One measurement, as a JSON line for xtask or as a sentence.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    let (json, quick, one_thread) = (flag("--json"), flag("--quick"), flag("--one-thread"));
    let kept = args.iter().position(|a| a == "--images").map(|i| args.get(i + 1).cloned());
    let n = if quick { 64 } else { 512 };
    // Tensors are made inside the rayon workers; keep libtorch itself single-threaded.
    ssl_core::tch::set_num_threads(1);
    let temp = tempfile::tempdir()?;
    let dir = match kept {
        Some(Some(d)) => std::path::PathBuf::from(d),
        Some(None) => return Err("--images needs a folder".into()),
        None => temp.path().to_path_buf(),
    };
    std::fs::create_dir_all(&dir)?;
    let shapes = Shapes::new(&ShapesConfig::default(), Split::Train)?;
    for i in 0..n {
        let (img, _) = shapes.render(i);
        let rgb = image::DynamicImage::ImageRgb32F(img).to_rgb8();
        let big = image::imageops::resize(&rgb, 256, 256, image::imageops::FilterType::Triangle);
        big.save(dir.join(format!("{i:05}.jpg")))?;
    }
    let files = ImageFiles::unlabelled(&dir, &FolderOptions::default())?;
    let views = ViewBatches::new(simclr(224, false), Normalization::IMAGENET);
    let one = |i: usize| -> ssl_core::Result<()> {
        let mut rng = rng_for(0, "data-bench", &[i as u64]);
        views.prepare(files.get(i)?, &mut rng).map(drop)
    };
    one(0)?; // warm-up
    let started = Instant::now();
    (0..n).try_for_each(one)?;
    let single = n as f64 / started.elapsed().as_secs_f64();
    let name = "image decode + 2 SimCLR views (256 px JPEG to 224 px)";
    PipelineThroughput::new(name, "images", 1, single).print(json);
    if one_thread {
        return Ok(());
    }
    let threads = rayon::current_num_threads();
    let started = Instant::now();
    (0..n).into_par_iter().try_for_each(one)?;
    let all = n as f64 / started.elapsed().as_secs_f64();
    PipelineThroughput::new(name, "images", threads, all).print(json);
    Ok(())
}
