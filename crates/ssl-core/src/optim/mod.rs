//! Optimisers whose state ssl-rs owns (so checkpoints can save it), learning-rate schedules and
//! gradient clipping.
//!
//! `tch` cannot export libtorch's optimiser state, so resuming with `tch::nn::Optimizer` would
//! silently restart Adam's moments. The optimisers here keep every state tensor in Rust, name it
//! after its parameter (`<param>.exp_avg`), and follow PyTorch's update rules exactly.

mod clip;
mod optimizer;
mod schedule;

pub use clip::clip_grad_norm;
pub use optimizer::{Optimizer, OptimizerConfig, OptimizerKind};
pub use schedule::{ScheduleConfig, ScheduleKind};
