"""Shared PyTorch building blocks of the vision references: the ResNet backbone and the MLP heads.

Each piece mirrors an ssl-rs module, layer for layer, so that a reference built from a run's
resolved `config.toml` has the same parameters and buffers (by shape) as the ssl-rs model:

- `ResNet` mirrors `crates/ssl-vision/src/backbone/resnet.rs` (+ `resnet/config.rs`): the
  torchvision layout without `fc`, optional CIFAR stem (`small_images`), optional
  channels-last activations, global average pooling.
- `MlpHead` mirrors `crates/ssl-core/src/blocks/mlp.rs` (`MlpHead`, `MlpHeadConfig`).
- `resnet_from_config` reads the `[model.backbone]` table.
- `to_channels_last` / `random_views` build inputs the way the backbone expects them.

Training helpers (same file, shared by all vision references):

- `make_optimizer` / `Lars` mirror `crates/ssl-core/src/optim/optimizer.rs` (AdamW/SGD from
  torch.optim, LARS written out; weight decay and LARS adaptation only on parameters with two
  or more dimensions, `Objective::no_weight_decay` in `crates/ssl-core/src/objective.rs`);
- `lr_at` mirrors `optim/schedule.rs`, `optimizer_step` the trainer's update
  (`crates/ssl-core/src/trainer/mod.rs`: clipping, scheduled lr, step, zero_grad);
- `Ema` / `cosine_momentum` mirror `crates/ssl-core/src/blocks/ema.rs`;
- `normalize` mirrors `crates/ssl-core/src/loss.rs` `normalize`.

Other reference modules (`vision_contrastive.py`, `vision_other.py`) import these.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# BatchNorm settings of ssl-rs (PyTorch's defaults), `resnet.rs` / `mlp.rs` BN_EPS, BN_MOMENTUM.
BN_EPS = 1e-5
BN_MOMENTUM = 0.1

# `resnet/config.rs`: blocks per stage, and which depths use bottlenecks.
RESNET_BLOCKS = {"18": [2, 2, 2, 2], "34": [3, 4, 6, 3], "50": [3, 4, 6, 3]}
BOTTLENECK_EXPANSION = 4


def _conv(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Conv2d:
    """`resnet.rs` `Conv`: bias-free square convolution, padding `kernel // 2`, Kaiming-normal
    fan-out init (torchvision's)."""
    conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def _bn2d(channels: int, gamma: float = 1.0) -> nn.BatchNorm2d:
    """`resnet.rs` `BatchNorm`: affine, running statistics, weight `gamma` (0 for a
    zero-initialised residual branch), bias 0."""
    bn = nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)
    nn.init.constant_(bn.weight, gamma)
    nn.init.zeros_(bn.bias)
    return bn


class Block(nn.Module):
    """`resnet.rs` `Block`: a basic block (3x3 → 3x3) or a bottleneck (1x1 → 3x3 → 1x1, stride
    on the 3x3, torchvision's "v1.5"), each conv followed by BN (ReLU between), a 1x1 conv + BN
    shortcut when the shape changes, ReLU after the sum. Attribute names are torchvision's
    (`conv1`, `bn1`, ..., `downsample.0`, `downsample.1`)."""

    def __init__(self, c_in: int, planes: int, stride: int, bottleneck: bool, zero_init_residual: bool):
        super().__init__()
        expansion = BOTTLENECK_EXPANSION if bottleneck else 1
        c_out = planes * expansion
        if bottleneck:
            specs = [(1, c_in, planes, 1), (3, planes, planes, stride), (1, planes, c_out, 1)]
        else:
            specs = [(3, c_in, planes, stride), (3, planes, planes, 1)]
        self.n = len(specs)
        for i, (k, ci, co, s) in enumerate(specs):
            gamma = 0.0 if (i == self.n - 1 and zero_init_residual) else 1.0
            setattr(self, f"conv{i + 1}", _conv(ci, co, k, s))
            setattr(self, f"bn{i + 1}", _bn2d(co, gamma))
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(_conv(c_in, c_out, 1, stride), _bn2d(c_out))
        else:
            self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i in range(1, self.n + 1):
            h = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(h))
            if i < self.n:
                h = torch.relu(h)
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.relu(h + shortcut)


