//! Image datasets read from folders: an unlabelled folder (searched recursively) for pretraining,
//! and the ImageFolder layout (one sub-folder per class) for labelled probe and fine-tune sets.
//!
//! PNG and JPEG files are decoded with the `image` crate, lazily in [`Dataset::get`] (so the
//! loader decodes in parallel), or all at once in parallel into memory with
//! [`FolderOptions::cache_side`] for small datasets. Every failure names the file: a corrupt or
//! truncated image, a zero-byte file, an image smaller than [`FolderOptions::min_side`], an empty
//! folder. With [`FolderOptions::skip_bad`], unreadable files are found up front, left out and
//! reported instead.

use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};
use rayon::prelude::*;
use ssl_core::data::Dataset;
use ssl_core::{Error, Result};

use crate::augment::Image;

/// File extensions read as images (case-insensitive).
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

/// How a folder is read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FolderOptions {
    /// Images whose shorter side is below this are errors (e.g. smaller than the crop).
    pub min_side: Option<u32>,
    /// Decode every image up front, in parallel, resized so its shorter side is this, and keep
    /// them in memory (for datasets that fit).
    pub cache_side: Option<u32>,
    /// Check every file up front and leave out those that cannot be read, listing them in
    /// [`ImageFiles::skipped`], instead of failing when one is met.
    pub skip_bad: bool,
}

/// A file left out by [`FolderOptions::skip_bad`], with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// Why it was left out.
    pub reason: String,
}

/// Images from a folder, with an optional label each.
#[derive(Debug)]
pub struct ImageFiles {
    root: PathBuf,
    files: Vec<(PathBuf, i64)>,
    classes: Vec<String>,
    cache: Option<Vec<Image>>,
    min_side: Option<u32>,
    skipped: Vec<Skipped>,
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if is_image(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Decodes one file, checking its size; errors name the file.
pub fn decode(path: &Path, min_side: Option<u32>) -> Result<Image> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.is_empty() {
        return Err(Error::data(name, "the file is empty (0 bytes)"));
    }
    let img = image::load_from_memory(&bytes)
        .map_err(|e| Error::data(name.clone(), format!("cannot decode the image: {e}")))?
        .to_rgb32f();
    check_size(name, img.dimensions(), min_side)?;
    Ok(img)
}

/// Errors, naming the file, for an image without pixels or with a side below `min_side`.
fn check_size(name: String, (w, h): (u32, u32), min_side: Option<u32>) -> Result<()> {
    if w == 0 || h == 0 {
        return Err(Error::data(name, "the image has no pixels"));
    }
    match min_side {
        Some(min) if w.min(h) < min => {
            Err(Error::data(name, format!("the image is {w}x{h}, smaller than the required {min} px side")))
        }
        _ => Ok(()),
    }
}

/// Reads only the header of `path`: its format and size, checked as [`decode`] checks them.
/// Catches empty, non-image and header-truncated files without decoding the pixels.
pub fn check_header(path: &Path, min_side: Option<u32>) -> Result<()> {
    let name = path.display().to_string();
    let len = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    if len == 0 {
        return Err(Error::data(name, "the file is empty (0 bytes)"));
    }
    let (w, h) = image::image_dimensions(path)
        .map_err(|e| Error::data(name.clone(), format!("cannot read the image header: {e}")))?;
    check_size(name, (w, h), min_side)
}

/// Resizes so that the shorter side is `side` (aspect ratio kept, bilinear, antialiased).
pub fn resize_shorter_side(img: &Image, side: u32) -> Image {
    let (w, h) = img.dimensions();
    let scale = f64::from(side) / f64::from(w.min(h).max(1));
    let (nw, nh) =
        (((f64::from(w) * scale).round() as u32).max(1), ((f64::from(h) * scale).round() as u32).max(1));
    imageops::resize(img, nw, nh, FilterType::Triangle)
}

impl ImageFiles {
    /// Every image under `dir`, recursively, unlabelled (label -1), in sorted path order.
    pub fn unlabelled(dir: impl AsRef<Path>, options: &FolderOptions) -> Result<Self> {
        let root = dir.as_ref().to_path_buf();
        let mut paths = Vec::new();
        walk(&root, &mut paths)?;
        paths.sort();
        Self::build(root, paths.into_iter().map(|p| (p, -1)).collect(), Vec::new(), options)
    }

