//! Assembling a CPU libtorch 2.11.0 from pip wheels.
//!
//! The `torch` wheel for Linux is a CUDA build of about 3.5 GB once unpacked, but linking and
//! running on the CPU needs only its headers and four libraries, plus the CUDA runtime and CUPTI
//! libraries that `libtorch_cpu.so` loads (from two small NVIDIA wheels). Taking just those gives a
//! libtorch of about 0.5 GB:
//!
//! ```text
//! .libtorch/libtorch-2.11.0-cpu/
//!   build-version        2.11.0
//!   include/...          torch/include/** of the torch wheel
//!   lib/libtorch_cpu.so  libc10.so  libtorch.so  libgomp.so.1      (torch/lib/)
//!   lib/libcudart.so.13  lib/libcupti.so.13                         (nvidia/cu13/lib/)
//! ```
//!
//! pip only downloads; the wheels (zip files) are read with the `zip` crate. Everything is
//! extracted into a `.tmp` sibling that is renamed into place at the end, so an interrupted run
//! never leaves a half-filled folder under the real name.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::libtorch::{self, PROVISIONED_DIR, PROVISIONED_VERSION, REQUIRED};

/// The requirements handed to `pip download`.
pub const REQUIREMENTS: [&str; 3] =
    ["torch==2.11.0", "nvidia-cuda-runtime==13.0.*", "nvidia-cuda-cupti==13.0.*"];

/// Libraries taken from the torch wheel's `torch/lib/`.
pub const TORCH_LIBS: [&str; 4] = ["libtorch_cpu.so", "libc10.so", "libtorch.so", "libgomp.so.1"];

/// Libraries taken from the NVIDIA wheels, by their path inside the wheel.
pub const NVIDIA_LIBS: [&str; 2] = ["nvidia/cu13/lib/libcudart.so.13", "nvidia/cu13/lib/libcupti.so.13"];

/// Lines of pip's error output quoted when it fails.
const STDERR_TAIL: usize = 20;

/// Where a wheel entry goes in the libtorch folder, or `None` when it is not needed.
///
/// `entry` is the entry's path inside the wheel, with `/` separators.
pub fn destination(entry: &str) -> Option<PathBuf> {
    if let Some(rest) = entry.strip_prefix("torch/include/") {
        return (!rest.is_empty() && !rest.ends_with('/')).then(|| Path::new("include").join(rest));
    }
    let file = entry.strip_prefix("torch/lib/").filter(|f| TORCH_LIBS.contains(f));
    let file = file.or_else(|| NVIDIA_LIBS.contains(&entry).then(|| entry.rsplit('/').next())?);
    file.map(|f| Path::new("lib").join(f))
}

/// The distribution name of a wheel file (`torch-2.11.0-cp312-...whl` -> `torch`).
pub fn wheel_distribution(file_name: &str) -> Option<&str> {
    let stem = file_name.strip_suffix(".whl")?;
    let mut parts = stem.split('-');
    let name = parts.next()?;
    (parts.count() >= 4).then_some(name)
}

/// Checks that the downloaded files are exactly one wheel per requirement, torch being 2.11.0.
pub fn check_wheels(file_names: &[String]) -> Result<(), String> {
    let expected = ["torch", "nvidia_cuda_runtime", "nvidia_cuda_cupti"];
    for dist in expected {
        let count = file_names.iter().filter(|f| wheel_distribution(f) == Some(dist)).count();
        if count != 1 {
            return Err(format!("expected one {dist} wheel, found {count} in {file_names:?}"));
        }
    }
    let torch = file_names.iter().find(|f| wheel_distribution(f) == Some("torch"));
    let version = torch.and_then(|f| f.split('-').nth(1)).unwrap_or_default();
    if version != PROVISIONED_VERSION {
        return Err(format!("pip downloaded torch {version}, expected {PROVISIONED_VERSION}"));
    }
    Ok(())
}

/// Downloads the wheels with `python -m pip` and assembles `<dot>/libtorch-2.11.0-cpu`.
pub fn provision(dot: &Path, python: &str) -> Result<PathBuf> {
    if !cfg!(target_os = "linux") {
        bail!(
            "setup can only assemble libtorch from wheels on Linux; install libtorch {REQUIRED} \
             and set LIBTORCH to its folder"
        );
    }
    check_pip(python)?;
    fs::create_dir_all(dot).with_context(|| format!("creating {}", dot.display()))?;
    let download = dot.join("download.tmp");
    let staging = dot.join(format!("{PROVISIONED_DIR}.tmp"));
    for stale in [&download, &staging] {
        remove_dir_if_exists(stale)?;
    }
    let assembled = download_and_assemble(python, &download, &staging);
    let cleaned = remove_dir_if_exists(&download);
    if assembled.is_err() {
        let _ = remove_dir_if_exists(&staging);
    }
    assembled?;
    cleaned?;

    // Only an unusable earlier folder can be in the way (setup reuses a usable one).
    let target = dot.join(PROVISIONED_DIR);
    remove_dir_if_exists(&target)?;
    fs::rename(&staging, &target)
        .with_context(|| format!("renaming {} to {}", staging.display(), target.display()))?;
    say!("libtorch {PROVISIONED_VERSION} (CPU) is ready in {}", target.display());
    Ok(target)
}

