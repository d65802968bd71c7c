"""Turn one image (file or PIL image) into a square ``uint8`` array ``[C, H, W]``.

Everything here is safe to run in a worker process: :func:`decode_task` never raises, it
returns either the array or a short reason why the file could not be used.

Memory: a decoded picture can be hundreds of megabytes, so nothing here makes a full-size
copy of it. The centre square is cut out and converted strip by strip, and each strip is
shrunk (:meth:`PIL.Image.Image.reduce`) right away when the picture is much larger than
needed, so mode conversion, rescaling of 16/32-bit and float data, alpha compositing and
EXIF rotation only ever touch small arrays.
"""

from __future__ import annotations

import errno
import functools
import math
import os
import stat
import struct
import warnings
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")

# Modes whose samples are wider than 8 bits and must be rescaled, not clipped.
_WIDE_MODES = frozenset(
    {"I;16", "I;16B", "I;16L", "I;16N", "I;16S", "I;16BS", "I;16LS", "I", "I;32", "F"}
)
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_OPEN_FLAGS = (
    os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
#: Pixels converted at a time (a strip of rows); bounds the temporary arrays.
STRIP_PIXELS = 1 << 20
#: Pictures are first shrunk by an integer factor to no less than this many times the
#: target size (as Pillow's ``reducing_gap``; 3 is indistinguishable from fair resampling).
REDUCING_GAP = 3.0
#: Pixels sampled to estimate the value range of 32-bit integer pictures.
RANGE_SAMPLE = 1 << 20
#: Fraction of the darkest and of the brightest pixels ignored when guessing that range.
RANGE_OUTLIERS = 0.001
_ORIENTATION = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = frozenset({_TRANSPOSE[k] for k in (5, 6, 7, 8)})
# Turns after which the stored first row ends up at the far end of its new axis.
_REVERSES_ROWS = frozenset({_TRANSPOSE[k] for k in (3, 4, 6, 7)})

# (offset, gain): 8-bit value = clip(rint((sample - offset) * gain), 0, 255)
WideScale = tuple[float, float]
Box = tuple[float, float, float, float]


class SkipImage(Exception):
    """This file cannot be used; the message is a short human-readable reason."""


def _row_strips(height: int, width: int, multiple: int = 1) -> Iterator[tuple[int, int]]:
    """``(top, bottom)`` row ranges of about :data:`STRIP_PIXELS` pixels, each (but the last)
    a multiple of ``multiple`` rows high."""
    rows = max(1, STRIP_PIXELS // max(1, width)) // multiple * multiple or multiple
    for top in range(0, height, rows):
        yield top, min(top + rows, height)


def wide_scale(img: Image.Image) -> WideScale:
    """How to map a 16-bit, 32-bit integer or float picture to 8 bits (read in strips).

    16-bit: divided by 257. Float: ``[0, 1]`` data (judged by its finite values) is
    multiplied by 255, anything else is taken as 0..255. 32-bit integers: the range is
    guessed from robust bounds (the extreme :data:`RANGE_OUTLIERS` of the pixels ignored):
    0..255 data is kept, 0..65535 data divided by 257, anything else stretched to 0..255.
    """
    mode = img.mode
    w, h = img.size
    if mode.startswith("I;16"):
        return 0.0, 1.0 / 257.0
    if mode == "F":
        lo, hi = math.inf, -math.inf
        for top, bottom in _row_strips(h, w):
            a = np.asarray(img.crop((0, top, w, bottom)))
            a = a[np.isfinite(a)]
            if a.size:
                lo, hi = min(lo, float(a.min())), max(hi, float(a.max()))
        return (0.0, 255.0) if lo >= 0.0 and hi <= 1.0 else (0.0, 1.0)
    # 32-bit signed integers: guess the range from (a regular sample of) the data
    step = max(1, math.ceil(math.sqrt(w * h / RANGE_SAMPLE)))
    parts, lo_all, hi_all = [], math.inf, -math.inf
    for top, bottom in _row_strips(h, w, step):
        a = np.asarray(img.crop((0, top, w, bottom)))
        if a.size:
            lo_all, hi_all = min(lo_all, int(a.min())), max(hi_all, int(a.max()))
            parts.append(a[::step, ::step].ravel())
    if not parts:
        return 0.0, 0.0
    sample = np.concatenate(parts)
    lo = int(np.quantile(sample, RANGE_OUTLIERS, method="higher"))
    hi = int(np.quantile(sample, 1.0 - RANGE_OUTLIERS, method="lower"))
    if lo >= 0 and hi <= 255:
        return 0.0, 1.0
    if lo >= 0 and hi <= 65535:
        return 0.0, 1.0 / 257.0
    if hi <= lo:  # (almost) constant apart from outliers: stretch the full range instead
        lo, hi = lo_all, hi_all
    return (float(lo), 255.0 / (hi - lo)) if hi > lo else (0.0, 0.0)


def _wide_to_l(img: Image.Image, scale: WideScale | None = None) -> Image.Image:
    """Scale a 16-bit, 32-bit integer or float single-channel image to 8-bit ``L``.

    ``scale`` comes from :func:`wide_scale` (of the whole picture when ``img`` is a strip).
    NaN and -inf become black, +inf white.
    """
    offset, gain = wide_scale(img) if scale is None else scale
    a = np.asarray(img).astype(np.float64)
    a -= offset
    a *= gain
    np.nan_to_num(a, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
    np.rint(a, out=a)
    np.clip(a, 0, 255, out=a)
    return Image.fromarray(a.astype(np.uint8))  # 2-D uint8: mode L


@functools.lru_cache(maxsize=1)
def _lab_transform():
    from PIL import ImageCms

    return ImageCms.buildTransform(
        ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"
    )


def _lab_to_rgb(img: Image.Image) -> Image.Image:
    try:
        from PIL import ImageCms

        return ImageCms.applyTransform(img, _lab_transform())
    except Exception:  # no littlecms: keep the lightness channel
        return img.getchannel(0).convert("RGB")


def mode_for(channels: int) -> str:
    """The PIL mode pictures are converted to for ``channels``: ``L``, ``RGB``, or for 4
    ``RGBa`` (colours premultiplied by alpha, so reducing and resizing never bleed the
    colour of transparent pixels into their neighbours; :func:`to_array` undoes it)."""
    return {1: "L", 3: "RGB", 4: "RGBa"}[channels]


def to_mode(img: Image.Image, channels: int, scale: WideScale | None = None) -> Image.Image:
    """Convert any PIL mode to ``L`` (channels=1), ``RGB`` (channels=3) or premultiplied
    ``RGBa`` (channels=4: the transparency kept; pictures without any are opaque).

    With 1 or 3 channels transparent pixels are composited on white; wide integer/float
    modes are rescaled (with ``scale`` if given, see :func:`wide_scale`). Works pixel by
    pixel, so converting strips of a picture gives the same result as converting the whole
    of it.
    """
    mode = img.mode
    if mode == "1":
        img = img.convert("L")
    elif mode == "La":
        img = img.convert("LA")
    elif mode in ("P", "L", "RGB") and "transparency" in img.info:
        img = img.convert("RGBA")
    elif mode == "P":
        img = img.convert("RGB")
    elif mode == "LAB":
        img = _lab_to_rgb(img)
    elif mode in _WIDE_MODES:
        img = _wide_to_l(img, scale)

    if channels == 4:  # keep the transparency, premultiplied
        if img.mode not in _ALPHA_MODES and img.mode not in ("L", "RGB"):
            img = img.convert("RGB")  # CMYK, YCbCr, HSV, RGBX, ...
        return img if img.mode == "RGBa" else img.convert("RGBA").convert("RGBa")
    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba).convert("RGB")
    elif img.mode not in ("L", "RGB"):
        img = img.convert("RGB")  # CMYK, YCbCr, HSV, RGBX, ...

    want = mode_for(channels)
    return img if img.mode == want else img.convert(want)


def fit_square(img: Image.Image, resolution: int) -> Image.Image:
    """Resize so the shorter side is ``resolution``, then centre-crop to a square."""
    w, h = img.size
    if (w, h) == (resolution, resolution):
        return img
    side = min(w, h)
    box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    if side > resolution:
        gap = 3.0 if side >= 3 * resolution else None
        return img.resize(
            (resolution, resolution), Image.Resampling.LANCZOS, box=box, reducing_gap=gap
        )
    return img.resize((resolution, resolution), Image.Resampling.BICUBIC, box=box)


def _transpose_box(box: Box, size: tuple[int, int], method: Image.Transpose) -> Box:
    """Where ``box`` of an image of ``size`` ends up after ``transpose(method)``."""
    w, h = size
    x0, y0, x1, y1 = box
    t = Image.Transpose
    return {
        t.FLIP_LEFT_RIGHT: (w - x1, y0, w - x0, y1),
        t.FLIP_TOP_BOTTOM: (x0, h - y1, x1, h - y0),
        t.ROTATE_180: (w - x1, h - y1, w - x0, h - y0),
        t.TRANSPOSE: (y0, x0, y1, x1),
        t.ROTATE_90: (y0, w - x1, y1, w - x0),
        t.ROTATE_270: (h - y1, x0, h - y0, x1),
        t.TRANSVERSE: (h - y1, w - x1, h - y0, w - x0),
    }[method]


def fitted_box(w: int, h: int, size: tuple[int, int], fit: str
               ) -> tuple[tuple[float, float, float, float], tuple[int, int]]:
    """The part of a ``w`` x ``h`` picture that fills ``size`` (width, height), and the
    size it is resized to: ``crop`` the largest centred box of the size's shape, resized
    to ``size``; ``pad`` the whole picture, resized to fit inside ``size``."""
    tw, th = size
    if fit == "pad":
        scale = min(tw / w, th / h)
        return (0.0, 0.0, float(w), float(h)), (max(1, min(tw, round(w * scale))),
                                                 max(1, min(th, round(h * scale))))
    bw, bh = (w, w * th / tw) if w * th <= h * tw else (h * tw / th, h)
    return ((w - bw) / 2, (h - bh) / 2, (w + bw) / 2, (h + bh) / 2), (tw, th)


def shrink(
    img: Image.Image, resolution: int, channels: int, orientation: int = 1,
    size: tuple[int, int] | None = None, fit: str = "crop",
) -> tuple[Image.Image, Box]:
    """The part of ``img`` that :func:`fit_square` needs, converted to ``L``/``RGB``.

    Returns the (possibly reduced) image, turned by the EXIF ``orientation``, and the
    centre square in its coordinates to resize to ``resolution`` (or, with ``size``, the
    box that :func:`fitted_box` picks for a ``size`` picture). As in ``fit_square``
    (Pillow's ``reducing_gap=3``), a picture at least ``2 * REDUCING_GAP`` times larger
    than ``resolution`` is first reduced by an integer factor (box average, after alpha is
    composited on white), and only the centre square plus the margin that the resampling
    filter reads is kept. Converts about :data:`STRIP_PIXELS` at a time, so no full-size
    copy of the picture is made; the result is the same as with full-size copies.
    """
    w, h = img.size
    if size is None:
        side = min(w, h)
        box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
        target = resolution
    else:  # (the square case through here gives the same box and scale)
        # the box in the stored picture's coordinates, of the shape the turned one needs
        turns = _TRANSPOSE.get(orientation) in _SWAPS_AXES
        box, (target, _) = fitted_box(w, h, size[::-1] if turns else size, fit)
        side = box[2] - box[0]
    scale = side / target
    factor = int(scale / REDUCING_GAP) if side >= REDUCING_GAP * target else 1
    if factor > 1:  # exactly the box Pillow's resize(reducing_gap=...) would reduce
        support = (3.0 - 0.5) * scale  # Lanczos
        region = (max(0, int(box[0] - support)), max(0, int(box[1] - support)),
                  min(w, math.ceil(box[2] + support)), min(h, math.ceil(box[3] + support)))
    else:
        margin = math.ceil(3.0 * max(1.0, scale)) + 2  # >= the filter's support
        region = (max(0, math.floor(box[0]) - margin), max(0, math.floor(box[1]) - margin),
                  min(w, math.ceil(box[2]) + margin), min(h, math.ceil(box[3]) + margin))
    left, top, right, bottom = region
    cw, ch = right - left, bottom - top
    rel: Box = (box[0] - left, box[1] - top, box[2] - left, box[3] - top)
    method = _TRANSPOSE.get(orientation)
    if method is not None:
        rel = _transpose_box(rel, (cw, ch), method)
    rel = (rel[0] / factor, rel[1] / factor, rel[2] / factor, rel[3] / factor)

    want = mode_for(channels)
    if factor == 1 and region == (0, 0, w, h) and img.mode == want and (
        "transparency" not in img.info
    ):
        return (img if method is None else img.transpose(method)), rel
    turned = (ch, cw) if method in _SWAPS_AXES else (cw, ch)
    out = Image.new(want, (-(-turned[0] // factor), -(-turned[1] // factor)))
    wide = wide_scale(img) if img.mode in _WIDE_MODES else None
    # Reduce in blocks aligned where the turned picture starts (as reducing it would).
    flip_rows = method in _REVERSES_ROWS
    for d0, d1 in _row_strips(ch, cw, factor):
        y0, y1 = (ch - d1, ch - d0) if flip_rows else (d0, d1)
        strip = to_mode(img.crop((left, top + y0, right, top + y1)), channels, wide)
        at: Box = (0, y0, cw, y1)
        if method is not None:
            at = _transpose_box(at, (cw, ch), method)
            strip = strip.transpose(method)
        if factor > 1:
            strip = strip.reduce(factor)
        out.paste(strip, (int(at[0]) // factor, int(at[1]) // factor))
    return out, rel


def orientation_of(img: Image.Image) -> int:
    """The EXIF orientation (1..8) of a loaded image; 1 when absent or unreadable."""
    try:
        value = img.getexif().get(_ORIENTATION, 1)
    except Exception:  # unreadable EXIF: use the pixels as stored
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def process_image(
    img: Image.Image, resolution: int, channels: int, orientation: int = 1,
    aspect: tuple[int, int] = (1, 1), fit: str = "crop",
) -> np.ndarray:
    """Mode conversion, EXIF ``orientation``, resize and crop of an already-loaded image.

    Same result as ``fit_square(to_mode(turned img))``, without full-size copies. A
    non-square ``aspect`` (width, height in units of ``resolution``) gives a picture of
    that shape: the centre cropped to it, or with ``fit="pad"`` the whole picture inside
    it, the margins filled with its border's average colour (transparent with alpha).
    """
    if tuple(aspect) == (1, 1):
        small, box = shrink(img, resolution, channels, orientation)
        size = inner = (resolution, resolution)
    else:
        size = (resolution * aspect[0], resolution * aspect[1])
        turned = img.size[::-1] if _TRANSPOSE.get(orientation) in _SWAPS_AXES else img.size
        inner = fitted_box(*turned, size, fit)[1]
        small, box = shrink(img, resolution, channels, orientation, size, fit)
    if small.size == inner and box == (0, 0, *inner):
        resized = small
    else:
        side = box[2] - box[0]
        resample = Image.Resampling.LANCZOS if side > inner[0] else Image.Resampling.BICUBIC
        resized = small.resize(inner, resample, box=box)
    if inner == size:
        return to_array(resized)
    return to_array(padded(resized, size))


def padded(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``img`` centred on a ``size`` canvas of its border's average colour (transparent for
    a picture with alpha): margins that continue the picture's edge are easier for a
    generator to draw, and to ignore, than bars of a colour the picture never had."""
    w, h = img.size
    if img.mode == "RGBa":
        fill: Any = (0, 0, 0, 0)
    else:
        a = np.asarray(img, dtype=np.float64)
        border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
        fill = tuple(int(round(v)) for v in np.atleast_1d(border.mean(0)))
        fill = fill[0] if img.mode == "L" else fill
    canvas = Image.new(img.mode, size, fill)
    canvas.paste(img, ((size[0] - w) // 2, (size[1] - h) // 2))
    return canvas


def to_array(img: Image.Image) -> np.ndarray:
    """``L``, ``RGB`` or ``RGBa``/``RGBA`` PIL image -> contiguous ``uint8`` array
    ``[C, H, W]`` (4 channels: straight, not premultiplied, colours and alpha)."""
    if img.mode == "RGBa":
        img = img.convert("RGBA")
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr)


def decode_file(path: str, resolution: int, channels: int, max_image_pixels: int,
                aspect: tuple[int, int] = (1, 1), fit: str = "crop") -> np.ndarray:
    """Decode one image file to ``uint8 [C, resolution, resolution]`` (``[C, H, W]`` of a
    non-square ``aspect``, fitted by ``fit``: see :func:`process_image`).

    Raises :class:`SkipImage` (or any other exception) when the file cannot be used.
    """
    fd = os.open(path, _OPEN_FLAGS)  # O_NONBLOCK: a FIFO swapped in after the scan can't hang
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SkipImage("not a regular file")
        if st.st_size == 0:
            raise SkipImage("empty file")
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise

    old_limit = Image.MAX_IMAGE_PIXELS
    with fh, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            # Opening only parses the header; check the size ourselves (for a clear reason),
            # then let Pillow's own guard use our limit for anything it checks later.
            Image.MAX_IMAGE_PIXELS = None
            with Image.open(fh) as img:
                Image.MAX_IMAGE_PIXELS = max_image_pixels
                w, h = img.size
                if w * h > max_image_pixels:
                    raise SkipImage(f"too large ({w}x{h} pixels; limit {max_image_pixels:,})")
                if w < 1 or h < 1:
                    raise SkipImage(f"empty image ({w}x{h})")
                want = (resolution * aspect[0], resolution * aspect[1])
                if img.format == "JPEG" and min(w / want[0], h / want[1]) >= 2:
                    draft_mode = "L" if channels == 1 and img.mode == "RGB" else img.mode
                    img.draft(draft_mode, want)
                img.load()  # first frame for GIF/WebP/TIFF; raises on truncated data
                # Rotate after shrinking: exif_transpose would copy the full-size picture.
                return process_image(img, resolution, channels, orientation_of(img),
                                     aspect, fit)
        finally:
            Image.MAX_IMAGE_PIXELS = old_limit


# Pillow's wording for undecodable data (WebP: "could not create decoder object", PNG:
# "unrecognized data stream contents", "broken PNG file", ...).
_CORRUPT_HINTS = (
    "decoder", "decoding", "data stream", "reading image file", "next frame", "broken",
    "corrupt", "invalid", "unexpected end", "premature end", "decompress",
)


def skip_reason(exc: BaseException) -> str:
    """A short reason for a failed decode, for the one-line warning."""
    if isinstance(exc, SkipImage):
        return str(exc)
    if isinstance(exc, UnidentifiedImageError):
        return "not an image"
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return "too large (decompression bomb guard)"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "file disappeared"
    if isinstance(exc, MemoryError):
        return "out of memory"
    msg = " ".join(str(exc).split())
    if "truncated" in msg.lower():
        return "truncated"
    if isinstance(exc, (EOFError, zlib.error, struct.error)):
        return "corrupt or truncated"
    if isinstance(exc, OSError) and exc.errno not in (None, 0):
        return exc.strerror or errno.errorcode.get(exc.errno, "I/O error")  # a real I/O error
    if isinstance(exc, (OSError, SyntaxError, ValueError)) and any(
        hint in msg.lower() for hint in _CORRUPT_HINTS
    ):
        return "corrupt or truncated"
    text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def decode_task(
    task: tuple[str, int, int, int, bool, tuple[int, int], str],
) -> tuple[np.ndarray | None, str | None]:
    """Worker entry point: ``(path, resolution, channels, max_pixels, regular, aspect,
    fit)``.

    Returns ``(array, None)`` or ``(None, reason)``; never raises for a bad file.
    """
    path, resolution, channels, max_image_pixels, regular, aspect, fit = task
    if not regular:
        return None, "not a regular file"
    try:
        return decode_file(path, resolution, channels, max_image_pixels, aspect, fit), None
    except Exception as exc:  # one hostile file must never stop the run
        return None, skip_reason(exc)
