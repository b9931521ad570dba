//! # ssl-dist
//!
//! Data-parallel training for ssl-rs on the engine `torch.distributed` itself uses: PyTorch's
//! c10d, compiled into the libtorch ssl-rs links. A small C++ shim (in `cpp/`) opens a
//! `TCPStore` for the rendezvous and a `ProcessGroupGloo` over it; [`ProcessGroup`] wraps them
//! in a safe API and implements [`ssl_core::dist::Collective`], which the trainer uses to
//! broadcast weights, average gradients and gather contrastive embeddings.
//!
//! Launch is torchrun-compatible: [`GroupConfig::from_env`] reads `RANK`, `WORLD_SIZE`,
//! `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT` and torchrun's agent-store
//! variables, so `torchrun --no-python --nproc-per-node N ssl pretrain ...` works, and
//! `ssl launch --nproc N -- pretrain ...` sets the same variables on one machine without Python.
//!
//! Collectives run through Gloo's TCP transport; tensors on a GPU are staged through host
//! memory. With `SSL_DIST_BACKEND=nccl`, tensors on a GPU go through libtorch_cuda's
//! `ProcessGroupNCCL` instead (host tensors and barriers stay on Gloo, as torch's
//! `cpu:gloo,cuda:nccl`). The NCCL path is opt-in because it has not yet run on GPU hardware
//! in this project's CI; see the crate README.
//!
//! ```no_run
//! use ssl_dist::{GroupConfig, ProcessGroup};
//! use ssl_core::dist::Collective;
//! use ssl_core::tch::{Device, Tensor};
//!
//! // In every process of a job started by torchrun or `ssl launch`:
//! let cfg = GroupConfig::from_env()?.expect("started by a launcher");
//! let group = ProcessGroup::connect(&cfg)?;
//! let mut t = [Tensor::from_slice(&[group.rank() as f32])];
//! group.all_reduce_sum(&mut t)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// The crate is an FFI wrapper: every unsafe block calls the shim and says why it is sound.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::Mutex;
use std::time::Duration;

use ssl_core::dist::Collective;
use ssl_core::tch::{Device, Tensor};

/// What can go wrong setting up or running collectives.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A launcher variable is missing or malformed.
    #[error("environment variable {name}: {message}")]
    Env {
        /// The variable.
        name: String,
        /// What is wrong with it.
        message: String,
    },
    /// The rendezvous (TCPStore) failed: the master is unreachable, or not every rank came.
    #[error("rendezvous at {addr}:{port} (rank {rank} of {world}) failed: {message}")]
    Rendezvous {
        /// The store's host.
        addr: String,
        /// The store's port.
        port: u16,
        /// This process's rank.
        rank: usize,
        /// The number of processes.
        world: usize,
        /// c10d's message.
        message: String,
    },
    /// A collective failed: another process died, timed out, or sent a different shape.
    #[error("{op} on rank {rank} of {world} failed (did another process stop?): {message}")]
    Collective {
        /// The operation.
        op: &'static str,
        /// This process's rank.
        rank: usize,
        /// The number of processes.
        world: usize,
        /// c10d's message.
        message: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to join a job: who this process is and where the rendezvous store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// This process's global rank.
    pub rank: usize,
    /// The number of processes in the job.
    pub world_size: usize,
    /// This process's rank on its machine (which GPU it should use).
    pub local_rank: usize,
    /// Processes on this machine.
    pub local_world_size: usize,
    /// Host of the TCPStore (rank 0's machine, or torchrun's agent).
    pub master_addr: String,
    /// Port of the TCPStore.
    pub master_port: u16,
    /// Whether a launcher already serves the store (torchrun's agent store): then no rank
    /// starts a server, and keys live under the restart attempt's prefix as torch does.
    pub agent_store: Option<AgentStore>,
    /// Network interface Gloo binds to (`GLOO_SOCKET_IFNAME`); `None`: the one the host name
    /// resolves to.
    pub interface: Option<String>,
    /// How long the rendezvous and every collective may take before failing.
    pub timeout: Duration,
    /// Which backend carries tensors that live on a GPU (`SSL_DIST_BACKEND`).
    pub cuda_backend: CudaBackend,
}

