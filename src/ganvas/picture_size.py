"""Picture sizes: square (``64``) or wide and tall (``128x64``, width x height).

A run's size is kept as its shorter side (``resolution``, which sets how deep the networks
are: a 128x64 network has the layers of a 64 px one) and its ``aspect`` ("2:1": width to
height, each a power of two, the shorter one 1). ``None`` is square.
"""

from __future__ import annotations

import re
from typing import Any

from ganvas.errors import GanvasError

MAX_RATIO = 4  # a wider picture leaves the shorter side too few pixels to learn from
FITS = ("crop", "pad")  # how a picture of another shape is made to fit (--fit)

_SIZE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")
_ASPECT = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def _power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def parse_size(text: str) -> tuple[int, str | None]:
    """``"128x64"`` -> ``(64, "2:1")``; ``"64"`` -> ``(64, None)``. One-line errors."""
    text = str(text).strip()
    if text.isdigit():
        return int(text), None
    match = _SIZE.match(text)
    if not match:
        raise GanvasError(f"--resolution {text!r}: give a size in pixels (64) or width x "
                          "height (128x64)")
    width, height = int(match[1]), int(match[2])
    if not (_power_of_two(width) and _power_of_two(height)):
        raise GanvasError(f"--resolution {text}: each side of a non-square size must be a "
                          "power of two (e.g. 128x64 or 64x256)")
    short = min(width, height)
    if width == height:
        return short, None
    if max(width, height) > MAX_RATIO * short:
        raise GanvasError(f"--resolution {text}: at most {MAX_RATIO} times as wide as tall or "
                          "as tall as wide (the shorter side sets how much a picture can show)")
    return short, f"{width // short}:{height // short}"


def aspect_factors(aspect: str | None) -> tuple[int, int]:
    """``"2:1"`` -> ``(2, 1)`` (width, height in units of the shorter side); None -> (1, 1).
    Raises GanvasError naming --resolution for anything else."""
    if aspect is None:
        return 1, 1
    match = _ASPECT.match(str(aspect))
    if not match:
        raise GanvasError(f"aspect {aspect!r}: expected W:H such as 2:1 (set it with "
                          "--resolution WIDTHxHEIGHT)")
    w, h = int(match[1]), int(match[2])
    if min(w, h) != 1 or not _power_of_two(max(w, h)):
        raise GanvasError(f"aspect {aspect}: one side must be 1 and the other a power of two "
                          "(2:1, 1:4, ...; set it with --resolution WIDTHxHEIGHT)")
    if max(w, h) > MAX_RATIO:
        raise GanvasError(f"--resolution with an aspect of {w}:{h}: at most {MAX_RATIO} times "
                          "as wide as tall or as tall as wide")
    return w, h


def picture_shape(resolution: int, aspect: str | None) -> tuple[int, int]:
    """``(height, width)`` of the pictures of a run."""
    w, h = aspect_factors(aspect)
    return resolution * h, resolution * w


def size_label(resolution: int, aspect: str | None) -> str:
    """``"64 px"`` or ``"128x64 px"`` (width x height), for messages."""
    if aspect is None or aspect_factors(aspect) == (1, 1):
        return f"{resolution} px"
    height, width = picture_shape(resolution, aspect)
    return f"{width}x{height} px"


def picture_fit(config: Any) -> dict[str, Any]:
    """``aspect`` and ``fit`` of a run's saved config (a dict), as ``load_images`` takes
    them: a non-square run's real pictures are shaped as its training pictures were."""
    config = config if isinstance(config, dict) else {}
    aspect, fit = config.get("aspect"), config.get("fit") or "crop"
    return {"aspect": aspect if isinstance(aspect, str) else None,
            "fit": fit if isinstance(fit, str) else "crop"}
