"""Scoring a trained generator against its data: ``ganvas.metrics.evaluate(run, ...)``."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ganvas.errors import GanvasError
from ganvas.metrics.inception import FeatureExtractor, load_inception
from ganvas.metrics.statistics import (
    feature_statistics,
    frechet_distance_to,
    kernel_inception_distance,
    precision_recall,
)
from ganvas.picture_size import picture_fit
from ganvas.utils.checks import whole_number
from ganvas.utils.files import atomic_write

METRICS = ("fid", "kid", "pr")
MAX_NUM = 1_000_000
MAX_SEED = 2**63 - 1
CACHE_FORMAT = "ganvas-real-statistics-v1"
SUBSET_SEED = 0  # which real images are used when there are more than --num
HASH_CHUNK_BYTES = 64 << 20

Log = Callable[[str], None]


@dataclass
class RealStatistics:
    """Features of the real images and their mean/covariance.

    Attributes:
        mu, sigma: mean ``[D]`` and covariance ``[D, D]`` of ``features``.
        features: ``float64 [num, D]``.
        num: images used; ``total``: images in the dataset.
        path: the cache file (``None`` if it could not be written).
        cached: True when read from the cache instead of computed.
    """

    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray
    num: int
    total: int
    path: Path | None
    cached: bool


def _check_extractor(extractor: Any) -> FeatureExtractor:
    if not isinstance(extractor, FeatureExtractor) or not isinstance(extractor.identity, str):
        raise GanvasError(f"extractor must have a features(images) method and an identity "
                          f"string, got {type(extractor).__name__}")
    return extractor


def extract_features(extractor: FeatureExtractor, images: Any) -> np.ndarray:
    """``extractor.features(images)`` checked to be a finite float64 ``[N, D]`` array."""
    feats = np.asarray(extractor.features(images), dtype=np.float64)
    if feats.ndim != 2 or feats.shape[0] != len(images):
        raise GanvasError(f"{extractor.identity}: features() returned shape "
                          f"{list(feats.shape)} for {len(images)} images; expected [N, D]")
    if not np.isfinite(feats).all():
        raise GanvasError(f"{extractor.identity}: features() returned NaN or infinite values")
    return feats


def images_digest(images: np.ndarray) -> str:
    """sha256 of an image array's shape, dtype and bytes, read in chunks (memmap friendly)."""
    digest = hashlib.sha256(f"{images.dtype.str}{list(images.shape)}".encode("ascii"))
    per_image = max(1, images[0].nbytes if len(images) else 1)
    step = max(1, HASH_CHUNK_BYTES // per_image)
    for start in range(0, len(images), step):
        digest.update(np.ascontiguousarray(images[start:start + step]).data)
    return digest.hexdigest()


def subset_indices(total: int, num: int) -> np.ndarray:
    """The images used when the dataset has more than ``num``: a fixed random subset, sorted."""
    if num >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(SUBSET_SEED).choice(total, num, replace=False))


def _cache_root(cache_dir: str | os.PathLike[str] | None) -> Path:
    from ganvas.data.cache import resolve_cache_dir

    return resolve_cache_dir(cache_dir) / "metrics"


def _read_cache(path: Path, key: str, num: int, log: Log) -> RealStatistics | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["format"]) != CACHE_FORMAT or str(data["key"]) != key:
                raise ValueError("written for other settings")
            mu, sigma = data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
            feats = data["features"].astype(np.float64)
            total = int(data["total"])
        dim = feats.shape[1] if feats.ndim == 2 else -1
        if feats.shape != (num, dim) or mu.shape != (dim,) or sigma.shape != (dim, dim):
            raise ValueError("unexpected array shapes")
        if not (np.isfinite(mu).all() and np.isfinite(sigma).all() and np.isfinite(feats).all()):
            raise ValueError("non-finite values")
    except Exception as exc:  # truncated zip, garbage, missing entries, ...
        reason = " ".join(str(exc).split())[:100] or type(exc).__name__
        log(f"warning: real-image statistics cache {path} is unreadable ({reason}); "
            "rebuilding it")
        try:
            path.unlink()
        except OSError:
            pass
        return None
    return RealStatistics(mu, sigma, feats, num, total, path, cached=True)