/// The backend for collectives on GPU tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CudaBackend {
    /// Gloo over TCP, through a host copy of each tensor (works with any libtorch).
    #[default]
    Gloo,
    /// libtorch_cuda's NCCL process group, on the tensors in place (needs a CUDA build of
    /// libtorch and one GPU per process).
    Nccl,
}

impl std::str::FromStr for CudaBackend {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "gloo" => Ok(Self::Gloo),
            "nccl" => Ok(Self::Nccl),
            other => Err(format!("unknown backend `{other}` (expected gloo or nccl)")),
        }
    }
}

/// torchrun's agent store: the launcher serves the TCPStore, and each restart attempt uses
/// its own key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentStore {
    /// `TORCHELASTIC_RESTART_COUNT`.
    pub restart_count: u64,
}

/// The collective timeout when `SSL_DIST_TIMEOUT` does not set one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

impl GroupConfig {
    /// The job described by a launcher's environment, or `None` when this process was not
    /// started by one (`WORLD_SIZE` unset) or is alone (`WORLD_SIZE=1`). Reads `RANK`,
    /// `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`,
    /// `TORCHELASTIC_USE_AGENT_STORE`, `TORCHELASTIC_RESTART_COUNT`, `GLOO_SOCKET_IFNAME`,
    /// `SSL_DIST_TIMEOUT` (seconds) and `SSL_DIST_BACKEND` (`gloo`, the default, or `nccl`:
    /// the backend for GPU tensors). A missing or malformed variable is an error naming it.
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`from_env`](Self::from_env) over any variable lookup (for tests and launchers).
    ///
    /// ```
    /// use ssl_dist::GroupConfig;
    /// let env = [("RANK", "1"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500")];
    /// let cfg = GroupConfig::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
    ///     .unwrap()
    ///     .unwrap();
    /// assert_eq!((cfg.rank, cfg.world_size, cfg.local_rank, cfg.master_port), (1, 2, 1, 29500));
    /// ```
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let Some(world) = get("WORLD_SIZE") else { return Ok(None) };
        let world_size: usize = parse("WORLD_SIZE", &world)?;
        if world_size == 0 {
            return Err(env_error("WORLD_SIZE", "must be at least 1"));
        }
        if world_size == 1 {
            return Ok(None);
        }
        let need = |name: &str| get(name).ok_or_else(|| env_error(name, "must be set when WORLD_SIZE > 1"));
        let rank: usize = parse("RANK", &need("RANK")?)?;
        if rank >= world_size {
            return Err(env_error("RANK", &format!("{rank} is not below WORLD_SIZE {world_size}")));
        }
        let local_rank = get("LOCAL_RANK").map(|v| parse("LOCAL_RANK", &v)).transpose()?.unwrap_or(rank);
        let local_world_size =
            get("LOCAL_WORLD_SIZE").map(|v| parse("LOCAL_WORLD_SIZE", &v)).transpose()?.unwrap_or(world_size);
        let master_addr = need("MASTER_ADDR")?;
        let master_port: u16 = parse("MASTER_PORT", &need("MASTER_PORT")?)?;
        let agent = get("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let agent_store = if agent {
            let count = get("TORCHELASTIC_RESTART_COUNT").unwrap_or_else(|| "0".into());
            Some(AgentStore { restart_count: parse("TORCHELASTIC_RESTART_COUNT", &count)? })
        } else {
            None
        };
        let timeout = match get("SSL_DIST_TIMEOUT") {
            Some(v) => {
                let secs: f64 = parse("SSL_DIST_TIMEOUT", &v)?;
                if !(secs > 0.0 && secs.is_finite()) {
                    return Err(env_error("SSL_DIST_TIMEOUT", "must be a positive number of seconds"));
                }
                Duration::from_secs_f64(secs)
            }
            None => DEFAULT_TIMEOUT,
        };
        Ok(Some(Self {
            rank,
            world_size,
            local_rank,
            local_world_size,
            master_addr,
            master_port,
            agent_store,
            interface: get("GLOO_SOCKET_IFNAME").filter(|s| !s.is_empty()),
            timeout,
            cuda_backend: get("SSL_DIST_BACKEND")
                .map(|v| parse("SSL_DIST_BACKEND", &v))
                .transpose()?
                .unwrap_or_default(),
        }))
    }
}

