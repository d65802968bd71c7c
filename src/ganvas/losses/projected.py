"""The projected discriminator's recipe: the standard recipe (hinge loss and DiffAugment by
the family's defaults) with the generator's training images drawn through the sampling
side's ``training_images``, its per-pixel noise from a stream of the recipe's own (the same
on every device, saved with the checkpoint). A generator that also draws a half-size image
(FastGAN's) shows the projected discriminator the full image alone.

The loss takes every head's logit (every patch's, with the paper's 8x8 heads) as a term of
its own (``patch_hinge``, as the paper's): each must clear the hinge's margin, so no head
can lean on another's confidence, as it could when the mean per image was judged. The
step's statistics (D's accuracy, ADA's sign heuristic) count the same logits; the monitor
and everything outside training read one score per image, their mean."""

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

    def discriminate_eagerly(self, images: torch.Tensor, c: torch.Tensor | None
                             ) -> torch.Tensor:
        if self.spec.options.patch_hinge is False:  # (runs saved before the option)
            return super().discriminate_eagerly(images, c)
        # (the family takes no labels: it refuses --conditional)
        return self.D.patch_logits(images).float()

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
