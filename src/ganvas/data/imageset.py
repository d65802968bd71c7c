"""The in-memory (or memory-mapped) result of loading a dataset."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ImageSet:
    """Preprocessed images, ready for training.

    ``images`` is ``uint8 [N, C, H, W]`` (channels first, H == W == resolution) and may be a
    read-only ``np.memmap`` of the dataset cache. ``labels`` (int64 ``[N]``), when the data
    was loaded for conditional training, is each image's class index (``-1``: in no class).
    """

    images: np.ndarray
    source: str
    skipped: int = 0
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])
