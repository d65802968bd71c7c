"""MSG-GAN (Karnewar & Wang 2020): multi-scale gradients instead of progressive growing.

The generator emits an image at every scale (a 1x1 convolution after each block, 4 px to
the final resolution); the discriminator takes all of them at once, combining each scale
with its features on the way down, so its gradients reach every block of the generator
from the first step. No growth schedule, no fade-in: one network trained throughout. The
blocks are ProGAN's (equalised learning rate, pixel norm, minibatch standard deviation), as
in the paper's MSG-ProGAN; the loss defaults to the paper's relativistic average hinge.

Combine functions (how a scale's image joins the discriminator's features):
``simple`` concatenates the image itself; ``lin_cat`` concatenates features made from it
by a 1x1 convolution; ``cat_lin`` concatenates the image, then mixes with a 1x1 convolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ganvas.models.layers import (
    DownBlock,
    EqualizedConv2d,
    FromRGB,
    InputBlock,
    LabelEmbedding,
    OutputBlock,
    SphericalLatents,
    UpBlock,
    block_options_problem,
    check_labels,
    chosen_widths,
    cpu_widths,
    downsample,
    is_power_of_two,
    join_labels,
    leaky,
    pixel_norm,
    resolutions,
    to_rgb,
    widths,
)
from ganvas.models.networks import DiscriminatorNetwork, GeneratorNetwork
from ganvas.models.registry import SMALL_DATA, ModelFamily, ModelSpec, register_model
from ganvas.models.schedule import SchedulePoint

COMBINES = ("simple", "lin_cat", "cat_lin")


class MSGGenerator(SphericalLatents, GeneratorNetwork):
    """``forward(z)`` returns the pyramid ``[image at 4 px, 8 px, ..., final]``."""

    def __init__(self, spec: ModelSpec, base: int, cap: int):
        super().__init__()
        self.declare(latent_dim=spec.latent_dim, resolution=spec.resolution,
                     channels=spec.channels, c_dim=spec.c_dim)
        sizes = resolutions(spec.resolution)
        width = widths(spec.resolution, base, cap)
        # conditional: the class's embedding (z's size) joins the normalised z
        self.labels = LabelEmbedding(spec.c_dim, spec.latent_dim) if spec.c_dim else None
        inputs = spec.latent_dim * (2 if spec.c_dim else 1)
        self.blocks = nn.ModuleList([InputBlock(inputs, width[4])] + [
            UpBlock(width[small], width[big]) for small, big in zip(sizes, sizes[1:])])
        self.to_rgb = nn.ModuleList([to_rgb(width[r], spec.channels) for r in sizes])

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> list[torch.Tensor]:
        check_labels(self, c)
        pyramid, x = [], join_labels(pixel_norm(z), self.labels, c)
        for block, rgb in zip(self.blocks, self.to_rgb):
            x = block(x)
            pyramid.append(rgb(x))
        return pyramid

    def synthesize_images(self, z, c, noise):
        x = join_labels(z, self.labels, c)  # z normalised by truncate()
        for block in self.blocks:  # the coarse images are not needed to sample
            x = block(x)
        return self.to_rgb[-1](x).clamp(-1, 1)


class Combine(nn.Module):
    """Joins one scale's image with the discriminator's features of that scale."""

    def __init__(self, kind: str, image_channels: int, channels: int):
        super().__init__()
        self.kind = kind
        if kind == "lin_cat":
            self.image = FromRGB(image_channels, max(channels // 4, 8))
            self.out_channels = channels + max(channels // 4, 8)
        elif kind == "cat_lin":
            self.mix = EqualizedConv2d(channels + image_channels, channels, 1)
            self.out_channels = channels
        else:
            self.out_channels = channels + image_channels

    def forward(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        if self.kind == "lin_cat":
            return torch.cat([self.image(image), features], dim=1)
        joined = torch.cat([image, features], dim=1)
        return leaky(self.mix(joined)) if self.kind == "cat_lin" else joined


class MSGDiscriminator(DiscriminatorNetwork):
    """``forward(pyramid)`` -> one logit per image; the pyramid is ordered coarse to fine."""

    def __init__(self, spec: ModelSpec, base: int, cap: int, combine: str, group_size: int):
        super().__init__()
        sizes = resolutions(spec.resolution)
        width = widths(spec.resolution, base, cap)
        self.from_rgb = FromRGB(spec.channels, width[spec.resolution])
        # combines[i] joins scale sizes[i] (all but the finest) with the features there
        self.combines = nn.ModuleList([Combine(combine, spec.channels, width[r])
                                       for r in sizes[:-1]])
        self.blocks = nn.ModuleList()  # blocks[i] takes scale sizes[i + 1] down to sizes[i]
        for i, (small, big) in enumerate(zip(sizes, sizes[1:])):
            inputs = (width[big] if big == spec.resolution
                      else self.combines[i + 1].out_channels)
            self.blocks.append(DownBlock(inputs, width[small], mid_channels=width[big]))
        self.output = OutputBlock(self.combines[0].out_channels, width[4], group_size,
                                  classes=spec.c_dim)
        self.batch_group = group_size
        self.scales = len(sizes)

    def forward(self, pyramid: list[torch.Tensor], c: torch.Tensor | None = None
                ) -> torch.Tensor:
        if not isinstance(pyramid, (list, tuple)) or len(pyramid) != self.scales:
            raise ValueError(f"the MSG discriminator takes a list of {self.scales} scales")
        x = self.from_rgb(pyramid[-1])
        for i in range(self.scales - 2, -1, -1):
            x = self.combines[i](self.blocks[i](x), pyramid[i])
        return self.output(x, c)


@register_model("msg")
class MSG(ModelFamily):
    equalised_lr = True  # every layer scales its weights by He's constant
    can_take_labels = True  # an embedding joined to z, a projection discriminator
    description = (
        "MSG-GAN (Karnewar & Wang 2020): the generator draws every scale from 4 px up, the "
        "discriminator judges all scales at once, so gradients reach every block from the "
        "start (no growing); ProGAN's blocks, relativistic hinge loss by default; 8 to 1024 px")
    option_help = {
        "base_channels": "channels at the final resolution, doubling as it halves (auto: "
                         "chosen from the resolution)",
        "max_channels": "cap for the small resolutions (auto: chosen from the resolution)",
        "combine": f"how each scale joins the discriminator: {', '.join(COMBINES)} "
                   "(simple is the paper's for MSG-ProGAN)",
        "group_size": "images per minibatch-standard-deviation group",
    }

    @dataclass(frozen=True)
    class Options:
        base_channels: int | None = None
        max_channels: int | None = None
        combine: str = "simple"
        group_size: int = 4

        def problem(self) -> str | None:
            if self.combine not in COMBINES:
                return f"combine must be one of {', '.join(COMBINES)}"
            return block_options_problem(self)

    @classmethod
    def resolution_problem(cls, resolution: int) -> str | None:
        if is_power_of_two(resolution, 8, 1024):
            return None
        return "model msg works at a power of two from 8 to 1024 px (8, 16, ..., 1024)"

    @classmethod
    def auto_settings(cls, resolution: int, num_images: int, loss: str | None
                      ) -> dict[str, Any]:
        # The paper's Adam (betas 0 / 0.99) and relativistic hinge, at a rate for short runs:
        # on emoji at 64 px, 20 CPU minutes, FID 260.9 at the paper's 3e-3, 237.4 at 5e-3;
        # 1e-2 scored 202.3 but drew one kind of picture (equalised learning rate: see
        # progressive.FAST_LR).
        settings: dict[str, Any] = {
            "loss": loss or "rahinge", "lr_g": 5e-3, "lr_d": 5e-3, "beta1": 0.0,
            "beta2": 0.99, "batch_size": 32 if resolution <= 64 else 16, "ema_kimg": 10.0}
        if num_images < SMALL_DATA:
            # On a small folder MSG collapsed: on 200 emoji at 64 px, 10 CPU minutes, 34 to
            # 50 % of its samples were near-duplicates on average, whole ticks at 100 %, with
            # ADA and without (ADA barely acts: r_t sits near its target). The mode-seeking
            # term (pairs of samples must differ as their latents do) kept every tick at 0
            # and took FID from 318.75 to 260.25 at seed 1 (docs/benchmarks.md: The small
            # folder).
            settings["mode_seeking"] = 1.0
        return settings

    @classmethod
    def auto_options(cls, resolution: int, num_images: int, batch_size: int,
                     given: dict[str, Any] | None = None) -> dict[str, Any]:
        base, cap = cpu_widths(resolution)
        return {"base_channels": base, "max_channels": cap}

    @classmethod
    def build_generator(cls, spec: ModelSpec) -> nn.Module:
        return MSGGenerator(spec, *chosen_widths(spec.options, spec.resolution))

    @classmethod
    def build_discriminator(cls, spec: ModelSpec) -> nn.Module:
        o = spec.options
        return MSGDiscriminator(spec, *chosen_widths(o, spec.resolution), o.combine, o.group_size)

    @classmethod
    def real_input(cls, spec: ModelSpec, images: torch.Tensor, point: SchedulePoint
                   ) -> list[torch.Tensor]:
        """Reals as a pyramid like the generator's: area-shrunk to every scale."""
        return [downsample(images, spec.resolution // r) for r in resolutions(spec.resolution)]

