"""DiffAugment (Zhao et al. 2020): colour, translation and cutout, applied on every call."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganvas.errors import GanvasError

POLICIES = ("color", "translation", "cutout")


def _rand(generator: torch.Generator, *shape: int, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(*shape, generator=generator).to(like.device, like.dtype)


def adjust_color(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random brightness, saturation (RGB only) and contrast per image."""
    n = x.shape[0]
    x = x + (_rand(g, n, 1, 1, 1, like=x) - 0.5)
    if x.shape[1] == 3:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (_rand(g, n, 1, 1, 1, like=x) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(g, n, 1, 1, 1, like=x) + 0.5) + mean


def translate(x: torch.Tensor, g: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size, whole pixels, filling with zeros."""
    n, _, h, w = x.shape
    max_dy, max_dx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-max_dy, max_dy + 1, (n,), generator=g)
    dx = torch.randint(-max_dx, max_dx + 1, (n,), generator=g)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = -2 * dx / w  # grid units span 2 over the image width
    theta[:, 1, 2] = -2 * dy / h
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def cutout(x: torch.Tensor, g: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of ``ratio`` times the image size at a random place in each image."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), generator=g)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), generator=g)
    ys = torch.arange(h).view(1, h, 1)
    xs = torch.arange(w).view(1, 1, w)
    dy, dx = ys - cy, xs - cx
    inside = (dy >= -(ch // 2)) & (dy < ch - ch // 2) & (dx >= -(cw // 2)) & (dx < cw - cw // 2)
    keep = (~inside).to(x.device, x.dtype).unsqueeze(1)
    return x * keep


_OPS = {"color": adjust_color, "translation": translate, "cutout": cutout}


class DiffAugment:
    """Apply the ``policy`` (comma-separated subset of color, translation, cutout) to a batch.

    Every transform is differentiable with respect to the images, so the generator's
    gradients pass through it.
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
        self.generator = torch.Generator().manual_seed(seed + 7919)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
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
