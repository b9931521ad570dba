//! Device selection (`cpu`, `cuda`, `cuda:N`, `auto`) and run-time CUDA enablement.
//!
//! One build serves CPU and CUDA hosts. ssl-rs links only `libtorch_cpu` (the provisioned CPU
//! libtorch has nothing else), so CUDA kernels live in `libtorch_cuda.so`, which registers itself
//! with the dispatcher when it is loaded. [`enable_cuda`] looks for it next to the
//! `libtorch_cpu.so` this process loaded (and on the loader's search path) and loads it with
//! `RTLD_GLOBAL` before the first CUDA query. On a host with a full torch install (GPU machines)
//! CUDA then works; elsewhere the attempt is recorded and everything stays on the CPU.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A device as a user asks for it: `cpu`, `cuda`, `cuda:N` or `auto` (CUDA device 0 when one is
/// present, else the CPU).
///
/// ```
/// use ssl_core::device::DeviceSpec;
/// let d: DeviceSpec = "cuda:1".parse().unwrap();
/// assert_eq!(d, DeviceSpec::Cuda(Some(1)));
/// assert_eq!(d.to_string(), "cuda:1");
/// assert!("gpu".parse::<DeviceSpec>().is_err());
/// assert_eq!("cpu".parse::<DeviceSpec>().unwrap().resolve().unwrap(), ssl_core::tch::Device::Cpu);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    /// The CPU.
    Cpu,
    /// A CUDA device; `None` means device 0.
    Cuda(Option<usize>),
    /// CUDA device 0 if CUDA is usable, otherwise the CPU.
    #[default]
    Auto,
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(None)),
            "auto" => Ok(DeviceSpec::Auto),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(DeviceSpec::Cuda(Some(n))),
                _ => Err(Error::config(
                    "device",
                    format!("`{s}` is not a device; use `cpu`, `cuda`, `cuda:N` or `auto`"),
                )),
            },
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(None) => f.write_str("cuda"),
            DeviceSpec::Cuda(Some(n)) => write!(f, "cuda:{n}"),
            DeviceSpec::Auto => f.write_str("auto"),
        }
    }
}

impl DeviceSpec {
    /// Resolves to a concrete [`tch::Device`], loading CUDA support first when it is asked for.
    ///
    /// Asking for CUDA on a host without it (or an index past the device count) is an error that
    /// says why; `auto` never fails.
    pub fn resolve(&self) -> Result<tch::Device> {
        match *self {
            DeviceSpec::Cpu => Ok(tch::Device::Cpu),
            DeviceSpec::Auto => {
                Ok(if cuda_device_count() > 0 { tch::Device::Cuda(0) } else { tch::Device::Cpu })
            }
            DeviceSpec::Cuda(index) => {
                let index = index.unwrap_or(0);
                let count = cuda_device_count();
                if count == 0 {
                    return Err(Error::Device {
                        requested: self.to_string(),
                        message: format!("CUDA is not available ({})", enable_cuda().describe()),
                    });
                }
                if index >= count {
                    return Err(Error::Device {
                        requested: self.to_string(),
                        message: format!("only {count} CUDA device(s) present"),
                    });
                }
                Ok(tch::Device::Cuda(index))
            }
        }
    }
}

/// A short, stable name for a device as written in `summary.json` (`cpu`, `cuda:0`).
pub fn device_name(device: tch::Device) -> String {
    match device {
        tch::Device::Cpu => "cpu".into(),
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// What [`enable_cuda`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CudaSupport {
    /// `libtorch_cuda.so` was already part of the process (linked at build time).
    Linked,
    /// `libtorch_cuda.so` was loaded from this path.
    Loaded(PathBuf),
    /// No `libtorch_cuda.so` could be loaded; the strings say what was tried.
    Absent(Vec<String>),
}

impl CudaSupport {
    /// A one-line description for logs and error messages.
    pub fn describe(&self) -> String {
        match self {
            CudaSupport::Linked => "libtorch_cuda linked at build time".into(),
            CudaSupport::Loaded(p) => format!("loaded {}", p.display()),
            CudaSupport::Absent(tried) if tried.is_empty() => {
                "no libtorch_cuda.so beside libtorch_cpu.so (CPU-only libtorch)".into()
            }
            CudaSupport::Absent(tried) => format!("libtorch_cuda.so not loadable: {}", tried.join("; ")),
        }
    }
}

/// Makes libtorch's CUDA backend available when the host has it; idempotent and cheap after the
/// first call. Every CUDA query in ssl-rs goes through this first.
pub fn enable_cuda() -> &'static CudaSupport {
    static SUPPORT: OnceLock<CudaSupport> = OnceLock::new();
    SUPPORT.get_or_init(ffi::load_libtorch_cuda)
}

