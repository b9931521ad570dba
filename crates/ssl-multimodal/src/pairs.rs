//! Paired image-text data from a manifest: CSV/TSV (open_clip's `CsvDataset`: a header row,
//! an image column and a caption column) or JSONL (one object per line).
//!
//! Image paths are relative to the manifest's folder (absolute paths are kept). Every image's
//! header is read when the manifest is opened, so a missing, empty or corrupt image is found
//! before training starts; with [`ManifestOptions::skip_bad`] such pairs (and pairs with an
//! empty caption) are skipped and counted instead, each with its reason.
//!
//! ```
//! use ssl_multimodal::pairs::{ManifestOptions, PairFiles};
//! let dir = tempfile::tempdir()?;
//! image::RgbImage::new(8, 8).save(dir.path().join("a.png"))?;
//! std::fs::write(dir.path().join("pairs.csv"), "filepath,title\na.png,a black square\n")?;
//! let pairs = PairFiles::open(&dir.path().join("pairs.csv"), &ManifestOptions::default())?;
//! assert_eq!(pairs.captions(), ["a black square"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use ssl_core::data::Dataset;
use ssl_core::{Error, Result};
use ssl_vision::augment::Image;
use ssl_vision::data::{check_header, decode};

/// How a manifest is read.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManifestOptions {
    /// The image column or key (default: `filepath` in CSV/TSV, as open_clip; `image` in JSONL).
    pub image_key: Option<String>,
    /// The caption column or key (default: `title` in CSV/TSV, as open_clip; `caption` in JSONL).
    pub caption_key: Option<String>,
    /// Skip pairs whose image is missing or unreadable or whose caption is empty, counting
    /// them, instead of stopping at the first.
    pub skip_bad: bool,
}

/// A pair left out by [`ManifestOptions::skip_bad`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedPair {
    /// The manifest line (1-based).
    pub line: usize,
    /// Why.
    pub reason: String,
}

/// The manifest formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv(u8),
    Jsonl,
}

fn format_of(path: &Path) -> Result<Format> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "csv" => Ok(Format::Csv(b',')),
        "tsv" => Ok(Format::Csv(b'\t')),
        "jsonl" | "json" => Ok(Format::Jsonl),
        _ => Err(Error::data(
            path.display().to_string(),
            "unknown manifest format: use a .csv, .tsv or .jsonl file",
        )),
    }
}

/// Image-caption pairs listed by a manifest.
#[derive(Debug, Clone)]
pub struct PairFiles {
    manifest: PathBuf,
    pairs: Vec<(PathBuf, String)>,
    skipped: Vec<SkippedPair>,
}

