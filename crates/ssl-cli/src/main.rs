//! `ssl`: pretrain, evaluate and embed with ssl-rs methods.
//!
//! The method names, the default run and the run-directory layout are fixed by the project's
//! command-line contract; see `ssl --help`.

mod audio;
mod clip;
mod launch;
mod run;
mod synthetic;
mod text;
mod vision;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

/// Self-supervised pretraining on libtorch.
#[derive(Parser, Debug)]
#[command(name = "ssl", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Pretrain an encoder with a method, then evaluate it on labelled held-out data.
    Pretrain(Box<PretrainArgs>),
    /// Evaluate a checkpoint (linear probe, kNN) and print the report as JSON.
    #[command(alias = "eval")]
    Evaluate(EvaluateArgs),
    /// Fine-tune a checkpoint's encoder with a linear head on labelled data, save the fine-tuned
    /// model and print the report as JSON.
    Finetune(FinetuneArgs),
    /// Write the representations of a folder (default: the held-out split) to a safetensors file.
    Embed(EmbedArgs),
    /// Sample text from a GPT checkpoint.
    Generate(GenerateArgs),
    /// List the methods this build provides.
    Methods,
    /// Run a command as a data-parallel job of N processes on this machine, with the
    /// variables torchrun sets (`ssl launch --nproc 2 -- pretrain simclr`).
    Launch(LaunchArgs),
}

