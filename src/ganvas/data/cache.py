"""On-disk cache of preprocessed datasets: ``<cache_dir>/datasets/<key>.npy`` + ``<key>.json``.

The ``.npy`` is written to a temporary file in the same folder, flushed, fsynced and then
renamed over the final name, so a reader never sees a half-written cache. Later runs
memory-map it read-only.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

CACHE_FORMAT = "ganvas-dataset-cache-v1"
STALE_TMP_S = 6 * 3600
CACHE_FILE_MODE = 0o644  # mkstemp creates 0600 files; cached datasets are not secret

Log = Callable[[str], None]


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    """``cache_dir``, else ``$GANVAS_CACHE``, else ``~/.cache/ganvas``."""
    if cache_dir is None or str(cache_dir) == "":
        cache_dir = os.environ.get("GANVAS_CACHE") or os.path.join("~", ".cache", "ganvas")
    return Path(os.path.abspath(os.path.expanduser(os.fspath(cache_dir))))


def _digest(parts: Any) -> str:
    blob = json.dumps([CACHE_FORMAT, parts], ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("ascii")).hexdigest()


def make_key(label: str, family: Any, parts: Any) -> str:
    """Cache key ``<label>-<family hash>-<content hash>``.

    ``family`` identifies "the same dataset at the same settings" (so stale versions can be
    removed when it changes); ``parts`` is everything that determines the content.
    """
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("._")[:40] or "data"
    return f"{slug}-{_digest(family)[:8]}-{_digest([family, parts])[:32]}"


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path | str | None) -> None:
    if path is None:
        return
    try:
        os.unlink(path)
    except OSError:
        pass


def _short(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    return msg if msg else type(exc).__name__


class DatasetCache:
    """The ``datasets`` folder of a cache directory."""

    def __init__(self, cache_root: Path, log: Log) -> None:
        self.root = cache_root
        self.dir = cache_root / "datasets"
        self.log = log

    def paths(self, key: str) -> tuple[Path, Path]:
        return self.dir / f"{key}.npy", self.dir / f"{key}.json"

    def load(self, key: str, tail: tuple[int, int, int]) -> tuple[np.ndarray, dict] | None:
        """Memory-map a cached dataset, or return ``None`` (removing a broken entry)."""
        npy, meta_path = self.paths(key)
        if not npy.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            arr = np.load(npy, mmap_mode="r", allow_pickle=False)
            if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
                raise ValueError("unexpected metadata")
            if arr.dtype != np.uint8 or arr.ndim != 4 or tuple(arr.shape[1:]) != tail:
                raise ValueError(f"unexpected array {arr.dtype} {arr.shape}")
            if arr.shape[0] != meta.get("count") or arr.shape[0] < 1:
                raise ValueError("image count does not match its metadata")
            if isinstance(arr, np.memmap) and arr.offset + arr.nbytes != npy.stat().st_size:
                raise ValueError("file size does not match its header")
        except Exception as exc:  # truncated, garbage, missing .json, ...
            self.log(f"warning: dataset cache {npy} is unreadable ({_short(exc)}); rebuilding it")
            _unlink_quietly(npy)
            _unlink_quietly(meta_path)
            return None
        return arr, meta

    def remove_family(self, key: str) -> None:
        """Delete older cache entries of the same dataset/settings (other content hashes)."""
        prefix = key.rsplit("-", 1)[0] + "-"
        try:
            names = os.listdir(self.dir)
        except OSError:
            return
        now = time.time()
        for name in names:
            if name.startswith(prefix) and not name.startswith(key + "."):
                if name.endswith((".npy", ".json")):
                    _unlink_quietly(self.dir / name)
            elif name.startswith("." + prefix) and name.endswith(".tmp"):
                try:  # left behind by a killed run (not one still writing)
                    if now - os.stat(self.dir / name).st_mtime > STALE_TMP_S:
                        _unlink_quietly(self.dir / name)
                except OSError:
                    pass

    def write_meta(self, key: str, meta: dict) -> None:
        _, meta_path = self.paths(key)
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".json.tmp", dir=self.dir)
        try:
            os.chmod(tmp, CACHE_FILE_MODE)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(meta, fh, indent=1, ensure_ascii=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, meta_path)
        except BaseException:
            _unlink_quietly(tmp)
            raise


class ArrayWriter:
    """A writable ``uint8 [N, C, H, W]`` array that becomes the (cached) dataset.

    With a usable cache it is a memory-mapped temporary ``.npy`` in the cache folder (so
    big datasets never need to fit in RAM); otherwise a plain in-memory array.
    """

    def __init__(
        self, cache: DatasetCache | None, key: str, shape: tuple[int, int, int, int], log: Log
    ) -> None:
        self.cache = cache
        self.key = key
        self.shape = shape
        self.log = log
        self.tmp: Path | None = None
        self.array: np.ndarray
        if cache is not None:
            try:
                self.array = self._open_tmp(shape)
                return
            except OSError as exc:
                self._discard_tmp()
                log(
                    f"warning: cannot write the dataset cache in {cache.dir} ({_short(exc)}); "
                    "continuing without caching (set the environment variable GANVAS_CACHE "
                    "to a writable folder to avoid decoding again next time)"
                )
                self.cache = None
        self.array = np.empty(shape, dtype=np.uint8)

    def _open_tmp(self, shape: tuple[int, ...]) -> np.memmap:
        assert self.cache is not None
        self.cache.dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{self.key}.", suffix=".npy.tmp", dir=self.cache.dir)
        os.close(fd)
        self.tmp = Path(name)
        os.chmod(name, CACHE_FILE_MODE)
        arr = np.lib.format.open_memmap(name, mode="w+", dtype=np.uint8, shape=shape)
        # Reserve the space now: writing into a sparse mapping on a full disk is a SIGBUS.
        if hasattr(os, "posix_fallocate"):
            fd = os.open(name, os.O_RDWR)
            try:
                os.posix_fallocate(fd, 0, arr.offset + arr.nbytes)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
            finally:
                os.close(fd)
        return arr

    def _discard_tmp(self) -> None:
        _unlink_quietly(self.tmp)
        self.tmp = None

    def abort(self) -> None:
        """Throw the partial result away (on error or interrupt)."""
        self.array = np.empty((0,), dtype=np.uint8)
        self._discard_tmp()

    def finish(self, count: int, meta: dict) -> tuple[np.ndarray, bool]:
        """Keep the first ``count`` images; returns ``(array, cached)``."""
        if self.cache is None or self.tmp is None:
            arr = self.array[:count]
            return (arr.copy() if count < len(self.array) else arr), False
        cache = self.cache
        final, _ = cache.paths(self.key)
        extra_tmp: Path | None = None
        try:
            src = self.array
            if count != len(src):  # some files were skipped: copy the prefix to a smaller file
                fd, name = tempfile.mkstemp(
                    prefix=f".{self.key}.", suffix=".npy.tmp", dir=cache.dir
                )
                os.close(fd)
                extra_tmp = Path(name)
                os.chmod(name, CACHE_FILE_MODE)
                dst = np.lib.format.open_memmap(
                    name, mode="w+", dtype=np.uint8, shape=(count, *self.shape[1:])
                )
                step = max(1, (64 << 20) // max(1, int(np.prod(self.shape[1:]))))
                for i in range(0, count, step):
                    end = min(i + step, count)
                    dst[i:end] = src[i:end]
                dst.flush()
                del dst
                written = extra_tmp
            else:
                written = self.tmp
            src.flush()
            self.array = np.empty((0,), dtype=np.uint8)
            del src
            _fsync_path(written)
            meta = {"format": CACHE_FORMAT, "count": count, **meta,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            cache.write_meta(self.key, meta)  # first: a visible .npy always has its .json
            os.replace(written, final)
        except OSError as exc:
            self.log(
                f"warning: could not save the dataset cache in {cache.dir} ({_short(exc)}); "
                "continuing without it"
            )
            self.array = np.empty((0,), dtype=np.uint8)
            source = self.tmp if self.tmp.exists() else final
            try:
                result = np.array(np.load(source, mmap_mode="r")[:count])
            finally:
                for p in (self.tmp, extra_tmp, final, cache.paths(self.key)[1]):
                    _unlink_quietly(p)
                self.tmp = None
            return result, False
        _unlink_quietly(self.tmp)  # already renamed unless a smaller copy was written
        self.tmp = None
        cache.remove_family(self.key)
        return np.load(final, mmap_mode="r"), True