class ResNet(nn.Module):
    """`crates/ssl-vision/src/backbone/resnet.rs` `ResNet`: ResNet-18/34/50 without classifier.

    Stem: 7x7/2 conv + BN + ReLU + 3x3/2 max-pool (ImageNet), or 3x3/1 conv + BN + ReLU and no
    pool (`small_images`). Stage `i` has `base_width * 2**i` inner channels, the first block of
    stages 2-4 has stride 2. Output: global average of the last stage, `[B, output_dim]`.
    With `channels_last`, the input is converted to NHWC strides (as ours does inside
    `features`) and the parameters are stored channels-last too (call `.to(memory_format=...)`
    via `to_channels_last(module)`), so every convolution runs on NHWC activations.
    """

    def __init__(self, depth: str = "18", base_width: int = 64, small_images: bool = False,
                 in_channels: int = 3, zero_init_residual: bool = False, channels_last: bool = True):
        super().__init__()
        depth = str(depth)
        if depth not in RESNET_BLOCKS:
            raise ValueError(f"unsupported ResNet depth {depth!r}")
        bottleneck = depth == "50"
        expansion = BOTTLENECK_EXPANSION if bottleneck else 1
        self.small_images = small_images
        self.channels_last = channels_last
        kernel, stride = (3, 1) if small_images else (7, 2)
        self.conv1 = _conv(in_channels, base_width, kernel, stride)
        self.bn1 = _bn2d(base_width)
        c_in = base_width
        for i, n_blocks in enumerate(RESNET_BLOCKS[depth]):
            planes = base_width << i
            blocks = []
            for b in range(n_blocks):
                s = 2 if (i > 0 and b == 0) else 1
                blocks.append(Block(c_in, planes, s, bottleneck, zero_init_residual))
                c_in = planes * expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.output_dim = c_in

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map `[B, output_dim, H', W']` (`ResNet::f_feature_map`)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        h = torch.relu(self.bn1(self.conv1(x)))
        if not self.small_images:
            h = nn.functional.max_pool2d(h, 3, 2, 1)
        for i in range(1, 5):
            h = getattr(self, f"layer{i}")(h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean(dim=(-2, -1))


def resnet_from_config(bcfg: dict) -> ResNet:
    """A `ResNet` from a `[model.backbone]` table, with `resnet/config.rs`'s defaults."""
    net = ResNet(
        depth=str(bcfg["depth"]),
        base_width=int(bcfg.get("base_width", 64)),
        small_images=bool(bcfg.get("small_images", False)),
        in_channels=int(bcfg.get("in_channels", 3)),
        zero_init_residual=bool(bcfg.get("zero_init_residual", False)),
        channels_last=bool(bcfg.get("channels_last", True)),
    )
    if net.channels_last:
        to_channels_last(net)
    return net


def to_channels_last(module: nn.Module) -> nn.Module:
    """Stores the 4-D parameters of `module` (conv weights) channels-last, as PyTorch's
    channels-last recipe does (`model.to(memory_format=torch.channels_last)`)."""
    return module.to(memory_format=torch.channels_last)


class MlpLayer(nn.Module):
    """One layer of `mlp.rs` `MlpHead`: `linear`, optional `bn` (BatchNorm1d, affine unless it
    is the last layer), activation unless last."""

    def __init__(self, d_in: int, d_out: int, with_bn: bool, last: bool, bias: bool, activation: str):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out, bias=bias and not with_bn)
        # ssl-rs: weight and bias uniform in ±1/sqrt(fan_in) (nn.Linear's bias init; its weight
        # init, kaiming_uniform(a=√5), is the same bound).
        bound = 1.0 / d_in ** 0.5
        nn.init.uniform_(self.linear.weight, -bound, bound)
        if self.linear.bias is not None:
            nn.init.uniform_(self.linear.bias, -bound, bound)
        self.bn = nn.BatchNorm1d(d_out, eps=BN_EPS, momentum=BN_MOMENTUM, affine=not last) if with_bn else None
        self.act = None if last else activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear(x)
        if self.bn is not None:
            h = self.bn(h)
        if self.act == "relu":
            h = torch.relu(h)
        elif self.act == "gelu":
            h = nn.functional.gelu(h)
        return h


