"""The metrics' mathematics on feature vectors, in float64: FID, KID, precision/recall.

Nothing here knows about Inception; any ``[N, D]`` features work, which keeps the tests fast.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ganvas.errors import GanvasError

# Elements of one block of the distance matrix (float64): 2**24 is 128 MB, so 10k x 10k
# features are compared in a few slices instead of one 800 MB matrix.
DISTANCE_BLOCK = 1 << 24


def _features(feats: Any, name: str, minimum: int) -> np.ndarray:
    array = np.asarray(feats, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] < 1:
        raise GanvasError(f"{name} must be a 2-d array [N, D], got shape {list(array.shape)}")
    if len(array) < minimum:
        raise GanvasError(f"{name} has {len(array)} sample(s); this metric needs at least "
                          f"{minimum}; use a larger --num")
    if not np.isfinite(array).all():
        raise GanvasError(f"{name} contains NaN or infinite values; check the images and the "
                          "feature network")
    return array


def _same_dim(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise GanvasError(f"{what}: feature sizes differ ({a.shape[1]} vs {b.shape[1]})")


def feature_statistics(feats: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and covariance ``[D, D]`` (unbiased, N - 1) of ``[N, D]`` features."""
    array = _features(feats, "features", 2)
    return array.mean(axis=0), np.cov(array, rowvar=False).reshape(array.shape[1], -1)


def _root_eigenvalues(values: np.ndarray) -> np.ndarray:
    """Square roots of a PSD matrix's eigenvalues; rounding noise around zero becomes 0.

    Eigenvalues below ``D * eps * max`` are numerically zero (e.g. the covariance of fewer
    samples than dimensions); their noise would otherwise add ``sqrt(noise)`` each.
    """
    floor = len(values) * np.finfo(np.float64).eps * max(float(np.abs(values).max()), 0.0)
    return np.sqrt(np.where(values > floor, values, 0.0))


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * _root_eigenvalues(values)) @ vectors.T


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Fréchet distance of two Gaussians: ``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``.

    No scipy: ``S1 S2`` has the eigenvalues of the symmetric PSD matrix
    ``M = S1^(1/2) S2 S1^(1/2)`` (``AB`` and ``BA`` share their eigenvalues), so
    ``Tr((S1 S2)^(1/2))`` is the sum of the square roots of M's eigenvalues. Both
    eigendecompositions are symmetric (``eigh``), in float64, and rounding noise (tiny
    negative eigenvalues, a result of -1e-12) is treated as zero.
    """
    mu1, mu2 = (np.asarray(m, dtype=np.float64).reshape(-1) for m in (mu1, mu2))
    s1, s2 = (np.atleast_2d(np.asarray(s, dtype=np.float64)) for s in (sigma1, sigma2))
    d = len(mu1)
    if len(mu2) != d or s1.shape != (d, d) or s2.shape != (d, d):
        raise GanvasError(f"frechet_distance: shapes do not fit: mu {len(mu1)} and {len(mu2)}, "
                          f"sigma {list(s1.shape)} and {list(s2.shape)}")
    for array in (mu1, mu2, s1, s2):
        if not np.isfinite(array).all():
            raise GanvasError("frechet_distance: the statistics contain NaN or infinite "
                              "values; check the images and the feature network")
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
    root1 = _sqrtm_psd(s1)
    middle = root1 @ s2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = float(_root_eigenvalues(eigenvalues).sum())
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt)
    return max(value, 0.0)


def frechet_distance_to(features: Any, mu: Any, sigma: Any) -> float:
    """:func:`frechet_distance` between the Gaussian of ``[N, D]`` features and ``(mu, sigma)``.

    With fewer samples than dimensions (a quick FID of a few hundred images against 2048
    Inception features) the samples' covariance is ``Xc^T Xc / (N - 1)`` for the centred
    features ``Xc``, and the nonzero eigenvalues of ``S S2`` are those of the small ``N x N``
    matrix ``Xc S2 Xc^T / (N - 1)``: the same value, without two ``D x D`` eigendecompositions.
    """
    array = _features(features, "features", 2)
    n, d = array.shape
    sigma2 = np.atleast_2d(np.asarray(sigma, dtype=np.float64))
    mu2 = np.asarray(mu, dtype=np.float64).reshape(-1)
    if n > d or n < 2 or sigma2.shape != (d, d) or len(mu2) != d \
            or not (np.isfinite(sigma2).all() and np.isfinite(mu2).all()):
        return frechet_distance(*feature_statistics(array), mu2, sigma2)  # (it words errors)
    centred = array - array.mean(axis=0)
    sigma2 = (sigma2 + sigma2.T) / 2
    small = centred @ sigma2 @ centred.T / (n - 1)
    trace_sqrt = float(_root_eigenvalues(np.linalg.eigvalsh((small + small.T) / 2)).sum())
    diff = array.mean(axis=0) - mu2
    own_trace = float((centred * centred).sum()) / (n - 1)
    value = float(diff @ diff + own_trace + np.trace(sigma2) - 2.0 * trace_sqrt)
    return max(value, 0.0)


def fid_from_features(feats_a: Any, feats_b: Any) -> float:
    """FID between two ``[N, D]`` feature sets."""
    return frechet_distance(*feature_statistics(feats_a), *feature_statistics(feats_b))


def _count(value: Any, name: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise GanvasError(f"{name} must be a whole number >= {minimum}, got {value!r:.40}")
    return value


def kernel_inception_distance(feats_a: Any, feats_b: Any, subsets: int = 100,
                              subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID: the unbiased MMD^2 with the kernel ``k(x, y) = (x.y / D + 1)^3``.

    Averaged over ``subsets`` random pairs of subsets of ``subset_size`` samples (clipped to
    the smaller set; drawn without replacement within a subset). Returns ``(mean, std)`` over
    the subsets. Unbiased means it can be slightly negative when the sets match.
    """
    a = _features(feats_a, "feats_a", 2)
    b = _features(feats_b, "feats_b", 2)
    _same_dim(a, b, "kernel_inception_distance")
    subsets = _count(subsets, "subsets")
    m = min(len(a), len(b), _count(subset_size, "subset_size", 2))
    dim = a.shape[1]
    rng = np.random.default_rng(seed)
    values = np.empty(subsets, dtype=np.float64)
    for i in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx = (x @ x.T / dim + 1.0) ** 3
        kyy = (y @ y.T / dim + 1.0) ** 3
        kxy = (x @ y.T / dim + 1.0) ** 3
        same = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values[i] = same - 2.0 * kxy.mean()
    return float(values.mean()), float(values.std())


