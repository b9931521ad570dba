//! [`ResNetConfig`] and [`ResNetDepth`]: the serialisable shape of a ResNet backbone.

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use ssl_core::{Error, Result};

/// Width of the stem and of the first stage: 64 channels in He et al. (2016, Table 1) and
/// torchvision's `width_per_group = 64`.
pub const STANDARD_BASE_WIDTH: i64 = 64;

/// Output channels of a bottleneck block relative to its inner width: 4 in He et al. (2016,
/// Fig. 5: 64 → 256) and torchvision's `Bottleneck.expansion`.
pub const BOTTLENECK_EXPANSION: i64 = 4;

/// Base width of [`ResNetConfig::tiny`]: small enough that a forward pass on a 32 px image
/// takes milliseconds on a CPU. Not a recipe constant.
pub const TINY_BASE_WIDTH: i64 = 8;

/// Which ResNet: the number of weighted layers, as in the paper's names.
///
/// In configs a depth is written as the string `"18"`, `"34"` or `"50"` (what it serialises to);
/// the bare numbers `18`, `34` and `50` are accepted as well.
///
/// ```
/// use ssl_vision::backbone::ResNetDepth;
/// let d: ResNetDepth = serde_json::from_str("50")?;
/// assert_eq!(d, ResNetDepth::R50);
/// assert_eq!(serde_json::to_string(&d)?, r#""50""#);
/// assert_eq!(serde_json::from_str::<ResNetDepth>(r#""18""#)?.blocks(), [2, 2, 2, 2]);
/// assert!(serde_json::from_str::<ResNetDepth>("101").is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResNetDepth {
    /// ResNet-18: basic blocks, `[2, 2, 2, 2]` per stage.
    R18,
    /// ResNet-34: basic blocks, `[3, 4, 6, 3]` per stage.
    R34,
    /// ResNet-50: bottleneck blocks, `[3, 4, 6, 3]` per stage.
    R50,
}

impl ResNetDepth {
    /// Every supported depth, shallowest first.
    pub const ALL: [ResNetDepth; 3] = [ResNetDepth::R18, ResNetDepth::R34, ResNetDepth::R50];

    /// The number in the name: 18, 34 or 50.
    pub const fn layers(self) -> u32 {
        match self {
            ResNetDepth::R18 => 18,
            ResNetDepth::R34 => 34,
            ResNetDepth::R50 => 50,
        }
    }

    /// Residual blocks in each of the four stages (He et al., 2016, Table 1).
    pub const fn blocks(self) -> [usize; 4] {
        match self {
            ResNetDepth::R18 => [2, 2, 2, 2],
            ResNetDepth::R34 | ResNetDepth::R50 => [3, 4, 6, 3],
        }
    }

    /// Whether the blocks are bottlenecks (1x1, 3x3, 1x1) rather than basic blocks (3x3, 3x3).
    pub const fn bottleneck(self) -> bool {
        matches!(self, ResNetDepth::R50)
    }

    /// Output channels of a block relative to its inner width: 1 for basic blocks,
    /// [`BOTTLENECK_EXPANSION`] for bottlenecks.
    pub const fn expansion(self) -> i64 {
        if self.bottleneck() {
            BOTTLENECK_EXPANSION
        } else {
            1
        }
    }

    fn from_layers(layers: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|d| u64::from(d.layers()) == layers)
    }
}

impl fmt::Display for ResNetDepth {
    /// `ResNet-50`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResNet-{}", self.layers())
    }
}

impl Serialize for ResNetDepth {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.layers().to_string())
    }
}

struct DepthVisitor;