class MlpHead(nn.Module):
    """`crates/ssl-core/src/blocks/mlp.rs` `MlpHead`: `layers` Linear layers
    `in_dim -> hidden_dim -> ... -> out_dim`; BatchNorm1d after each hidden Linear if
    `batch_norm` (then ReLU/GELU), affine-free BatchNorm1d after the last if `last_batch_norm`;
    a Linear followed by BN has no bias, the others have one iff `bias`. Parameter names:
    `layers.{i}.linear`, `layers.{i}.bn`."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, layers: int = 2,
                 batch_norm: bool = False, last_batch_norm: bool = False,
                 activation: str = "relu", bias: bool = True):
        super().__init__()
        mods = []
        for i in range(layers):
            last = i + 1 == layers
            d_in = in_dim if i == 0 else hidden_dim
            d_out = out_dim if last else hidden_dim
            with_bn = last_batch_norm if last else batch_norm
            mods.append(MlpLayer(d_in, d_out, with_bn, last, bias, activation))
        self.layers = nn.ModuleList(mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


# Presets of `mlp.rs` `MlpHeadConfig` (the methods override widths from their configs).
def simclr_head(in_dim: int, hidden_dim: int, out_dim: int, batch_norm: bool = True) -> MlpHead:
    """`MlpHeadConfig::simclr`: Linear → BN → ReLU → Linear (output un-normalised)."""
    return MlpHead(in_dim, hidden_dim, out_dim, 2, batch_norm=batch_norm)


def random_views(n_views: int, batch_size: int, channels: int, size: int, device,
                 channels_last: bool = False) -> list[torch.Tensor]:
    """`n_views` batches `[B, C, H, W]` of standard-normal values (normalised images). With
    `channels_last` the views are stored NHWC, as the reference's data loader would produce
    them for a channels-last model."""
    views = [torch.randn(batch_size, channels, size, size, device=device) for _ in range(n_views)]
    if channels_last:
        views = [v.contiguous(memory_format=torch.channels_last) for v in views]
    return views


# ---------------------------------------------------------------------------------------------
# Training helpers shared by the vision references (optimiser, schedule, EMA, losses).
# ---------------------------------------------------------------------------------------------

def no_weight_decay(name: str, param: torch.Tensor) -> bool:
    """`crates/ssl-core/src/objective.rs` `Objective::no_weight_decay` (the vision methods keep
    the default): biases and normalisation weights, i.e. every parameter with fewer than two
    dimensions, get neither weight decay nor LARS adaptation."""
    return param.dim() < 2


class Lars(torch.optim.Optimizer):
    """`crates/ssl-core/src/optim/optimizer.rs` `OptimizerKind::Lars`: SGD momentum over an L2-
    decayed, trust-ratio-scaled gradient. Per parameter of a group with `lars=True`:
    `d = g + wd·p`, `d *= η·‖p‖/‖d‖` (1 when either norm is 0), `buf = m·buf + d`,
    `p -= lr · (d + m·buf if nesterov else buf)`. Groups with `lars=False` (the no-decay
    parameters, given `weight_decay=0`) skip the trust ratio."""

    def __init__(self, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9,
                 nesterov: bool = False, trust_coefficient: float = 0.001):
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                        trust_coefficient=trust_coefficient, lars=True)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            wd, m, lr = group["weight_decay"], group["momentum"], group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad + p * wd if wd > 0 else p.grad
                if group["lars"]:
                    pn, gn = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d)
                    ratio = pn / gn * group["trust_coefficient"]
                    trust = torch.where((pn > 0) & (gn > 0), ratio, torch.ones_like(ratio))
                    d = d * trust
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.mul_(m).add_(d)
                direction = d + buf * m if group["nesterov"] else buf
                p.sub_(direction * lr)
        return None


def make_optimizer(cfg: dict, named_params, no_decay=no_weight_decay) -> torch.optim.Optimizer:
    """The optimiser of `[train.optimizer]` (`optim/optimizer.rs`, defaults from its
    `OptimizerConfig::default`) over the trainable `named_params`, in two groups: decayed and
    (per `no_decay`) not decayed, as ssl-rs's `Optimizer::new(..., no_decay)` splits them.
    AdamW and SGD are torch.optim's (same update rules as ours; PyTorch defaults otherwise);
    LARS is `Lars` above."""
    ocfg = cfg.get("train", {}).get("optimizer", {})
    name = ocfg.get("name", "adamw")
    lr = float(ocfg.get("lr", 1e-3))
    wd = float(ocfg.get("weight_decay", 0.05))
    decay, plain = [], []
    for n, p in named_params:
        if p.requires_grad:
            (plain if no_decay(n, p) else decay).append(p)
    # `lars`: whether the trust ratio applies (ours gates it with the same flag as decay).
    groups = [{"params": decay, "weight_decay": wd, "lars": True},
              {"params": plain, "weight_decay": 0.0, "lars": False}]
    groups = [g for g in groups if g["params"]]
    if name in ("adamw", "sgd"):
        for g in groups:
            del g["lars"]
    if name == "adamw":
        betas = tuple(float(b) for b in ocfg.get("betas", (0.9, 0.999)))
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=float(ocfg.get("eps", 1e-8)))
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=float(ocfg.get("momentum", 0.9)),
                               nesterov=bool(ocfg.get("nesterov", False)))
    if name == "lars":
        return Lars(groups, lr=lr, momentum=float(ocfg.get("momentum", 0.9)),
                    nesterov=bool(ocfg.get("nesterov", False)),
                    trust_coefficient=float(ocfg.get("trust_coefficient", 0.001)))
    raise SystemExit(f"unknown optimizer {name!r}")


def lr_at(cfg: dict, step: int, total_steps: int) -> float:
    """`crates/ssl-core/src/optim/schedule.rs` `ScheduleConfig::lr_at`: linear warm-up from
    `lr / warmup` then half-cosine to `min_lr_ratio · lr` (or constant)."""
    lr = float(cfg.get("train", {}).get("optimizer", {}).get("lr", 1e-3))
    s = cfg.get("train", {}).get("schedule", {})
    warmup = int(s.get("warmup_steps", 0))
    if step < warmup:
        return lr * (step + 1) / warmup
    if s.get("name", "warmup_cosine") == "constant":
        return lr
    span = float(max(total_steps - warmup, 1))
    progress = min((step - warmup) / span, 1.0)
    lo = lr * float(s.get("min_lr_ratio", 0.0))
    return lo + (lr - lo) * 0.5 * (1.0 + math.cos(math.pi * progress))


def optimizer_step(cfg: dict, opt: torch.optim.Optimizer, params: list[torch.Tensor],
                   step: int, total_steps: int) -> None:
    """The trainer's update (`crates/ssl-core/src/trainer/mod.rs` `fit_with`): optional
    gradient clipping (`train.grad_clip_norm`, read back as a metric), the scheduled learning
    rate, the optimiser step, `zero_grad`."""
    clip = cfg.get("train", {}).get("grad_clip_norm")
    if clip is not None:
        float(nn.utils.clip_grad_norm_(params, float(clip)))
    lr = lr_at(cfg, step, total_steps)
    for g in opt.param_groups:
        g["lr"] = lr
    opt.step()
    opt.zero_grad(set_to_none=False)


def cosine_momentum(base: float, step: int, total_steps: int) -> float:
    """`crates/ssl-core/src/blocks/ema.rs` `cosine_momentum`: `1 - (1 - base)(cos(π k/K) + 1)/2`."""
    if total_steps == 0:
        return base
    progress = min(step, total_steps) / total_steps
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


class Ema:
    """`crates/ssl-core/src/blocks/ema.rs` `Ema`: pairs every floating tensor of `online`
    (parameters and buffers: BatchNorm running statistics are averaged too) with the same-named
    one of `target`; `update(m)` does `target.lerp_(online, 1 - m)` tensor by tensor.
    `num_batches_tracked` (absent from ssl-rs) is left alone. The target's parameters are
    frozen (`requires_grad=False`)."""

    def __init__(self, online: nn.Module, target: nn.Module):
        on = dict(online.named_parameters()) | dict(online.named_buffers())
        tg = dict(target.named_parameters()) | dict(target.named_buffers())
        assert on.keys() == tg.keys(), "target does not mirror online"
        self.pairs = [(tg[k], on[k]) for k in sorted(on) if on[k].is_floating_point()]
        for p in target.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def copy_online_to_target(self) -> None:
        for t, o in self.pairs:
            t.copy_(o)

    @torch.no_grad()
    def update(self, momentum: float) -> None:
        for t, o in self.pairs:
            t.lerp_(o, 1.0 - momentum)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """`crates/ssl-core/src/loss.rs` `normalize`: rows to unit L2 norm, in fp32, norm clamped
    at 1e-12."""
    x = x.float()
    return x / torch.linalg.vector_norm(x, 2, dim=1, keepdim=True).clamp_min(1e-12)
