"""Load a folder of image files (recursively), decode them in parallel, and cache the result."""

from __future__ import annotations

import concurrent.futures
import errno
import multiprocessing
import os
import stat
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ganvas.data import preprocess
from ganvas.data.cache import ArrayWriter, DatasetCache, make_key
from ganvas.data.classes import label_files
from ganvas.data.imageset import ImageSet
from ganvas.data.preprocess import IMAGE_EXTENSIONS
from ganvas.errors import GanvasError

#: Below this many files, decoding happens in-process (starting workers costs more).
POOL_MIN_FILES = 64
#: Never start more decoding processes than this, whatever --workers says.
MAX_WORKERS = 32
# stat() errors that just mean "nothing there" (broken or looping link, vanished entry).
_GONE_ERRNOS = frozenset({errno.ENOENT, errno.ELOOP, errno.ENOTDIR})

Log = Callable[[str], None]


@dataclass(frozen=True)
class FileEntry:
    rel: str  # path relative to the root, '/'-separated (the sort key)
    path: str
    size: int
    mtime_ns: int
    regular: bool


@dataclass
class ScanResult:
    files: list[FileEntry] = field(default_factory=list)
    ignored: int = 0  # files without an image extension
    unreadable_dirs: list[str] = field(default_factory=list)
    # entries that exist but could not be looked at: (relative path, reason)
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def _stat_reason(exc: OSError) -> str:
    if exc.errno == errno.ENAMETOOLONG:
        return "path too long"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return exc.strerror or type(exc).__name__


def scan_folder(root: str | os.PathLike[str]) -> ScanResult:
    """Find image files below ``root``, following symlinks without ever looping.

    Hidden entries (name starts with '.') are skipped, broken links are ignored, and each
    directory (by device and inode) is visited once. Sorted by relative path.
    """
    result = ScanResult()
    root = os.fspath(root)
    st = os.stat(root)
    visited = {(st.st_dev, st.st_ino)}
    stack: list[tuple[str, str]] = [(root, "")]
    while stack:
        directory, rel_dir = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            result.unreadable_dirs.append(rel_dir or ".")
            continue
        subdirs: list[tuple[str, str]] = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                est = os.stat(entry.path)  # follows symlinks
            except ValueError:  # bad name
                continue
            except OSError as exc:
                if exc.errno not in _GONE_ERRNOS:  # e.g. deeper than PATH_MAX
                    result.unreadable.append((rel, _stat_reason(exc)))
                continue  # broken link or vanished: nothing to report
            if stat.S_ISDIR(est.st_mode):
                ident = (est.st_dev, est.st_ino)
                if ident not in visited:
                    visited.add(ident)
                    subdirs.append((entry.path, rel))
                continue
            if os.path.splitext(entry.name)[1].lower() not in IMAGE_EXTENSIONS:
                result.ignored += 1
                continue
            result.files.append(
                FileEntry(rel, entry.path, est.st_size, est.st_mtime_ns,
                          stat.S_ISREG(est.st_mode))
            )
        stack.extend(reversed(subdirs))
    result.files.sort(key=lambda f: f.rel)
    return result


