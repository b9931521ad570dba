//! # ssl-plot
//!
//! PNG charts for ssl-rs runs and benchmarks: [`line_chart`] (one chart), [`stacked_line_charts`]
//! (several charts one above the other in one image: loss and learning rate), and
//! [`bar_chart`] (labelled horizontal bars: samples per second by method). `plotters` draws
//! axes, grid, lines and bars into an RGB buffer; labels are set in `font8x8`'s bitmap glyphs,
//! so no system font is needed; files are written atomically (a temporary file renamed into
//! place). No libtorch: `xtask` uses it on machines that have none.
//!
//! ```
//! use ssl_plot::{line_chart, Chart, Series};
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("curve.png");
//! let series = [Series::new("pretrained", vec![(1.0, 0.4), (10.0, 0.7)]).with_errors(vec![0.05, 0.02])];
//! let chart = Chart { log_x: true, y_range: Some((0.0, 1.0)), ..Chart::new("label efficiency", "labels per class", "accuracy") };
//! line_chart(&path, &chart, &series)?;
//! assert!(path.exists());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

use font8x8::UnicodeFonts;
use plotters::prelude::*;

/// Width of every chart, in pixels.
pub const WIDTH: u32 = 720;
/// Height of one chart, in pixels (stacked charts are this tall each).
pub const HEIGHT: u32 = 480;

/// The line colours, in series order (matplotlib's first six).
pub const COLOURS: [[u8; 3]; 6] =
    [[31, 119, 180], [214, 39, 40], [44, 160, 44], [148, 103, 189], [255, 127, 14], [23, 190, 207]];

/// Why a chart was not written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// No finite point to draw.
    #[error("nothing to plot in {0}")]
    Empty(PathBuf),
    /// The chart could not be laid out or drawn.
    #[error("cannot draw {path}: {message}")]
    Draw {
        /// The chart's file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The PNG could not be written.
    #[error("cannot write {path}: {message}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Charts' results.
pub type Result<T> = std::result::Result<T, PlotError>;

/// One line: a legend entry, points `(x, y)` in x order, and optional symmetric error bars.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend entry.
    pub name: String,
    /// The points, in x order.
    pub points: Vec<(f64, f64)>,
    /// A symmetric error `±e` per point (same length as `points`), if any.
    pub errors: Option<Vec<f64>>,
}

impl Series {
    /// A line without error bars.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self { name: name.into(), points, errors: None }
    }

    /// The same line with an error bar per point.
    pub fn with_errors(mut self, errors: Vec<f64>) -> Self {
        self.errors = Some(errors);
        self
    }
}

/// A chart's title, axis labels and scales.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart<'a> {
    /// The title.
    pub title: &'a str,
    /// The x-axis label.
    pub x_label: &'a str,
    /// The y-axis label.
    pub y_label: &'a str,
    /// Logarithmic x axis (base 10).
    pub log_x: bool,
    /// Logarithmic y axis (base 10; for losses over orders of magnitude).
    pub log_y: bool,
    /// The y range; `None` fits the data with a margin.
    pub y_range: Option<(f64, f64)>,
}

impl<'a> Chart<'a> {
    /// A chart with linear axes and a y range fitted to the data.
    pub fn new(title: &'a str, x_label: &'a str, y_label: &'a str) -> Self {
        Self { title, x_label, y_label, log_x: false, log_y: false, y_range: None }
    }
}

/// Draws `text` at pixel `(x, y)` (top left) in 8×8 glyphs scaled by `scale`.
fn text(img: &mut image::RgbImage, x: i32, y: i32, s: &str, scale: i32, colour: [u8; 3]) {
    let (w, h) = (img.width() as i32, img.height() as i32);
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
                        if (0..w).contains(&px) && (0..h).contains(&py) {
                            img.put_pixel(px as u32, py as u32, image::Rgb(colour));
                        }
                    }
                }
            }
        }
    }
}

