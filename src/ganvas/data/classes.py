"""Classes for conditional training (``--conditional``): the first level of a folder's
subfolders (``pets/cats/*.png``, ``pets/dogs/*.png``), or a built-in dataset's own labels.

The class names are fixed in the run's config before any picture is decoded (the networks'
shapes depend on their number), so a resumed run keeps its classes whatever the folder
holds by then; the pictures are then labelled by those names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ganvas.errors import GanvasError

#: A class with fewer pictures than this trains, with a warning: it will be drawn poorly.
FEW_PICTURES = 10
#: Built-in datasets that carry labels: their class names, in label order.
BUILTIN_CLASSES = {
    "digits": tuple(str(d) for d in range(10)),
    "mnist": tuple(str(d) for d in range(10)),
    "fashion-mnist": ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                      "sneaker", "bag", "ankle-boot"),
}
LOOSE = -1  # the label of a picture at the top of the folder, in no class


def class_of(rel: str) -> str | None:
    """The class of a file at ``rel`` (relative to the data folder, '/'-separated): its
    first folder, or None for a file at the top level."""
    head, sep, _ = rel.partition("/")
    return head if sep else None


def folder_class_names(rels: Sequence[str]) -> tuple[str, ...]:
    """The classes of a folder's image files, sorted by name."""
    return tuple(sorted({name for rel in rels if (name := class_of(rel)) is not None}))


def label_files(rels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Each file's class index in ``classes`` (``LOOSE`` for a file in none of them)."""
    index = {name: i for i, name in enumerate(classes)}
    return np.array([index.get(class_of(rel), LOOSE) for rel in rels], dtype=np.int64)


def check_class_names(classes: Sequence[str], label: str) -> None:
    """One line for data that cannot train a conditional model."""
    if not classes:
        raise GanvasError(f"--conditional: {label} has no subfolders; put each class's "
                          "pictures in a subfolder of its own (cats/, dogs/, ...)")
    if len(classes) == 1:
        raise GanvasError(f"--conditional: {label} has a single class ({classes[0]!r}); "
                          "a conditional model needs at least two subfolders of pictures")


def report_classes(classes: Sequence[str], labels: np.ndarray, label: str,
                   log: Callable[[str], None]) -> None:
    """Print each class with its count; warn about thin classes and loose files."""
    counts = np.bincount(labels[labels >= 0], minlength=len(classes))
    shown = ", ".join(f"{name} {count:,}" for name, count in zip(classes, counts))
    log(f"classes of {label}: {shown}")
    thin = [name for name, count in zip(classes, counts) if count < FEW_PICTURES]
    if thin:
        log(f"warning: class{'es' if len(thin) > 1 else ''} {', '.join(thin)} "
            f"{'have' if len(thin) > 1 else 'has'} fewer than {FEW_PICTURES} pictures: "
            "the model will draw them poorly")
    loose = int((labels == LOOSE).sum())
    if loose:
        log(f"note: {loose:,} picture(s) at the top of {label} are in no class and are left "
            "out of conditional training (move them into a class's subfolder)")


def grid_labels(num_samples: int, classes: int) -> tuple[list[int], int]:
    """The layout of a conditional run's sample grids: one row per class (the first
    ``num_samples`` classes when there are more), as many columns as ``num_samples`` allows
    (at most 16); the class of each tile, and the number of columns. The tiles draw the
    first of the run's fixed latents."""
    rows = max(1, min(classes, num_samples))
    columns = max(1, min(16, num_samples // rows))
    return [i // columns for i in range(rows * columns)], columns


def one_hot(labels: np.ndarray | Sequence[int], count: int):
    """``[N, count]`` float one-hot rows for class indices (the ``c`` of the sampling
    contract)."""
    import torch

    index = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    return torch.nn.functional.one_hot(index, count).float()
