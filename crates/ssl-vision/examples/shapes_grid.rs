//! Writes a grid of samples of the embedded shapes dataset to a PNG (one row per class).
//!
//! `cargo run -p ssl-vision --example shapes_grid -- [out.png] [seed]`

use ssl_core::data::Dataset;
use ssl_vision::shapes::{Shapes, ShapesConfig, Split, CLASSES};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "shapes.png".into());
    let seed = args.next().map(|s| s.parse()).transpose()?.unwrap_or(0);
    let cfg = ShapesConfig { seed, ..Default::default() };
    let ds = Shapes::new(&cfg, Split::Train)?;
    let (side, cols, rows) = (cfg.image_size, 10u32, CLASSES.len() as u32);
    let mut grid = image::RgbImage::new(cols * side, rows * side);
    for row in 0..rows {
        for col in 0..cols {
            let (img, _) = ds.get((col * rows + row) as usize)?;
            for (x, y, p) in img.enumerate_pixels() {
                grid.put_pixel(
                    col * side + x,
                    row * side + y,
                    image::Rgb(p.0.map(|v| (v * 255.0).round() as u8)),
                );
            }
        }
    }
    grid.save(&out)?;
    println!("wrote {out}: rows are {}", CLASSES.join(", "));
    Ok(())
}
