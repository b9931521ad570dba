//! `ssl launch --nproc N -- pretrain ...`: a data-parallel job on one machine without Python.
//!
//! Starts N copies of this program with the variables torchrun would set (`RANK`,
//! `LOCAL_RANK`, `WORLD_SIZE`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`), waits for
//! them, and stops the others as soon as one fails, exiting with its status. Unless
//! `OMP_NUM_THREADS` is set, each process gets an equal share of the machine's cores for
//! libtorch's intra-op threads, so N processes do not each start a thread per core.

use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::LaunchArgs;

pub fn launch(args: &LaunchArgs) -> Result<()> {
    if args.nproc == 0 {
        bail!("--nproc must be at least 1");
    }
    let Some(first) = args.command.first() else {
        bail!(
            "nothing to launch: give the command after `--`, e.g. `ssl launch --nproc 2 -- pretrain simclr`"
        );
    };
    if first == "launch" {
        bail!("`ssl launch` cannot launch itself");
    }
    let port = match args.master_port {
        Some(p) => p,
        None => TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .context("cannot find a free port for the rendezvous; pass --master-port")?,
    };
    let exe = std::env::current_exe().context("cannot tell which program to start")?;
    let threads = match std::env::var_os("OMP_NUM_THREADS") {
        Some(_) => None,
        None => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let share = threads_per_process(cores, args.nproc);
            if args.nproc > 1 {
                eprintln!(
                    "ssl launch: OMP_NUM_THREADS={share} for each of {} processes ({cores} cores); set it to override",
                    args.nproc
                );
            }
            Some(share)
        }
    };
    let mut children: Vec<(usize, Child)> = Vec::with_capacity(args.nproc);
    for rank in 0..args.nproc {
        let mut command = Command::new(&exe);
        if let Some(t) = threads {
            command.env("OMP_NUM_THREADS", t.to_string());
        }
        let child = command
            .args(&args.command)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("GROUP_RANK", "0")
            .env("WORLD_SIZE", args.nproc.to_string())
            .env("LOCAL_WORLD_SIZE", args.nproc.to_string())
            .env("MASTER_ADDR", &args.master_addr)
            .env("MASTER_PORT", port.to_string())
            .spawn();
        match child {
            Ok(c) => children.push((rank, c)),
            Err(e) => {
                stop_all(&mut children);
                return Err(e).with_context(|| format!("cannot start rank {rank}"));
            }
        }
    }
    // Poll: the first failure stops the rest (a rank waiting on a dead peer would otherwise
    // wait for the collective timeout).
    loop {
        let mut running = false;
        for i in 0..children.len() {
            let (rank, child) = &mut children[i];
            match child.try_wait().with_context(|| format!("cannot wait for rank {rank}"))? {
                Some(status) if !status.success() => {
                    let rank = *rank;
                    stop_all(&mut children);
                    bail!("rank {rank} of {} failed ({status}); stopped the others", args.nproc);
                }
                Some(_) => {}
                None => running = true,
            }
        }
        if !running {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// libtorch intra-op threads for each of `nproc` processes sharing `cores`: an equal share,
/// at least one.
fn threads_per_process(cores: usize, nproc: usize) -> usize {
    (cores / nproc.max(1)).max(1)
}

fn stop_all(children: &mut [(usize, Child)]) {
    for (_, c) in children.iter_mut() {
        let _ = c.kill();
    }
    for (_, c) in children.iter_mut() {
        let _ = c.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::threads_per_process;

    #[test]
    fn processes_share_the_cores() {
        assert_eq!(threads_per_process(16, 4), 4);
        assert_eq!(threads_per_process(16, 3), 5);
        assert_eq!(threads_per_process(2, 4), 1);
        assert_eq!(threads_per_process(8, 1), 8);
    }
}
