"""The projected discriminator's recipe: the standard recipe (hinge loss and DiffAugment by
the family's defaults) with the generator's training images drawn through the sampling
side's ``training_images``, its per-pixel noise from a stream of the recipe's own (the same
on every device, saved with the checkpoint). A generator that also draws a half-size image
(FastGAN's) shows the projected discriminator the full image alone."""

from __future__ import annotations

from typing import Any

import torch

from ganvas.losses.standard import StandardRecipe
from ganvas.rng import PROJECTED_NOISE, stream


class ProjectedRecipe(StandardRecipe):
    name = "projected"

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.noise_inputs_rng = stream(config.seed, PROJECTED_NOISE)

    def generate(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        images = self.G.training_images(z, self.noise_inputs_rng)
        return images[-1] if isinstance(images, (list, tuple)) else images

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(),
                "projected": {"noise_rng": self.noise_inputs_rng.get_state()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        saved = state.get("projected")
        if isinstance(saved, dict) and isinstance(saved.get("noise_rng"), torch.Tensor):
            self.noise_inputs_rng.set_state(saved["noise_rng"])
