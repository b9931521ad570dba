//! A long run meets files that change under it: an image deleted (or truncated) after the folder
//! was listed must stop the loader with an error naming the file, never a panic or a hang, on
//! the inline and the prefetching (threaded) loader alike.

use ssl_core::data::{DataLoader, LoaderConfig, LoaderPosition, SequentialSampler};
use ssl_vision::augment::presets::simclr;
use ssl_vision::data::{FolderOptions, ImageFiles};
use ssl_vision::views::{Normalization, ViewBatches};

fn folder(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..n {
        let img = image::RgbImage::from_fn(16, 16, |x, y| {
            image::Rgb([(x * 9) as u8, (y * 7) as u8, (i * 20) as u8])
        });
        img.save(dir.path().join(format!("img{i:02}.png"))).expect("png");
    }
    dir
}

fn loader(dir: &std::path::Path, prefetch: usize) -> DataLoader<ImageFiles, ViewBatches, SequentialSampler> {
    let files = ImageFiles::unlabelled(dir, &FolderOptions::default()).expect("listing");
    let views = ViewBatches::new(simclr(16, true), Normalization::IMAGENET);
    let cfg = LoaderConfig { batch_size: 4, drop_last: true, prefetch, seed: 0 };
    DataLoader::new(files, views, SequentialSampler, cfg).expect("loader")
}

#[test]
fn a_file_deleted_mid_epoch_is_an_error_naming_it() {
    for prefetch in [0, 2] {
        let dir = folder(12);
        let loader = loader(dir.path(), prefetch);
        // The first batch (files 0-3) is read before the file of the third batch vanishes.
        let mut batches = loader.iter_from(LoaderPosition::default());
        assert!(batches.next().expect("a first batch").is_ok());
        let gone = dir.path().join("img09.png");
        std::fs::remove_file(&gone).expect("delete");
        // The prefetching loader may have read batch 2 already; batch 3 holds the file.
        let err = batches
            .by_ref()
            .take(2)
            .find_map(|b| b.err())
            .unwrap_or_else(|| panic!("prefetch {prefetch}: no error for a deleted file"));
        let message = err.to_string();
        assert!(
            message.contains(&gone.display().to_string()),
            "prefetch {prefetch}: `{message}` does not name the file"
        );
    }
}

#[test]
fn a_file_truncated_mid_run_is_an_error_naming_it() {
    let dir = folder(8);
    let loader = loader(dir.path(), 0);
    let mut batches = loader.iter_from(LoaderPosition::default());
    assert!(batches.next().expect("a first batch").is_ok());
    let cut = dir.path().join("img05.png");
    let bytes = std::fs::read(&cut).expect("read");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("truncate");
    let err = batches.next().expect("a second batch").expect_err("a truncated image");
    assert!(err.to_string().contains(&cut.display().to_string()), "{err}");
}