impl PairFiles {
    /// Reads the manifest at `path` and checks every pair (see the module docs).
    pub fn open(path: &Path, options: &ManifestOptions) -> Result<Self> {
        let format = format_of(path)?;
        let where_ = |line: usize| format!("{}:{line}", path.display());
        let text = std::fs::read(path).map_err(|e| Error::data(path.display().to_string(), e.to_string()))?;
        let rows: Vec<(usize, String, String)> = match format {
            Format::Csv(sep) => {
                let (ik, ck) = (
                    options.image_key.as_deref().unwrap_or("filepath"),
                    options.caption_key.as_deref().unwrap_or("title"),
                );
                let mut reader = csv::ReaderBuilder::new().delimiter(sep).from_reader(text.as_slice());
                let header = reader.headers().map_err(|e| Error::data(where_(1), e.to_string()))?.clone();
                let col = |key: &str| {
                    header.iter().position(|h| h == key).ok_or_else(|| {
                        let cols: Vec<&str> = header.iter().collect();
                        Error::data(
                            where_(1),
                            format!("no `{key}` column (the header has: {})", cols.join(", ")),
                        )
                    })
                };
                let (ic, cc) = (col(ik)?, col(ck)?);
                let mut rows = Vec::new();
                for record in reader.records() {
                    let record = record.map_err(|e| {
                        let line = e.position().map_or(0, |p| p.line() as usize);
                        Error::data(where_(line), e.to_string())
                    })?;
                    let line = record.position().map_or(0, |p| p.line() as usize);
                    let field = |i: usize| record.get(i).unwrap_or("").to_string();
                    rows.push((line, field(ic), field(cc)));
                }
                rows
            }
            Format::Jsonl => {
                let (ik, ck) = (
                    options.image_key.as_deref().unwrap_or("image"),
                    options.caption_key.as_deref().unwrap_or("caption"),
                );
                let text = String::from_utf8(text)
                    .map_err(|e| Error::data(path.display().to_string(), format!("not UTF-8: {e}")))?;
                let mut rows = Vec::new();
                for (i, line) in text.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let value: serde_json::Value =
                        serde_json::from_str(line).map_err(|e| Error::data(where_(i + 1), e.to_string()))?;
                    let get = |key: &str| -> Result<String> {
                        match value.get(key) {
                            Some(serde_json::Value::String(s)) => Ok(s.clone()),
                            Some(other) => Err(Error::data(
                                where_(i + 1),
                                format!("`{key}` must be a string, got {other}"),
                            )),
                            None => Err(Error::data(where_(i + 1), format!("missing field `{key}`"))),
                        }
                    };
                    rows.push((i + 1, get(ik)?, get(ck)?));
                }
                rows
            }
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let mut pairs = Vec::with_capacity(rows.len());
        let mut skipped = Vec::new();
        for (line, image, caption) in rows {
            let image_path = base.join(&image);
            let problem = if caption.trim().is_empty() {
                Some("empty caption".to_string())
            } else if image.trim().is_empty() {
                Some("empty image path".to_string())
            } else if !image_path.is_file() {
                Some(format!("image {} does not exist", image_path.display()))
            } else {
                check_header(&image_path, None).err().map(|e| e.to_string())
            };
            match problem {
                None => pairs.push((image_path, caption)),
                Some(reason) if options.skip_bad => skipped.push(SkippedPair { line, reason }),
                Some(reason) => {
                    return Err(Error::data(
                        where_(line),
                        format!("{reason} (set data.manifest.skip_bad = true to skip such pairs)"),
                    ))
                }
            }
        }
        if pairs.is_empty() {
            let why = if skipped.is_empty() { "no pairs" } else { "no usable pairs (all were skipped)" };
            return Err(Error::data(path.display().to_string(), why));
        }
        Ok(Self { manifest: path.to_path_buf(), pairs, skipped })
    }

    /// The manifest read.
    pub fn manifest(&self) -> &Path {
        &self.manifest
    }

    /// The pairs: image path and caption.
    pub fn pairs(&self) -> &[(PathBuf, String)] {
        &self.pairs
    }

    /// The captions, in order.
    pub fn captions(&self) -> Vec<&str> {
        self.pairs.iter().map(|p| p.1.as_str()).collect()
    }

    /// The pairs left out, with their reasons.
    pub fn skipped(&self) -> &[SkippedPair] {
        &self.skipped
    }
}

impl Dataset for PairFiles {
    /// The decoded image and its caption.
    type Item = (Image, String);

    fn len(&self) -> usize {
        self.pairs.len()
    }