/// The number of usable CUDA devices (0 on CPU-only hosts).
pub fn cuda_device_count() -> usize {
    enable_cuda();
    if tch::Cuda::is_available() {
        usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
    } else {
        0
    }
}

/// Numeric precision of the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Full float32 everywhere.
    #[default]
    Fp32,
    /// bfloat16 autocast of the forward pass on CUDA (weights, gradients and optimiser state stay
    /// float32). Needs a CUDA device.
    Bf16,
}

/// Runs `f` under the autocast `precision` asks for on `device`.
///
/// `Fp32` runs `f` as is. `Bf16` on CUDA enables CUDA autocast with bfloat16 as its lower
/// precision type (libtorch's default would be float16); on any other device it is an error.
pub fn autocast<T>(device: tch::Device, precision: Precision, f: impl FnOnce() -> T) -> Result<T> {
    match precision {
        Precision::Fp32 => Ok(f()),
        Precision::Bf16 => {
            if !device.is_cuda() {
                return Err(Error::config(
                    "precision",
                    format!("bf16 autocast needs a CUDA device, the run is on {}", device_name(device)),
                ));
            }
            let previous = ffi::set_cuda_autocast_dtype(tch::Kind::BFloat16);
            let out = tch::autocast(true, f);
            ffi::set_cuda_autocast_dtype(previous);
            Ok(out)
        }
    }
}

#[allow(unsafe_code)]
mod ffi {
    //! The two places ssl-rs calls into native code directly.

    use super::CudaSupport;
    use std::path::PathBuf;

    // libtorch exports these C++ functions from libtorch_cpu.so; tch 0.24 does not wrap them.
    // `c10::DeviceType` and `c10::ScalarType` are `enum class : int8_t`, passed as plain int8
    // values in registers on every ABI libtorch supports, identical to a C `int8_t`.
    extern "C" {
        #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
        fn at_set_autocast_dtype(device_type: i8, dtype: i8);
        #[link_name = "_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE"]
        fn at_get_autocast_dtype(device_type: i8) -> i8;
    }

    /// `c10::DeviceType::CUDA`.
    const DEVICE_TYPE_CUDA: i8 = 1;

    fn scalar_type(kind: tch::Kind) -> i8 {
        match kind {
            tch::Kind::Half => 5,
            tch::Kind::BFloat16 => 15,
            _ => 6, // Float
        }
    }

    /// Sets the CUDA autocast lower-precision type and returns the previous one.
    pub(super) fn set_cuda_autocast_dtype(kind: tch::Kind) -> tch::Kind {
        // SAFETY: both functions only read/write a global in libtorch and take plain int8 enums.
        let previous = unsafe { at_get_autocast_dtype(DEVICE_TYPE_CUDA) };
        unsafe { at_set_autocast_dtype(DEVICE_TYPE_CUDA, scalar_type(kind)) };
        match previous {
            5 => tch::Kind::Half,
            15 => tch::Kind::BFloat16,
            _ => tch::Kind::Float,
        }
    }

    /// Reads the CUDA autocast lower-precision type (tests).
    #[cfg(test)]
    pub(super) fn cuda_autocast_dtype() -> i8 {
        // SAFETY: reads a global in libtorch.
        unsafe { at_get_autocast_dtype(DEVICE_TYPE_CUDA) }
    }

