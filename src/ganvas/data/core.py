"""``load_images``: the single entry point that turns ``--data`` into an :class:`ImageSet`."""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ganvas.data.builtin import BUILTIN_DATASETS, load_digits, load_idx_dataset, parse_builtin
from ganvas.data.cache import DatasetCache, resolve_cache_dir
from ganvas.data.classes import (
    BUILTIN_CLASSES,
    check_class_names,
    folder_class_names,
    report_classes,
)
from ganvas.data.emoji import load_emoji
from ganvas.data.folder import default_workers, load_folder, scan_folder
from ganvas.data.imageset import ImageSet
from ganvas.errors import GanvasError
from ganvas.picture_size import FITS, aspect_factors, size_label


def _as_int(value: object, option: str, requirement: str) -> int:
    if isinstance(value, bool):
        raise GanvasError(f"{option} must be {requirement}, got {value!r}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise GanvasError(f"{option} must be {requirement}, got {value!r}") from None


# Sizes of the built-in datasets (emoji: the Debian font's count), for settings chosen from
# the size of the data before it is decoded.
BUILTIN_SIZES = {("digits", None): 1_797, ("mnist", "train"): 60_000, ("mnist", "test"): 10_000,
                 ("fashion-mnist", "train"): 60_000, ("fashion-mnist", "test"): 10_000,
                 ("emoji", None): 3_926}


def count_images(spec: str) -> int | None:
    """About how many images ``--data spec`` holds, without decoding any: a built-in's size,
    or the image files of a folder. None when it cannot tell (the data's loader will say
    why)."""
    try:
        builtin = parse_builtin(str(spec))
    except GanvasError:
        return None
    if builtin is not None:
        name, split = builtin
        return BUILTIN_SIZES.get((name, split if name not in ("digits", "emoji") else None),
                                 BUILTIN_SIZES.get((name, "train")))
    folder = Path(os.path.expanduser(str(spec)))
    if not folder.is_dir():
        return None
    try:
        return len(scan_folder(folder).files)
    except OSError:
        return None


def check_data_source(spec: str) -> Path | None:
    """The folder ``--data spec`` names (None for a built-in dataset); the one-line error
    for a folder that is not there or a file, before any work (``--dry-run`` and the
    studio's check say it too)."""
    if parse_builtin(str(spec)) is not None:
        return None
    label = repr(str(spec))
    folder = Path(os.path.expanduser(str(spec))) if spec else None
    if folder is None or not folder.exists():
        raise GanvasError(
            f"--data {label}: no such folder, and not a built-in dataset "
            f"({', '.join(BUILTIN_DATASETS)})"
        )
    if not folder.is_dir():
        raise GanvasError(
            f"--data {label} is a file; give a folder of images or a built-in name "
            f"({', '.join(BUILTIN_DATASETS)})"
        )
    return folder


def data_classes(spec: str) -> tuple[str, ...]:
    """The classes ``--data spec`` holds for ``--conditional``, without decoding a picture;
    a GanvasError for data that has none."""
    builtin = parse_builtin(str(spec))
    if builtin is not None:
        name = builtin[0]
        if name not in BUILTIN_CLASSES:
            raise GanvasError(f"--conditional: the built-in dataset {name} has no classes; "
                              f"use {', '.join(BUILTIN_CLASSES)} or a folder with one "
                              "subfolder per class")
        return BUILTIN_CLASSES[name]
    folder = Path(os.path.expanduser(str(spec)))
    if not folder.is_dir():
        return ()  # the data's loader says why in its own words
    try:
        classes = folder_class_names([f.rel for f in scan_folder(folder).files])
    except OSError:
        return ()
    check_class_names(classes, repr(str(spec)))
    return classes


def load_images(
    spec: str,
    *,
    resolution: int,
    channels: int,
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    max_image_pixels: int = 128_000_000,
    progress: bool = True,
    log: Callable[[str], None] = print,
    classes: Sequence[str] | None = None,
    aspect: str | None = None,
    fit: str = "crop",
) -> ImageSet:
    """Load ``spec`` (a folder of images or a built-in dataset name) as ``uint8 [N,C,R,R]``
    (``[N, C, H, W]`` for a non-square ``aspect`` such as "2:1", fitted by ``fit``: crop
    or pad; folders only).

    Folder results and resized built-ins are cached under ``<cache_dir>/datasets/``;
    ``cache_dir`` defaults to ``$GANVAS_CACHE`` or ``~/.cache/ganvas``. With ``classes``
    (from :func:`ganvas.data.classes.data_classes`), every image is labelled with its class
    (``ImageSet.labels``), and the classes are printed with their counts.
    """
    loaded = _load_images(spec, resolution=resolution, channels=channels,
                          cache_dir=cache_dir, workers=workers,
                          max_image_pixels=max_image_pixels, progress=progress, log=log,
                          classes=classes, aspect=aspect, fit=fit)
    if classes is not None:
        if loaded.labels is None:  # the data has no labels of its own
            check_class_names((), repr(str(spec)))
        report_classes(classes, loaded.labels, repr(str(spec)), log)
        present = np.bincount(loaded.labels[loaded.labels >= 0], minlength=len(classes))
        empty = [name for name, count in zip(classes, present) if count == 0]
        if empty:  # a resumed run whose folder lost a class
            raise GanvasError(f"--data {str(spec)!r}: no pictures of class "
                              f"{', '.join(empty)} (the run's classes are "
                              f"{', '.join(classes)}); put them back in their subfolders")
    return loaded


def _load_images(spec: str, *, resolution: int, channels: int,
                 cache_dir: str | os.PathLike[str] | None, workers: int | None,
                 max_image_pixels: int, progress: bool, log: Callable[[str], None],
                 classes: Sequence[str] | None, aspect: str | None = None,
                 fit: str = "crop") -> ImageSet:
    resolution = _as_int(resolution, "--resolution", "an integer >= 4")
    if resolution < 4:
        raise GanvasError(f"--resolution must be at least 4, got {resolution}")
    channels = _as_int(channels, "--channels", "1 (greyscale), 3 (colour) or 4 (colour "
                       "with transparency)")
    if channels not in (1, 3, 4):
        raise GanvasError(f"--channels must be 1 (greyscale), 3 (colour) or 4 (colour with "
                          f"transparency), got {channels}")
    max_image_pixels = _as_int(max_image_pixels, "max_image_pixels", "a positive integer")
    if max_image_pixels < 1:
        raise GanvasError(f"max_image_pixels must be a positive integer, got {max_image_pixels}")
    if workers is None:
        workers = default_workers()
    workers = _as_int(workers, "--workers", "a positive integer")
    if workers < 1:
        raise GanvasError(f"--workers must be at least 1, got {workers}")
    if not isinstance(spec, (str, os.PathLike)):
        raise GanvasError(f"--data must be a folder or a built-in dataset name, got {spec!r}")
    spec = os.fspath(spec)

    cache = DatasetCache(resolve_cache_dir(cache_dir), log)
    label = repr(spec)
    builtin = parse_builtin(spec)
    factors = aspect_factors(aspect)
    if fit not in FITS:
        raise GanvasError(f"--fit must be one of {', '.join(FITS)}, got {fit!r}")
    if builtin is not None:
        name, split = builtin
        if factors != (1, 1):
            size = size_label(resolution, aspect).removesuffix(" px")
            raise GanvasError(f"--resolution {size}: {name}'s "
                              "pictures are square; non-square training reads a folder of "
                              "your pictures (--data FOLDER)")
        if channels == 4 and name != "emoji":
            raise GanvasError(f"--channels 4 keeps transparency, and {name} has none; use "
                              "--data emoji or a folder of PNG/WebP pictures with it")
        if os.path.isdir(spec):
            log(f"note: {spec!r} is a built-in dataset name; to use the folder, "
                f"write --data ./{spec}")
        labelled = classes is not None
        if name == "digits":
            return load_digits(resolution=resolution, channels=channels, progress=progress,
                               log=log, labelled=labelled)
        if name == "emoji":
            return load_emoji(resolution=resolution, channels=channels, cache=cache,
                              progress=progress, log=log)
        return load_idx_dataset(name, split or "train", resolution=resolution,
                                channels=channels, cache=cache, progress=progress, log=log,
                                labelled=labelled)

    folder = check_data_source(spec)
    return load_folder(folder, resolution=resolution, channels=channels, cache=cache,
                       workers=workers, max_image_pixels=max_image_pixels, progress=progress,
                       log=log, label=label, classes=classes, aspect=factors, fit=fit)
