"""PyTorch references of ssl-rs's non-contrastive vision methods: MAE, inpainting, rotation
prediction, (denoising) autoencoders and the supervised baseline.

Each builder takes the resolved `config.toml` of an ssl-rs run (parsed) and returns a workload
(see `ssl_bench.py`'s docstring) that trains, in plain PyTorch, the architecture ssl-rs builds
for that config and does the same work per step:

- `mae`: `crates/ssl-vision/src/mae.rs` (ViT of `backbone/vit.rs`, transformer blocks of
  `crates/ssl-core/src/blocks/transformer.rs`, sine-cosine embeddings of `blocks/posembed.rs`);
- `inpainting`: `crates/ssl-vision/src/inpainting.rs` (ResNet of `backbone/resnet.rs`, decoder
  of `decoder.rs`);
- `rotation`: `crates/ssl-vision/src/rotation.rs`;
- `autoencoder`: `crates/ssl-vision/src/autoencoder.rs`;
- `supervised`: `crates/ssl-vision/src/supervised.rs`.

The training step mirrors `crates/ssl-core/src/trainer/mod.rs`: reseed the generator, forward
(loss read back, as the trainer checks it is finite; the method's metrics read back too, as the
trainer reads them every step), backward, optional gradient clipping, the warm-up/cosine
learning rate of `optim/schedule.rs`, the optimiser update of `optim/optimizer.rs`, `zero_grad`.
Parameters with fewer than two dimensions (biases, norm weights) get no weight decay, as
`Objective::no_weight_decay` says (none of these methods overrides it).

Parameter and buffer names follow ssl-rs's checkpoint names, so `parity -v` lines up one to one.
Initialisation mirrors ssl-rs where it is cheap to (Xavier for MAE, Kaiming fan-out for the
ResNet), but need not match bit for bit.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

# The ResNet backbone (backbone/resnet.rs) and the trainer's optimiser, schedule and update
# (optim/optimizer.rs, optim/schedule.rs, trainer/mod.rs) are shared with the other vision
# references.
from refs.common_vision import make_optimizer, optimizer_step, resnet_from_config
from refs.precision import forward_autocast

# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def round_half_away(x: float) -> int:
    """Rust's `f64::round` (halves away from zero); Python's `round` rounds halves to even."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def output_stride(backbone: dict) -> int:
    """`ResNetConfig::output_stride`: 8 with the small-image stem, 32 with the ImageNet one."""
    return 8 if backbone.get("small_images", False) else 32


def _get(cfg: dict, path: str, default=None):
    """`cfg["a"]["b"]` for `path = "a.b"`, or `default` when a key is missing."""
    node = cfg
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


class Workload:
    """One method's training step, as ssl-core's `Trainer` runs it (trainer/mod.rs).

    `forward(batch)` returns `(loss, metrics)`, the objective's `LossOutput`; metrics are read
    back every step, as the trainer does."""

    def __init__(self, cfg: dict, module: nn.Module, forward: Callable, make_batch: Callable,
                 batch_size: int):
        self.cfg = cfg
        self.module = module
        self._forward = forward
        self._make_batch = make_batch
        self.accum = int(_get(cfg, "train.accumulation_steps", 1))
        self.batch_size = batch_size * self.accum
        self.seed = int(_get(cfg, "train.seed", 0))
        self.optimizer = None  # built on the first step, after the harness moved the module
        self.params = []

    def make_batch(self, device):
        return self._make_batch(device)

    def step(self, batch, step: int, total_steps: int) -> torch.Tensor:
        if self.optimizer is None:
            self.optimizer = make_optimizer(self.cfg, self.module.named_parameters())
            self.params = [p for p in self.module.parameters() if p.requires_grad]
        self.module.train()
        total = 0.0
        for micro in range(self.accum):
            # The trainer reseeds libtorch before every forward (`seed_torch(seed, "step", ..)`).
            torch.manual_seed((self.seed * 1_000_003 + step * 1_009 + micro) & ((1 << 63) - 1))
            with forward_autocast():
                loss, metrics = self._forward(batch)
            value = float(loss.detach())
            if not math.isfinite(value):
                return loss.detach()
            total = total + loss.detach() / self.accum
            (loss if self.accum == 1 else loss / self.accum).backward()
            if micro + 1 == self.accum:
                for m in metrics.values():
                    float(m)
        # Clipping (if configured), the scheduled learning rate, the update, zero_grad.
        optimizer_step(self.cfg, self.optimizer, self.params, step, total_steps)
        return total


