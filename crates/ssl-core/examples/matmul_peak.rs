//! The FLOP rate of a large matrix multiplication on a device: the peak `cargo xtask bench
//! throughput` divides model FLOP/s by to give model FLOP utilisation (MFU).
//!
//! ```text
//! cargo run --release -p ssl-core --example matmul_peak -- [--device cpu|cuda] [--threads N] [--bf16] [--json]
//! ```
//!
//! Square matrices of side 2048 on CPU (8192 on CUDA), float32 (bfloat16 with `--bf16`); a
//! warm-up product, then the best of several timed ones (FLOPs = 2n³).

use std::time::Instant;

use ssl_core::device::DeviceSpec;
use ssl_core::tch::{Kind, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let json = args.iter().any(|a| a == "--json");
    let kind = if args.iter().any(|a| a == "--bf16") { Kind::BFloat16 } else { Kind::Float };
    let spec: DeviceSpec = value("--device").unwrap_or_else(|| "cpu".into()).parse()?;
    let device = spec.resolve()?;
    if let Some(t) = value("--threads") {
        ssl_core::tch::set_num_threads(t.parse()?);
    }
    let n: i64 = value("--n").map_or(Ok(if device.is_cuda() { 8192 } else { 2048 }), |s| s.parse())?;
    ssl_core::tch::manual_seed(0);
    let a = Tensor::randn([n, n], (kind, device));
    let b = Tensor::randn([n, n], (kind, device));
    let sync = || {
        if let ssl_core::tch::Device::Cuda(i) = device {
            ssl_core::tch::Cuda::synchronize(i as i64);
        }
    };
    let _ = a.matmul(&b);
    sync();
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let started = Instant::now();
        let _ = a.matmul(&b);
        sync();
        best = best.min(started.elapsed().as_secs_f64());
    }
    let gflops = 2.0 * (n as f64).powi(3) / best / 1e9;
    let threads = ssl_core::tch::get_num_threads();
    let dtype = if kind == Kind::BFloat16 { "bf16" } else { "fp32" };
    if json {
        println!(
            "{{\"device\": \"{}\", \"dtype\": \"{dtype}\", \"threads\": {threads}, \"n\": {n}, \"gflops\": {gflops:.3}}}",
            ssl_core::device::device_name(device)
        );
    } else {
        println!(
            "{n}x{n} {dtype} matmul on {}: {gflops:.1} GFLOP/s ({threads} threads)",
            ssl_core::device::device_name(device)
        );
    }
    Ok(())
}