def _write_cache(path: Path, key: str, stats: RealStatistics, log: Log) -> Path | None:
    feats = stats.features
    narrow = feats.astype(np.float32)
    stored = narrow if np.array_equal(narrow, feats) else feats  # Inception gives float32
    try:
        with atomic_write(path) as handle:
            np.savez(handle, format=np.array(CACHE_FORMAT), key=np.array(key),
                     mu=stats.mu, sigma=stats.sigma, features=stored,
                     total=np.array(stats.total))
    except GanvasError as exc:
        log(f"warning: cannot cache the real-image statistics ({exc}); they will be computed "
            "again next time (set GANVAS_CACHE to a writable folder)")
        return None
    return path


def real_statistics(data_spec: str, resolution: int, channels: int,
                    extractor: FeatureExtractor, num: int | None = None,
                    cache_dir: str | os.PathLike[str] | None = None, *, batch_size: int = 50,
                    progress: bool = True, log: Log = print, aspect: str | None = None,
                    fit: str = "crop") -> RealStatistics:
    """Features and mean/covariance of (up to ``num`` of) the real images, cached.

    The images are loaded as training loads them (``ganvas.data.load_images``) at the given
    resolution and channels (and a non-square run's ``aspect`` and ``fit``). With more
    than ``num`` images a fixed random subset is used.
    The result is cached as ``<cache_dir>/metrics/<name>-<key>.npz``, keyed by the sha256
    of the image bytes, the number used and ``extractor.identity``; ``cache_dir`` defaults to
    ``$GANVAS_CACHE`` or ``~/.cache/ganvas``. An unreadable cache file is rebuilt.
    """
    from ganvas.data import load_images

    extractor = _check_extractor(extractor)
    if num is not None:
        num = whole_number(num, "--num", 1, MAX_NUM)
    batch_size = whole_number(batch_size, "--batch-size", 1, 65_536)
    images = load_images(data_spec, resolution=resolution, channels=channels,
                         cache_dir=cache_dir, progress=progress, log=log, aspect=aspect,
                         fit=fit).images
    total = len(images)
    used = total if num is None else min(num, total)
    parts = [CACHE_FORMAT, images_digest(images), total, used, SUBSET_SEED, extractor.identity]
    key = hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()[:32]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(data_spec)).name or str(data_spec))
    path = _cache_root(cache_dir) / f"{slug.strip('._')[:40] or 'data'}-{used}-{key}.npz"

    hit = _read_cache(path, key, used, log)
    if hit is not None:
        return hit
    indices = subset_indices(total, used)
    chunks = []
    with tqdm(total=used, desc="real image features", unit="img", disable=not progress,
              dynamic_ncols=True) as bar:
        for start in range(0, used, batch_size):
            batch = images[indices[start:start + batch_size]]
            chunks.append(extract_features(extractor, batch))
            bar.update(len(batch))
    feats = np.concatenate(chunks)
    if used >= 2:
        mu, sigma = feature_statistics(feats)
    else:  # one image has no covariance; FID and KID refuse it later with a clear message
        mu, sigma = feats.mean(axis=0), np.zeros((feats.shape[1], feats.shape[1]))
    stats = RealStatistics(mu, sigma, feats, used, total, None, cached=False)
    stats.path = _write_cache(path, key, stats, log)
    return stats


def _metric_names(metrics: Any) -> list[str]:
    if isinstance(metrics, str):
        metrics = metrics.replace(",", " ").split()
    if not isinstance(metrics, Iterable):
        raise GanvasError(f"--metrics must be a list of {', '.join(METRICS)}")
    names: list[str] = []
    for name in metrics:
        name = str(name).strip().lower()
        if name not in METRICS:
            raise GanvasError(f"--metrics: unknown metric {name!r}; choose from "
                              f"{', '.join(METRICS)}")
        if name not in names:
            names.append(name)
    if not names:
        raise GanvasError(f"--metrics needs at least one of {', '.join(METRICS)}")
    return names


