"""Built-in datasets: ``digits`` (scikit-learn), ``mnist`` and ``fashion-mnist`` (IDX files).

``emoji`` (the Noto Color Emoji font) is registered here and loaded by :mod:`ganvas.data.emoji`.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import importlib.util
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ganvas.data.cache import ArrayWriter, DatasetCache, make_key
from ganvas.data.idx import read_idx
from ganvas.data.imageset import ImageSet
from ganvas.data.preprocess import fit_square
from ganvas.errors import GanvasError

BUILTIN_DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "emoji")

#: Built-ins that are a single set of images (no ``:test`` split).
_NO_SPLITS: tuple[str, ...] = ("digits", "emoji")

Log = Callable[[str], None]

#: Where Debian/Ubuntu packages (e.g. ``dataset-fashion-mnist``) install datasets.
SYSTEM_DATA_DIRS: tuple[str, ...] = ("/usr/share/datasets",)

DOWNLOAD_TIMEOUT_S = 30

_IDX_SPLITS = {
    "train": ("train-images-idx3-ubyte", 60_000),
    "test": ("t10k-images-idx3-ubyte", 10_000),
}
# The labels files (for --conditional), one label 0-9 per image.
_IDX_LABELS = {"train": "train-labels-idx1-ubyte", "test": "t10k-labels-idx1-ubyte"}
_MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
_MD5 = {
    ("mnist", "train-images-idx3-ubyte.gz"): "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    ("mnist", "t10k-images-idx3-ubyte.gz"): "9fb629c4189551a2d022fa330f9573f3",
    ("fashion-mnist", "train-images-idx3-ubyte.gz"): "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    ("fashion-mnist", "t10k-images-idx3-ubyte.gz"): "bef4ecab320f06d8554ea6380940ec79",
    ("mnist", "train-labels-idx1-ubyte.gz"): "d53e105ee54ea40749a09fcbcd1e9432",
    ("mnist", "t10k-labels-idx1-ubyte.gz"): "ec29112dd5afa0611ce80d1b7f02629c",
    ("fashion-mnist", "train-labels-idx1-ubyte.gz"): "25c81989df183df01b3e8a0aad5dffbe",
    ("fashion-mnist", "t10k-labels-idx1-ubyte.gz"): "bb300cfdad3c16e7a12a480ee83cd310",
}


def parse_builtin(spec: str) -> tuple[str, str | None] | None:
    """``'mnist:test'`` -> ``('mnist', 'test')``; ``None`` if ``spec`` names no built-in.

    Raises :class:`GanvasError` for a built-in name with an unknown split.
    """
    name, sep, split = spec.strip().partition(":")
    name = name.lower()
    if name not in BUILTIN_DATASETS:
        return None
    if not sep:
        return name, None
    split = split.strip().lower()
    if name in _NO_SPLITS:
        raise GanvasError(f"--data {spec!r}: the {name} dataset has no splits; use --data {name}")
    if split not in _IDX_SPLITS:
        raise GanvasError(
            f"--data {spec!r}: unknown split {split!r}; use {name} (train) or {name}:test"
        )
    return name, split


def _scale_to_uint8(images: np.ndarray, maximum: float) -> np.ndarray:
    return np.clip(np.rint(images * (255.0 / maximum)), 0, 255).astype(np.uint8)


def _resize_into(out: np.ndarray, grey: np.ndarray, resolution: int, desc: str,
                 progress: bool) -> None:
    """Resize each ``[H, W]`` grey image into ``out[i]`` (``[C, R, R]``, grey replicated)."""
    for i in tqdm(range(len(grey)), desc=desc, unit="img", disable=not progress,
                  dynamic_ncols=True):
        img = fit_square(Image.fromarray(np.ascontiguousarray(grey[i], dtype=np.uint8)), resolution)
        out[i] = np.asarray(img, dtype=np.uint8)[None]


def _expand(grey: np.ndarray, resolution: int, channels: int, progress: bool,
            desc: str) -> np.ndarray:
    """In memory: ``[N, H, W]`` -> ``[N, C, R, R]``."""
    if grey.shape[1:] == (resolution, resolution):
        out = grey[:, None]
        return np.repeat(out, 3, axis=1) if channels == 3 else out
    out = np.empty((len(grey), channels, resolution, resolution), dtype=np.uint8)
    _resize_into(out, grey, resolution, desc, progress)
    return out


def _digits_pixels() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 8x8 digits (values 0-16) scikit-learn ships and their labels (0-9), read
    from its data file: importing scikit-learn costs seconds, more than the rest of a short
    run's start."""
    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / \
            "digits.csv.gz"
        try:
            with gzip.open(path, "rt") as handle:
                table = np.loadtxt(handle, delimiter=",")
            if table.ndim == 2 and table.shape[1] == 65:
                return table[:, :64].reshape(-1, 8, 8), table[:, 64].astype(np.int64)
        except (OSError, ValueError, EOFError):
            pass  # another layout of scikit-learn: ask it
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise GanvasError(
            "the 'digits' dataset needs scikit-learn: pip install 'ganvas[datasets]' "
            "(or pip install scikit-learn)"
        ) from None
    digits = sk_load_digits()
    return (np.asarray(digits.images, dtype=np.float64),
            np.asarray(digits.target, dtype=np.int64))


