//! Line charts as PNG files: `plotters` draws the axes, grid and lines into an RGB buffer; the
//! labels are set in `font8x8`'s bitmap glyphs, so no system font is needed; the file is
//! written atomically.

use std::path::Path;

use anyhow::{Context, Result};
use font8x8::UnicodeFonts;
use plotters::prelude::*;

const WIDTH: u32 = 720;
const HEIGHT: u32 = 480;
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// One line: a name for the legend, points `(x, y)` and an optional error `±e` per point.
pub struct Series {
    /// The legend entry.
    pub name: String,
    /// The points, in x order.
    pub points: Vec<(f64, f64)>,
    /// A symmetric error bar per point (same length as `points`), if any.
    pub errors: Option<Vec<f64>>,
}

/// A chart: title, axis labels, a log-scale x axis or not, y from `y_range`.
pub struct Chart<'a> {
    /// The title.
    pub title: &'a str,
    /// The x-axis label.
    pub x_label: &'a str,
    /// The y-axis label.
    pub y_label: &'a str,
    /// Logarithmic x axis (base 10).
    pub log_x: bool,
    /// The y range.
    pub y_range: (f64, f64),
}

/// Draws `text` at pixel `(x, y)` (top left) in 8×8 glyphs scaled by `scale`.
fn text(buf: &mut [u8], x: i32, y: i32, s: &str, scale: i32, colour: [u8; 3]) {
    for (i, ch) in s.chars().enumerate() {
        let Some(glyph) = font8x8::BASIC_FONTS.get(ch) else { continue };
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let px = x + (i as i32 * 8 + col) * scale + dx;
                        let py = y + row as i32 * scale + dy;
                        if (0..WIDTH as i32).contains(&px) && (0..HEIGHT as i32).contains(&py) {
                            let o = 3 * (py as usize * WIDTH as usize + px as usize);
                            buf[o..o + 3].copy_from_slice(&colour);
                        }
                    }
                }
            }
        }
    }
}

