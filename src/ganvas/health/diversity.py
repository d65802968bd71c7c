"""How varied a batch of images is, in a fixed, cheap feature space.

Images are average-pooled to at most 16x16 and compared by Euclidean distance. Coarse, but
it is the same space for real and generated images, and a generator that draws one picture
scores zero however that picture looks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FEATURE_SIZE = 16
DUPLICATE_FRACTION = 0.1  # a near-twin is closer than this fraction of typical real spacing


def features(images: torch.Tensor, size: int = FEATURE_SIZE) -> torch.Tensor:
    """``[N, C, H, W]`` in ``[-1, 1]`` -> ``[N, D]`` float64 features (pooled to at most
    ``size`` pixels a side)."""
    size = min(size, images.shape[-1])
    return F.adaptive_avg_pool2d(images.float().cpu(), size).flatten(1).double()


def pairwise(features: torch.Tensor) -> torch.Tensor:
    distances = torch.cdist(features, features)
    distances.fill_diagonal_(float("nan"))
    return distances


def spread(features: torch.Tensor) -> tuple[float, float]:
    """(mean distance between two images, median distance to the nearest neighbour)."""
    d = pairwise(features)
    mean = float(torch.nanmean(d))
    nearest = torch.nan_to_num(d, nan=float("inf")).min(dim=1).values
    return mean, float(nearest.median())


def compare(generated: torch.Tensor, real_mean: float, real_nearest: float,
            size: int = FEATURE_SIZE) -> tuple[float, float]:
    """(diversity of ``generated`` relative to the reals, share of near-duplicates)."""
    d = pairwise(features(generated, size))
    ratio = float(torch.nanmean(d)) / max(real_mean, 1e-12)
    nearest = torch.nan_to_num(d, nan=float("inf")).min(dim=1).values
    duplicates = float((nearest < DUPLICATE_FRACTION * max(real_nearest, 1e-12)).double().mean())
    return ratio, duplicates
