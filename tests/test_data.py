"""Tests for ganvas.data: folder pipeline, preprocessing, cache, built-in datasets, IDX."""

from __future__ import annotations

import concurrent.futures
import errno
import gzip
import hashlib
import io
import os
import shutil
import struct
import sys
import threading
import tracemalloc
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ganvas.data.builtin as builtin_mod
import ganvas.data.folder as folder_mod
import ganvas.data.preprocess as pre
from ganvas.data import BUILTIN_DATASETS, ImageSet, load_images
from ganvas.data.idx import read_idx
from ganvas.errors import GanvasError

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("GANVAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GANVAS_DATA", raising=False)


@pytest.fixture
def logs():
    return []


def load(spec, logs=None, *, resolution=8, channels=3, **kw) -> ImageSet:
    kw.setdefault("workers", 1)
    return load_images(
        str(spec), resolution=resolution, channels=channels, progress=False,
        log=(logs.append if logs is not None else (lambda _m: None)), **kw,
    )


def solid(path: Path, color, size=(8, 8), mode="RGB", **save) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, **save)
    return path


def noise_jpeg(path: Path, size=(64, 64), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
        path, quality=95
    )
    return path


def px(s: ImageSet, i: int = 0, y: int = 0, x: int = 0) -> tuple[int, ...]:
    return tuple(int(v) for v in s.images[i, :, y, x])


# ------------------------------------------------------------------------ basic folder loading


def test_shapes_dtype_range(tmp_path, logs):
    d = tmp_path / "imgs"
    rng = np.random.default_rng(1)
    for i, size in enumerate([(20, 20), (33, 17), (17, 40), (8, 8), (64, 48)]):
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        d.mkdir(exist_ok=True)
        Image.fromarray(arr).save(d / f"{i}.png")
    (d / "notes.txt").write_text("not an image")
    s = load(d, logs, resolution=16, channels=3)
    assert isinstance(s, ImageSet)
    assert s.images.shape == (5, 3, 16, 16) and s.images.dtype == np.uint8
    assert len(s) == 5 and s.skipped == 0
    assert 0 <= s.images.min() and s.images.max() <= 255 and s.images.std() > 20
    assert "folder" in s.source and "5 images" in s.source
    assert any("ignored 1 file" in m for m in logs)
    g = load(d, resolution=16, channels=1)
    assert g.images.shape == (5, 1, 16, 16)


def test_sorted_order_nested_and_hidden(tmp_path):
    d = tmp_path / "d"
    solid(d / "b.png", 20, mode="L")
    solid(d / "a" / "z.png", 40, mode="L")
    solid(d / "a" / "b" / "c.PNG", 60, mode="L")
    solid(d / "c.png", 80, mode="L")
    solid(d / "._c.png", 99, mode="L")  # macOS resource fork: hidden
    solid(d / ".hidden" / "x.png", 99, mode="L")
    s = load(d, channels=1)
    assert [int(v) for v in s.images[:, 0, 4, 4]] == [60, 40, 20, 80]
    again = load(d, channels=1, cache_dir=tmp_path / "other-cache")
    np.testing.assert_array_equal(s.images, again.images)


