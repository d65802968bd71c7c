"""The lesson notebook's DCGAN training loop, ported to plain PyTorch: the reference that the
throughput and quality benchmarks measure ganvas against.

The lesson trains its 28 px DCGAN (``dcgan`` at 28 px in ganvas's registry is exactly the
lesson's network: ConvTranspose 100-256-128-64-1 with BatchNorm; D conv 64-128-256-1 with
BatchNorm) with BCE-from-logits, Adam at 2e-4 with betas (0.5, 0.999) for both networks, and
batches of 256 shuffled images scaled to [-1, 1]. This port is written the way such a loop is
usually written in PyTorch: a DataLoader over a float tensor, then per step G(z) -> D step on
real and detached fakes -> G step through a second forward of D, in PyTorch's default memory
layout and float32.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from ganvas.models import build_models

LEARNING_RATE = 2e-4
BETAS = (0.5, 0.999)
BATCH_SIZE = 256
LATENT_DIM = 100


def lesson_models(seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(seed)
    return build_models("dcgan", resolution=28, channels=1, latent_dim=LATENT_DIM)


def train_lesson(images: np.ndarray, *, keep_going: Callable[[int], bool],
                 on_step: Callable[[int], None] | None = None, batch_size: int = BATCH_SIZE,
                 seed: int = 0) -> tuple[torch.nn.Module, int]:
    """Train until ``keep_going(steps_done)`` is False; returns ``(generator, steps)``.

    ``images`` are uint8 ``[N, 1, 28, 28]``. ``on_step(steps_done)`` runs after every step
    (for timing).
    """
    G, D = lesson_models(seed)
    opt_g = torch.optim.Adam(G.parameters(), lr=LEARNING_RATE, betas=BETAS)
    opt_d = torch.optim.Adam(D.parameters(), lr=LEARNING_RATE, betas=BETAS)
    data = torch.from_numpy(np.asarray(images, dtype=np.float32) / 127.5 - 1)
    loader = DataLoader(TensorDataset(data), batch_size=batch_size, shuffle=True,
                        drop_last=True)
    done = 0
    while keep_going(done):
        for (real,) in loader:
            z = torch.randn(batch_size, LATENT_DIM)
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
            if on_step is not None:
                on_step(done)
            if not keep_going(done):
                break
    return G, done
