"""How samples look beside the real images, cheaply enough to measure every tick.

- **fidelity**: the Fréchet distance between the features of the samples and of real images in
  a fixed feature space (:mod:`ganvas.metrics.fixed_features`): it falls as samples start to
  look like the data, without the Inception network (8 images/s on a CPU) or any download.
  It is a trend within a run, not a number to compare across runs.
- **sharpness**: the fine detail of the samples (the energy of their Laplacian) relative to
  the reals': about 1 when alike, well below for blurry samples, well above for noisy ones.
- **checkerboard**: how much the samples' spectrum peaks at the periods of 2 and 4 pixels,
  where the upsampling layers leave their grid pattern, relative to the reals'.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ganvas.metrics.fixed_features import FixedFeatures, to_size
from ganvas.metrics.statistics import feature_statistics, frechet_distance_to
from ganvas.utils.images import on_white

DETAIL_SIZE = 128  # fine detail is measured at the training resolution, up to this


class RealReference:
    """What the picture signals compare against, computed once from real images."""

    def __init__(self, real: torch.Tensor, resolution: int, features: FixedFeatures):
        real = on_white(real)  # transparent pictures are judged as they look on white
        self.features = features
        self.resolution = resolution
        mu, sigma = feature_statistics(features(real))
        self.mu, self.sigma = mu, sigma
        detail = to_size(real.float(), min(resolution, DETAIL_SIZE))
        self.detail = laplacian_energy(detail)
        self.peaks = spectral_peaks(detail)

    def compare(self, samples: torch.Tensor) -> dict[str, float]:
        """The signals of ``samples`` (``[N, C, H, W]`` in [-1, 1], N >= 2)."""
        samples = on_white(samples)
        fidelity = frechet_distance_to(self.features(samples), self.mu, self.sigma)
        detail = to_size(samples.float().cpu(), min(self.resolution, DETAIL_SIZE))
        sharpness = laplacian_energy(detail) / max(self.detail, 1e-12)
        peaks = spectral_peaks(detail)
        checkerboard = max(p / max(r, 1e-12) for p, r in zip(peaks, self.peaks))
        return {"Health/fidelity": fidelity, "Health/sharpness": sharpness,
                "Health/checkerboard": checkerboard}


_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def laplacian_energy(images: torch.Tensor) -> float:
    """Mean squared Laplacian of the images' brightness (edges and noise; 0 for flat ones)."""
    grey = images.float().mean(dim=1, keepdim=True)
    response = F.conv2d(grey, _LAPLACIAN.view(1, 1, 3, 3))  # no padding: borders are no detail
    return float(response.pow(2).mean())


def spectral_peaks(images: torch.Tensor) -> list[float]:
    """For the periods of 2 and 4 pixels: the power of the batch's mean spectrum on those
    frequency lines over the power on the lines beside them. A smooth falling spectrum (any
    photograph or drawing) gives about 1; a grid pattern repeating every 2 or 4 pixels
    stands out above its neighbours."""
    grey = images.float().mean(dim=1)
    grey = grey - grey.mean(dim=(1, 2), keepdim=True)
    power = torch.fft.fft2(grey).abs().pow(2).mean(dim=0).double().numpy()
    size = power.shape[-1]
    peaks = []
    for period in (2, 4):
        k = size // period
        if size % period or k < 2:
            continue
        line = _lines(power, k)
        beside = (_lines(power, k - 1) + _lines(power, k + 1 if k + 1 < size else k - 1)) / 2
        peaks.append(line / max(beside, 1e-20))
    return peaks or [1.0]


def _lines(power: np.ndarray, k: int) -> float:
    """Mean power on frequency row ``k`` and column ``k`` (their crossing counted once)."""
    return float((power[k, :].sum() + power[:, k].sum() - power[k, k]) / (2 * power.shape[0] - 1))
