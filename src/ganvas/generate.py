"""Sampling from a trained generator: ``ganvas.load(path).sample(n, seed=0)``.

Every family's generator meets one sampling contract (:mod:`ganvas.models.networks`), so
this module works for all of them and reads runs through :mod:`ganvas.runs`, never the
trainer.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from ganvas.errors import GanvasError
from ganvas.models.networks import check_sampling_arguments
from ganvas.runs.sources import read_generator
from ganvas.utils.checks import whole_number
from ganvas.utils.device import resolve_device
from ganvas.utils.images import labelled_grid, make_grid, save_image, to_pil


class ImageGenerator:
    """A trained generator, ready to sample.

    Attributes:
        generator: the network (in eval mode); its ``sample(z, c=None, *, truncation,
            noise)`` maps z ``[N, latent_dim]`` to images ``[N, C, H, W]`` in ``[-1, 1]``.
        config: the training config it came from (a dict).
        step: training steps behind these weights.
        truncation: default truncation of every draw (1: none; below 1 pulls the latents
            towards the mean latent: less variety, more typical images).
        truncation_cutoff: for models with style vectors, truncate only the first this many
            layers' styles (None: all).
        noise_mode: default noise mode for families with noise inputs (const, random, none).
        classes: a conditional model's class names, in label order (empty: unconditional).
            Draws take ``label`` (a name or an index); without one, image ``i`` of a draw
            is of class ``i mod len(classes)``.
    """

    def __init__(self, generator: nn.Module, config: dict[str, Any], step: int,
                 device: torch.device, *, truncation: float = 1.0, noise_mode: str = "const",
                 truncation_cutoff: int | None = None):
        self.generator = generator.to(device).eval()
        self.config = config
        self.step = step
        self.device = device
        self.latent_dim = int(generator.latent_dim)
        self.classes = [str(name) for name in config.get("classes") or []][:generator.c_dim]
        if len(self.classes) != generator.c_dim:  # (an exported config lost its names)
            self.classes = [str(i) for i in range(generator.c_dim)]
        check_sampling_arguments(self.generator, torch.zeros(1, self.latent_dim),
                                 self.labels_for(1), truncation, noise_mode)
        if truncation_cutoff is not None:
            layers = self.style_layers("--truncation-cutoff")
            whole_number(truncation_cutoff, "--truncation-cutoff", 1, layers)
        self.truncation, self.noise_mode = truncation, noise_mode
        self.truncation_cutoff = truncation_cutoff

    @property
    def has_styles(self) -> bool:
        """Whether the model draws through style vectors (``map`` / ``synthesize``)."""
        return bool(getattr(self.generator, "has_styles", False))

    def style_layers(self, option: str) -> int:
        """The number of per-layer styles, or a clear error naming ``option``."""
        if not self.has_styles:
            model = self.config.get("model", "this model")
            raise GanvasError(f"{option}: model {model} has no style vectors (it needs a "
                              "mapping network, as --model stylegan2 has)")
        return int(self.generator.num_ws)

    def class_index(self, label: str | int) -> int:
        """A class's index from its name or its index (``--class``), or a clear error."""
        if not self.classes:
            raise GanvasError(f"--class {str(label)[:40]!r}: this model has no classes (it "
                              "was trained without --conditional)")
        if isinstance(label, str) and label in self.classes:
            return self.classes.index(label)
        try:
            index = int(label)
        except (TypeError, ValueError):
            index = -1
        if isinstance(label, bool) or not 0 <= index < len(self.classes):
            shown = ", ".join(self.classes[:12]) + (", ..." if len(self.classes) > 12 else "")
            raise GanvasError(f"--class {str(label)[:40]!r}: not one of this model's classes "
                              f"({shown}; or an index 0-{len(self.classes) - 1})")
        return index

    def labels_for(self, n: int, label: str | int | None = None, start: int = 0
                   ) -> torch.Tensor | None:
        """One-hot labels for images ``start`` to ``start + n`` of a draw: all of class
        ``label``, or (None) the classes in turn; None for an unconditional model."""
        if not self.classes:
            if label is not None:
                self.class_index(label)  # the error
            return None
        classes = (torch.full((n,), self.class_index(label)) if label is not None
                   else torch.arange(start, start + n) % len(self.classes))
        return torch.nn.functional.one_hot(classes, len(self.classes)).float()

    def draw(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Images for latents ``z`` (and one-hot labels ``c`` for a conditional model; None:
        the classes in turn) with this generator's truncation and noise settings."""
        if c is None:
            c = self.labels_for(len(z))
        c = None if c is None else c.to(z.device)
        if self.truncation_cutoff is not None:
            return self.generator.sample(z, c, truncation=self.truncation,
                                         noise=self.noise_mode,
                                         truncation_cutoff=self.truncation_cutoff)
        return self.generator.sample(z, c, truncation=self.truncation, noise=self.noise_mode)

    def latents(self, n: int, seed: int) -> torch.Tensor:
        """The ``n`` latent vectors for ``seed``: the same on every device and batch size."""
        n, seed = whole_number(n, "--num", 1, MAX_IMAGES), whole_number(seed, "--seed", 0, MAX_SEED)
        return torch.randn(n, self.latent_dim, generator=torch.Generator().manual_seed(seed))

    def seed_images(self, seeds: list[int], label: str | int | None = None) -> torch.Tensor:
        """One image per seed, each the first of its seed (as ``--seed S --num 1``), drawn
        alone: the same picture whatever other seeds are asked for with it."""
        return torch.cat([next(self.batches(1, seed, label=label)) for seed in seeds])

    def batches(self, n: int, seed: int = 0, batch_size: int = 256,
                label: str | int | None = None):
        """Yield the ``n`` images of ``seed`` (of class ``label``) as float ``[b, C, H, W]``
        chunks, in order."""
        batch_size = whole_number(batch_size, "batch_size", 1, 65_536)
        latents = self.latents(n, seed)  # (checks n and seed)
        self.labels_for(1, label)  # a bad label fails before any drawing
        with torch.inference_mode():
            for start, part in zip(range(0, len(latents), batch_size),
                                   latents.split(batch_size)):
                c = self.labels_for(len(part), label, start)
                yield self.draw(part.to(self.device), c).float().cpu()

    def sample_tensor(self, n: int, seed: int = 0, batch_size: int = 256,
                      label: str | int | None = None) -> torch.Tensor:
        """``n`` images as a float tensor ``[n, C, H, W]`` in ``[-1, 1]`` on the CPU."""
        return torch.cat(list(self.batches(n, seed, batch_size, label)))

    def sample(self, n: int, seed: int = 0, label: str | int | None = None
               ) -> list[Image.Image]:
        """``n`` PIL images (mode L or RGB). The same seed always gives the same images.
        ``label``: a conditional model's class (name or index); default, the classes in
        turn."""
        return to_pil(self.sample_tensor(n, seed, label=label))

    def grid(self, n: int = 64, seed: int = 0, label: str | int | None = None
             ) -> Image.Image:
        """``n`` samples tiled into one picture."""
        return make_grid(self.sample_tensor(n, seed, label=label))

    def class_grid(self, seeds: list[int], classes: list[str | int] | None = None
                   ) -> Image.Image:
        """A conditional model's class-by-seed grid: a row per class (default all), a column
        per seed, each tile labelled with its class and seed. The same seed draws the same
        latent in every row, so each column shows one latent as each class."""
        if not self.classes:
            raise GanvasError("--classes: this model has no classes (it was trained without "
                              "--conditional)")
        indices = [self.class_index(c) for c in (classes if classes is not None
                                                 else range(len(self.classes)))]
        rows = [self.seed_images(seeds, label=i) for i in indices]
        names = [f"{self.classes[i]} s{s}" for i in indices for s in seeds]
        return labelled_grid(torch.cat(rows), names, columns=len(seeds))

    def style_mix(self, row_seeds: list[int], column_seeds: list[int],
                  layers: list[int] | None = None) -> Image.Image:
        """StyleGAN's style-mixing grid: the top row draws ``column_seeds``, the left column
        ``row_seeds``; each other cell is its row's picture with the styles of ``layers``
        taken from its column's picture (default: the coarse ones, 0-3: the 4 and 8 px
        layers and the first of 16 px). Each seed is the first latent of that seed, as
        ``generate --seed S --num 1`` draws it."""
        total = self.style_layers("--style-mix")
        layers = list(range(min(4, total))) if layers is None else layers
        for layer in layers:
            whole_number(layer, "--mix-layers", 0, total - 1)
        for seeds, name in ((row_seeds, "rows"), (column_seeds, "columns")):
            if not 1 <= len(seeds) <= 64:
                raise GanvasError(f"--style-mix: give 1 to 64 seeds for the {name}")
        G = self.generator
        with torch.inference_mode():
            def styles(seeds):
                z = torch.cat([self.latents(1, seed) for seed in seeds]).to(self.device)
                return G.map(z, truncation=self.truncation,
                             truncation_cutoff=self.truncation_cutoff)

            rows, columns = styles(row_seeds), styles(column_seeds)
            mixed = rows.unsqueeze(1).repeat(1, len(column_seeds), 1, 1)  # [R, C, ws, w]
            mixed[:, :, layers] = columns.unsqueeze(0)[:, :, layers]
            draw = lambda ws: G.synthesize(ws, self.noise_mode).float().cpu()  # noqa: E731
            cells = draw(mixed.flatten(0, 1)).unflatten(0, (len(row_seeds), len(column_seeds)))
            top, left = draw(columns), draw(rows)
        blank = torch.ones_like(top[:1])  # white corner
        picture = torch.cat([torch.cat([blank, top])] + [
            torch.cat([left[i:i + 1], cells[i]]) for i in range(len(row_seeds))])
        return make_grid(picture, columns=len(column_seeds) + 1)


def load(path: str | os.PathLike, device: str = "auto", *, truncation: float = 1.0,
         noise_mode: str = "const", truncation_cutoff: int | None = None) -> ImageGenerator:
    """Load a generator from a run folder, a checkpoint file or an exported generator folder.

    A run folder uses its newest loadable checkpoint. Everything needed to rebuild the network
    is read from the file itself; nothing is executed (``weights_only=True``/safetensors).
    ``truncation``, ``truncation_cutoff`` and ``noise_mode`` set the defaults of every draw
    (see ImageGenerator).
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise GanvasError(f"load() needs a path to a run, checkpoint or generator folder, "
                          f"got {type(path).__name__}")
    target = resolve_device(device)
    source = read_generator(path, warn=_warn)
    return ImageGenerator(source.generator, source.config, source.step, target,
                          truncation=truncation, noise_mode=noise_mode,
                          truncation_cutoff=truncation_cutoff)


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


MAX_IMAGES = 1_000_000
MAX_GRID = 4_096
MAX_SEED = 2**63 - 1


def parse_numbers(text: str, option: str, maximum: int = MAX_SEED) -> list[int]:
    """``"1,2,5-8"`` -> ``[1, 2, 5, 6, 7, 8]`` (seeds or layer numbers), or a clear error."""
    numbers: list[int] = []
    for part in str(text).split(","):
        low, dash, high = part.strip().partition("-")
        try:
            first = int(low)
            last = int(high) if dash else first
        except ValueError:
            raise GanvasError(f"{option}: {text!r:.60} is not a list of numbers such as "
                              "1,2,5-8") from None
        if not 0 <= first <= last <= maximum or last - first >= 4096:
            raise GanvasError(f"{option}: {part.strip()!r:.40} is not a range from 0 to "
                              f"{maximum:,} (first <= last)")
        numbers.extend(range(first, last + 1))
    return numbers


def generate_to_folder(source: str | os.PathLike, out: str | os.PathLike, *, num: int = 64,
                       seed: int = 0, grid: bool = False, singles: bool = True,
                       device: str = "auto", truncation: float = 1.0,
                       noise_mode: str = "const", truncation_cutoff: int | None = None,
                       style_mix: tuple[list[int], list[int]] | None = None,
                       mix_layers: list[int] | None = None,
                       latent: str | os.PathLike | None = None,
                       seeds: list[int] | None = None, label: str | int | None = None,
                       class_grid: bool = False, classes: list[str] | None = None
                       ) -> list[Path]:
    """Write ``num`` samples as ``NNNNN.png`` files and/or one ``grid.png``; returns the paths.
    With ``seeds``, one picture per seed instead, ``seed0005.png`` (the grid
    ``grid-seeds.png`` says each tile's seed under it); with ``style_mix`` (row seeds, column
    seeds), only the style-mixing grid ``style-mix.png`` (see
    :meth:`ImageGenerator.style_mix`); with ``latent`` (a file from ``ganvas project``), only
    its picture, ``<file name>.png``. A conditional model draws class ``label`` (its name
    then starts each file's name), or the classes in turn; ``class_grid`` with ``seeds``
    writes only ``grid-classes.png``, a row per class of ``classes`` (None: all)."""
    from ganvas.runs.folders import ensure_writable_dir

    whole_number(num, "--num", 1, MAX_IMAGES)
    whole_number(seed, "--seed", 0, MAX_SEED)
    if grid and num > MAX_GRID:
        raise GanvasError(f"--grid tiles at most {MAX_GRID:,} images; use a smaller --num "
                          "or leave out --grid")
    if mix_layers is not None and style_mix is None:
        raise GanvasError("--mix-layers goes with --style-mix")
    if sum(x is not None for x in (latent, style_mix, seeds)) > 1:
        raise GanvasError("--seeds, --latent and --style-mix draw different pictures; give one")
    if seeds is not None:
        if not 1 <= len(seeds) <= MAX_GRID:
            raise GanvasError(f"--seeds: give 1 to {MAX_GRID:,} seeds")
        for s in seeds:
            whole_number(s, "--seeds", 0, MAX_SEED)
    saved = None
    if latent is not None:
        from ganvas.latents import load_latent

        saved = load_latent(latent)  # a bad file fails before the model is read
    model = load(source, device=device, truncation=truncation, noise_mode=noise_mode,
                 truncation_cutoff=truncation_cutoff)
    if label is not None:  # checked before anything is written; files then say the class
        label = model.classes[model.class_index(label)]
    prefix = "" if label is None else f"{label}-"
    if class_grid:
        if seeds is None:
            raise GanvasError("--classes draws a class-by-seed grid: give --seeds too")
        picture = model.class_grid(seeds, classes)
        out = Path(out)
        ensure_writable_dir(out, "--out")
        return [save_image(picture, out / "grid-classes.png")]
    if style_mix is not None or saved is not None:
        if saved is not None:
            from ganvas.latents import render_latent

            images = render_latent(model, saved, f"--latent {latent}")
            picture, name = make_grid(images) if len(images) > 1 else to_pil(images)[0], \
                f"{Path(latent).stem}.png"
        else:
            picture, name = model.style_mix(*style_mix, layers=mix_layers), "style-mix.png"
        out = Path(out)
        ensure_writable_dir(out, "--out")
        return [save_image(picture, out / name)]
    completed = model.generator.completed_resolution
    if completed < model.generator.resolution:
        print(f"note: {source} grew to {completed} px of {model.generator.resolution} px before "
              f"it stopped; images show {completed} px enlarged", file=sys.stderr)
    out = Path(out)
    ensure_writable_dir(out, "--out")
    if seeds is not None:  # each written as it is drawn; only a grid keeps them
        written, kept = [], []
        for s in seeds:
            image = model.seed_images([s], label)
            if singles:
                written.append(save_image(to_pil(image)[0], out / f"{prefix}seed{s:04d}.png"))
            if grid:
                kept.append(image)
        if grid:
            written.append(save_image(labelled_grid(torch.cat(kept), [str(s) for s in seeds]),
                                      out / f"{prefix}grid-seeds.png"))
        return written
    written, kept = [], []
    index = 0
    # streamed: a large --num never sits in memory
    for chunk in model.batches(num, seed, label=label):
        if grid:
            kept.append(chunk)
        if singles:
            for image in to_pil(chunk):
                written.append(save_image(image, out / f"{prefix}seed{seed}-{index:05d}.png"))
                index += 1
    if grid:
        written.append(save_image(make_grid(torch.cat(kept)),
                                  out / f"{prefix}grid-seed{seed}.png"))
    return written
