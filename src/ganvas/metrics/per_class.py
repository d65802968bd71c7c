"""FID per class for a class-conditional generator (``ganvas eval`` on a ``--conditional``
run): each class's generated pictures against the real pictures of that class."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from tqdm import tqdm

from ganvas.metrics.statistics import feature_statistics, frechet_distance_to

MIN_PER_CLASS = 2  # a covariance needs two pictures


def fid_per_class(model: Any, data: str, extractor: Any, num: int, seed: int, *,
                  batch_size: int, cache_dir: Any, progress: bool,
                  log: Callable[[str], None]) -> dict[str, float]:
    """``{class name: FID}``: ``num // classes`` generated pictures of each class (the
    latents of ``seed``) against at most ``num`` real pictures of it, in the run's own
    preprocessing. Classes with fewer than two pictures on either side are left out, and
    said."""
    from ganvas.data import load_images
    from ganvas.metrics.evaluation import extract_features, subset_indices

    loaded = load_images(data, resolution=model.generator.resolution,
                         channels=model.generator.channels, cache_dir=cache_dir,
                         progress=progress, log=lambda message: None,
                         classes=model.classes)
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
