//! Image backbones: the encoders the vision methods train.
//!
//! - [`resnet`]: ResNet-18, -34 and -50 ([`ResNet`], configured by [`ResNetConfig`]), with the
//!   ImageNet stem or the CIFAR-style small-image stem, parameter names as in torchvision
//!   (SimCLR, MoCo, BYOL, the classic pretext tasks).
//! - [`vit`]: the Vision Transformer ([`Vit`], [`VitConfig`]) with fixed 2-D sine-cosine
//!   position embeddings, parameter names as in MAE (MAE).
//!
//! A backbone is an [`Encoder`](ssl_core::Encoder): images `[B, C, H, W]` in, one
//! representation per image `[B, D]` out (after global average pooling, before any projection
//! head). All its tensors, BatchNorm statistics included, live in the `VarStore` it was built
//! in.
//!
//! ```
//! use ssl_core::blocks::{MlpHead, MlpHeadConfig};
//! use ssl_core::tch::{nn, Device, Kind, Tensor};
//! use ssl_core::Encoder;
//! use ssl_vision::backbone::{ResNet, ResNetConfig};
//!
//! let vs = nn::VarStore::new(Device::Cpu);
//! let backbone = ResNet::new(vs.root() / "backbone", &ResNetConfig::tiny())?;
//! let head = MlpHead::new(vs.root() / "projector", &MlpHeadConfig::simclr(backbone.output_dim(), 16))?;
//!
//! let images = Tensor::randn([4, 3, 32, 32], (Kind::Float, Device::Cpu));
//! let h = backbone.encode(&images, true); // [4, 64]
//! let z = head.forward_t(&h, true); // [4, 16]
//! assert_eq!(z.size(), [4, 16]);
//! # Ok::<(), ssl_core::Error>(())
//! ```

pub mod resnet;
pub mod vit;

pub use resnet::{ResNet, ResNetConfig, ResNetDepth};
pub use vit::{Vit, VitConfig, VitPool};
