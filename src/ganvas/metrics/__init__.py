"""Sample-quality metrics: FID, KID and precision/recall on Inception features.

Quick start::

    from ganvas.metrics import evaluate
    scores = evaluate("runs/00000-digits-dcgan-28px", num=10_000)
    print(scores["fid"], scores["kid_mean"], scores["precision"], scores["recall"])

The Inception weights are found offline when possible (see :mod:`ganvas.metrics.inception`).
"""

from ganvas.metrics.evaluation import METRICS, RealStatistics, evaluate, real_statistics
from ganvas.metrics.inception import (
    FeatureExtractor,
    InceptionExtractor,
    load_inception,
    preprocess,
    resolve_weights,
)
from ganvas.metrics.statistics import (
    feature_statistics,
    fid_from_features,
    frechet_distance,
    frechet_distance_to,
    kernel_inception_distance,
    precision_recall,
)

__all__ = [
    "METRICS",
    "FeatureExtractor",
    "InceptionExtractor",
    "RealStatistics",
    "evaluate",
    "feature_statistics",
    "fid_from_features",
    "frechet_distance",
    "frechet_distance_to",
    "kernel_inception_distance",
    "load_inception",
    "precision_recall",
    "preprocess",
    "real_statistics",
    "resolve_weights",
]
