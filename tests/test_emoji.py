"""Tests for the built-in ``emoji`` dataset (colour bitmaps of the Noto Color Emoji font)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ganvas.data.emoji as emoji_mod
from ganvas.data import BUILTIN_DATASETS, ImageSet, load_images
from ganvas.data.builtin import parse_builtin
from ganvas.errors import GanvasError

FONT = next((Path(p) for p in emoji_mod.EMOJI_FONT_PATHS
             if Path(os.path.expanduser(p)).is_file()), None)
needs_font = pytest.mark.skipif(
    FONT is None, reason="Noto Color Emoji font not installed (apt install fonts-noto-color-emoji)"
)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("GANVAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GANVAS_DATA", raising=False)
    monkeypatch.delenv("GANVAS_EMOJI_FONT", raising=False)


def load(logs=None, *, resolution=16, channels=3, spec="emoji", **kw) -> ImageSet:
    return load_images(spec, resolution=resolution, channels=channels, progress=False,
                       log=(logs.append if logs is not None else (lambda _m: None)), **kw)


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def one_line_error(**kw) -> str:
    with pytest.raises(GanvasError) as info:
        load(**kw)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------------------ registration


def test_registered_without_splits():
    assert "emoji" in BUILTIN_DATASETS
    assert parse_builtin("emoji") == ("emoji", None)
    assert parse_builtin(" Emoji ") == ("emoji", None)
    with pytest.raises(GanvasError, match="emoji dataset has no splits; use --data emoji"):
        parse_builtin("emoji:test")


# ------------------------------------------------------------------------------- real font


@pytest.fixture(scope="module")
def rgb32(tmp_path_factory) -> ImageSet:
    if FONT is None:
        pytest.skip("Noto Color Emoji font not installed (apt install fonts-noto-color-emoji)")
    return load(resolution=32, channels=3, cache_dir=tmp_path_factory.mktemp("cache"))


def check_real_set(s: ImageSet, channels: int) -> None:
    n = len(s)
    assert n > 3000 and s.skipped == 0
    assert s.images.shape == (n, channels, 32, 32) and s.images.dtype == np.uint8
    assert s.images.min() == 0 and s.images.max() == 255 and s.images.std() > 30
    assert "emoji" in s.source and f"{n:,} images" in s.source


def test_real_font_rgb(rgb32):
    check_real_set(rgb32, 3)
    assert np.abs(rgb32.images[:, 0].astype(int) - rgb32.images[:, 2]).mean() > 10  # colour


@needs_font
def test_real_font_greyscale(rgb32):
    grey = load(resolution=32, channels=1)
    check_real_set(grey, 1)
    assert len(grey) == len(rgb32)
    weights = np.array([0.299, 0.587, 0.114])[None, :, None, None]
    luma = (rgb32.images * weights).sum(axis=1)  # ITU-R 601, as Pillow converts to L
    assert np.abs(grey.images[:, 0] - luma).mean() < 2


def test_real_font_background_is_white(rgb32):
    corners = rgb32.images[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]  # [N, C, 4]
    white = (corners == 255).all(axis=(1, 2))
    # A few emoji reach the top/bottom edge, and the resampling filter reaches into that.
    assert white.mean() > 0.99 and corners.min() > 200
    assert (rgb32.images[:, :, 0, :] == 255).mean() > 0.9  # the top row is mostly padding


@needs_font
def test_real_font_bitmaps_are_sorted_pngs():
    bitmaps = emoji_mod.read_emoji_bitmaps(FONT)
    names = [name for name, _ in bitmaps]
    assert names == sorted(names) and len(set(names)) == len(names) > 3000
    assert all(data is not None and data[:8] == b"\x89PNG\r\n\x1a\n" for _, data in bitmaps)


def test_real_font_deterministic_and_cached(rgb32, tmp_path, monkeypatch):
    logs: list[str] = []
    first = load(logs, resolution=32, cache_dir=tmp_path / "c1")  # decoded again from scratch
    np.testing.assert_array_equal(first.images, rgb32.images)
    assert isinstance(first.images, np.memmap)

    def boom(*_a, **_k):
        raise AssertionError("decoded although the cache should have been used")

    monkeypatch.setattr(emoji_mod, "read_emoji_bitmaps", boom)
    again = load(logs, resolution=32, cache_dir=tmp_path / "c1")
    assert isinstance(again.images, np.memmap) and not again.images.flags.writeable
    np.testing.assert_array_equal(first.images, again.images)
    assert again.source == first.source and again.skipped == 0
    assert any(m.startswith("using cached dataset") for m in logs)
    with pytest.raises(AssertionError, match="decoded although"):
        load(cache_dir=tmp_path / "c1", resolution=8)  # other settings: a separate entry


def test_font_from_env(tmp_path, monkeypatch):
    font = tmp_path / "fonts" / "MyEmoji.ttf"
    font.parent.mkdir()
    font.write_bytes(b"stand-in")
    monkeypatch.setenv("GANVAS_EMOJI_FONT", str(font))
    assert emoji_mod.find_emoji_font() == font
    seen = []
    red = png(Image.new("RGBA", (136, 128), (255, 0, 0, 255)))
    monkeypatch.setattr(emoji_mod, "read_emoji_bitmaps", lambda p: seen.append(p) or [("a", red)])
    s = load(resolution=8)
    assert seen == [font] and str(font) in s.source and len(s) == 1


# ---------------------------------------------------------------------- preprocessing


def test_padded_to_square_on_white_not_cropped():
    img = Image.new("RGBA", (136, 128), (255, 0, 0, 255))  # opaque, edge to edge
    out = emoji_mod.decode_emoji(png(img), 136, 3)
    assert out.shape == (3, 136, 136) and out.dtype == np.uint8
    assert (out[:, :4] == 255).all() and (out[:, -4:] == 255).all()  # 4 rows of white padding
    middle = out[:, 4:-4]
    assert (middle[0] == 255).all() and (middle[1:] == 0).all()  # left/right edges kept: red
    grey = emoji_mod.decode_emoji(png(img), 136, 1)
    assert grey.shape == (1, 136, 136)
    assert (grey[0, :4] == 255).all() and (grey[0, 4:-4] == 76).all()  # luma of pure red


def test_transparency_composited_on_white():
    img = Image.new("RGBA", (136, 128), (0, 0, 0, 0))
    img.paste(Image.new("RGBA", (40, 40), (0, 0, 255, 255)), (48, 44))
    img.paste(Image.new("RGBA", (10, 10), (0, 0, 0, 128)), (0, 60))  # half-transparent black
    out = emoji_mod.decode_emoji(png(img), 136, 3)
    assert tuple(out[:, 0, 0]) == (255, 255, 255) and tuple(out[:, 70, 100]) == (255, 255, 255)
    assert tuple(out[:, 68, 68]) == (0, 0, 255)
    assert all(120 <= v <= 135 for v in out[:, 68, 4])
    small = emoji_mod.decode_emoji(png(img), 16, 1)
    assert small.shape == (1, 16, 16) and small[0, 0, 0] == 255


def test_palette_bitmap_with_alpha():
    """Most of the font's bitmaps are palette PNGs with per-entry alpha (tRNS)."""
    img = Image.new("RGBA", (136, 128), (0, 0, 0, 0))
    img.paste(Image.new("RGBA", (60, 60), (0, 255, 0, 255)), (38, 34))
    pal = img.quantize(4)
    assert pal.mode == "P"
    out = emoji_mod.decode_emoji(png(pal), 136, 3)
    assert tuple(out[:, 2, 2]) == (255, 255, 255) and tuple(out[:, 68, 68]) == (0, 255, 0)


