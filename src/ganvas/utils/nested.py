"""Image batches that are one tensor or a list of tensors (a multi-scale pyramid).

What a generator hands its discriminator is the family's choice: one image tensor for most,
one tensor per scale for MSG-GAN. Losses, penalties, augmentation and noise go through
these few helpers so they treat both forms alike, always batch-first.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Images = torch.Tensor | list[torch.Tensor]


def tensors(images: Images) -> list[torch.Tensor]:
    return list(images) if isinstance(images, (list, tuple)) else [images]


def apply(fn: Callable[[torch.Tensor], torch.Tensor], images: Images) -> Images:
    """``fn`` on every tensor, keeping the form."""
    if isinstance(images, (list, tuple)):
        return [fn(t) for t in images]
    return fn(images)


def batch_size(images: Images) -> int:
    return len(tensors(images)[0])


def cat(a: Images, b: Images) -> Images:
    """Concatenate two batches of the same form along the batch dimension."""
    if isinstance(a, (list, tuple)):
        return [torch.cat([x, y]) for x, y in zip(a, b)]
    return torch.cat([a, b])


def split_in_two(images: Images) -> tuple[Images, Images]:
    """The inverse of :func:`cat` for two halves of equal size."""
    if isinstance(images, (list, tuple)):
        halves = [t.chunk(2) for t in images]
        return [h[0] for h in halves], [h[1] for h in halves]
    first, second = images.chunk(2)
    return first, second


def largest(images: Images) -> torch.Tensor:
    """The finest scale (the last of a pyramid ordered coarse to fine)."""
    return tensors(images)[-1]
