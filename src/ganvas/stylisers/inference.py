"""Running a styliser on pictures of any size in bounded memory.

A picture larger than a tile is cut into tiles with a halo of context (aligned to the
network's downsampling by 4, so every tile sees the pixel grid the whole picture would).
Instance normalisation would measure each tile's own statistics and give each tile its
own contrast, which shows as seams; instead the statistics of every layer are measured
once, on a copy of the whole picture shrunk to ``statistics_side`` pixels, and every tile is
normalised with them. With a halo at least as wide as the network's receptive field
(radius 54 px) and the statistics of the full-size picture, the tiled result equals the
whole-picture one up to floating-point error.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganvas.style.tiling import plan_tiles, window_of
from ganvas.stylisers.network import Styliser

ALIGN = 4  # the network halves the size twice
HALO = 64  # pixels of context around each tile (receptive field radius: 54)
STATISTICS_SIDE = 1024  # longest side of the copy the statistics are measured on


def shrink(image: torch.Tensor, longest: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    if max(h, w) <= longest:
        return image
    scale = longest / max(h, w)
    size = (max(ALIGN, round(h * scale)), max(ALIGN, round(w * scale)))
    return F.interpolate(image, size=size, mode="bilinear", antialias=True,
                         align_corners=False)


@torch.no_grad()
def stylise_tensor(net: Styliser, image: torch.Tensor, *, tile: int | None = 1024,
                   halo: int = HALO, statistics_side: int = STATISTICS_SIDE) -> torch.Tensor:
    """``image [1, 3, H, W]`` in [0, 1] -> the stylised picture, whole when it fits in one
    ``tile`` (None: never tile), else tile by tile with shared statistics."""
    h, w = image.shape[-2:]
    if tile is None or max(h, w) <= tile:
        return net(image)
    stats = net.measure_statistics(shrink(image, statistics_side))
    out = torch.empty_like(image)
    for piece in plan_tiles(h, w, tile, halo, ALIGN):
        result = net(window_of(image, piece), stats.replay())
        top, bottom, left, right = piece.core
        wtop, _, wleft, _ = piece.window
        out[..., top:bottom, left:right] = result[..., top - wtop:bottom - wtop,
                                                  left - wleft:right - wleft]
    return out
