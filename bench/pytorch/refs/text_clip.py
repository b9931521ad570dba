"""PyTorch references of ssl-rs's text and image-text methods: `bert`, `gpt` and `clip`.

Each builder takes the resolved `config.toml` of an ssl-rs run and returns a workload (see
`ssl_bench.py`) whose module has the same tensors (by shape) as the ssl-rs model and whose
`step` does the same work as one step of ssl-core's trainer on that model:

- the shared transformer (`Block`, `Transformer`) mirrors
  `crates/ssl-core/src/blocks/transformer.rs` (+ `transformer/config.rs`): fused `qkv`,
  libtorch's `scaled_dot_product_attention` with `[B, heads, T, head_dim]` operands and the same
  masks (`attention_mask`), pre-LN (`x + attn(norm1(x))`) or post-LN (`norm1(x + attn(x))`)
  placement, exact or tanh GELU, dropout on the attention weights (SDPA's `dropout_p`) and on
  both residual branches, a final LayerNorm for pre-LN stacks only;
- `Bert` mirrors `crates/ssl-text/src/bert.rs`, its batch `crates/ssl-text/src/batches.rs`
  (`MlmBatches`) + `masking.rs` + `pack.rs` (`Layout::Bert`);
- `Gpt` mirrors `crates/ssl-text/src/gpt.rs`, its batch `batches.rs` (`LmBatches`) + `pack.rs`
  (`Layout::Gpt`);
- `Clip` mirrors `crates/ssl-multimodal/src/clip.rs` + `loss.rs`, its batch `batch.rs`
  (`PairBatches`, `CaptionTokenizer`); the ViT image tower `crates/ssl-vision/src/backbone/vit.rs`
  (written here), the ResNet one `backbone/resnet.rs` (`common_vision.ResNet`);
- the trainer's per-step work (`crates/ssl-core/src/trainer/mod.rs` `fit_with`: metrics read
  back every step, gradient clipping, scheduled learning rate, optimiser step, `zero_grad`, the
  objective's `after_step`) is `common_vision.optimizer_step`; the optimiser is torch.optim's
  AdamW (`crates/ssl-core/src/optim/optimizer.rs` has the same update) with each method's
  `no_weight_decay` rule.

Batches are built once, as the ssl-rs batch builders would build them from a real corpus, with
a seeded generator: token blocks of `data.block_len` ids (BERT: `[CLS] ... [SEP]` with `[SEP]`
between documents, then 80/10/10 masking; GPT: documents separated by end-of-text), captions of
`model.text.context_length` ids ending in end-of-text then padding, and normalised images.

Vocabulary: BERT's and GPT's resolved configs record it (`model.vocab_size`, set from the
tokenizer). CLIP's does not (`ClipConfig` has no vocabulary; `Clip::new` takes the tokenizer's
size), so `clip_vocabulary` reads the tokenizer file the resolved config names
(`data.tokenizer`, which an ssl-rs run writes into its run folder); when that file cannot be
read it falls back to `CLIP_FALLBACK_VOCAB`, the size the default scenes captions give.
"""

from __future__ import annotations

import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

from refs.common_vision import ResNet, make_optimizer, optimizer_step, to_channels_last
from refs.precision import forward_autocast

# `crates/ssl-text/src/model.rs` INIT_STD (BERT's and GPT-2's `initializer_range`).
INIT_STD = 0.02
# `crates/ssl-text/src/masking.rs` IGNORE_INDEX.
IGNORE_INDEX = -100
# `crates/ssl-core/src/blocks/transformer/config.rs` VIT_LAYER_NORM_EPS (the default eps).
VIT_LAYER_NORM_EPS = 1e-6
# `crates/ssl-core/src/blocks/posembed.rs` SINCOS_BASE.
SINCOS_BASE = 10_000.0
# `crates/ssl-vision/src/backbone/vit.rs` TOKEN_INIT_STD.
TOKEN_INIT_STD = 0.02
# `crates/ssl-text/src/tokenizer/mod.rs`: BERT_SPECIALS (the first ids of a trained WordPiece
# vocabulary, in this order), GPT_EOS and GPT_PAD.
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
GPT_EOS, GPT_PAD = "<|endoftext|>", "<|pad|>"
# The vocabulary ssl-rs's byte-level BPE tokenizer reaches on the default scenes captions at
# `data.vocab_size = 1000` (the `token_embedding.weight` rows of the parity fixture
# /tmp/parity/clip): CLIP's fallback when `data.tokenizer` cannot be read.
CLIP_FALLBACK_VOCAB = 375
# Document lengths (tokens) of the synthetic corpus the text batches are packed from: about the
# length of the default grammar corpus's reviews (2-5 sentences).
DOC_TOKENS = (20, 90)


# ----------------------------------------------------------------------------------------------
# Transformer (crates/ssl-core/src/blocks/transformer.rs)
# ----------------------------------------------------------------------------------------------


