"""Real images kept out of training, so that memorising can be told apart from learning.

A discriminator that has learnt what the pictures look like scores unseen real pictures like
the ones it trains on; one that has memorised its training set scores them like generated
ones. The health monitor compares the two (see ``ganvas.health``).
"""

from __future__ import annotations

import numpy as np

from ganvas.errors import GanvasError
from ganvas.rng import HOLDOUT, numpy_stream

MAX_AUTO = 256  # enough for a steady average; more would only take pictures from training
SMALL_SET = 10  # below this every picture trains


def auto_holdout(count: int) -> int:
    """5 % of the images, at least 2 and at most ``MAX_AUTO``; none for a tiny set."""
    if count < SMALL_SET:
        return 0
    return max(2, min(MAX_AUTO, count // 20))


def split_indices(count: int, holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, held-out indices), each sorted; the choice depends only on the
    seed and the number of images."""
    if holdout > count - 1:
        raise GanvasError(f"--holdout {holdout} leaves no image to train on: the data holds "
                          f"{count}; use a smaller --holdout (or 0)")
    if holdout == 0:
        return np.arange(count), np.arange(0)
    order = numpy_stream(seed, HOLDOUT).permutation(count)
    return np.sort(order[holdout:]), np.sort(order[:holdout])
