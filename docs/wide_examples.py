"""Makes the non-square picture of the README and docs/explore.md: a DCGAN trained on wide
pictures (two emoji side by side, 64x32) with `--resolution 64x32`.

    python docs/wide_examples.py --minutes 5          # writes docs/images/wide-emoji-pairs.png

The pictures are made from the emoji set ganvas reads from the Noto colour emoji font
(`fonts-noto-color-emoji`): pairs of emoji drawn at random, each at 32 px, side by side.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import ganvas
from ganvas.data import load_images
from ganvas.utils.images import make_grid, save_image

HERE = Path(__file__).resolve().parent


def write_pairs(folder: Path, count: int, seed: int = 0) -> Path:
    """``count`` 64x32 PNG pictures of two emoji side by side."""
    emoji = load_images("emoji", resolution=32, channels=3, progress=False,
                        log=lambda message: None).images  # [N, 3, 32, 32] uint8
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        left, right = rng.choice(len(emoji), 2, replace=False)
        pair = np.concatenate([emoji[left], emoji[right]], axis=2)  # [3, 32, 64]
        Image.fromarray(pair.transpose(1, 2, 0)).save(folder / f"{i:04d}.png")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="training time (wall)")
    parser.add_argument("--pictures", type=int, default=2000, help="pairs to train on")
    parser.add_argument("--out", default=str(HERE / "images" / "wide-emoji-pairs.png"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = write_pairs(Path(tmp) / "pairs", args.pictures)
        real = np.stack([np.asarray(Image.open(p)) for p in sorted(data.iterdir())[:8]])
        result = ganvas.train(data=str(data), model="dcgan", resolution="64x32",
                              time_budget=f"{args.minutes:g}m", out=str(Path(tmp) / "run"),
                              progress=False)
        model = ganvas.load(result.run_dir, device="cpu")
        samples = model.sample_tensor(24, seed=0)
        shown = torch.from_numpy(real).permute(0, 3, 1, 2).float() / 127.5 - 1
        grid = make_grid(torch.cat([shown, samples]), columns=8)
        save_image(grid, args.out)
        print(f"wrote {args.out}: the first row real pairs, the others the model's "
              f"({result.step:,} steps)")


if __name__ == "__main__":
    main()
