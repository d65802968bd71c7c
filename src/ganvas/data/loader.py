"""Deterministic, resumable batches drawn from an in-memory (or memory-mapped) image array.

The order of images is a pure function of (seed, epoch), so the loader's whole state is
one integer: how many samples it has handed out. Saving that integer in a checkpoint is
enough to resume mid-epoch with exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import numpy as np
import torch


class BatchStream:
    """Endless stream of training batches.

    Args:
        images: uint8 array ``[N, C, H, W]`` (may be a read-only memmap).
        batch_size: images per batch unless ``next`` asks for another number. May exceed
            ``N``: batches then span epochs.
        seed: seeds the per-epoch shuffles and mirror flips.
        mirror: flip half of the images horizontally (a fresh choice every epoch).
        device: where the returned batches live.
        indices: the images of ``images`` to train on (default all; the rest are held out).
        labels: each image's class index (int64 ``[N]``, indexed like ``images``) for a
            conditional run of ``classes`` classes; :meth:`next_labelled` then returns the
            batch's labels too, one-hot.

    The stream is the concatenation of one random permutation per epoch; each batch takes the
    next samples of it, so no image is dropped or repeated within an epoch, whatever the
    batch sizes.
    """

    def __init__(
        self,
        images: np.ndarray,
        batch_size: int,
        *,
        seed: int,
        mirror: bool = False,
        device: torch.device | str = "cpu",
        indices: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        classes: int = 0,
    ):
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.classes = classes
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        self.count = len(images) if self.indices is None else len(self.indices)
        if self.count == 0:
            raise ValueError("BatchStream needs at least one image")
        self.images = images
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.mirror = mirror
        self.device = torch.device(device)
        self.position = 0  # samples handed out so far
        self._epoch_cache: tuple[int, np.ndarray, np.ndarray] | None = None

    @property
    def epoch(self) -> float:
        """Fractional number of passes over the data so far."""
        return self.position / self.count

    def _epoch_plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(self.count)
            flips = rng.random(self.count) < 0.5 if self.mirror else np.zeros(0, bool)
            self._epoch_cache = (epoch, order, flips)
        return self._epoch_cache[1], self._epoch_cache[2]

    def next_indices(self, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the next batch (``size`` images, default ``batch_size``) and, per
        image, whether to mirror it."""
        n = self.count
        indices, flips = [], []
        start, remaining = self.position, int(size or self.batch_size)
        while remaining:
            epoch, offset = divmod(start, n)
            order, epoch_flips = self._epoch_plan(epoch)
            take = min(remaining, n - offset)
            indices.append(order[offset : offset + take])
            if self.mirror:
                flips.append(epoch_flips[offset : offset + take])
            start += take
            remaining -= take
        self.position = start
        idx = np.concatenate(indices)
        return idx, (np.concatenate(flips) if self.mirror else np.zeros(len(idx), bool))

    def next(self, size: int | None = None, part: tuple[int, int] = (0, 1)) -> torch.Tensor:
        """The next batch as float ``[B, C, H, W]`` in ``[-1, 1]`` on ``device``; ``size``
        images (a schedule may change it between batches), default ``batch_size``.

        ``part=(index, count)``: the batch is one of ``count`` equal parts of a batch of
        ``count * size`` images, and the stream moves past all of them: ``count`` processes
        asking for their part each receive their slice of the same global order.
        """
        return self.next_labelled(size, part)[0]

    def next_labelled(self, size: int | None = None, part: tuple[int, int] = (0, 1)
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`next`, with the batch's labels (float one-hot ``[B, classes]`` on the CPU;
        None without ``labels``)."""
        index, count = part
        size = int(size or self.batch_size)
        idx, flips = self.next_indices(size * count)
        if count > 1:
            mine = slice(index * size, (index + 1) * size)
            idx, flips = idx[mine], flips[mine]
        if self.indices is not None:
            idx = self.indices[idx]
        # Sorted reads are kinder to a memory-mapped file; restore the order afterwards.
        sort = np.argsort(idx, kind="stable")
        batch = np.empty((len(idx), *self.images.shape[1:]), dtype=np.uint8)
        batch[sort] = self.images[idx[sort]]
        if flips.any():
            batch[flips] = batch[flips, :, :, ::-1]
        tensor = torch.from_numpy(batch)
        if self.device.type == "cuda":
            tensor = tensor.pin_memory().to(self.device, non_blocking=True)
        else:
            tensor = tensor.to(self.device)
        labels = (None if self.labels is None else torch.nn.functional.one_hot(
            torch.from_numpy(self.labels[idx]), self.classes).float())
        return tensor.float().div_(127.5).sub_(1.0), labels

    def state_dict(self) -> dict:
        return {"position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        position, seed = state["position"], state["seed"]
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63
                   for v in (position, seed)):
            raise ValueError(f"data position {position!r:.30} or seed {seed!r:.30} out of range")
        self.position, self.seed = position, seed
