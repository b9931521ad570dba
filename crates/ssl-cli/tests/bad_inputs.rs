//! The bad-input corpus: deliberately broken images, audio, text, manifests, configs and
//! checkpoints, generated into a temporary folder. Every case must end with a clear error that
//! names the file (or the config field), exit status 1 (an error, not a panic), and no run
//! directory left behind; inputs that are unusual but valid (grayscale, RGBA, 16-bit images)
//! must train, and skip mode must count what it skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ssl(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ssl"))
        .args(args)
        .current_dir(cwd)
        .env("SSL_CACHE_DIR", cwd.join("cache"))
        .output()
        .expect("runs ssl")
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) -> String {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, bytes).expect("write");
    path.display().to_string()
}

fn png(path: &Path, img: image::DynamicImage) -> String {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    img.save(path).expect("png");
    path.display().to_string()
}

fn rgb(side: u32, seed: u8) -> image::DynamicImage {
    image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(side, side, |x, y| {
        image::Rgb([(x * 7) as u8 ^ seed, (y * 5) as u8, seed.wrapping_mul(3)])
    }))
}

/// A folder of `n` good 16 px RGB images.
fn good_images(dir: &Path, n: u8) {
    for i in 0..n {
        png(&dir.join(format!("good{i}.png")), rgb(16, i * 17));
    }
}

/// A 16-bit PCM mono WAV header for `data_len` bytes of samples, with the format tag given.
fn wav_header(format: u16, bits: u16, data_len: u32) -> Vec<u8> {
    let (channels, rate) = (1u16, 16_000u32);
    let block = channels * bits / 8;
    let mut h = Vec::new();
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(36 + data_len).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&format.to_le_bytes());
    h.extend_from_slice(&channels.to_le_bytes());
    h.extend_from_slice(&rate.to_le_bytes());
    h.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    h.extend_from_slice(&block.to_le_bytes());
    h.extend_from_slice(&bits.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    h
}

const VISION: &str =
    "method = \"simclr\"\n[train]\nsteps = 2\nprogress = false\n[data]\nimage_size = 16\nbatch_size = 4\n\
    [data.shapes]\nimage_size = 16\ntrain_per_class = 2\ntest_per_class = 1\n\
    [model.backbone]\ndepth = \"18\"\nbase_width = 4\nsmall_images = true\n";
const AUDIO: &str = "method = \"cpc\"\n[train]\nsteps = 2\nprogress = false\n[data]\nbatch_size = 2\nprobe_train_clips = 8\n\
    [data.synth]\ntrain_clips = 8\ntest_clips = 8\nclasses = 2\n[model]\ncontext_dim = 8\nsteps = 2\nnegatives = 4\n\
    [model.conv]\nchannels = 8\n";
const TEXT: &str = "method = \"gpt\"\n[train]\nsteps = 2\nprogress = false\n[data]\nvocab_size = 300\nblock_len = 16\nbatch_size = 4\n\
    probe_train_documents = 8\n[data.grammar]\ntrain_documents = 40\ntest_documents = 8\n\
    [model]\ndim = 16\ndepth = 1\nheads = 2\nmlp_dim = 32\n";
const CLIP: &str = "method = \"clip\"\n[train]\nsteps = 2\nprogress = false\n[data]\nbatch_size = 2\nvocab_size = 300\n\
    [data.transform]\nsize = 16\n[data.scenes]\nimage_size = 16\ntrain_pairs = 16\ntest_pairs = 4\nzero_shot_per_class = 1\n\
    [model]\nembed_dim = 8\n[model.image]\nkind = \"vit\"\nimage_size = 16\npatch_size = 4\ndim = 16\ndepth = 1\nheads = 2\n\
    [model.text]\ncontext_length = 12\nwidth = 16\ndepth = 1\nheads = 2\n";

/// One corpus case: the command (after `pretrain`/`evaluate` etc.) and what its error must say.
struct Case {
    name: &'static str,
    args: Vec<String>,
    needle: String,
}

fn case(name: &'static str, args: &[&str], needle: impl Into<String>) -> Case {
    Case { name, args: args.iter().map(|a| a.to_string()).collect(), needle: needle.into() }
}

