"""The vision input pipeline in PyTorch: JPEG decode (PIL) plus SimCLR's two augmented views with
torchvision's transforms, normalised into tensors, on one thread.

It mirrors `crates/ssl-vision/examples/vision_data.rs` (`ssl_vision::augment::presets::simclr(224,
false)` with ImageNet normalisation): random resized crop to 224 px, scale (0.08, 1), bilinear
with antialiasing; horizontal flip p = 0.5; colour jitter (0.8, 0.8, 0.8, 0.2) with p = 0.8;
grayscale p = 0.2; Gaussian blur with a 23 px kernel (10% of 224) and sigma in [0.1, 2] with
p = 0.5. `cargo xtask bench data --vs-pytorch` runs it on the JPEGs our example wrote:

    python bench/pytorch/data_images.py FOLDER [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from PIL import Image
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def simclr_view(size: int = 224) -> v2.Compose:
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True),
        v2.RandomHorizontalFlip(p=0.5),
        v2.RandomApply([v2.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.RandomApply([v2.GaussianBlur(23, sigma=(0.1, 2.0))], p=0.5),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    files = sorted(os.path.join(args.folder, f) for f in os.listdir(args.folder) if f.endswith(".jpg"))
    if not files:
        raise SystemExit(f"no .jpg files in {args.folder}")
    views = [simclr_view(), simclr_view()]

    def one(path: str):
        with Image.open(path) as img:
            rgb = img.convert("RGB")
        return [v(rgb) for v in views]

    one(files[0])  # warm-up
    started = time.perf_counter()
    for f in files:
        one(f)
    per_sec = len(files) / (time.perf_counter() - started)
    out = {"pipeline": "torchvision: PIL decode + 2 SimCLR views", "unit": "images", "threads": 1,
           "per_sec": per_sec, "images": len(files), "torch": torch.__version__}
    text = json.dumps(out)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
