"""Turn one image (file or PIL image) into a square ``uint8`` array ``[C, H, W]``.

Everything here is safe to run in a worker process: :func:`decode_task` never raises, it
returns either the array or a short reason why the file could not be used.
"""

from __future__ import annotations

import os
import stat
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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


class SkipImage(Exception):
    """This file cannot be used; the message is a short human-readable reason."""


def _wide_to_l(img: Image.Image) -> Image.Image:
    """Scale a 16-bit, 32-bit integer or float single-channel image to 8-bit ``L``."""
    arr = np.asarray(img)
    if img.mode == "F":
        a = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if a.size and a.min() >= 0.0 and a.max() <= 1.0:
            a = a * 255.0
        out = np.clip(np.rint(a), 0, 255)
    elif img.mode.startswith("I;16"):
        a = np.clip(arr.astype(np.int64), 0, 65535)
        out = np.rint(a / 257.0)
    else:  # 32-bit signed integers: guess the range from the data
        a = arr.astype(np.int64)
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if lo >= 0 and hi <= 255:
            out = a
        elif lo >= 0 and hi <= 65535:
            out = np.rint(a / 257.0)
        elif hi > lo:
            out = np.rint((a - lo) * (255.0 / (hi - lo)))
        else:
            out = np.zeros_like(a)
    return Image.fromarray(np.ascontiguousarray(out, dtype=np.uint8), mode="L")


def _lab_to_rgb(img: Image.Image) -> Image.Image:
    try:
        from PIL import ImageCms

        transform = ImageCms.buildTransform(
            ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"
        )
        return ImageCms.applyTransform(img, transform)
    except Exception:  # no littlecms: keep the lightness channel
        return img.getchannel(0).convert("RGB")


def to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Convert any PIL mode to ``L`` (channels=1) or ``RGB`` (channels=3).

    Transparent pixels are composited on white; wide integer/float modes are rescaled.
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
        img = _wide_to_l(img)

    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba).convert("RGB")
    elif img.mode not in ("L", "RGB"):
        img = img.convert("RGB")  # CMYK, YCbCr, HSV, RGBX, ...

    want = "L" if channels == 1 else "RGB"
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


def to_array(img: Image.Image) -> np.ndarray:
    """``L`` or ``RGB`` PIL image -> contiguous ``uint8`` array ``[C, H, W]``."""
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr)


def process_image(img: Image.Image, resolution: int, channels: int) -> np.ndarray:
    """Mode conversion, resize and crop of an already-loaded image."""
    return to_array(fit_square(to_mode(img, channels), resolution))


def decode_file(path: str, resolution: int, channels: int, max_image_pixels: int) -> np.ndarray:
    """Decode one image file to ``uint8 [C, resolution, resolution]``.

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
                if img.format == "JPEG" and min(w, h) >= 2 * resolution:
                    draft_mode = "L" if channels == 1 and img.mode == "RGB" else img.mode
                    img.draft(draft_mode, (resolution, resolution))
                img.load()  # first frame for GIF/WebP/TIFF; raises on truncated data
                try:
                    oriented = ImageOps.exif_transpose(img)
                except Exception:  # unreadable EXIF: use the pixels as stored
                    oriented = img
                return process_image(oriented if oriented is not None else img,
                                     resolution, channels)
        finally:
            Image.MAX_IMAGE_PIXELS = old_limit


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
    text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def decode_task(
    task: tuple[str, int, int, int, bool],
) -> tuple[np.ndarray | None, str | None]:
    """Worker entry point: ``(path, resolution, channels, max_pixels, regular)``.

    Returns ``(array, None)`` or ``(None, reason)``; never raises for a bad file.
    """
    path, resolution, channels, max_image_pixels, regular = task
    if not regular:
        return None, "not a regular file"
    try:
        return decode_file(path, resolution, channels, max_image_pixels), None
    except Exception as exc:  # one hostile file must never stop the run
        return None, skip_reason(exc)