# ---------------------------------------------------------------------------------------------
# Convolutional decoder (crates/ssl-vision/src/decoder.rs)
# ---------------------------------------------------------------------------------------------

MIN_CHANNELS = 8


class ConvDecoder(nn.Module):
    """`upsamplings` stages of ConvTranspose2d(4, stride 2, padding 1, no bias) + BN + ReLU,
    channels `max(width >> i, min(8, width))`, then a 3x3 convolution (with bias, no activation)
    to `out_channels` (decoder.rs's `ConvDecoder`; names `up.{i}.conv`, `up.{i}.bn`, `out`).
    PyTorch's default initialisations, as tch's.

    Its weights stay NCHW, as ssl-rs's do: the decoder runs on whatever layout arrives, NHWC
    from a channels-last backbone's feature map (inpainting), NCHW from the autoencoder's
    `expand(...).view(...)` grid, in ssl-rs and here alike."""

    def __init__(self, in_channels: int, width: int, upsamplings: int, out_channels: int):
        super().__init__()
        self.up = nn.ModuleList()
        c_in = in_channels
        for i in range(upsamplings):
            c_out = max(width >> i, min(MIN_CHANNELS, width))
            stage = nn.Module()
            stage.conv = nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False)
            stage.bn = nn.BatchNorm2d(c_out)
            self.up.append(stage)
            c_in = c_out
        self.out = nn.Conv2d(c_in, out_channels, 3, padding=1)

    def forward(self, x):
        for stage in self.up:
            x = F.relu(stage.bn(stage.conv(x)))
        return self.out(x)


# ---------------------------------------------------------------------------------------------
# Transformer and ViT (crates/ssl-core/src/blocks/{transformer,posembed}.rs,
# crates/ssl-vision/src/backbone/vit.rs)
# ---------------------------------------------------------------------------------------------

LAYER_NORM_EPS = 1e-6  # VIT_LAYER_NORM_EPS
TOKEN_INIT_STD = 0.02  # vit.rs's TOKEN_INIT_STD


def _xavier_linear(d_in: int, d_out: int, bias: bool = True) -> nn.Linear:
    """A Linear with Xavier-uniform weight and zero bias (`InitScheme::XavierUniform`)."""
    lin = nn.Linear(d_in, d_out, bias=bias)
    nn.init.xavier_uniform_(lin.weight)
    if bias:
        nn.init.zeros_(lin.bias)
    return lin


