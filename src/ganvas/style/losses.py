"""The three terms of Gatys-style transfer: content, Gram-matrix style and total variation.

Definitions follow the PyTorch neural-style tutorial, so results and weights are comparable
with it: Gram matrices are normalised by ``C*H*W`` and both feature losses are mean squared
errors. The tiled optimiser (:mod:`ganvas.style.tiling`) relies on the Gram matrix being a
plain sum over pixels, so a picture's Gram matrix is the sum of its tiles' contributions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F


def gram_sum(features: torch.Tensor) -> torch.Tensor:
    """Unnormalised Gram matrix ``F F^T`` of ``[1, C, H, W]`` (or ``[C, H, W]``) features."""
    flat = features.reshape(features.shape[-3], -1)
    return flat @ flat.T


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix of one picture's features, normalised by ``C*H*W``."""
    c, h, w = features.shape[-3:]
    return gram_sum(features) / (c * h * w)


def content_loss(features: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
                 ) -> torch.Tensor:
    """Sum over layers of the mean squared feature difference."""
    return sum(F.mse_loss(features[name], targets[name]) for name in targets)


def style_loss(grams: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor],
               layer_weights: Mapping[str, float]) -> torch.Tensor:
    """Weighted sum over layers of the mean squared Gram difference."""
    return sum(layer_weights[name] * F.mse_loss(grams[name], targets[name]) for name in targets)


def total_variation(image: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """Mean absolute (``l1``) or squared (``l2``) difference between neighbouring pixels."""
    dy = image[..., 1:, :] - image[..., :-1, :]
    dx = image[..., :, 1:] - image[..., :, :-1]
    if kind == "l1":
        return dy.abs().mean() + dx.abs().mean()
    return dy.pow(2).mean() + dx.pow(2).mean()


def blend_grams(per_style: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float]
                ) -> dict[str, torch.Tensor]:
    """One target per layer: the weighted mean of several style images' Gram matrices.

    Matching the mean Gram matrix is, up to a constant, the same as minimising the weighted
    sum of the losses against each style image, at the cost of one target.
    """
    total = float(sum(weights))
    return {name: sum(w / total * grams[name] for grams, w in zip(per_style, weights))
            for name in per_style[0]}
