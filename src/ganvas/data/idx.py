"""Reader for the IDX format used by MNIST and Fashion-MNIST (plain or gzip-compressed)."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib

import numpy as np

from ganvas.errors import GanvasError

_MAX_BYTES = 1 << 34  # refuse headers that claim more than 16 GiB of data
# IDX type code -> big-endian numpy dtype
_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class _Malformed(Exception):
    pass


def _read_exact(fh, n: int, what: str) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise _Malformed(f"file ends early (truncated {what})")
    return data


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (gzip detected from its content) into a native-endian array.

    The whole file is validated: magic number, type code, dimensions and exact data size.
    Any problem raises :class:`GanvasError` naming the file.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
            magic = _read_exact(fh, 4, "header")
            if magic[0] != 0 or magic[1] != 0 or magic[2] not in _DTYPES:
                raise _Malformed(f"bad magic number 0x{magic.hex()}")
            ndim = magic[3]
            if ndim < 1:
                raise _Malformed("zero dimensions")
            dims = struct.unpack(f">{ndim}I", _read_exact(fh, 4 * ndim, "header"))
            dtype = np.dtype(_DTYPES[magic[2]])
            count = math.prod(dims)
            if count * dtype.itemsize > _MAX_BYTES:
                raise _Malformed(f"implausible dimensions {dims}")
            data = _read_exact(fh, count * dtype.itemsize, "data")
            if fh.read(1):
                raise _Malformed("unexpected bytes after the data")
    except _Malformed as exc:
        raise GanvasError(
            f"{path}: not a valid IDX file ({exc}); delete it or replace it with a good copy"
        ) from None
    except (OSError, EOFError, zlib.error, MemoryError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise GanvasError(
            f"{path}: cannot read this IDX file ({reason}); delete it or replace it with a "
            "good copy"
        ) from None
    arr = np.frombuffer(data, dtype=dtype, count=count).reshape(dims)
    if dtype.byteorder == ">":
        arr = arr.astype(dtype.newbyteorder("="))
    return arr

