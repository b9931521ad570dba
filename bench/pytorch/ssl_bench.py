"""PyTorch reference implementations of ssl-rs's methods, timed the way ssl-rs times itself.

`cargo xtask bench throughput --vs-pytorch` runs this script beside `ssl pretrain --repeat-batch`
(A B A B): both train the same architecture (built from the resolved `config.toml` of the
ssl-rs run), with the same optimiser, batch, precision and thread count, on one fixed batch of
the method's input shapes, so only the model step (forward, backward, optimiser update and the
method's after-step work such as EMA updates) is timed on both sides.

    python bench/pytorch/ssl_bench.py run METHOD --config RUN/config.toml --steps 40 \
        --threads 2 --json out.json
    python bench/pytorch/ssl_bench.py parity METHOD --config RUN/config.toml \
        --checkpoint RUN/checkpoints/step-N

`parity` compares the reference module's parameters and buffers, by shape, with the tensors
in an ssl-rs checkpoint's `model.safetensors`: the architectures are the same when the counts
and the shapes agree.

A workload (one per method, in `refs/`) is an object with:
- `module`: an `nn.Module` holding every tensor ssl-rs keeps in its model (for `parity`);
- `batch_size`: samples per step;
- `make_batch(device)`: one batch of the method's input shapes, filled with plausible values;
- `step(batch, step, total_steps)`: forward (inside `refs.precision.forward_autocast()`, so
  bf16 covers the forward alone, as in ssl-rs), backward, optimiser update, `zero_grad` and any
  after-step work; returns the loss tensor.

PyTorch's own defaults stand where ssl-rs has no counterpart to mirror: `torch.optim.AdamW` picks
its implementation itself (per parameter on CPU, `foreach` on CUDA).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
import time
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402

from refs import precision as forward_precision  # noqa: E402
from refs import registry  # noqa: E402

EXPECTED_TORCH = "2.11"


def load_config(path: str) -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)


def step_stats(durations: list[float], samples: list[int]) -> dict:
    """The first tenth of the steps is warm-up; the rest is timed (as ssl-core's StepTimes)."""
    skip = len(durations) // 10
    d, s = durations[skip:], samples[skip:]
    if not d:
        return {"step_time_median_s": 0.0, "step_time_p90_s": 0.0, "samples_per_sec": 0.0}
    ordered = sorted(d)

    def nearest_rank(q: float) -> float:
        rank = max(1, math.ceil(q * len(ordered)))
        return ordered[rank - 1]

    total = sum(d)
    return {
        "step_time_median_s": nearest_rank(0.5),
        "step_time_p90_s": nearest_rank(0.9),
        "samples_per_sec": sum(s) / total if total > 0 else 0.0,
    }


def run(args: argparse.Namespace) -> dict:
    cfg = load_config(args.config)
    torch.set_num_threads(args.threads)
    torch.manual_seed(cfg.get("train", {}).get("seed", 0))
    device = torch.device(args.device)
    precision = args.precision or cfg.get("train", {}).get("precision", "fp32")
    forward_precision.configure(device, precision)
    work = registry.build(args.method, cfg, device)
    work.module.to(device)
    batch = work.make_batch(device)
    durations, samples = [], []
    for step in range(args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        # Workloads autocast their forward pass alone (refs/precision.py), as ssl-rs does.
        loss = work.step(batch, step, args.steps)
        # ssl-rs reads the loss every step (it stops on a non-finite one): so does the reference.
        value = float(loss)
        if device.type == "cuda":
            torch.cuda.synchronize()
        durations.append(time.perf_counter() - t0)
        samples.append(work.batch_size)
        if not math.isfinite(value):
            raise SystemExit(f"{args.method}: non-finite loss {value} at step {step}")
    out = {
        "method": args.method,
        "implementation": "pytorch",
        "torch": torch.__version__,
        "threads": args.threads,
        "device": str(device),
        "precision": precision,
        "steps": args.steps,
        "batch_size": work.batch_size,
        "parameters": sum(p.numel() for p in work.module.parameters() if p.requires_grad),
        "final_loss": value,
    }
    out.update(step_stats(durations, samples))
    if device.type == "cuda":
        out["peak_gpu_memory_bytes"] = torch.cuda.max_memory_allocated(device)
    return out


def safetensors_shapes(path: str) -> dict[str, list[int]]:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


def parity(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    work = registry.build(args.method, cfg, torch.device("cpu"))
    ours = safetensors_shapes(os.path.join(args.checkpoint, "model.safetensors"))
    ref = {k: list(v.shape) for k, v in work.module.state_dict().items()}
    # BatchNorm's step counter has no counterpart in ssl-rs.
    ref = {k: v for k, v in ref.items() if not k.endswith("num_batches_tracked")}
    count = lambda shapes: sum(math.prod(s) for s in shapes.values())  # noqa: E731
    ours_sorted = sorted(tuple(s) for s in ours.values())
    ref_sorted = sorted(tuple(s) for s in ref.values())
    print(f"{args.method}: ssl-rs {len(ours)} tensors, {count(ours)} values; "
          f"pytorch {len(ref)} tensors, {count(ref)} values")
    if ours_sorted == ref_sorted:
        print("  same multiset of tensor shapes")
        return 0
    from collections import Counter
    a, b = Counter(ours_sorted), Counter(ref_sorted)
    print("  only in ssl-rs:", sorted((a - b).elements()))
    print("  only in pytorch:", sorted((b - a).elements()))
    if args.verbose:
        for k, v in sorted(ours.items()):
            print("   ours", k, v)
        for k, v in sorted(ref.items()):
            print("   ref ", k, v)
    return 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="time the reference's training steps")
    r.add_argument("method")
    r.add_argument("--config", required=True, help="the resolved config.toml of an ssl-rs run")
    r.add_argument("--steps", type=int, default=40)
    r.add_argument("--threads", type=int, default=torch.get_num_threads())
    r.add_argument("--device", default="cpu")
    r.add_argument("--precision", choices=["fp32", "bf16"])
    r.add_argument("--json", help="also write the result here")
    q = sub.add_parser("parity", help="compare tensor shapes with an ssl-rs checkpoint")
    q.add_argument("method")
    q.add_argument("--config", required=True)
    q.add_argument("--checkpoint", required=True, help="an ssl-rs checkpoint folder")
    q.add_argument("-v", "--verbose", action="store_true")
    q2 = sub.add_parser("methods", help="list the methods with a reference")
    args = p.parse_args()
    if not torch.__version__.startswith(EXPECTED_TORCH):
        print(f"warning: torch {torch.__version__}, ssl-rs links libtorch {EXPECTED_TORCH}", file=sys.stderr)
    if args.cmd == "methods":
        print("\n".join(registry.methods()))
        return 0
    if args.cmd == "parity":
        return parity(args)
    out = run(args)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