def test_bad_bitmaps_are_skipped_and_counted(tmp_path, monkeypatch):
    font = tmp_path / "fake.ttf"
    font.write_bytes(b"only its size and mtime are used for the cache key")
    monkeypatch.setenv("GANVAS_EMOJI_FONT", str(font))
    good = png(Image.new("RGBA", (136, 128), (255, 0, 0, 255)))
    fake = [("a", good), ("b", b"\x89PNG\r\n\x1a\ngarbage"), ("c", None), ("d", good[:60]),
            ("e", good)]
    monkeypatch.setattr(emoji_mod, "read_emoji_bitmaps", lambda _p: fake)
    logs: list[str] = []
    s = load(logs, resolution=8)
    assert len(s) == 2 and s.skipped == 3 and "3 undecodable bitmap(s) skipped" in s.source
    assert tuple(s.images[0, :, 4, 4]) == (255, 0, 0)
    warning = next(m for m in logs if m.startswith("warning: skipped"))
    assert "skipped 3 of 5 emoji bitmaps" in warning
    assert "(first: b: not an image)" in warning
    cached = load(logs, resolution=8)
    assert cached.skipped == 3 and cached.source == s.source
    monkeypatch.setattr(emoji_mod, "read_emoji_bitmaps", lambda _p: [("x", b"nope")])
    font.write_bytes(b"changed: a new cache entry")
    with pytest.raises(GanvasError, match=r"none of its 1 colour bitmaps could be decoded"):
        load(resolution=8)