def load_digits(*, resolution: int, channels: int, progress: bool, log: Log,
                labelled: bool = False) -> ImageSet:
    pixels, labels = _digits_pixels()
    grey = _scale_to_uint8(pixels, 16.0)
    images = _expand(grey, resolution, channels, progress, "resizing digits")
    return ImageSet(images, f"digits (scikit-learn, {len(images):,} images)",
                    labels=labels if labelled else None)


# ----------------------------------------------------------------------------- IDX datasets


def _search_dirs(name: str, cache_root: Path) -> list[Path]:
    dirs = []
    env = os.environ.get("GANVAS_DATA")
    if env:
        dirs.append(Path(os.path.expanduser(env)) / name)
    dirs.append(cache_root / "downloads" / name)
    dirs.extend(Path(d) / name for d in SYSTEM_DATA_DIRS)
    return dirs


def find_local_idx(name: str, split: str, cache_root: Path, stem: str | None = None
                   ) -> Path | None:
    """The first local copy of the images file (or the file ``stem``; plain or ``.gz``), or
    ``None``."""
    stem = stem or _IDX_SPLITS[split][0]
    for directory in _search_dirs(name, cache_root):
        for filename in (stem, stem + ".gz"):
            candidate = directory / filename
            if candidate.is_file():
                return candidate
    return None


def _how_to_provide(name: str, filename: str, cache_root: Path) -> str:
    hint = (
        f"put {filename} in $GANVAS_DATA/{name}/ (or {cache_root / 'downloads' / name}/)"
    )
    if name == "fashion-mnist":
        hint += ", or on Debian/Ubuntu run `apt install dataset-fashion-mnist`"
    return hint


def download(name: str, filename: str, cache_root: Path, *, progress: bool, log: Log) -> Path:
    """Download ``filename`` for dataset ``name`` into ``<cache>/downloads/<name>/``."""
    dest_dir = cache_root / "downloads" / name
    final = dest_dir / filename
    expected_md5 = _MD5[(name, filename)]
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GanvasError(
            f"cannot create {dest_dir} to download {name} ({exc.strerror or exc}); "
            f"{_how_to_provide(name, filename, cache_root)}"
        ) from None
    errors: list[str] = []
    for base in _MIRRORS[name]:
        url = base + filename
        log(f"downloading {url}")
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=dest_dir)
        except OSError as exc:
            raise GanvasError(
                f"cannot write to {dest_dir} to download {name} ({exc.strerror or exc}); "
                f"{_how_to_provide(name, filename, cache_root)}"
            ) from None
        try:
            md5 = hashlib.md5()
            with os.fdopen(fd, "wb") as fh:
                with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
                    total = int(resp.headers.get("Content-Length") or 0) or None
                    with tqdm(total=total, desc=f"downloading {filename}", unit="B",
                              unit_scale=True, disable=not progress, dynamic_ncols=True) as bar:
                        while chunk := resp.read(1 << 16):
                            fh.write(chunk)
                            md5.update(chunk)
                            bar.update(len(chunk))
                fh.flush()
                os.fsync(fh.fileno())
            if md5.hexdigest() != expected_md5:
                errors.append(f"{url}: MD5 mismatch (got {md5.hexdigest()})")
                continue
            os.replace(tmp, final)
            return final
        except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError is OSError
            reason = " ".join(str(exc).split()) or type(exc).__name__
            errors.append(f"{type(exc).__name__}: {reason}" if type(exc).__name__ not in reason
                          else reason)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise GanvasError(
        f"could not download {name} ({errors[0]}"
        + (f"; and {len(errors) - 1} other mirror(s) failed" if len(errors) > 1 else "")
        + f"): {_how_to_provide(name, filename, cache_root)}"
    )


