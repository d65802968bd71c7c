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
from ganvas.utils.images import make_grid, save_image, to_pil


class ImageGenerator:
    """A trained generator, ready to sample.

    Attributes:
        generator: the network (in eval mode); its ``sample(z, c=None, *, truncation,
            noise)`` maps z ``[N, latent_dim]`` to images ``[N, C, H, W]`` in ``[-1, 1]``.
        config: the training config it came from (a dict).
        step: training steps behind these weights.
        truncation: default truncation of every draw (1: none; below 1 pulls the latents
            towards the mean latent: less variety, more typical images).
        noise_mode: default noise mode for families with noise inputs (const, random, none).
    """

    def __init__(self, generator: nn.Module, config: dict[str, Any], step: int,
                 device: torch.device, *, truncation: float = 1.0, noise_mode: str = "const"):
        self.generator = generator.to(device).eval()
        self.config = config
        self.step = step
        self.device = device
        self.latent_dim = int(generator.latent_dim)
        check_sampling_arguments(self.generator, torch.zeros(1, self.latent_dim), None,
                                 truncation, noise_mode)
        self.truncation, self.noise_mode = truncation, noise_mode

    def latents(self, n: int, seed: int) -> torch.Tensor:
        """The ``n`` latent vectors for ``seed``: the same on every device and batch size."""
        n, seed = whole_number(n, "--num", 1, MAX_IMAGES), whole_number(seed, "--seed", 0, MAX_SEED)
        return torch.randn(n, self.latent_dim, generator=torch.Generator().manual_seed(seed))

    def batches(self, n: int, seed: int = 0, batch_size: int = 256):
        """Yield the ``n`` images of ``seed`` as float ``[b, C, H, W]`` chunks, in order."""
        batch_size = whole_number(batch_size, "batch_size", 1, 65_536)
        with torch.inference_mode():
            for part in self.latents(n, seed).split(batch_size):
                images = self.generator.sample(part.to(self.device), truncation=self.truncation,
                                               noise=self.noise_mode)
                yield images.float().cpu()

    def sample_tensor(self, n: int, seed: int = 0, batch_size: int = 256) -> torch.Tensor:
        """``n`` images as a float tensor ``[n, C, H, W]`` in ``[-1, 1]`` on the CPU."""
        return torch.cat(list(self.batches(n, seed, batch_size)))

    def sample(self, n: int, seed: int = 0) -> list[Image.Image]:
        """``n`` PIL images (mode L or RGB). The same seed always gives the same images."""
        return to_pil(self.sample_tensor(n, seed))

    def grid(self, n: int = 64, seed: int = 0) -> Image.Image:
        """``n`` samples tiled into one picture."""
        return make_grid(self.sample_tensor(n, seed))


def load(path: str | os.PathLike, device: str = "auto", *, truncation: float = 1.0,
         noise_mode: str = "const") -> ImageGenerator:
    """Load a generator from a run folder, a checkpoint file or an exported generator folder.

    A run folder uses its newest loadable checkpoint. Everything needed to rebuild the network
    is read from the file itself; nothing is executed (``weights_only=True``/safetensors).
    ``truncation`` and ``noise_mode`` set the defaults of every draw (see ImageGenerator).
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise GanvasError(f"load() needs a path to a run, checkpoint or generator folder, "
                          f"got {type(path).__name__}")
    target = resolve_device(device)
    source = read_generator(path, warn=_warn)
    return ImageGenerator(source.generator, source.config, source.step, target,
                          truncation=truncation, noise_mode=noise_mode)


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


MAX_IMAGES = 1_000_000
MAX_GRID = 4_096
MAX_SEED = 2**63 - 1


def generate_to_folder(source: str | os.PathLike, out: str | os.PathLike, *, num: int = 64,
                       seed: int = 0, grid: bool = False, singles: bool = True,
                       device: str = "auto", truncation: float = 1.0,
                       noise_mode: str = "const") -> list[Path]:
    """Write ``num`` samples as ``NNNNN.png`` files and/or one ``grid.png``; returns the paths."""
    from ganvas.runs.folders import ensure_writable_dir

    whole_number(num, "--num", 1, MAX_IMAGES)
    whole_number(seed, "--seed", 0, MAX_SEED)
    if grid and num > MAX_GRID:
        raise GanvasError(f"--grid tiles at most {MAX_GRID:,} images; use a smaller --num "
                          "or leave out --grid")
    model = load(source, device=device, truncation=truncation, noise_mode=noise_mode)
    completed = model.generator.completed_resolution
    if completed < model.generator.resolution:
        print(f"note: {source} grew to {completed} px of {model.generator.resolution} px before "
              f"it stopped; images show {completed} px enlarged", file=sys.stderr)
    out = Path(out)
    ensure_writable_dir(out, "--out")
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
