"""Exponential moving average of the generator's weights, with a half-life in images.

Sampling from the average instead of the latest weights smooths out the step-to-step
jitter of adversarial training; every sample grid, ``generate`` and the exported generator
use it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class GeneratorEMA:
    """Keeps ``average`` ~ weights averaged over the last ``half_life_kimg`` thousand images.

    Early in training the effective half-life is shortened to ``rampup`` x images seen, so the
    average does not drag along the random initial weights. Buffers (BatchNorm statistics) are
    copied, not averaged.
    """

    def __init__(self, generator: nn.Module, half_life_kimg: float = 10.0,
                 rampup: float | None = 0.05):
        self.average = copy.deepcopy(generator).eval().requires_grad_(False)
        self.half_life_kimg = half_life_kimg
        self.rampup = rampup

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
        for mine, theirs in zip(self.average.buffers(), generator.buffers()):
            mine.copy_(theirs)