def _needed(names: list[str], pr_k: int) -> int:
    return max(pr_k + 1 if "pr" in names else 0, 2)


def evaluate(source: str | os.PathLike[str], data: str | None = None, num: int = 10_000,
             seed: int = 0, metrics: Iterable[str] = METRICS,
             inception: str | os.PathLike[str] | FeatureExtractor | None = None,
             device: str = "auto", batch_size: int = 50, progress: bool = True,
             log: Log = print, *, cache_dir: str | os.PathLike[str] | None = None,
             kid_subsets: int = 100, kid_subset_size: int = 1000,
             pr_k: int = 3) -> dict[str, Any]:
    """Score a generator against real images with FID, KID and precision/recall.

    Args:
        source: a run folder, a checkpoint file or an exported generator folder.
        data: the real images (``--data`` syntax); default: the run's own ``data``.
        num: generated images, and at most this many real images (a fixed subset of larger
            datasets). Published FIDs use 50,000; small values make FID biased upwards.
        seed: the seed of the generated images (the same as ``ganvas generate --seed``).
        metrics: any of ``"fid"``, ``"kid"`` (mean and std over ``kid_subsets`` subsets of
            ``kid_subset_size``) and ``"pr"`` (precision/recall, k = ``pr_k``).
        inception: path of the Inception weights, or any :class:`FeatureExtractor`;
            default: found as :mod:`ganvas.metrics.inception` describes.
        device, batch_size: where and in what batches images are generated and embedded.
        progress, log: progress bars and one-line messages.
        cache_dir: where real-image statistics are cached (default ``$GANVAS_CACHE``).

    Returns:
        ``{"fid", "kid_mean", "kid_std", "precision", "recall"}`` (those asked for; a
        conditional model's overall draw takes the classes in turn, and ``fid_per_class``
        maps each class to its FID against its own pictures) plus
        ``num_generated``, ``num_real``, ``data``, ``source``, ``step``, ``seed``,
        ``resolution``, ``channels`` and ``feature_extractor``.
    """
    import ganvas

    names = _metric_names(metrics)
    num = whole_number(num, "--num", 1, MAX_NUM)
    seed = whole_number(seed, "--seed", 0, MAX_SEED)
    batch_size = whole_number(batch_size, "--batch-size", 1, 65_536)
    pr_k = whole_number(pr_k, "pr_k", 1, 1000)
    kid_subsets = whole_number(kid_subsets, "kid_subsets", 1, 100_000)
    kid_subset_size = whole_number(kid_subset_size, "kid_subset_size", 2, MAX_NUM)
    needed = _needed(names, pr_k)
    if num < needed:
        raise GanvasError(f"--num must be at least {needed} for --metrics "
                          f"{' '.join(names)}, got {num}")
    if data is not None and (not isinstance(data, (str, os.PathLike)) or not str(data)):
        raise GanvasError(f"--data must be a folder or a built-in dataset name, got {data!r}")

    model = ganvas.load(source, device=device)
    config = model.config if isinstance(model.config, dict) else {}
    resolution, channels = config.get("resolution"), config.get("channels")
    if not isinstance(resolution, int) or not isinstance(channels, int):
        raise GanvasError(f"{source}: the run's config has no resolution/channels; it cannot "
                          "be evaluated")
    if data is None:
        data = config.get("data")
        if not isinstance(data, str) or not data:
            raise GanvasError(f"{source}: the run does not record its dataset; give --data")
    data = os.fspath(data)

    if inception is None or isinstance(inception, (str, os.PathLike)):
        extractor: FeatureExtractor = load_inception(inception, device=device,
                                                     batch_size=batch_size, log=log)
    else:
        extractor = _check_extractor(inception)

    real = real_statistics(data, resolution, channels, extractor, num=num, cache_dir=cache_dir,
                           batch_size=batch_size, progress=progress, log=log,
                           **picture_fit(config))
    if real.num < needed:
        raise GanvasError(f"--data {data}: has {real.num} image(s); --metrics "
                          f"{' '.join(names)} needs at least {needed}")
    log(f"real images: {real.num:,} of {real.total:,} from {data} "
        f"({'cached statistics' if real.cached else 'features computed'})")
    if channels == 4:
        log("note: transparent pictures (real and generated) are scored composited on white: "
            "the Inception network knows only opaque photographs")

    chunks = []
    with tqdm(total=num, desc="generated image features", unit="img", disable=not progress,
              dynamic_ncols=True) as bar:
        for batch in model.batches(num, seed, batch_size):  # never all images at once
            chunks.append(extract_features(extractor, batch))
            bar.update(len(batch))
    fake = np.concatenate(chunks)
    if fake.shape[1] != real.features.shape[1]:
        raise GanvasError(f"{extractor.identity}: generated and real features differ in size "
                          f"({fake.shape[1]} vs {real.features.shape[1]})")

    result: dict[str, Any] = {}
    if "fid" in names:
        result["fid"] = frechet_distance_to(fake, real.mu, real.sigma)
        if model.classes:  # a conditional model: each class against its own pictures
            result["fid_per_class"] = fid_per_class(
                model, data, extractor, num, seed, batch_size=batch_size,
                cache_dir=cache_dir, progress=progress, log=log)
    if "kid" in names:
        result["kid_mean"], result["kid_std"] = kernel_inception_distance(
            fake, real.features, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    if "pr" in names:
        result["precision"], result["recall"] = precision_recall(real.features, fake, k=pr_k)
    if channels == 4:
        result["composited_on"] = "white"
    result.update(num_generated=len(fake), num_real=real.num, data=data, source=str(source),
                  step=int(model.step), seed=seed, resolution=resolution, channels=channels,
                  feature_extractor=extractor.identity)
    return result


# ---- a conditional model: FID per class ----------------------------------------------------

MIN_PER_CLASS = 2  # a covariance needs two pictures


def fid_per_class(model: Any, data: str, extractor: Any, num: int, seed: int, *,
                  batch_size: int, cache_dir: Any, progress: bool,
                  log: Callable[[str], None]) -> dict[str, float]:
    """``{class name: FID}``: ``num // classes`` generated pictures of each class (the
    latents of ``seed``) against at most ``num`` real pictures of it, in the run's own
    preprocessing. Classes with fewer than two pictures on either side are left out, and
    said."""
    from ganvas.data import load_images

    loaded = load_images(data, resolution=model.generator.resolution,
                         channels=model.generator.channels, cache_dir=cache_dir,
                         progress=progress, log=lambda message: None,
                         classes=model.classes, **picture_fit(model.config))
    per_class = num // len(model.classes)
    scores: dict[str, float] = {}
    skipped = []
    bar = tqdm(total=per_class * len(model.classes), desc="FID per class", unit="img",
               disable=not progress, dynamic_ncols=True)
    with bar:
        for index, name in enumerate(model.classes):
            pictures = np.flatnonzero(loaded.labels == index)
            pictures = pictures[subset_indices(len(pictures), min(num, len(pictures)))]
            if per_class < MIN_PER_CLASS or len(pictures) < MIN_PER_CLASS:
                skipped.append(name)
                continue
            real = np.concatenate([extract_features(extractor, loaded.images[np.sort(part)])
                                   for part in np.array_split(
                                       pictures, max(1, len(pictures) // batch_size))])
            fake = []
            for batch in model.batches(per_class, seed, batch_size, label=index):
                fake.append(extract_features(extractor, batch))
                bar.update(len(batch))
            mu, sigma = feature_statistics(real)
            scores[name] = frechet_distance_to(np.concatenate(fake), mu, sigma)
    if skipped:
        log(f"note: no FID for class{'es' if len(skipped) > 1 else ''} {', '.join(skipped)}: "
            f"fewer than {MIN_PER_CLASS} pictures (give a larger --num, at least "
            f"{MIN_PER_CLASS * len(model.classes)})")
    return scores