    /// The ImageFolder layout: each sub-folder of `dir` is a class (sorted by name, labels
    /// `0..C`), holding that class's images (searched recursively).
    pub fn labelled(dir: impl AsRef<Path>, options: &FolderOptions) -> Result<Self> {
        let root = dir.as_ref().to_path_buf();
        let entries = std::fs::read_dir(&root).map_err(|e| Error::io(&root, e))?;
        let mut classes: Vec<(String, PathBuf)> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .map(|p| (p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), p))
            .collect();
        classes.sort();
        if classes.is_empty() {
            return Err(Error::data(
                root.display().to_string(),
                "no class sub-folders (a labelled set needs one sub-folder of images per class)",
            ));
        }
        let mut files = Vec::new();
        for (label, (name, path)) in classes.iter().enumerate() {
            let mut paths = Vec::new();
            walk(path, &mut paths)?;
            if paths.is_empty() {
                return Err(Error::data(
                    path.display().to_string(),
                    format!("class `{name}` has no PNG or JPEG images"),
                ));
            }
            paths.sort();
            files.extend(paths.into_iter().map(|p| (p, label as i64)));
        }
        Self::build(root, files, classes.into_iter().map(|(n, _)| n).collect(), options)
    }

    fn build(
        root: PathBuf,
        mut files: Vec<(PathBuf, i64)>,
        classes: Vec<String>,
        options: &FolderOptions,
    ) -> Result<Self> {
        let mut skipped = Vec::new();
        let mut cache = None;
        if !options.skip_bad && options.cache_side.is_none() {
            // Pixels are decoded when drawn; the headers are checked now, so that a file that
            // is not an image stops the run before it starts, naming the file.
            files.par_iter().map(|(p, _)| check_header(p, options.min_side)).collect::<Result<()>>()?;
        }
        if options.skip_bad || options.cache_side.is_some() {
            let decoded: Vec<Result<Image>> =
                files.par_iter().map(|(p, _)| decode(p, options.min_side)).collect();
            let mut kept = Vec::with_capacity(files.len());
            let mut images = Vec::with_capacity(files.len());
            for ((path, label), img) in files.into_iter().zip(decoded) {
                match img {
                    Ok(img) => {
                        if options.cache_side.is_some() {
                            images.push(img);
                        }
                        kept.push((path, label));
                    }
                    Err(e) if options.skip_bad => skipped.push(Skipped { path, reason: e.to_string() }),
                    Err(e) => return Err(e),
                }
            }
            files = kept;
            if let Some(side) = options.cache_side {
                cache = Some(images.par_iter().map(|img| resize_shorter_side(img, side)).collect());
            }
        }
        if files.is_empty() {
            let what = if skipped.is_empty() { "no PNG or JPEG images" } else { "no readable images" };
            return Err(Error::data(root.display().to_string(), format!("the folder has {what}")));
        }
        Ok(Self { root, files, classes, cache, min_side: options.min_side, skipped })
    }

    /// The folder read.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Class names in label order (empty for an unlabelled folder).
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The files, with their labels.
    pub fn files(&self) -> &[(PathBuf, i64)] {
        &self.files
    }

    /// Files left out by [`FolderOptions::skip_bad`].
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }
}

impl Dataset for ImageFiles {
    /// The image and its label (-1 when unlabelled).
    type Item = (Image, i64);

    fn len(&self) -> usize {
        self.files.len()
    }

    fn get(&self, index: usize) -> Result<(Image, i64)> {
        let (path, label) = self.files.get(index).ok_or_else(|| {
            Error::data(self.root.display().to_string(), format!("index {index} out of range"))
        })?;
        let img = match &self.cache {
            Some(cache) => cache[index].clone(),
            None => decode(path, self.min_side)?,
        };
        Ok((img, *label))
    }
}

/// The images a run trains on: the embedded shapes or a folder, as one [`Dataset`] type.
#[derive(Debug)]
pub enum ImageSource {
    /// The embedded, generated dataset.
    Shapes(crate::shapes::Shapes),
    /// Images from a folder.
    Folder(ImageFiles),
}

impl Dataset for ImageSource {
    type Item = (Image, i64);

    fn len(&self) -> usize {
        match self {
            ImageSource::Shapes(s) => s.len(),
            ImageSource::Folder(f) => f.len(),
        }
    }