/// A number as a short axis label.
fn tick_label(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if !(1e-2..1e5).contains(&a) {
        format!("{v:.2e}")
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn draw_err(path: &Path, e: impl std::fmt::Display) -> PlotError {
    PlotError::Draw { path: path.to_path_buf(), message: e.to_string() }
}

/// Renders one line chart into a [`WIDTH`] × [`HEIGHT`] image.
fn render(path: &Path, chart: &Chart<'_>, series: &[Series]) -> Result<image::RgbImage> {
    let tx = |x: f64| if chart.log_x { x.max(1e-12).log10() } else { x };
    let ty = |y: f64| if chart.log_y { y.max(1e-12).log10() } else { y };
    let finite = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite();
    let pts: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().copied().filter(finite)).collect();
    if pts.is_empty() {
        return Err(PlotError::Empty(path.to_path_buf()));
    }
    let span = |vals: &mut dyn Iterator<Item = f64>| {
        vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)))
    };
    let (x0, x1) = span(&mut pts.iter().map(|p| tx(p.0)));
    let pad = ((x1 - x0) * 0.05).max(0.05);
    let (x0, x1) = (x0 - pad, x1 + pad);
    let (y0, y1) = match chart.y_range {
        Some((a, b)) => (ty(a), ty(b)),
        None => {
            let (a, b) = span(&mut pts.iter().map(|p| ty(p.1)));
            // A constant series (a fixed learning rate) still gets distinct ticks.
            let pad = if b > a { (b - a) * 0.08 } else { (a.abs() * 0.1).max(1e-12) };
            // Data that is never negative (rates, losses) gets no negative axis.
            let low = if !chart.log_y && a >= 0.0 { (a - pad).max(0.0) } else { a - pad };
            (low, b + pad)
        }
    };
    // x ticks at the points when there are few (budgets), else six evenly spaced (steps).
    let mut xs: Vec<f64> = pts.iter().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let x_ticks: Vec<f64> = if xs.len() <= 12 {
        xs
    } else {
        let (a, b) = (xs[0], xs[xs.len() - 1]);
        (0..=5).map(|k| a + (b - a) * k as f64 / 5.0).collect()
    };
    let y_ticks: Vec<f64> = (0..=5).map(|k| y0 + (y1 - y0) * k as f64 / 5.0).collect();

    let mut buf = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    let (left, top, right, bottom) = (70i32, 40i32, 20i32, 60i32);
    let mut x_px = Vec::new();
    let mut y_px = Vec::new();
    {
        let root = BitMapBackend::with_buffer(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        let area = root.margin(top as u32, bottom as u32, left as u32, right as u32);
        let mut ctx =
            ChartBuilder::on(&area).build_cartesian_2d(x0..x1, y0..y1).map_err(|e| draw_err(path, e))?;
        let grid = RGBColor(225, 225, 225);
        for &y in &y_ticks {
            ctx.draw_series(LineSeries::new([(x0, y), (x1, y)], grid)).map_err(|e| draw_err(path, e))?;
        }
        for &x in &x_ticks {
            ctx.draw_series(LineSeries::new([(tx(x), y0), (tx(x), y1)], grid))
                .map_err(|e| draw_err(path, e))?;
        }
        ctx.draw_series(LineSeries::new([(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)], BLACK))
            .map_err(|e| draw_err(path, e))?;
        for (i, s) in series.iter().enumerate() {
            let [r, g, b] = COLOURS[i % COLOURS.len()];
            let c = RGBColor(r, g, b);
            let line: Vec<(f64, f64)> =
                s.points.iter().copied().filter(finite).map(|(x, y)| (tx(x), ty(y))).collect();
            ctx.draw_series(LineSeries::new(line.clone(), c.stroke_width(2)))
                .map_err(|e| draw_err(path, e))?;
            if line.len() <= 50 {
                ctx.draw_series(line.iter().map(|&p| Circle::new(p, 3, c.filled())))
                    .map_err(|e| draw_err(path, e))?;
            }
            if let Some(errors) = &s.errors {
                for (&(x, y), &e) in s.points.iter().zip(errors) {
                    let bar = [(tx(x), ty(y - e)), (tx(x), ty(y + e))];
                    ctx.draw_series(LineSeries::new(bar, c)).map_err(|e| draw_err(path, e))?;
                }
            }
        }
        x_px.extend(x_ticks.iter().map(|&x| (x, ctx.backend_coord(&(tx(x), y0)))));
        y_px.extend(y_ticks.iter().map(|&y| (y, ctx.backend_coord(&(x0, y)))));
        root.present().map_err(|e| draw_err(path, e))?;
    }
    let mut img =
        image::RgbImage::from_raw(WIDTH, HEIGHT, buf).ok_or_else(|| draw_err(path, "chart buffer"))?;
    for (x, (px, py)) in &x_px {
        let label = tick_label(*x);
        text(&mut img, px - 4 * label.len() as i32, py + 6, &label, 1, [0, 0, 0]);
    }
    for (y, (px, py)) in &y_px {
        let label = tick_label(if chart.log_y { 10f64.powf(*y) } else { *y });
        text(&mut img, px - 8 * label.len() as i32 - 6, py - 4, &label, 1, [0, 0, 0]);
    }
    text(&mut img, left, 8, chart.title, 2, [0, 0, 0]);
    let xl = chart.x_label;
    let xl_x = left + (WIDTH as i32 - left - right) / 2 - 4 * xl.len() as i32;
    text(&mut img, xl_x, HEIGHT as i32 - 22, xl, 1, [0, 0, 0]);
    text(&mut img, 4, top - 10, chart.y_label, 1, [0, 0, 0]);
    // Legend rows that would leave the plot area are not drawn.
    let rows = ((HEIGHT as i32 - top - bottom - 24) / 14).max(0) as usize;
    for (i, s) in series.iter().enumerate().take(rows) {
        let colour = COLOURS[i % COLOURS.len()];
        let (lx, ly) = (left + 12, top + 12 + 14 * i as i32);
        for dx in 0..16 {
            for dy in 3..5 {
                img.put_pixel((lx + dx) as u32, (ly + dy) as u32, image::Rgb(colour));
            }
        }
        text(&mut img, lx + 22, ly, &s.name, 1, [0, 0, 0]);
    }
    Ok(img)
}

