"""PyTorch references of ssl-rs's audio methods: wav2vec 2.0 and CPC (crate `ssl-audio`).

Each builder takes the parsed, resolved `config.toml` of an ssl-rs run and returns a workload
(see `ssl_bench.py`) that trains, on one fixed batch, the same architecture with the same
per-step work as the Rust objective:

- `wav2vec2` mirrors `crates/ssl-audio/src/wav2vec2.rs` (`Wav2Vec2::loss`), with the pieces
  from `conv.rs`, `quantizer.rs`, `masking.rs` and the post-LN transformer of
  `crates/ssl-core/src/blocks/transformer.rs`;
- `cpc` mirrors `crates/ssl-audio/src/cpc.rs` (`Cpc::loss`).

Where the Rust code does work on the host (frame counts of the padding mask, span masks,
distractor and negative indices, all drawn from a per-step generator) so does this module, with
numpy standing in for ssl-rs's ChaCha8 streams (same distributions, not the same draws). The
step also mirrors the trainer (`crates/ssl-core/src/trainer/mod.rs`): backward, reading every
logged metric, global-norm gradient clipping (`train.grad_clip_norm`, reading the norm), the
learning-rate schedule (`optim/schedule.rs`), AdamW with decay only on parameters of two or more
dimensions (`Objective::no_weight_decay`'s default, which neither objective overrides), then
`zero_grad`.

The tensor names of `module.state_dict()` are those of ssl-rs's `model.safetensors`, so that
`ssl_bench.py parity` lines them up one to one. Initialisation follows the Rust code where it
is cheap to (it need not match bit for bit).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from refs.precision import forward_autocast

# ---------------------------------------------------------------------------------------------
# Shared pieces: conv feature encoder, frame masks, gradient scaling, optimiser and schedule.
# ---------------------------------------------------------------------------------------------


def conv_frames(kernels: list[int], strides: list[int], samples: int) -> int:
    """Output frames for `samples` input samples (0 when too short): `ConvConfig::frames`."""
    n = samples
    for k, s in zip(kernels, strides):
        n = 0 if n < k else (n - k) // s + 1
    return n


class ConvStack(nn.Module):
    """The strided 1-D convolution stack on raw waveforms (`crates/ssl-audio/src/conv.rs`,
    `ConvStack`): `conv_layers.{i}.conv` (Kaiming-normal weights, optional zero biases), then
    per `model.conv.norm` a per-channel GroupNorm on the first layer
    (`first_layer_group_norm`) or a LayerNorm over channels on every layer
    (`channel_layer_norm`), then GELU or ReLU."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.kernels = list(cfg["kernels"])
        self.strides = list(cfg["strides"])
        self.norm = cfg.get("norm", "none")
        self.activation = cfg.get("activation", "gelu")
        c = int(cfg["channels"])
        layers = []
        c_in = 1
        for i, (k, s) in enumerate(zip(self.kernels, self.strides)):
            layer = nn.Module()
            layer.conv = nn.Conv1d(c_in, c, k, stride=s, bias=bool(cfg.get("bias", False)))
            nn.init.kaiming_normal_(layer.conv.weight)
            if layer.conv.bias is not None:
                nn.init.zeros_(layer.conv.bias)
            if self.norm == "first_layer_group_norm" and i == 0:
                layer.norm = nn.GroupNorm(c, c)
            elif self.norm == "channel_layer_norm":
                layer.norm = nn.LayerNorm(c)
            layers.append(layer)
            c_in = c
        self.conv_layers = nn.ModuleList(layers)

    def frames(self, samples: int) -> int:
        return conv_frames(self.kernels, self.strides, samples)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """`[B, T]` waveforms to `[B, C, frames(T)]` features."""
        x = wave.unsqueeze(1)
        for layer in self.conv_layers:
            x = layer.conv(x)
            if self.norm == "first_layer_group_norm" and hasattr(layer, "norm"):
                x = layer.norm(x)
            elif self.norm == "channel_layer_norm":
                x = layer.norm(x.transpose(1, 2)).transpose(1, 2)
            x = F.gelu(x) if self.activation == "gelu" else F.relu(x)
        return x

    def frame_mask(self, sample_mask: torch.Tensor) -> torch.Tensor:
        """`ConvStack::frame_mask`: the real-sample counts go to the host, each becomes a frame
        count there, and the `[B, frames]` mask is built back on the device."""
        t = sample_mask.shape[1]
        frames = self.frames(t)
        lengths = sample_mask.sum(1, dtype=torch.int64).tolist()
        counts = torch.tensor([self.frames(n) for n in lengths]).to(sample_mask.device).unsqueeze(1)
        return torch.arange(frames, device=sample_mask.device).unsqueeze(0) < counts


def scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """fairseq's `GradMultiply` as `conv.rs::scale_grad` writes it: identity forward, gradient
    times `scale` backward."""
    if scale == 1.0:
        return x
    return x * scale + x.detach() * (1.0 - scale)


def host_rng(seed: int, stream: int, step: int, micro: int = 0) -> np.random.Generator:
    """A generator of `(seed, stream, step, micro-step)`: `ssl_core::rng::rng_for`'s role."""
    return np.random.default_rng([int(seed), stream, int(step), int(micro)])


def lr_at(sched: dict, lr: float, step: int, total: int) -> float:
    """`ScheduleConfig::lr_at` (`crates/ssl-core/src/optim/schedule.rs`)."""
    warmup = int(sched.get("warmup_steps", 0))
    if step < warmup:
        return lr * (step + 1) / warmup
    if sched.get("name", "warmup_cosine") == "constant":
        return lr
    span = max(total - warmup, 1)
    progress = min((step - warmup) / span, 1.0)
    low = lr * float(sched.get("min_lr_ratio", 0.0))
    return low + (lr - low) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(module: nn.Module, train: dict) -> torch.optim.Optimizer:
    """AdamW with the run's hyperparameters (`crates/ssl-core/src/optim/optimizer.rs`): weight
    decay on parameters of two or more dimensions only, the `Objective::no_weight_decay`
    default (biases, norm weights, `mask_emb` are exempt; `pos_conv.weight_g [1, 1, K]` and the
    codebooks are decayed)."""
    o = train.get("optimizer", {})
    name = o.get("name", "adamw")
    if name != "adamw":
        raise SystemExit(f"audio references implement AdamW only, the run uses `{name}`")
    params = [p for p in module.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    wd = float(o.get("weight_decay", 0.05))
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}],
        lr=float(o.get("lr", 1e-3)),
        betas=tuple(float(b) for b in o.get("betas", (0.9, 0.999))),
        eps=float(o.get("eps", 1e-8)),
    )


