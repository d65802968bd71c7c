"""Gradient penalties on the discriminator."""

from __future__ import annotations

from collections.abc import Callable

import torch


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): mean squared gradient norm of D at real images.

    ``real_images`` must have had ``requires_grad_(True)`` before D saw them. Returns the
    unscaled ``E ||grad_x D(x)||^2``; the caller multiplies by gamma / 2.
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def gradient_penalty(discriminator: Callable[[torch.Tensor], torch.Tensor],
                     real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): ``E (||grad D(x_hat)|| - 1)^2`` on random interpolates.

    ``generator`` is an optional CPU random generator for the mixing weights, so the penalty
    is reproducible without touching the global random state.
    """
    alpha = torch.rand(real.shape[0], 1, 1, 1, generator=generator).to(real.device, real.dtype)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(mixed).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()