def _blocks(rows: int, columns: int) -> range:
    step = max(1, min(rows, DISTANCE_BLOCK // max(columns, 1)))
    return range(0, rows, step)


def knn_radii(feats: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each sample to its k-th nearest other sample (itself excluded)."""
    radii = torch.empty(len(feats), dtype=feats.dtype)
    starts = _blocks(len(feats), len(feats))
    for start in starts:
        stop = min(start + starts.step, len(feats))
        distances = torch.cdist(feats[start:stop], feats)
        # The sample itself is at distance 0, the smallest: the (k+1)-th value skips it.
        radii[start:stop] = distances.kthvalue(k + 1, dim=1).values
    return radii


def precision_recall(real_feats: Any, fake_feats: Any, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds.

    Each sample's manifold ball reaches its k-th nearest neighbour in its own set.
    Precision is the share of fake samples inside at least one real ball (fidelity); recall
    the share of real samples inside at least one fake ball (coverage). Distances are in
    float64, in row blocks so 10k x 10k sets need about 128 MB at a time; the real-fake
    distances are computed once and serve both directions.
    """
    k = _count(k, "k")
    real = torch.from_numpy(_features(real_feats, "real_feats", k + 1))
    fake = torch.from_numpy(_features(fake_feats, "fake_feats", k + 1))
    _same_dim(real.numpy(), fake.numpy(), "precision_recall")
    real_radii, fake_radii = knn_radii(real, k), knn_radii(fake, k)
    fake_inside = torch.zeros(len(fake), dtype=torch.bool)
    real_covered = torch.zeros(len(real), dtype=torch.bool)
    starts = _blocks(len(fake), len(real))
    for start in starts:
        stop = min(start + starts.step, len(fake))
        distances = torch.cdist(fake[start:stop], real)  # [block, n_real]
        fake_inside[start:stop] = (distances <= real_radii[None, :]).any(dim=1)
        real_covered |= (distances <= fake_radii[start:stop, None]).any(dim=0)
    return float(fake_inside.double().mean()), float(real_covered.double().mean())