/// Downloads the wheels into `download` and assembles the libtorch folder in `staging`.
fn download_and_assemble(python: &str, download: &Path, staging: &Path) -> Result<()> {
    let wheels = pip_download(python, download)?;

    let start = Instant::now();
    say!("extracting headers and libraries into {}", staging.display());
    fs::create_dir_all(staging).with_context(|| format!("creating {}", staging.display()))?;
    let mut files = 0;
    let mut bytes = 0;
    for wheel in &wheels {
        let (f, b) = extract_wheel(wheel, staging)?;
        files += f;
        bytes += b;
    }
    let nvidia_libs = NVIDIA_LIBS.iter().filter_map(|p| p.rsplit('/').next());
    for lib in TORCH_LIBS.iter().copied().chain(nvidia_libs) {
        let path = staging.join("lib").join(lib);
        if !path.is_file() {
            bail!("the wheels had no {lib}; has the torch wheel layout changed?");
        }
        set_executable(&path)?;
    }
    fs::write(staging.join("build-version"), format!("{PROVISIONED_VERSION}\n"))
        .context("writing build-version")?;
    libtorch::inspect(staging)
        .map_err(|why| anyhow::anyhow!("the assembled {} is not usable: {why}", staging.display()))?;
    say!("extracted {files} files ({:.0} MB) in {:.1} s", bytes as f64 / 1e6, start.elapsed().as_secs_f64());
    Ok(())
}

fn check_pip(python: &str) -> Result<()> {
    let out = Command::new(python)
        .args(["-m", "pip", "--version"])
        .output()
        .with_context(|| format!("running {python} -m pip --version"))?;
    if !out.status.success() {
        bail!(
            "pip is missing: `{python} -m pip --version` failed ({}). Install pip for {python} \
             (`{python} -m ensurepip --user`, or your system's python3-pip package), or set \
             LIBTORCH to a libtorch {REQUIRED} folder",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    say!("using {}", String::from_utf8_lossy(&out.stdout).trim());
    Ok(())
}

/// Runs `pip download` into `dir`, showing its output, and returns the wheel paths.
fn pip_download(python: &str, dir: &Path) -> Result<Vec<PathBuf>> {
    let start = Instant::now();
    say!("downloading {} with pip into {} (about 540 MB)", REQUIREMENTS.join(" "), dir.display());
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "-d"])
        .arg(dir);
    if !io::stdout().is_terminal() {
        cmd.args(["--progress-bar", "off"]);
    }
    cmd.args(REQUIREMENTS);
    let mut child =
        cmd.stderr(Stdio::piped()).spawn().with_context(|| format!("running {python} -m pip download"))?;
    // Echo pip's error output as it comes, keeping the end of it for the error message.
    let mut tail = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            eprintln!("{line}");
            tail.push(line);
            if tail.len() > STDERR_TAIL {
                tail.remove(0);
            }
        }
    }
    let status = child.wait().context("waiting for pip")?;
    if !status.success() {
        bail!(
            "`{python} -m pip download {}` failed ({status}); the end of its output:\n{}",
            REQUIREMENTS.join(" "),
            tail.join("\n")
        );
    }

    let mut names = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    check_wheels(&names).map_err(anyhow::Error::msg)?;
    let size: u64 = names.iter().filter_map(|n| fs::metadata(dir.join(n)).ok()).map(|m| m.len()).sum();
    say!(
        "downloaded {} ({:.0} MB) in {:.1} s",
        names.join(", "),
        size as f64 / 1e6,
        start.elapsed().as_secs_f64()
    );
    Ok(names.iter().map(|n| dir.join(n)).collect())
}