/// A pretraining run of `method` with `config` (written to `<name>.toml`) and extra flags,
/// into the run directory `out-<name>`.
fn pretrain(
    root: &Path,
    name: &'static str,
    method: &str,
    config: &str,
    extra: &[&str],
    needle: &str,
) -> Case {
    let cfg = write(&root.join(format!("{name}.toml")), config);
    let out = format!("out-{name}");
    let mut args = vec!["pretrain", method, "--config", &cfg, "--out", &out, "--no-eval"];
    args.extend_from_slice(extra);
    case(name, &args, needle)
}

fn corpus(root: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    let d = |p: &str| root.join(p);

    // Images: every broken file is named.
    std::fs::create_dir_all(d("img_empty")).expect("mkdir");
    cases.push(pretrain(root, "image-folder-empty", "simclr", VISION, &["--data", "img_empty"], "img_empty"));
    let broken: [(&str, Vec<u8>); 5] = [
        ("zero-byte.png", Vec::new()),
        ("truncated.png", {
            let mut bytes = Vec::new();
            rgb(16, 1).write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).expect("png");
            bytes.truncate(bytes.len() / 2);
            bytes
        }),
        ("corrupt.jpg", {
            let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
            bytes.extend((0..400u32).map(|i| (i * 37 % 251) as u8));
            bytes
        }),
        ("huge-dimensions.png", {
            // A valid signature and IHDR declaring 100000 x 100000 RGB, then nothing.
            let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
            bytes.extend_from_slice(&100_000u32.to_be_bytes());
            bytes.extend_from_slice(&100_000u32.to_be_bytes());
            bytes.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
            bytes
        }),
        ("text.png", b"this is not an image".to_vec()),
    ];
    for (i, (file, bytes)) in broken.into_iter().enumerate() {
        let dir = format!("img_bad{i}");
        good_images(&d(&dir), 4);
        write(&d(&dir).join(file), bytes);
        let name: &'static str = [
            "image-zero-byte",
            "image-truncated-png",
            "image-corrupt-jpeg",
            "image-huge-dimensions",
            "image-not-an-image",
        ][i];
        cases.push(pretrain(root, name, "simclr", VISION, &["--data", &dir], file));
    }

    // Audio.
    std::fs::create_dir_all(d("wav_empty")).expect("mkdir");
    cases.push(pretrain(root, "audio-folder-empty", "cpc", AUDIO, &["--data", "wav_empty"], "wav_empty"));
    let mut not_wave = wav_header(1, 16, 4);
    not_wave[8..12].copy_from_slice(b"AVI ");
    not_wave.extend_from_slice(&[0, 0, 0, 0]);
    let mut alaw = wav_header(6, 8, 4);
    alaw.extend_from_slice(&[1, 2, 3, 4]);
    let mut truncated = wav_header(1, 16, 32_000);
    truncated.extend_from_slice(&[0; 100]);
    let bad_wavs: [(&str, &'static str, Vec<u8>); 5] = [
        ("not-wave.wav", "audio-wrong-header", not_wave),
        ("alaw.wav", "audio-unsupported-encoding", alaw),
        ("empty-data.wav", "audio-zero-length", wav_header(1, 16, 0)),
        ("truncated.wav", "audio-truncated-data", truncated),
        ("text.wav", "audio-not-a-wav", b"plain text, not RIFF".to_vec()),
    ];
    for (i, (file, name, bytes)) in bad_wavs.into_iter().enumerate() {
        let dir = format!("wav_bad{i}");
        write(&d(&dir).join(file), bytes);
        cases.push(pretrain(root, name, "cpc", AUDIO, &["--data", &dir], file));
    }

    // Text.
    write(&d("latin1.txt"), b"caf\xe9 au lait\n".repeat(50));
    cases.push(pretrain(root, "text-not-utf8", "gpt", TEXT, &["--data", "latin1.txt"], "latin1.txt"));
    write(&d("empty.txt"), "");
    cases.push(pretrain(root, "text-empty", "gpt", TEXT, &["--data", "empty.txt"], "empty.txt"));
    let good_jsonl = "{\"text\": \"the soup is warm\", \"label\": \"food\"}\n{\"text\": \"the car is fast\", \"label\": \"cars\"}\n";
    write(&d("probe_ok.jsonl"), good_jsonl);
    let bad_jsonl: [(&str, &'static str, String); 3] = [
        ("probe_missing.jsonl", "jsonl-missing-field", "{\"text\": \"no label here\"}\n".to_string()),
        ("probe_badjson.jsonl", "jsonl-not-json", format!("{good_jsonl}{{\"text\": \"cut off\n")),
        ("probe_wrongtype.jsonl", "jsonl-wrong-type", "{\"text\": 42, \"label\": \"x\"}\n".to_string()),
    ];
    for (file, name, text) in bad_jsonl {
        write(&d(file), text);
        let extra = ["--probe-train", file, "--probe-test", "probe_ok.jsonl"];
        let cfg = write(&d(&format!("{name}.toml")), TEXT);
        let out = format!("out-{name}");
        let mut args = vec!["pretrain", "gpt", "--config", cfg.as_str(), "--out", out.as_str()];
        args.extend_from_slice(&extra);
        cases.push(case(name, &args, file));
    }

    // Image-text manifests.
    png(&d("pairs/a.png"), rgb(16, 3));
    write(&d("pairs/missing.csv"), "filepath,title\na.png,a red disk\nnowhere.png,a blue square\n");
    cases.push(pretrain(
        root,
        "pairs-missing-image",
        "clip",
        CLIP,
        &["--data", "pairs/missing.csv"],
        "missing.csv:3",
    ));
    write(&d("pairs/nocaption.jsonl"), "{\"image\": \"a.png\"}\n");
    cases.push(pretrain(
        root,
        "pairs-missing-caption",
        "clip",
        CLIP,
        &["--data", "pairs/nocaption.jsonl"],
        "nocaption.jsonl:1",
    ));
    write(&d("pairs/emptycaption.csv"), "filepath,title\na.png,\n");
    cases.push(pretrain(
        root,
        "pairs-empty-caption",
        "clip",
        CLIP,
        &["--data", "pairs/emptycaption.csv"],
        "emptycaption.csv:2",
    ));
    write(&d("pairs/nocolumn.csv"), "path,caption\na.png,a red disk\n");
    cases.push(pretrain(
        root,
        "pairs-missing-column",
        "clip",
        CLIP,
        &["--data", "pairs/nocolumn.csv"],
        "nocolumn.csv",
    ));

    // Configs: the field is named.
    let configs: [(&'static str, String, &str); 6] = [
        ("config-unknown-field", format!("{VISION}[model]\ntemprature = 0.1\n"), "temprature"),
        ("config-wrong-type", VISION.replace("steps = 2", "steps = \"two\""), "steps"),
        ("config-negative-size", VISION.replace("batch_size = 4", "batch_size = -4"), "batch_size"),
        (
            "config-zero-image-size",
            VISION.replace("[data]\nimage_size = 16", "[data]\nimage_size = 0"),
            "image_size",
        ),
        ("config-not-toml", "method = \"simclr\"\n[train\nsteps = 2\n".to_string(), "config-not-toml.toml"),
        ("config-other-method", VISION.replace("method = \"simclr\"", "method = \"byol\""), "does not match"),
    ];
    for (name, text, needle) in configs {
        cases.push(pretrain(root, name, "simclr", &text, &[], needle));
    }
    good_images(&d("img_small"), 3);
    cases.push(pretrain(
        root,
        "batch-larger-than-dataset",
        "simclr",
        VISION,
        &["--data", "img_small"],
        "batch",
    ));

    // Checkpoints.
    cases.push(case("checkpoint-missing", &["evaluate", "no-such-run"], "no-such-run"));
    cases.push(case(
        "checkpoint-other-method",
        &["pretrain", "byol", "--resume", "ck-simclr", "--steps", "4"],
        "simclr",
    ));
    cases.push(case("checkpoint-corrupt-weights", &["evaluate", "ck-corrupt"], "model.safetensors"));
    cases.push(case("checkpoint-corrupt-state", &["evaluate", "ck-badstate"], "state.json"));
    cases
}

/// Trains the tiny SimCLR checkpoint the checkpoint cases break (three copies).
fn checkpoints(root: &Path) {
    let cfg = write(&root.join("ck.toml"), VISION);
    let o = ssl(&["pretrain", "simclr", "--config", &cfg, "--out", "ck-simclr", "--no-eval"], root);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for copy in ["ck-corrupt", "ck-badstate"] {
        let o = Command::new("cp").args(["-r", "ck-simclr", copy]).current_dir(root).status().expect("cp");
        assert!(o.success());
    }
    let step: PathBuf = std::fs::read_dir(root.join("ck-corrupt/checkpoints"))
        .expect("checkpoints")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .max()
        .expect("a checkpoint");
    let model = step.join("model.safetensors");
    let mut bytes = std::fs::read(&model).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&model, bytes).expect("write");
    let state = root.join("ck-badstate/checkpoints").join(step.file_name().expect("name")).join("state.json");
    std::fs::write(state, "{\"format_version\": 1, \"step\": ").expect("write");
}

#[test]
fn every_broken_input_is_a_clear_error_with_nothing_left_behind() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    checkpoints(root);
    let cases = corpus(root);
    assert!(cases.len() >= 30, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let o = ssl(&args, root);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        let out = root.join(format!("out-{}", c.name));
        if o.status.code() != Some(1) {
            failures.push(format!(
                "{}: exit {:?} (an error exits 1; a panic 101): {err}",
                c.name,
                o.status.code()
            ));
        } else if !err.contains(&c.needle) {
            failures.push(format!("{}: the error does not name `{}`: {err}", c.name, c.needle));
        } else if err.contains("panicked") {
            failures.push(format!("{}: panicked: {err}", c.name));
        } else if out.exists() {
            failures.push(format!("{}: left {} behind", c.name, out.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn unusual_but_valid_images_train_and_skip_mode_counts_what_it_skips() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let dir = root.join("odd");
    good_images(&dir, 2);
    png(
        &dir.join("gray.png"),
        image::DynamicImage::ImageLuma8(image::GrayImage::from_pixel(16, 16, image::Luma([90]))),
    );
    png(
        &dir.join("rgba.png"),
        image::DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(16, 16, image::Rgba([9, 80, 200, 128]))),
    );
    png(
        &dir.join("sixteen.png"),
        image::DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(
            16,
            16,
            image::Rgb([60000u16, 20, 3000]),
        )),
    );
    let cfg = write(&root.join("v.toml"), VISION);
    let o = ssl(
        &["pretrain", "simclr", "--config", &cfg, "--data", "odd", "--out", "odd-run", "--no-eval"],
        root,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Skip mode: two broken files among six are left out and counted.
    let skip = root.join("skip");
    good_images(&skip, 6);
    write(&skip.join("zero.png"), b"");
    write(&skip.join("bad.jpg"), b"\xff\xd8\xff garbage");
    let cfg = write(&root.join("s.toml"), VISION.replace("[data]\n", "[data]\nskip_bad = true\n"));
    let o = ssl(
        &["pretrain", "simclr", "--config", &cfg, "--data", "skip", "--out", "skip-run", "--no-eval"],
        root,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("skipped 2 unreadable image(s)"), "{err}");
}

/// A run that diverges (a learning rate of 1e30) must stop at the first non-finite loss with an
/// error saying so, keep the checkpoints written before it loadable (checksums verified), write
/// no checkpoint for the failing step and no summary.
#[test]
fn a_diverging_run_stops_at_its_non_finite_loss_and_keeps_the_last_good_checkpoint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = write(
        &tmp.path().join("diverge.toml"),
        "method = \"synthetic\"\n[train]\nsteps = 40\nlog_every = 1\ncheckpoint_every = 1\nkeep_last = 2\nprogress = false\n\
         [train.optimizer]\nname = \"sgd\"\nlr = 1e30\n[train.schedule]\nname = \"constant\"\nwarmup_steps = 0\n",
    );
    let run = tmp.path().join("run");
    let out =
        ssl(&["pretrain", "synthetic", "--config", &cfg, "--out", &run.display().to_string()], tmp.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("non-finite loss"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!run.join("summary.json").exists(), "a failed run has no summary");
    let newest =
        ssl_core::checkpoint::latest(&run).expect("lists").expect("a checkpoint before the divergence");
    let loaded = ssl_core::checkpoint::load(&newest).expect("the last good checkpoint loads");
    assert!(loaded.meta.step < 40, "the run stopped early");
    // The failing step wrote nothing: the loss of the step after the newest checkpoint was the
    // non-finite one, as the message says.
    assert!(
        stderr.contains(&format!("at step {};", loaded.meta.step)),
        "{stderr} / newest step {}",
        loaded.meta.step
    );
    let finite = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics.jsonl");
    assert!(finite.lines().all(|l| !l.contains("NaN") && !l.contains("inf")), "{finite}");
}