/// Options of `ssl launch`.
#[derive(Args, Debug, Clone)]
pub struct LaunchArgs {
    /// Processes to start (each trains with the configured batch size).
    #[arg(long)]
    pub nproc: usize,
    /// Address of the rendezvous store (rank 0 serves it).
    #[arg(long, default_value = "127.0.0.1")]
    pub master_addr: String,
    /// Port of the rendezvous store (default: a free one).
    #[arg(long)]
    pub master_port: Option<u16>,
    /// The `ssl` command each process runs, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Options of `ssl pretrain`.
#[derive(Args, Debug, Clone)]
pub struct PretrainArgs {
    /// The method (see `ssl methods`).
    pub method: String,
    /// Training data (the method's embedded default dataset when absent).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Optimiser steps (default: the method's budget of about 5 minutes on 2 CPU cores).
    #[arg(long, conflicts_with = "epochs")]
    pub steps: Option<u64>,
    /// Epochs over the training data, converted to steps.
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Run directory (default: runs/METHOD-UNIXTIME). Must be new or empty unless
    /// --resume or --force is given.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A TOML config file with train, data and eval tables; flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long)]
    pub device: Option<String>,
    /// The run seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Samples per batch.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Continue from a checkpoint folder or a run directory's newest checkpoint.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Start from the weights of a checkpoint (folder or run directory) of the same method and
    /// architecture, with a fresh optimiser and schedule: continued pretraining on new data.
    /// The model table defaults to the checkpoint's.
    #[arg(long, conflicts_with = "resume")]
    pub init_from: Option<PathBuf>,
    /// Bit-reproducible CPU run (fixed thread counts).
    #[arg(long)]
    pub deterministic: bool,
    /// In a multi-process job, normalise BatchNorm with the global batch's statistics
    /// (`train.sync_batchnorm`: SimCLR's global BN, PyTorch's SyncBatchNorm).
    #[arg(long)]
    pub sync_batchnorm: bool,
    /// Also write the step records as TensorBoard scalars to RUN/tensorboard/
    /// (`tensorboard --logdir RUN/tensorboard`).
    #[arg(long)]
    pub tensorboard: bool,
    /// Benchmarks: train every step on the first batch, so the step times measure the model
    /// alone, without the input pipeline (what `cargo xtask bench throughput --vs-pytorch`
    /// compares). The losses are not those of a real run.
    #[arg(long)]
    pub repeat_batch: bool,
    /// Reuse a non-empty run directory, replacing what it holds.
    #[arg(long)]
    pub force: bool,
    /// Skip the evaluation after training.
    #[arg(long)]
    pub no_eval: bool,
    /// Text: replace invalid UTF-8 in the corpus instead of stopping at it (`data.utf8 = "lossy"`).
    #[arg(long)]
    pub lossy_utf8: bool,
    /// Labelled training split for the probes (replaces the embedded held-out split).
    #[arg(long, requires = "probe_test")]
    pub probe_train: Option<PathBuf>,
    /// Labelled test split for the probes.
    #[arg(long, requires = "probe_train")]
    pub probe_test: Option<PathBuf>,
    #[command(flatten)]
    /// CLIP's evaluation data.
    pub clip: ClipEvalArgs,
}

/// What a CLIP model is scored on: the options `ssl pretrain clip` and `ssl evaluate` share.
#[derive(Args, Debug, Clone, Default)]
pub struct ClipEvalArgs {
    /// CLIP: a labelled image folder (one sub-folder per class, named by the class) to
    /// classify zero-shot.
    #[arg(long)]
    pub zero_shot: Option<PathBuf>,
    /// CLIP: a paired manifest (CSV/TSV/JSONL) to score image-text retrieval on.
    #[arg(long)]
    pub pairs: Option<PathBuf>,
    /// CLIP: a text file of prompt templates, one per line, `{}` standing for the class name.
    #[arg(long)]
    pub templates: Option<PathBuf>,
}

/// A label-efficiency curve: linear probes on stratified labelled subsets.
#[derive(Args, Debug, Clone, Default)]
pub struct LabelBudgetArgs {
    /// Labelled examples per class to probe with, comma-separated: counts (`1,5,10,50,all`) or
    /// percentages of the train split (`1%,10%`); adds `eval.label_efficiency`.
    #[arg(long)]
    pub label_budget: Option<String>,
    /// Subsets drawn (and probes trained) per budget.
    #[arg(long, default_value_t = 3)]
    pub seeds: usize,
    /// Also fine-tune the encoders on every subset (the run's `[finetune]` table or the
    /// method's fine-tuning defaults), adding fine-tuning curves.
    #[arg(long, requires = "label_budget")]
    pub finetune: bool,
}

/// The checkpoint a command reads: given as the first argument or with `--checkpoint`.
#[derive(Args, Debug, Clone)]
pub struct CheckpointPath {
    /// A checkpoint folder or a run directory (its newest checkpoint).
    #[arg(value_name = "CHECKPOINT", required_unless_present = "checkpoint_flag")]
    checkpoint_arg: Option<PathBuf>,
    /// The same, as a flag.
    #[arg(
        long = "checkpoint",
        id = "checkpoint_flag",
        value_name = "CHECKPOINT",
        conflicts_with = "checkpoint_arg"
    )]
    checkpoint_flag: Option<PathBuf>,
}

impl CheckpointPath {
    /// The path given.
    pub fn path(&self) -> &std::path::Path {
        // clap requires one of the two.
        self.checkpoint_arg.as_deref().or(self.checkpoint_flag.as_deref()).unwrap_or(std::path::Path::new(""))
    }
}

/// A checkpoint and the labelled data to score it on: the options `ssl evaluate` and
/// `ssl finetune` share.
#[derive(Args, Debug, Clone)]
pub struct CheckpointArgs {
    #[command(flatten)]
    /// The checkpoint.
    pub checkpoint: CheckpointPath,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long)]
    pub device: Option<String>,
    /// Labelled training split: a folder with one sub-folder per class (images, audio) or a
    /// JSONL file of `text` and `label` (text); replaces the run's probe data.
    #[arg(long, alias = "train", requires = "probe_test")]
    pub probe_train: Option<PathBuf>,
    /// Labelled test split.
    #[arg(long, alias = "test", requires = "probe_train")]
    pub probe_test: Option<PathBuf>,
}

/// Options of `ssl evaluate`.
#[derive(Args, Debug, Clone)]
pub struct EvaluateArgs {
    #[command(flatten)]
    /// The checkpoint and the labelled data.
    pub run: CheckpointArgs,
    #[command(flatten)]
    /// The label-efficiency curve.
    pub budget: LabelBudgetArgs,
    #[command(flatten)]
    /// CLIP's evaluation data.
    pub clip: ClipEvalArgs,
}

