"""DCGAN (Radford et al. 2015): transposed convolutions up, strided convolutions down.

At 28 px this is exactly the lesson's network (G ConvTranspose k3 s2 256->128->64->C,
D Conv k4 s2 64->128->256->1 with BatchNorm); at 16 px and above any power of two it is the
standard DCGAN, starting from 4x4 and doubling, with channels halving as resolution doubles.
Non-square pictures (``--resolution 128x64``) start from 4x8 (or 8x4, ...) instead, and the
discriminator's last layer reads the same 4x8 map.

Class-conditional (``--conditional``): the generator takes z joined with an embedding of the
class, and the discriminator adds the projection of the class's embedding onto its last
features, pooled (Miyato & Koyama 2018).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ganvas.models.init import dcgan_init
from ganvas.models.layers import LabelEmbedding, ProjectionHead, check_labels, join_labels
from ganvas.models.networks import DiscriminatorNetwork, GeneratorNetwork
from ganvas.models.registry import Claim, DataProfile, ModelFamily, ModelSpec, register_model

LESSON_RESOLUTION = 28


def _channel_schedule(resolution: int, base: int, cap: int) -> dict[int, int]:
    """Channels at each feature-map size 4, 8, ..., resolution/2: ``base`` at the largest."""
    sizes = [4 * 2**i for i in range(int(math.log2(resolution // 4)))]
    return {s: min(cap, base * resolution // (2 * s)) for s in sizes}


class DCGANGenerator(GeneratorNetwork):
    def __init__(self, spec: ModelSpec, base: int, cap: int):
        super().__init__()
        self.declare(latent_dim=spec.latent_dim, resolution=spec.resolution,
                     channels=spec.channels, c_dim=spec.c_dim, aspect=spec.aspect)
        # A conditional generator's input: z joined with the class's embedding (z's size).
        self.labels = LabelEmbedding(spec.c_dim, spec.latent_dim) if spec.c_dim else None
        inputs = spec.latent_dim * (2 if spec.c_dim else 1)
        if spec.resolution == LESSON_RESOLUTION:
            # z(1x1) -> 3x3 -> 7x7 -> 14x14 -> 28x28
            widths = [4 * base, 2 * base, base]
            layers: list[nn.Module] = [
                nn.ConvTranspose2d(inputs, widths[0], 3, 2, 0, bias=False),
                nn.BatchNorm2d(widths[0]), nn.ReLU(True),
                nn.ConvTranspose2d(widths[0], widths[1], 3, 2, 0, bias=False),
                nn.BatchNorm2d(widths[1]), nn.ReLU(True),
                nn.ConvTranspose2d(widths[1], widths[2], 3, 2, 1, output_padding=1, bias=False),
                nn.BatchNorm2d(widths[2]), nn.ReLU(True),
                nn.ConvTranspose2d(widths[2], spec.channels, 3, 2, 1, output_padding=1),
            ]
        else:
            schedule = _channel_schedule(spec.resolution, base, cap)
            sizes = sorted(schedule)
            # z (1x1) -> 4x4, or 4x8 / 8x4 ... for non-square pictures
            start = (4 * spec.aspect[1], 4 * spec.aspect[0])
            layers = [nn.ConvTranspose2d(inputs, schedule[4], start, 1, 0, bias=False),
                      nn.BatchNorm2d(schedule[4]), nn.ReLU(True)]
            for small, big in zip(sizes, sizes[1:]):
                layers += [nn.ConvTranspose2d(schedule[small], schedule[big], 4, 2, 1, bias=False),
                           nn.BatchNorm2d(schedule[big]), nn.ReLU(True)]
            layers.append(nn.ConvTranspose2d(schedule[sizes[-1]], spec.channels, 4, 2, 1))
        layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(self, c)
        x = join_labels(z, self.labels, c)
        return self.net(x.view(*x.shape, 1, 1))


NORMS = ("batch", "instance", "none")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":  # per-image, so gradient penalties stay per-sample
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


class DCGANDiscriminator(DiscriminatorNetwork):
    def __init__(self, spec: ModelSpec, base: int, cap: int, slope: float, norm: str = "batch"):
        super().__init__()
        if spec.resolution == LESSON_RESOLUTION:
            # 28 -> 14 -> 7 -> 3 -> 1
            widths = [base, 2 * base, 4 * base]
            layers: list[nn.Module] = [
                nn.Conv2d(spec.channels, widths[0], 4, 2, 1), nn.LeakyReLU(slope, True),
                nn.Conv2d(widths[0], widths[1], 4, 2, 1, bias=False),
                _norm(norm, widths[1]), nn.LeakyReLU(slope, True),
                nn.Conv2d(widths[1], widths[2], 4, 2, 1, bias=False),
                _norm(norm, widths[2]), nn.LeakyReLU(slope, True),
                nn.Conv2d(widths[2], 1, 3, 1, 0),
            ]
        else:
            schedule = _channel_schedule(spec.resolution, base, cap)
            sizes = sorted(schedule, reverse=True)
            # No BatchNorm on the first layer, as in the paper: it sees raw pixels.
            layers = [nn.Conv2d(spec.channels, schedule[sizes[0]], 4, 2, 1),
                      nn.LeakyReLU(slope, True)]
            for big, small in zip(sizes, sizes[1:]):
                layers += [nn.Conv2d(schedule[big], schedule[small], 4, 2, 1, bias=False),
                           _norm(norm, schedule[small]), nn.LeakyReLU(slope, True)]
            layers.append(nn.Conv2d(schedule[4], 1, (4 * spec.aspect[1], 4 * spec.aspect[0]),
                                    1, 0))
        self.net = nn.Sequential(*layers)
        dcgan_init(self)
        self.classes = spec.c_dim
        last = layers[-1]
        self.projection = ProjectionHead(spec.c_dim, last.in_channels) if spec.c_dim else None

    def forward(self, images: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(self, c)
        if self.projection is None:
            return self.net(images).flatten()
        features = self.net[:-1](images)
        return self.net[-1](features).flatten() + self.projection(features.mean((2, 3)), c)


@register_model("dcgan")
class DCGAN(ModelFamily):
    description = (
        "deep convolutional GAN; at 28 px exactly the lesson's network, at 16/32/64/128/256 px "
        "(any power of two from 16 to 1024) the standard DCGAN"
    )
    chosen_for = ("the lesson's datasets (digits, mnist, fashion-mnist), and any data no "
                  "other family claims")
    can_take_labels = True
    can_be_non_square = True

    @classmethod
    def claim(cls, data: DataProfile) -> Claim:
        if data.lesson:
            return Claim(100, f"{data.lesson} is one of the lesson's datasets: the lesson's DCGAN")
        if data.num_images is None:
            return Claim(0, "the data's size is unknown: DCGAN, the general default")
        return Claim(0, f"{data.described()}: DCGAN, the general default")

    option_help = {
        "base_channels": "channels at the largest feature map, doubling as maps halve",
        "max_channels": "cap for the small feature maps of large resolutions",
        "slope": "LeakyReLU slope in the discriminator",
        "discriminator_norm": "batch, instance or none (use instance or none with wgan-gp: "
                              "its penalty needs images scored independently)",
    }

    @dataclass(frozen=True)
    class Options:
        base_channels: int = 64  # channels at the largest feature map
        max_channels: int = 512  # cap for the small feature maps of large resolutions
        slope: float = 0.2  # LeakyReLU slope in the discriminator
        # BatchNorm mixes the images of a batch, which gradient penalties (wgan-gp) assume
        # it does not: use instance or none with them.
        discriminator_norm: str = "batch"

        def problem(self) -> str | None:
            if not (1 <= self.base_channels <= 1024 and 1 <= self.max_channels <= 4096):
                return "base_channels must be 1..1024 and max_channels 1..4096"
            if self.discriminator_norm not in NORMS:
                return f"discriminator_norm must be one of {', '.join(NORMS)}"
            return None

    @classmethod
    def resolution_problem(cls, resolution: int) -> str | None:
        power_of_two = resolution >= 16 and resolution & (resolution - 1) == 0
        if resolution == LESSON_RESOLUTION or (power_of_two and resolution <= 1024):
            return None
        return ("model dcgan supports 28 px (the lesson's network) or a power of two "
                "from 16 to 1024 px (16, 32, 64, 128, 256, ...)")

    @classmethod
    def build_generator(cls, spec: ModelSpec) -> nn.Module:
        o = spec.options
        return DCGANGenerator(spec, o.base_channels, o.max_channels)

    @classmethod
    def build_discriminator(cls, spec: ModelSpec) -> nn.Module:
        o = spec.options
        return DCGANDiscriminator(spec, o.base_channels, o.max_channels, o.slope,
                                  o.discriminator_norm)
