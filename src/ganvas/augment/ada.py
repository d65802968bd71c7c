"""Adaptive discriminator augmentation (Karras et al. 2020), written for ganvas.

Each image is transformed with probability ``p`` by each of a chain of geometric and colour
transforms. ``p`` follows the overfitting signal ``r_t = E[sign(D(real))]`` (the sign taken
from the loss's own boundary: ``AdversarialLoss.margins``): when D is too sure of the reals
(r_t above the target, 0.6 by default) p rises, otherwise it falls, by an amount proportional
to the real images observed (so its speed is in images, whatever the batch).
The random parameters are drawn once per batch and applied alike to every scale of a
pyramid (MSG-GAN).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ganvas.augment.diffaugment import colours_only
from ganvas.rng import per_sample
from ganvas.utils import nested
from ganvas.utils.device import autocast_off
from ganvas.utils.nested import Images


class AdaptiveAugment:
    """Augmenter whose strength ``p`` adapts to the discriminator's overfitting.

    Args:
        seed: seeds the augmenter's own random generator.
        target: the r_t value to hold (0.6 in the paper).
        speed_kimg: thousands of images over which p may move from 0 to 1.
        interval: discriminator passes between adjustments of p.
        sum_over_processes: sums a tensor over the processes of a distributed run, so every
            process adjusts p alike from the whole batch's signal (None: one process).
    """

    def __init__(self, *, seed: int = 0, target: float = 0.6, speed_kimg: float = 100.0,
                 interval: int = 4, p: float = 0.0, sum_over_processes=None):
        self.sum_over_processes = sum_over_processes or (lambda t: t)
        self.p = p
        self.target = target
        self.speed_kimg = speed_kimg
        self.interval = interval
        self.generator = torch.Generator().manual_seed(seed)
        self._signs = 0.0
        self._count = 0
        self._calls = 0
        self.rt = float("nan")

    # ---- adapting p ---------------------------------------------------------------------------

    def observe(self, real_logits: torch.Tensor) -> None:
        """Feed the discriminator's logits on (augmented) reals; adjusts p every interval."""
        self._signs += float(torch.sign(real_logits.detach()).sum())
        self._count += real_logits.numel()
        self._calls += 1
        if self._calls % self.interval == 0:
            signs, count = self.sum_over_processes(
                torch.tensor([self._signs, float(self._count)], dtype=torch.float64)).tolist()
            if not count:
                return
            self.rt = signs / count
            step = count / (self.speed_kimg * 1000)
            self.p = float(min(1.0, max(0.0, self.p + math.copysign(step, self.rt - self.target))))
            self._signs, self._count = 0.0, 0

    # ---- applying the augmentations ---------------------------------------------------------

    def _chance(self, n: int, p: float | None = None) -> torch.Tensor:
        return self._uniform(n) < (self.p if p is None else p)

    def _normal(self, n: int, *shape: int) -> torch.Tensor:
        return per_sample(lambda m: torch.randn(m, *shape, generator=self.generator), n)

    def _uniform(self, n: int, *shape: int) -> torch.Tensor:
        return per_sample(lambda m: torch.rand(m, *shape, generator=self.generator), n)

    def _geometry(self, n: int, h: int, w: int) -> torch.Tensor:
        """Per-image 2x3 affine matrices (in grid coordinates) for the geometric chain."""
        # The matrices live on the CPU; a caller's CPU autocast (StyleGAN2 augments reals for
        # R1 inside it) would multiply them in bfloat16, which index-put then refuses.
        with autocast_off(torch.device("cpu")):
            return self._compose_geometry(n, h, w)

    def _compose_geometry(self, n: int, h: int, w: int) -> torch.Tensor:
        eye = torch.eye(3).repeat(n, 1, 1)

        def compose(mask: torch.Tensor, m: torch.Tensor) -> None:
            eye[mask] = eye[mask] @ m[mask]

        # x-flip
        flip = torch.eye(3).repeat(n, 1, 1)
        flip[:, 0, 0] = -1
        compose(self._chance(n), flip)
        # rotation by a multiple of 90 degrees
        k = per_sample(lambda m: torch.randint(0, 4, (m,), generator=self.generator), n
                       ).float() * (math.pi / 2)
        ratio = w / h
        compose(self._chance(n), _rotation(k, ratio))
        # integer translation, up to 1/8 of the size
        t = (self._uniform(n, 2) * 2 - 1) * 0.125
        t[:, 0] = torch.round(t[:, 0] * w) / w
        t[:, 1] = torch.round(t[:, 1] * h) / h
        compose(self._chance(n), _translation(t * 2))
        # isotropic scaling, lognormal
        s = torch.exp2(self._normal(n) * 0.2)
        compose(self._chance(n), _scale(s, s))
        # arbitrary rotation; the probability is split so two chances give about p
        p_rot = 1 - math.sqrt(max(0.0, 1 - self.p))
        compose(self._chance(n, p_rot),
                _rotation((self._uniform(n) * 2 - 1) * math.pi, ratio))
        # anisotropic scaling
        s = torch.exp2(self._normal(n) * 0.2)
        compose(self._chance(n), _scale(s, 1 / s))
        compose(self._chance(n, p_rot),
                _rotation((self._uniform(n) * 2 - 1) * math.pi, ratio))
        # fractional translation
        compose(self._chance(n), _translation(self._normal(n, 2) * 0.125 * 2))
        return eye[:, :2, :]

    def _color(self, x: Images) -> Images:
        finest = nested.largest(x)
        n, rgb = finest.shape[0], finest.shape[1] in (3, 4)
        chosen = torch.zeros(n, dtype=torch.bool)

        def per_image(values: torch.Tensor, mask: torch.Tensor, neutral: float) -> torch.Tensor:
            chosen.logical_or_(mask)
            return torch.where(mask, values, torch.full_like(values, neutral))

        # (drawn in this order whatever is chosen, so the random stream never depends on it)
        brightness = per_image(self._normal(n) * 0.2, self._chance(n), 0.0)
        contrast = per_image(torch.exp2(self._normal(n) * 0.5), self._chance(n), 1.0)
        saturation = (per_image(torch.exp2(self._normal(n)), self._chance(n), 1.0) if rgb
                      else None)
        if not bool(chosen.any()):
            return x
        # Only the chosen images are changed, as for the geometry: the others pass exactly.
        rows = chosen.nonzero().flatten()
        index = rows.to(finest.device)

        def column(values: torch.Tensor) -> torch.Tensor:
            return values[rows].view(-1, 1, 1, 1).to(finest.device, finest.dtype)

        b, c = column(brightness), column(contrast)
        s = column(saturation) if saturation is not None else None

        @colours_only  # (the geometry moves alpha with the colours; colour leaves it be)
        def adjust(t: torch.Tensor) -> torch.Tensor:
            t = t + b
            mean = t.mean(dim=(1, 2, 3), keepdim=True)
            t = (t - mean) * c + mean
            if s is not None:
                grey = t.mean(dim=1, keepdim=True)
                t = (t - grey) * s + grey
            return t

        def apply(t: torch.Tensor) -> torch.Tensor:
            return t.index_copy(0, index, adjust(t.index_select(0, index)))

        return nested.apply(apply, x)

    def __call__(self, images: Images) -> Images:
        if self.p <= 0:
            return images
        finest = nested.largest(images)
        n, _, h, w = finest.shape
        theta = self._geometry(n, h, w)
        # Only the images some geometric transform was drawn for are resampled: at a small p
        # (the start of every run, and a discriminator near the target) most are left as they
        # are, and resampling them all cost MSG 14 % of its images per second at p = 0.005.
        # The others pass through unchanged, exactly (an identity resampling is not: it
        # rounds), and the random stream is drawn alike either way.
        moved = (theta != torch.eye(3)[:2]).flatten(1).any(dim=1)
        if not bool(moved.any()):
            return self._color(images)
        index = moved.nonzero().flatten().to(finest.device)
        theta = theta[moved].to(finest.device)

        def warp(t: torch.Tensor) -> torch.Tensor:
            # in float32 whatever the autocast: a bfloat16 sampling grid is off by up to a
            # quarter of a pixel at 64 px (a whole pixel at 256)
            work = torch.promote_types(t.dtype, torch.float32)  # (float64 stays float64)
            chosen = t.index_select(0, index)
            with autocast_off(t.device):
                grid = F.affine_grid(theta.to(work), list(chosen.shape), align_corners=False)
                warped = F.grid_sample(chosen.to(work), grid, mode="bilinear",
                                       padding_mode="reflection", align_corners=False)
            return t.index_copy(0, index, warped.to(t.dtype))

        return self._color(nested.apply(warp, images))

    def state_dict(self) -> dict:
        return {"p": self.p, "rng": self.generator.get_state(), "signs": self._signs,
                "count": self._count, "calls": self._calls}

    def load_state_dict(self, state: dict) -> None:
        p = float(state["p"])
        if not 0.0 <= p <= 1.0:  # also false for NaN
            raise ValueError(f"augmentation probability {p}")
        self.p = p
        self.generator.set_state(state["rng"])
        self._signs, self._count = float(state["signs"]), int(state["count"])
        self._calls = int(state["calls"])


def _rotation(angle: torch.Tensor, ratio: float = 1.0) -> torch.Tensor:
    """A rotation in grid coordinates of a picture ``ratio`` times as wide as tall: grid
    units are half the width across and half the height down, so a turn of a non-square
    picture is the pixel-space rotation seen through that stretch (without it, a 2:1
    picture would turn and shear)."""
    m = torch.eye(3).repeat(len(angle), 1, 1)
    c, s = torch.cos(angle), torch.sin(angle)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s / ratio, s * ratio, c
    return m


def _translation(t: torch.Tensor) -> torch.Tensor:
    m = torch.eye(3).repeat(len(t), 1, 1)
    m[:, 0, 2], m[:, 1, 2] = t[:, 0], t[:, 1]
    return m


def _scale(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    m = torch.eye(3).repeat(len(sx), 1, 1)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m