def default_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def _mp_context() -> multiprocessing.context.BaseContext:
    # Linux: fork, like torch's DataLoader. Workers inherit the imported modules (no slow
    # re-import of the package, no re-running of an unguarded __main__) and only call
    # Pillow/numpy. Elsewhere fork is unsafe (macOS) or missing: the platform default.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def decode_files(
    files: list[FileEntry],
    out: np.ndarray,
    *,
    resolution: int,
    channels: int,
    max_image_pixels: int,
    workers: int,
    progress: bool,
    log: Log,
    aspect: tuple[int, int] = (1, 1),
    fit: str = "crop",
) -> tuple[int, list[tuple[str, str]]]:
    """Decode ``files`` in order into ``out[0:count]``; returns ``(count, failures)``."""
    tasks = [(f.path, resolution, channels, max_image_pixels, f.regular, aspect, fit)
             for f in files]
    failures: list[tuple[str, str]] = []
    count = 0
    done = 0
    bar = tqdm(total=len(files), desc="decoding images", unit="img", disable=not progress,
               dynamic_ncols=True)

    def take(result: tuple[np.ndarray | None, str | None]) -> None:
        nonlocal count, done
        arr, reason = result
        if arr is None:
            failures.append((files[done].rel, reason or "unknown error"))
        else:
            out[count] = arr
            count += 1
        done += 1
        bar.update(1)

    try:
        if workers > 1 and len(files) >= POOL_MIN_FILES:
            if workers > MAX_WORKERS:
                log(f"note: using {MAX_WORKERS} decoding processes (--workers {workers} is "
                    f"more than the {MAX_WORKERS} allowed)")
            n_workers = min(workers, MAX_WORKERS, len(files))
            chunk = max(1, min(32, len(files) // (n_workers * 8)))
            pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=n_workers, mp_context=_mp_context()
            )
            try:
                with warnings.catch_warnings():  # 3.12+: "multi-threaded process, fork()"
                    warnings.simplefilter("ignore", DeprecationWarning)
                    results = pool.map(preprocess.decode_task, tasks, chunksize=chunk)
                for result in results:
                    take(result)
            except (concurrent.futures.process.BrokenProcessPool, OSError) as exc:
                if isinstance(exc, concurrent.futures.process.BrokenProcessPool):
                    what = "a decoding worker process died"
                else:
                    what = f"could not start decoding processes ({exc})"
                log(f"warning: {what}; decoding the remaining {len(files) - done:,} files "
                    "in this process")
            finally:  # on Ctrl-C, don't wait for the queued work
                pool.shutdown(wait=True, cancel_futures=True)
        for task in tasks[done:]:
            take(preprocess.decode_task(task))
    finally:
        bar.close()
    return count, failures


def _images(count: int) -> str:
    return f"{count:,} image" + ("" if count == 1 else "s")


def _short_path(rel: str, limit: int = 100) -> str:
    """``rel`` shortened in the middle to at most ``limit`` characters."""
    if len(rel) <= limit:
        return rel
    keep = limit - 3
    return rel[: keep // 2] + "..." + rel[len(rel) - (keep - keep // 2):]


def _printable(name: str) -> str:
    """A file name safe for one terminal line: control characters escaped."""
    return name if name.isprintable() else repr(name)[1:-1]


def _describe_failures(failures: list[tuple[str, str]], limit: int = 3) -> str:
    shown = "; ".join(f"{_printable(_short_path(rel))}: {reason}"
                      for rel, reason in failures[:limit])
    return shown + ("; ..." if len(failures) > limit else "")


def load_folder(
    folder: Path,
    *,
    resolution: int,
    channels: int,
    cache: DatasetCache,
    workers: int,
    max_image_pixels: int,
    progress: bool,
    log: Log,
    label: str,
    classes: Sequence[str] | None = None,
    aspect: tuple[int, int] = (1, 1),
    fit: str = "crop",
) -> ImageSet:
    """Load every image below ``folder`` as ``uint8 [N, C, res, res]`` (cached); with
    ``classes``, each labelled by the class its first-level subfolder names. A non-square
    ``aspect`` (width, height in units of ``resolution``) gives ``[N, C, H, W]`` pictures,
    fitted by ``fit`` (crop or pad)."""
    root = os.path.abspath(folder)
    try:
        scan = scan_folder(root)
    except OSError as exc:
        raise GanvasError(
            f"--data {label}: cannot read this folder ({exc.strerror or exc})"
        ) from None
    if scan.unreadable_dirs:
        names = ", ".join(_short_path(d) for d in scan.unreadable_dirs[:3]) + (
            ", ..." if len(scan.unreadable_dirs) > 3 else "")
        log(f"warning: could not read {len(scan.unreadable_dirs):,} folder(s) in {root}: {names}")
    if scan.unreadable:
        log(f"warning: could not read {len(scan.unreadable):,} file(s) or folder(s) in {root} "
            f"(first: {_describe_failures(scan.unreadable)})")
    if scan.ignored:
        log(f"ignored {scan.ignored:,} file(s) in {root} that are not images "
            f"(by extension: {', '.join(IMAGE_EXTENSIONS)})")
    files = scan.files
    if not files:
        unread = len(scan.unreadable) + len(scan.unreadable_dirs)
        note = f"; {unread:,} entries could not be read, see above" if unread else ""
        raise GanvasError(
            f"--data {label}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)} "
            f"recursively{note}); point it at a folder that contains pictures"
        )

    family = ["folder", root, resolution, channels, max_image_pixels]
    size = f"{resolution}px"
    if tuple(aspect) != (1, 1):  # (square keys unchanged: their caches stay valid)
        family += [list(aspect), fit]
        size = f"{resolution * aspect[0]}x{resolution * aspect[1]}-{fit}"
    listing = [[f.rel, f.size, f.mtime_ns, f.regular] for f in files]
    key = make_key(f"{os.path.basename(root) or 'root'}-{size}-{channels}ch",
                   family, listing)
    tail = (channels, resolution * aspect[1], resolution * aspect[0])

    def labels(skipped_files: Sequence[str]) -> np.ndarray | None:
        if classes is None:
            return None
        skipped = set(skipped_files)
        return label_files([f.rel for f in files if f.rel not in skipped], classes)

    cached = cache.load(key, tail)
    if cached is not None:
        images, meta = cached
        skipped = int(meta.get("skipped", 0))
        skipped_files = meta.get("skipped_files", [] if skipped == 0 else None)
        # (a cache written before it listed every skipped file cannot be labelled: decoded
        # again below)
        if classes is None or (isinstance(skipped_files, list)
                               and len(skipped_files) == skipped):
            note = f"; {skipped:,} unreadable file(s) skipped" if skipped else ""
            log(f"using cached dataset {cache.paths(key)[0]} ({_images(len(images))}{note})")
            return ImageSet(images, str(meta.get("source", f"folder {root}")), skipped,
                            labels=labels(skipped_files or []))

    writer = ArrayWriter(cache, key, (len(files), *tail), log)
    try:
        count, failures = decode_files(
            files, writer.array, resolution=resolution, channels=channels,
            max_image_pixels=max_image_pixels, workers=workers, progress=progress, log=log,
            aspect=tuple(aspect), fit=fit,
        )
        if count == 0:
            raise GanvasError(
                f"--data {label}: none of the {len(files):,} image files could be read "
                f"(first: {_describe_failures(failures, 1)}); check that they are valid images"
            )
        if failures:
            log(
                f"warning: skipped {len(failures):,} of {len(files):,} files that could not be "
                f"read as images (first: {_describe_failures(failures)})"
            )
        source = f"folder {root} ({_images(count)})"
        images, _ = writer.finish(
            count,
            {"source": source, "skipped": len(failures), "resolution": resolution,
             "channels": channels, "failures": [f"{r}: {w}" for r, w in failures[:10]],
             "skipped_files": [r for r, _ in failures]},
        )
    except BaseException:
        writer.abort()
        raise
    return ImageSet(images, source, len(failures), labels=labels([r for r, _ in failures]))
