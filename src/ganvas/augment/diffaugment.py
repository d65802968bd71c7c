"""DiffAugment (Zhao et al. 2020): colour, translation and cutout, applied on every call.

Each transform draws its random parameters once per batch, then applies them to one image
tensor or to every scale of a pyramid alike (MSG-GAN's discriminator sees all scales of an
image, which must show the same augmented picture).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganvas.errors import GanvasError
from ganvas.rng import per_sample
from ganvas.utils import nested
from ganvas.utils.nested import Images

POLICIES = ("color", "translation", "cutout")


def _rand(generator: torch.Generator, *shape: int, like: torch.Tensor) -> torch.Tensor:
    n, *rest = shape
    drawn = per_sample(lambda m: torch.rand(m, *rest, generator=generator), n)
    return drawn.to(like.device, like.dtype)


def adjust_color(x: Images, g: torch.Generator) -> Images:
    """Random brightness, saturation (RGB only) and contrast per image, of the colours alone
    (a transparent picture's alpha is not a colour)."""
    finest = nested.largest(x)
    n, rgb = finest.shape[0], finest.shape[1] in (3, 4)
    brightness = _rand(g, n, 1, 1, 1, like=finest) - 0.5
    saturation = _rand(g, n, 1, 1, 1, like=finest) * 2 if rgb else None
    contrast = _rand(g, n, 1, 1, 1, like=finest) + 0.5

    @colours_only
    def apply(t: torch.Tensor) -> torch.Tensor:
        t = t + brightness
        if saturation is not None:
            mean = t.mean(dim=1, keepdim=True)
            t = (t - mean) * saturation + mean
        mean = t.mean(dim=(1, 2, 3), keepdim=True)
        return (t - mean) * contrast + mean

    return nested.apply(apply, x)


def colours_only(transform):
    """``transform`` applied to the colour channels of a batch, its alpha channel (the 4th,
    if any) passed through: brightness or saturation mean nothing for transparency."""
    def apply(t: torch.Tensor) -> torch.Tensor:
        if t.shape[1] != 4:
            return transform(t)
        return torch.cat([transform(t[:, :3]), t[:, 3:]], dim=1)

    return apply


def translate(x: Images, g: torch.Generator, ratio: float = 0.125) -> Images:
    """Shift each image by up to ``ratio`` of its size, whole pixels of the finest scale,
    filling with zeros (coarser scales move by the same fraction of their size)."""
    finest = nested.largest(x)
    n, _, h, w = finest.shape
    max_dy, max_dx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = per_sample(lambda m: torch.randint(-max_dy, max_dy + 1, (m,), generator=g), n)
    dx = per_sample(lambda m: torch.randint(-max_dx, max_dx + 1, (m,), generator=g), n)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = -2 * dx / w  # grid units span 2 over the image width
    theta[:, 1, 2] = -2 * dy / h

    def apply(t: torch.Tensor) -> torch.Tensor:
        grid = F.affine_grid(theta.to(t.device, t.dtype), list(t.shape), align_corners=False)
        return F.grid_sample(t, grid, mode="nearest", padding_mode="zeros", align_corners=False)

    return nested.apply(apply, x)


def cutout(x: Images, g: torch.Generator, ratio: float = 0.5) -> Images:
    """Zero one square of ``ratio`` times the image size at a random place in each image
    (at coarser scales, the area average of the same square)."""
    finest = nested.largest(x)
    n, _, h, w = finest.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = per_sample(lambda m: torch.randint(0, h + (1 - ch % 2), (m, 1, 1), generator=g), n)
    cx = per_sample(lambda m: torch.randint(0, w + (1 - cw % 2), (m, 1, 1), generator=g), n)
    ys = torch.arange(h).view(1, h, 1)
    xs = torch.arange(w).view(1, 1, w)
    dy, dx = ys - cy, xs - cx
    inside = (dy >= -(ch // 2)) & (dy < ch - ch // 2) & (dx >= -(cw // 2)) & (dx < cw - cw // 2)
    keep = (~inside).to(finest.device, finest.dtype).unsqueeze(1)

    def apply(t: torch.Tensor) -> torch.Tensor:
        mask = keep if t.shape[-2:] == keep.shape[-2:] else F.interpolate(
            keep, size=t.shape[-2:], mode="area")
        return t * mask.to(t.dtype)

    return nested.apply(apply, x)


_OPS = {"color": adjust_color, "translation": translate, "cutout": cutout}


class DiffAugment:
    """Apply the ``policy`` (comma-separated subset of color, translation, cutout) to a batch.

    Every transform is differentiable with respect to the images, so the generator's
    gradients pass through it. ``seed`` seeds the augmenter's own random generator.
    """

    p = 1.0

    def __init__(self, policy: str = "color,translation,cutout", *, seed: int = 0):
        names = [p.strip() for p in str(policy).split(",") if p.strip()]
        unknown = [p for p in names if p not in _OPS]
        if not names:
            raise GanvasError("--diffaugment-policy is empty; use a comma-separated subset of "
                              f"{', '.join(POLICIES)}")
        if unknown:
            raise GanvasError(f"--diffaugment-policy: unknown part(s) {', '.join(unknown)}; "
                              f"use a comma-separated subset of {', '.join(POLICIES)}")
        self.policy = names
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, images: Images) -> Images:
        for name in self.policy:
            images = _OPS[name](images, self.generator)
        return images

    def observe(self, real_logits: torch.Tensor) -> None:
        pass

    def state_dict(self) -> dict:
        return {"rng": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if "rng" in state:
            self.generator.set_state(state["rng"])
