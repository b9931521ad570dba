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

use std::borrow::Borrow;

use ssl_core::error::TorchResultExt;
use ssl_core::{Encoder, Error, Result};
use tch::nn;
use tch::nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use tch::{TchError, Tensor};

mod config;

pub use config::{ResNetConfig, ResNetDepth, BOTTLENECK_EXPANSION, STANDARD_BASE_WIDTH, TINY_BASE_WIDTH};

/// BatchNorm epsilon: PyTorch's `BatchNorm2d` default, used by torchvision's ResNet.
const BN_EPS: f64 = 1e-5;
/// BatchNorm running-statistics momentum: PyTorch's `BatchNorm2d` default, used by torchvision.
const BN_MOMENTUM: f64 = 0.1;

/// torchvision's `nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")`.
const CONV_INIT: nn::Init = nn::Init::Kaiming {
    dist: NormalOrUniform::Normal,
    fan: FanInOut::FanOut,
    non_linearity: NonLinearity::ReLU,
};

/// A bias-free square convolution with `padding = kernel / 2` (torchvision's `conv1x1`,
/// `conv3x3` and the 7x7 stem).
#[derive(Debug)]
struct Conv {
    ws: Tensor,
    stride: i64,
    padding: i64,
}

impl Conv {
    fn new(path: &nn::Path<'_>, c_in: i64, c_out: i64, kernel: i64, stride: i64) -> Result<Self> {
        let ws = path
            .f_var("weight", &[c_out, c_in, kernel, kernel], CONV_INIT)
            .torch_context(format!("creating {}", path.path("weight")))?;
        Ok(Self { ws, stride, padding: kernel / 2 })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let (s, p) = (self.stride, self.padding);
        x.f_conv2d(&self.ws, None::<Tensor>, [s, s], [p, p], [1, 1], 1)
    }
}

/// BatchNorm2d with affine parameters and running statistics.
#[derive(Debug)]
struct BatchNorm {
    ws: Tensor,
    bs: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
}