    /// Folders holding the `libtorch_cpu.so` mapped into this process.
    fn loaded_libtorch_dirs(name: &str) -> Vec<PathBuf> {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let mut dirs: Vec<PathBuf> = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .filter(|p| p.ends_with(name))
            .filter_map(|p| PathBuf::from(p).parent().map(|d| d.to_path_buf()))
            .collect();
        dirs.dedup();
        dirs
    }

    pub(super) fn load_libtorch_cuda() -> CudaSupport {
        const LIB: &str = "libtorch_cuda.so";
        if !loaded_libtorch_dirs(LIB).is_empty() {
            return CudaSupport::Linked;
        }
        // Beside the libtorch_cpu.so in use first: the CUDA backend must come from the same build.
        let mut candidates: Vec<PathBuf> = loaded_libtorch_dirs("libtorch_cpu.so")
            .into_iter()
            .map(|d| d.join(LIB))
            .filter(|p| p.exists())
            .collect();
        // Then whatever the loader finds (LD_LIBRARY_PATH, our RUNPATH).
        candidates.push(PathBuf::from(LIB));
        let mut tried = Vec::new();
        for path in candidates {
            let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL;
            // SAFETY: loading libtorch_cuda runs its static initialisers, which register CUDA
            // kernels with the dispatcher of the libtorch_cpu already loaded; that is the
            // supported way libtorch's own Python bindings bring CUDA in.
            match unsafe { libloading::os::unix::Library::open(Some(&path), flags) } {
                Ok(lib) => {
                    // Keep it loaded for the life of the process.
                    std::mem::forget(lib);
                    return CudaSupport::Loaded(path);
                }
                Err(e) if path.is_absolute() => tried.push(format!("{}: {e}", path.display())),
                Err(_) => {} // not on the search path: the normal case on CPU-only hosts
            }
        }
        CudaSupport::Absent(tried)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_form() {
        for (s, d) in [
            ("cpu", DeviceSpec::Cpu),
            ("CUDA", DeviceSpec::Cuda(None)),
            ("cuda:0", DeviceSpec::Cuda(Some(0))),
            ("cuda:3", DeviceSpec::Cuda(Some(3))),
            (" auto ", DeviceSpec::Auto),
        ] {
            assert_eq!(s.parse::<DeviceSpec>().unwrap(), d, "{s}");
        }
        for bad in ["gpu", "cuda:", "cuda:x", "tpu", ""] {
            let err = bad.parse::<DeviceSpec>().unwrap_err().to_string();
            assert!(err.contains("device"), "{err}");
        }
    }

    #[test]
    fn serde_round_trip() {
        #[derive(Serialize, Deserialize)]
        struct C {
            device: DeviceSpec,
        }
        let c: C = toml::from_str("device = \"cuda:2\"").unwrap();
        assert_eq!(c.device, DeviceSpec::Cuda(Some(2)));
        assert!(toml::from_str::<C>("device = \"gpu0\"").is_err());
    }

    #[test]
    fn auto_never_fails_and_cuda_errors_cleanly_without_gpu() {
        let d = DeviceSpec::Auto.resolve().unwrap();
        if cuda_device_count() == 0 {
            assert_eq!(d, tch::Device::Cpu);
            let err = DeviceSpec::Cuda(None).resolve().unwrap_err().to_string();
            assert!(err.contains("CUDA is not available"), "{err}");
        } else {
            eprintln!("CUDA present ({}): testing device index bounds", enable_cuda().describe());
            assert!(DeviceSpec::Cuda(Some(1000)).resolve().is_err());
        }
    }

    #[test]
    fn bf16_autocast_sets_and_restores_the_dtype_and_refuses_cpu() {
        let before = ffi::cuda_autocast_dtype();
        let prev = ffi::set_cuda_autocast_dtype(tch::Kind::BFloat16);
        assert_eq!(ffi::cuda_autocast_dtype(), 15);
        ffi::set_cuda_autocast_dtype(prev);
        assert_eq!(ffi::cuda_autocast_dtype(), before);
        let err = autocast(tch::Device::Cpu, Precision::Bf16, || ()).unwrap_err().to_string();
        assert!(err.contains("precision"), "{err}");
        assert_eq!(autocast(tch::Device::Cpu, Precision::Fp32, || 7).unwrap(), 7);
    }
}
