"""Training speed of one model family at one resolution: images/s and seconds per thousand
images (sec/kimg, stylegan2-ada's unit), for each precision asked for, on any device.

The data is a folder of synthetic pictures written first (no dataset or font needed, so it
runs on a bare GPU machine). A growing model is given a schedule that reaches full size
within a few steps, so the timing is at the final resolution. Timed steps start after a
warm-up (cuDNN autotuning, allocator growth); the device is synchronised at both ends.
Ratios are against the first precision listed, measured in the same run.

    python benchmarks/train_speed.py --model stylegan2 --resolution 256 --device cuda \\
        --precision fp32 bf16
    python benchmarks/train_speed.py --model progressive --resolution 256 --device cuda
    python benchmarks/train_speed.py --model stylegan2 --resolution 32 --steps 4   # CPU look

stylegan2-ada's published figures for its own StyleGAN2 at 256 px with custom CUDA ops:
21.6 sec/kimg on one V100, about 12.5 on one A100.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import ganvas
from ganvas.errors import GanvasError
from ganvas.models.registry import make_spec

PICTURES = 64


class Stopwatch(ganvas.Callback):
    """Wall time and images between the end of step ``start`` and the end of the run."""

    def __init__(self, start: int, device: str):
        self.start, self.device = start, device
        self.began = self.images = None
        self.seconds = 0.0

    def _sync(self):
        if self.device.startswith("cuda") and torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_step_end(self, trainer):
        if trainer.step == self.start:
            self._sync()
            self.began, self.images = time.perf_counter(), trainer.images_seen

    def on_train_end(self, trainer, result):
        self._sync()
        self.seconds = time.perf_counter() - self.began
        self.images = trainer.images_seen - self.images


def write_pictures(folder: Path, resolution: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(PICTURES):
        array = np.full((resolution, resolution, 3), rng.integers(0, 255, 3), dtype=np.uint8)
        y, x = rng.integers(0, resolution // 2, 2)
        array[y:y + resolution // 2, x:x + resolution // 2] = rng.integers(0, 255, 3)
        Image.fromarray(array).save(folder / f"{i:03d}.png")


def measure(args, precision: str, data: Path, out: Path) -> dict:
    options = {}
    if args.model == "progressive":  # full size after a few steps
        options = {"fade_kimg": 0.001, "stable_kimg": 0.001}
    watch = Stopwatch(args.warmup, args.device)
    extra = {"batch_size": args.batch_size} if args.batch_size else {}
    ganvas.train(data=str(data), model=args.model, resolution=args.resolution,
                 steps=args.warmup + args.steps, out=str(out), device=args.device,
                 precision=precision, progress=False, log=lambda message: None,
                 health=False, sample_every=10**9, checkpoint_every=10**9, log_every=10**9,
                 model_options=options, workers=1, callbacks=[watch], **extra)
    speed = watch.images / watch.seconds
    return {"precision": precision, "images": watch.images, "seconds": watch.seconds,
            "images_per_s": speed, "sec_per_kimg": 1000 / speed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="stylegan2")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"],
                        choices=("fp32", "bf16", "auto"))
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: the model's own choice for the resolution")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=40, help="timed steps")
    args = parser.parse_args()
    make_spec(args.model, resolution=args.resolution, channels=3, latent_dim=100)  # fail fast
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "pictures"
        data.mkdir()
        write_pictures(data, args.resolution)
        for precision in args.precision:
            rows.append(measure(args, precision, data, Path(tmp) / f"run-{precision}"))
            print(f"{precision}: {rows[-1]['images_per_s']:.1f} images/s", flush=True)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
    print(f"\n{args.model} at {args.resolution} px on {device}, {args.steps} timed steps after "
          f"{args.warmup}, torch {torch.__version__}\n")
    print("| precision | images | seconds | images/s | sec/kimg | vs first |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['precision']} | {row['images']:,} | {row['seconds']:.1f} | "
              f"{row['images_per_s']:.1f} | {row['sec_per_kimg']:.2f} | "
              f"{rows[0]['sec_per_kimg'] / row['sec_per_kimg']:.2f}x |")


if __name__ == "__main__":
    try:
        main()
    except GanvasError as exc:
        raise SystemExit(f"train_speed.py: error: {exc}") from None
    except KeyboardInterrupt:
        sys.exit(130)
