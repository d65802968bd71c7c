"""The class labels of a conditional run (``--conditional``): the real pictures' labels as
the loop hands them out, the labels generated pictures are drawn with, and the fixed ones
the sample grids and the monitor use."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ganvas.data.classes import grid_labels
from ganvas.rng import LABELS, per_sample, stream


class RunLabels:
    """Labels of a run on ``classes`` classes whose pictures are labelled ``labels``
    (int64, one per picture of the data, ``-1``: in no class) and trained on
    ``train_indices``.

    Attributes:
        rng: the stream the generated pictures' labels are drawn from (saved in checkpoints).
        grid: one-hot labels of the sample grids' tiles (a row per class) and ``columns``.
    """

    def __init__(self, classes: int, labels: np.ndarray, train_indices: np.ndarray, *,
                 seed: int, num_samples: int):
        self.classes = classes
        self.labels = labels
        # sorted, so evenly spaced picks follow the classes' proportions
        self.pool = torch.from_numpy(np.sort(labels[train_indices]))
        self.rng = stream(seed, LABELS)
        tiles, self.columns = grid_labels(num_samples, classes)
        self.grid = self.one_hot(torch.tensor(tiles))

    def one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        """Class indices -> one-hot float rows (the ``c`` of the sampling contract)."""
        return torch.nn.functional.one_hot(labels, self.classes).float()

    def generated(self, n: int) -> torch.Tensor:
        """Labels for ``n`` generated pictures (this process's share of the global batch):
        the classes of training pictures drawn at random, so each class is generated as
        often as it is shown (stylegan2-ada's way)."""
        picks = per_sample(lambda m: torch.randint(len(self.pool), (m,), generator=self.rng),
                           n)
        return self.one_hot(self.pool[picks])

    def typical(self, n: int) -> torch.Tensor:
        """Labels for ``n`` pictures in the proportions of the training pictures, evenly
        spaced through their sorted labels (no randomness): what FID and the monitor draw."""
        return self.one_hot(self.pool[torch.arange(n) * len(self.pool) // n])

    def of_pictures(self, indices: Any) -> torch.Tensor:
        """The one-hot labels of the data's pictures ``indices``."""
        return self.one_hot(torch.from_numpy(self.labels[indices]))
