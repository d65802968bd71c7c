"""Adversarial losses, selectable by name. All take raw discriminator logits.

The discriminator returns logits rather than probabilities so the sigmoid can be fused into
the loss (``binary_cross_entropy_with_logits``), which stays finite where ``log(sigmoid)``
underflows.
"""

from __future__ import annotations

import difflib

import torch
import torch.nn.functional as F

from ganvas.errors import GanvasError


class AdversarialLoss:
    """One loss: how D scores reals vs fakes, and what G optimises."""

    name: str = ""
    description: str = ""

    def discriminator_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor
                           ) -> torch.Tensor:
        raise NotImplementedError

    def generator_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class BCELoss(AdversarialLoss):
    """The lesson's loss: D labels reals 1 and fakes 0; G wants its fakes labelled 1."""

    name = "bce"
    description = "binary cross-entropy, as in the lesson (G maximises log D(G(z)))"

    def discriminator_loss(self, real_logits, fake_logits):
        real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
        fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        return real + fake

    def generator_loss(self, fake_logits):
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


LOSSES: dict[str, type[AdversarialLoss]] = {cls.name: cls for cls in (BCELoss,)}


def get_loss(name: str) -> AdversarialLoss:
    try:
        return LOSSES[name]()
    except KeyError:
        close = difflib.get_close_matches(str(name), LOSSES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise GanvasError(
            f"--loss {name!r} is not a known loss{hint}; choose one of: {', '.join(LOSSES)}"
        ) from None