/// Draws `series` on `chart` and writes the PNG to `path` (temporary file, then rename).
pub fn line_chart(path: &Path, chart: &Chart<'_>, series: &[Series]) -> Result<()> {
    let xs: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).collect();
    let (mut x0, mut x1) =
        xs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    if !x0.is_finite() || !x1.is_finite() {
        anyhow::bail!("nothing to plot in {}", path.display());
    }
    let tx = |x: f64| if chart.log_x { x.max(1e-9).log10() } else { x };
    (x0, x1) = (tx(x0), tx(x1));
    let pad = ((x1 - x0) * 0.05).max(0.05);
    let (x0, x1) = (x0 - pad, x1 + pad);
    let (y0, y1) = chart.y_range;
    let mut buf = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    let (left, top, right, bottom) = (70i32, 40i32, 20i32, 60i32);
    let mut pixel = Vec::new();
    {
        let root = BitMapBackend::with_buffer(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        let area = root.margin(top as u32, bottom as u32, left as u32, right as u32);
        let mut ctx = ChartBuilder::on(&area).build_cartesian_2d(x0..x1, y0..y1).context("chart layout")?;
        let grid = RGBColor(225, 225, 225);
        // Grid lines at the y ticks and at the x points.
        for k in 0..=5 {
            let y = y0 + (y1 - y0) * k as f64 / 5.0;
            ctx.draw_series(LineSeries::new([(x0, y), (x1, y)], grid)).context("grid")?;
        }
        let mut ticks: Vec<f64> = xs.clone();
        ticks.sort_by(f64::total_cmp);
        ticks.dedup();
        for &x in &ticks {
            ctx.draw_series(LineSeries::new([(tx(x), y0), (tx(x), y1)], grid)).context("grid")?;
        }
        ctx.draw_series(LineSeries::new([(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)], BLACK))
            .context("frame")?;
        for (i, s) in series.iter().enumerate() {
            let c = COLOURS[i % COLOURS.len()];
            let pts: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (tx(x), y)).collect();
            ctx.draw_series(LineSeries::new(pts.clone(), c.stroke_width(2))).context("line")?;
            ctx.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled()))).context("points")?;
            if let Some(errors) = &s.errors {
                for (&(x, y), &e) in pts.iter().zip(errors) {
                    ctx.draw_series(LineSeries::new([(x, y - e), (x, y + e)], c)).context("error bar")?;
                }
            }
        }
        for &x in &ticks {
            pixel.push((x, ctx.backend_coord(&(tx(x), y0))));
        }
        for k in 0..=5 {
            let y = y0 + (y1 - y0) * k as f64 / 5.0;
            pixel.push((y, ctx.backend_coord(&(x0, y))));
        }
        root.present().context("drawing the chart")?;
    }
    let n_x = pixel.len() - 6;
    for (x, (px, py)) in &pixel[..n_x] {
        let label = if x.fract() == 0.0 { format!("{x:.0}") } else { format!("{x}") };
        text(&mut buf, px - 4 * label.len() as i32, py + 6, &label, 1, [0, 0, 0]);
    }
    for (y, (px, py)) in &pixel[n_x..] {
        let label = format!("{y:.2}");
        text(&mut buf, px - 8 * label.len() as i32 - 6, py - 4, &label, 1, [0, 0, 0]);
    }
    text(&mut buf, left, 12, chart.title, 2, [0, 0, 0]);
    let xl = chart.x_label;
    text(
        &mut buf,
        left + (WIDTH as i32 - left - right) / 2 - 4 * xl.len() as i32,
        HEIGHT as i32 - 22,
        xl,
        1,
        [0, 0, 0],
    );
    text(&mut buf, 4, top - 14, chart.y_label, 1, [0, 0, 0]);
    for (i, s) in series.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        let (lx, ly) = (left + 12, top + 12 + 14 * i as i32);
        for dx in 0..16 {
            for dy in 3..5 {
                let o = 3 * ((ly + dy) as usize * WIDTH as usize + (lx + dx) as usize);
                buf[o..o + 3].copy_from_slice(&[c.0, c.1, c.2]);
            }
        }
        text(&mut buf, lx + 22, ly, &s.name, 1, [0, 0, 0]);
    }
    let img = image::RgbImage::from_raw(WIDTH, HEIGHT, buf).context("chart buffer")?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).context("chart path needs a file name")?;
    let tmp = dir.join(format!(".{name}.tmp.png"));
    img.save(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_lines_labels_and_legend_into_a_png() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.png");
        let series = vec![
            Series {
                name: "pretrained".into(),
                points: vec![(1.0, 0.4), (10.0, 0.7), (100.0, 0.9)],
                errors: Some(vec![0.05, 0.02, 0.0]),
            },
            Series {
                name: "random_init".into(),
                points: vec![(1.0, 0.2), (10.0, 0.3), (100.0, 0.5)],
                errors: None,
            },
        ];
        let chart = Chart {
            title: "label efficiency",
            x_label: "labels per class",
            y_label: "accuracy",
            log_x: true,
            y_range: (0.0, 1.0),
        };
        line_chart(&path, &chart, &series).expect("chart");
        if let Ok(keep) = std::env::var("SSL_KEEP_PLOT") {
            std::fs::copy(&path, keep).expect("copy");
        }
        let img = image::open(&path).expect("png").to_rgb8();
        assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
        let has = |c: RGBColor| img.pixels().any(|p| p.0 == [c.0, c.1, c.2]);
        assert!(has(COLOURS[0]) && has(COLOURS[1]), "both lines are drawn");
        assert!(img.pixels().filter(|p| p.0 == [0, 0, 0]).count() > 500, "frame and text are drawn");
        assert!(!dir.path().join(".c.png.tmp.png").exists());
        let e = line_chart(&path, &chart, &[]).unwrap_err().to_string();
        assert!(e.contains("nothing to plot"), "{e}");
    }
}
