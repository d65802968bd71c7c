"""Sampling from a trained generator: ``ganvas.load(path).sample(n, seed=0)``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from ganvas.errors import GanvasError
from ganvas.models.export import CONFIG_NAME, build_from_config, load_generator, load_weights
from ganvas.training import checkpoint as ckpt
from ganvas.utils.device import resolve_device
from ganvas.utils.images import make_grid, save_image, to_pil


class ImageGenerator:
    """A trained generator, ready to sample.

    Attributes:
        generator: the ``nn.Module`` (in eval mode) mapping z ``[N, latent_dim]`` to images
            ``[N, C, H, W]`` in ``[-1, 1]``.
        config: the training config it came from (a dict).
        step: training steps behind these weights.
    """

    def __init__(self, generator: nn.Module, config: dict[str, Any], step: int,
                 device: torch.device):
        self.generator = generator.to(device).eval()
        self.config = config
        self.step = step
        self.device = device
        self.latent_dim = int(config["latent_dim"])

    def latents(self, n: int, seed: int) -> torch.Tensor:
        """The ``n`` latent vectors for ``seed``: the same on every device and batch size."""
        return torch.randn(n, self.latent_dim, generator=torch.Generator().manual_seed(seed))

    @torch.inference_mode()
    def sample_tensor(self, n: int, seed: int = 0, batch_size: int = 256) -> torch.Tensor:
        """``n`` images as a float tensor ``[n, C, H, W]`` in ``[-1, 1]`` on the CPU."""
        if n < 1:
            raise GanvasError(f"--num must be at least 1, got {n}")
        z = self.latents(n, seed)
        chunks = [self.generator(part.to(self.device)).float().cpu()
                  for part in z.split(batch_size)]
        return torch.cat(chunks)

    def sample(self, n: int, seed: int = 0) -> list[Image.Image]:
        """``n`` PIL images (mode L or RGB). The same seed always gives the same images."""
        return to_pil(self.sample_tensor(n, seed))

    def grid(self, n: int = 64, seed: int = 0) -> Image.Image:
        """``n`` samples tiled into one picture."""
        return make_grid(self.sample_tensor(n, seed))


def load(path: str | os.PathLike, device: str = "auto") -> ImageGenerator:
    """Load a generator from a run folder, a checkpoint file or an exported generator folder.

    A run folder uses its newest loadable checkpoint. Everything needed to rebuild the network
    is read from the file itself; nothing is executed (``weights_only=True``/safetensors).
    """
    path = Path(path)
    target = resolve_device(device)
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        generator, meta = load_generator(path)
        return ImageGenerator(generator, meta.get("train_config", meta),
                              int(meta.get("step", 0) or 0), target)
    if path.is_dir():
        _, state = ckpt.latest_checkpoint(path)
        where = str(path)
    elif path.is_file():
        state, where = ckpt.load_checkpoint(path), str(path)
    else:
        raise GanvasError(f"{path}: no such run folder, checkpoint or generator folder")
    config = state["config"]
    if not isinstance(config, dict):
        raise GanvasError(f"{where}: the checkpoint's config is not readable")
    generator = build_from_config(config, where)
    # Samples come from the moving average of the generator when the run kept one.
    weights = state.get("generator_ema", state["generator"])
    if not isinstance(weights, dict):
        raise GanvasError(f"{where}: the checkpoint's generator weights are not readable")
    load_weights(generator, weights, where)
    return ImageGenerator(generator, config, state["step"], target)


def generate_to_folder(source: str | os.PathLike, out: str | os.PathLike, *, num: int = 64,
                       seed: int = 0, grid: bool = False, singles: bool = True,
                       device: str = "auto") -> list[Path]:
    """Write ``num`` samples as ``NNNNN.png`` files and/or one ``grid.png``; returns the paths."""
    from ganvas.training.run_dir import ensure_writable_dir

    model = load(source, device=device)
    out = Path(out)
    ensure_writable_dir(out, "--out")
    images = model.sample_tensor(num, seed)
    written = []
    if singles:
        for i, image in enumerate(to_pil(images)):
            written.append(save_image(image, out / f"seed{seed}-{i:05d}.png"))
    if grid:
        written.append(save_image(make_grid(images), out / f"grid-seed{seed}.png"))
    return written