# ------------------------------------------------------------------------------- errors


def test_env_pointing_to_missing_file(tmp_path, monkeypatch):
    monkeypatch.setenv("GANVAS_EMOJI_FONT", str(tmp_path / "nope.ttf"))
    msg = one_line_error()
    assert "GANVAS_EMOJI_FONT" in msg and "nope.ttf" in msg and "no such file" in msg
    assert "apt install fonts-noto-color-emoji" in msg
    monkeypatch.setenv("GANVAS_EMOJI_FONT", str(tmp_path))
    assert "a folder" in one_line_error()


def test_no_font_anywhere(monkeypatch, tmp_path):
    monkeypatch.setattr(emoji_mod, "EMOJI_FONT_PATHS", (str(tmp_path / "none.ttf"),))
    msg = one_line_error()
    assert msg == (
        "--data emoji needs the Noto Color Emoji font: on Debian/Ubuntu run `apt install "
        "fonts-noto-color-emoji`, or set GANVAS_EMOJI_FONT to a NotoColorEmoji.ttf file"
    )


def test_not_a_font(tmp_path, monkeypatch):
    for name, data in [("text.ttf", b"this is not a font\n" * 10), ("empty.ttf", b"")]:
        bad = tmp_path / name
        bad.write_bytes(data)
        monkeypatch.setenv("GANVAS_EMOJI_FONT", str(bad))
        msg = one_line_error()
        assert msg.startswith(f"{bad}: not a font file") and "GANVAS_EMOJI_FONT" in msg
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def _plain_font(path: Path) -> Path:
    """A valid TrueType font with outlines only (no CBDT colour bitmaps)."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.ttGlyphPen import TTGlyphPen

    fb = FontBuilder(1000, isTTF=True)
    fb.setupGlyphOrder([".notdef", "A"])
    fb.setupCharacterMap({ord("A"): "A"})
    fb.setupGlyf({name: TTGlyphPen(None).glyph() for name in (".notdef", "A")})
    fb.setupHorizontalMetrics({".notdef": (500, 0), "A": (500, 0)})
    fb.setupHorizontalHeader(ascent=800, descent=-200)
    fb.setupNameTable({"familyName": "Plain", "styleName": "Regular"})
    fb.setupOS2()
    fb.setupPost()
    fb.save(str(path))
    return path


@needs_font
def test_truncated_font(tmp_path, monkeypatch):
    bad = tmp_path / "NotoColorEmoji.ttf"
    bad.write_bytes(FONT.read_bytes()[:5000])
    monkeypatch.setenv("GANVAS_EMOJI_FONT", str(bad))
    msg = one_line_error()
    assert msg.startswith(f"{bad}: cannot read its CBDT colour bitmaps") and "damaged" in msg


def test_font_without_colour_bitmaps(tmp_path, monkeypatch):
    pytest.importorskip("fontTools")
    monkeypatch.setenv("GANVAS_EMOJI_FONT", str(_plain_font(tmp_path / "Plain.ttf")))
    msg = one_line_error()
    assert "no colour bitmaps (no CBDT table" in msg and "fonts-noto-color-emoji" in msg


def test_without_fonttools(tmp_path, monkeypatch):
    import builtins

    font = tmp_path / "any.ttf"
    font.write_bytes(b"x")
    monkeypatch.setenv("GANVAS_EMOJI_FONT", str(font))
    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name.startswith("fontTools"):
            raise ImportError("no fontTools")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    msg = one_line_error()
    assert "pip install fonttools" in msg and "emoji" in msg
