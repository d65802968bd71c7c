"""Named random streams: every consumer of randomness draws from its own stream.

A stream is identified by the run's seed and a name (``stream(seed, "latents")``), never by
``seed + k``: adding a consumer cannot shift another's numbers, two names never collide by
arithmetic, and the same (seed, name) gives the same numbers on every machine and process.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator

import numpy as np
import torch

# The streams ganvas uses, in one place so no two consumers share one by accident.
INITIAL_WEIGHTS = "weights"  # the networks' initial weights and fixed random buffers
LATENTS = "latents"  # training latents z
LABELS = "labels"  # the classes of generated images in a conditional run
NOISE = "noise"  # instance noise
PENALTY = "penalty"  # the real/fake mixing weights of the gradient penalty
AUGMENT = "augment"  # DiffAugment / ADA parameters
DATA = "data"  # shuffling and mirroring of the training images
HOLDOUT = "data/holdout"  # which real images are kept out of training
SAMPLES = "samples"  # the fixed latents of the sample grids
HEALTH_REFERENCE = "health/reference"  # which real images the monitor compares against
HEALTH_PROBE = "health/probe"  # the monitor's fixed latents
HEALTH_MEMORY = "health/memory"  # the training and held-out images D is checked on
FID_LATENTS = "fid/latents"  # the fixed latents of --fid-every
STYLE_MIXING = "stylegan2/mixing"  # style-mixing cutoffs and second latents
SYNTHESIS_NOISE = "stylegan2/noise"  # per-pixel noise inputs
PATH_LENGTH = "stylegan2/path-length"  # the random images path lengths are measured along
RECONSTRUCTION_PARTS = "fastgan/parts"  # which quarter FastGAN's discriminator reconstructs
FASTGAN_NOISE = "fastgan/noise"  # FastGAN's per-pixel noise inputs during training
PROJECTED_NOISE = "projected/noise"  # the generator's noise inputs under a projected D
EMA_STATISTICS = "ema/statistics"  # latents of the average's own BatchNorm passes


def stream_seed(seed: int, name: str) -> int:
    """A 63-bit seed for stream ``name`` of run ``seed`` (stable across versions)."""
    digest = hashlib.sha256(f"ganvas/{int(seed)}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def stream(seed: int, name: str) -> torch.Generator:
    """A CPU ``torch.Generator`` for stream ``name``: results do not depend on the device."""
    return torch.Generator().manual_seed(stream_seed(seed, name))


def numpy_stream(seed: int, name: str, *more: int) -> np.random.Generator:
    """A numpy generator for stream ``name``; ``more`` numbers (an epoch, say) split it."""
    return np.random.default_rng([stream_seed(seed, name), *map(int, more)])


# ---- the same numbers whatever the number of processes ---------------------------------------
#
# A run spread over several processes trains on one global batch, each process on its slice.
# Per-image random numbers (latents, augmentation parameters, noise) are drawn for the whole
# global batch from the shared stream, and each process keeps the rows of its slice: every
# stream then advances alike in every process, and image i of the global batch gets the same
# numbers however many processes share the batch.

_SLICE = (0, 1)  # (this process's index, number of processes) while a training step runs


@contextlib.contextmanager
def batch_slice(index: int, count: int) -> Iterator[None]:
    """Within this block, :func:`per_sample` keeps slice ``index`` of ``count``."""
    global _SLICE
    previous, _SLICE = _SLICE, (int(index), int(count))
    try:
        yield
    finally:
        _SLICE = previous


def per_sample(draw: Callable[[int], torch.Tensor], n: int) -> torch.Tensor:
    """``draw(m)`` returns random numbers for ``m`` samples (first dimension ``m``); this
    returns those of this process's ``n`` samples of the global batch."""
    index, count = _SLICE
    if count == 1:
        return draw(n)
    return draw(n * count)[index * n:(index + 1) * n]


def current_slice() -> tuple[int, int]:
    """``(index, count)`` of the batch slice this process trains on now; ``(0, 1)`` outside a
    training step or in a single process."""
    return _SLICE
