"""The lesson's fully connected GAN: images are flattened vectors, no convolutions."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ganvas.models.networks import DiscriminatorNetwork, GeneratorNetwork
from ganvas.models.registry import ModelFamily, ModelSpec, register_model


class DenseGenerator(GeneratorNetwork):
    """z ``[N, latent_dim]`` -> Linear/BatchNorm/LeakyReLU blocks -> tanh image ``[N, C, H, W]``."""

    def __init__(self, spec: ModelSpec, widths: tuple[int, ...], slope: float):
        super().__init__()
        self.latent_dim, self.channels, self.resolution = (
            spec.latent_dim, spec.channels, spec.resolution)
        layers: list[nn.Module] = []
        width_in = spec.latent_dim
        for width in widths:
            layers += [nn.Linear(width_in, width), nn.BatchNorm1d(width), nn.LeakyReLU(slope)]
            width_in = width
        layers += [nn.Linear(width_in, spec.channels * spec.resolution**2), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, self.channels, self.resolution, self.resolution)


class DenseDiscriminator(DiscriminatorNetwork):
    """Image ``[N, C, H, W]`` -> flattened -> Linear/LeakyReLU blocks -> one logit per image."""

    def __init__(self, spec: ModelSpec, widths: tuple[int, ...], slope: float):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width_in = spec.channels * spec.resolution**2
        for width in widths:
            layers += [nn.Linear(width_in, width), nn.LeakyReLU(slope)]
            width_in = width
        layers.append(nn.Linear(width_in, 1))  # a logit: the sigmoid lives in the loss
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).squeeze(1)


@register_model("dense")
class Dense(ModelFamily):
    labels_refusal = ("the lesson's fully connected network is unconditional")
    description = (
        "the lesson's fully connected GAN: G 256-512-1024 (BatchNorm, LeakyReLU 0.2, tanh), "
        "D 512-256 (LeakyReLU 0.2, logit); any resolution from 4 to 128 px"
    )

    option_help = {
        "generator_widths": "widths of the generator's hidden layers, as a list",
        "discriminator_widths": "widths of the discriminator's hidden layers, as a list",
        "slope": "LeakyReLU slope",
    }

    @dataclass(frozen=True)
    class Options:
        generator_widths: tuple[int, ...] = (256, 512, 1024)
        discriminator_widths: tuple[int, ...] = (512, 256)
        slope: float = 0.2

        def problem(self) -> str | None:
            if not self.generator_widths or not self.discriminator_widths:
                return "generator_widths and discriminator_widths need at least one layer"
            widths = self.generator_widths + self.discriminator_widths
            if min(widths) < 1 or max(widths) > 16_384 or len(widths) > 32:
                return "layer widths must be 1..16384, at most 16 layers per network"
            return None

    @classmethod
    def resolution_problem(cls, resolution: int) -> str | None:
        if not 4 <= resolution <= 128:
            return ("model dense works on 4 to 128 px (a fully connected layer per pixel "
                    "grows too large beyond); use --model dcgan for larger images")
        return None

    @classmethod
    def build_generator(cls, spec: ModelSpec) -> nn.Module:
        return DenseGenerator(spec, spec.options.generator_widths, spec.options.slope)

    @classmethod
    def build_discriminator(cls, spec: ModelSpec) -> nn.Module:
        return DenseDiscriminator(spec, spec.options.discriminator_widths, spec.options.slope)