fn env_error(name: &str, message: &str) -> Error {
    Error::Env { name: name.into(), message: message.into() }
}

fn parse<T: std::str::FromStr>(name: &str, value: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    value.trim().parse().map_err(|e| env_error(name, &format!("`{value}`: {e}")))
}

/// One process's membership in a Gloo process group, and optionally an NCCL one for GPU
/// tensors (and the TCPStore it met the others through). Collectives are serialised per
/// group; every process must issue the same ones in the same order.
pub struct ProcessGroup {
    group: *mut c_void,
    /// The NCCL group for GPU tensors, when `SSL_DIST_BACKEND=nccl`; null otherwise.
    nccl: *mut c_void,
    store: *mut c_void,
    /// The name the groups are registered under for PyTorch's functional collectives.
    name: CString,
    /// The registered c10d::ProcessGroup (the registry only holds a weak reference).
    registered: *mut c_void,
    rank: usize,
    world: usize,
    calls: Mutex<()>,
}

// SAFETY: the c10d objects behind the pointers are thread-safe to call (c10d's contract);
// ssl-dist serialises its calls with `calls` anyway, and frees them only in `drop`.
unsafe impl Send for ProcessGroup {}
unsafe impl Sync for ProcessGroup {}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup").field("rank", &self.rank).field("world", &self.world).finish()
    }
}

impl ProcessGroup {
    /// Meets the other processes (rank 0 serves the TCPStore unless a launcher's agent does)
    /// and opens a Gloo process group, full mesh, over them, plus an NCCL one when
    /// `cfg.cuda_backend` asks for it. Fails with [`Error::Rendezvous`] when they do not all
    /// arrive within `cfg.timeout`, or when NCCL is asked for and this libtorch has no CUDA
    /// (checked before meeting anyone).
    pub fn connect(cfg: &GroupConfig) -> Result<Self> {
        let rendezvous = |message: String| Error::Rendezvous {
            addr: cfg.master_addr.clone(),
            port: cfg.master_port,
            rank: cfg.rank,
            world: cfg.world_size,
            message,
        };
        let host = CString::new(cfg.master_addr.as_str()).map_err(|e| rendezvous(e.to_string()))?;
        let prefix = match &cfg.agent_store {
            Some(a) => format!("/worker/attempt_{}", a.restart_count),
            None => String::new(),
        };
        let prefix = CString::new(prefix).map_err(|e| rendezvous(e.to_string()))?;
        let iface =
            CString::new(cfg.interface.clone().unwrap_or_default()).map_err(|e| rendezvous(e.to_string()))?;
        let timeout_ms = i64::try_from(cfg.timeout.as_millis()).unwrap_or(i64::MAX);
        let is_server = cfg.agent_store.is_none() && cfg.rank == 0;
        let world = i32::try_from(cfg.world_size).map_err(|e| rendezvous(e.to_string()))?;
        let rank = i32::try_from(cfg.rank).map_err(|e| rendezvous(e.to_string()))?;
        if cfg.cuda_backend == CudaBackend::Nccl {
            let support = ssl_core::device::enable_cuda();
            if matches!(support, ssl_core::device::CudaSupport::Absent(_)) {
                return Err(rendezvous(format!("SSL_DIST_BACKEND=nccl needs CUDA: {}", support.describe())));
            }
            // SAFETY: takes no arguments; returns NULL or an owned message.
            check(unsafe { ffi::ssl_dist_nccl_available() })
                .map_err(|e| rendezvous(format!("SSL_DIST_BACKEND=nccl: {e}")))?;
        }
        let mut store = std::ptr::null_mut();
        // SAFETY: the strings are NUL-terminated and outlive the call; `store` receives an
        // owned handle only on success.
        check(unsafe {
            ffi::ssl_dist_store_new(
                host.as_ptr(),
                cfg.master_port,
                world,
                is_server,
                prefix.as_ptr(),
                timeout_ms,
                &mut store,
            )
        })
        .map_err(rendezvous)?;
        let mut group = std::ptr::null_mut();
        // SAFETY: `store` is the live handle made above; `group` receives an owned handle only
        // on success.
        let made = check(unsafe {
            ffi::ssl_dist_gloo_new(store, rank, world, iface.as_ptr(), timeout_ms, &mut group)
        });
        if let Err(e) = made {
            // SAFETY: the store handle is ours and no group refers to it.
            unsafe { ffi::ssl_dist_store_free(store) };
            return Err(rendezvous(e));
        }
        // Unique per process: tests and tools may open several groups one after another.
        static GROUPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = GROUPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = CString::new(format!("ssl_dist_{n}")).map_err(|e| rendezvous(e.to_string()))?;
        let mut this = Self {
            group,
            nccl: std::ptr::null_mut(),
            store,
            name,
            registered: std::ptr::null_mut(),
            rank: cfg.rank,
            world: cfg.world_size,
            calls: Mutex::new(()),
        };
        if cfg.cuda_backend == CudaBackend::Nccl {
            let mut nccl = std::ptr::null_mut();
            // SAFETY: `store` is live (owned by `this`, which frees it in `drop`); `nccl`
            // receives an owned handle only on success.
            check(unsafe { ffi::ssl_dist_nccl_new(store, rank, world, timeout_ms, &mut nccl) })
                .map_err(|e| rendezvous(format!("opening the NCCL process group: {e}")))?;
            this.nccl = nccl;
        }
        let mut registered = std::ptr::null_mut();
        // SAFETY: the store and group handles are live (owned by `this`); the name is
        // NUL-terminated and outlives the call; `registered` receives an owned handle only on
        // success.
        check(unsafe {
            ffi::ssl_dist_register(store, group, this.nccl, rank, world, this.name.as_ptr(), &mut registered)
        })
        .map_err(|e| rendezvous(format!("registering the process group: {e}")))?;
        this.registered = registered;
        Ok(this)
    }