/// Writes `img` to `path` through a temporary file in the same folder.
fn save(path: &Path, img: &image::RgbImage) -> Result<()> {
    let write_err = |p: &Path, e: &dyn std::fmt::Display| PlotError::Write {
        path: p.to_path_buf(),
        message: e.to_string(),
    };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| write_err(path, &"no file name"))?;
    let tmp = dir.join(format!(".{name}.tmp.png"));
    img.save_with_format(&tmp, image::ImageFormat::Png).map_err(|e| write_err(&tmp, &e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        write_err(path, &e)
    })
}

/// Draws `series` on `chart` and writes the PNG ([`WIDTH`] × [`HEIGHT`]) to `path`.
/// Non-finite points are skipped; a chart with none left is [`PlotError::Empty`].
pub fn line_chart(path: &Path, chart: &Chart<'_>, series: &[Series]) -> Result<()> {
    save(path, &render(path, chart, series)?)
}

/// Draws several line charts one above the other into one PNG ([`WIDTH`] × `n` [`HEIGHT`]).
///
/// ```
/// use ssl_plot::{stacked_line_charts, Chart, Series};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("training.png");
/// let loss = [Series::new("loss", (1..=100).map(|s| (s as f64, 1.0 / s as f64)).collect())];
/// let lr = [Series::new("lr", (1..=100).map(|s| (s as f64, 0.1)).collect())];
/// let loss_chart = Chart { log_y: true, ..Chart::new("loss", "step", "loss") };
/// stacked_line_charts(&path, &[(loss_chart, &loss[..]), (Chart::new("learning rate", "step", "lr"), &lr[..])])?;
/// assert_eq!(image::open(&path)?.height(), 2 * ssl_plot::HEIGHT);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn stacked_line_charts(path: &Path, charts: &[(Chart<'_>, &[Series])]) -> Result<()> {
    let mut all = image::RgbImage::new(WIDTH, HEIGHT * charts.len().max(1) as u32);
    if charts.is_empty() {
        return Err(PlotError::Empty(path.to_path_buf()));
    }
    for (i, (chart, series)) in charts.iter().enumerate() {
        let img = render(path, chart, series)?;
        image::imageops::replace(&mut all, &img, 0, i as i64 * HEIGHT as i64);
    }
    save(path, &all)
}

