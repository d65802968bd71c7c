"""Differentiable augmentations applied to every image the discriminator sees.

Augmenting reals *and* fakes (and the fakes in the generator's step) keeps the generator
from learning the augmentations, while the discriminator sees more variety: the cure for
a discriminator that memorises a small dataset. All randomness comes from a CPU
``torch.Generator`` owned by the augmenter, so runs are reproducible and resumable.
"""

from __future__ import annotations

import torch

from ganvas.augment.ada import AdaptiveAugment
from ganvas.augment.diffaugment import DiffAugment
from ganvas.errors import GanvasError

AUGMENTS = ("none", "diffaugment", "ada")


class NoAugment:
    """Identity; keeps the trainer free of ``if augment`` branches."""

    p = 0.0

    def __call__(self, images):
        return images

    def observe(self, real_logits: torch.Tensor) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def build_augment(name: str, *, seed: int, diffaugment_policy: str = "",
                  ada_target: float = 0.6, ada_kimg: float = 100.0, ada_interval: int = 4,
                  sum_over_processes=None):
    """The augmenter for ``--augment NAME``; ``seed`` seeds its own random generator;
    ``sum_over_processes`` pools ADA's overfitting signal over the processes of a run."""
    if name == "none":
        return NoAugment()
    if name == "diffaugment":
        return DiffAugment(diffaugment_policy, seed=seed)
    if name == "ada":
        return AdaptiveAugment(seed=seed, target=ada_target, speed_kimg=ada_kimg,
                               interval=ada_interval, sum_over_processes=sum_over_processes)
    raise GanvasError(f"--augment {name!r} is not known; choose one of: {', '.join(AUGMENTS)}")


__all__ = ["AUGMENTS", "AdaptiveAugment", "DiffAugment", "NoAugment", "build_augment"]
