"""A fixed feature space for comparing pictures cheaply: a small convolutional network with
random weights drawn from a constant seed.

Random convolutions respond to edges, strokes and textures, so distances in this space follow
how pictures look closely enough to watch a run's progress every tick and to find a sample's
nearest training images, on any CPU and without a download. It is no replacement for the
Inception features of FID when a number must be compared with other work.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ganvas.utils.images import on_white

FIDELITY_SIZE = 32  # pictures are compared at 32 px: coarse shape and stroke, fast at any size
_FEATURE_SEED = 20_240_611  # a constant: the same feature space in every run and release
_WIDTHS = (3, 32, 64, 128)


class FixedFeatures:
    """A frozen random convolutional network: ``[N, C, H, W]`` -> float64 ``[N, 256]``.

    Three 3x3 convolutions with ReLU and 2x average pooling between them; each image is
    described by the mean and the spread of the last layer's 128 channels over its area.
    Also a :class:`ganvas.metrics.inception.FeatureExtractor` (``identity``, ``features``).
    """

    identity = f"ganvas-random-conv-{_FEATURE_SEED}-v1"
    description = "fixed random-convolution features"
    centred = True  # every feature is positive: compare them around the data's mean

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(_FEATURE_SEED)
        self.weights = []
        for fan_in, fan_out in zip(_WIDTHS, _WIDTHS[1:]):
            weight = torch.randn(fan_out, fan_in, 3, 3, generator=generator)
            self.weights.append(weight * (2.0 / (9 * fan_in)) ** 0.5)  # He scale: no fading
        # A random bias per channel lets ReLU cut each channel at a different level.
        self.biases = [0.1 * torch.randn(w.shape[0], generator=generator) for w in self.weights]

    def features(self, images: Any) -> np.ndarray:
        """``uint8`` images (0..255) or float ones in [-1, 1], numpy or torch."""
        tensor = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor)
                                 else images)
        if tensor.dtype == torch.uint8:
            tensor = tensor.float() / 127.5 - 1
        return self(tensor)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        x = to_size(on_white(images.float().cpu()), FIDELITY_SIZE)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            if i:
                x = F.avg_pool2d(x, 2)
            x = F.relu(F.conv2d(x, weight, bias, padding=1))
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1).double().numpy()


def to_size(images: torch.Tensor, size: int) -> torch.Tensor:
    """Square images resized to ``size`` a side (area average down, bilinear up)."""
    if images.shape[-1] == size:
        return images
    if images.shape[-1] > size:
        return F.adaptive_avg_pool2d(images, size)
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
