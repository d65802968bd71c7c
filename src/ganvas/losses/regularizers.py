"""Gradient penalties on the discriminator.

The discriminator's input may be one image tensor or a pyramid (a list of tensors, one per
scale): a penalty then differentiates with respect to every scale, and the gradient norm
of an image is taken over all its scales together.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ganvas.rng import per_sample
from ganvas.utils import nested
from ganvas.utils.nested import Images


def r1_penalty(real_logits: torch.Tensor, real_images: Images) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): mean squared gradient norm of D at real images.

    ``real_images`` (each scale) must have had ``requires_grad_(True)`` before D saw them.
    Returns the unscaled ``E ||grad_x D(x)||^2``; the caller multiplies by gamma / 2.
    """
    grads = torch.autograd.grad(real_logits.sum(), nested.tensors(real_images),
                                create_graph=True)
    return sum(g.pow(2).flatten(1).sum(1) for g in grads).mean()


def gradient_penalty(discriminator: Callable[[Images], torch.Tensor],
                     real: Images, fake: Images,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): ``E (||grad D(x_hat)|| - 1)^2`` on random interpolates.

    ``generator`` is an optional CPU random generator for the mixing weights, so the penalty
    is reproducible without touching the global random state. Every scale of an image is
    mixed with the same weight.
    """
    first = nested.tensors(real)[0]
    alpha = per_sample(lambda m: torch.rand(m, 1, 1, 1, generator=generator), first.shape[0])
    alpha = alpha.to(first.device, first.dtype)
    mixed = [(alpha * r.detach() + (1 - alpha) * f.detach()).requires_grad_(True)
             for r, f in zip(nested.tensors(real), nested.tensors(fake))]
    inputs = mixed if isinstance(real, (list, tuple)) else mixed[0]
    grads = torch.autograd.grad(discriminator(inputs).sum(), mixed, create_graph=True)
    norm = torch.cat([g.flatten(1) for g in grads], dim=1).norm(2, dim=1)
    return (norm - 1).pow(2).mean()


def drift_penalty(real_logits: torch.Tensor) -> torch.Tensor:
    """ProGAN's epsilon-drift term ``E D(x)^2``: keeps a Wasserstein critic's scores near 0."""
    return real_logits.pow(2).mean()