def test_rgba_composited_on_white(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    img = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    for x in range(4):
        for y in range(8):
            img.putpixel((x, y), (255, 0, 0, 255))
    img.putpixel((6, 6), (0, 0, 0, 128))  # half-transparent black -> mid grey
    img.save(d / "a.png")
    s = load(d, resolution=8)
    assert px(s, 0, 0, 0) == RED
    assert px(s, 0, 0, 7) == (255, 255, 255)  # fully transparent -> white
    assert all(120 <= v <= 135 for v in px(s, 0, 6, 6))
    g = load(d, resolution=8, channels=1)
    assert px(g, 0, 0, 7) == (255,)


def test_palette_with_transparency(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    img = Image.new("P", (8, 8), 0)
    img.putpalette([0, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    for y in range(4):
        for x in range(8):
            img.putpixel((x, y), 1)
    img.info["transparency"] = 0
    img.save(d / "p.png", transparency=0)
    s = load(d)
    assert px(s, 0, 0, 0) == BLUE
    assert px(s, 0, 7, 0) == (255, 255, 255)


def test_la_l_cmyk_1_and_float(tmp_path):
    d = tmp_path / "d"
    solid(d / "1_la.png", (100, 255), mode="LA")
    solid(d / "2_la_clear.png", (0, 0), mode="LA")
    solid(d / "3_l.png", 77, mode="L")
    solid(d / "4_cmyk.tif", (255, 0, 0, 0), mode="CMYK")  # cyan
    solid(d / "5_bw.bmp", 1, mode="1")
    Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32)).save(d / "6_float.tif")
    Image.fromarray(np.full((8, 8), 300.0, dtype=np.float32)).save(d / "7_float_big.tif")
    s = load(d, channels=3)
    assert px(s, 0) == (100, 100, 100)
    assert px(s, 1) == (255, 255, 255)
    assert px(s, 2) == (77, 77, 77)
    assert px(s, 3) == (0, 255, 255)
    assert px(s, 4) == (255, 255, 255)
    assert px(s, 5) in {(127, 127, 127), (128, 128, 128)}
    assert px(s, 6) == (255, 255, 255)
    g = load(d, channels=1)
    assert g.images.shape == (7, 1, 8, 8)
    assert px(g, 0) == (100,) and px(g, 2) == (77,)


def test_16bit_png_is_scaled(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    arr = np.zeros((8, 8), dtype=np.uint16)
    arr[:, :3] = 65535
    arr[:, 3:6] = 32768
    img = Image.fromarray(arr)
    assert img.mode.startswith("I;16")
    img.save(d / "deep.png")
    assert Image.open(d / "deep.png").mode in {"I;16", "I", "I;16B"}
    for channels in (1, 3):
        s = load(d, channels=channels, cache_dir=tmp_path / f"c{channels}")
        assert s.images.shape == (1, channels, 8, 8)
        assert set(px(s, 0, 0, 0)) == {255}
        assert set(px(s, 0, 0, 4)) == {128}
        assert set(px(s, 0, 0, 7)) == {0}


def test_exif_orientation_applied(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    img = Image.new("RGB", (32, 16), BLUE)
    img.paste(Image.new("RGB", (16, 16), RED), (0, 0))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise: left half ends up on top
    img.save(d / "rot.jpg", exif=exif, quality=95)
    img.save(d / "straight.jpg", quality=95)
    s = load(d, resolution=16)
    rot, straight = 0, 1
    top, bottom = px(s, rot, 2, 8), px(s, rot, 13, 8)
    assert top[0] > 200 and top[2] < 60  # red on top
    assert bottom[2] > 200 and bottom[0] < 60  # blue at the bottom
    left, right = px(s, straight, 8, 2), px(s, straight, 8, 13)
    assert left[0] > 200 and right[2] > 200  # without the tag: left/right halves


def test_gif_first_frame_and_other_formats(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    frames = [Image.new("RGB", (8, 8), RED), Image.new("RGB", (8, 8), BLUE)]
    frames[0].save(d / "a.gif", save_all=True, append_images=frames[1:], duration=100)
    solid(d / "b.webp", GREEN, lossless=True)
    solid(d / "c.bmp", BLUE)
    solid(d / "d.tiff", RED)
    solid(d / "e.TIF", GREEN)
    solid(d / "f.JPEG", (200, 200, 200), quality=95)
    s = load(d)
    assert s.images.shape == (6, 3, 8, 8)
    assert px(s, 0) == RED
    assert px(s, 1) == GREEN and px(s, 2) == BLUE and px(s, 3) == RED and px(s, 4) == GREEN
    assert all(abs(v - 200) <= 3 for v in px(s, 5))


def test_channels_1_vs_3(tmp_path):
    d = tmp_path / "d"
    solid(d / "red.png", RED)
    solid(d / "grey.png", 90, mode="L")
    c1, c3 = load(d, channels=1), load(d, channels=3)
    assert c1.images.shape == (2, 1, 8, 8) and c3.images.shape == (2, 3, 8, 8)
    assert px(c1, 1) == (76,)  # ITU-R 601 luma of pure red
    assert px(c3, 0) == (90, 90, 90)


def test_non_square_centre_crop(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    wide = Image.new("RGB", (60, 20), RED)
    wide.paste(Image.new("RGB", (20, 20), GREEN), (20, 0))
    wide.paste(Image.new("RGB", (20, 20), BLUE), (40, 0))
    wide.save(d / "a_wide.png")
    tall = wide.transpose(Image.Transpose.ROTATE_90)
    tall.save(d / "b_tall.png")
    s = load(d, resolution=10)
    assert s.images.shape == (2, 3, 10, 10)
    for i in range(2):  # only the green centre survives (edges may bleed a little)
        img = s.images[i].astype(int)
        assert (img[1] >= 220).all() and (img[0] <= 35).all() and (img[2] <= 35).all()
        inner = img[:, 2:8, 2:8]
        assert (inner[1] >= 250).all() and (inner[0] <= 5).all() and (inner[2] <= 5).all()


def test_bad_files_are_skipped_and_counted(tmp_path, logs):
    d = tmp_path / "d"
    solid(d / "good1.png", RED)
    solid(d / "good2.png", BLUE)
    good = noise_jpeg(d / "tmp.jpg").read_bytes()
    (d / "tmp.jpg").unlink()
    (d / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (d / "corrupt.jpg").write_bytes(good[:200] + os.urandom(3000))
    (d / "empty.png").write_bytes(b"")
    (d / "text.png").write_text("this is not a picture\n")
    s = load(d, logs)
    assert len(s) == 2 and s.skipped == 4
    assert px(s, 0) == RED and px(s, 1) == BLUE
    warnings = [m for m in logs if "skipped" in m]
    assert len(warnings) == 1
    msg = warnings[0]
    assert "skipped 4 of 6 files" in msg and "\n" not in msg
    assert "empty.png: empty file" in msg and "corrupt.jpg" in msg


def test_truncated_jpeg_reason(tmp_path, logs):
    d = tmp_path / "d"
    d.mkdir()
    good = noise_jpeg(d / "x.jpg").read_bytes()
    (d / "x.jpg").write_bytes(good[: len(good) // 2])
    solid(d / "y.png", RED)
    s = load(d, logs)
    assert s.skipped == 1 and "x.jpg: truncated" in " ".join(logs)


def test_decompression_bomb_skipped(tmp_path, logs):
    d = tmp_path / "d"
    solid(d / "big.png", RED, size=(200, 200))  # 40,000 pixels
    solid(d / "small.png", BLUE, size=(50, 50))  # 2,500 pixels
    s = load(d, logs, max_image_pixels=10_000)
    assert len(s) == 1 and s.skipped == 1 and px(s, 0) == BLUE
    assert "big.png: too large (200x200 pixels; limit 10,000)" in " ".join(logs)
    s = load(d, logs, max_image_pixels=30_000)  # over the limit but not Pillow's 2x "bomb"
    assert len(s) == 1 and "big.png: too large (200x200 pixels" in " ".join(logs)


def test_symlink_loop_and_broken_link(tmp_path):
    d = tmp_path / "d"
    solid(d / "a.png", RED)
    solid(d / "sub" / "b.png", BLUE)
    os.symlink(d, d / "sub" / "loop")  # link to an ancestor
    os.symlink(d / "sub", d / "again")  # a second path to an already-seen folder
    os.symlink(tmp_path / "missing.png", d / "broken.png")
    os.symlink(d / "a.png", d / "z_link.png")  # a link to a file is a file
    s = load(d)
    assert len(s) == 3 and s.skipped == 0
    assert [px(s, i) for i in range(3)] == [RED, BLUE, RED]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_fifo_not_opened(tmp_path):
    d = tmp_path / "d"
    solid(d / "a.png", RED)
    os.mkfifo(d / "pipe.png")
    result: list = []
    t = threading.Thread(target=lambda: result.append(load(d)), daemon=True)
    t.start()
    t.join(timeout=30)
    assert not t.is_alive(), "load_images hung on a FIFO"
    assert len(result[0]) == 1 and result[0].skipped == 1


# ------------------------------------------------------------------------------- user errors


def test_user_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(GanvasError, match="no images found"):
        load(tmp_path / "empty")
    with pytest.raises(GanvasError, match="no such folder.*not a built-in"):
        load(tmp_path / "nope")
    f = solid(tmp_path / "one.png", RED)
    with pytest.raises(GanvasError, match="is a file; give a folder"):
        load(f)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_text("nope")
    (bad / "b.jpg").write_bytes(b"")
    with pytest.raises(GanvasError, match=r"none of the 2 image files.*a\.png: not an image"):
        load(bad)
    d = tmp_path / "ok"
    solid(d / "a.png", RED)
    with pytest.raises(GanvasError, match="--resolution"):
        load(d, resolution=2)
    with pytest.raises(GanvasError, match="--channels"):
        load(d, channels=2)
    with pytest.raises(GanvasError, match="unknown split"):
        load("mnist:validation")
    with pytest.raises(GanvasError, match="no splits"):
        load("digits:test")
    assert BUILTIN_DATASETS == ("digits", "mnist", "fashion-mnist", "emoji")


def test_error_messages_are_one_line(tmp_path):
    with pytest.raises(GanvasError) as info:
        load(tmp_path / "nope")
    assert "\n" not in str(info.value) and "digits, mnist, fashion-mnist" in str(info.value)


# --------------------------------------------------------------------------------------- cache


def make_folder(d: Path, n: int = 4) -> Path:
    rng = np.random.default_rng(n)
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return d


def forbid_decoding(monkeypatch):
    def boom(*_a, **_k):
        raise AssertionError("decoded although the cache should have been used")

    monkeypatch.setattr(folder_mod, "decode_files", boom)


def test_cache_hit_is_memmap_without_decoding(tmp_path, monkeypatch, logs):
    d = make_folder(tmp_path / "d")
    first = load(d, logs)
    assert isinstance(first.images, np.memmap)
    cache_files = sorted(p.name for p in (tmp_path / "cache" / "datasets").iterdir())
    assert len(cache_files) == 2 and cache_files[0].endswith(".json")
    forbid_decoding(monkeypatch)
    second = load(d, logs)
    assert isinstance(second.images, np.memmap) and not second.images.flags.writeable
    np.testing.assert_array_equal(first.images, second.images)
    assert second.source == first.source
    assert any(m.startswith("using cached dataset") for m in logs)


def test_cache_invalidated_by_changes(tmp_path, monkeypatch):
    d = make_folder(tmp_path / "d")
    base = load(d)
    st = os.stat(d / "1.png")
    os.utime(d / "1.png", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    calls = []
    real = folder_mod.decode_files

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(folder_mod, "decode_files", counting)
    touched = load(d)
    assert len(calls) == 1
    np.testing.assert_array_equal(base.images, touched.images)
    solid(d / "9.png", RED, size=(12, 12))
    assert len(load(d)) == 5 and len(calls) == 2
    (d / "0.png").unlink()
    assert len(load(d)) == 4 and len(calls) == 3
    load(d, resolution=6)  # other settings: separate entry
    assert len(calls) == 4
    names = [p.name for p in (tmp_path / "cache" / "datasets").iterdir()]
    assert len([n for n in names if n.endswith(".npy")]) == 2  # stale versions cleaned up
    assert not [n for n in names if n.endswith(".tmp")]


def test_corrupt_cache_is_rebuilt(tmp_path, logs):
    d = make_folder(tmp_path / "d")
    base = np.array(load(d).images)
    npy = next((tmp_path / "cache" / "datasets").glob("*.npy"))
    npy.write_bytes(npy.read_bytes()[:150])  # truncate
    again = load(d, logs)
    np.testing.assert_array_equal(base, again.images)
    assert any("unreadable" in m and "rebuilding" in m for m in logs)
    npy.write_bytes(b"garbage")
    np.testing.assert_array_equal(base, load(d).images)


def test_unwritable_cache_dir(tmp_path, logs):
    d = make_folder(tmp_path / "d")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    s = load(d, logs, cache_dir=blocker / "cache")
    assert len(s) == 4 and not isinstance(s.images, np.memmap)
    msg = next(m for m in logs if "without caching" in m)
    assert "GANVAS_CACHE" in msg and "--cache-dir" not in msg  # there is no such option


def test_cache_dir_env_default(tmp_path):
    d = make_folder(tmp_path / "d")
    load(d)
    assert list((tmp_path / "cache" / "datasets").glob("*.npy"))


def test_multiprocess_decode_matches_in_process(tmp_path, monkeypatch):
    d = tmp_path / "many"
    d.mkdir()
    rng = np.random.default_rng(7)
    for i in range(70):
        sub = d / f"s{i % 3}"
        sub.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)).save(sub / f"{i}.png")
    (d / "s1" / "bad.png").write_text("nope")
    one = load(d, resolution=8, workers=1, cache_dir=tmp_path / "c1")
    pools = []

    class SpyPool(concurrent.futures.ProcessPoolExecutor):
        def __init__(self, *a, **k):
            pools.append(k.get("max_workers"))
            super().__init__(*a, **k)

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", SpyPool)
    two = load(d, resolution=8, workers=2, cache_dir=tmp_path / "c2")
    assert pools == [2]  # the multi-process path really ran
    assert one.images.shape == (70, 3, 8, 8) and one.skipped == two.skipped == 1
    np.testing.assert_array_equal(one.images, two.images)


# ------------------------------------------------------------------------- built-in datasets


@pytest.mark.parametrize("channels", [1, 3])
def test_digits(channels):
    pytest.importorskip("sklearn")
    s = load("digits", resolution=28, channels=channels)
    assert s.images.shape == (1797, channels, 28, 28) and s.images.dtype == np.uint8
    assert s.images.max() > 200 and s.images.min() == 0
    assert "digits" in s.source


def test_digits_without_sklearn(monkeypatch):
    import builtins
    import importlib.util

    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name.startswith("sklearn"):
            raise ImportError("no sklearn")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn"
                        else real_find_spec(name, *a))
    with pytest.raises(GanvasError, match=r"pip install 'ganvas\[datasets\]'"):
        load("digits")


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_from_debian():
    s = load("fashion-mnist:test", resolution=28, channels=1)
    assert s.images.shape == (10000, 1, 28, 28) and s.images.dtype == np.uint8
    assert s.images.max() == 255


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    codes = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype(">i2"): 0x0B,
             np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}
    data = bytes([0, 0, codes[arr.dtype], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data += arr.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_idx_reader(tmp_path, gz):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a.idx", a, gz)), a)
    b = (np.arange(6) - 3).astype(">i4").reshape(3, 2)
    got = read_idx(write_idx(tmp_path / "b.idx", b, gz))
    assert got.dtype == np.int32 and got.tolist() == b.tolist()
    raw = (tmp_path / "a.idx").read_bytes()
    body = gzip.decompress(raw) if gz else raw
    (tmp_path / "short.idx").write_bytes(body[:-3])
    with pytest.raises(GanvasError, match="short.idx.*truncated"):
        read_idx(tmp_path / "short.idx")
    (tmp_path / "magic.idx").write_bytes(b"\x01\x02\x08\x03" + body[4:])
    with pytest.raises(GanvasError, match="magic.idx.*bad magic"):
        read_idx(tmp_path / "magic.idx")


def _no_system_data(monkeypatch, tmp_path):
    monkeypatch.setattr(builtin_mod, "SYSTEM_DATA_DIRS", (str(tmp_path / "no-system"),))


def test_mnist_offline_message(tmp_path, monkeypatch):
    _no_system_data(monkeypatch, tmp_path)

    def offline(*_a, **_k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(GanvasError) as info:
        load("mnist")
    msg = str(info.value)
    assert "GANVAS_DATA" in msg and "train-images-idx3-ubyte.gz" in msg and "mnist" in msg
    assert "URLError" in msg and "\n" not in msg
    leftovers = list((tmp_path / "cache" / "downloads" / "mnist").iterdir())
    assert leftovers == []


def test_download_md5_mismatch(tmp_path, monkeypatch):
    _no_system_data(monkeypatch, tmp_path)

    class FakeResponse(io.BytesIO):
        headers: dict = {}

    monkeypatch.setattr(urllib.request, "urlopen",
                        lambda *_a, **_k: FakeResponse(b"definitely not mnist"))
    with pytest.raises(GanvasError, match="MD5 mismatch"):
        load("fashion-mnist:test")
    assert list((tmp_path / "cache" / "downloads" / "fashion-mnist").iterdir()) == []


def test_download_success_then_reuse(tmp_path, monkeypatch, logs):
    _no_system_data(monkeypatch, tmp_path)
    images = np.random.default_rng(5).integers(0, 256, (10_000, 28, 28), dtype=np.uint8)
    payload = gzip.compress(write_idx(tmp_path / "src.idx", images).read_bytes())
    key = ("mnist", "t10k-images-idx3-ubyte.gz")
    monkeypatch.setitem(builtin_mod._MD5, key, hashlib.md5(payload).hexdigest())
    urls = []

    class FakeResponse(io.BytesIO):
        headers = {"Content-Length": str(len(payload))}

    def fake_urlopen(url, timeout=None):
        urls.append(url)
        assert timeout and timeout <= 60
        return FakeResponse(payload)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    s = load("mnist:test", logs, resolution=28, channels=1)
    np.testing.assert_array_equal(s.images[:, 0], images)
    assert urls == [builtin_mod._MIRRORS["mnist"][0] + key[1]]
    saved = tmp_path / "cache" / "downloads" / "mnist" / key[1]
    assert saved.read_bytes() == payload
    load("mnist:test", resolution=28, channels=1)
    assert len(urls) == 1  # the downloaded copy is found locally next time


def test_malformed_local_idx(tmp_path, monkeypatch):
    _no_system_data(monkeypatch, tmp_path)
    data = tmp_path / "data"
    monkeypatch.setenv("GANVAS_DATA", str(data))
    bad = data / "mnist" / "train-images-idx3-ubyte"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\x00\x00\x08\x01" + b"\x00" * 20)
    with pytest.raises(GanvasError, match="train-images-idx3-ubyte"):
        load("mnist", resolution=28, channels=1)
    write_idx(bad, np.zeros((5, 28, 28), dtype=np.uint8))
    with pytest.raises(GanvasError, match="expected 60,000"):
        load("mnist", resolution=28, channels=1)


def test_mnist_from_ganvas_data_resized_and_cached(tmp_path, monkeypatch, logs):
    _no_system_data(monkeypatch, tmp_path)
    data = tmp_path / "data"
    monkeypatch.setenv("GANVAS_DATA", str(data))
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (10_000, 28, 28), dtype=np.uint8)
    write_idx(data / "mnist" / "t10k-images-idx3-ubyte.gz", images, gz=True)
    native = load("mnist:test", resolution=28, channels=1)
    assert native.images.shape == (10_000, 1, 28, 28)
    np.testing.assert_array_equal(native.images[:, 0], images)
    resized = load("mnist:test", logs, resolution=16, channels=3)
    assert resized.images.shape == (10_000, 3, 16, 16)
    np.testing.assert_array_equal(resized.images[:, 0], resized.images[:, 2])
    again = load("mnist:test", logs, resolution=16, channels=3)
    assert isinstance(again.images, np.memmap)
    np.testing.assert_array_equal(resized.images, again.images)
    assert any(m.startswith("using cached dataset") for m in logs)


# ------------------------------------------------------------- big pictures: shrink first


def _turn(img: Image.Image, orientation: int) -> Image.Image:
    method = pre._TRANSPOSE.get(orientation)
    return img if method is None else img.transpose(method)


def _sample_image(mode: str, w: int, h: int) -> Image.Image:
    rng = np.random.default_rng(w * 1000 + h)
    a = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    rgb = Image.fromarray(np.ascontiguousarray(a[..., :3]))
    grey = Image.fromarray(np.ascontiguousarray(a[..., 0]))
    if mode == "RGBA":
        return Image.fromarray(a)  # [H, W, 4] uint8: RGBA
    if mode == "LA":
        return Image.merge("LA", (grey, Image.fromarray(np.ascontiguousarray(a[..., 3]))))
    if mode == "P":
        img = rgb.quantize(32)
        img.info["transparency"] = 3
        return img
    if mode == "I;16":
        return Image.fromarray(a[..., 0].astype(np.uint16) * 257 + a[..., 1] // 2)
    if mode == "I":
        return Image.fromarray(a[..., 0].astype(np.int32) * 1000 - 70_000)
    if mode == "F":
        return Image.fromarray(a[..., 0].astype(np.float32) / 255)
    if mode == "CMYK":
        return Image.frombytes("CMYK", (a.shape[1], a.shape[0]), np.ascontiguousarray(a).tobytes())
    return rgb.convert(mode)  # RGB, L, 1


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "P", "L", "1", "CMYK", "I;16", "I", "F"])
def test_shrinking_in_strips_matches_full_size_conversion(monkeypatch, mode):
    """Strip-wise shrinking gives exactly what converting the whole picture used to."""
    monkeypatch.setattr(pre, "STRIP_PIXELS", 500)  # many strips, ragged last one
    sizes = [(150, 97, 8), (97, 150, 5), (100, 100, 8), (40, 23, 8), (5, 9, 8), (8, 8, 8)]
    for w, h, res in sizes:
        img = _sample_image(mode, w, h)
        for orientation in ((1, 3, 6) if mode != "RGB" else range(1, 9)):
            for channels in (1, 3):
                ref = pre.to_mode(_turn(img, orientation), channels, pre.wide_scale(img)
                                  if mode in ("I;16", "I", "F") else None)
                want = pre.to_array(pre.fit_square(ref, res))
                got = pre.process_image(img, res, channels, orientation)
                np.testing.assert_array_equal(got, want, err_msg=f"{mode} {w}x{h} {orientation}")


@pytest.mark.parametrize("mode", ["RGBA", "I;16", "P"])
def test_big_picture_never_converted_at_full_size(tmp_path, monkeypatch, mode):
    monkeypatch.setattr(pre, "STRIP_PIXELS", 4096)
    img = _sample_image(mode, 1200, 900)
    img.save(tmp_path / "big.png")
    seen: list[int] = []
    real_to_mode = pre.to_mode

    def spy(im, *a, **k):
        seen.append(im.size[0] * im.size[1])
        return real_to_mode(im, *a, **k)

    monkeypatch.setattr(pre, "to_mode", spy)
    small, box = pre.shrink(img, 16, 3)
    assert max(small.size) <= 3 * 16 * 2 and box[2] - box[0] >= 3 * 16  # reduced 2x..
    assert seen and max(seen) <= 1200 * 900 // 20  # ...in strips, converted before resizing
    arr = pre.decode_file(str(tmp_path / "big.png"), 16, 3, 10**8)
    assert arr.shape == (3, 16, 16)


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_wide_modes_use_no_full_size_numpy_copies(tmp_path, monkeypatch, mode):
    """16/32-bit and float pictures used to be copied as int64/float64 (24+ bytes a pixel)."""
    monkeypatch.setattr(pre, "STRIP_PIXELS", 4096)
    monkeypatch.setattr(pre, "RANGE_SAMPLE", 4096)
    w = h = 1024
    path = tmp_path / ("big.png" if mode == "I;16" else "big.tif")
    _sample_image(mode, w, h).save(path)
    tracemalloc.start()
    try:
        arr = pre.decode_file(str(path), 16, 1, 10**8)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert arr.shape == (1, 16, 16) and 60 < arr.mean() < 200
    assert peak < w * h // 2, f"{peak:,} bytes of temporary arrays"  # < 0.5 byte a pixel


def test_exif_rotation_of_a_shrunk_picture(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    img = Image.new("RGB", (400, 200), BLUE)
    img.paste(Image.new("RGB", (200, 200), RED), (0, 0))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 8  # displayed rotated 90 degrees counter-clockwise: left half at the bottom
    img.save(d / "rot.png", exif=exif)
    s = load(d, resolution=8)
    assert px(s, 0, 0, 4) == BLUE and px(s, 0, 7, 4) == RED


# ------------------------------------------------------------------- wide sample ranges


def test_float_tiff_with_infinity_keeps_its_range(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    a = np.full((8, 8), 0.5, dtype=np.float32)
    a[0, 0], a[0, 1], a[0, 2] = np.inf, np.nan, -np.inf
    a[7, 7] = 1.0
    Image.fromarray(a).save(d / "f.tif")
    s = load(d, channels=1)
    assert px(s, 0, 4, 4) in {(127,), (128,)}  # was 0: inf made the range 0..255
    assert px(s, 0, 0, 0) == (255,) and px(s, 0, 0, 1) == (0,) and px(s, 0, 0, 2) == (0,)
    assert px(s, 0, 7, 7) == (255,)


def test_int32_range_ignores_outliers(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    ramp = (np.arange(32 * 32, dtype=np.int32).reshape(32, 32) % 200) + 20  # 20..219
    byte = ramp.copy()
    byte[3, 3] = 10**7  # one hot pixel used to turn the whole picture black
    Image.fromarray(byte).save(d / "a_byte.tif")
    deep = ramp * 257
    deep[5, 5] = -(10**6)
    Image.fromarray(deep).save(d / "b_deep.tif")
    Image.fromarray(ramp).save(d / "c_plain.tif")
    Image.fromarray(ramp * 257).save(d / "d_plain16.tif")
    signed = ramp * 100 - 10_000  # -8000..11900: stretched to 0..255
    Image.fromarray(signed).save(d / "e_signed.tif")
    s = load(d, resolution=32, channels=1)
    got = s.images[:, 0].astype(int)
    expect = ramp.copy()
    expect[3, 3] = 255
    np.testing.assert_array_equal(got[0], expect)  # 0..255 data unchanged
    expect = ramp.copy()
    expect[5, 5] = 0
    np.testing.assert_array_equal(got[1], expect)  # 0..65535 data divided by 257
    np.testing.assert_array_equal(got[2], ramp)
    np.testing.assert_array_equal(got[3], ramp)
    assert got[4].min() == 0 and got[4].max() == 255
    assert np.all(np.diff(got[4][0, :20]) >= 0)


# ---------------------------------------------------------------------- workers, warnings


def test_workers_are_capped(tmp_path, monkeypatch, logs):
    d = tmp_path / "d"
    for i in range(40):
        solid(d / f"{i:02}.png", (i, 0, 0))
    pools = []

    class InProcessPool(concurrent.futures.ThreadPoolExecutor):
        def __init__(self, max_workers, mp_context=None):
            pools.append(max_workers)
            super().__init__(max_workers=1)

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", InProcessPool)
    monkeypatch.setattr(folder_mod, "POOL_MIN_FILES", 2)
    s = load(d, logs, workers=100_000)
    assert pools == [folder_mod.MAX_WORKERS] == [32] and len(s) == 40
    assert px(s, 39) == (39, 0, 0)
    assert any("note: using 32 decoding processes" in m for m in logs)
    load(d, workers=3, cache_dir=tmp_path / "c2")
    assert pools[-1] == 3


def test_truncated_webp_reason(tmp_path, logs):
    d = tmp_path / "d"
    noise_jpeg(d.mkdir() or d / "src.jpg")
    data = io.BytesIO()
    Image.open(d / "src.jpg").save(data, format="WEBP", quality=80)
    (d / "src.jpg").unlink()
    (d / "trunc.webp").write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    solid(d / "ok.png", RED)
    s = load(d, logs)
    assert s.skipped == 1
    msg = next(m for m in logs if "skipped" in m)
    assert "trunc.webp: corrupt or truncated" in msg and "decoder object" not in msg


def test_skip_reasons_are_short_and_human():
    assert pre.skip_reason(OSError("could not create decoder object")) == "corrupt or truncated"
    assert pre.skip_reason(OSError("unrecognized data stream contents when reading image "
                                   "file")) == "corrupt or truncated"
    assert pre.skip_reason(SyntaxError("broken PNG file")) == "corrupt or truncated"
    assert pre.skip_reason(EOFError()) == "corrupt or truncated"
    assert pre.skip_reason(OSError(errno.EIO, "Input/output error")) == "Input/output error"
    assert pre.skip_reason(OSError("image file is truncated")) == "truncated"
    assert pre.skip_reason(RuntimeError("x" * 200)).endswith("...")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux PATH_MAX of 4096")
def test_paths_longer_than_path_max_are_reported(tmp_path, logs):
    d = tmp_path / "d"
    solid(d / "a.png", RED)
    png = io.BytesIO()
    Image.new("RGB", (8, 8), BLUE).save(png, format="PNG")
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    depth = len(str(d))
    try:
        while depth <= 4200:  # build it with *at() calls: the full path is too long to use
            os.mkdir("x" * 200, dir_fd=fd)
            nxt = os.open("x" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd, depth = nxt, depth + 201
        out = os.open("deep.png", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, png.getvalue())
        os.close(out)
    finally:
        os.close(fd)
    try:
        s = load(d, logs)
        assert len(s) == 1 and px(s, 0) == RED
        msg = next(m for m in logs if "could not read" in m)
        assert "could not read 1 file(s) or folder(s)" in msg and "path too long" in msg
        assert len(msg) < 400 and "\n" not in msg
    finally:
        shutil.rmtree(d / ("x" * 200))
