"""``ganvas stylize --model STYLISER``: one forward pass per picture, or per folder of them.

A per-style network repaints in the style it learnt; an arbitrary one (``--arbitrary``)
in the ``--style`` pictures given here, by AdaIN or WCT, ``alpha`` of the way, blended with
``--style-blend`` and, with ``--preserve-colors``, in the photo's own colours."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from ganvas.data.preprocess import IMAGE_EXTENSIONS
from ganvas.errors import GanvasError
from ganvas.style.colors import (
    COLOR_MODES,
    gray_like,
    luminance,
    match_color_statistics,
    with_chroma_of,
)
from ganvas.style.images import (
    check_output_path,
    fitted_size,
    open_picture,
    resized,
    save_picture,
    to_image,
    to_tensor,
)
from ganvas.stylisers.arbitrary import METHODS, ArbitraryStyliser, stylise_arbitrary
from ganvas.stylisers.folder import load_styliser
from ganvas.stylisers.inference import stylise_tensor
from ganvas.stylisers.network import Styliser
from ganvas.utils.checks import whole_number
from ganvas.utils.device import resolve_device

Painter = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class ArbitraryStyle:
    """What an arbitrary styliser paints with: style pictures and how to use them."""

    pictures: Sequence[str | os.PathLike | Image.Image]
    blend: Sequence[float] | None = None
    method: str = "adain"
    alpha: float = 1.0
    preserve_colors: str | None = None
    style_size: int = 512  # longest side the style pictures are measured at

    def check(self) -> ArbitraryStyle:
        if not self.pictures:
            raise GanvasError("an arbitrary styliser needs --style PICTURE (any picture)")
        if self.method not in METHODS:
            raise GanvasError(f"--method {self.method!r}: use {' or '.join(METHODS)}")
        if not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha)
                and 0 <= self.alpha <= 1):
            raise GanvasError(f"--alpha must be a number from 0 to 1, got {self.alpha!r:.40}")
        if self.preserve_colors is not None and self.preserve_colors not in COLOR_MODES:
            raise GanvasError(f"--preserve-colors {self.preserve_colors!r}: use "
                              f"{' or '.join(COLOR_MODES)}")
        if self.blend is not None:
            if len(self.blend) != len(self.pictures):
                raise GanvasError(f"--style-blend has {len(self.blend)} weight(s) for "
                                  f"{len(self.pictures)} style picture(s); give one per picture")
            if any(not math.isfinite(w) or w < 0 for w in self.blend) or not any(
                    w > 0 for w in self.blend):
                raise GanvasError("--style-blend weights must be >= 0 and not all 0")
        whole_number(self.style_size, "--style-size", 16, 8192)
        return self


def make_painter(net: Styliser | ArbitraryStyliser, *, tile: int | None = 1024,
                 style: ArbitraryStyle | None = None, device: torch.device | None = None
                 ) -> Painter:
    """A function from a picture ``[1, 3, H, W]`` in [0, 1] to its repainted version, for
    either kind of network (the style pictures are read and measured once, here)."""
    device = device or torch.device("cpu")
    if isinstance(net, Styliser):
        if style is not None:
            raise GanvasError("--model applies the style the styliser was trained on; drop "
                              "--style (or drop --model to optimise for that style)")
        return lambda picture: stylise_tensor(net, picture.to(device), tile=tile).cpu()
    if style is None:
        raise GanvasError("this styliser paints any style: give --style PICTURE")
    style.check()
    pictures = []
    for source in style.pictures:
        img = open_picture(source, "style image", longest=style.style_size)
        pictures.append(to_tensor(resized(img, fitted_size(img.size, style.style_size))))
    measured: list = []

    def statistics(content: torch.Tensor) -> list:
        """The styles' feature statistics; recoloured or grayed to the photo's own first
        when its colours are kept (as ``ganvas stylize`` does), so measured per photo."""
        if style.preserve_colors == "histogram":
            chosen = [match_color_statistics(p, content) for p in pictures]
        elif style.preserve_colors == "luminance":
            chosen = [gray_like(luminance(p), content) for p in pictures]
        elif measured:
            return measured
        else:
            chosen = pictures
        found = [net.style_statistics(p.to(device), style.method) for p in chosen]
        if style.preserve_colors is None:
            measured[:] = found
        return found

    def paint(picture: torch.Tensor) -> torch.Tensor:
        gray = style.preserve_colors == "luminance"
        work = luminance(picture).expand(-1, 3, -1, -1).contiguous() if gray else picture
        out = stylise_arbitrary(net, work.to(device), statistics(picture), style.blend,
                                method=style.method, alpha=style.alpha, tile=tile).cpu()
        return with_chroma_of(out, picture) if gray else out

    return paint


def stylise_picture(paint: Painter, source: str | os.PathLike | Image.Image, *,
                    size: int | None = None, stroke_scale: float = 1.0) -> Image.Image:
    """The picture repainted by ``paint`` (see :func:`make_painter`), its longest side
    ``size`` (None: as it is). The network's strokes have a fixed size in pixels; with
    ``stroke_scale`` S it paints the picture at 1/S of that size and the result is enlarged,
    so the strokes come out S times larger."""
    picture = open_picture(source, "content image", longest=size)
    if size:
        picture = resized(picture, fitted_size(picture.size, size))
    work = picture
    if stroke_scale != 1:
        work = resized(picture, fitted_size(picture.size,
                                            max(16, round(max(picture.size) / stroke_scale))))
    painted = to_image(paint(to_tensor(work)))
    return painted if work is picture else resized(painted, picture.size)


def check_inference_options(size: int | None, tile: int | None, stroke_scale: float) -> None:
    if size is not None:
        whole_number(size, "--size", 16, 16384)
    if tile is not None and whole_number(tile, "--tile-size", 0, 16384) < 64:
        raise GanvasError("--tile-size must be 0 (never tile) or at least 64")
    if not (isinstance(stroke_scale, (int, float)) and math.isfinite(stroke_scale)
            and 0.1 <= stroke_scale <= 16):
        raise GanvasError(f"--stroke-scale must be a number from 0.1 to 16, got "
                          f"{stroke_scale!r:.40}")


def stylise_with_model(model: str | os.PathLike, content: str | os.PathLike,
                       output: str | os.PathLike, *, size: int | None = None,
                       tile: int | None = 1024, stroke_scale: float = 1.0,
                       device: str = "auto", style: ArbitraryStyle | None = None,
                       log=lambda message: print(message, file=sys.stderr)) -> list[Path]:
    """Repaint one picture (``output`` a file) or every picture of a folder (``output`` a
    folder, same names); returns the files written. ``style``: what an arbitrary
    styliser paints with."""
    check_inference_options(size, tile, stroke_scale)
    net, _ = load_styliser(model)
    target = resolve_device(device)
    paint = make_painter(net.to(target), tile=tile, style=style, device=target)
    content = Path(content)
    if not content.is_dir():
        path = check_output_path(output)
        return [save_picture(stylise_picture(paint, content, size=size,
                                             stroke_scale=stroke_scale), path)]
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
            image = stylise_picture(paint, picture, size=size, stroke_scale=stroke_scale)
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
