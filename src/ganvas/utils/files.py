"""Files a user names: checked before reading (one clear line for each way a path can be
wrong), and written atomically (a reader sees the old file or the new one, never a torn one)."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ganvas.errors import GanvasError


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some filesystems (and Windows) cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The permissions a plain open()/mkdir() would give (temp files default to private)."""
    return (0o777 if directory else 0o666) & ~_umask()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``; on success fsync it and rename it into place.

    A failure to create or replace the file is a GanvasError naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(21, "a folder is in the way", str(path))
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, default_mode())
    except OSError as exc:
        raise GanvasError(f"{path}: cannot write it ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise GanvasError(f"{path}: cannot write it ({exc.strerror or exc})") from None
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path) as handle:
        handle.write(text.encode("utf-8"))


def stat_regular_file(path: Path, where: str, *, missing: str = "no such file",
                      wanted: str = "a file") -> os.stat_result:
    """``path.stat()`` of a file about to be read, or a GanvasError starting with ``where``.

    ``missing`` is what to say when it does not exist (a hint may follow); ``wanted`` names
    what to give instead of a folder or a special file (a FIFO or a device would block or
    never end).
    """
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise GanvasError(f"{where}: {missing}") from None
    except PermissionError:
        raise GanvasError(f"{where}: permission denied") from None
    except OSError as exc:
        raise GanvasError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise GanvasError(f"{where}: is a folder; give {wanted}")
    if not stat.S_ISREG(info.st_mode):
        raise GanvasError(f"{where}: not a regular file; give {wanted}")
    return info