impl BatchNorm {
    /// `gamma` is the initial weight: 1, or 0 for a zero-initialised residual branch.
    fn new(path: &nn::Path<'_>, channels: i64, gamma: f64) -> Result<Self> {
        let what = format!("creating {}", path.path("weight"));
        let dims = [channels];
        Ok(Self {
            ws: path.f_var("weight", &dims, nn::Init::Const(gamma)).torch_context(&what)?,
            bs: path.f_var("bias", &dims, nn::Init::Const(0.0)).torch_context(&what)?,
            running_mean: path.f_zeros_no_train("running_mean", &dims).torch_context(&what)?,
            running_var: path.f_ones_no_train("running_var", &dims).torch_context(&what)?,
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor, TchError> {
        ssl_core::blocks::norm::batch_norm(
            x,
            Some(&self.ws),
            Some(&self.bs),
            &self.running_mean,
            &self.running_var,
            train,
            BN_MOMENTUM,
            BN_EPS,
        )
    }
}

/// A convolution and the BatchNorm after it; the two live at sibling paths (`conv1`, `bn1`).
#[derive(Debug)]
struct ConvBn {
    conv: Conv,
    bn: BatchNorm,
}

impl ConvBn {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor, TchError> {
        self.bn.forward(&self.conv.forward(x)?, train)
    }
}

/// Shape of one convolution of a residual branch.
struct ConvSpec {
    kernel: i64,
    c_in: i64,
    c_out: i64,
    stride: i64,
}

/// A basic block or a bottleneck: a residual branch of convolutions with BatchNorm (ReLU
/// between them), a shortcut, and a ReLU after the sum.
#[derive(Debug)]
struct Block {
    branch: Vec<ConvBn>,
    downsample: Option<ConvBn>,
}

impl Block {
    /// A block of `depth`'s kind from `c_in` channels to `planes · expansion`.
    fn new(
        path: &nn::Path<'_>,
        depth: ResNetDepth,
        c_in: i64,
        planes: i64,
        stride: i64,
        zero_init_residual: bool,
    ) -> Result<Self> {
        let c_out = planes * depth.expansion();
        let spec = |kernel, c_in, c_out, stride| ConvSpec { kernel, c_in, c_out, stride };
        let specs = if depth.bottleneck() {
            vec![spec(1, c_in, planes, 1), spec(3, planes, planes, stride), spec(1, planes, c_out, 1)]
        } else {
            vec![spec(3, c_in, planes, stride), spec(3, planes, planes, 1)]
        };
        let last = specs.len() - 1;
        let branch = specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let gamma = if i == last && zero_init_residual { 0.0 } else { 1.0 };
                let conv =
                    Conv::new(&(path / format!("conv{}", i + 1)), s.c_in, s.c_out, s.kernel, s.stride)?;
                let bn = BatchNorm::new(&(path / format!("bn{}", i + 1)), s.c_out, gamma)?;
                Ok(ConvBn { conv, bn })
            })
            .collect::<Result<_>>()?;
        let downsample = if stride != 1 || c_in != c_out {
            let p = path / "downsample";
            let conv = Conv::new(&(&p / 0), c_in, c_out, 1, stride)?;
            Some(ConvBn { conv, bn: BatchNorm::new(&(&p / 1), c_out, 1.0)? })
        } else {
            None
        };
        Ok(Self { branch, downsample })
    }

    /// The residual branch alone, before the sum.
    fn residual(&self, x: &Tensor, train: bool) -> Result<Tensor, TchError> {
        let last = self.branch.len() - 1;
        self.branch.iter().enumerate().try_fold(x.shallow_clone(), |h, (i, cb)| {
            let h = cb.forward(&h, train)?;
            if i < last {
                h.f_relu()
            } else {
                Ok(h)
            }
        })
    }

    /// The shortcut: the identity, or the 1x1 convolution and BatchNorm.
    fn shortcut(&self, x: &Tensor, train: bool) -> Result<Tensor, TchError> {
        match &self.downsample {
            Some(ds) => ds.forward(x, train),
            None => Ok(x.shallow_clone()),
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor, TchError> {
        self.residual(x, train)?.f_add(&self.shortcut(x, train)?)?.f_relu()
    }
}

/// A ResNet backbone without classifier; see the [module docs](self).
#[derive(Debug)]
pub struct ResNet {
    stem: ConvBn,
    /// `layer1` to `layer4`.
    stages: Vec<Vec<Block>>,
    config: ResNetConfig,
}

impl ResNet {
    /// Creates the network under `path` after validating `cfg`.
    ///
    /// ```
    /// use ssl_core::Encoder;
    /// use ssl_core::tch::{nn, Device, Kind, Tensor};
    /// use ssl_vision::backbone::{ResNet, ResNetConfig};
    ///
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let net = ResNet::new(vs.root() / "backbone", &ResNetConfig::tiny())?;
    /// let h = net.encode(&Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu)), false);
    /// assert_eq!(h.size(), [2, net.output_dim()]); // [2, 64]
    /// assert!(vs.variables().contains_key("backbone.layer2.0.downsample.1.running_var"));
    /// # Ok::<(), ssl_core::Error>(())
    /// ```
    pub fn new<'a, P: Borrow<nn::Path<'a>>>(path: P, cfg: &ResNetConfig) -> Result<Self> {
        cfg.validate()?;
        let path = path.borrow();
        let width = cfg.base_width;
        let (kernel, stride) = if cfg.small_images { (3, 1) } else { (7, 2) };
        let stem = ConvBn {
            conv: Conv::new(&(path / "conv1"), cfg.in_channels, width, kernel, stride)?,
            bn: BatchNorm::new(&(path / "bn1"), width, 1.0)?,
        };
        let mut c_in = width;
        let mut stages = Vec::with_capacity(4);
        for (i, n_blocks) in cfg.depth.blocks().into_iter().enumerate() {
            let planes = width << i;
            let stage_path = path / format!("layer{}", i + 1);
            let mut blocks = Vec::with_capacity(n_blocks);
            for b in 0..n_blocks {
                let stride = if i > 0 && b == 0 { 2 } else { 1 };
                let block_path = &stage_path / b;
                blocks.push(Block::new(
                    &block_path,
                    cfg.depth,
                    c_in,
                    planes,
                    stride,
                    cfg.zero_init_residual,
                )?);
                c_in = planes * cfg.depth.expansion();
            }
            stages.push(blocks);
        }
        Ok(Self { stem, stages, config: cfg.clone() })
    }

    /// The config the network was built from.
    pub fn config(&self) -> &ResNetConfig {
        &self.config
    }

    /// Maps images `[B, in_channels, H, W]` to representations `[B, output_dim]`; `train` makes
    /// BatchNorm normalise with (and update) batch statistics.
    ///
    /// # Panics
    /// On the errors [`f_forward_t`](Self::f_forward_t) returns.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.f_forward_t(x, train).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`forward_t`](Self::forward_t), returning [`Error::Shape`] when `x` is not
    /// `[B, in_channels, H, W]`, [`Error::InvalidArgument`] when training BatchNorm would see a
    /// single value per channel (a batch of one whose last feature map is 1x1: PyTorch refuses
    /// it too), and [`Error::Torch`] when a libtorch call fails.
    pub fn f_forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.f_feature_map(x, train)?
            .f_mean_dim([-2, -1].as_slice(), false, None)
            .torch_context(format!("{} pooling", self.config.depth))
    }

    /// The last stage's feature map before pooling, `[B, output_dim, ⌈H / s⌉, ⌈W / s⌉]` with
    /// `s` the [`output_stride`](Self::output_stride): what a decoder upsamples back to pixels
    /// (inpainting). Errors as [`f_forward_t`](Self::f_forward_t).
    ///
    /// ```
    /// use ssl_core::tch::{nn, Device, Kind, Tensor};
    /// use ssl_vision::backbone::{ResNet, ResNetConfig};
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let net = ResNet::new(vs.root(), &ResNetConfig::tiny())?; // small-image stem: stride 8
    /// let f = net.f_feature_map(&Tensor::zeros([2, 3, 32, 32], (Kind::Float, Device::Cpu)), false)?;
    /// assert_eq!(f.size(), [2, 64, 4, 4]);
    /// # Ok::<(), ssl_core::Error>(())
    /// ```
    pub fn f_feature_map(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let size = x.size();
        if size.len() != 4 || size[1] != self.config.in_channels {
            let expected = format!("[B, {}, H, W]", self.config.in_channels);
            return Err(Error::shape("ResNet input", expected, &size));
        }
        let (b, h, w) = (size[0], size[2], size[3]);
        let s = self.output_stride();
        let (h_out, w_out) = ((h + s - 1) / s, (w + s - 1) / s);
        if train && b * h_out * w_out < 2 {
            let message = format!(
                "BatchNorm in training needs more than one value per channel, but a batch of {b} \
                 {h}x{w} image(s) gives {b}x{h_out}x{w_out} at the last stage (output stride {s})"
            );
            return Err(Error::invalid("x", message));
        }
        self.features(x, train).torch_context(format!("{} forward", self.config.depth))
    }

    /// How much the network shrinks each spatial side (rounding up): 8 with the small-image
    /// stem, 32 with the ImageNet stem.
    pub fn output_stride(&self) -> i64 {
        self.config.output_stride()
    }

    /// The last stage's feature map `[B, output_dim, H', W']`.
    fn features(&self, x: &Tensor, train: bool) -> Result<Tensor, TchError> {
        let x = if self.config.channels_last {
            // NCHW shape with NHWC strides: every layer after keeps the layout.
            x.f_permute([0, 2, 3, 1])?.f_contiguous()?.f_permute([0, 3, 1, 2])?
        } else {
            x.shallow_clone()
        };
        let mut h = self.stem.forward(&x, train)?.f_relu()?;
        if !self.config.small_images {
            h = h.f_max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)?;
        }
        self.stages.iter().flatten().try_fold(h, |h, block| block.forward(&h, train))
    }
}

impl Encoder for ResNet {
    /// `8 · base_width · expansion`: 512 for ResNet-18 and -34, 2048 for ResNet-50.
    fn output_dim(&self) -> i64 {
        self.config.output_dim()
    }

    fn encode(&self, input: &Tensor, train: bool) -> Tensor {
        self.forward_t(input, train)
    }
}

impl nn::ModuleT for ResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        ResNet::forward_t(self, xs, train)
    }
}

#[cfg(test)]
mod tests;
