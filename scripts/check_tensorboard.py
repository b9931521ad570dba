#!/usr/bin/env python3
"""Checks a run's TensorBoard event files with TensorBoard's own reader.

Usage: python3 scripts/check_tensorboard.py RUN_DIR

RUN_DIR is an `ssl pretrain ... --tensorboard` run directory. The script loads
RUN_DIR/tensorboard with tensorboard's EventAccumulator (the reader behind
`tensorboard --logdir`) and checks that every record of RUN_DIR/metrics.jsonl is there: the
same steps, and for `loss`, `lr` and every other numeric field the same value (to float32
precision). It needs the `tensorboard` package (`pip install tensorboard`) and exits 0 when
everything matches, 1 with the first mismatch otherwise.
"""

import json
import math
import sys
from pathlib import Path


def main(run_dir: Path) -> int:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    if not records:
        print(f"{run_dir}/metrics.jsonl has no records", file=sys.stderr)
        return 1
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for key in records[0]:
        if key == "step" or not isinstance(records[0][key], (int, float)):
            continue
        if key not in tags:
            print(f"scalar `{key}` is missing; TensorBoard has {sorted(tags)}", file=sys.stderr)
            return 1
        events = acc.Scalars(key)
        got = {e.step: e.value for e in events}
        if len(got) != len(events):
            print(f"`{key}`: TensorBoard has repeated steps (a resumed run's stale scalars were not dropped)", file=sys.stderr)
            return 1
        want = {r["step"]: r[key] for r in records if key in r}
        if sorted(got) != sorted(want):
            print(f"`{key}`: steps {sorted(got)} in TensorBoard, {sorted(want)} in metrics.jsonl", file=sys.stderr)
            return 1
        for step, value in want.items():
            if not math.isclose(got[step], value, rel_tol=1e-6, abs_tol=1e-30):
                print(f"`{key}` at step {step}: {got[step]} in TensorBoard, {value} in metrics.jsonl", file=sys.stderr)
                return 1
    print(f"tensorboard: {len(records)} records x {len(tags)} scalars match metrics.jsonl in {run_dir}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(Path(sys.argv[1])))
