//! Micro-benchmarks of the vision hot paths: SimCLR's two-view augmentation of one image
//! (32 px CIFAR-style and 224 px ImageNet-style) and its conversion to a normalised tensor.
//! `cargo bench -p ssl-vision` (or `cargo xtask bench micro`).

#![allow(missing_docs)] // criterion_group! generates an undocumented function

use criterion::{criterion_group, criterion_main, Criterion};
use ssl_core::data::BatchBuilder;
use ssl_core::rng::rng_for;
use ssl_vision::augment::presets::simclr;
use ssl_vision::shapes::{Shapes, ShapesConfig, Split};
use ssl_vision::views::{Normalization, ViewBatches};

fn two_views(c: &mut Criterion) {
    ssl_core::tch::set_num_threads(1);
    let shapes = Shapes::new(&ShapesConfig::default(), Split::Train).expect("shapes");
    let (small, _) = shapes.render(0);
    let big = image::imageops::resize(&small, 256, 256, image::imageops::FilterType::Triangle);
    for (name, img, size, small_images) in
        [("simclr 2 views 32 px", small, 32, true), ("simclr 2 views 224 px", big, 224, false)]
    {
        let views = ViewBatches::new(simclr(size, small_images), Normalization::IMAGENET);
        let mut rng = rng_for(0, "bench", &[]);
        c.bench_function(name, |b| b.iter(|| views.prepare((img.clone(), 0), &mut rng).expect("views")));
    }
}

criterion_group!(benches, two_views);
criterion_main!(benches);
