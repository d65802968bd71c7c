"""Is the model copying its training pictures? Each sample beside its nearest training images.

Samples and training images are compared on Inception features (the ones FID uses), or on
any other feature extractor's, by cosine distance. The yardstick is the training set itself:
how far each training image is from its own nearest neighbour among the others. A sample
much closer to a training image than training images usually are to each other is likely a
copy of it (a near-duplicate pair in the data shows up the same way, so look at the picture).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ganvas.errors import GanvasError
from ganvas.metrics.evaluation import extract_features, real_statistics
from ganvas.metrics.inception import FeatureExtractor, load_inception
from ganvas.picture_size import picture_fit
from ganvas.utils.checks import whole_number
from ganvas.utils.images import make_grid

MAX_SAMPLES = 256
MAX_NEIGHBOURS = 32
# A sample nearer its closest training image than this fraction of the training images are
# to their own nearest neighbour counts as a likely copy.
COPY_PERCENTILE = 5.0


@dataclass
class NearestResult:
    """Attributes:
        samples: the generated images ``[N, C, R, R]`` in ``[-1, 1]``.
        neighbours: indices of each sample's nearest training images ``[N, K]``.
        distances: their cosine distances ``[N, K]`` (0: the same features).
        training_nearest: each training image's distance to its nearest other one.
        threshold: the ``COPY_PERCENTILE`` percentile of ``training_nearest``.
        picture: one row per sample: the sample, then its neighbours, nearest first.
        space: the features compared, in words.
    """

    samples: torch.Tensor
    neighbours: np.ndarray
    distances: np.ndarray
    training_nearest: np.ndarray
    threshold: float
    picture: Image.Image
    space: str = "Inception features"

    @property
    def likely_copies(self) -> list[int]:
        """Samples whose nearest training image is closer than the threshold."""
        return [i for i, d in enumerate(self.distances[:, 0]) if d < self.threshold]

    def summary(self) -> str:
        median = float(np.median(self.training_nearest))
        lines = [f"nearest training image of each sample (cosine distance on {self.space}; "
                 f"training images are {median:.3f} from their own nearest "
                 f"neighbour at the median, {self.threshold:.3f} at the "
                 f"{COPY_PERCENTILE:g}th percentile):"]
        for i, (index, distance) in enumerate(zip(self.neighbours[:, 0], self.distances[:, 0])):
            flag = "  <- likely a copy" if distance < self.threshold else ""
            lines.append(f"  sample {i}: training image {index} at {distance:.3f}{flag}")
        copies = self.likely_copies
        lines.append(f"{len(copies)} of {len(self.distances)} samples look copied from the "
                     "training set" if copies else
                     "no sample is closer to a training image than training images are to "
                     "each other: no sign of copying")
        return "\n".join(lines)


def cosine_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / (np.linalg.norm(a, axis=1, keepdims=True) + 1e-12)
    b = b / (np.linalg.norm(b, axis=1, keepdims=True) + 1e-12)
    return np.clip(1.0 - a @ b.T, 0.0, 2.0)


def nearest_other(features: np.ndarray, block: int = 1024) -> np.ndarray:
    """Each row's cosine distance to its nearest other row, a block of rows at a time (the
    whole matrix of a 70,000-image set would not fit in memory)."""
    unit = (features / (np.linalg.norm(features, axis=1, keepdims=True) + 1e-12)
            ).astype(np.float32)
    nearest = np.empty(len(unit))
    for start in range(0, len(unit), block):
        similarity = unit[start:start + block] @ unit.T
        rows = np.arange(len(similarity))
        similarity[rows, start + rows] = -np.inf  # not itself
        nearest[start:start + block] = np.clip(1.0 - similarity.max(axis=1), 0.0, 2.0)
    return nearest


def nearest_training_images(source: str | os.PathLike, *, data: str | None = None,
                            num: int = 8, k: int = 4, seed: int = 0,
                            inception: str | os.PathLike | FeatureExtractor | None = None,
                            device: str = "auto", truncation: float = 1.0,
                            truncation_cutoff: int | None = None, noise_mode: str = "const",
                            progress: bool = True, log=print) -> NearestResult:
    """``num`` samples of ``source`` (seed ``seed``, drawn as ``ganvas generate`` draws them
    with the same truncation and noise), each with its ``k`` nearest images of the training
    data (default: the run's own ``data``)."""
    import ganvas
    from ganvas.data import load_images

    num = whole_number(num, "--num", 1, MAX_SAMPLES)
    k = whole_number(k, "--nearest", 1, MAX_NEIGHBOURS)
    model = ganvas.load(source, device=device, truncation=truncation,
                        truncation_cutoff=truncation_cutoff, noise_mode=noise_mode)
    config = model.config if isinstance(model.config, dict) else {}
    resolution, channels = config.get("resolution"), config.get("channels")
    data = data if data is not None else config.get("data")
    if not isinstance(data, (str, os.PathLike)) or not str(data):
        raise GanvasError(f"{source}: the run does not record its training data; give --data")
    if isinstance(inception, FeatureExtractor):
        extractor = inception
    else:
        extractor = load_inception(inception, device=device, log=log)
    real = real_statistics(os.fspath(data), resolution, channels, extractor, num=None,
                           progress=progress, log=log, **picture_fit(config))
    if real.num < 2:
        raise GanvasError(f"--data {data}: needs at least 2 training images to compare with")
    k = min(k, real.num)
    images = load_images(os.fspath(data), resolution=resolution, channels=channels,
                         progress=False, log=lambda message: None, **picture_fit(config)
                         ).images  # the same arrays again, from the cache
    samples = model.sample_tensor(num, seed)
    features = extract_features(extractor, samples)
    reference = real.features
    if getattr(extractor, "centred", False):
        # Features that share a large common part (all positive, as after a ReLU) are compared
        # by what sets them apart: the training set's mean taken off both.
        mean = reference.mean(axis=0)
        features, reference = features - mean, reference - mean
    distances = cosine_distances(features, reference)
    neighbours = np.argsort(distances, axis=1, kind="stable")[:, :k]
    chosen = np.take_along_axis(distances, neighbours, axis=1)
    training_nearest = nearest_other(reference)
    threshold = float(np.percentile(training_nearest, COPY_PERCENTILE))
    # uint8 [N, C, R, R], as training sees them
    shown = torch.from_numpy(np.asarray(images[neighbours.ravel()])).float() / 127.5 - 1
    rows = torch.cat([torch.cat([samples[i:i + 1], shown[i * k:(i + 1) * k]])
                      for i in range(num)])
    return NearestResult(samples, neighbours, chosen, training_nearest, threshold,
                         make_grid(rows, columns=k + 1),
                         getattr(extractor, "description", "Inception features"))
