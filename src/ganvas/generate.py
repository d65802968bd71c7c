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
    """

    def __init__(self, generator: nn.Module, config: dict[str, Any], step: int,
                 device: torch.device, *, truncation: float = 1.0, noise_mode: str = "const",
                 truncation_cutoff: int | None = None):
        self.generator = generator.to(device).eval()
        self.config = config
        self.step = step
        self.device = device
        self.latent_dim = int(generator.latent_dim)
        check_sampling_arguments(self.generator, torch.zeros(1, self.latent_dim), None,
                                 truncation, noise_mode)
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

    def draw(self, z: torch.Tensor) -> torch.Tensor:
        """Images for latents ``z`` with this generator's truncation and noise settings."""
        if self.truncation_cutoff is not None:
            return self.generator.sample(z, truncation=self.truncation, noise=self.noise_mode,
                                         truncation_cutoff=self.truncation_cutoff)
        return self.generator.sample(z, truncation=self.truncation, noise=self.noise_mode)

    def latents(self, n: int, seed: int) -> torch.Tensor:
        """The ``n`` latent vectors for ``seed``: the same on every device and batch size."""
        n, seed = whole_number(n, "--num", 1, MAX_IMAGES), whole_number(seed, "--seed", 0, MAX_SEED)
        return torch.randn(n, self.latent_dim, generator=torch.Generator().manual_seed(seed))

    def seed_images(self, seeds: list[int]) -> torch.Tensor:
        """One image per seed, each the first of its seed (as ``--seed S --num 1``), drawn
        alone: the same picture whatever other seeds are asked for with it."""
        return torch.cat([next(self.batches(1, seed)) for seed in seeds])

    def batches(self, n: int, seed: int = 0, batch_size: int = 256):
        """Yield the ``n`` images of ``seed`` as float ``[b, C, H, W]`` chunks, in order."""
        batch_size = whole_number(batch_size, "batch_size", 1, 65_536)
        with torch.inference_mode():
            for part in self.latents(n, seed).split(batch_size):
                yield self.draw(part.to(self.device)).float().cpu()

    def sample_tensor(self, n: int, seed: int = 0, batch_size: int = 256) -> torch.Tensor:
        """``n`` images as a float tensor ``[n, C, H, W]`` in ``[-1, 1]`` on the CPU."""
        return torch.cat(list(self.batches(n, seed, batch_size)))

    def sample(self, n: int, seed: int = 0) -> list[Image.Image]:
        """``n`` PIL images (mode L or RGB). The same seed always gives the same images."""
        return to_pil(self.sample_tensor(n, seed))

    def grid(self, n: int = 64, seed: int = 0) -> Image.Image:
        """``n`` samples tiled into one picture."""
        return make_grid(self.sample_tensor(n, seed))

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
                       seeds: list[int] | None = None) -> list[Path]:
    """Write ``num`` samples as ``NNNNN.png`` files and/or one ``grid.png``; returns the paths.
    With ``seeds``, one picture per seed instead, ``seed0005.png`` (the grid
    ``grid-seeds.png`` says each tile's seed under it); with ``style_mix`` (row seeds, column
    seeds), only the style-mixing grid ``style-mix.png`` (see
    :meth:`ImageGenerator.style_mix`); with ``latent`` (a file from ``ganvas project``), only
    its picture, ``<file name>.png``."""
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
            image = model.seed_images([s])
            if singles:
                written.append(save_image(to_pil(image)[0], out / f"seed{s:04d}.png"))
            if grid:
                kept.append(image)
        if grid:
            written.append(save_image(labelled_grid(torch.cat(kept), [str(s) for s in seeds]),
                                      out / "grid-seeds.png"))
        return written
    written, kept = [], []
    index = 0
    for chunk in model.batches(num, seed):  # streamed: a large --num never sits in memory
        if grid:
            kept.append(chunk)
        if singles:
            for image in to_pil(chunk):
                written.append(save_image(image, out / f"seed{seed}-{index:05d}.png"))
                index += 1
    if grid:
        written.append(save_image(make_grid(torch.cat(kept)), out / f"grid-seed{seed}.png"))
    return written
