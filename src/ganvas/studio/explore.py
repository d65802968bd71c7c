"""What the studio's Explore tab does with a trained generator: pictures by seed and
truncation, one at full size, style mixing, a latent walk, a photo's projection, the nearest
training pictures and an export, each through the same functions as the commands."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from PIL import Image

from ganvas.errors import GanvasError

MAX_SEEDS = 64  # a page of pictures; `ganvas generate` draws any number
SHOW_SIDE = 256  # small pictures are enlarged (nearest neighbour) to at least this for the eye


class Models:
    """Loaded generators, kept while their run's newest checkpoint is unchanged (a run that
    trains on is reloaded when it writes a new one)."""

    def __init__(self, capacity: int = 2):
        self.capacity = capacity
        self._loaded: dict[Path, tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    def get(self, folder: Path, truncation: float = 1.0):
        """The run's generator drawing with ``truncation``: a copy of its own, sharing the
        network, so that tabs asking for different truncations at once never mix them (the
        sampling contract checks the value when it draws)."""
        import ganvas

        key = _newest_checkpoint(folder)
        with self._lock:
            held = self._loaded.get(folder)
            if held is None or held[0] != key:
                model = ganvas.load(folder, device="cpu")
                self._loaded.pop(folder, None)
                self._loaded[folder] = (key, model)
                while len(self._loaded) > self.capacity:
                    self._loaded.pop(next(iter(self._loaded)))
            drawing = copy.copy(self._loaded[folder][1])
        drawing.truncation = float(truncation)
        return drawing


def _newest_checkpoint(folder: Path) -> tuple[str, float] | None:
    found = sorted((folder / "checkpoints").glob("*.pt")) if (folder / "checkpoints").is_dir() \
        else []
    if not found:
        return None
    try:
        return found[-1].name, found[-1].stat().st_mtime
    except OSError:
        return None


def enlarged(picture: Image.Image, side: int = SHOW_SIDE) -> Image.Image:
    """``picture`` scaled up by a whole factor (nearest neighbour: pixels stay pixels) until
    its shorter side is at least ``side``."""
    factor = max(1, -(-side // max(1, min(picture.size))))
    if factor == 1:
        return picture
    return picture.resize((picture.width * factor, picture.height * factor), Image.NEAREST)


def seeds_from(text: Any, option: str = "seeds", maximum: int = MAX_SEEDS) -> list[int]:
    """``"1,2,5-8"`` -> [1, 2, 5, 6, 7, 8], at most ``maximum`` of them."""
    from ganvas.generate import parse_numbers

    seeds = parse_numbers(str(text if text is not None else "").strip(), f"--{option}")
    if not seeds:
        raise GanvasError(f"{option}: give at least one seed, e.g. 0-7")
    if len(seeds) > maximum:
        raise GanvasError(f"{option}: {len(seeds)} seeds; give at most {maximum} here "
                          "(`ganvas generate` draws any number)")
    return seeds


def draw_seeds(model, seeds: list[int], label: str | None = None
               ) -> list[tuple[Image.Image, str]]:
    """One picture per seed, each with its caption."""
    from ganvas.utils.images import to_pil

    label = label or None
    pictures = to_pil(model.seed_images(seeds, label=label))
    return [(enlarged(p), f"seed {s}") for p, s in zip(pictures, seeds)]


def full_size(model, seed: int, out_dir: Path, label: str | None = None
              ) -> tuple[Image.Image, Path]:
    """Seed ``seed``'s picture at the model's own size, saved as a PNG for download, and
    enlarged for the eye."""
    from ganvas.utils.images import save_image, to_pil

    picture = to_pil(model.seed_images([int(seed)], label=label or None))[0]
    path = save_image(picture, out_dir / f"seed-{int(seed)}.png")
    return enlarged(picture, 512), path


def style_mixing(model, rows: list[int], columns: list[int]) -> Image.Image:
    if not model.has_styles:
        raise GanvasError(f"style mixing: model {model.config.get('model')} has no style "
                          "vectors (stylegan2 has)")
    return enlarged(model.style_mix(rows, columns), 512)


def walk(folder: Path, seeds: list[int], frames: int, out_dir: Path,
         truncation: float = 1.0) -> Path:
    """A looping latent walk through ``seeds`` as a GIF."""
    from ganvas.walk import write_walk

    if len(seeds) < 2:
        raise GanvasError("walk: give at least two seeds to walk between, e.g. 1,2,3")
    if not 2 <= int(frames) <= 600:
        raise GanvasError(f"walk: {frames} frames; give 2 to 600")
    done = write_walk(folder, out_dir / f"walk-{'-'.join(map(str, seeds[:8]))}.gif",
                      seeds=seeds, frames=int(frames), loop=True, fps=24,
                      truncation=float(truncation), device="cpu", progress=False)
    return done.path


def nearest(folder: Path) -> tuple[Image.Image, str]:
    """A few samples beside their nearest training pictures (copying check)."""
    from ganvas.metrics.fixed_features import FixedFeatures
    from ganvas.metrics.nearest import nearest_training_images

    found = nearest_training_images(folder, num=4, k=3, inception=FixedFeatures(),
                                    device="cpu", progress=False, log=lambda message: None)
    return enlarged(found.picture, 512), found.summary()


def project_photo(model, photo: str | os.PathLike, steps: int, out_dir: Path
                  ) -> tuple[Image.Image, str]:
    """Search the latent whose picture is closest to ``photo``; the photo (as the model
    sees it) beside the result."""
    from ganvas.project import project
    from ganvas.utils.images import make_grid

    if not photo:
        raise GanvasError("project: upload a photo first")
    if not 1 <= int(steps) <= 5000:
        raise GanvasError(f"project: {steps} steps; give 1 to 5000")
    found = project(model, photo, steps=int(steps), frames=2)
    import torch

    picture = make_grid(torch.cat([found.target, found.image]), columns=2)
    close = found.distances[-1] / found.typical if found.typical else float("nan")
    return enlarged(picture, 512), (f"after {int(steps)} steps the distance is {close:.2f} of "
                                    "the distance between two of the model's own pictures")


def export(folder: Path, fmt: str, out_dir: Path) -> Path:
    """The generator exported (``ganvas export``) and zipped for download."""
    from ganvas.export.generator import export_generator

    target = Path(tempfile.mkdtemp(dir=out_dir)) / f"{folder.name}-{fmt}"
    done = export_generator(folder, fmt, target)
    archive = shutil.make_archive(str(target), "zip", root_dir=done.folder)
    return Path(archive)
