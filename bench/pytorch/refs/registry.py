"""Method name -> workload builder, gathered from the modality modules."""

from __future__ import annotations

import importlib

MODULES = ["vision_contrastive", "vision_other", "text_clip", "audio"]


def _builders() -> dict:
    found = {}
    for name in MODULES:
        try:
            module = importlib.import_module(f"refs.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"refs.{name}":
                continue
            raise
        found.update(module.WORKLOADS)
    return found


def methods() -> list[str]:
    return sorted(_builders())


def build(method: str, cfg: dict, device):
    builders = _builders()
    if method not in builders:
        raise SystemExit(f"no PyTorch reference for `{method}` (have: {', '.join(sorted(builders))})")
    return builders[method](cfg, device)