def attention_mask(real: torch.Tensor | None, causal: bool):
    """`transformer.rs` `attention_mask`: the `(attn_mask, is_causal)` handed to SDPA (a boolean
    mask is true where attention is allowed).

    No padding: no mask, `is_causal = causal`. Padding only: `[B, 1, 1, T]` real keys (a row
    with no real token attends everywhere). Both: one `[B, 1, T, T]` mask `key <= query and key
    real`, plus the diagonal, with `is_causal = False`."""
    if real is None:
        return None, causal
    b, t = real.shape
    if causal:
        lower = torch.ones(t, t, dtype=torch.bool, device=real.device).tril().unsqueeze(0)
        mask = (lower & real.unsqueeze(1)) | torch.eye(t, dtype=torch.bool, device=real.device)
        return mask.unsqueeze(1), False
    no_real = ~real.any(1, keepdim=True)
    return (real | no_real).view(b, 1, 1, t), False


class Attention(nn.Module):
    """`transformer.rs` `TransformerBlock::attention`: fused `qkv` (output features ordered
    q|k|v, head, channel), SDPA on `[B, H, T, Dh]`, `proj`, residual dropout."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool, dropout: float, attn_dropout: float):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.heads, self.dropout, self.attn_dropout = heads, dropout, attn_dropout

    def forward(self, x, mask, is_causal):
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        p = self.attn_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=is_causal)
        out = self.proj(out.transpose(1, 2).reshape(b, t, d))
        return _dropout(out, self.dropout, self.training)


class Mlp(nn.Module):
    """`transformer.rs` block MLP: `fc2(gelu(fc1(x)))`, then residual dropout (none between)."""

    def __init__(self, dim: int, hidden: int, approximate: str, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.approximate, self.dropout = approximate, dropout

    def forward(self, x):
        h = self.fc2(F.gelu(self.fc1(x), approximate=self.approximate))
        return _dropout(h, self.dropout, self.training)


def _dropout(x, p: float, train: bool):
    """`transformer.rs` `dropout`: only in training and for `p > 0`."""
    return F.dropout(x, p, training=True) if train and p > 0 else x


class Block(nn.Module):
    """`transformer.rs` `TransformerBlock` (`norm1`, `attn.qkv`, `attn.proj`, `norm2`,
    `mlp.fc1`, `mlp.fc2`): pre-LN `x + attn(norm1(x))`, `x + mlp(norm2(x))`, or with `post_norm`
    BERT's `norm1(x + attn(x))`, `norm2(x + mlp(x))`."""

    def __init__(self, tc: dict):
        super().__init__()
        d, eps = tc["dim"], tc["eps"]
        self.norm1 = nn.LayerNorm(d, eps=eps)
        self.attn = Attention(d, tc["heads"], tc["qkv_bias"], tc["dropout"], tc["attn_dropout"])
        self.norm2 = nn.LayerNorm(d, eps=eps)
        self.mlp = Mlp(d, tc["hidden"], tc["approximate"], tc["dropout"])
        self.post_norm = tc["post_norm"]

    def forward(self, x, mask, is_causal):
        if self.post_norm:
            x = self.norm1(x + self.attn(x, mask, is_causal))
            return self.norm2(x + self.mlp(x))
        x = x + self.attn(self.norm1(x), mask, is_causal)
        return x + self.mlp(self.norm2(x))


def transformer_config(dim: int, depth: int, heads: int, *, mlp_ratio: float = 4.0, dropout: float = 0.0,
                       attn_dropout: float = 0.0, eps: float = VIT_LAYER_NORM_EPS, post_norm: bool = False,
                       approximate: str = "none", qkv_bias: bool = True, init: str = "trunc_normal") -> dict:
    """`transformer/config.rs` `TransformerConfig` (defaults of `TransformerConfig::new`); the
    MLP width is `mlp_hidden_dim`, `int(dim * mlp_ratio)`."""
    return dict(dim=dim, depth=depth, heads=heads, hidden=int(dim * mlp_ratio), dropout=dropout,
                attn_dropout=attn_dropout, eps=eps, post_norm=post_norm, approximate=approximate,
                qkv_bias=qkv_bias, init=init)


def mlp_ratio_for(mlp_dim: int, dim: int) -> float:
    """`crates/ssl-text/src/model.rs` `mlp_ratio`: the ratio that gives exactly `mlp_dim`."""
    return (mlp_dim + 0.5) / max(dim, 1)


class Transformer(nn.Module):
    """`transformer.rs` `Transformer`: `blocks.{i}`, then the final `norm` (pre-LN stacks only).
    `forward(x, real, causal)` builds the attention mask once, as `Transformer::f_forward`."""

    def __init__(self, tc: dict):
        super().__init__()
        self.blocks = nn.ModuleList(Block(tc) for _ in range(tc["depth"]))
        self.norm = None if tc["post_norm"] else nn.LayerNorm(tc["dim"], eps=tc["eps"])
        for m in self.modules():
            if isinstance(m, nn.Linear):
                if tc["init"] == "xavier_uniform":
                    nn.init.xavier_uniform_(m.weight)
                else:
                    nn.init.trunc_normal_(m.weight, std=INIT_STD, a=-2 * INIT_STD, b=2 * INIT_STD)
                nn.init.zeros_(m.bias) if m.bias is not None else None

    def forward(self, x, real=None, causal=False):
        mask, is_causal = attention_mask(real, causal)
        for block in self.blocks:
            x = block(x, mask, is_causal)
        return self.norm(x) if self.norm is not None else x