    /// Whether tensors on a GPU go through NCCL (else through Gloo and host memory).
    pub fn uses_nccl(&self) -> bool {
        !self.nccl.is_null()
    }

    /// The NCCL group when `t` lives on a GPU and NCCL is open.
    fn nccl_for(&self, t: &Tensor) -> Option<*mut c_void> {
        (t.device().is_cuda() && !self.nccl.is_null()).then_some(self.nccl)
    }

    fn run(&self, op: &'static str, f: impl FnOnce() -> *mut c_char) -> Result<()> {
        let _serial = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        check(f()).map_err(|message| self.collective_error(op, message))
    }

    fn collective_error(&self, op: &'static str, message: String) -> Error {
        Error::Collective { op, rank: self.rank, world: self.world, message }
    }

    /// Sums `tensors` (dense, contiguous) elementwise over all processes, in place, one
    /// collective per tensor (c10d reads a list as one tensor per local device); callers that
    /// reduce many small tensors should flatten them into buckets first, as the trainer does.
    pub fn all_reduce_sum_(&self, tensors: &mut [Tensor]) -> Result<()> {
        self.check_dense("all_reduce", tensors)?;
        for t in tensors.iter_mut() {
            self.on_device_or_host("all_reduce", t, |group, h| {
                let ptr: *mut c_void = h.as_mut_ptr().cast();
                // SAFETY: the pointer is a live at::Tensor owned by the caller, borrowed
                // mutably for the duration of the call.
                self.run("all_reduce", || unsafe { ffi::ssl_dist_all_reduce_sum(group, ptr) })
            })?;
        }
        Ok(())
    }

    /// Replaces `tensors` by rank `root`'s, in place, one collective per tensor.
    pub fn broadcast_(&self, tensors: &mut [Tensor], root: usize) -> Result<()> {
        if root >= self.world {
            return Err(self.collective_error("broadcast", format!("root {root} is not a rank")));
        }
        self.check_dense("broadcast", tensors)?;
        let root = root as i32;
        for t in tensors.iter_mut() {
            self.on_device_or_host("broadcast", t, |group, h| {
                let ptr: *mut c_void = h.as_mut_ptr().cast();
                // SAFETY: as in `all_reduce_sum_`.
                self.run("broadcast", || unsafe { ffi::ssl_dist_broadcast(group, ptr, root) })
            })?;
        }
        Ok(())
    }