/// Draws labelled horizontal bars (`(label, value)`, top to bottom) with their values printed
/// beside them, on an x axis from 0 to the largest value; writes a PNG [`WIDTH`] wide.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("throughput.png");
/// let bars = [("simclr".to_string(), 410.0), ("mae".to_string(), 950.0)];
/// ssl_plot::bar_chart(&path, "throughput (cpu)", "samples / s", &bars)?;
/// assert!(path.exists());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn bar_chart(path: &Path, title: &str, x_label: &str, bars: &[(String, f64)]) -> Result<()> {
    let bars: Vec<&(String, f64)> = bars.iter().filter(|b| b.1.is_finite() && b.1 >= 0.0).collect();
    if bars.is_empty() {
        return Err(PlotError::Empty(path.to_path_buf()));
    }
    let (row, top, bottom) = (22u32, 44u32, 40u32);
    let height = top + bottom + row * bars.len() as u32;
    // Labels take at most half the width (longer ones are cut by the text clipping).
    let label_w =
        (8 * bars.iter().map(|b| b.0.chars().count()).max().unwrap_or(0) as u32 + 16).min(WIDTH / 2);
    let max = bars.iter().map(|b| b.1).fold(0.0f64, f64::max).max(f64::MIN_POSITIVE);
    let (x_left, x_right) = (label_w, WIDTH - 90);
    let mut img = image::RgbImage::from_pixel(WIDTH, height, image::Rgb([255, 255, 255]));
    text(&mut img, 8, 12, title, 2, [0, 0, 0]);
    for (i, (name, value)) in bars.iter().enumerate() {
        let y = top + row * i as u32;
        text(&mut img, 8, y as i32 + 6, name, 1, [0, 0, 0]);
        let len = ((x_right - x_left) as f64 * value / max).round() as u32;
        let colour = COLOURS[i % COLOURS.len()];
        for px in x_left..x_left + len {
            for py in y + 3..y + row - 3 {
                img.put_pixel(px, py, image::Rgb(colour));
            }
        }
        text(&mut img, (x_left + len + 6) as i32, y as i32 + 6, &tick_label(*value), 1, [0, 0, 0]);
    }
    for py in top..top + row * bars.len() as u32 {
        img.put_pixel(x_left, py, image::Rgb([0, 0, 0]));
    }
    let xl_x = (x_left + (x_right - x_left) / 2) as i32 - 4 * x_label.len() as i32;
    text(&mut img, xl_x, (height - bottom + 14) as i32, x_label, 1, [0, 0, 0]);
    save(path, &img)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(img: &image::RgbImage, c: [u8; 3]) -> bool {
        img.pixels().any(|p| p.0 == c)
    }

    #[test]
    fn draws_lines_labels_and_legend_into_a_png() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.png");
        let series = vec![
            Series::new("pretrained", vec![(1.0, 0.4), (10.0, 0.7), (100.0, 0.9)])
                .with_errors(vec![0.05, 0.02, 0.0]),
            Series::new("random_init", vec![(1.0, 0.2), (10.0, 0.3), (100.0, 0.5)]),
        ];
        let chart = Chart {
            log_x: true,
            y_range: Some((0.0, 1.0)),
            ..Chart::new("label efficiency", "labels", "acc")
        };
        line_chart(&path, &chart, &series).expect("chart");
        if let Ok(keep) = std::env::var("SSL_KEEP_PLOT") {
            std::fs::copy(&path, keep).expect("copy");
        }
        let img = image::open(&path).expect("png").to_rgb8();
        assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
        assert!(has(&img, COLOURS[0]) && has(&img, COLOURS[1]), "both lines are drawn");
        assert!(img.pixels().filter(|p| p.0 == [0, 0, 0]).count() > 500, "frame and text are drawn");
        assert!(!dir.path().join(".c.png.tmp.png").exists());
        let e = line_chart(&path, &chart, &[]).unwrap_err().to_string();
        assert!(e.contains("nothing to plot"), "{e}");
        let nan = [Series::new("x", vec![(1.0, f64::NAN)])];
        assert!(matches!(line_chart(&path, &chart, &nan), Err(PlotError::Empty(_))));
    }

    #[test]
    fn long_series_fit_their_range_and_stack() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.png");
        let loss: Vec<(f64, f64)> =
            (1..=500).map(|s| (s as f64, 5.0 * (-(s as f64) / 100.0).exp())).collect();
        let lr: Vec<(f64, f64)> = (1..=500).map(|s| (s as f64, 1e-3 * (s as f64 / 500.0))).collect();
        let (a, b) = ([Series::new("loss", loss)], [Series::new("lr", lr)]);
        let charts = [
            (Chart { log_y: true, ..Chart::new("loss", "step", "loss") }, &a[..]),
            (Chart::new("lr", "step", "lr"), &b[..]),
        ];
        stacked_line_charts(&path, &charts).expect("chart");
        let img = image::open(&path).expect("png").to_rgb8();
        assert_eq!(img.dimensions(), (WIDTH, 2 * HEIGHT));
        let top = image::imageops::crop_imm(&img, 0, 0, WIDTH, HEIGHT).to_image();
        let bottom = image::imageops::crop_imm(&img, 0, HEIGHT, WIDTH, HEIGHT).to_image();
        assert!(has(&top, COLOURS[0]) && has(&bottom, COLOURS[0]), "each panel draws its line");
    }

    #[test]
    fn bars_scale_with_their_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b.png");
        let bars = [("a".to_string(), 100.0), ("b".to_string(), 50.0)];
        bar_chart(&path, "t", "samples/s", &bars).expect("chart");
        let img = image::open(&path).expect("png").to_rgb8();
        let width_of = |c: [u8; 3]| {
            img.enumerate_pixels()
                .filter(|(_, _, p)| p.0 == c)
                .map(|(x, _, _)| x)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        };
        let (wa, wb) = (width_of(COLOURS[0]), width_of(COLOURS[1]));
        assert!((wa as f64 / wb as f64 - 2.0).abs() < 0.05, "{wa} vs {wb}");
        assert!(matches!(bar_chart(&path, "t", "x", &[]), Err(PlotError::Empty(_))));
    }

    #[test]
    fn edge_cases_draw_without_panicking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("e.png");
        // A single point, a constant series, and more series than legend rows.
        line_chart(&path, &Chart::new("t", "x", "y"), &[Series::new("one", vec![(1.0, 2.0)])])
            .expect("single");
        let flat = [Series::new("lr", (0..50).map(|i| (i as f64, 0.1)).collect())];
        line_chart(&path, &Chart::new("t", "x", "y"), &flat).expect("constant");
        let many: Vec<Series> =
            (0..60).map(|i| Series::new(format!("s{i}"), vec![(0.0, i as f64), (1.0, i as f64)])).collect();
        line_chart(&path, &Chart::new("t", "x", "y"), &many).expect("many series");
        // A label far wider than the chart, and all-zero bars.
        bar_chart(&path, "t", "x", &[("x".repeat(500), 3.0), ("b".into(), 0.0)]).expect("long label");
        bar_chart(&path, "t", "x", &[("a".into(), 0.0)]).expect("zero");
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick_label(0.0), "0");
        assert_eq!(tick_label(500.0), "500");
        assert_eq!(tick_label(0.25), "0.25");
        assert_eq!(tick_label(2e-4), "2.00e-4");
        assert_eq!(tick_label(0.0015), "1.50e-3");
        assert_eq!(tick_label(4.5), "4.5");
        assert_eq!(tick_label(12.34), "12.3");
    }
}
