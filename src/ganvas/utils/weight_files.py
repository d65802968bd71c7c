"""Reading pretrained weights safely: downloaded once through ``torch.hub`` (hash-checked,
cached) or read from a file the user gives, never by running code.

Shared by the style-transfer backbones and the projected discriminator's feature networks.
Every problem (offline, a corrupt download, a file that is not weights, one that holds
Python objects or unpacks to far more than its size) is one :class:`GanvasError` line
naming the file and what to do.
"""

from __future__ import annotations

import http.client
import pickle
import struct
import urllib.error
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ganvas.errors import GanvasError
from ganvas.utils.files import stat_regular_file

MAX_WEIGHTS_BYTES = 2 * 1024**3  # torchvision's VGG19 file is 548 MB; anything this big is not one
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


def hub_checkpoints() -> Path:
    """Where torch's hub caches downloaded weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def download(name: str, url: str, unavailable: Callable[[str], GanvasError]
             ) -> tuple[dict[str, Any], str]:
    """The state dict at ``url`` through torch.hub: downloaded once, checked against the hash
    in its file name, then cached. ``unavailable(reason)`` is the error for a download that
    failed (it lists every other way to get the weights)."""
    cached = hub_checkpoints() / url.rsplit("/", 1)[1]
    was_cached = cached.is_file()  # then nothing is downloaded and any error is the file's
    try:
        state = torch.hub.load_state_dict_from_url(
            url, map_location="cpu", progress=True, check_hash=True, weights_only=True)
    except pickle.UnpicklingError:
        raise GanvasError(f"{cached}: refusing to load the cached {name} weights: the file "
                          "holds Python objects, not just tensors; delete it and retry") from None
    except (urllib.error.URLError, http.client.HTTPException) as exc:
        # Offline, DNS failure, HTTP error, connection dropped mid-download.
        reason = getattr(exc, "reason", None) or first_line(exc)
        raise unavailable(f"download failed: {reason}") from None
    except OSError as exc:
        if not was_cached:  # a socket error, or the cache folder cannot be written
            raise unavailable(f"download failed: {first_line(exc)}") from None
        raise _unreadable_cache(name, cached, exc) from None
    except RuntimeError as exc:
        reason = first_line(exc)
        if "hash" in reason:
            raise GanvasError(f"the {name} download is corrupt ({reason}); delete {cached} "
                              "if it is there and retry") from None
        raise _unreadable_cache(name, cached, exc) from None
    except (EOFError, zipfile.BadZipFile, ValueError, KeyError, AttributeError, TypeError,
            IndexError, MemoryError, struct.error) as exc:
        raise _unreadable_cache(name, cached, exc) from None
    return state, str(cached)


def _unreadable_cache(name: str, cached: Path, exc: BaseException) -> GanvasError:
    return GanvasError(f"{cached}: the cached {name} weights are unreadable (corrupt or "
                       f"truncated? {first_line(exc)}); delete the file and retry")


def check_file(path: Path, missing: str, typical: str) -> Path:
    """``path`` if it is a regular file of a plausible size; ``missing`` is said when it is
    not there, ``typical`` (e.g. "VGG weights are about 0.5 GB") when it is far too big."""
    info = stat_regular_file(path, str(path), wanted="a weights file", missing=missing)
    if info.st_size > MAX_WEIGHTS_BYTES:
        raise GanvasError(f"{path}: refusing to read a {info.st_size / 1024**3:.1f} GB file; "
                          f"{typical} (limit {MAX_WEIGHTS_BYTES / 1024**3:.0f} GB)")
    return path


def sniff(path: Path, expected: str) -> str:
    """What the file holds (``zip``, ``legacy``, ``safetensors`` or ``hdf5``), from its first
    bytes rather than its name; ``expected`` lists what would do, for the error."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except PermissionError:
        raise GanvasError(f"{path}: permission denied") from None
    except OSError as exc:
        raise GanvasError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if head.startswith(HDF5_MAGIC):
        return "hdf5"
    if head.startswith(b"PK"):
        return "zip"  # torch.save since PyTorch 1.6
    if head.startswith(b"\x80"):
        return "legacy"  # older torch.save pickles, e.g. torchvision's own VGG files
    if len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < 100_000_000:
        return "safetensors"
    raise GanvasError(f"{path}: not a weights file (expected {expected})")


def _refuse_zip_bomb(path: Path) -> None:
    """torch.save stores members uncompressed; one that unpacks to far more is not weights."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise GanvasError(f"{path}: not a readable weights file (corrupt or truncated? "
                          f"{first_line(exc)})") from None
    unpacked = sum(m.file_size for m in members)
    size = path.stat().st_size
    if any(m.compress_type != zipfile.ZIP_STORED for m in members) and \
            unpacked > 4 * size + 1_000_000:
        raise GanvasError(f"{path}: refusing to load: it unpacks to {unpacked:,} bytes from "
                          f"{size:,} (not a PyTorch weights file)")


def read_torch(path: Path, kind: str) -> Any:
    """A torch.save file, tensors only (``weights_only``)."""
    if kind == "zip":
        _refuse_zip_bomb(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise GanvasError(f"{path}: refusing to load: the file holds Python objects, not just "
                          "tensors (not a plain state dict, or tampered with)") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError,
            AttributeError, TypeError, IndexError, MemoryError, struct.error) as exc:
        raise GanvasError(f"{path}: not a readable weights file (corrupt or truncated? "
                          f"{first_line(exc)})") from None


def read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError, MemoryError) as exc:
        raise GanvasError(f"{path}: not a readable .safetensors file (corrupt or truncated? "
                          f"{first_line(exc)})") from None


def unwrap_state(obj: Any, where: str) -> dict[str, Any]:
    """The state dict inside what a file held: training scripts nest the weights under
    ``state_dict`` or ``model`` and prefix them with ``module.`` (DataParallel)."""
    for _ in range(3):
        if not isinstance(obj, dict):
            break
        inner = next((obj[k] for k in ("state_dict", "model") if isinstance(obj.get(k), dict)),
                     None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict):
        raise GanvasError(f"{where}: holds a {type(obj).__name__}, not a state dict of weights")
    state: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(key, str):
            state.setdefault(key.removeprefix("module."), value)
    return state