    /// Every process's `tensor` (same shape and kind everywhere), in rank order.
    pub fn all_gather_(&self, tensor: &Tensor) -> Result<Vec<Tensor>> {
        let device = tensor.device();
        let (group, mut input) = match self.nccl_for(tensor) {
            Some(nccl) => (nccl, tensor.contiguous()),
            None => (self.group, tensor.to_device(Device::Cpu).contiguous()),
        };
        let mut outputs: Vec<Tensor> = (0..self.world).map(|_| input.empty_like()).collect();
        let mut ptrs: Vec<*mut c_void> = outputs.iter_mut().map(|t| t.as_mut_ptr().cast()).collect();
        let input_ptr: *mut c_void = input.as_mut_ptr().cast();
        let world = self.world as i32;
        // SAFETY: the input and the `world` outputs are live at::Tensors owned here.
        self.run("all_gather", || unsafe {
            ffi::ssl_dist_all_gather(group, input_ptr, ptrs.as_mut_ptr(), world)
        })?;
        Ok(outputs.into_iter().map(|t| t.to_device(device)).collect())
    }

    /// Every process's `tensor` (same shape and kind everywhere) concatenated along dim 0 in
    /// rank order, on the autograd graph: PyTorch's functional `all_gather_into_tensor`, with
    /// a backward that reduce-scatters (sums) the gradient over the processes during the
    /// backward pass (an autograd function in the shim), so each process's input receives the
    /// gradient of every process's loss. Every process must then run the same backward passes.
    /// A GPU tensor without NCCL goes through a host copy (differentiably).
    pub fn all_gather_autograd_(&self, tensor: &Tensor) -> Result<Tensor> {
        let device = tensor.device();
        let staged = device.is_cuda() && self.nccl_for(tensor).is_none();
        let input = if staged { tensor.to_device(Device::Cpu) } else { tensor.shallow_clone() };
        let world = self.world as i32;
        let mut out: *mut c_void = std::ptr::null_mut();
        let input_ptr: *const c_void = input.as_ptr().cast();
        // SAFETY: the name is NUL-terminated and lives in `self`; the input is a live
        // at::Tensor borrowed for the call; `out` receives a new heap at::Tensor only on
        // success, which `Tensor::from_ptr` takes ownership of below.
        self.run("all_gather", || unsafe {
            ffi::ssl_dist_all_gather_autograd(self.name.as_ptr(), world, input_ptr, &mut out)
        })?;
        // SAFETY: `out` is a fresh at::Tensor allocated with `new` by the shim, as tch's own
        // tensors are; ownership passes to the returned Tensor.
        let gathered = unsafe { Tensor::from_ptr(out.cast()) };
        Ok(if staged { gathered.to_device(device) } else { gathered })
    }

    /// Returns once every process has reached it.
    pub fn barrier_(&self) -> Result<()> {
        // SAFETY: the group handle is live for `self`'s lifetime.
        self.run("barrier", || unsafe { ffi::ssl_dist_barrier(self.group) })
    }

    /// Runs `f` with the group for `t`: NCCL on the GPU tensor itself when it is open, else
    /// Gloo on `t` if it is in host memory, else on a host copy written back afterwards (Gloo's
    /// TCP transport reads and writes host memory).
    fn on_device_or_host(
        &self,
        op: &'static str,
        t: &mut Tensor,
        f: impl FnOnce(*mut c_void, &mut Tensor) -> Result<()>,
    ) -> Result<()> {
        if let Some(nccl) = self.nccl_for(t) {
            return f(nccl, t);
        }
        if t.device() == Device::Cpu {
            return f(self.group, t);
        }
        let mut host = t.to_device(Device::Cpu);
        f(self.group, &mut host)?;
        // Outside autograd: the tensor may be a parameter (the broadcast of initial weights).
        tch::no_grad(|| t.f_copy_(&host)).map_err(|e| self.collective_error(op, format!("copying back: {e}")))
    }