/// Extracts the needed entries of one wheel into `root`; returns (files, bytes) written.
fn extract_wheel(wheel: &Path, root: &Path) -> Result<(usize, u64)> {
    let context = || format!("reading {}", wheel.display());
    let file = File::open(wheel).with_context(context)?;
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).with_context(context)?;
    let (mut files, mut bytes) = (0, 0);
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).with_context(context)?;
        if entry.is_dir() {
            continue;
        }
        // `enclosed_name` refuses absolute paths and `..`, so nothing lands outside `root`.
        let Some(name) = entry.enclosed_name() else {
            continue;
        };
        let Some(name) = name.to_str().map(|n| n.replace('\\', "/")) else {
            continue;
        };
        let Some(dest) = destination(&name) else {
            continue;
        };
        let dest = root.join(dest);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let out = File::create(&dest).with_context(|| format!("creating {}", dest.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, out);
        bytes += io::copy(&mut entry, &mut out)
            .with_context(|| format!("extracting {name} from {}", wheel.display()))?;
        out.into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("writing {}", dest.display()))?;
        files += 1;
    }
    Ok((files, bytes))
}

#[cfg(unix)]
fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("setting permissions of {}", path.display()))
}

#[cfg(not(unix))]
fn set_executable(_path: &Path) -> Result<()> {
    Ok(())
}

fn remove_dir_if_exists(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn destinations() {
        let check = |entry: &str, expected: Option<&str>| {
            assert_eq!(destination(entry), expected.map(PathBuf::from), "{entry}");
        };
        check("torch/include/torch/torch.h", Some("include/torch/torch.h"));
        check("torch/include/ATen/core/Tensor.h", Some("include/ATen/core/Tensor.h"));
        check("torch/include/", None);
        check("torch/include/ATen/", None);
        check("torch/lib/libtorch_cpu.so", Some("lib/libtorch_cpu.so"));
        check("torch/lib/libgomp.so.1", Some("lib/libgomp.so.1"));
        check("torch/lib/libtorch_cuda.so", None);
        check("torch/lib/sub/libc10.so", None);
        check("nvidia/cu13/lib/libcudart.so.13", Some("lib/libcudart.so.13"));
        check("nvidia/cu13/lib/libcupti.so.13", Some("lib/libcupti.so.13"));
        check("nvidia/cu13/lib/libnvperf_host.so", None);
        check("torch/__init__.py", None);
        check("torch-2.11.0.dist-info/METADATA", None);
    }

    #[test]
    fn requirements_pin_the_provisioned_release() {
        assert_eq!(REQUIREMENTS[0], format!("torch=={PROVISIONED_VERSION}"));
    }

    #[test]
    fn wheels() {
        assert_eq!(wheel_distribution("torch-2.11.0-cp311-cp311-manylinux_2_28_x86_64.whl"), Some("torch"));
        assert_eq!(
            wheel_distribution("nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.whl"),
            Some("nvidia_cuda_runtime")
        );
        assert_eq!(wheel_distribution("torch-2.11.0.tar.gz"), None);
        assert_eq!(wheel_distribution("torch.whl"), None);

        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let good = names(&[
            "nvidia_cuda_cupti-13.0.85-py3-none-manylinux_2_25_x86_64.whl",
            "nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.whl",
            "torch-2.11.0-cp311-cp311-manylinux_2_28_x86_64.whl",
        ]);
        assert_eq!(check_wheels(&good), Ok(()));
        let err = check_wheels(&good[..2]).expect_err("torch missing");
        assert!(err.contains("one torch wheel"), "{err}");
        let mut other = good.clone();
        other[2] = "torch-2.10.0-cp311-cp311-manylinux_2_28_x86_64.whl".into();
        assert!(check_wheels(&other).expect_err("wrong torch").contains("2.10.0"));
    }

    #[test]
    fn extract_takes_only_the_mapped_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wheel = dir.path().join("torch-2.11.0-cp311-cp311-linux_x86_64.whl");
        let mut zip = zip::ZipWriter::new(File::create(&wheel).expect("create"));
        let options = zip::write::SimpleFileOptions::default();
        for (name, body) in [
            ("torch/include/torch/torch.h", "#pragma once\n"),
            ("torch/lib/libtorch_cpu.so", "elf"),
            ("torch/lib/libtorch_cuda.so", "big"),
            ("torch/__init__.py", ""),
        ] {
            zip.start_file(name, options).expect("start");
            zip.write_all(body.as_bytes()).expect("write");
        }
        zip.add_directory("torch/include/ATen/", options).expect("dir");
        zip.finish().expect("finish");

        let root = dir.path().join("out");
        let (files, bytes) = extract_wheel(&wheel, &root).expect("extract");
        assert_eq!((files, bytes), (2, 16));
        assert_eq!(fs::read_to_string(root.join("include/torch/torch.h")).expect("h"), "#pragma once\n");
        assert!(root.join("lib/libtorch_cpu.so").is_file());
        assert!(!root.join("lib/libtorch_cuda.so").exists());
        assert!(!root.join("include/ATen").exists());
    }
}
