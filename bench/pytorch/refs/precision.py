"""The autocast of the forward pass, set once by `ssl_bench.py run --precision`.

ssl-rs autocasts `Objective::forward` only (`trainer/mod.rs`: `autocast(device, precision, ||
objective.forward(..))`); backward and the optimiser step run outside it. Workloads wrap their
forward in `forward_autocast()` to do the same.
"""

from __future__ import annotations

import contextlib

import torch

_DEVICE_TYPE = "cpu"
_BF16 = False


def configure(device: torch.device, precision: str) -> None:
    global _DEVICE_TYPE, _BF16
    _DEVICE_TYPE, _BF16 = device.type, precision == "bf16"


def forward_autocast():
    if _BF16:
        return torch.autocast(device_type=_DEVICE_TYPE, dtype=torch.bfloat16)
    return contextlib.nullcontext()