def bert_style_init(module: nn.Module, depth: int) -> None:
    """`crates/ssl-text/src/model.rs` `bert_style_init`: every matrix (not norms) `N(0, 0.02²)`,
    with `depth > 0` the residual projections (`attn.proj`, `mlp.fc2`) `0.02 / √(2·depth)`."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() < 2 or "norm" in name:
                continue
            residual = name.endswith("attn.proj.weight") or name.endswith("mlp.fc2.weight")
            std = INIT_STD / math.sqrt(2 * depth) if depth > 0 and residual else INIT_STD
            p.normal_(0.0, std)


# ----------------------------------------------------------------------------------------------
# Tokenizer facts and synthetic token blocks
# ----------------------------------------------------------------------------------------------


def read_tokenizer(cfg: dict) -> dict | None:
    """The tokenizer file the resolved config names (`data.tokenizer`), as
    `{"vocab": {token: id}, "continuation": set(ids)}`; `None` when it cannot be read.

    The vocabulary counts every distinct token of the model and the added tokens, as
    `tokenizers`' `get_vocab_size(true)` (`crates/ssl-text/src/tokenizer/mod.rs`
    `TextTokenizer::vocab_size`)."""
    path = cfg.get("data", {}).get("tokenizer")
    if not path or not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            tok = json.load(f)
        vocab = dict(tok["model"]["vocab"])
        for added in tok.get("added_tokens", []):
            vocab.setdefault(added["content"], added["id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    cont = {i for t, i in vocab.items() if t.startswith("##")}
    return {"vocab": vocab, "continuation": cont}


def random_stream(n_tokens: int, candidates: torch.Tensor, separator: int, g: torch.Generator) -> list[int]:
    """`n_tokens` ids of the stream `doc SEP doc SEP ...` that `crates/ssl-text/src/pack.rs`
    cuts into blocks: documents of `DOC_TOKENS` non-special ids, a separator after each."""
    out: list[int] = []
    while len(out) < n_tokens:
        n = int(torch.randint(DOC_TOKENS[0], DOC_TOKENS[1] + 1, (1,), generator=g))
        idx = torch.randint(len(candidates), (n,), generator=g)
        out.extend(candidates[idx].tolist())
        out.append(separator)
    return out[:n_tokens]


def mask_tokens(tokens: list[int], mcfg: dict, special: list[bool], continuation: set[int], mask_id: int,
                g: torch.Generator) -> tuple[list[int], list[int]]:
    """`crates/ssl-text/src/masking.rs` `mask_tokens`: each non-special token (or whole word)
    chosen with `probability`; of the chosen, `mask_fraction` become `[MASK]`, `random_fraction`
    a uniform non-special id, the rest stay; labels are the originals, `IGNORE_INDEX` elsewhere."""
    p = float(mcfg.get("probability", 0.15))
    fm = float(mcfg.get("mask_fraction", 0.8))
    fr = float(mcfg.get("random_fraction", 0.1))
    whole = bool(mcfg.get("whole_word", False))
    is_special = lambda t: special[t] if t < len(special) else True  # noqa: E731
    chosen = [False] * len(tokens)
    i = 0
    while i < len(tokens):
        end = i + 1
        if whole and not is_special(tokens[i]):
            while end < len(tokens) and not is_special(tokens[end]) and tokens[end] in continuation:
                end += 1
        if not is_special(tokens[i]) and float(torch.rand((), generator=g)) < p:
            for j in range(i, end):
                chosen[j] = True
        i = end
    candidates = [t for t in range(len(special)) if not is_special(t)]
    inputs, labels = [], []
    for t, c in zip(tokens, chosen):
        if not c:
            inputs.append(t)
            labels.append(IGNORE_INDEX)
            continue
        labels.append(t)
        u = float(torch.rand((), generator=g))
        if u < fm:
            inputs.append(mask_id)
        elif u < fm + fr and candidates:
            inputs.append(candidates[int(torch.randint(len(candidates), (1,), generator=g))])
        else:
            inputs.append(t)
    return inputs, labels


# ----------------------------------------------------------------------------------------------
# The workload: one trainer step
# ----------------------------------------------------------------------------------------------


class Workload:
    """One ssl-rs training step on `module` (`crates/ssl-core/src/trainer/mod.rs` `fit_with`):
    for each of `train.accumulation_steps` micro-steps, the objective's forward (`module.loss`,
    returning `(loss, metrics, backward_done)`), backward of `loss / accum` unless the objective
    did it itself, then the metrics of the last micro-step read back (ssl-rs reads each one with
    `double_value`); then `common_vision.optimizer_step` (clip, scheduled lr, optimiser step,
    `zero_grad` zeroing in place as tch's) and the objective's `after_step`."""

    def __init__(self, cfg: dict, module: nn.Module, batch_size: int, make_batch, no_decay):
        self.cfg, self.module = cfg, module
        self.accum = int(cfg.get("train", {}).get("accumulation_steps", 1))
        self.batch_size = batch_size * self.accum  # samples per optimiser step, as ssl-rs counts
        self._make_batch = make_batch
        self._no_decay = no_decay
        self._opt = None

    def make_batch(self, device):
        return self._make_batch(device)

    def _optimizer(self):
        # Built lazily: the harness moves the module to its device after building it.
        if self._opt is None:
            named = sorted(((n, p) for n, p in self.module.named_parameters() if p.requires_grad),
                           key=lambda np_: np_[0])  # ssl-rs's parameter order: sorted by name
            self._params = [p for _, p in named]
            self._opt = make_optimizer(self.cfg, named, self._no_decay)
        return self._opt

    def step(self, batch, step: int, total_steps: int):
        opt = self._optimizer()
        last = None
        for _ in range(self.accum):
            with forward_autocast():
                loss, metrics, backward_done = self.module.loss(batch)
            if backward_done:
                if self.accum > 1:
                    raise SystemExit("an objective that back-propagates itself needs accumulation_steps = 1")
            elif self.accum == 1:
                loss.backward()
            else:
                (loss / self.accum).backward()
            last = metrics
        for value in last.values():
            float(value)
        optimizer_step(self.cfg, opt, self._params, step, total_steps)
        self.module.after_step()
        return loss


# ----------------------------------------------------------------------------------------------
# BERT (crates/ssl-text/src/bert.rs)
# ----------------------------------------------------------------------------------------------


class BertEmbeddings(nn.Module):
    """`bert.rs` `embed.*`: `tokens [V, D]`, `positions [max_len, D]`, `segments [types, D]`,
    `norm`."""

    def __init__(self, vocab: int, max_len: int, types: int, dim: int, eps: float):
        super().__init__()
        self.tokens = nn.Parameter(torch.zeros(vocab, dim))
        self.positions = nn.Parameter(torch.zeros(max_len, dim))
        self.segments = nn.Parameter(torch.zeros(types, dim))
        self.norm = nn.LayerNorm(dim, eps=eps)


class MlmHead(nn.Module):
    """`bert.rs` `mlm.*`: `dense`, `norm`, and the output `bias` (the weights are the token
    embeddings, tied)."""

    def __init__(self, vocab: int, dim: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.bias = nn.Parameter(torch.zeros(vocab))


class Bert(nn.Module):
    """`bert.rs` `Bert` with its MLM objective: token + position + segment-0 embeddings,
    LayerNorm, dropout; the encoder (post-LN by default, exact GELU, padding mask); the MLM head
    `dense → GELU → LayerNorm → tokensᵀ + bias` on the chosen positions only (`h[labels !=
    -100]`, a boolean index); mean cross-entropy, and masked accuracy read back."""

    def __init__(self, m: dict):
        super().__init__()
        self.vocab, self.max_len, self.dim = int(m["vocab_size"]), int(m.get("max_len", 512)), int(m.get("dim", 768))
        self.eps = float(m.get("layer_norm_eps", 1e-12))
        self.dropout = float(m.get("dropout", 0.1))
        self.pad_id = int(m.get("pad_id", 0))
        self.embed = BertEmbeddings(self.vocab, self.max_len, int(m.get("type_vocab_size", 2)), self.dim, self.eps)
        tc = transformer_config(
            self.dim, int(m.get("depth", 12)), int(m.get("heads", 12)),
            mlp_ratio=mlp_ratio_for(int(m.get("mlp_dim", 3072)), self.dim), dropout=self.dropout,
            attn_dropout=float(m.get("attn_dropout", 0.1)), eps=self.eps,
            post_norm=m.get("norm_placement", "post") == "post", approximate="none")
        self.encoder = Transformer(tc)
        self.mlm = MlmHead(self.vocab, self.dim, self.eps)
        bert_style_init(self, 0)
        with torch.no_grad():
            self.embed.tokens[self.pad_id].zero_()

    def hidden_states(self, ids):
        """`Bert::hidden_states` (segment 0 everywhere)."""
        t = ids.shape[1]
        pos = torch.arange(t, device=ids.device)
        e = self.embed
        x = F.embedding(ids, e.tokens) + e.positions.index_select(0, pos)
        x = x + F.embedding(torch.zeros_like(ids), e.segments)
        x = _dropout(e.norm(x), self.dropout, self.training)
        return self.encoder(x, ids != self.pad_id, causal=False)

    def loss(self, batch):
        """`Bert::mlm_loss` + `Objective::forward`."""
        inputs, labels = batch
        h = self.hidden_states(inputs)
        chosen = labels != IGNORE_INDEX
        h = h[chosen]
        targets = labels[chosen]
        x = F.layer_norm(F.gelu(self.mlm.dense(h)), (self.dim,), self.mlm.norm.weight, self.mlm.norm.bias, self.eps)
        logits = F.linear(x, self.embed.tokens, self.mlm.bias)
        n = targets.shape[0]
        loss = logits.sum() * 0.0 if n == 0 else F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX)
        correct = (logits.argmax(-1) == targets).sum().float()
        acc = correct / torch.tensor(float(n), device=inputs.device).clamp_min(1.0)
        return loss, {"masked_accuracy": acc}, False

    def after_step(self):
        pass


def bert_no_decay(name: str, p: torch.Tensor) -> bool:
    """`Bert::no_weight_decay`: every 1-D parameter and every bias."""
    return p.dim() < 2 or name.endswith("bias")


def build_bert(cfg: dict, device) -> Workload:
    m, data = cfg["model"], cfg.get("data", {})
    model = Bert(m)
    b, t = int(data.get("batch_size", 32)), int(data.get("block_len", 128))
    tok = read_tokenizer(cfg)
    ids = {s: i for i, s in enumerate(BERT_SPECIALS)} | {"[PAD]": model.pad_id}
    if tok is not None:
        ids |= {s: tok["vocab"][s] for s in BERT_SPECIALS if s in tok["vocab"]}
    continuation = tok["continuation"] if tok else set()
    special = [False] * model.vocab
    for s in BERT_SPECIALS:
        special[ids[s]] = True
    mcfg = m.get("masking", {})
    seed = int(cfg.get("train", {}).get("seed", 0))

    def make_batch(device):
        """`pack.rs` `Layout::Bert` blocks (`[CLS] chunk [SEP]`, chunks of `doc [SEP] doc ...`)
        masked per sample by `MlmBatches::prepare`, collated to `(inputs, labels)` `[B, T]`."""
        g = torch.Generator().manual_seed(seed)
        cand = torch.tensor([i for i in range(model.vocab) if not special[i]])
        stream = random_stream(b * (t - 2), cand, ids["[SEP]"], g)
        rows_in, rows_lab = [], []
        for r in range(b):
            block = [ids["[CLS]"], *stream[r * (t - 2):(r + 1) * (t - 2)], ids["[SEP]"]]
            x, y = mask_tokens(block, mcfg, special, continuation, ids["[MASK]"], g)
            rows_in.append(x)
            rows_lab.append(y)
        return torch.tensor(rows_in, device=device), torch.tensor(rows_lab, device=device)

    return Workload(cfg, model, b, make_batch, bert_no_decay)


# ----------------------------------------------------------------------------------------------
# GPT (crates/ssl-text/src/gpt.rs)
# ----------------------------------------------------------------------------------------------


class GptEmbeddings(nn.Module):
    """`gpt.rs` `embed.*`: `tokens [V, D]` (also the tied output layer), `positions`."""

    def __init__(self, vocab: int, max_len: int, dim: int):
        super().__init__()
        self.tokens = nn.Parameter(torch.zeros(vocab, dim))
        self.positions = nn.Parameter(torch.zeros(max_len, dim))


class Gpt(nn.Module):
    """`gpt.rs` `Gpt` with its LM objective: token + position embeddings, dropout; the causal
    pre-LN decoder (tanh GELU, final `norm`; with a padding id the padding mask too, so SDPA gets
    an explicit `[B, 1, T, T]` mask); logits `h · tokensᵀ` of `ids[:, :-1]`; next-token
    cross-entropy over `ids[:, 1:]` with padding targets ignored; the target count read back
    (`i64::try_from`), and the perplexity."""

    def __init__(self, m: dict):
        super().__init__()
        self.vocab, self.max_len, self.dim = int(m["vocab_size"]), int(m.get("max_len", 1024)), int(m.get("dim", 768))
        self.dropout = float(m.get("dropout", 0.1))
        self.pad_id = None if m.get("pad_id") is None else int(m["pad_id"])
        self.eos_id = int(m.get("eos_id", 50256))
        depth = int(m.get("depth", 12))
        self.embed = GptEmbeddings(self.vocab, self.max_len, self.dim)
        tc = transformer_config(
            self.dim, depth, int(m.get("heads", 12)),
            mlp_ratio=mlp_ratio_for(int(m.get("mlp_dim", 3072)), self.dim), dropout=self.dropout,
            attn_dropout=float(m.get("attn_dropout", 0.1)), eps=float(m.get("layer_norm_eps", 1e-5)),
            post_norm=False, approximate="tanh")
        self.decoder = Transformer(tc)
        bert_style_init(self, depth)

    def logits(self, ids):
        """`Gpt::logits` (`embed`, `hidden_states`, tied head)."""
        t = ids.shape[1]
        pos = torch.arange(0, t, device=ids.device)
        x = F.embedding(ids, self.embed.tokens) + self.embed.positions.index_select(0, pos)
        x = _dropout(x, self.dropout, self.training)
        real = None if self.pad_id is None else ids != self.pad_id
        h = self.decoder(x, real, causal=True)
        return F.linear(h, self.embed.tokens)

    def loss(self, ids):
        """`Gpt::lm_loss` + `Objective::forward`."""
        t = ids.shape[1]
        logits = self.logits(ids[:, : t - 1])
        flat = ids[:, 1:].reshape(-1)
        scored = flat != self.pad_id if self.pad_id is not None else torch.ones_like(flat, dtype=torch.bool)
        int(scored.sum())  # ssl-rs reads the target count back (`i64::try_from`)
        targets = flat.where(scored, torch.full_like(flat, IGNORE_INDEX))
        loss = F.cross_entropy(logits.reshape(-1, self.vocab), targets, ignore_index=IGNORE_INDEX)
        return loss, {"perplexity": loss.detach().exp()}, False

    def after_step(self):
        pass


def gpt_no_decay(name: str, p: torch.Tensor) -> bool:
    """`Gpt::no_weight_decay`: 1-D parameters only (embeddings are decayed)."""
    return p.dim() < 2


def build_gpt(cfg: dict, device) -> Workload:
    m, data = cfg["model"], cfg.get("data", {})
    model = Gpt(m)
    b, t = int(data.get("batch_size", 32)), int(data.get("block_len", 128))
    tok = read_tokenizer(cfg)
    eos, pad = model.eos_id, model.pad_id
    if tok is not None:
        eos = tok["vocab"].get(GPT_EOS, eos)
    seed = int(cfg.get("train", {}).get("seed", 0))

    def make_batch(device):
        """`pack.rs` `Layout::Gpt` blocks (`block_len` ids of `doc <eos> doc <eos> ...`, no
        padding but in the corpus's very last block), collated by `LmBatches` to `[B, T]`."""
        g = torch.Generator().manual_seed(seed)
        cand = torch.tensor([i for i in range(model.vocab) if i not in (eos, pad)])
        stream = random_stream(b * t, cand, eos, g)
        return torch.tensor(stream, device=device).view(b, t)

    return Workload(cfg, model, b, make_batch, gpt_no_decay)


# ----------------------------------------------------------------------------------------------
# CLIP (crates/ssl-multimodal/src/clip.rs, loss.rs, batch.rs)
# ----------------------------------------------------------------------------------------------


def sincos_2d(dim: int, grid: int, cls_token: bool) -> torch.Tensor:
    """`crates/ssl-core/src/blocks/posembed.rs` `sincos_2d` (MAE's `get_2d_sincos_pos_embed`):
    `[cls + grid², dim]`, the first half of each row encodes the column, the second the row; a
    zero row for the class token."""

    def embed(d: int, pos: torch.Tensor) -> torch.Tensor:
        half = d // 2
        omega = torch.exp(torch.arange(half, dtype=torch.float64) * (-math.log(SINCOS_BASE) / half))
        angles = torch.outer(pos, omega)
        return torch.cat([angles.sin(), angles.cos()], 1)

    rows = torch.arange(grid, dtype=torch.float64).repeat_interleave(grid)
    cols = torch.arange(grid, dtype=torch.float64).repeat(grid)
    parts = [torch.zeros(1, dim, dtype=torch.float64)] if cls_token else []
    parts.append(torch.cat([embed(dim // 2, cols), embed(dim // 2, rows)], 1))
    return torch.cat(parts, 0).float()


class PatchEmbed(nn.Module):
    """`vit.rs` `patch_embed.proj`: a `p x p` stride-`p` convolution, Xavier-uniform over its
    `[D, C·p·p]` view, zero bias."""

    def __init__(self, c: int, d: int, p: int):
        super().__init__()
        self.proj = nn.Conv2d(c, d, p, stride=p)
        with torch.no_grad():
            nn.init.xavier_uniform_(self.proj.weight.view(d, -1))
            self.proj.bias.zero_()


class VitTower(nn.Module):
    """`crates/ssl-vision/src/backbone/vit.rs` `Vit` (pool `cls`, as `Clip::new` forces) plus
    CLIP's `visual.proj [D, E]`: patch tokens + fixed 2-D sin-cos positions (a non-persistent
    buffer: ssl-rs does not store them), class token (+ its zero position) prepended, the pre-LN
    encoder (Xavier init, no mask), the class token after the final norm, `@ proj`."""

    def __init__(self, v: dict, embed_dim: int):
        super().__init__()
        self.image_size, self.patch = int(v["image_size"]), int(v["patch_size"])
        self.in_channels, self.dim = int(v.get("in_channels", 3)), int(v["dim"])
        d = self.dim
        self.patch_embed = PatchEmbed(self.in_channels, d, self.patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, d) * TOKEN_INIT_STD)
        self.register_buffer("pos_embed", sincos_2d(d, self.image_size // self.patch, True).unsqueeze(0),
                             persistent=False)
        tc = transformer_config(d, int(v["depth"]), int(v["heads"]), mlp_ratio=float(v.get("mlp_ratio", 4.0)),
                                init="xavier_uniform")
        t = Transformer(tc)
        # `Transformer::new(path, ..)` on the ViT's own path: `visual.blocks.*`, `visual.norm`.
        self.blocks, self.norm = t.blocks, t.norm
        self.proj = nn.Parameter(torch.randn(d, embed_dim) * d ** -0.5)

    def features(self, images):
        """`Vit::f_encode`: the class token after the final norm, `[N, D]`."""
        x = self.patch_embed.proj(images).flatten(2, 3).transpose(1, 2) + self.pos_embed[:, 1:]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], 1, self.dim)
        x = torch.cat([cls, x], 1)
        for block in self.blocks:
            x = block(x, None, False)
        return self.norm(x)[:, 0]

    def forward(self, images):
        """`Clip::encode_image`."""
        return self.features(images) @ self.proj


class ResNetTower(ResNet):
    """`ImageTowerConfig::Resnet`: `common_vision.ResNet` (mirrors `backbone/resnet.rs`:
    torchvision names under `visual.*`, average-pooled, channels-last by default), then
    `visual.proj [C, E]`."""

    def __init__(self, r: dict, embed_dim: int):
        super().__init__(depth=str(r["depth"]), base_width=int(r.get("base_width", 64)),
                         small_images=bool(r.get("small_images", False)),
                         in_channels=int(r.get("in_channels", 3)),
                         zero_init_residual=bool(r.get("zero_init_residual", False)),
                         channels_last=bool(r.get("channels_last", True)))
        if self.channels_last:
            to_channels_last(self)
        self.in_channels = int(r.get("in_channels", 3))
        self.proj = nn.Parameter(torch.randn(self.output_dim, embed_dim) * self.output_dim ** -0.5)

    def forward(self, images):
        """`Clip::encode_image`."""
        return super().forward(images) @ self.proj


class Clip(nn.Module):
    """`clip.rs` `Clip` with its objective.

    Text tower: `token_embedding.weight` lookup (gradient not accumulated into the padding row:
    `embedding(.., padding_idx = pad)`), `positional_embedding[:T]`, the causal pre-LN
    `transformer` (ssl-core defaults: eps 1e-6, exact GELU, no padding mask: `is_causal`), the
    state at the last real token, `@ text_projection`. Ids are range-checked first (ssl-rs reads
    their min and max back). Loss: both embeddings L2-normalised, `exp(logit_scale) · I Tᵀ`, the
    symmetric cross-entropy (or SigLIP with `logit_bias`); with `micro_batches > 1` open_clip's
    feature-cached accumulation (`Clip::step_loss`). Metrics: in-batch i2t/t2i accuracy,
    `exp(logit_scale)` (and the bias). `after_step` clamps `logit_scale` to `[0, ln max]`."""

    def __init__(self, m: dict, vocab: int, pad_id: int):
        super().__init__()
        e = int(m["embed_dim"])
        image = m["image"]
        kind = image.get("kind", "vit")
        if kind == "vit":
            self.visual = VitTower(image, e)
        elif kind == "resnet":
            self.visual = ResNetTower(image, e)
        else:
            raise SystemExit(f"clip: unknown image tower kind {kind!r}")
        t = m["text"]
        self.width, self.context_length = int(t["width"]), int(t["context_length"])
        self.vocab, self.pad_id = vocab, pad_id
        self.token_embedding = nn.Embedding(vocab, self.width)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.positional_embedding = nn.Parameter(torch.randn(self.context_length, self.width) * 0.01)
        self.transformer = Transformer(transformer_config(self.width, int(t["depth"]), int(t["heads"]),
                                                          mlp_ratio=float(t.get("mlp_ratio", 4.0))))
        self.text_projection = nn.Parameter(torch.randn(self.width, e) * self.width ** -0.5)
        self.sigmoid = m.get("loss", "softmax") == "sigmoid"
        init_scale = m.get("init_logit_scale")
        if init_scale is None:
            init_scale = math.log(10.0) if self.sigmoid else math.log(1 / 0.07)
        self.logit_scale = nn.Parameter(torch.tensor(float(init_scale)))
        if self.sigmoid:
            self.logit_bias = nn.Parameter(torch.tensor(float(m.get("init_logit_bias", -10.0))))
        else:
            self.logit_bias = None
        self.max_log_scale = math.log(float(m.get("max_logit_scale", 100.0)))
        self.micro_batches = int(m.get("micro_batches", 1))

    def encode_text(self, tokens):
        """`Clip::encode_text`."""
        int(tokens.min()), int(tokens.max())  # ssl-rs's range check reads both back
        t = tokens.shape[1]
        x = F.embedding(tokens, self.token_embedding.weight, padding_idx=self.pad_id)
        x = x + self.positional_embedding.narrow(0, 0, t)
        h = self.transformer(x, None, causal=True)
        last = ((tokens != self.pad_id).sum(1) - 1).clamp_min(0)
        pooled = h.gather(1, last.view(-1, 1, 1).expand(-1, 1, self.width)).squeeze(1)
        return pooled @ self.text_projection

    def embeddings(self, images, tokens):
        """`Clip::embeddings`: L2-normalised image and text embeddings."""
        return normalize(self.visual(images)), normalize(self.encode_text(tokens))

    def objective_loss(self, i, t, scale, bias):
        """`loss.rs` `clip_loss` or `siglip_loss`."""
        logits = (i @ t.t()) * scale.exp()
        n = i.shape[0]
        if self.sigmoid:
            sign = torch.eye(n, device=i.device) * 2.0 - 1.0
            return -F.logsigmoid((logits + bias) * sign).sum() / n
        labels = torch.arange(n, device=i.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2.0

    def loss(self, batch):
        """`Clip::step_loss`: returns `(loss, metrics, backward_done)`."""
        images, tokens = batch
        n = images.shape[0]
        k = min(self.micro_batches, n)
        bias = self.logit_bias
        if k <= 1:
            i, t = self.embeddings(images, tokens)
            return self.objective_loss(i, t, self.logit_scale, bias), self.metrics(i, t), False
        ims, toks = images.chunk(k, 0), tokens.chunk(k, 0)
        with torch.no_grad():
            cached = [self.embeddings(a, b) for a, b in zip(ims, toks)]
        loss = torch.zeros((), device=images.device)
        for j in range(len(ims)):
            live = self.embeddings(ims[j], toks[j])
            ai = torch.cat([live[0] if m == j else c[0] for m, c in enumerate(cached)], 0)
            at = torch.cat([live[1] if m == j else c[1] for m, c in enumerate(cached)], 0)
            scale = self.logit_scale if j == 0 else self.logit_scale.detach()
            b = bias if (j == 0 or bias is None) else bias.detach()
            l = self.objective_loss(ai, at, scale, b)  # noqa: E741
            l.backward()
            loss = l.detach()
            cached[j] = (live[0].detach(), live[1].detach())
        i = torch.cat([c[0] for c in cached], 0)
        t = torch.cat([c[1] for c in cached], 0)
        return loss, self.metrics(i, t), True

    @torch.no_grad()
    def metrics(self, i, t):
        """`Clip::with_metrics` (`loss.rs` `batch_accuracy`)."""
        s = i.detach() @ t.detach().t()
        labels = torch.arange(s.shape[0], device=s.device)
        out = {"i2t_accuracy": (s.argmax(1) == labels).float().mean(),
               "t2i_accuracy": (s.t().argmax(1) == labels).float().mean(),
               "logit_scale": self.logit_scale.exp()}
        if self.logit_bias is not None:
            out["logit_bias"] = self.logit_bias.detach()
        return out

    @torch.no_grad()
    def after_step(self):
        """`Clip::after_step`: the log scale clamped to `[0, ln max_logit_scale]`."""
        self.logit_scale.copy_(self.logit_scale.clamp(0.0, self.max_log_scale))


def normalize(x: torch.Tensor) -> torch.Tensor:
    """`clip.rs` `normalize`: rows to unit L2 norm (clamped at 1e-12), in the input's dtype."""
    return x / x.norm(2, dim=-1, keepdim=True).clamp_min(1e-12)


def clip_no_decay(name: str, p: torch.Tensor) -> bool:
    """`Clip::no_weight_decay` (open_clip's exclusions): 1-D and scalar parameters, and every
    parameter whose name contains `embedding` (`token_embedding.weight`,
    `positional_embedding`). The ViT's `cls_token` and patch convolution are decayed."""
    return p.dim() < 2 or "embedding" in name


def clip_vocabulary(cfg: dict) -> tuple[int, int, int]:
    """`(vocab_size, pad_id, eot_id)` of a CLIP run: from the tokenizer file `data.tokenizer`
    (`crates/ssl-cli/src/clip.rs` `build`: `tok.tokenizer().vocab_size()`, `tok.pad()`;
    `batch.rs` `CaptionTokenizer`: end of text is `<|endoftext|>`, else `[SEP]`), else the
    documented fallback `CLIP_FALLBACK_VOCAB` with the byte-level BPE layout (eot 0, pad 1)."""
    tok = read_tokenizer(cfg)
    if tok is None:
        print(f"clip: data.tokenizer unreadable; vocabulary {CLIP_FALLBACK_VOCAB} assumed "
              "(the default scenes captions' at data.vocab_size = 1000)", file=sys.stderr)
        return CLIP_FALLBACK_VOCAB, 1, 0
    v = tok["vocab"]
    pad = v.get(GPT_PAD, v.get("[PAD]", 0))
    eot = v.get(GPT_EOS, v.get("[SEP]", 0))
    return len(v), pad, eot


def build_clip(cfg: dict, device) -> Workload:
    m, data = cfg["model"], cfg.get("data", {})
    vocab, pad, eot = clip_vocabulary(cfg)
    model = Clip(m, vocab, pad)
    b = int(data.get("batch_size", 256))
    if isinstance(model.visual, VitTower):
        size = model.visual.image_size
    else:
        size = int(data.get("transform", {}).get("size", 224))
    ctx = model.context_length
    seed = int(cfg.get("train", {}).get("seed", 0))

    def make_batch(device):
        """A `PairBatches` batch: images `[B, C, S, S]` (normalised, so about unit Gaussian) and
        captions `[B, context_length]`: tokens, end-of-text, padding (`CaptionTokenizer`)."""
        g = torch.Generator().manual_seed(seed)
        images = torch.randn(b, model.visual.in_channels, size, size, generator=g)
        cand = torch.tensor([i for i in range(vocab) if i not in (pad, eot)])
        lengths = torch.randint(3, max(ctx - 1, 4), (b,), generator=g).clamp_max(ctx - 1)
        tokens = torch.full((b, ctx), pad, dtype=torch.long)
        for r in range(b):
            n = int(lengths[r])
            tokens[r, :n] = cand[torch.randint(len(cand), (n,), generator=g)]
            tokens[r, n] = eot
        return images.to(device), tokens.to(device)

    return Workload(cfg, model, b, make_batch, clip_no_decay)


WORKLOADS = {"bert": build_bert, "gpt": build_gpt, "clip": build_clip}
