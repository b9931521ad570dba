//! Times the all-reduce over the processes of a job: the cost of averaging one gradient
//! bucket. `--device cuda` puts the tensor on the `LOCAL_RANK`-th GPU (through Gloo and host
//! memory, or through NCCL with `SSL_DIST_BACKEND=nccl`). Start it with a launcher, e.g. on one machine:
//!
//! ```text
//! cargo build --release -p ssl-dist --example all_reduce
//! for r in 0 1; do RANK=$r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29512 \
//!     target/release/examples/all_reduce --mib 25 --iters 20 & done; wait
//! ```
//!
//! or under `torchrun --no-python --nproc-per-node 2 target/release/examples/all_reduce`.
//! Rank 0 prints the median time per all-reduce and the bus bandwidth
//! (`2·(world-1)/world · bytes / time`, the figure NCCL's tests report).

use std::time::Instant;

use ssl_core::dist::Collective;
use ssl_core::tch::{Device, Kind, Tensor};
use ssl_dist::{GroupConfig, ProcessGroup};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let mib: f64 = value("--mib").map_or(Ok(25.0), |s| s.parse())?;
    let iters: usize = value("--iters").map_or(Ok(20), |s| s.parse())?;
    let on_gpu = match value("--device").as_deref() {
        None | Some("cpu") => false,
        Some("cuda") => true,
        Some(other) => return Err(format!("--device {other}: expected cpu or cuda").into()),
    };
    let Some(cfg) = GroupConfig::from_env()? else {
        return Err("start this under a launcher (WORLD_SIZE > 1): see the example's docs".into());
    };
    let device = if on_gpu {
        if ssl_core::device::cuda_device_count() <= cfg.local_rank {
            return Err(format!("--device cuda: no GPU {} on this machine", cfg.local_rank).into());
        }
        Device::Cuda(cfg.local_rank)
    } else {
        Device::Cpu
    };
    let group = ProcessGroup::connect(&cfg)?;
    let numel = (mib * 1_048_576.0 / 4.0) as i64;
    let mut t = [Tensor::ones([numel], (Kind::Float, device))];
    group.all_reduce_sum(&mut t)?; // warm-up: connections, buffers
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        group.barrier()?;
        let start = Instant::now();
        group.all_reduce_sum(&mut t)?;
        if on_gpu {
            // The NCCL work is queued on the GPU: time it to completion.
            let _ = t[0].sum(Kind::Float).double_value(&[]);
        }
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let world = group.world_size() as f64;
    let bytes = numel as f64 * 4.0;
    if group.rank() == 0 {
        println!(
            "{{\"world\": {world}, \"mib\": {mib}, \"device\": \"{}\", \"nccl\": {}, \"median_s\": {median:.6}, \"bus_gb_per_s\": {:.3}}}",
            ssl_core::device::device_name(device),
            group.uses_nccl(),
            2.0 * (world - 1.0) / world * bytes / median / 1e9
        );
    }
    Ok(())
}
