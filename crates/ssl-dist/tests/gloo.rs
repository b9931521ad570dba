//! Real multi-process runs on loopback with Gloo. The test binary starts copies of itself as
//! the ranks (the `rank_main` test, which does nothing unless `SSL_DIST_ROLE` is set), passes
//! them torchrun's variables, and compares what they write with a single-process run.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ssl_core::blocks::{MlpHead, MlpHeadConfig};
use ssl_core::data::{BatchBuilder, DataLoader, InMemoryDataset, LoaderConfig, RandomSampler};
use ssl_core::dist::Collective;
use ssl_core::encoder::Encoder;
use ssl_core::optim::{OptimizerConfig, OptimizerKind};
use ssl_core::rng::SslRng;
use ssl_core::tch::{nn, Device, Kind, Tensor};
use ssl_core::trainer::{TrainConfig, Trainer};
use ssl_core::{LossOutput, Objective, StepContext};
use ssl_dist::{CudaBackend, GroupConfig, ProcessGroup};

const DIM: i64 = 6;
const PER_RANK_BATCH: usize = 4;
const STEPS: u64 = 5;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Starts `world` ranks running `role`, with `out` as their output folder.
fn spawn_ranks(role: &str, world: usize, out: &Path, extra: &[(&str, &str)]) -> Vec<Child> {
    let exe = std::env::current_exe().expect("test binary");
    let port = free_port().to_string();
    (0..world)
        .map(|rank| {
            let mut cmd = Command::new(&exe);
            cmd.args(["rank_main", "--exact", "--nocapture", "--test-threads=1"])
                .env("SSL_DIST_ROLE", role)
                .env("SSL_DIST_OUT", out)
                .env("RANK", rank.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("LOCAL_WORLD_SIZE", world.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .env("GLOO_SOCKET_IFNAME", "lo")
                .env("SSL_DIST_TIMEOUT", "60")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            for (k, v) in extra {
                cmd.env(k, v);
            }
            cmd.spawn().expect("spawn a rank")
        })
        .collect()
}

fn wait_all(children: Vec<Child>) -> Vec<Output> {
    children.into_iter().map(|c| c.wait_with_output().expect("rank output")).collect()
}

fn assert_ok(outputs: &[Output]) {
    for (rank, o) in outputs.iter().enumerate() {
        assert!(
            o.status.success(),
            "rank {rank} failed: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// What the toy model trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A two-layer MLP without BatchNorm, regression loss.
    Plain,
    /// The same MLP with an InfoNCE loss over the batch (negatives gathered from every process).
    Contrastive,
    /// A three-layer MLP with BatchNorm after both hidden layers, regression loss, BatchNorm
    /// synchronised across processes.
    SyncBatchNorm,
    /// As `SyncBatchNorm`, without the synchronisation.
    LocalBatchNorm,
}

struct Toy {
    vs: nn::VarStore,
    net: Box<dyn nn::ModuleT>,
    mode: Mode,
}

impl Toy {
    fn new(mode: Mode) -> Self {
        ssl_core::tch::manual_seed(7);
        let vs = nn::VarStore::new(Device::Cpu);
        let p = vs.root();
        let net: Box<dyn nn::ModuleT> = match mode {
            Mode::Plain | Mode::Contrastive => Box::new(
                nn::seq()
                    .add(nn::linear(&p / "a", DIM, 16, Default::default()))
                    .add_fn(|x| x.tanh())
                    .add(nn::linear(&p / "b", 16, DIM, Default::default())),
            ),
            Mode::SyncBatchNorm | Mode::LocalBatchNorm => {
                let cfg = MlpHeadConfig { hidden_dim: 16, layers: 3, ..MlpHeadConfig::simclr(DIM, DIM) };
                Box::new(MlpHead::new(&p / "head", &cfg).expect("head"))
            }
        };
        Self { vs, net, mode }
    }
}

impl Encoder for Toy {
    fn encode(&self, x: &Tensor, train: bool) -> Tensor {
        self.net.forward_t(x, train)
    }
    fn output_dim(&self) -> i64 {
        DIM
    }
}

impl Objective for Toy {
    type Batch = Tensor;
    fn name(&self) -> &str {
        "toy"
    }
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
    fn forward(&mut self, x: &Tensor, _: &StepContext) -> ssl_core::Result<LossOutput> {
        let z = self.net.forward_t(x, true);
        if self.mode != Mode::Contrastive {
            let target = x.flip([1]);
            return Ok(LossOutput::new(z.mse_loss(&target, ssl_core::tch::Reduction::Mean)));
        }
        // Anchors: this process's rows; keys: the inputs' embeddings from every process.
        let keys = self.net.forward_t(&(x * 0.9), true);
        let (all, offset) = ssl_core::dist::all_gather_with_grad(&keys)?;
        let logits = z.matmul(&all.tr()) / 0.5;
        let n = z.size()[0];
        let labels = Tensor::arange_start(offset, offset + n, (Kind::Int64, Device::Cpu));
        Ok(LossOutput::new(logits.cross_entropy_for_logits(&labels)))
    }
    fn encoder(&self) -> &dyn Encoder {
        self
    }
}

struct Rows;
impl BatchBuilder<Vec<f32>> for Rows {
    type Sample = Vec<f32>;
    type Batch = Tensor;
    fn prepare(&self, x: Vec<f32>, _: &mut SslRng) -> ssl_core::Result<Vec<f32>> {
        Ok(x)
    }
    fn collate(&self, xs: Vec<Vec<f32>>) -> ssl_core::Result<Tensor> {
        let n = xs.len() as i64;
        Ok(Tensor::from_slice(&xs.concat()).view([n, DIM]))
    }
}

fn train(mode: Mode, batch_size: usize, collective: Option<std::sync::Arc<dyn Collective>>) -> Toy {
    let rows: Vec<Vec<f32>> =
        (0..64).map(|i| (0..DIM).map(|j| ((i * 7 + j * 3) % 11) as f32 / 5.0 - 1.0).collect()).collect();
    let ds = InMemoryDataset::new("rows", rows).expect("dataset");
    let cfg = LoaderConfig { batch_size, drop_last: true, prefetch: 0, seed: 1 };
    let loader = DataLoader::new(ds, Rows, RandomSampler::new(3), cfg).expect("loader");
    let mut model = Toy::new(mode);
    let train = TrainConfig {
        steps: STEPS,
        progress: false,
        optimizer: OptimizerConfig {
            name: OptimizerKind::Sgd,
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.0,
            ..Default::default()
        },
        sync_batchnorm: mode == Mode::SyncBatchNorm,
        ..Default::default()
    };
    Trainer::new(train).collective(collective).fit(&mut model, &loader).expect("training");
    model
}

fn weights(model: &Toy) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = model.vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// What a rank does, chosen by `SSL_DIST_ROLE`; a no-op in a normal test run.
#[test]
fn rank_main() {
    let Ok(role) = std::env::var("SSL_DIST_ROLE") else { return };
    let out = std::path::PathBuf::from(std::env::var("SSL_DIST_OUT").expect("SSL_DIST_OUT"));
    let cfg = GroupConfig::from_env().expect("launcher variables").expect("WORLD_SIZE > 1");
    let group = ProcessGroup::connect(&cfg).expect("rendezvous");
    let rank = group.rank();
    match role.as_str() {
        "collectives" => {
            let mut t = [Tensor::from_slice(&[rank as f32 + 1.0, 10.0])];
            group.all_reduce_sum_(&mut t).unwrap();
            let mut b = [Tensor::from_slice(&[rank as f32; 3])];
            group.broadcast_(&mut b, 1).unwrap();
            let g = group.all_gather_(&Tensor::from_slice(&[rank as i64 * 100])).unwrap();
            group.barrier_().unwrap();
            let line = format!(
                "{:?} {:?} {:?}",
                Vec::<f32>::try_from(&t[0]).unwrap(),
                Vec::<f32>::try_from(&b[0]).unwrap(),
                g.iter().map(|t| t.int64_value(&[0])).collect::<Vec<_>>()
            );
            std::fs::write(out.join(format!("rank{rank}.txt")), line).unwrap();
        }
        "train" | "train_contrastive" | "train_sync_bn" | "train_local_bn" => {
            let group: std::sync::Arc<dyn Collective> = std::sync::Arc::new(group);
            let model = train(mode_of(&role), PER_RANK_BATCH, Some(group));
            let named = weights(&model);
            let refs: Vec<(&str, &Tensor)> = named.iter().map(|(n, t)| (n.as_str(), t)).collect();
            Tensor::write_safetensors(&refs, out.join(format!("rank{rank}.safetensors"))).unwrap();
        }
        "losses" => {
            let group: std::sync::Arc<dyn Collective> = std::sync::Arc::new(group);
            let _active = ssl_core::dist::activate(group.clone());
            let grads: Vec<(String, Tensor)> = LOSSES
                .iter()
                .map(|&name| {
                    let mut g = [loss_grad(name, rank, 2)];
                    group.all_reduce_sum(&mut g).unwrap();
                    (name.to_string(), &g[0] / 2.0)
                })
                .collect();
            let refs: Vec<(&str, &Tensor)> = grads.iter().map(|(n, t)| (n.as_str(), t)).collect();
            Tensor::write_safetensors(&refs, out.join(format!("rank{rank}.safetensors"))).unwrap();
        }
        "autograd_gather" => {
            // x_r of rank r, gathered mid-graph; loss_r = sum(W_r ⊙ tanh(gathered)). The
            // gradient of x_r must be tanh'(x_r) ⊙ the sum over ranks of W_r' at r's rows.
            let x =
                Tensor::from_slice(&[0.1f32 * (rank as f32 + 1.0); 6]).view([3, 2]).set_requires_grad(true);
            let gathered = group.all_gather_autograd_(&(&x * 2.0)).unwrap();
            assert_eq!(gathered.size(), [6, 2]);
            let w = Tensor::arange(12, (Kind::Float, Device::Cpu)).view([6, 2]) * (rank as f64 + 1.0);
            // A plain sum hands the gather a broadcast (non-contiguous) gradient.
            let summed = group.all_gather_autograd_(&x).unwrap().sum(Kind::Float);
            ((gathered.tanh() * w).sum(Kind::Float) + summed).backward();
            let refs = [("gathered", &gathered.detach()), ("grad", &x.grad())];
            Tensor::write_safetensors(&refs, out.join(format!("rank{rank}.safetensors"))).unwrap();
        }
        "shuffle" => {
            let group: std::sync::Arc<dyn Collective> = std::sync::Arc::new(group);
            let _active = ssl_core::dist::activate(group);
            ssl_core::tch::manual_seed(11); // rank 0's permutations, hence the test, are fixed
            let x = shuffle_rows(rank as i64);
            let same = ssl_core::dist::apply_shuffled(&x, 2, |c| Ok(c.copy())).unwrap();
            assert!(same.equal(&x), "the shuffle does not come back in order");
            // Five rounds of: every row replaced by the column sums of the chunk it was put in.
            let sums: Vec<Tensor> = (0..5)
                .map(|_| {
                    ssl_core::dist::apply_shuffled(&x, 2, |c| {
                        Ok(c.sum_dim_intlist(0, true, Kind::Float).expand_as(c).contiguous())
                    })
                    .unwrap()
                })
                .collect();
            let refs: Vec<(String, &Tensor)> =
                sums.iter().enumerate().map(|(i, t)| (format!("round{i}"), t)).collect();
            let refs: Vec<(&str, &Tensor)> = refs.iter().map(|(n, t)| (n.as_str(), *t)).collect();
            Tensor::write_safetensors(&refs, out.join(format!("rank{rank}.safetensors"))).unwrap();
        }
        "die" => {
            if rank == 1 {
                std::process::exit(0);
            }
            let started = Instant::now();
            let mut t = [Tensor::ones([1024], (Kind::Float, Device::Cpu))];
            let err = group.all_reduce_sum_(&mut t).expect_err("the peer is gone");
            let msg = err.to_string();
            std::fs::write(out.join("rank0.txt"), format!("{:.1} {msg}", started.elapsed().as_secs_f64()))
                .unwrap();
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn collectives_agree_across_two_processes() {
    let dir = tempfile::tempdir().unwrap();
    assert_ok(&wait_all(spawn_ranks("collectives", 2, dir.path(), &[])));
    for rank in 0..2 {
        let line = std::fs::read_to_string(dir.path().join(format!("rank{rank}.txt"))).unwrap();
        assert_eq!(line, "[3.0, 20.0] [1.0, 1.0, 1.0] [0, 100]", "rank {rank}");
    }
}

#[test]
fn the_autograd_all_gather_sums_gradients_over_processes_in_the_backward_pass() {
    let dir = tempfile::tempdir().unwrap();
    assert_ok(&wait_all(spawn_ranks("autograd_gather", 2, dir.path(), &[])));
    // One process: both ranks' inputs, both ranks' losses.
    let xs: Vec<Tensor> = (0..2)
        .map(|r| Tensor::from_slice(&[0.1f32 * (r as f32 + 1.0); 6]).view([3, 2]).set_requires_grad(true))
        .collect();
    let all = Tensor::cat(&[&xs[0] * 2.0, &xs[1] * 2.0], 0);
    let w = Tensor::arange(12, (Kind::Float, Device::Cpu)).view([6, 2]);
    let summed = Tensor::cat(&[&xs[0], &xs[1]], 0).sum(Kind::Float) * 2.0;
    ((all.tanh() * (&w * 1.0 + &w * 2.0)).sum(Kind::Float) + summed).backward();
    for (rank, x) in xs.iter().enumerate() {
        let got = Tensor::read_safetensors(dir.path().join(format!("rank{rank}.safetensors"))).unwrap();
        let get = |name: &str| got.iter().find(|(n, _)| n == name).map(|(_, t)| t.shallow_clone()).unwrap();
        assert!(get("gathered").allclose(&all.detach(), 1e-6, 1e-6, false), "rank {rank} gathered");
        let diff = (get("grad") - x.grad()).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "rank {rank}: gradient differs by {diff}");
    }
}

fn mode_of(role: &str) -> Mode {
    match role {
        "train" => Mode::Plain,
        "train_contrastive" => Mode::Contrastive,
        "train_sync_bn" => Mode::SyncBatchNorm,
        "train_local_bn" => Mode::LocalBatchNorm,
        other => panic!("unknown role {other}"),
    }
}

/// The largest difference between any variable (running statistics included) of the two
/// ranks of a `role` run and a one-process run with the double batch.
fn max_difference_to_single_process(role: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    assert_ok(&wait_all(spawn_ranks(role, 2, dir.path(), &[])));
    let mode = mode_of(role);
    let single = weights(&train(
        if mode == Mode::LocalBatchNorm { Mode::SyncBatchNorm } else { mode },
        2 * PER_RANK_BATCH,
        None,
    ));
    let mut worst = 0.0f64;
    for rank in 0..2 {
        let loaded = Tensor::read_safetensors(dir.path().join(format!("rank{rank}.safetensors"))).unwrap();
        assert_eq!(loaded.len(), single.len());
        for (name, expected) in &single {
            let got = &loaded.iter().find(|(n, _)| n == name).expect(name).1;
            worst = worst.max((got - expected).abs().max().double_value(&[]));
        }
    }
    worst
}

/// Rank r's 4 rows: 2^(4r + i) in every column, so a chunk's sum names its rows.
fn shuffle_rows(rank: i64) -> Tensor {
    let p = Tensor::arange_start(rank * 4, rank * 4 + 4, (Kind::Float, Device::Cpu));
    Tensor::full([4], 2.0, (Kind::Float, Device::Cpu)).pow(&p).unsqueeze(1).repeat([1, 3])
}

#[test]
fn moco_shuffling_spans_the_processes() {
    let dir = tempfile::tempdir().unwrap();
    assert_ok(&wait_all(spawn_ranks("shuffle", 2, dir.path(), &[])));
    let read =
        |rank: usize| Tensor::read_safetensors(dir.path().join(format!("rank{rank}.safetensors"))).unwrap();
    let (r0, r1) = (read(0), read(1));
    let rank_sum = |rank: i64| shuffle_rows(rank).sum_dim_intlist(0, false, Kind::Float);
    let total = rank_sum(0) + rank_sum(1);
    let mut mixed = 0;
    for round in 0..5 {
        let name = format!("round{round}");
        let get = |v: &[(String, Tensor)]| v.iter().find(|(n, _)| *n == name).unwrap().1.shallow_clone();
        let rows = Tensor::cat(&[get(&r0), get(&r1)], 0); // [8, 3]: each row its chunk's sums
                                                          // Two chunks of 4 rows (one per process), partitioning the global batch.
        let distinct: Vec<Tensor> = (0..8).map(|i| rows.get(i)).fold(Vec::new(), |mut acc, r| {
            if !acc.iter().any(|a: &Tensor| a.equal(&r)) {
                acc.push(r);
            }
            acc
        });
        assert_eq!(distinct.len(), 2, "round {round}: {rows}");
        assert!(
            (&distinct[0] + &distinct[1]).equal(&total),
            "round {round}: chunks do not partition the batch"
        );
        for d in &distinct {
            let count = (0..8).filter(|&i| rows.get(i).equal(d)).count();
            assert_eq!(count, 4, "round {round}");
        }
        if !distinct.iter().any(|d| d.equal(&rank_sum(0))) {
            mixed += 1;
        }
    }
    // A chunk drawn from one process's rows alone has odds 1/35 per round.
    assert!(mixed >= 3, "only {mixed} of 5 rounds mixed rows of both processes");
}

#[test]
fn synchronised_batchnorm_trains_like_one_process_with_the_double_batch() {
    let synced = max_difference_to_single_process("train_sync_bn");
    assert!(synced < 1e-5, "max |2 procs - 1 proc| = {synced} with synchronised BatchNorm");
    // Per-process statistics make a visibly different model: the equality above is the
    // synchronisation's doing.
    let local = max_difference_to_single_process("train_local_bn");
    assert!(local > 1e-3, "per-process BatchNorm differs by only {local}");
    eprintln!("max |2 procs - 1 proc|: {synced:.2e} synchronised, {local:.2e} per process");
}

fn compare_with_single_process(contrastive: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mode = if contrastive { Mode::Contrastive } else { Mode::Plain };
    let role = if contrastive { "train_contrastive" } else { "train" };
    assert_ok(&wait_all(spawn_ranks(role, 2, dir.path(), &[])));
    let single = weights(&train(mode, 2 * PER_RANK_BATCH, None));
    let initial = weights(&Toy::new(mode));
    for rank in 0..2 {
        let loaded = Tensor::read_safetensors(dir.path().join(format!("rank{rank}.safetensors"))).unwrap();
        assert_eq!(loaded.len(), single.len());
        for ((name, expected), (_, start)) in single.iter().zip(&initial) {
            let got = &loaded.iter().find(|(n, _)| n == name).expect(name).1;
            assert!(!expected.allclose(start, 1e-3, 1e-3, false), "{name} did not train");
            let diff = (got - expected).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "rank {rank} {name}: max |2 procs - 1 proc| = {diff}");
        }
    }
}

#[test]
fn two_processes_train_like_one_with_the_double_batch() {
    compare_with_single_process(false);
}

#[test]
fn gathered_contrastive_gradients_match_one_process() {
    compare_with_single_process(true);
}

const LOSSES: [&str; 4] = ["nt_xent", "info_nce", "clip", "siglip"];

/// The gradient of a shared linear map under one of the contrastive losses, for rank `rank`'s
/// rows of a fixed global batch of 8 pairs (`world` = 1: the whole batch, one process).
fn loss_grad(name: &str, rank: usize, world: usize) -> Tensor {
    ssl_core::tch::manual_seed(11);
    let a = Tensor::randn([8, DIM], (Kind::Float, Device::Cpu));
    let b = &a + Tensor::randn([8, DIM], (Kind::Float, Device::Cpu)) * 0.5;
    let n = 8 / world as i64;
    let (a, b) = (a.narrow(0, rank as i64 * n, n), b.narrow(0, rank as i64 * n, n));
    let w = (Tensor::eye(DIM, (Kind::Float, Device::Cpu)) + 0.1).set_requires_grad(true);
    let (za, zb) = (a.matmul(&w), b.matmul(&w));
    let loss = match name {
        "nt_xent" => ssl_core::loss::nt_xent(&za, &zb, 0.5).unwrap(),
        "info_nce" => ssl_core::loss::info_nce(&za, &zb, 0.2).unwrap(),
        "clip" => {
            let norm = |z: &Tensor| ssl_core::loss::normalize(z);
            ssl_multimodal::loss::clip_loss(&norm(&za), &norm(&zb), &Tensor::from(2.0f32)).unwrap()
        }
        _ => {
            let norm = |z: &Tensor| ssl_core::loss::normalize(z);
            let (scale, bias) = (Tensor::from(2.0f32), Tensor::from(-1.0f32));
            ssl_multimodal::loss::siglip_loss(&norm(&za), &norm(&zb), &scale, &bias).unwrap()
        }
    };
    loss.backward();
    ssl_core::dist::backward_gathered().unwrap();
    w.grad().copy()
}

/// NT-Xent, InfoNCE, CLIP's and SigLIP's losses with negatives gathered across 2 processes: the averaged
/// gradients are those of one process with the whole batch (labels offset by rank, self
/// similarities masked at the right columns, the gathered rows' gradients summed).
#[test]
fn gathered_losses_give_the_one_process_gradients() {
    let dir = tempfile::tempdir().unwrap();
    assert_ok(&wait_all(spawn_ranks("losses", 2, dir.path(), &[])));
    for rank in 0..2 {
        let got = Tensor::read_safetensors(dir.path().join(format!("rank{rank}.safetensors"))).unwrap();
        for name in LOSSES {
            let expected = loss_grad(name, 0, 1);
            let g = &got.iter().find(|(n, _)| n == name).unwrap().1;
            let diff = (g - &expected).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "rank {rank} {name}: max |2 procs - 1 proc| = {diff}");
        }
    }
}

#[test]
fn a_rank_that_dies_fails_the_others_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let outputs = wait_all(spawn_ranks("die", 2, dir.path(), &[]));
    assert!(started.elapsed() < Duration::from_secs(90), "took {:?}", started.elapsed());
    assert_ok(&outputs);
    let line = std::fs::read_to_string(dir.path().join("rank0.txt")).unwrap();
    assert!(line.contains("all_reduce on rank 0 of 2 failed"), "{line}");
}

#[test]
fn launcher_variables_are_checked_by_name() {
    let get = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    };
    assert_eq!(GroupConfig::from_lookup(get(&[])).unwrap(), None);
    assert_eq!(GroupConfig::from_lookup(get(&[("WORLD_SIZE", "1")])).unwrap(), None);
    let e = GroupConfig::from_lookup(get(&[("WORLD_SIZE", "2")])).unwrap_err().to_string();
    assert!(e.contains("RANK"), "{e}");
    let e = GroupConfig::from_lookup(get(&[("WORLD_SIZE", "2"), ("RANK", "2")])).unwrap_err().to_string();
    assert!(e.contains("RANK") && e.contains("below"), "{e}");
    let e = GroupConfig::from_lookup(get(&[("WORLD_SIZE", "two")])).unwrap_err().to_string();
    assert!(e.contains("WORLD_SIZE") && e.contains("two"), "{e}");
    let e = GroupConfig::from_lookup(get(&[("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_ADDR", "h")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("MASTER_PORT"), "{e}");
    let agent = GroupConfig::from_lookup(get(&[
        ("WORLD_SIZE", "2"),
        ("RANK", "0"),
        ("MASTER_ADDR", "h"),
        ("MASTER_PORT", "1"),
        ("TORCHELASTIC_USE_AGENT_STORE", "True"),
        ("TORCHELASTIC_RESTART_COUNT", "3"),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(agent.agent_store, Some(ssl_dist::AgentStore { restart_count: 3 }));
    assert_eq!(agent.cuda_backend, CudaBackend::Gloo);
    const JOB: [(&str, &str); 4] =
        [("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "1")];
    let nccl = GroupConfig::from_lookup(get(&[JOB[0], JOB[1], JOB[2], JOB[3], ("SSL_DIST_BACKEND", "NCCL")]))
        .unwrap()
        .unwrap();
    assert_eq!(nccl.cuda_backend, CudaBackend::Nccl);
    let e = GroupConfig::from_lookup(get(&[JOB[0], JOB[1], JOB[2], JOB[3], ("SSL_DIST_BACKEND", "mpi")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("SSL_DIST_BACKEND") && e.contains("mpi"), "{e}");
}

fn config(world_size: usize, timeout: Duration, cuda_backend: CudaBackend) -> GroupConfig {
    GroupConfig {
        rank: world_size - 1,
        world_size,
        local_rank: world_size - 1,
        local_world_size: world_size,
        master_addr: "127.0.0.1".into(),
        master_port: free_port(),
        agent_store: None,
        interface: Some("lo".into()),
        timeout,
        cuda_backend,
    }
}

#[test]
fn an_unreachable_master_is_a_rendezvous_error() {
    let cfg = config(2, Duration::from_secs(2), CudaBackend::Gloo);
    let e = ProcessGroup::connect(&cfg).unwrap_err().to_string();
    assert!(e.contains("rendezvous at 127.0.0.1") && e.contains("rank 1 of 2"), "{e}");
}

#[test]
fn nccl_without_a_cuda_libtorch_fails_before_the_rendezvous() {
    if !matches!(ssl_core::device::enable_cuda(), ssl_core::device::CudaSupport::Absent(_)) {
        eprintln!(
            "skipped: this libtorch has CUDA (nccl_group_of_one_runs_collectives_on_the_gpu covers it)"
        );
        return;
    }
    // No other rank and a long timeout: only the early check can make this return at once.
    let cfg = config(2, Duration::from_secs(600), CudaBackend::Nccl);
    let started = Instant::now();
    let e = ProcessGroup::connect(&cfg).unwrap_err().to_string();
    assert!(e.contains("SSL_DIST_BACKEND=nccl needs CUDA"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(60), "waited for the other rank first");
}

/// A one-process NCCL group on GPU 0: constructs libtorch_cuda's ProcessGroupNCCL through the
/// shim and runs every collective on device tensors (NCCL refuses two ranks on one GPU, so a
/// one-GPU machine can only run a group of one). With a CUDA build of libtorch but no GPU, the
/// constructor is still reached and its exception must come back as an error.
#[test]
fn nccl_group_of_one_runs_collectives_on_the_gpu() {
    if matches!(ssl_core::device::enable_cuda(), ssl_core::device::CudaSupport::Absent(_)) {
        eprintln!("skipped: CPU-only libtorch");
        return;
    }
    if ssl_core::device::cuda_device_count() == 0 {
        let e = ProcessGroup::connect(&config(1, Duration::from_secs(60), CudaBackend::Nccl)).unwrap_err();
        assert!(e.to_string().contains("ProcessGroupNCCL is only supported with GPUs"), "{e}");
        return;
    }
    let group = ProcessGroup::connect(&config(1, Duration::from_secs(60), CudaBackend::Nccl)).unwrap();
    assert!(group.uses_nccl());
    let gpu = Device::Cuda(0);
    let mut t = [Tensor::from_slice(&[1.0f32, 2.0, 3.0]).to_device(gpu)];
    group.all_reduce_sum_(&mut t).unwrap();
    group.broadcast_(&mut t, 0).unwrap();
    assert_eq!(t[0].device(), gpu);
    assert_eq!(Vec::<f32>::try_from(t[0].to_device(Device::Cpu)).unwrap(), [1.0, 2.0, 3.0]);
    let gathered = group.all_gather_(&t[0]).unwrap();
    assert_eq!(gathered.len(), 1);
    assert_eq!(gathered[0].device(), gpu);
    assert_eq!(Vec::<f32>::try_from(gathered[0].to_device(Device::Cpu)).unwrap(), [1.0, 2.0, 3.0]);
    // Host tensors and the barrier still go through Gloo in the same group.
    let mut h = [Tensor::from_slice(&[4.0f32])];
    group.all_reduce_sum_(&mut h).unwrap();
    group.barrier_().unwrap();
    drop(group);
}