    fn get(&self, index: usize) -> Result<(Image, String)> {
        let (path, caption) = self.pairs.get(index).ok_or_else(|| {
            Error::data(self.manifest.display().to_string(), format!("index {index} out of range"))
        })?;
        Ok((decode(path, None)?, caption.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(6, 6, image::Rgb([200, 10, 10])).save(path).unwrap();
    }

    #[test]
    fn csv_tsv_and_jsonl_manifests_with_relative_paths() {
        let d = tempfile::tempdir().unwrap();
        png(&d.path().join("img/a.png"));
        png(&d.path().join("img/b.png"));
        std::fs::write(
            d.path().join("p.csv"),
            "title,filepath\n\"a red, square\",img/a.png\nred,img/b.png\n",
        )
        .unwrap();
        std::fs::write(d.path().join("p.tsv"), "filepath\ttitle\nimg/a.png\ta red square\n").unwrap();
        std::fs::write(
            d.path().join("p.jsonl"),
            "{\"image\": \"img/a.png\", \"caption\": \"one\"}\n\n{\"image\": \"img/b.png\", \"caption\": \"two\"}\n",
        )
        .unwrap();
        let opts = ManifestOptions::default();
        let csv = PairFiles::open(&d.path().join("p.csv"), &opts).unwrap();
        assert_eq!(csv.captions(), ["a red, square", "red"]);
        assert_eq!(csv.pairs()[1].0, d.path().join("img/b.png"));
        let (img, caption) = csv.get(0).unwrap();
        assert_eq!((img.dimensions(), caption.as_str()), ((6, 6), "a red, square"));
        assert_eq!(PairFiles::open(&d.path().join("p.tsv"), &opts).unwrap().len(), 1);
        assert_eq!(PairFiles::open(&d.path().join("p.jsonl"), &opts).unwrap().captions(), ["one", "two"]);
        // Other column names.
        std::fs::write(d.path().join("q.csv"), "path,text\nimg/a.png,hello\n").unwrap();
        let keys = ManifestOptions {
            image_key: Some("path".into()),
            caption_key: Some("text".into()),
            ..Default::default()
        };
        assert_eq!(PairFiles::open(&d.path().join("q.csv"), &keys).unwrap().captions(), ["hello"]);
    }

    #[test]
    fn bad_pairs_are_named_or_skipped_and_counted() {
        let d = tempfile::tempdir().unwrap();
        png(&d.path().join("ok.png"));
        std::fs::write(d.path().join("corrupt.png"), b"\x89PNG\r\n\x1a\nnope").unwrap();
        std::fs::write(
            d.path().join("p.csv"),
            "filepath,title\nok.png,fine\nmissing.png,gone\nok.png,  \ncorrupt.png,broken\n",
        )
        .unwrap();
        let path = d.path().join("p.csv");
        let e = PairFiles::open(&path, &ManifestOptions::default()).unwrap_err().to_string();
        assert!(e.contains("p.csv:3") && e.contains("missing.png") && e.contains("skip_bad"), "{e}");
        let skip = PairFiles::open(&path, &ManifestOptions { skip_bad: true, ..Default::default() }).unwrap();
        assert_eq!(skip.len(), 1);
        let lines: Vec<usize> = skip.skipped().iter().map(|s| s.line).collect();
        assert_eq!(lines, [3, 4, 5]);
        assert!(skip.skipped()[1].reason.contains("empty caption"));
        assert!(skip.skipped()[2].reason.contains("corrupt.png"), "{:?}", skip.skipped());
    }

    #[test]
    fn malformed_manifests_are_errors_naming_the_place() {
        let d = tempfile::tempdir().unwrap();
        png(&d.path().join("ok.png"));
        let cases: [(&str, &str, &str); 6] = [
            ("a.csv", "image,caption\nok.png,x\n", "no `filepath` column"),
            ("b.jsonl", "{\"image\": \"ok.png\"}\n", "b.jsonl:1: missing field `caption`"),
            ("c.jsonl", "{\"image\": \"ok.png\", \"caption\": \"x\"}\nnot json\n", "c.jsonl:2"),
            ("d.jsonl", "{\"image\": 3, \"caption\": \"x\"}\n", "`image` must be a string"),
            ("e.txt", "whatever", "unknown manifest format"),
            ("f.csv", "filepath,title\n", "no pairs"),
        ];
        for (name, body, needle) in cases {
            std::fs::write(d.path().join(name), body).unwrap();
            let e =
                PairFiles::open(&d.path().join(name), &ManifestOptions::default()).unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains(name), "{name}: {e}");
        }
        let e = PairFiles::open(&d.path().join("absent.csv"), &ManifestOptions::default()).unwrap_err();
        assert!(e.to_string().contains("absent.csv"), "{e}");
    }
}
