//! Convolutional backbones: the encoders that SimCLR, MoCo v2 and BYOL train.
//!
//! - [`resnet`]: the configuration of ResNet-18, -34 and -50 ([`ResNetConfig`]).

pub mod resnet;

pub use resnet::{ResNetConfig, ResNetDepth};
