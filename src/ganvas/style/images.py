"""Reading content/style pictures and writing results, with one clear line per bad file."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ganvas.data.preprocess import orientation_of, skip_reason, to_mode
from ganvas.errors import GanvasError
from ganvas.utils.files import atomic_write, stat_regular_file

# A picture larger than this is refused before decoding (a 16k x 16k photo is 268 M pixels).
MAX_PIXELS = 300_000_000
MIN_SIDE = 16  # below this the deepest VGG layers have no pixels left
SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP",
                ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}


def fitted_size(size: tuple[int, int], longest: int) -> tuple[int, int]:
    """``(width, height)`` with the longest side ``longest`` and the aspect ratio kept."""
    w, h = size
    scale = longest / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def open_picture(source: str | os.PathLike | Image.Image, role: str,
                 max_pixels: int = MAX_PIXELS, longest: int | None = None) -> Image.Image:
    """An RGB picture from a file or a PIL image, turned by its EXIF orientation.

    ``role`` ("content image", "style image", ...) starts every error message. When
    ``longest`` is given, JPEGs far larger than that are decoded at a reduced size (the
    result is resized afterwards anyway), which keeps huge photos cheap.
    """
    if isinstance(source, Image.Image):
        return _checked(_as_rgb(source), role, "the image")
    path = Path(source)
    where = f"{role} {path}"
    st = stat_regular_file(path, where, missing="no such file; check the path",
                           wanted="one picture file")
    if st.st_size == 0:
        raise GanvasError(f"{where}: the file is empty")
    old_limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Image.MAX_IMAGE_PIXELS = None  # checked below, with a clearer message
            with Image.open(path) as img:
                Image.MAX_IMAGE_PIXELS = max_pixels
                w, h = img.size
                if w * h > max_pixels:
                    raise GanvasError(f"{where}: too large ({w}x{h} pixels; the limit is "
                                      f"{max_pixels:,}); shrink it first")
                if longest and img.format == "JPEG" and max(w, h) >= 2 * longest:
                    img.draft(img.mode if img.mode != "CMYK" else "RGB",
                              fitted_size((w, h), longest))
                img.load()
                turned = ImageOps.exif_transpose(img) if orientation_of(img) != 1 else img
                return _checked(_as_rgb(turned), role, str(path))
    except GanvasError:
        raise
    except UnidentifiedImageError:
        raise GanvasError(f"{where}: not a picture Pillow can read (PNG, JPEG, WebP, TIFF, "
                          "BMP, GIF ...)") from None
    except OSError as exc:
        if isinstance(exc, PermissionError):
            raise GanvasError(f"{where}: permission denied") from None
        raise GanvasError(f"{where}: cannot decode it ({skip_reason(exc)})") from None
    except (Image.DecompressionBombError, ValueError, SyntaxError, MemoryError) as exc:
        raise GanvasError(f"{where}: cannot decode it ({skip_reason(exc)})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit


def _as_rgb(img: Image.Image) -> Image.Image:
    # Grayscale, palette, CMYK, 16-bit and float pictures become RGB; alpha goes on white.
    return to_mode(img, 3)


def _checked(img: Image.Image, role: str, where: str) -> Image.Image:
    w, h = img.size
    if min(w, h) < MIN_SIDE:
        raise GanvasError(f"{role} {where}: too small ({w}x{h}); use a picture at least "
                          f"{MIN_SIDE} pixels on each side")
    return img


def resized(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """High-quality resize (Lanczos when shrinking, bicubic when enlarging)."""
    if img.size == size:
        return img
    shrinking = size[0] < img.size[0]
    if shrinking:
        return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return img.resize(size, Image.Resampling.BICUBIC)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> ``[1, 3, H, W]`` float32 in ``[0, 1]``."""
    array = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)[None].float().div_(255.0).contiguous()


def to_image(tensor: torch.Tensor) -> Image.Image:
    """``[1, 3, H, W]`` (or ``[3, H, W]``) in ``[0, 1]`` -> RGB PIL image."""
    array = tensor.detach().reshape(3, *tensor.shape[-2:]).clamp(0, 1).mul(255).round()
    return Image.fromarray(array.to(torch.uint8).permute(1, 2, 0).cpu().numpy())


def check_output_path(path: str | os.PathLike) -> Path:
    """Refuse an unknown extension or an unwritable place before hours of work, not after."""
    path = Path(path)
    if path.suffix.lower() not in SAVE_FORMATS:
        raise GanvasError(f"output {path}: unknown picture type {path.suffix or '(none)'!r}; "
                          f"end the name with one of {', '.join(sorted(SAVE_FORMATS))}")
    if path.is_dir():
        raise GanvasError(f"output {path}: is a folder; give a file name such as "
                          f"{path / 'result.jpg'}")
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not os.access(parent, os.W_OK):
        raise GanvasError(f"output {path}: cannot write in {parent} (permission denied)")
    return path


def save_picture(img: Image.Image, path: str | os.PathLike) -> Path:
    """Write atomically in the format the extension names (JPEG at quality 95)."""
    path = check_output_path(path)
    fmt = SAVE_FORMATS[path.suffix.lower()]
    options = {"JPEG": {"quality": 95, "subsampling": 0}, "WEBP": {"quality": 95}}.get(fmt, {})
    with atomic_write(path) as handle:
        img.save(handle, format=fmt, **options)
    return path
