//! Writes a grid of samples of the embedded shapes dataset to a PNG (one row per class), and
//! with `--views` two SimCLR views next to each sample (original, view 1, view 2, ...), to see
//! what the augmentations leave of each image.
//!
//! `cargo run -p ssl-vision --example shapes_grid -- [out.png] [seed] [--views]`

use ssl_core::augment::Augmentation;
use ssl_core::data::Dataset;
use ssl_core::rng::rng_for;
use ssl_vision::augment::{presets, Image};
use ssl_vision::shapes::{Shapes, ShapesConfig, Split, CLASSES};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let views = args.iter().any(|a| a == "--views");
    let mut positional = args.iter().filter(|a| !a.starts_with("--"));
    let out = positional.next().cloned().unwrap_or_else(|| "shapes.png".into());
    let seed = positional.next().map(|s| s.parse()).transpose()?.unwrap_or(0);
    let cfg = ShapesConfig { seed, ..Default::default() };
    let ds = Shapes::new(&cfg, Split::Train)?;
    let pipelines = presets::simclr(cfg.image_size, true);
    let mut rng = rng_for(seed, "shapes_grid", &[]);
    let per_sample = if views { 3 } else { 1 };
    let samples = if views { 4 } else { 10 };
    let (side, rows) = (cfg.image_size, CLASSES.len() as u32);
    let mut grid = image::RgbImage::new(samples * per_sample * (side + 1), rows * (side + 1));
    for row in 0..rows {
        for col in 0..samples {
            let (img, _) = ds.get((col * rows + row) as usize)?;
            let mut tiles: Vec<Image> = vec![img.clone()];
            if views {
                tiles.push(pipelines.view(0).apply(&img, &mut rng));
                tiles.push(pipelines.view(1).apply(&img, &mut rng));
            }
            for (t, tile) in tiles.iter().enumerate() {
                let x0 = (col * per_sample + t as u32) * (side + 1);
                for (x, y, p) in tile.enumerate_pixels() {
                    let rgb = image::Rgb(p.0.map(|v| (v * 255.0).round() as u8));
                    grid.put_pixel(x0 + x, row * (side + 1) + y, rgb);
                }
            }
        }
    }
    let grid = image::imageops::resize(
        &grid,
        grid.width() * 3,
        grid.height() * 3,
        image::imageops::FilterType::Nearest,
    );
    grid.save(&out)?;
    println!("wrote {out}: rows are {}", CLASSES.join(", "));
    Ok(())
}
