"""Named random streams: every consumer of randomness draws from its own stream.

A stream is identified by the run's seed and a name (``stream(seed, "latents")``), never by
``seed + k``: adding a consumer cannot shift another's numbers, two names never collide by
arithmetic, and the same (seed, name) gives the same numbers on every machine and process.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

# The streams ganvas uses, in one place so no two consumers share one by accident.
LATENTS = "latents"  # training latents z
NOISE = "noise"  # instance noise and the mixing weights of the gradient penalty
AUGMENT = "augment"  # DiffAugment / ADA parameters
DATA = "data"  # shuffling and mirroring of the training images
SAMPLES = "samples"  # the fixed latents of the sample grids
HEALTH_REFERENCE = "health/reference"  # which real images the monitor compares against
HEALTH_PROBE = "health/probe"  # the monitor's fixed latents
FID_LATENTS = "fid/latents"  # the fixed latents of --fid-every
STYLE_MIXING = "stylegan2/mixing"  # style-mixing cutoffs and second latents
SYNTHESIS_NOISE = "stylegan2/noise"  # per-pixel noise inputs and path-length projections
RECONSTRUCTION_PARTS = "fastgan/parts"  # which quarter FastGAN's discriminator reconstructs
FASTGAN_NOISE = "fastgan/noise"  # FastGAN's per-pixel noise inputs during training
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
