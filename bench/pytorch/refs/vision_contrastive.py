"""PyTorch references of ssl-rs's two-view vision methods: SimCLR, MoCo v2, MoCo v3 and BYOL.

Each builder takes the resolved `config.toml` of an ssl-rs run (parsed) and returns a workload
(see `ssl_bench.py`) whose module has the same tensors as the ssl-rs model, by shape, and whose
`step` does the same work as one ssl-rs training step of that method:

- forward of the method (`crates/ssl-vision/src/{simclr,moco,byol}.rs`), loss from
  `crates/ssl-core/src/loss.rs`, the pretext metric ssl-rs computes and reads back every step;
- backward, the trainer's update (`crates/ssl-core/src/trainer/mod.rs`: optional clipping,
  scheduled learning rate, optimiser step, `zero_grad`);
- the method's `after_step`: the EMA of the target/key encoder
  (`crates/ssl-core/src/blocks/ema.rs`, via `crates/ssl-vision/src/momentum.rs`).

Module layout (names as in ssl-rs's VarStore, so the checkpoints line up key for key):

- simclr: `backbone.*`, `head.layers.{0,1}.*`
- moco-v2: `online.{backbone,projector}.*`, `target.{backbone,projector}.*`, `queue`
- moco-v3: `online.*`, `target.*`, `predictor.layers.*`
- byol: `online.*`, `target.*`, `predictor.layers.*`

The backbone, heads, optimiser, schedule and EMA come from `common_vision.py`.
"""

from __future__ import annotations

import torch
from torch import nn

from refs.common_vision import (
    Ema,
    MlpHead,
    cosine_momentum,
    make_optimizer,
    normalize,
    optimizer_step,
    random_views,
    resnet_from_config,
)
from refs.precision import forward_autocast


# ---------------------------------------------------------------------------------------------
# Losses and metrics: crates/ssl-core/src/loss.rs
# ---------------------------------------------------------------------------------------------

def _two_view_similarities(z1: torch.Tensor, z2: torch.Tensor):
    """`loss.rs` `two_view_similarities`: cosine similarities of the 2N stacked views, the
    diagonal masked to -inf, and each row's partner index."""
    n = z1.shape[0]
    z = normalize(torch.cat([z1, z2], 0))
    eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    sim = (z @ z.t()).masked_fill(eye, float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n, device=z.device), torch.arange(n, device=z.device)])
    return sim, targets


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """`loss.rs` `nt_xent`: SimCLR's NT-Xent, mean over the 2N rows."""
    sim, targets = _two_view_similarities(z1, z2)
    return nn.functional.cross_entropy(sim / temperature, targets)


