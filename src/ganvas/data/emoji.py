"""Built-in ``emoji`` dataset: the colour bitmaps of the Noto Color Emoji font.

The font (Debian/Ubuntu package ``fonts-noto-color-emoji``) stores each emoji as a PNG in
its ``CBDT`` table: about 3,900 pictures of 136x128 RGBA. Each is composited on white,
padded (not cropped) to a square on white, centred, and resized; glyphs are in the order
of their names, so the result is the same every time.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ganvas.data.cache import ArrayWriter, DatasetCache, make_key
from ganvas.data.imageset import ImageSet
from ganvas.data.preprocess import SkipImage, fit_square, skip_reason, to_array, to_mode
from ganvas.errors import GanvasError

Log = Callable[[str], None]

#: An explicit font file, searched before :data:`EMOJI_FONT_PATHS`.
EMOJI_FONT_ENV = "GANVAS_EMOJI_FONT"

#: Where distributions install the CBDT ``NotoColorEmoji.ttf``.
EMOJI_FONT_PATHS: tuple[str, ...] = (
    "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",  # Debian/Ubuntu fonts-noto-color-emoji
    "/usr/share/fonts/noto/NotoColorEmoji.ttf",  # Arch noto-fonts-emoji
    "/usr/share/fonts/google-noto-color-emoji/NotoColorEmoji.ttf",  # Fedora
    "/usr/share/fonts/google-noto-emoji/NotoColorEmoji.ttf",  # older Fedora
    "/usr/share/fonts/noto-color-emoji/NotoColorEmoji.ttf",
    "/usr/local/share/fonts/NotoColorEmoji.ttf",
    "~/.local/share/fonts/NotoColorEmoji.ttf",
    "~/.fonts/NotoColorEmoji.ttf",
)

#: Bigger bitmaps are skipped (a damaged or hostile font must not exhaust memory).
MAX_GLYPH_PIXELS = 4096 * 4096

#: Part of the cache key: change it when the preprocessing below changes.
_PIPELINE = "emoji-white-pad-square-v1"

_INSTALL_HINT = (
    "on Debian/Ubuntu run `apt install fonts-noto-color-emoji`, or set GANVAS_EMOJI_FONT "
    "to a NotoColorEmoji.ttf file"
)


def _reason(exc: BaseException, limit: int = 100) -> str:
    msg = " ".join(str(exc).split()) or type(exc).__name__
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


def find_emoji_font() -> Path:
    """``$GANVAS_EMOJI_FONT`` if set, else the first of :data:`EMOJI_FONT_PATHS` that exists."""
    env = os.environ.get(EMOJI_FONT_ENV)
    if env:
        path = Path(os.path.expanduser(env))
        if not path.is_file():
            what = "a folder" if path.is_dir() else "no such file"
            raise GanvasError(
                f"GANVAS_EMOJI_FONT={env!r}: {what}; set it to a NotoColorEmoji.ttf file, or "
                "unset it and on Debian/Ubuntu run `apt install fonts-noto-color-emoji`"
            )
        return path
    for candidate in EMOJI_FONT_PATHS:
        path = Path(os.path.expanduser(candidate))
        if path.is_file():
            return path
    raise GanvasError(f"--data emoji needs the Noto Color Emoji font: {_INSTALL_HINT}")


def read_emoji_bitmaps(path: Path) -> list[tuple[str, bytes | None]]:
    """``(glyph name, PNG bytes)`` of every bitmap in the font's largest CBDT strike, by name.

    The bytes are ``None`` for a glyph whose bitmap is not stored as a PNG.
    """
    try:
        from fontTools.ttLib import TTFont
    except ImportError:
        raise GanvasError(
            "--data emoji needs fontTools to read the emoji font: pip install fonttools "
            "(or pip install 'ganvas[datasets]')"
        ) from None
    hint = "set GANVAS_EMOJI_FONT to NotoColorEmoji.ttf (Debian/Ubuntu: fonts-noto-color-emoji)"
    try:
        font = TTFont(path, lazy=True)
    except OSError as exc:
        raise GanvasError(f"cannot read {path} ({exc.strerror or _reason(exc)}); {hint}") from None
    except Exception as exc:  # TTLibError, struct.error, ... on a file that is not a font
        raise GanvasError(f"{path}: not a font file ({_reason(exc)}); {hint}") from None
    try:
        if "CBDT" not in font or "CBLC" not in font:
            raise GanvasError(
                f"{path}: this font has no colour bitmaps (no CBDT table; COLRv1 and SVG emoji "
                f"fonts are not supported); {hint}"
            )
        try:
            strikes = font["CBDT"].strikeData
            sizes = [s.bitmapSizeTable.ppemY for s in font["CBLC"].strikes]
            glyphs: dict = {}
            if strikes:  # the largest strike (the first of equals)
                glyphs = strikes[max(range(len(strikes)),
                                     key=lambda i: sizes[i] if i < len(sizes) else 0)]
            bitmaps = [(name, getattr(glyphs[name], "imageData", None)) for name in sorted(glyphs)]
        except Exception as exc:  # a damaged table
            raise GanvasError(
                f"{path}: cannot read its CBDT colour bitmaps ({_reason(exc)}); the font file "
                f"may be damaged: reinstall it, or {hint}"
            ) from None
    finally:
        font.close()
    if not bitmaps:
        raise GanvasError(f"{path}: the font's CBDT table holds no bitmaps; {hint}")
    return bitmaps


def decode_emoji(png: bytes, resolution: int, channels: int) -> np.ndarray:
    """One emoji PNG -> ``uint8 [C, resolution, resolution]``: on white, padded to a square
    (with 4 channels, transparent where the emoji is, padded with transparency)."""
    with Image.open(io.BytesIO(png), formats=["PNG"]) as im:
        w, h = im.size
        if w < 1 or h < 1 or w * h > MAX_GLYPH_PIXELS:
            raise SkipImage(f"unusable size ({w}x{h} pixels)")
        im.load()
        img = to_mode(im, channels)
    if w != h:
        side = max(w, h)
        square = Image.new(img.mode, (side, side),
                           {1: 255, 3: (255, 255, 255), 4: (0, 0, 0, 0)}[channels])
        square.paste(img, ((side - w) // 2, (side - h) // 2))
        img = square
    return to_array(fit_square(img, resolution))


def load_emoji(
    *, resolution: int, channels: int, cache: DatasetCache, progress: bool, log: Log
) -> ImageSet:
    """The ``emoji`` dataset as ``uint8 [N, C, R, R]`` (cached after the first load)."""
    path = find_emoji_font()
    try:
        st = path.stat()
    except OSError as exc:
        raise GanvasError(f"cannot read {path} ({exc.strerror or _reason(exc)})") from None
    tail = (channels, resolution, resolution)
    family = ["builtin", "emoji", resolution, channels]
    key = make_key(f"emoji-{resolution}px-{channels}ch", family,
                   [str(path.resolve()), st.st_size, st.st_mtime_ns, _PIPELINE])
    cached = cache.load(key, tail)
    if cached is not None:
        images, meta = cached
        log(f"using cached dataset {cache.paths(key)[0]} ({len(images):,} images)")
        return ImageSet(images, str(meta.get("source", "emoji")), int(meta.get("skipped", 0)))

    bitmaps = read_emoji_bitmaps(path)
    writer = ArrayWriter(cache, key, (len(bitmaps), *tail), log)
    try:
        out = writer.array
        count = 0
        failures: list[str] = []
        for name, png in tqdm(bitmaps, desc="decoding emoji", unit="img", disable=not progress,
                              dynamic_ncols=True):
            try:
                if png is None:
                    raise SkipImage("not a PNG bitmap")
                out[count] = decode_emoji(png, resolution, channels)
            except Exception as exc:  # a damaged bitmap: skip it
                failures.append(f"{name}: {skip_reason(exc)}")
                continue
            count += 1
        if count == 0:
            raise GanvasError(
                f"{path}: none of its {len(bitmaps):,} colour bitmaps could be decoded "
                f"(first: {failures[0]}); the font file may be damaged: reinstall it"
            )
        note = ""
        if failures:
            note = f"; {len(failures):,} undecodable bitmap(s) skipped"
            log(f"warning: skipped {len(failures):,} of {len(bitmaps):,} emoji bitmaps that "
                f"could not be decoded (first: {failures[0]})")
        source = (f"emoji (Noto Color Emoji, {count:,} images from {path}, "
                  f"resized to {resolution}px{note})")
        images, _ = writer.finish(count, {"source": source, "skipped": len(failures),
                                          "resolution": resolution, "channels": channels,
                                          "failures": failures[:10]})
    except BaseException:
        writer.abort()
        raise
    return ImageSet(images, source, len(failures))
