"""Conversions between generator output tensors and pictures on disk."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganvas.utils.files import atomic_write


def on_white(images: torch.Tensor) -> torch.Tensor:
    """Transparent pictures (``[N, 4, H, W]``, straight RGBA, floats in ``[-1, 1]``)
    composited on white, as RGB; others unchanged. What measures made for RGB pictures
    (FID's Inception network, the monitor's features) see of transparent ones."""
    if images.shape[1] != 4:
        return images
    alpha = (images[:, 3:].clamp(-1, 1) + 1) / 2
    return images[:, :3] * alpha + (1 - alpha)


def on_checkerboard(images: torch.Tensor, square: int = 8) -> torch.Tensor:
    """Transparent pictures over a light grey checkerboard (the usual way to show where
    they are transparent), as RGB; others unchanged."""
    if images.shape[1] != 4:
        return images
    h, w = images.shape[-2:]
    ys = torch.arange(h).div(square, rounding_mode="floor")
    xs = torch.arange(w).div(square, rounding_mode="floor")
    board = torch.where((ys[:, None] + xs[None, :]) % 2 == 0, 1.0, 0.6).to(images)
    alpha = (images[:, 3:].clamp(-1, 1) + 1) / 2
    return images[:, :3] * alpha + board * (1 - alpha)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[N, C, H, W]`` floats in ``[-1, 1]`` -> uint8 ``[N, H, W, C]`` (C is 1, 3 or 4)."""
    images = images.detach().float().cpu().clamp(-1, 1)
    array = ((images + 1) * 127.5).round().to(torch.uint8)
    return array.permute(0, 2, 3, 1).numpy()


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """``[N, C, H, W]`` floats in ``[-1, 1]`` -> PIL images (mode L, RGB or RGBA)."""
    return [_array_to_pil(a) for a in to_uint8(images)]


def _array_to_pil(array: np.ndarray) -> Image.Image:
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)  # uint8: L, RGB, RGBA


def make_grid(images: torch.Tensor, columns: int | None = None, padding: int = 2) -> Image.Image:
    """Tile ``[N, C, H, W]`` images in ``[-1, 1]`` into one picture, as square as possible.

    Args:
        images: the batch to tile (transparent ones are shown on a checkerboard).
        columns: images per row; default ``ceil(sqrt(N))``.
        padding: pixels of black between and around the tiles.
    """
    tiles = to_uint8(on_checkerboard(images.detach().float().cpu()))
    n, h, w, c = tiles.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    canvas = np.zeros(
        (rows * (h + padding) + padding, columns * (w + padding) + padding, c), dtype=np.uint8
    )
    for i, tile in enumerate(tiles):
        r, col = divmod(i, columns)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        canvas[y : y + h, x : x + w] = tile
    return _array_to_pil(canvas)


def labelled_grid(images: torch.Tensor, labels: list[str], columns: int | None = None,
                  padding: int = 2) -> Image.Image:
    """:func:`make_grid` with a strip of text under each tile (a seed, a class name)."""
    from PIL import ImageDraw, ImageFont

    tiles = make_grid(images, columns, padding).convert("RGB")
    n, _, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    strip = max(10, min(16, w // 4))  # room for one line of text, whatever the tile size
    longest = max((len(label) for label in labels), default=1)
    # the font shrinks (never below 6 px) rather than cut a label short
    font = ImageFont.load_default(size=max(6, min(strip - 2, int(w / (0.62 * longest)))))
    rows = math.ceil(n / columns)
    canvas = Image.new("RGB", (tiles.width, tiles.height + rows * strip))
    draw = ImageDraw.Draw(canvas)
    for r in range(rows):  # each row of tiles, then its labels below it
        y = padding + r * (h + padding)
        canvas.paste(tiles.crop((0, y - padding, tiles.width, y + h)), (0, y - padding + r * strip))
        for col in range(columns):
            i = r * columns + col
            if i < n:
                x = padding + col * (w + padding)
                draw.text((x + w / 2, y + h + r * strip + strip / 2), labels[i],
                          fill="white", font=font, anchor="mm")
    return canvas


def save_image(image: Image.Image, path: str | os.PathLike) -> Path:
    """Write a PNG atomically, so a crash never leaves half a picture behind."""
    path = Path(path)
    with atomic_write(path) as handle:
        image.save(handle, format="PNG")
    return path
