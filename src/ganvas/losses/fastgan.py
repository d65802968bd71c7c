"""FastGAN's recipe: the standard recipe (hinge loss and DiffAugment by the family's
defaults) plus the discriminator's self-supervised reconstruction loss on real images.

Each time D scores a batch of reals it also decodes, from its own features, the whole
image, one quarter of it (the same random quarter for the batch, from its own random
stream) and the half-size image, and is penalised by their mean squared error against the
images it saw (augmented, as it saw them). The paper measures this error with LPIPS, a
learned perceptual distance that needs downloaded weights; mean squared error, as
lightweight-gan uses for the same auxiliary task, needs none and costs nothing next to the
networks.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ganvas.losses.standard import StandardRecipe
from ganvas.models.fastgan import PARTS, reconstruction_targets
from ganvas.rng import FASTGAN_NOISE, RECONSTRUCTION_PARTS, stream
from ganvas.utils.nested import Images


class FastGANRecipe(StandardRecipe):
    name = "fastgan"

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.reconstruction_weight = self.spec.options.reconstruction_weight
        self.has_real_objective = self.reconstruction_weight > 0
        self.parts_rng = stream(config.seed, RECONSTRUCTION_PARTS)
        self.noise_inputs_rng = stream(config.seed, FASTGAN_NOISE)

    def generate(self, z: torch.Tensor, c: torch.Tensor | None = None) -> Images:
        """Training images with per-pixel noise from the recipe's own stream: the same on
        every device, and saved with the checkpoint."""
        return self.G.render(z, "random", self.noise_inputs_rng)

    def score_reals(self, real_seen: Images, real_c: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # (FastGAN takes no labels: its family refuses --conditional)
        if not self.has_real_objective:
            return super().score_reals(real_seen)
        part = int(torch.randint(PARTS, (), generator=self.parts_rng))
        with self.forward_precision():
            logits, decoded = self.D.reconstruct(real_seen, part)
        targets = reconstruction_targets([t.detach() for t in real_seen], part)
        loss = sum(F.mse_loss(d.float(), t.float()) for d, t in zip(decoded, targets))
        self.stats.report("Loss/D_reconstruction", loss.detach())
        return logits.float(), self.reconstruction_weight * loss

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "fastgan": {
            "parts_rng": self.parts_rng.get_state(),
            "noise_rng": self.noise_inputs_rng.get_state()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        own = state.get("fastgan")
        if own is not None:
            self.parts_rng.set_state(own["parts_rng"])
            self.noise_inputs_rng.set_state(own["noise_rng"])