    fn check_dense(&self, op: &'static str, tensors: &[Tensor]) -> Result<()> {
        for (i, t) in tensors.iter().enumerate() {
            if !t.is_contiguous() {
                return Err(self.collective_error(op, format!("tensor {i} is not contiguous")));
            }
        }
        Ok(())
    }
}

impl Collective for ProcessGroup {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.world
    }
    fn all_reduce_sum(&self, tensors: &mut [Tensor]) -> ssl_core::Result<()> {
        self.all_reduce_sum_(tensors).map_err(core_error)
    }
    fn broadcast(&self, tensors: &mut [Tensor], root: usize) -> ssl_core::Result<()> {
        self.broadcast_(tensors, root).map_err(core_error)
    }
    fn all_gather(&self, tensor: &Tensor) -> ssl_core::Result<Vec<Tensor>> {
        self.all_gather_(tensor).map_err(core_error)
    }
    fn all_gather_autograd(&self, tensor: &Tensor) -> ssl_core::Result<Tensor> {
        self.all_gather_autograd_(tensor).map_err(core_error)
    }
    fn barrier(&self) -> ssl_core::Result<()> {
        self.barrier_().map_err(core_error)
    }
}

fn core_error(e: Error) -> ssl_core::Error {
    ssl_core::Error::Distributed { message: e.to_string() }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: the handles are owned by `self` and freed once, the groups first (they hold
        // their own references to the store).
        unsafe {
            if !self.registered.is_null() {
                ffi::ssl_dist_unregister(self.registered);
            }
            if !self.nccl.is_null() {
                ffi::ssl_dist_group_free(self.nccl);
            }
            ffi::ssl_dist_group_free(self.group);
            ffi::ssl_dist_store_free(self.store);
        }
    }
}

/// Takes ownership of a shim message: `Ok` for NULL, else the text (freed here).
fn check(message: *mut c_char) -> std::result::Result<(), String> {
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: a non-NULL return is a NUL-terminated string malloc'd by the shim, ours to free.
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned();
    // SAFETY: as above; freed exactly once.
    unsafe { ffi::ssl_dist_free_string(message) };
    Err(text)
}

mod ffi {
    use std::ffi::{c_char, c_void};

    extern "C" {
        pub fn ssl_dist_free_string(s: *mut c_char);
        pub fn ssl_dist_store_new(
            host: *const c_char,
            port: u16,
            world: i32,
            is_server: bool,
            prefix: *const c_char,
            timeout_ms: i64,
            out: *mut *mut c_void,
        ) -> *mut c_char;
        pub fn ssl_dist_store_free(store: *mut c_void);
        pub fn ssl_dist_gloo_new(
            store: *mut c_void,
            rank: i32,
            world: i32,
            interface: *const c_char,
            timeout_ms: i64,
            out: *mut *mut c_void,
        ) -> *mut c_char;
        pub fn ssl_dist_nccl_available() -> *mut c_char;
        pub fn ssl_dist_nccl_new(
            store: *mut c_void,
            rank: i32,
            world: i32,
            timeout_ms: i64,
            out: *mut *mut c_void,
        ) -> *mut c_char;
        pub fn ssl_dist_group_free(group: *mut c_void);
        pub fn ssl_dist_register(
            store: *mut c_void,
            gloo: *mut c_void,
            nccl: *mut c_void,
            rank: i32,
            world: i32,
            name: *const c_char,
            out: *mut *mut c_void,
        ) -> *mut c_char;
        pub fn ssl_dist_unregister(registered: *mut c_void);
        pub fn ssl_dist_all_gather_autograd(
            name: *const c_char,
            world: i32,
            input: *const c_void,
            out: *mut *mut c_void,
        ) -> *mut c_char;
        pub fn ssl_dist_all_reduce_sum(group: *mut c_void, tensor: *mut c_void) -> *mut c_char;
        pub fn ssl_dist_broadcast(group: *mut c_void, tensor: *mut c_void, root: i32) -> *mut c_char;
        pub fn ssl_dist_all_gather(
            group: *mut c_void,
            input: *mut c_void,
            outputs: *mut *mut c_void,
            world: i32,
        ) -> *mut c_char;
        pub fn ssl_dist_barrier(group: *mut c_void) -> *mut c_char;
    }
}
