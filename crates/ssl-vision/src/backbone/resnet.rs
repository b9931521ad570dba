//! ResNet-18, -34 and -50 backbones (He, Zhang, Ren, Sun, 2016, "Deep Residual Learning for
//! Image Recognition"), laid out as torchvision's `torchvision.models.resnet`.
//!
//! - ResNet-18 and -34 stack *basic blocks* (3x3 → 3x3); ResNet-50 stacks *bottlenecks*
//!   (1x1 → 3x3 → 1x1, four times wider at the output). As in torchvision ("ResNet v1.5"), a
//!   bottleneck that downsamples puts its stride on the 3x3 convolution, not on the first 1x1.
//! - When a block changes the shape (stride 2, or a different channel count), its shortcut is
//!   a 1x1 convolution with that stride followed by BatchNorm (option B of the paper); otherwise
//!   the identity.
//! - Convolutions have no bias (the BatchNorm after each makes it redundant).
//! - The stem is either the ImageNet one (7x7 stride-2 convolution, BN, ReLU, 3x3 stride-2
//!   max-pool) or, with [`ResNetConfig::small_images`], the CIFAR one (3x3 stride-1 convolution,
//!   BN, ReLU, no pool).
//! - The representation is the global average of the last stage: `[B, 8 · base_width ·
//!   expansion]`. There is no classifier (`fc`); self-supervised methods put their projection
//!   heads here instead.
//!
//! **Initialisation** follows torchvision: convolution weights Kaiming normal in fan-out mode
//! for ReLU (`N(0, 2 / (out · k · k))`), BatchNorm weight 1 and bias 0, and with
//! [`ResNetConfig::zero_init_residual`] the last BatchNorm weight of every residual branch 0.
//! BatchNorm uses PyTorch's defaults, eps `1e-5` and momentum `0.1`.
//!
//! **Names** mirror torchvision's `state_dict` keys (tch joins path components with `.`):
//! `conv1`, `bn1`, `layer{1..4}.{i}.conv{1,2[,3]}`, `layer{1..4}.{i}.bn{1,2[,3]}`,
//! `layer{1..4}.{i}.downsample.0` (the 1x1 convolution) and `.downsample.1` (its BatchNorm), each
//! with `weight` (and BatchNorm's `bias`, `running_mean`, `running_var`). torchvision's
//! `num_batches_tracked` buffers and `fc` are not created: skip those keys when importing
//! torchvision weights.

mod config;

pub use config::{ResNetConfig, ResNetDepth, BOTTLENECK_EXPANSION, STANDARD_BASE_WIDTH, TINY_BASE_WIDTH};

#[cfg(test)]
mod tests;
