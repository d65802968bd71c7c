"""Training throughput: ganvas against a plain PyTorch version of the lesson's loop.

Both train the lesson's 28 px DCGAN (the same network, built by ganvas's registry) with the
lesson's BCE loss and Adam(2e-4, betas 0.5/0.999) at batch 256 on the same images, in the
same process, one after the other. The reference is written the way the lesson notebook's
loop is usually ported to PyTorch: a DataLoader over a float tensor, then per step
G(z) -> D step -> G step. Figures are images per second after a warm-up, and their ratio.

    python benchmarks/throughput.py                 # Fashion-MNIST if installed, else digits
    python benchmarks/throughput.py --steps 30 --data digits
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import ganvas
from ganvas.data import load_images
from ganvas.models import build_models


def lesson_loop(images: np.ndarray, steps: int, warmup: int, batch: int) -> float:
    """The reference: images/s of a straightforward PyTorch port of the lesson's loop."""
    torch.manual_seed(0)
    G, D = build_models("dcgan", resolution=28, channels=1, latent_dim=100)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    data = torch.from_numpy(np.asarray(images, dtype=np.float32) / 127.5 - 1)
    loader = DataLoader(TensorDataset(data), batch_size=batch, shuffle=True, drop_last=True)
    done, started = 0, None
    while done < steps + warmup:
        for (real,) in loader:
            if done == warmup:
                started = time.perf_counter()
            z = torch.randn(batch, 100)
            fake = G(z)
            real_out, fake_out = D(real), D(fake.detach())
            d_loss = (F.binary_cross_entropy_with_logits(real_out, torch.ones_like(real_out))
                      + F.binary_cross_entropy_with_logits(fake_out, torch.zeros_like(fake_out)))
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            out = D(fake)
            g_loss = F.binary_cross_entropy_with_logits(out, torch.ones_like(out))
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
            done += 1
            if done == steps + warmup:
                break
    return steps * batch / (time.perf_counter() - started)


class Timer(ganvas.Callback):
    """Times ganvas's own steps after the warm-up, excluding start-up and the final save."""

    def __init__(self, warmup: int):
        self.warmup, self.started, self.ended, self.steps = warmup, None, None, 0

    def on_step_end(self, trainer):
        if trainer.step == self.warmup:
            self.started = time.perf_counter()
        elif trainer.step > self.warmup:
            self.ended, self.steps = time.perf_counter(), trainer.step - self.warmup


def ganvas_loop(data: str, steps: int, warmup: int, batch: int, **options) -> float:
    timer = Timer(warmup)
    with tempfile.TemporaryDirectory() as tmp:
        ganvas.train(data=data, resolution=28, channels=1, model="dcgan", batch_size=batch,
                     steps=steps + warmup, log_every=50, sample_every=10**6,
                     checkpoint_every=10**6, out=os.path.join(tmp, "run"), progress=False,
                     log=lambda message: None, callbacks=[timer], **options)
    return timer.steps * batch / (timer.ended - timer.started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="default: fashion-mnist if present")
    parser.add_argument("--steps", type=int, default=40, help="timed steps (default 40)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    data = args.data or ("fashion-mnist" if os.path.isdir("/usr/share/datasets/fashion-mnist")
                         else "digits")
    images = load_images(data, resolution=28, channels=1, progress=False,
                         log=lambda message: None).images
    reference = lesson_loop(images, args.steps, args.warmup, args.batch_size)
    rows = [("lesson loop (plain PyTorch)", reference)]
    rows.append(("ganvas, defaults (EMA, health monitor)",
                 ganvas_loop(data, args.steps, args.warmup, args.batch_size)))
    rows.append(("ganvas, --no-ema --no-health",
                 ganvas_loop(data, args.steps, args.warmup, args.batch_size, ema=False,
                             health=False)))
    print(f"\nDCGAN 28 px, batch {args.batch_size}, {args.steps} timed steps on {data}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}\n")
    print("| loop | images/s | vs lesson loop |")
    print("|---|---|---|")
    for name, speed in rows:
        print(f"| {name} | {speed:.0f} | {speed / reference:.2f}x |")


if __name__ == "__main__":
    main()