class Attention(nn.Module):
    """Fused `qkv` projection, scaled-dot-product attention over `[B, heads, T, head_dim]`,
    output `proj` (transformer.rs's `TransformerBlock::attention`)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = _xavier_linear(dim, 3 * dim)
        self.proj = _xavier_linear(dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class Mlp(nn.Module):
    """`fc2(gelu(fc1(x)))`, exact GELU, hidden width `floor(dim · mlp_ratio)`."""

    def __init__(self, dim: int, mlp_ratio: float):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.fc1 = _xavier_linear(dim, hidden)
        self.fc2 = _xavier_linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-LN block: `x + attn(norm1(x))`, then `x + mlp(norm2(x))` (`TransformerBlock`)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, mlp_ratio)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """`blocks.{i}` then the final LayerNorm `norm` (transformer.rs's `Transformer`, pre-LN)."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


def _sincos(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """`[N, dim]` embeddings of `pos` (float64): sines of `p · ω_i` then cosines, `ω_i =
    10000^(-i / (dim/2))` (posembed.rs's `embed`)."""
    half = dim // 2
    omega = torch.exp(torch.arange(half, dtype=torch.float64) * (-math.log(10000.0) / half))
    angles = torch.outer(pos, omega)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_2d(dim: int, grid: int, cls_token: bool) -> torch.Tensor:
    """MAE's `get_2d_sincos_pos_embed` (posembed.rs's `sincos_2d`): row-major patches, the column
    embedding in the first half, the row embedding in the second, a zero row for the class
    token; float32."""
    rows = torch.arange(grid, dtype=torch.float64).repeat_interleave(grid)
    cols = torch.arange(grid, dtype=torch.float64).repeat(grid)
    pe = torch.cat([_sincos(dim // 2, cols), _sincos(dim // 2, rows)], dim=1)
    if cls_token:
        pe = torch.cat([torch.zeros(1, dim, dtype=torch.float64), pe], dim=0)
    return pe.float()


class PatchEmbed(nn.Module):
    """`proj`: a `p × p` stride-`p` convolution with bias, Xavier-uniform over its `[D, C·p·p]`
    view (vit.rs)."""

    def __init__(self, in_channels: int, dim: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch, stride=patch)
        nn.init.xavier_uniform_(self.proj.weight.view(dim, -1))
        nn.init.zeros_(self.proj.bias)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # [N, L, D]


class Vit(nn.Module):
    """The ViT encoder of `backbone/vit.rs`: patch embedding, class token, fixed 2-D sine-cosine
    position embeddings (a non-persistent buffer: ssl-rs does not save them), the pre-LN
    transformer (`blocks`, `norm`; flattened into this module, as ssl-rs names them)."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.image_size = int(cfg["image_size"])
        self.patch = int(cfg["patch_size"])
        self.in_channels = int(cfg.get("in_channels", 3))
        self.dim = int(cfg["dim"])
        self.grid = self.image_size // self.patch
        self.num_patches = self.grid * self.grid
        self.patch_dim = self.patch * self.patch * self.in_channels
        mlp_ratio = float(cfg.get("mlp_ratio", 4.0))
        self.patch_embed = PatchEmbed(self.in_channels, self.dim, self.patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, self.dim) * TOKEN_INIT_STD)
        self.register_buffer("pos_embed", sincos_2d(self.dim, self.grid, True).unsqueeze(0),
                             persistent=False)
        t = Transformer(self.dim, int(cfg["depth"]), int(cfg["heads"]), mlp_ratio)
        self.blocks, self.norm = t.blocks, t.norm

    def patch_tokens(self, images):
        """Patch tokens plus their position embeddings, `[N, L, D]` (`Vit::patch_tokens`)."""
        return self.patch_embed(images) + self.pos_embed[:, 1:]

    def encode_tokens(self, tokens):
        """Class token prepended, blocks, final norm: `[N, 1 + T, D]` (`Vit::encode_tokens`)."""
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


def patchify(images: torch.Tensor, p: int) -> torch.Tensor:
    """`[N, C, H, W]` to `[N, L, p·p·C]`, patches row-major, each flattened (row, col, channel)
    (vit.rs's `patchify`)."""
    n, c, h, w = images.shape
    x = images.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(n, (h // p) * (w // p), p * p * c)


# ---------------------------------------------------------------------------------------------
# MAE (crates/ssl-vision/src/mae.rs)
# ---------------------------------------------------------------------------------------------

NORM_PIX_EPS = 1e-6


def random_masking(tokens: torch.Tensor, ratio: float):
    """Per-sample shuffle by argsort of uniform noise; keeps `L - round(ratio · L)` tokens.
    Returns the visible tokens, the mask (1 = masked, original order) and `ids_restore`
    (mae.rs's `random_masking`)."""
    n, l, d = tokens.shape
    keep = l - round_half_away(ratio * l)
    noise = torch.rand(n, l, device=tokens.device)
    ids_shuffle = noise.argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    index = ids_shuffle[:, :keep].unsqueeze(-1).expand(n, keep, d)
    visible = tokens.gather(1, index)
    ordered = torch.cat([torch.zeros(n, keep, device=tokens.device),
                         torch.ones(n, l - keep, device=tokens.device)], dim=1)
    mask = ordered.gather(1, ids_restore)
    return visible, mask, ids_restore


class Mae(nn.Module):
    """MAE: the ViT `encoder`, `decoder_embed`, a shared `mask_token`, fixed decoder position
    embeddings, the `decoder` transformer (MLP ratio 4, the `TransformerConfig` default, not the
    encoder's) and `decoder_pred` (mae.rs's `Mae`)."""

    def __init__(self, cfg: dict):
        super().__init__()
        m = cfg["model"]
        self.encoder = Vit(m["encoder"])
        dd = int(m.get("decoder_dim", 256))
        self.mask_ratio = float(m.get("mask_ratio", 0.75))
        self.norm_pix_loss = bool(m.get("norm_pix_loss", True))
        self.decoder_embed = _xavier_linear(self.encoder.dim, dd)
        self.mask_token = nn.Parameter(torch.randn(1, 1, dd) * TOKEN_INIT_STD)
        self.register_buffer("decoder_pos_embed",
                             sincos_2d(dd, self.encoder.grid, True).unsqueeze(0), persistent=False)
        self.decoder = Transformer(dd, int(m.get("decoder_depth", 4)), int(m.get("decoder_heads", 8)))
        self.decoder_pred = _xavier_linear(dd, self.encoder.patch_dim)

    def predict(self, images):
        """Predicted patches `[N, L, p·p·C]` and the mask `[N, L]` (`Mae::predict`)."""
        tokens = self.encoder.patch_tokens(images)
        visible, mask, ids_restore = random_masking(tokens, self.mask_ratio)
        x = self.decoder_embed(self.encoder.encode_tokens(visible))
        n, l = x.shape[0], self.encoder.num_patches
        keep = x.shape[1] - 1
        masks = self.mask_token.expand(n, l - keep, -1)
        patches = torch.cat([x[:, 1:], masks], dim=1)
        patches = patches.gather(1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        x = torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos_embed
        return self.decoder_pred(self.decoder(x))[:, 1:], mask

    def forward(self, images):
        """MSE per patch against (per-patch normalised) pixels, over masked patches (`Mae::loss`)."""
        pred, mask = self.predict(images)
        target = patchify(images, self.encoder.patch)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True, unbiased=True)
            target = (target - mean) / (var + NORM_PIX_EPS).sqrt()
        per_patch = (pred - target).square().mean(dim=-1)
        return (per_patch * mask).sum() / mask.sum()


# ---------------------------------------------------------------------------------------------
# Inpainting (crates/ssl-vision/src/inpainting.rs)
# ---------------------------------------------------------------------------------------------


def block_mask(n: int, side: int, block: int, device) -> torch.Tensor:
    """One `block`-pixel square per image at a uniformly random place, `[n, 1, side, side]`
    float (inpainting.rs's `block_mask`)."""
    top = torch.randint(side - block + 1, (n, 1), device=device)
    left = torch.randint(side - block + 1, (n, 1), device=device)
    pos = torch.arange(side, device=device).unsqueeze(0)
    rows = ((pos >= top) & (pos < top + block)).unsqueeze(2)
    cols = ((pos >= left) & (pos < left + block)).unsqueeze(1)
    return (rows & cols).unsqueeze(1).float()


def patch_mask(n: int, grid: int, count: int, patch: int, device) -> torch.Tensor:
    """`count` random squares of a `grid × grid` grid cut out per image (`patch_mask`)."""
    rank = torch.rand(n, grid * grid, device=device).argsort(1).argsort(1)
    m = (rank < count).float().view(n, 1, grid, grid)
    return m.repeat_interleave(patch, 2).repeat_interleave(patch, 3)


def masked_mse(prediction, target, mask):
    """Squared error summed where `mask` is 1 (all channels), over `max(mask.sum() · C, 1)`
    (inpainting.rs's `masked_mse`)."""
    se = ((prediction - target).square() * mask).sum()
    return se / (mask.sum() * target.shape[1]).clamp_min(1.0)


class Inpainting(nn.Module):
    """Context-encoder inpainting: a ResNet `backbone` reads the image with a hole, a
    `ConvDecoder` of `log2(output_stride)` up-convolutions paints it whole (`Inpainting`)."""

    def __init__(self, cfg: dict):
        super().__init__()
        m = cfg["model"]
        self.backbone = resnet_from_config(m["backbone"])
        self.decoder = ConvDecoder(self.backbone.output_dim, int(m.get("decoder_width", 256)),
                                   int(math.log2(output_stride(m["backbone"]))),
                                   int(m["backbone"].get("in_channels", 3)))
        self.mask_cfg = m.get("mask", {"kind": "block", "size": 0.5})

    def sample_mask(self, n: int, side: int, device):
        """`InpaintMask::sample`."""
        if self.mask_cfg.get("kind", "block") == "block":
            block = min(max(round_half_away(float(self.mask_cfg["size"]) * side), 1), max(side - 1, 1))
            return block_mask(n, side, block, device)
        p = int(self.mask_cfg["patch_size"])
        grid = side // p
        count = round_half_away(grid * grid * float(self.mask_cfg["ratio"]))
        return patch_mask(n, grid, count, p, device)

    def forward(self, images):
        """The loss over the hole and the `context_mse` metric (`Objective::forward`)."""
        mask = self.sample_mask(images.shape[0], images.shape[2], images.device)
        masked = images * (1.0 - mask)
        reconstruction = self.decoder(self.backbone.feature_map(masked))
        loss = masked_mse(reconstruction, images, mask)
        with torch.no_grad():
            context = masked_mse(reconstruction, images, 1.0 - mask)
        return loss, {"context_mse": context}


# ---------------------------------------------------------------------------------------------
# Rotation prediction (crates/ssl-vision/src/rotation.rs)
# ---------------------------------------------------------------------------------------------

ROTATIONS = 4


class Rotation(nn.Module):
    """RotNet: a ResNet `backbone` and a 4-way linear `fc` on the four rotations of every image
    (`Rotation`)."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.backbone = resnet_from_config(cfg["model"]["backbone"])
        self.fc = nn.Linear(self.backbone.output_dim, ROTATIONS)

    def forward(self, images):
        """Cross-entropy over `[4B]` rotated copies (`rotations`: block `k` rotated by
        `k · 90°`), and the `pretext_acc` metric."""
        b = images.shape[0]
        x = torch.cat([torch.rot90(images, k, (2, 3)) for k in range(ROTATIONS)], dim=0)
        y = torch.arange(ROTATIONS, device=images.device).repeat_interleave(b)
        logits = self.fc(self.backbone(x))
        loss = F.cross_entropy(logits, y)
        with torch.no_grad():
            acc = (logits.argmax(1) == y).float().mean()
        return loss, {"pretext_acc": acc}


# ---------------------------------------------------------------------------------------------
# Autoencoder (crates/ssl-vision/src/autoencoder.rs)
# ---------------------------------------------------------------------------------------------


class Autoencoder(nn.Module):
    """(Denoising) autoencoder: corruption, ResNet `backbone` (pooled bottleneck), `expand`
    Linear + ReLU to a `decoder_width × g × g` grid, `ConvDecoder` back to pixels, MSE against
    the clean image (`Autoencoder`)."""

    def __init__(self, cfg: dict):
        super().__init__()
        m = cfg["model"]
        self.backbone = resnet_from_config(m["backbone"])
        self.image_size = int(m.get("image_size", 32))
        self.width = int(m.get("decoder_width", 256))
        self.grid = self.image_size // output_stride(m["backbone"])
        self.expand = nn.Linear(self.backbone.output_dim, self.width * self.grid * self.grid)
        self.decoder = ConvDecoder(self.width, self.width, int(math.log2(output_stride(m["backbone"]))),
                                   int(m["backbone"].get("in_channels", 3)))
        self.corruption = m.get("corruption", {"kind": "masking", "prob": 0.25})

    def corrupt(self, images):
        """`Corruption::apply`: none, additive Gaussian noise, or whole pixels zeroed."""
        kind = self.corruption.get("kind", "masking")
        if kind == "none":
            return images
        if kind == "gaussian":
            return images + torch.randn_like(images) * float(self.corruption["std"])
        n, _, h, w = images.shape
        keep = torch.rand(n, 1, h, w, device=images.device) >= float(self.corruption["prob"])
        return images * keep.to(images.dtype)

    def forward(self, images):
        z = self.backbone(self.corrupt(images))
        h = F.relu(self.expand(z)).view(images.shape[0], self.width, self.grid, self.grid)
        return F.mse_loss(self.decoder(h), images), {}


# ---------------------------------------------------------------------------------------------
# Supervised baseline (crates/ssl-vision/src/supervised.rs)
# ---------------------------------------------------------------------------------------------


class Supervised(nn.Module):
    """A ResNet `backbone` and a linear `fc` trained with (optionally smoothed) cross-entropy
    (`Supervised`)."""

    def __init__(self, cfg: dict):
        super().__init__()
        m = cfg["model"]
        self.backbone = resnet_from_config(m["backbone"])
        self.num_classes = int(m.get("num_classes", 8))
        self.label_smoothing = float(m.get("label_smoothing", 0.0))
        self.fc = nn.Linear(self.backbone.output_dim, self.num_classes)

    def forward(self, images, labels):
        # ssl-rs checks the label range every step (two reads back from the device).
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= self.num_classes:
            raise ValueError(f"labels must be in [0, {self.num_classes}), got [{lo}, {hi}]")
        logits = self.fc(self.backbone(images))
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        with torch.no_grad():
            acc = (logits.argmax(1) == labels).float().mean()
        return loss, {"train_acc": acc}


# ---------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------


def _images(cfg: dict, channels: int = 3):
    """`make_batch` of one view: `[B, C, S, S]` standard-normal pixels (normalised images), NCHW
    contiguous as ssl-rs's loader hands them over."""
    b = int(_get(cfg, "data.batch_size", 128))
    s = int(_get(cfg, "data.image_size", 32))
    return lambda device: [torch.randn(b, channels, s, s, device=device)]


def _one_view(module: nn.Module) -> Callable:
    """Forward of a one-view objective (`views::one_view`)."""
    def forward(batch):
        (images,) = batch
        out = module(images)
        return out if isinstance(out, tuple) else (out, {})
    return forward


def _backbone_channels(cfg: dict) -> int:
    return int(_get(cfg, "model.backbone.in_channels", 3))


def build_mae(cfg: dict, device) -> Workload:
    module = Mae(cfg)
    return Workload(cfg, module, _one_view(module), _images(cfg, module.encoder.in_channels),
                    int(_get(cfg, "data.batch_size", 128)))


def build_inpainting(cfg: dict, device) -> Workload:
    module = Inpainting(cfg)
    return Workload(cfg, module, _one_view(module), _images(cfg, _backbone_channels(cfg)),
                    int(_get(cfg, "data.batch_size", 128)))


def build_rotation(cfg: dict, device) -> Workload:
    module = Rotation(cfg)
    return Workload(cfg, module, _one_view(module), _images(cfg, _backbone_channels(cfg)),
                    int(_get(cfg, "data.batch_size", 128)))


def build_autoencoder(cfg: dict, device) -> Workload:
    module = Autoencoder(cfg)
    b = int(_get(cfg, "data.batch_size", 128))
    s = module.image_size
    c = _backbone_channels(cfg)
    return Workload(cfg, module, _one_view(module),
                    lambda dev: [torch.randn(b, c, s, s, device=dev)], b)


def build_supervised(cfg: dict, device) -> Workload:
    """Batches are `[images, labels]` (int64 labels in `[0, num_classes)`)."""
    module = Supervised(cfg)
    b = int(_get(cfg, "data.batch_size", 128))
    images = _images(cfg, _backbone_channels(cfg))

    def make_batch(dev):
        return images(dev) + [torch.randint(module.num_classes, (b,), device=dev)]

    return Workload(cfg, module, lambda batch: module(batch[0], batch[1]), make_batch, b)


WORKLOADS = {
    "mae": build_mae,
    "inpainting": build_inpainting,
    "rotation": build_rotation,
    "autoencoder": build_autoencoder,
    "supervised": build_supervised,
}
