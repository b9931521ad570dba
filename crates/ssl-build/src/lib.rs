//! Build-script helper shared by every ssl-rs crate that links libtorch.
//!
//! `torch-sys` tells the linker where libtorch lives (`-L`), but not the loader: without an
//! rpath, test binaries, examples and the `ssl` binary would need `LD_LIBRARY_PATH`. Cargo does
//! not propagate link arguments from a dependency's build script, so each crate with binaries or
//! tests calls [`link_libtorch`] from its own `build.rs`:
//!
//! ```no_run
//! // build.rs
//! fn main() {
//!     ssl_build::link_libtorch();
//! }
//! ```
//!
//! The library folder is taken from `LIBTORCH_LIB` (as `$LIBTORCH_LIB/lib`) or `LIBTORCH`
//! (as `$LIBTORCH/lib`), the same variables `torch-sys` reads; the workspace's
//! `.cargo/config.toml` sets `LIBTORCH` to the folder `cargo xtask setup` prepared. A user's
//! `LD_LIBRARY_PATH` still wins at run time (the entry is a `RUNPATH`), which is how a binary built
//! against the CPU libtorch runs against a full CUDA install on a GPU host.
// The example above is a whole build script, so its `fn main` is the point, not noise.
#![allow(clippy::needless_doctest_main)]

use std::path::{Path, PathBuf};

/// The libtorch library folder this build links against, if the environment names one.
pub fn libtorch_lib_dir() -> Option<PathBuf> {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_LIB");
    let root = std::env::var_os("LIBTORCH_LIB").or_else(|| std::env::var_os("LIBTORCH"))?;
    let lib = Path::new(&root).join("lib");
    // Resolve `.libtorch/active` (a symbolic link) so that the rpath survives a later re-pointing
    // of the link only through a rebuild, never silently.
    Some(lib.canonicalize().unwrap_or(lib))
}

/// The libtorch header folders (`include` and `include/torch/csrc/api/include`) of the
/// libtorch this build links against, for crates that compile C++ against it (`ssl-dist`).
pub fn libtorch_include_dirs() -> Option<Vec<PathBuf>> {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_INCLUDE");
    let root = std::env::var_os("LIBTORCH_INCLUDE").or_else(|| std::env::var_os("LIBTORCH"))?;
    let include = Path::new(&root).join("include");
    let include = include.canonicalize().unwrap_or(include);
    Some(vec![include.join("torch/csrc/api/include"), include])
}

/// Emits the linker arguments that embed the libtorch library folder as a run-time search path.
///
/// Does nothing on targets other than Linux and macOS, or when no libtorch folder is configured
/// (then `torch-sys` itself fails with its own message).
pub fn link_libtorch() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os != "linux" && os != "macos" {
        return;
    }
    if let Some(lib) = libtorch_lib_dir() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
}
