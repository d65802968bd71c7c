"""``ganvas stylize --model STYLISER``: one forward pass per picture, or per folder of them."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import torch
from PIL import Image

from ganvas.data.preprocess import IMAGE_EXTENSIONS
from ganvas.errors import GanvasError
from ganvas.style.images import (
    check_output_path,
    fitted_size,
    open_picture,
    resized,
    save_picture,
    to_image,
    to_tensor,
)
from ganvas.stylisers.folder import load_styliser
from ganvas.stylisers.inference import stylise_tensor
from ganvas.stylisers.network import Styliser
from ganvas.utils.checks import whole_number
from ganvas.utils.device import resolve_device


def stylise_picture(net: Styliser, source: str | os.PathLike | Image.Image, *,
                    size: int | None = None, tile: int | None = 1024,
                    stroke_scale: float = 1.0, device: torch.device | None = None
                    ) -> Image.Image:
    """The picture repainted by ``net`` (on ``device``, default the CPU), its longest side
    ``size`` (None: as it is). The network's strokes have a fixed size in pixels; with
    ``stroke_scale`` S it paints the picture at 1/S of that size and the result is enlarged,
    so the strokes come out S times larger."""
    device = device or torch.device("cpu")
    picture = open_picture(source, "content image", longest=size)
    if size:
        picture = resized(picture, fitted_size(picture.size, size))
    work = picture
    if stroke_scale != 1:
        work = resized(picture, fitted_size(picture.size,
                                            max(16, round(max(picture.size) / stroke_scale))))
    painted = to_image(stylise_tensor(net, to_tensor(work).to(device), tile=tile))
    return painted if work is picture else resized(painted, picture.size)


def stylise_with_model(model: str | os.PathLike, content: str | os.PathLike,
                       output: str | os.PathLike, *, size: int | None = None,
                       tile: int | None = 1024, stroke_scale: float = 1.0,
                       device: str = "auto",
                       log=lambda message: print(message, file=sys.stderr)) -> list[Path]:
    """Repaint one picture (``output`` a file) or every picture of a folder (``output`` a
    folder, same names); returns the files written."""
    if size is not None:
        whole_number(size, "--size", 16, 16384)
    if tile is not None and whole_number(tile, "--tile-size", 0, 16384) < 64:
        raise GanvasError("--tile-size must be 0 (never tile) or at least 64")
    if not (isinstance(stroke_scale, (int, float)) and math.isfinite(stroke_scale)
            and 0.1 <= stroke_scale <= 16):
        raise GanvasError(f"--stroke-scale must be a number from 0.1 to 16, got "
                          f"{stroke_scale!r:.40}")
    net, _ = load_styliser(model)
    target = resolve_device(device)
    net = net.to(target)
    content = Path(content)
    if not content.is_dir():
        path = check_output_path(output)
        return [save_picture(stylise_picture(net, content, size=size, tile=tile,
                                             stroke_scale=stroke_scale, device=target), path)]
    pictures = sorted(p for p in content.iterdir()
                      if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not pictures:
        raise GanvasError(f"{content}: no pictures in this folder (looked for "
                          f"{', '.join(IMAGE_EXTENSIONS)})")
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise GanvasError(f"-o {out}: a file; with a folder of photos give a folder to "
                          "write into")
    out.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    for picture in pictures:
        try:
            image = stylise_picture(net, picture, size=size, tile=tile,
                                    stroke_scale=stroke_scale, device=target)
        except GanvasError as exc:  # one bad photo does not stop the others
            skipped.append(str(exc))
            continue
        name = picture.name if picture.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp") \
            else picture.stem + ".png"
        written.append(save_picture(image, out / name))
    if skipped:
        log(f"warning: skipped {len(skipped)} of {len(pictures)} pictures (first: "
            f"{skipped[0]})")
    if not written:
        raise GanvasError(f"{content}: none of its {len(pictures)} pictures could be read")
    return written
