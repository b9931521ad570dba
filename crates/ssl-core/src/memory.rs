//! Host memory: how the C allocator that libtorch's CPU tensors come from is tuned for training.
//!
//! A training step allocates and frees the same large activation and gradient buffers every
//! step. With glibc's defaults, freed memory at the top of the heap goes back to the kernel and
//! comes back as fresh pages that must be faulted in and zeroed on the next step, and the
//! dynamic mmap threshold can send large buffers through `mmap`/`munmap` every time: measured
//! on CLIP's default run at one thread, 9% of the time was in the kernel's page-fault path, and
//! [`tune_host_allocator`] took the step from 125 to 132-148 samples/s (PyTorch in Python:
//! 138-140). The `ssl` program calls it at start-up; a library user training in their own
//! program can do the same.

/// Sets glibc's `M_MMAP_THRESHOLD` to 32 MiB (its maximum on 64-bit systems: smaller blocks
/// come from the heap) and `M_TRIM_THRESHOLD` to 1 GiB (freed heap memory is kept for the next
/// step), unless the user set `MALLOC_MMAP_THRESHOLD_` or `MALLOC_TRIM_THRESHOLD_` in the
/// environment. Returns whether the settings were applied (always `false` off glibc).
///
/// The cost is that memory freed at the end of a run's peak is not handed back to the system
/// while the process lives; resident memory stays at the high-water mark (which is what
/// `cargo xtask reliability`'s soak checks to be flat).
///
/// ```
/// // First thing in a training program's main:
/// let applied = ssl_core::memory::tune_host_allocator();
/// if cfg!(all(target_os = "linux", target_env = "gnu")) && std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_none()
///     && std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none()
/// {
///     assert!(applied);
/// }
/// ```
pub fn tune_host_allocator() -> bool {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
        || std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_some()
    {
        return false;
    }
    set_thresholds(32 << 20, 1 << 30)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_thresholds(mmap: i32, trim: i32) -> bool {
    // SAFETY: mallopt only stores the two integers in glibc's allocator parameters; it is
    // documented as callable at any time, and rejects (returns 0 for) out-of-range values.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, mmap) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, trim) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds(_mmap: i32, _trim: i32) -> bool {
    false
}