def load_idx_images(name: str, split: str, path: Path) -> np.ndarray:
    """Read and validate an MNIST-style images file: ``uint8 [N, 28, 28]``."""
    arr = read_idx(path)
    expected = _IDX_SPLITS[split][1]
    if arr.dtype != np.uint8 or arr.ndim != 3:
        raise GanvasError(
            f"{path}: not an IDX images file (expected magic 0x00000803: unsigned bytes, "
            f"3 dimensions); delete it or replace it with the {name} {split} images file"
        )
    if arr.shape != (expected, 28, 28):
        dims = "x".join(str(d) for d in arr.shape)
        raise GanvasError(
            f"{path}: expected {expected:,}x28x28 {name} {split} images, found {dims}; delete "
            "it or replace it with a good copy"
        )
    return arr


def load_idx_labels(name: str, split: str, cache: DatasetCache, *, progress: bool,
                    log: Log) -> np.ndarray:
    """The labels (0-9) of an MNIST-style split, from a local copy or downloaded."""
    stem = _IDX_LABELS[split]
    path = find_local_idx(name, split, cache.root, stem)
    if path is None:
        path = download(name, stem + ".gz", cache.root, progress=progress, log=log)
    labels = read_idx(path)
    expected = _IDX_SPLITS[split][1]
    if labels.dtype != np.uint8 or labels.shape != (expected,) or labels.max(initial=0) > 9:
        raise GanvasError(f"{path}: not the {name} {split} labels file ({expected:,} labels "
                          "0-9); delete it or replace it with a good copy")
    return labels.astype(np.int64)


def load_idx_dataset(
    name: str,
    split: str,
    *,
    resolution: int,
    channels: int,
    cache: DatasetCache,
    progress: bool,
    log: Log,
    labelled: bool = False,
) -> ImageSet:
    loaded = _load_idx_images(name, split, resolution=resolution, channels=channels,
                              cache=cache, progress=progress, log=log)
    if labelled:
        loaded.labels = load_idx_labels(name, split, cache, progress=progress, log=log)
    return loaded


def _load_idx_images(name: str, split: str, *, resolution: int, channels: int,
                     cache: DatasetCache, progress: bool, log: Log) -> ImageSet:
    stem = _IDX_SPLITS[split][0]
    path = find_local_idx(name, split, cache.root)
    if path is None:
        path = download(name, stem + ".gz", cache.root, progress=progress, log=log)
    source_base = f"{name} {split}"
    tail = (channels, resolution, resolution)

    if resolution == 28:  # native size: no resizing, nothing worth caching
        grey = load_idx_images(name, split, path)
        images = grey[:, None] if channels == 1 else np.repeat(grey[:, None], 3, axis=1)
        return ImageSet(images, f"{source_base} ({len(grey):,} images from {path})")

    st = path.stat()
    family = ["builtin", name, split, resolution, channels]
    key = make_key(f"{name}-{split}-{resolution}px-{channels}ch", family,
                   [str(path.resolve()), st.st_size, st.st_mtime_ns])
    cached = cache.load(key, tail)
    if cached is not None:
        images, meta = cached
        log(f"using cached dataset {cache.paths(key)[0]} ({len(images):,} images)")
        return ImageSet(images, str(meta.get("source", source_base)))

    grey = load_idx_images(name, split, path)
    source = f"{source_base} ({len(grey):,} images from {path}, resized to {resolution}px)"
    writer = ArrayWriter(cache, key, (len(grey), *tail), log)
    try:
        _resize_into(writer.array, grey, resolution, f"resizing {name}", progress)
        images, _ = writer.finish(len(grey), {"source": source, "skipped": 0,
                                              "resolution": resolution, "channels": channels})
    except BaseException:
        writer.abort()
        raise
    return ImageSet(images, source)
