"""Exponential moving average of the generator's weights, with a half-life in images.

Sampling from the average instead of the latest weights smooths out the step-to-step
jitter of adversarial training; every sample grid, ``generate`` and the exported generator
use it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ganvas.rng import EMA_STATISTICS, stream_seed

BATCHNORM_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
STATISTICS_EVERY = 8  # steps between the average's own BatchNorm passes (see own_statistics)
STATISTICS_BATCH = 16  # with BatchNorm's momentum of 0.1: about the last 80 steps


class GeneratorEMA:
    """Keeps ``average`` ~ weights averaged over the last ``half_life_kimg`` thousand images.

    Early in training the effective half-life is shortened to ``rampup`` x images seen, so the
    average does not drag along the random initial weights. Buffers (BatchNorm statistics) are
    copied, not averaged, except for generators that need statistics of their own.
    """

    def __init__(self, generator: nn.Module, half_life_kimg: float = 10.0,
                 rampup: float | None = 0.05, seed: int = 0):
        self.average = copy.deepcopy(generator).eval().requires_grad_(False)
        self.half_life_kimg = half_life_kimg
        self.rampup = rampup
        self.seed = seed
        # A network normalised by BatchNorm throughout should not borrow the live network's
        # statistics: they describe the activations of other weights, and the error grows
        # with every normalised layer. Such a generator says so, and the average keeps
        # statistics of its own, from passes of its own.
        self.own_statistics = bool(getattr(generator, "average_needs_own_statistics", False))

    def beta(self, batch_size: int, images_seen: int) -> float:
        half_life = self.half_life_kimg * 1000
        if self.rampup:
            half_life = min(half_life, images_seen * self.rampup)
        return 0.5 ** (batch_size / max(half_life, 1e-8))

    @torch.no_grad()
    def update(self, generator: nn.Module, batch_size: int, images_seen: int) -> None:
        weight = 1 - self.beta(batch_size, images_seen)
        for mine, theirs in zip(self.average.parameters(), generator.parameters()):
            mine.lerp_(theirs.detach(), weight)
        for (name, mine), theirs in zip(self.average.named_buffers(), generator.buffers()):
            if not (self.own_statistics and name.rsplit(".", 1)[-1] in BATCHNORM_BUFFERS):
                mine.copy_(theirs)
        step = images_seen // max(batch_size, 1)
        if self.own_statistics and step % STATISTICS_EVERY == 0:
            self.refresh_statistics(images_seen)

    @torch.no_grad()
    def refresh_statistics(self, images_seen: int) -> None:
        """One train-mode pass of the average on latents of its own (a stream keyed by the
        images seen, so a resumed run draws the same), moving its BatchNorm statistics."""
        rng = torch.Generator().manual_seed(stream_seed(self.seed, f"{EMA_STATISTICS}/"
                                                                   f"{images_seen}"))
        z = torch.randn(STATISTICS_BATCH, self.average.latent_dim, generator=rng)
        classes = self.average.c_dim
        c = (torch.nn.functional.one_hot(torch.randint(classes, (len(z),), generator=rng),
                                         classes).float() if classes else None)
        device = next(self.average.parameters()).device
        self.average.train()
        try:
            self.average.sample(z.to(device), None if c is None else c.to(device))
        finally:
            self.average.eval()