impl de::Visitor<'_> for DepthVisitor {
    type Value = ResNetDepth;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a ResNet depth: \"18\", \"34\" or \"50\" (or the bare number)")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ResNetDepth, E> {
        ResNetDepth::from_layers(v).ok_or_else(|| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ResNetDepth, E> {
        u64::try_from(v)
            .ok()
            .and_then(ResNetDepth::from_layers)
            .ok_or_else(|| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ResNetDepth, E> {
        v.parse()
            .ok()
            .and_then(ResNetDepth::from_layers)
            .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

impl<'de> Deserialize<'de> for ResNetDepth {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DepthVisitor)
    }
}

fn default_base_width() -> i64 {
    STANDARD_BASE_WIDTH
}
fn default_in_channels() -> i64 {
    3
}
fn default_true() -> bool {
    true
}

/// Shape of a [`ResNet`](super::ResNet); `depth` is required, the other fields default as
/// documented (to the ImageNet ResNet of torchvision, without its classifier).
///
/// ```
/// use ssl_vision::backbone::{ResNetConfig, ResNetDepth};
/// let cfg: ResNetConfig = serde_json::from_str(r#"{"depth": "50"}"#)?;
/// assert_eq!(cfg, ResNetConfig::resnet50());
/// assert_eq!(cfg.output_dim(), 2048);
///
/// let cifar: ResNetConfig = serde_json::from_str(r#"{"depth": "18", "small_images": true}"#)?;
/// assert_eq!((cifar.depth, cifar.base_width, cifar.in_channels), (ResNetDepth::R18, 64, 3));
/// assert!(serde_json::from_str::<ResNetConfig>(r#"{"depth": "18", "width": 32}"#).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResNetConfig {
    /// ResNet-18, -34 or -50.
    pub depth: ResNetDepth,
    /// Channels of the stem and of the first stage; stage `i` (0-based) has `base_width · 2^i`
    /// inner channels. Default [`STANDARD_BASE_WIDTH`] (64); smaller widths give narrow
    /// networks of the same layout (for tests and quick experiments).
    #[serde(default = "default_base_width")]
    pub base_width: i64,
    /// CIFAR-style stem for small (32 px) images: a 3x3 convolution with stride 1 and no
    /// max-pool, as SimCLR (Chen et al., 2020, Appendix B.9) and solo-learn use on CIFAR.
    /// Default false: the ImageNet stem, a 7x7 convolution with stride 2 and a 3x3 max-pool with
    /// stride 2 (output stride 32 instead of 8).
    #[serde(default)]
    pub small_images: bool,
    /// Channels of the input images; default 3 (RGB).
    #[serde(default = "default_in_channels")]
    pub in_channels: i64,
    /// Start the last BatchNorm of every residual branch at weight 0, so each block starts as
    /// the identity (after the final ReLU). Goyal et al. (2017, "Accurate, Large Minibatch SGD",
    /// §5.1) recommend it for large-batch training; torchvision offers it as
    /// `zero_init_residual` (off by default). Default false.
    #[serde(default)]
    pub zero_init_residual: bool,
    /// Run the convolutions on channels-last (NHWC) activations. Same arithmetic, different
    /// memory layout: libtorch's CPU (oneDNN) and cuDNN convolution kernels are faster on it
    /// (about 1.4x for a ResNet-18 step on a 2-core CPU, measured by `cargo xtask bench`).
    /// Default true.
    #[serde(default = "default_true")]
    pub channels_last: bool,
}

impl ResNetConfig {
    /// The ImageNet network of a given depth: base width 64, ImageNet stem, 3 input channels,
    /// no zero-initialised residuals.
    pub fn new(depth: ResNetDepth) -> Self {
        Self {
            depth,
            base_width: STANDARD_BASE_WIDTH,
            small_images: false,
            in_channels: default_in_channels(),
            zero_init_residual: false,
            channels_last: true,
        }
    }

    /// ResNet-18 (He et al., 2016): 11.2 M parameters without the classifier, 512-d output.
    pub fn resnet18() -> Self {
        Self::new(ResNetDepth::R18)
    }

    /// ResNet-34 (He et al., 2016): 21.3 M parameters without the classifier, 512-d output.
    pub fn resnet34() -> Self {
        Self::new(ResNetDepth::R34)
    }

    /// ResNet-50 (He et al., 2016, torchvision v1.5): 23.5 M parameters without the
    /// classifier, 2048-d output; the backbone of SimCLR, MoCo and BYOL.
    pub fn resnet50() -> Self {
        Self::new(ResNetDepth::R50)
    }

    /// A ResNet-18 layout with base width [`TINY_BASE_WIDTH`] (8) and the small-image stem:
    /// 175,752 parameters, 64-d output. For tests and examples.
    pub fn tiny() -> Self {
        Self { base_width: TINY_BASE_WIDTH, small_images: true, ..Self::resnet18() }
    }

    /// The size of the representation: `8 · base_width · expansion` (512 for ResNet-18 and -34,
    /// 2048 for ResNet-50).
    pub fn output_dim(&self) -> i64 {
        8 * self.base_width * self.depth.expansion()
    }

    /// How much the network shrinks each spatial side (rounding up): 8 with the small-image
    /// stem, 32 with the ImageNet stem.
    pub fn output_stride(&self) -> i64 {
        if self.small_images {
            8
        } else {
            32
        }
    }

    /// Checks every field; the error names the first field out of range.
    ///
    /// ```
    /// use ssl_core::Error;
    /// use ssl_vision::backbone::ResNetConfig;
    /// let bad = ResNetConfig { base_width: 0, ..ResNetConfig::resnet18() };
    /// assert!(matches!(bad.validate(), Err(Error::Config { field, .. }) if field == "base_width"));
    /// ```
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [("base_width", self.base_width), ("in_channels", self.in_channels)] {
            if v <= 0 {
                return Err(Error::config(field, format!("must be positive, got {v}")));
            }
        }
        Ok(())
    }
}
