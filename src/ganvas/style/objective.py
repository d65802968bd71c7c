"""The loss of a candidate picture and its gradient, whole or tile by tile."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ganvas.style.losses import gram_matrix, gram_sum, total_variation
from ganvas.style.tiling import (
    Tile,
    core_of,
    layer_factors,
    plan_tiles,
    target_slice,
    tiled_grams,
    window_of,
)


@dataclass(frozen=True)
class LossWeights:
    content: float
    style: float
    tv: float
    tv_kind: str = "l2"


@dataclass
class Evaluation:
    loss: float
    content: float
    style: float
    tv: float


class StyleObjective:
    """``weights.content * content + weights.style * style + weights.tv * tv`` of a picture.

    Calling it with a ``[1, 3, H, W]`` picture in ``[0, 1]`` returns the loss terms and
    leaves the gradient in ``picture.grad``. With ``tiling`` set, the picture is processed
    in tiles so that memory depends on the tile size, not on the picture's (see
    :mod:`ganvas.style.tiling`); the gradient is that of the same whole-picture loss.
    """

    def __init__(self, backbone: torch.nn.Module, content_targets: dict[str, torch.Tensor],
                 style_targets: dict[str, torch.Tensor], style_layer_weights: dict[str, float],
                 weights: LossWeights, tiling: TileSettings | None = None) -> None:
        self.backbone = backbone
        self.content_targets = content_targets
        self.style_targets = style_targets
        self.layer_weights = style_layer_weights
        self.weights = weights
        self.tiling = tiling
        self.layers = list(dict.fromkeys([*content_targets, *style_targets]))

    def __call__(self, picture: torch.Tensor) -> Evaluation:
        if picture.grad is not None:
            picture.grad = None
        if self.tiling is None:
            return self._whole(picture)
        return self._tiled(picture)

    def _whole(self, picture: torch.Tensor) -> Evaluation:
        feats = self.backbone(self.backbone.preprocess(picture), self.layers)
        content = sum((F.mse_loss(feats[n], t) for n, t in self.content_targets.items()),
                      picture.new_zeros(()))
        style = sum((self.layer_weights[n] * F.mse_loss(gram_matrix(feats[n]), t)
                     for n, t in self.style_targets.items()), picture.new_zeros(()))
        tv = total_variation(picture, self.weights.tv_kind)
        w = self.weights
        loss = w.content * content + w.style * style + w.tv * tv
        loss.backward()
        return Evaluation(loss.item(), content.item(), style.item(), tv.item())

    def _tiled(self, picture: torch.Tensor) -> Evaluation:
        settings = self.tiling
        assert settings is not None
        full = tuple(picture.shape[-2:])
        offset = tuple(int(v) for v in torch.randint(0, settings.size, (2,),
                                                     generator=settings.generator))
        tiles = plan_tiles(*full, settings.size, settings.halo, settings.align, offset)
        w = self.weights
        data = picture.detach()

        # Pass 1: the whole picture's Gram matrices (no graph kept), hence dLoss/dGram.
        style_layers = list(self.style_targets)
        grams, sizes = tiled_grams(self.backbone, data, style_layers, tiles, settings.factors)
        style = data.new_zeros(())
        gram_grads = {}
        for name, target in self.style_targets.items():
            diff = grams[name] - target
            style += self.layer_weights[name] * diff.pow(2).mean()
            gram_grads[name] = (w.style * self.layer_weights[name] * 2.0 / diff.numel()) * diff

        # Pass 2: per tile, a surrogate whose gradient equals the whole loss's share of it.
        grad = torch.zeros_like(data)
        content = 0.0
        for tile in tiles:
            content += self._tile_backward(data, tile, full, gram_grads, sizes, grad)

        window = data.clone().requires_grad_(True)
        tv = total_variation(window, w.tv_kind)
        (w.tv * tv).backward()
        grad += window.grad
        picture.grad = grad
        loss = w.content * content + w.style * style.item() + w.tv * tv.item()
        return Evaluation(loss, content, style.item(), tv.item())

    def _tile_backward(self, data: torch.Tensor, tile: Tile, full: tuple[int, int],
                       gram_grads: dict[str, torch.Tensor], sizes: dict[str, int],
                       grad: torch.Tensor) -> float:
        settings = self.tiling
        assert settings is not None
        window = window_of(data, tile).clone().requires_grad_(True)
        feats = self.backbone(self.backbone.preprocess(window), self.layers)
        surrogate = window.new_zeros(())
        content = 0.0
        for name, target in self.content_targets.items():
            core = core_of(feats[name], tile, settings.factors[name], full)
            rows, cols = target_slice(tile, settings.factors[name], full, target.shape[-2:])
            squared = (core - target[..., rows, cols]).pow(2).sum() / target.numel()
            surrogate = surrogate + self.weights.content * squared
            content += squared.item()
        for name, g in gram_grads.items():
            core = core_of(feats[name], tile, settings.factors[name], full)
            surrogate = surrogate + (g * gram_sum(core)).sum() / sizes[name]
        surrogate.backward()
        top, bottom, left, right = tile.window
        grad[..., top:bottom, left:right] += window.grad
        return content


@dataclass
class TileSettings:
    """How to cut pictures into tiles: core ``size``, ``halo``, alignment and offsets."""

    size: int
    halo: int
    align: int
    factors: dict[str, int]
    generator: torch.Generator

    @classmethod
    def for_layers(cls, backbone: torch.nn.Module, layers: Sequence[str], size: int, halo: int,
                   seed: int) -> TileSettings:
        factors = layer_factors(backbone, layers)
        align = max(factors.values())
        generator = torch.Generator().manual_seed(seed)
        return cls(max(align, size // align * align), -(-halo // align) * align, align,
                   factors, generator)