/// Options of `ssl finetune`. The run's `[finetune]` table (or the defaults) gives whatever
/// flag is absent.
#[derive(Args, Debug, Clone)]
pub struct FinetuneArgs {
    #[command(flatten)]
    /// The checkpoint and the labelled data.
    pub run: CheckpointArgs,
    /// Epochs over the labelled training split.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Peak learning rate of the encoder (AdamW, cosine-decayed).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Layer-wise learning-rate decay in (0, 1] (ViT encoders; 1 turns it off).
    #[arg(long)]
    pub layer_decay: Option<f64>,
    /// The head's learning rate as a multiple of the encoder's.
    #[arg(long)]
    pub head_lr_scale: Option<f64>,
    /// Images per batch.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Fine-tune on this many labelled images drawn at random (0: all).
    #[arg(long)]
    pub train_subset: Option<usize>,
    /// Epochs at the start that train the head alone, the encoder frozen (LP-FT).
    #[arg(long)]
    pub freeze_epochs: Option<usize>,
    /// AdamW's decoupled weight decay.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// The fraction of the steps over which the learning rate warms up.
    #[arg(long)]
    pub warmup_fraction: Option<f64>,
    /// Where to save the fine-tuned model: a run directory holding its checkpoint (the
    /// fine-tuned encoder), `head.safetensors`, `classes.txt` and `summary.json` (default:
    /// runs/METHOD-finetune-UNIXTIME). Must be new or empty unless --force is given.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace a non-empty --out directory.
    #[arg(long)]
    pub force: bool,
    /// Also fine-tune the same encoder from random init with the same budget
    /// (`random_init_finetune_acc`).
    #[arg(long)]
    pub baseline: bool,
}

/// Options of `ssl embed`.
#[derive(Args, Debug, Clone)]
pub struct EmbedArgs {
    #[command(flatten)]
    /// The checkpoint.
    pub checkpoint: CheckpointPath,
    /// Output file: safetensors holding `embeddings` (N x D) and `labels` (N), or for a `.npy`
    /// name NumPy arrays (the embeddings, and the labels in `<output>.labels.npy`); the inputs'
    /// file names or texts go to `<output>.files.txt`.
    #[arg(long, alias = "out")]
    pub output: PathBuf,
    /// Inputs to embed: images (a folder, searched recursively) or text (a file or folder of
    /// documents; CLIP: a file of one text per line); default: the embedded held-out split.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long)]
    pub device: Option<String>,
}

/// Options of `ssl generate`.
#[derive(Args, Debug, Clone)]
pub struct GenerateArgs {
    #[command(flatten)]
    /// The checkpoint.
    pub checkpoint: CheckpointPath,
    /// The text to continue (empty: start a new document).
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// Tokens to generate at most (generation also stops at the end-of-text token).
    #[arg(long, default_value_t = 50)]
    pub max_new_tokens: usize,
    /// Softmax temperature; 0 decodes greedily.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Keep only the K most likely tokens at each step (0: all).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches P.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// The sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Re-encode the whole sequence at every step instead of using the KV cache.
    #[arg(long)]
    pub no_cache: bool,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long)]
    pub device: Option<String>,
}

fn main() {
    // Keep freed tensor memory for the next step instead of faulting in fresh pages every step
    // (ssl_core::memory explains the numbers).
    ssl_core::memory::tune_host_allocator();
    let cli = Cli::parse();
    if let Err(e) = dispatch(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Methods => {
            for (name, about) in run::METHODS {
                println!("{name:12} {about}");
            }
            Ok(())
        }
        Command::Pretrain(args) => run::pretrain(&args),
        Command::Launch(args) => launch::launch(&args),
        Command::Evaluate(args) => run::evaluate(&args),
        Command::Finetune(args) => run::finetune(&args),
        Command::Embed(args) => run::embed(&args),
        Command::Generate(args) => run::generate(&args),
    }
}
