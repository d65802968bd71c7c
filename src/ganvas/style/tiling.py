"""Features of pictures too large for memory, computed tile by tile.

A tile is a *core* box plus a *halo* of context around it. The cores partition the
picture; each core's features are cut out of its tile's features, so every feature
position is counted exactly once. Boxes are aligned to the network's total downsampling
factor, so pooling windows fall where they would on the whole picture: with a halo at
least as wide as the receptive field the tiled statistics equal the whole-picture ones
exactly, and with a smaller halo they differ only near tile borders. The optimiser moves
the tile grid by a random offset at each evaluation so those borders never settle into
visible seams.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from ganvas.style.losses import gram_sum

PROBE = 64  # picture side used to find each layer's downsampling factor


@dataclass(frozen=True)
class Tile:
    """Pixel boxes ``(top, bottom, left, right)``: ``core`` inside ``window`` (core+halo)."""

    core: tuple[int, int, int, int]
    window: tuple[int, int, int, int]


def layer_factors(backbone: torch.nn.Module, layers: Sequence[str]) -> dict[str, int]:
    """How many picture pixels one feature position spans along each side, per layer."""
    probe = torch.zeros(1, 3, PROBE, PROBE)
    with torch.no_grad():
        feats = backbone(backbone.preprocess(probe), list(layers))
    return {name: max(1, round(PROBE / feats[name].shape[-1])) for name in layers}


def plan_tiles(height: int, width: int, tile: int, halo: int, align: int,
               offset: tuple[int, int] = (0, 0)) -> list[Tile]:
    """Cores of about ``tile`` pixels (aligned to ``align``) covering the picture.

    ``offset`` shifts the grid (it is rounded down to ``align``); the first row and column
    of cores are then shorter.
    """
    tile = max(align, tile // align * align)
    halo = -(-halo // align) * align

    def cuts(length: int, shift: int) -> list[int]:
        shift = (shift % tile) // align * align
        points = [0] + list(range(shift or tile, length, tile)) + [length]
        return sorted(set(points))

    rows, cols = cuts(height, offset[0]), cuts(width, offset[1])
    tiles = []
    for top, bottom in zip(rows[:-1], rows[1:]):
        for left, right in zip(cols[:-1], cols[1:]):
            window = (max(0, top - halo), min(height, bottom + halo),
                      max(0, left - halo), min(width, right + halo))
            tiles.append(Tile((top, bottom, left, right), window))
    return tiles


def core_of(features: torch.Tensor, tile: Tile, factor: int, full: tuple[int, int]
            ) -> torch.Tensor:
    """The part of a window's features that belongs to its core.

    ``full`` is the picture's ``(height, width)``: a core that ends at the picture's edge
    keeps every remaining feature row/column, as the whole-picture network would.
    """
    top, bottom, left, right = tile.core
    wtop, _, wleft, _ = tile.window
    r0, c0 = (top - wtop) // factor, (left - wleft) // factor
    r1 = features.shape[-2] if bottom == full[0] else (bottom - wtop) // factor
    c1 = features.shape[-1] if right == full[1] else (right - wleft) // factor
    return features[..., r0:r1, c0:c1]


def target_slice(tile: Tile, factor: int, full: tuple[int, int], shape: tuple[int, int]
                 ) -> tuple[slice, slice]:
    """Where a core's features sit in the whole picture's feature map of ``shape``."""
    top, bottom, left, right = tile.core
    r1 = shape[0] if bottom == full[0] else bottom // factor
    c1 = shape[1] if right == full[1] else right // factor
    return slice(top // factor, r1), slice(left // factor, c1)


def window_of(image: torch.Tensor, tile: Tile) -> torch.Tensor:
    top, bottom, left, right = tile.window
    return image[..., top:bottom, left:right]


def iter_tile_features(backbone: torch.nn.Module, image: torch.Tensor, layers: Sequence[str],
                       tiles: Sequence[Tile], factors: dict[str, int]
                       ) -> Iterator[tuple[Tile, dict[str, torch.Tensor]]]:
    """Each tile with its cores' features (no gradients)."""
    full = tuple(image.shape[-2:])
    with torch.no_grad():
        for tile in tiles:
            feats = backbone(backbone.preprocess(window_of(image, tile)), list(layers))
            yield tile, {name: core_of(feats[name], tile, factors[name], full)
                         for name in layers}


def tiled_grams(backbone: torch.nn.Module, image: torch.Tensor, layers: Sequence[str],
                tiles: Sequence[Tile], factors: dict[str, int]
                ) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Normalised Gram matrices of the whole picture and each layer's ``C*H*W``."""
    sums: dict[str, torch.Tensor] = {}
    sizes: dict[str, int] = dict.fromkeys(layers, 0)
    for _, cores in iter_tile_features(backbone, image, layers, tiles, factors):
        for name, core in cores.items():
            part = gram_sum(core)
            sums[name] = sums[name] + part if name in sums else part
            sizes[name] += core.shape[-3] * core.shape[-2] * core.shape[-1]
    return {name: sums[name] / sizes[name] for name in layers}, sizes


def tiled_features(backbone: torch.nn.Module, image: torch.Tensor, layers: Sequence[str],
                   tiles: Sequence[Tile], factors: dict[str, int]) -> dict[str, torch.Tensor]:
    """Whole-picture feature maps assembled from tiles (for content targets)."""
    full = tuple(image.shape[-2:])
    maps: dict[str, torch.Tensor] = {}
    pieces: dict[str, list[tuple[Tile, torch.Tensor]]] = {name: [] for name in layers}
    for tile, cores in iter_tile_features(backbone, image, layers, tiles, factors):
        for name, core in cores.items():
            pieces[name].append((tile, core))
    for name, parts in pieces.items():
        # The whole map's size is where the last (bottom-right) core ends.
        last_tile, last = parts[-1]
        h = last_tile.core[0] // factors[name] + last.shape[-2]
        w = last_tile.core[2] // factors[name] + last.shape[-1]
        out = last.new_empty(1, last.shape[-3], h, w)
        for tile, core in parts:
            rows, cols = target_slice(tile, factors[name], full, (h, w))
            out[..., rows, cols] = core
        maps[name] = out
    return maps