@torch.no_grad()
def contrastive_accuracy(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """`loss.rs` `contrastive_accuracy`: how often a view's nearest other view is its partner."""
    sim, targets = _two_view_similarities(z1, z2)
    return (sim.argmax(1) == targets).float().mean()


def info_nce(query: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """`loss.rs` `info_nce`: in-batch InfoNCE, the positive of row i is key i."""
    q, k = normalize(query), normalize(keys)
    logits = q @ k.t() / temperature
    return nn.functional.cross_entropy(logits, torch.arange(q.shape[0], device=q.device))


def info_nce_with_queue(query, positive_keys, queue, temperature: float) -> torch.Tensor:
    """`loss.rs` `info_nce_with_queue`: MoCo's InfoNCE, positive logit first, then the queue's
    negatives (every input re-normalised, as ours does)."""
    q, k = normalize(query), normalize(positive_keys)
    l_pos = (q * k).sum(1, keepdim=True)
    l_neg = q @ normalize(queue).t()
    logits = torch.cat([l_pos, l_neg], 1) / temperature
    return nn.functional.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


def normalized_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """`loss.rs` `normalized_mse`: BYOL's `2 - 2 cos(p, z)`, target detached, batch mean."""
    cos = (normalize(prediction) * normalize(target.detach())).sum(1)
    return (cos * -2.0 + 2.0).mean()


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------

class Branch(nn.Module):
    """`crates/ssl-vision/src/momentum.rs` `Branch`: a backbone followed by a projection head."""

    def __init__(self, bcfg: dict, projector: dict):
        super().__init__()
        self.backbone = resnet_from_config(bcfg)
        self.projector = MlpHead(self.backbone.output_dim, **projector)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(x))


class MomentumPair(nn.Module):
    """`momentum.rs` `MomentumPair`: `online` and its moving-average copy `target` (starts equal
    to `online`, receives no gradient, runs in training mode: its BatchNorm uses and updates
    batch statistics)."""

    def __init__(self, bcfg: dict, projector: dict):
        super().__init__()
        self.online = Branch(bcfg, projector)
        self.target = Branch(bcfg, projector)

    def start_ema(self) -> Ema:
        """The pairing (`Ema::from_prefixes(vs, "online", "target")`), target set to online.
        Call after the module reached its device and memory format."""
        ema = Ema(self.online, self.target)
        ema.copy_online_to_target()
        return ema

    @torch.no_grad()
    def target_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.target(x)

    @torch.no_grad()
    def target_forward_shuffled(self, x: torch.Tensor, splits: int) -> torch.Tensor:
        """`MomentumPair::target_forward_shuffled` / `apply_shuffled`: MoCo's shuffling BN on one
        device: the target runs on `splits` chunks of a random permutation of the batch, the
        outputs are put back in the batch order. A plain forward when `splits <= 1` or the
        batch is smaller than `2 · splits`."""
        n = x.shape[0]
        if splits <= 1 or n < 2 * splits:
            return self.target(x)
        perm = torch.randperm(n, device=x.device)
        outs = [self.target(c) for c in x.index_select(0, perm).chunk(splits, 0)]
        return torch.cat(outs, 0).index_select(0, perm.argsort(0))


class SimclrModel(nn.Module):
    """`crates/ssl-vision/src/simclr.rs` `Simclr`: backbone `f` and projection head `g`
    (`MlpHeadConfig::simclr`: Linear(in, hidden) → BN → ReLU → Linear(hidden, out))."""

    def __init__(self, mcfg: dict):
        super().__init__()
        self.backbone = resnet_from_config(mcfg["backbone"])
        self.head = MlpHead(self.backbone.output_dim, int(mcfg.get("hidden_dim", 2048)),
                            int(mcfg.get("out_dim", 128)), layers=2,
                            batch_norm=bool(mcfg.get("head_batch_norm", True)))


class MocoV2Model(MomentumPair):
    """`crates/ssl-vision/src/moco.rs` `MocoV2`: query (online) and key (target) encoders with
    the `MlpHeadConfig::moco_v2_projector` head (Linear(in, in) → ReLU → Linear(in, out), no BN,
    with biases), and the queue `[K, out_dim]` of unit-norm keys (random unit vectors at the
    start), a buffer as in the reference."""

    def __init__(self, mcfg: dict):
        bcfg = mcfg["backbone"]
        in_dim = resnet_out_dim(bcfg)
        out = int(mcfg.get("out_dim", 128))
        super().__init__(bcfg, dict(hidden_dim=in_dim, out_dim=out, layers=2))
        self.register_buffer("queue", normalize(torch.randn(int(mcfg.get("queue_size", 65536)), out)))


class MocoV3Model(MomentumPair):
    """`moco.rs` `MocoV3` (ResNet variant): online/target with a 2-layer bias-free projector
    (Linear → BN → ReLU → Linear → affine-free BN), and on the online side a bias-free predictor
    (Linear → BN → ReLU → Linear), `MlpHeadConfig::moco_v3_{projector,predictor}`."""

    def __init__(self, mcfg: dict):
        hidden, out = int(mcfg.get("hidden_dim", 4096)), int(mcfg.get("out_dim", 256))
        super().__init__(mcfg["backbone"], dict(hidden_dim=hidden, out_dim=out, layers=2,
                                                batch_norm=True, last_batch_norm=True, bias=False))
        self.predictor = MlpHead(out, hidden, out, layers=2, batch_norm=True, bias=False)


class ByolModel(MomentumPair):
    """`crates/ssl-vision/src/byol.rs` `Byol`: online/target with the projector
    Linear(in, hidden) → BN → ReLU → Linear(hidden, out), and on the online side the predictor
    of the same shape on the projection (`MlpHeadConfig::byol_{projector,predictor}`)."""

    def __init__(self, mcfg: dict):
        hidden, out = int(mcfg.get("hidden_dim", 4096)), int(mcfg.get("out_dim", 256))
        super().__init__(mcfg["backbone"], dict(hidden_dim=hidden, out_dim=out, layers=2, batch_norm=True))
        self.predictor = MlpHead(out, hidden, out, layers=2, batch_norm=True)


def resnet_out_dim(bcfg: dict) -> int:
    """`ResNetConfig::output_dim`: `8 · base_width · expansion`."""
    return 8 * int(bcfg.get("base_width", 64)) * (4 if str(bcfg["depth"]) == "50" else 1)


# ---------------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------------

class TwoViewWorkload:
    """Common part of the four workloads: the fixed two-view batch, the trainer's loop around
    the method's `forward` (`trainer/mod.rs`: accumulation, backward, update, `after_step`),
    and the read-back of the pretext metric ssl-rs does every step."""

    def __init__(self, cfg: dict, device, module: nn.Module):
        self.cfg = cfg
        self.device = torch.device(device)
        self.module = module.to(self.device)
        self.batch_size = int(cfg["data"]["batch_size"])
        self.accum = int(cfg.get("train", {}).get("accumulation_steps", 1))
        bcfg = cfg["model"]["backbone"]
        self.channels_last = bool(bcfg.get("channels_last", True))
        self.in_channels = int(bcfg.get("in_channels", 3))
        # The EMA pairing freezes the target/key encoder, so it comes before the optimiser.
        self.ema = module.start_ema() if isinstance(module, MomentumPair) else None
        # The trainer's parameters: every trainable tensor of the store (the target/key
        # encoders and the queue are frozen).
        named = [(n, p) for n, p in self.module.named_parameters() if p.requires_grad]
        self.params = [p for _, p in named]
        self.optimizer = make_optimizer(cfg, named)

    def make_batch(self, device) -> list[torch.Tensor]:
        """Two augmented views `[B, C, H, W]` (normalised images: standard normal), stored
        channels-last when the backbone runs channels-last."""
        size = int(self.cfg["data"]["image_size"])
        return random_views(2, self.batch_size, self.in_channels, size, device, self.channels_last)

    def forward(self, batch, step: int, total_steps: int):
        """The method's loss and its pretext metric (a detached scalar)."""
        raise NotImplementedError

    def after_step(self, step: int, total_steps: int) -> None:
        """The method's work after the optimiser step (EMA updates)."""

    def step(self, batch, step: int, total_steps: int) -> torch.Tensor:
        for micro in range(self.accum):
            with forward_autocast():
                loss, metric = self.forward(batch, step, total_steps)
            (loss if self.accum == 1 else loss / self.accum).backward()
        float(metric)  # ssl-rs reads the metric back every step (`metrics.insert(.., double_value)`).
        optimizer_step(self.cfg, self.optimizer, self.params, step, total_steps)
        self.after_step(step, total_steps)
        return loss.detach()


class SimclrWorkload(TwoViewWorkload):
    """`simclr.rs` `Simclr::forward`: both views through the backbone in one pass (BatchNorm
    sees the 2N batch), the head, NT-Xent at the config's temperature; metric `pretext_acc`
    (`loss.rs` `nt_xent_stacked`)."""

    def __init__(self, cfg: dict, device):
        super().__init__(cfg, device, SimclrModel(cfg["model"]))
        self.temperature = float(cfg["model"].get("temperature", 0.5))

    def forward(self, batch, step, total_steps):
        a, b = batch
        m = self.module
        z = m.head(m.backbone(torch.cat([a, b], 0)))
        z1, z2 = z.chunk(2, 0)
        return nt_xent(z1, z2, self.temperature), contrastive_accuracy(z1, z2)


class MocoV2Workload(TwoViewWorkload):
    """`moco.rs` `MocoV2`: queries from the online encoder, keys from the key encoder with
    shuffling BN in `shuffle_bn_splits` chunks, InfoNCE against the positive key and a copy of
    the queue, the keys enqueued (wrapping) in the forward as the reference does; after the
    optimiser step, the key encoder's EMA at constant momentum `m`."""

    def __init__(self, cfg: dict, device):
        mcfg = cfg["model"]
        super().__init__(cfg, device, MocoV2Model(mcfg))
        self.momentum = float(mcfg.get("momentum", 0.999))
        self.temperature = float(mcfg.get("temperature", 0.2))
        self.splits = int(mcfg.get("shuffle_bn_splits", 8))
        self.queue_ptr = 0  # ours keeps it as non-tensor checkpoint state (`Objective::state`).

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """`MocoV2::enqueue`: writes `keys` at the pointer, wrapping around."""
        queue = self.module.queue
        k = queue.shape[0]
        n = min(keys.shape[0], k)
        keys = keys[:n]
        first = min(n, k - self.queue_ptr)
        queue[self.queue_ptr:self.queue_ptr + first].copy_(keys[:first])
        if first < n:
            queue[: n - first].copy_(keys[first:n])
        self.queue_ptr = (self.queue_ptr + n) % k

    def forward(self, batch, step, total_steps):
        im_q, im_k = batch
        m = self.module
        q = m.online(im_q)
        k = normalize(m.target_forward_shuffled(im_k, self.splits))
        queue = m.queue.detach().clone()
        loss = info_nce_with_queue(q, k, queue, self.temperature)
        with torch.no_grad():
            qn = normalize(q)
            pos = (qn * k).sum(1)
            neg = (qn @ queue.t()).amax(1)
            acc = (pos > neg).float().mean()
        self.enqueue(k)
        return loss, acc

    def after_step(self, step, total_steps):
        self.ema.update(self.momentum)


class MocoV3Workload(TwoViewWorkload):
    """`moco.rs` `MocoV3`: both views are queries (online → predictor) and keys (target), the
    symmetric loss `2τ·InfoNCE(q1, k2) + 2τ·InfoNCE(q2, k1)` over in-batch keys; after the
    optimiser step, the target's EMA with the momentum raised from `momentum` to 1 by the
    cosine schedule (`cosine_momentum(m, step + 1, total)`) when `momentum_cosine`."""

    def __init__(self, cfg: dict, device):
        mcfg = cfg["model"]
        super().__init__(cfg, device, MocoV3Model(mcfg))
        self.momentum = float(mcfg.get("momentum", 0.99))
        self.momentum_cosine = bool(mcfg.get("momentum_cosine", True))
        self.temperature = float(mcfg.get("temperature", 1.0))

    def forward(self, batch, step, total_steps):
        x1, x2 = batch
        m = self.module
        q1, q2 = m.predictor(m.online(x1)), m.predictor(m.online(x2))
        k1, k2 = m.target_forward(x1), m.target_forward(x2)
        tau = self.temperature
        loss = info_nce(q1, k2, tau) * (2.0 * tau) + info_nce(q2, k1, tau) * (2.0 * tau)
        with torch.no_grad():  # `moco.rs` `in_batch_accuracy`
            sim = normalize(q1) @ normalize(k2).t()
            acc = (sim.argmax(1) == torch.arange(q1.shape[0], device=sim.device)).float().mean()
        return loss, acc

    def after_step(self, step, total_steps):
        m = cosine_momentum(self.momentum, step + 1, total_steps) if self.momentum_cosine else self.momentum
        self.ema.update(m)


class ByolWorkload(TwoViewWorkload):
    """`byol.rs` `Byol`: online predictions of each view regress the target's projection of
    the other, `normalized_mse(p1, z2) + normalized_mse(p2, z1)`; metric `target_cosine`;
    after the optimiser step, the target's EMA with `cosine_momentum(base, step + 1, total)`."""

    def __init__(self, cfg: dict, device):
        mcfg = cfg["model"]
        super().__init__(cfg, device, ByolModel(mcfg))
        self.base_momentum = float(mcfg.get("base_momentum", 0.996))

    def forward(self, batch, step, total_steps):
        x1, x2 = batch
        m = self.module
        p1, p2 = m.predictor(m.online(x1)), m.predictor(m.online(x2))
        z1, z2 = m.target_forward(x1), m.target_forward(x2)
        loss = normalized_mse(p1, z2) + normalized_mse(p2, z1)
        with torch.no_grad():
            cos = (normalize(p1) * normalize(z2)).sum(1).mean()
        return loss, cos

    def after_step(self, step, total_steps):
        self.ema.update(cosine_momentum(self.base_momentum, step + 1, total_steps))


def build_simclr(cfg: dict, device) -> SimclrWorkload:
    return SimclrWorkload(cfg, device)


def build_moco_v2(cfg: dict, device) -> MocoV2Workload:
    return MocoV2Workload(cfg, device)


def build_moco_v3(cfg: dict, device) -> MocoV3Workload:
    return MocoV3Workload(cfg, device)


def build_byol(cfg: dict, device) -> ByolWorkload:
    return ByolWorkload(cfg, device)


WORKLOADS = {
    "simclr": build_simclr,
    "moco-v2": build_moco_v2,
    "moco-v3": build_moco_v3,
    "byol": build_byol,
}