class AudioWorkload:
    """One method's workload (the protocol of `ssl_bench.py`): a fixed batch of `[B, T]`
    waveforms (`0.1 * randn`) with an all-real `[B, T]` Bool padding mask, as
    `data.rs::CropBatches` produces for clips as long as the crop, and a trainer step."""

    def __init__(self, module: nn.Module, cfg: dict, device: torch.device):
        train = cfg.get("train", {})
        data = cfg.get("data", {})
        self.module = module.to(device)
        self.batch_size = int(data.get("batch_size", 16))
        self.samples = int(data.get("crop", {}).get("crop_len", 16000))
        self.clip = train.get("grad_clip_norm")
        self.optimizer = make_optimizer(self.module, train)
        self.peak_lr = float(train.get("optimizer", {}).get("lr", 1e-3))
        self.schedule = train.get("schedule", {})

    def make_batch(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        wave = 0.1 * torch.randn(self.batch_size, self.samples, device=device)
        mask = torch.ones(self.batch_size, self.samples, dtype=torch.bool, device=device)
        return wave, mask

    def step(self, batch, step: int, total_steps: int) -> torch.Tensor:
        """The trainer's step (`trainer/mod.rs::fit_with`, one micro-step): forward, backward,
        every metric read, clipping, the scheduled AdamW update, `zero_grad`."""
        wave, mask = batch
        with forward_autocast():
            loss, metrics = self.module.loss(wave, mask, step, 0)
        loss.backward()
        # The trainer reads every logged metric and the gradient norm each step (host syncs).
        for value in metrics.values():
            float(value)
        if self.clip is not None:
            params = [p for p in self.module.parameters() if p.grad is not None]
            float(torch.nn.utils.clip_grad_norm_(params, float(self.clip)))
        lr = lr_at(self.schedule, self.peak_lr, step, total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.optimizer.zero_grad()
        return loss.detach()


# ---------------------------------------------------------------------------------------------
# wav2vec 2.0
# ---------------------------------------------------------------------------------------------


def span_mask(prob: float, span_len: int, min_spans: int, lengths: list[int], t: int,
              rng: np.random.Generator) -> np.ndarray:
    """`masking.rs::span_mask` on the host: per row `round_random(p·n/span)` (at least
    `min_spans`, at most the `n - span` possible starts) span starts drawn without replacement,
    `span` frames masked after each; then every row is cut at random to the smallest row's
    masked count. Returns a `[B, t]` bool array."""
    rows = np.zeros((len(lengths), t), dtype=bool)
    for b, n in enumerate(lengths):
        n = min(n, t)
        if n < 2:
            raise ValueError(f"an utterance has {n} feature frames; at least 2 are needed")
        span = min(span_len, n)
        wanted = int(prob * n / span_len + rng.random())
        starts = max(n - span, 1)
        k = min(max(wanted, min_spans), starts)
        for s in rng.choice(starts, size=k, replace=False):
            rows[b, s:min(s + span, n)] = True
    least = int(rows.sum(1).min())
    for row in rows:
        on = np.flatnonzero(row)
        if len(on) > least:
            row[on[rng.choice(len(on), size=len(on) - least, replace=False)]] = False
    return rows


def sample_distractors(m: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """`masking.rs::sample_distractors`: for each of `m` positives, `k` indices drawn uniformly
    with replacement from the other `m - 1` (a draw from `m - 1` shifted past the positive);
    `[m * k]` row-major."""
    if m < 2:
        raise ValueError(f"{m} candidate frames; at least 2 are needed")
    j = rng.integers(0, m - 1, size=(m, k))
    j += j >= np.arange(m)[:, None]
    return j.reshape(-1)


class PosConv(nn.Module):
    """The convolutional relative position embedding (`wav2vec2.rs::PosConv`): a grouped
    convolution, weight-normalised over the kernel axis (fairseq's `weight_norm(dim=2)`, written
    out as ours does: `v · g / ‖v‖` with the norm over dims 0 and 1), padding `K // 2`, the
    extra frame of an even kernel dropped, then GELU. `x: [B, T, D]` → `[B, T, D]`."""

    def __init__(self, dim: int, kernel: int, groups: int, dropout: float):
        super().__init__()
        std = math.sqrt(4.0 * (1.0 - dropout) / (kernel * dim))
        self.weight_v = nn.Parameter(torch.randn(dim, dim // groups, kernel) * std)
        with torch.no_grad():
            norm = self.weight_v.square().sum(dim=(0, 1), keepdim=True).sqrt()
        self.weight_g = nn.Parameter(norm.clone())
        self.bias = nn.Parameter(torch.zeros(dim))
        self.kernel, self.groups = kernel, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = self.weight_v.square().sum(dim=(0, 1), keepdim=True).sqrt().clamp_min(1e-12)
        w = self.weight_v * (self.weight_g / norm)
        t = x.shape[1]
        y = F.conv1d(x.transpose(1, 2), w, self.bias, stride=1, padding=self.kernel // 2,
                     groups=self.groups)
        return F.gelu(y.narrow(2, 0, t)).transpose(1, 2)


class Attention(nn.Module):
    """Fused-qkv multi-head self-attention on SDPA (`transformer.rs::TransformerBlock::
    attention`): `qkv` → `[3, B, H, T, Dh]`, attention dropout, `proj`, residual dropout."""

    def __init__(self, dim: int, heads: int, dropout: float, attn_dropout: float):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.heads, self.dropout, self.attn_dropout = heads, dropout, attn_dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        p = self.attn_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        out = out.transpose(1, 2).reshape(b, t, d)
        return F.dropout(self.proj(out), self.dropout, self.training)


class Mlp(nn.Module):
    """`fc2(gelu(fc1(x)))`, dropout after `fc2` (`transformer.rs`, exact GELU)."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(self.fc2(F.gelu(self.fc1(x))), self.dropout, self.training)


class PostLNBlock(nn.Module):
    """ssl-core's `TransformerBlock` with `NormPlacement::Post` (what `Wav2Vec2Config::
    transformer` asks for): `x = norm1(x + attn(x))`, `x = norm2(x + mlp(x))`; LayerNorm eps
    1e-5; Linear weights truncated normal (std 0.02), biases zero."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float, attn_dropout: float, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, dropout, attn_dropout)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, hidden, dropout)
        for lin in (self.attn.qkv, self.attn.proj, self.mlp.fc1, self.mlp.fc2):
            nn.init.trunc_normal_(lin.weight, std=0.02, a=-0.04, b=0.04)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.norm1(x + self.attn(x, mask))
        return self.norm2(x + self.mlp(x))


class PostLNTransformer(nn.Module):
    """A stack of post-LN blocks (`blocks.{i}`), no final norm (`transformer.rs::Transformer`
    with `NormPlacement::Post`). The key padding mask becomes SDPA's `[B, 1, 1, T]` Bool mask,
    a row with no real frame attending everywhere (`attention_mask`)."""

    def __init__(self, dim: int, depth: int, heads: int, hidden: int, dropout: float,
                 attn_dropout: float, eps: float = 1e-5):
        super().__init__()
        self.blocks = nn.ModuleList(
            PostLNBlock(dim, heads, hidden, dropout, attn_dropout, eps) for _ in range(depth))

    def forward(self, x: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
        mask = None
        if real is not None:
            b, t = real.shape
            no_real = real.any(1, keepdim=True).logical_not()
            mask = real.logical_or(no_real).view(b, 1, 1, t)
        for block in self.blocks:
            x = block(x, mask)
        return x


class GumbelQuantizer(nn.Module):
    """The Gumbel-softmax product quantizer (`crates/ssl-audio/src/quantizer.rs`):
    `weight_proj` (normal(0, 1), zero bias) gives `G × V` logits per frame; in training each
    group picks an entry by a straight-through Gumbel softmax at
    `τ = max(τ_max · decay^step, τ_min)` (hard one-hot forward, soft gradients); the picked rows
    of `codevectors [G·V, dim/G]` are concatenated. Returns the codes and the code perplexity
    (hard choices), the soft-code perplexity and the diversity penalty `(G·V - ppl) / (G·V)`."""

    def __init__(self, input_dim: int, cfg: dict, dim: int):
        super().__init__()
        self.groups, self.entries, self.dim = int(cfg["groups"]), int(cfg["entries"]), dim
        self.temp_max = float(cfg.get("temp_max", 2.0))
        self.temp_min = float(cfg.get("temp_min", 0.5))
        self.temp_decay = float(cfg.get("temp_decay", 0.999995))
        g, v = self.groups, self.entries
        self.weight_proj = nn.Linear(input_dim, g * v)
        nn.init.normal_(self.weight_proj.weight, 0.0, 1.0)
        nn.init.zeros_(self.weight_proj.bias)
        books = torch.empty(g * v, dim // g)
        if cfg.get("codebook_init", "uniform") == "normal":
            nn.init.normal_(books)
        else:
            nn.init.uniform_(books, 0.0, 1.0)
        self.codevectors = nn.Parameter(books)

    def temperature(self, step: int) -> float:
        return max(self.temp_max * self.temp_decay ** step, self.temp_min)

    def forward(self, x: torch.Tensor, step: int) -> dict:
        b, t, _ = x.shape
        g, v = self.groups, self.entries
        tau = self.temperature(step)
        logits = self.weight_proj(x).float().view(b * t * g, v)
        hard_idx = logits.argmax(-1, keepdim=True)
        hard = torch.zeros_like(logits).scatter_(-1, hard_idx, 1.0)

        def perplexity(probs: torch.Tensor) -> torch.Tensor:
            p = probs.view(b * t, g, v).mean(0)
            return torch.exp(-(p * (p + 1e-7).log()).sum(-1)).sum()

        code_perplexity = perplexity(hard)
        prob_perplexity = perplexity(logits.softmax(-1))
        if self.training:
            u = torch.rand_like(logits).clamp(1e-10, 1.0 - 1e-7)
            gumbel = -(-u.log()).log()
            y = ((logits + gumbel) / tau).softmax(-1)
            y_hard = torch.zeros_like(y).scatter_(-1, y.argmax(-1, keepdim=True), 1.0)
            onehot = (y_hard - y.detach()) + y
        else:
            onehot = hard
        onehot = onehot.view(b * t, g, v).transpose(0, 1)
        picked = onehot.bmm(self.codevectors.view(g, v, -1)).transpose(0, 1)
        num = float(g * v)
        return {
            "quantized": picked.reshape(b, t, self.dim),
            "prob_perplexity": prob_perplexity,
            "code_perplexity": code_perplexity,
            "diversity_loss": (num - prob_perplexity) / num,
            "temperature": tau,
        }


class Wav2Vec2(nn.Module):
    """wav2vec 2.0 as `crates/ssl-audio/src/wav2vec2.rs` builds and trains it (`Wav2Vec2::new`,
    `Wav2Vec2::loss`); tensor names are ours."""

    def __init__(self, m: dict, seed: int):
        super().__init__()
        self.m, self.seed = m, seed
        conv = m["conv"]
        c, dim = int(conv["channels"]), int(m["dim"])
        self.feature_extractor = ConvStack(conv)
        self.layer_norm = nn.LayerNorm(c)
        self.post_extract_proj = nn.Linear(c, dim)
        self.mask_emb = nn.Parameter(torch.rand(dim))
        self.encoder = nn.Module()
        self.encoder.pos_conv = PosConv(dim, int(m["pos_conv_kernel"]), int(m["pos_conv_groups"]),
                                        float(m["dropout"]))
        self.encoder.layer_norm = nn.LayerNorm(dim)
        self.encoder.layers = PostLNTransformer(dim, int(m["depth"]), int(m["heads"]), int(m["mlp_dim"]),
                                                float(m["dropout"]), float(m["attn_dropout"]))
        final_dim = int(m["final_dim"])
        self.final_proj = nn.Linear(dim, final_dim)
        q = m["quantizer"]
        qdim = int(q.get("dim", 0)) or final_dim
        self.quantizer = GumbelQuantizer(c, q, qdim)
        self.project_q = nn.Linear(qdim, final_dim)

    def features(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """LayerNormed conv features `[B, T, C]` and the feature penalty (mean square of the
        gradient-scaled conv output), `Wav2Vec2::features`."""
        z = self.feature_extractor(wave)
        if self.training:
            z = scale_grad(z, float(self.m["feature_grad_mult"]))
        penalty = z.square().mean(dtype=torch.float32)
        return self.layer_norm(z.transpose(1, 2)), penalty

    def context(self, x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Padding zeroed, position embedding added, LayerNorm, dropout, the transformer
        (`Wav2Vec2::context` and `context_input`)."""
        x = x * frames.unsqueeze(-1).to(x.dtype)
        x = x + self.encoder.pos_conv(x)
        x = F.dropout(self.encoder.layer_norm(x), float(self.m["dropout"]), self.training)
        return self.encoder.layers(x, frames)

    def loss(self, wave: torch.Tensor, sample_mask: torch.Tensor, step: int, micro: int):
        m = self.m
        frames = self.feature_extractor.frame_mask(sample_mask)
        b, t = frames.shape
        z, penalty = self.features(wave)
        unmasked = F.dropout(z, float(m["dropout_features"]), self.training)
        x = F.dropout(self.post_extract_proj(z), float(m["dropout_input"]), self.training)
        # Span masks and distractors are drawn on the host from a per-step generator.
        rng = host_rng(self.seed, 0x77617632, step, micro)
        lengths = frames.sum(1, dtype=torch.int64).tolist()
        mk = m["mask"]
        rows = span_mask(float(mk["prob"]), int(mk["span"]), int(mk["min_spans"]), lengths, t, rng)
        n_masked = int(rows[0].sum())
        masked = torch.from_numpy(rows).to(x.device)
        x = torch.where(masked.logical_not().unsqueeze(-1), x, self.mask_emb.view(1, 1, -1).to(x.dtype))
        hidden = self.context(x, frames)

        def pick(h: torch.Tensor) -> torch.Tensor:  # masked frames in order, row by row
            return h.masked_select(masked.unsqueeze(-1)).view(b, n_masked, h.shape[2])

        pred = self.final_proj(pick(hidden))
        q = self.quantizer(pick(unmasked), step)
        targets = self.project_q(q["quantized"])  # [B, M, F]
        k = int(m["distractors"])
        # One draw per utterance, as fairseq's sample_negatives.
        idx = np.concatenate([sample_distractors(n_masked, k, rng) for _ in range(b)])
        idx = torch.from_numpy(idx).to(x.device).view(b, n_masked * k)
        f = targets.shape[2]
        negs = targets.gather(1, idx.unsqueeze(-1).expand(b, n_masked * k, f)).view(b, n_masked, k, f)
        cands = torch.cat([targets.unsqueeze(2), negs], 2)  # [B, M, 1+K, F]
        logits = F.cosine_similarity(pred.unsqueeze(2), cands, dim=-1, eps=1e-8) / float(m["logit_temp"])
        # A distractor equal to the target (the same codes) cannot be told apart: masked out.
        same = (negs == targets.unsqueeze(2)).all(-1)
        same = torch.cat([torch.zeros_like(same[:, :, :1]), same], 2)
        logits = logits.masked_fill(same, float("-inf")).view(b * n_masked, 1 + k)
        target_idx = torch.zeros(b * n_masked, dtype=torch.int64, device=x.device)
        contrastive = F.cross_entropy(logits, target_idx)
        loss = (contrastive + q["diversity_loss"] * float(m["diversity_weight"])
                + penalty * float(m["feature_penalty"]))
        metrics = {
            "contrastive": contrastive.detach(),
            "accuracy": (logits.argmax(-1) == 0).float().mean(),
            "code_perplexity": q["code_perplexity"].detach(),
            "prob_perplexity": q["prob_perplexity"].detach(),
            "temperature": q["temperature"],
            "masked_share": torch.tensor(float(b * n_masked), device=x.device) / frames.sum().float(),
            "feature_penalty": penalty.detach(),
        }
        return loss, metrics


def build_wav2vec2(cfg: dict, device) -> AudioWorkload:
    """The `wav2vec2` workload of a resolved config (`[model]` as `Wav2Vec2Config`)."""
    model = Wav2Vec2(cfg["model"], int(cfg.get("train", {}).get("seed", 0)))
    return AudioWorkload(model, cfg, torch.device(device))


# ---------------------------------------------------------------------------------------------
# CPC
# ---------------------------------------------------------------------------------------------


class Cpc(nn.Module):
    """CPC as `crates/ssl-audio/src/cpc.rs` builds and trains it: the conv stack `encoder`, a
    one-layer batch-first GRU `context`, `predictors.{k}` (`Linear(context_dim, channels, bias=False)`,
    one per future step), InfoNCE scored by dot products. For each `k` one pool of `negatives`
    real frames is drawn on the host (from the whole batch, or per utterance with
    `negatives_from = "sequence"`) and shared by all predictions; a drawn frame that is the
    positive is masked out; the loss is the mean over every `(t, k)` with `t + k` real."""

    def __init__(self, m: dict, seed: int):
        super().__init__()
        self.m, self.seed = m, seed
        c, h = int(m["conv"]["channels"]), int(m["context_dim"])
        self.encoder = ConvStack(m["conv"])
        self.context = nn.GRU(c, h, batch_first=True)
        self.predictors = nn.ModuleList(nn.Linear(h, c, bias=False) for _ in range(int(m["steps"])))
        self.negatives = int(m["negatives"])
        self.from_batch = m.get("negatives_from", "batch") == "batch"

    def loss(self, wave: torch.Tensor, sample_mask: torch.Tensor, step: int, micro: int):
        frames = self.encoder.frame_mask(sample_mask)
        z = self.encoder(wave).transpose(1, 2)
        c, _ = self.context(z.contiguous())
        b, t, ch = z.shape
        device = z.device
        flat_z = z.reshape(b * t, ch)
        flags = frames.reshape(-1).cpu().numpy()
        if self.from_batch:
            pools = [np.flatnonzero(flags)]
        else:
            pools = [row * t + np.flatnonzero(flags[row * t:(row + 1) * t]) for row in range(b)]
        if any(len(p) < 2 for p in pools):
            raise ValueError("cpc batch: fewer than two real frames")
        rng = host_rng(self.seed, 0x637063, step, micro)
        n = self.negatives
        total = torch.zeros((), device=device)
        count = correct = 0
        positions = torch.arange(b * t, device=device).view(b, t)
        for k, w in enumerate(self.predictors, start=1):
            if t - k < 1:
                break
            pred = w(c[:, : t - k])  # [B, T-k, C]
            pos = z[:, k:]
            valid = frames[:, k:].reshape(-1)
            pos_score = (pred * pos).sum(-1, dtype=torch.float32).reshape(-1, 1)
            pool = np.concatenate([p[rng.integers(0, len(p), size=n)] for p in pools])
            pool = torch.from_numpy(pool).to(device).view(len(pools), n)
            if len(pools) == 1:
                drawn = pool.view(1, n)
                neg_score = pred.reshape(b * (t - k), ch).matmul(flat_z.index_select(0, drawn.view(-1)).t())
            else:
                negs = flat_z.index_select(0, pool.view(-1)).view(b, n, ch)
                drawn = pool.unsqueeze(1).expand(b, t - k, n).reshape(b * (t - k), n)
                neg_score = pred.bmm(negs.transpose(1, 2)).reshape(b * (t - k), n)
            target_pos = positions[:, k:].reshape(-1, 1)
            neg_score = neg_score.masked_fill(drawn == target_pos, float("-inf"))
            logits = torch.cat([pos_score, neg_score], 1)[valid.nonzero().squeeze(1)]
            rows = logits.shape[0]
            if rows == 0:
                continue
            targets = torch.zeros(rows, dtype=torch.int64, device=device)
            total = total + F.cross_entropy(logits, targets, reduction="sum")
            correct += int((logits.argmax(-1) == 0).sum())
            count += rows
        if count == 0:
            raise ValueError("cpc batch: utterances too short to predict one step ahead")
        return total / count, {"accuracy": correct / count}


def build_cpc(cfg: dict, device) -> AudioWorkload:
    """The `cpc` workload of a resolved config (`[model]` as `CpcConfig`)."""
    model = Cpc(cfg["model"], int(cfg.get("train", {}).get("seed", 0)))
    return AudioWorkload(model, cfg, torch.device(device))


WORKLOADS = {"wav2vec2": build_wav2vec2, "cpc": build_cpc}