    fn get(&self, index: usize) -> Result<(Image, i64)> {
        match self {
            ImageSource::Shapes(s) => s.get(index),
            ImageSource::Folder(f) => f.get(index),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(path: &Path, w: u32, h: u32) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(w, h, image::Rgb([10, 200, 30])).save(path).unwrap();
    }

    #[test]
    fn reads_recursive_and_labelled_folders() {
        let d = tempfile::tempdir().unwrap();
        png(&d.path().join("cats/a.png"), 8, 6);
        png(&d.path().join("cats/deep/b.PNG"), 5, 5);
        png(&d.path().join("dogs/c.jpg"), 7, 9);
        std::fs::write(d.path().join("dogs/notes.txt"), "ignored").unwrap();
        let all = ImageFiles::unlabelled(d.path(), &FolderOptions::default()).unwrap();
        assert_eq!(all.len(), 3);
        let labelled = ImageFiles::labelled(d.path(), &FolderOptions::default()).unwrap();
        assert_eq!(labelled.classes(), ["cats", "dogs"]);
        let labels: Vec<i64> = labelled.files().iter().map(|f| f.1).collect();
        assert_eq!(labels, [0, 0, 1]);
        let (img, label) = labelled.get(2).unwrap();
        assert_eq!((img.dimensions(), label), ((7, 9), 1));
        let cached =
            ImageFiles::labelled(d.path(), &FolderOptions { cache_side: Some(4), ..Default::default() })
                .unwrap();
        assert_eq!(cached.get(2).unwrap().0.dimensions(), (4, 5));
    }

    #[test]
    fn bad_files_are_named_or_skipped() {
        let d = tempfile::tempdir().unwrap();
        png(&d.path().join("ok.png"), 8, 8);
        png(&d.path().join("tiny.png"), 2, 2);
        std::fs::write(d.path().join("empty.jpg"), b"").unwrap();
        std::fs::write(d.path().join("corrupt.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
        let opts = FolderOptions { min_side: Some(4), ..Default::default() };
        // Headers are read up front: the first bad file stops the listing, named.
        let e = ImageFiles::unlabelled(d.path(), &opts).unwrap_err().to_string();
        assert!(["corrupt.png", "empty.jpg", "tiny.png"].iter().any(|f| e.contains(f)), "{e}");
        for (file, needle) in [("corrupt.png", "cannot read"), ("empty.jpg", "0 bytes"), ("tiny.png", "2x2")]
        {
            let e = check_header(&d.path().join(file), Some(4)).unwrap_err().to_string();
            assert!(e.contains(file) && e.contains(needle), "{e}");
        }
        // A file whose header is intact but whose pixels are cut off fails when it is decoded.
        let cut = tempfile::tempdir().unwrap();
        png(&cut.path().join("cut.png"), 64, 64);
        let bytes = std::fs::read(cut.path().join("cut.png")).unwrap();
        std::fs::write(cut.path().join("cut.png"), &bytes[..bytes.len() / 2]).unwrap();
        let lazy = ImageFiles::unlabelled(cut.path(), &FolderOptions::default()).unwrap();
        let e = lazy.get(0).unwrap_err().to_string();
        assert!(e.contains("cut.png") && e.contains("cannot decode"), "{e}");

        let skip =
            ImageFiles::unlabelled(d.path(), &FolderOptions { skip_bad: true, ..opts.clone() }).unwrap();
        assert_eq!((skip.len(), skip.skipped().len()), (1, 3));
        let e = ImageFiles::unlabelled(d.path(), &FolderOptions { cache_side: Some(8), ..opts }).unwrap_err();
        assert!(e.to_string().contains(".png") || e.to_string().contains(".jpg"), "{e}");
    }

    #[test]
    fn empty_folders_are_errors_naming_them() {
        let d = tempfile::tempdir().unwrap();
        let e = ImageFiles::unlabelled(d.path(), &FolderOptions::default()).unwrap_err().to_string();
        assert!(e.contains(&d.path().display().to_string()) && e.contains("no PNG or JPEG"), "{e}");
        let e = ImageFiles::labelled(d.path(), &FolderOptions::default()).unwrap_err().to_string();
        assert!(e.contains("no class sub-folders"), "{e}");
        std::fs::create_dir(d.path().join("empty_class")).unwrap();
        let e = ImageFiles::labelled(d.path(), &FolderOptions::default()).unwrap_err().to_string();
        assert!(e.contains("empty_class"), "{e}");
        let e = ImageFiles::unlabelled(d.path().join("missing"), &FolderOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing"), "{e}");
    }
}
