"""FastGAN (Liu et al. 2021, "Towards Faster and Stabilized GAN Training for High-fidelity
Few-shot Image Synthesis"): a light GAN for 100 to 1,000 pictures.

Generator: from a 4x4 map made of z, nearest-neighbour upsampling + 3x3 convolution at each
size, halved by a gated linear unit (GLU); every second size has two convolutions and
per-pixel noise. *Skip-layer excitation* (SLE) joins a small feature map to one sixteen
times larger: the small map is pooled to 4x4, squeezed to one number per channel and
gates the large map's channels, a shortcut for gradients and a way for coarse layers to
set the style of fine ones. It draws the final image and a half-size one (at most 128 px)
from an earlier layer.

Discriminator: one branch judges the image (strided blocks with an average-pooled shortcut,
SLE from eight times larger maps), another the half-size image; each ends in a 5x5 map of
patch scores, averaged into one logit per image. It is also trained to *reconstruct* real
images from its own features through small decoders (the whole image from the 8x8 map, a
random quarter from the 16x16 map, the half-size image from the other branch): a
self-supervised task that makes it learn features that describe the picture instead of
memorising the few it sees. The recipe is :mod:`ganvas.losses.fastgan`.

Every convolution is spectrally normalised and every block batch-normalised, as in the
paper. The widths follow the paper's per-resolution multipliers times ``base_channels``
(the paper: 64; auto: 16, a size a CPU trains in minutes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganvas.models.layers import (
    GatedLinearUnit,
    downsample,
    gated_linear_unit,
    is_power_of_two,
)
from ganvas.models.networks import DiscriminatorNetwork, GeneratorNetwork
from ganvas.models.registry import (
    SMALL_DATA,
    Claim,
    DataProfile,
    ModelFamily,
    ModelSpec,
    register_model,
    small_data_claim,
)
from ganvas.models.schedule import SchedulePoint
from ganvas.rng import per_sample

# Channels per feature-map size, in units of base_channels (the paper's ``nfc_multi``).
G_WIDTHS = {4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 0.5, 512: 0.25, 1024: 0.125}
D_WIDTHS = {4: 16, 8: 16, 16: 8, 32: 4, 64: 2, 128: 1, 256: 0.5, 512: 0.25, 1024: 0.125,
            2048: 0.0625}
MIN_WIDTH = 4
SMALL_LIMIT = 128  # the half-size image and the reconstructions are at most this large
PARTS = 4  # quarters a part reconstruction can be asked for (row-major)
SLE_MIN = 64  # the generator's first excited size (4 px excites 64 px)


def width(table: dict[int, float], size: int, base: int) -> int:
    return max(MIN_WIDTH, int(base * table[min(size, max(table))]))


def small_resolution(resolution: int) -> int:
    """Side of the half-size image both networks exchange and of the reconstructions."""
    return min(resolution // 2, SMALL_LIMIT)


def init_norms(module: nn.Module) -> None:
    """BatchNorm scales ~ N(1, 0.02) as in the paper (the convolutions' scale does not matter
    under spectral normalisation)."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1, padding: int = 0,
         bias: bool = False) -> nn.Module:
    return spectral_norm(nn.Conv2d(in_channels, out_channels, kernel, stride, padding,
                                   bias=bias))


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class SkipLayerExcitation(nn.Module):
    """``forward(large, small)``: the large map's channels gated by the small map."""

    def __init__(self, small_channels: int, large_channels: int):
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(4), conv(small_channels, large_channels, 4), Swish(),
            conv(large_channels, large_channels, 1), nn.Sigmoid())

    def forward(self, large: torch.Tensor, small: torch.Tensor) -> torch.Tensor:
        return large * self.gate(small)


class NoiseInjection(nn.Module):
    """Per-pixel noise of learned strength (0 at the start); ``const`` noise is a buffer, so
    a saved model draws the same images again."""

    def __init__(self, size: int):
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("noise_const", torch.randn(size, size))

    def forward(self, x: torch.Tensor, noise: str, rng: torch.Generator | None = None
                ) -> torch.Tensor:
        if noise == "random":  # from ``rng`` (a CPU generator) when given, else the global one
            n, _, h, w = x.shape
            if rng is None:
                drawn = torch.randn(n, 1, h, w, device=x.device, dtype=x.dtype)
            else:
                drawn = per_sample(lambda m: torch.randn(m, 1, h, w, generator=rng), n)
                drawn = drawn.to(x.device, x.dtype)
            return x + self.strength * drawn
        if noise == "const":
            return x + (self.strength * self.noise_const).to(x.dtype)
        return x


class UpBlock(nn.Module):
    """Double the size: nearest upsampling, 3x3 convolution, BatchNorm, GLU; ``twice`` adds
    a second convolution and noise after each (the paper's ``UpBlockComp``)."""

    def __init__(self, in_channels: int, out_channels: int, size: int, twice: bool):
        super().__init__()
        self.conv1 = conv(in_channels, out_channels * 2, 3, padding=1)
        self.norm1 = nn.BatchNorm2d(out_channels * 2)
        self.twice = twice
        if twice:
            self.noise1, self.noise2 = NoiseInjection(size), NoiseInjection(size)
            self.conv2 = conv(out_channels, out_channels * 2, 3, padding=1)
            self.norm2 = nn.BatchNorm2d(out_channels * 2)

    def forward(self, x: torch.Tensor, noise: str, rng: torch.Generator | None = None
                ) -> torch.Tensor:
        x = self.conv1(F.interpolate(x, scale_factor=2, mode="nearest"))
        if self.twice:
            x = self.noise1(x, noise, rng)
        x = gated_linear_unit(self.norm1(x))
        if self.twice:
            x = gated_linear_unit(self.norm2(self.noise2(self.conv2(x), noise, rng)))
        return x


class FastGANGenerator(GeneratorNetwork):
    """``forward(z)`` returns ``[half-size image, image]`` (random noise, from the global
    generator; the recipe calls ``render`` with its own stream); ``sample`` draws the image
    alone."""

    average_needs_own_statistics = True  # BatchNorm after every convolution

    def noise_inputs(self) -> list[nn.Module]:
        return [m for m in self.modules() if isinstance(m, NoiseInjection)]

    def __init__(self, spec: ModelSpec, base: int, half_size_image: bool = True):
        super().__init__()
        self.declare(latent_dim=spec.latent_dim, resolution=spec.resolution,
                     channels=spec.channels)
        R = spec.resolution
        self.sizes = [4 * 2**i for i in range(int(math.log2(R // 4)) + 1)]
        ch = {s: width(G_WIDTHS, s, base) for s in self.sizes}
        self.start = nn.Sequential(
            spectral_norm(nn.ConvTranspose2d(spec.latent_dim, ch[4] * 2, 4, bias=False)),
            nn.BatchNorm2d(ch[4] * 2), GatedLinearUnit())
        # the paper's pattern: two convolutions at 8, 32, 128 and 512 px, one elsewhere
        self.ups = nn.ModuleDict({str(s): UpBlock(ch[s // 2], ch[s], s,
                                                  twice=int(math.log2(s)) % 2 == 1)
                                  for s in self.sizes[1:]})
        self.excite = nn.ModuleDict({str(s): SkipLayerExcitation(ch[s // 16], ch[s])
                                     for s in self.sizes if SLE_MIN <= s <= 512})
        self.small = small_resolution(R)
        self.to_image = conv(ch[R], spec.channels, 3, padding=1)
        # The half-size image serves FastGAN's own discriminator; other discriminators
        # (the projected one) judge the image alone.
        self.to_small = conv(ch[self.small], spec.channels, 1) if half_size_image else None
        init_norms(self)

    def render(self, z: torch.Tensor, noise: str, rng: torch.Generator | None = None
               ) -> list[torch.Tensor]:
        """``[half-size image, image]`` (``[image]`` without the half-size one); ``rng``
        draws random noise (None: the global generator)."""
        features = {4: self.start(z[:, :, None, None])}
        for s in self.sizes[1:]:
            x = self.ups[str(s)](features[s // 2], noise, rng)
            if str(s) in self.excite:
                x = self.excite[str(s)](x, features[s // 16])
            features[s] = x
        image = torch.tanh(self.to_image(features[self.resolution]))
        if self.to_small is None:
            return [image]
        return [torch.tanh(self.to_small(features[self.small])), image]

    def forward(self, z: torch.Tensor) -> list[torch.Tensor]:
        return self.render(z, "random")

    def training_images(self, z, rng=None):
        return self.render(z, "random", rng)

    def synthesize_images(self, z, c, noise):
        return self.render(z, noise)[-1].clamp(-1, 1)


def down_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(conv(in_channels, out_channels, 4, 2, 1),
                         nn.BatchNorm2d(out_channels), nn.LeakyReLU(0.2))


class DownBlockWithShortcut(nn.Module):
    """Halve the size: a strided 4x4 + 3x3 path averaged with an average-pool + 1x1 path
    (the paper's ``DownBlockComp``)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.main = nn.Sequential(
            conv(in_channels, out_channels, 4, 2, 1), nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(0.2), conv(out_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels), nn.LeakyReLU(0.2))
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2), conv(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.main(x) + self.shortcut(x)) / 2


class Decoder(nn.Module):
    """8x8 features -> an image of side ``size`` (nearest upsampling + 3x3 + GLU)."""

    def __init__(self, in_channels: int, image_channels: int, size: int, base: int):
        super().__init__()
        layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(8)]
        channels, s = in_channels, 8
        while s < size:
            s *= 2
            out = width(G_WIDTHS, s, base)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                       conv(channels, out * 2, 3, padding=1), nn.BatchNorm2d(out * 2),
                       GatedLinearUnit()]
            channels = out
        layers += [conv(channels, image_channels, 3, padding=1, bias=True), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FastGANDiscriminator(DiscriminatorNetwork):
    """``forward([half-size, image])`` -> one logit per image; ``reconstruct`` also returns
    the three reconstructions of the self-supervised loss."""

    def __init__(self, spec: ModelSpec, base: int):
        super().__init__()
        R, c = spec.resolution, spec.channels
        ch = {s: width(D_WIDTHS, 2 * s, base) for s in (4, 8, 16, 32, 64, 128, 256, 512, 1024)}
        # The image branch works from at most 256 px: larger images are halved first.
        top = min(R, 256)
        stem: list[nn.Module] = []
        if R == 1024:
            stem += [conv(c, ch[512], 4, 2, 1), nn.LeakyReLU(0.2),
                     conv(ch[512], ch[256], 4, 2, 1), nn.BatchNorm2d(ch[256]),
                     nn.LeakyReLU(0.2)]
        elif R == 512:
            stem += [conv(c, ch[256], 4, 2, 1), nn.LeakyReLU(0.2)]
        else:
            stem += [conv(c, ch[top], 3, padding=1), nn.LeakyReLU(0.2)]
        self.stem = nn.Sequential(*stem)
        self.sizes = [top // 2**i for i in range(int(math.log2(top // 8)) + 1)]  # top..8
        self.downs = nn.ModuleDict({str(s // 2): DownBlockWithShortcut(ch[s], ch[s // 2])
                                    for s in self.sizes[:-1]})
        # SLE from maps eight times larger, from the three largest sizes (the paper's
        # 256 -> 32, 128 -> 16, 64 -> 8 at 256 px).
        self.excite = nn.ModuleDict({str(s // 8): SkipLayerExcitation(ch[s], ch[s // 8])
                                     for s in self.sizes[:3] if s // 8 >= 8})
        self.score = nn.Sequential(conv(ch[8], ch[4], 1), nn.BatchNorm2d(ch[4]),
                                   nn.LeakyReLU(0.2), conv(ch[4], 1, 4))
        # The half-size branch: its own, narrower widths (the paper's).
        self.small = small_resolution(R)
        small_ch = {s: width(D_WIDTHS, 4 * s, base) for s in (8, 16, 32, 64)}
        layers: list[nn.Module] = [conv(c, small_ch[self.small // 2], 4, 2, 1),
                                   nn.LeakyReLU(0.2)]
        s = self.small // 2
        while s > 8:
            layers.append(down_block(small_ch[s], small_ch[s // 2]))
            s //= 2
        self.small_branch = nn.Sequential(*layers)
        self.small_score = conv(small_ch[8], 1, 4)
        decoder_base = max(1, base // 2)
        self.decode_whole = Decoder(ch[8], c, self.small, decoder_base)
        self.decode_part = Decoder(ch[16], c, self.small, decoder_base)
        self.decode_small = Decoder(small_ch[8], c, self.small, decoder_base)
        init_norms(self)

    def features(self, images: list[torch.Tensor]) -> tuple[dict[int, torch.Tensor],
                                                            torch.Tensor]:
        if not isinstance(images, (list, tuple)) or len(images) != 2:
            raise ValueError("the FastGAN discriminator takes [half-size image, image]")
        small, image = images
        x = self.stem(image)
        features = {self.sizes[0]: x}
        for s in self.sizes[1:]:
            x = self.downs[str(s)](x)
            if str(s) in self.excite:
                x = self.excite[str(s)](x, features[s * 8])
            features[s] = x
        return features, self.small_branch(small)

    def logits(self, features: dict[int, torch.Tensor], small: torch.Tensor) -> torch.Tensor:
        patches = torch.cat([self.score(features[8]).flatten(1),
                             self.small_score(small).flatten(1)], dim=1)
        return patches.mean(dim=1)

    def forward(self, images: list[torch.Tensor]) -> torch.Tensor:
        return self.logits(*self.features(images))

    def reconstruct(self, images: list[torch.Tensor], part: int
                    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and ``[whole image, quarter `part`, half-size image]`` as D reconstructs
        them, each at the half-size resolution."""
        features, small = self.features(images)
        quarter = crop_quarter(features[16], part)
        return self.logits(features, small), [
            self.decode_whole(features[8]), self.decode_part(quarter), self.decode_small(small)]


def crop_quarter(x: torch.Tensor, part: int) -> torch.Tensor:
    """Quarter ``part`` (0 top left, 1 top right, 2 bottom left, 3 bottom right)."""
    h, w = x.shape[-2] // 2, x.shape[-1] // 2
    row, col = divmod(part, 2)
    return x[..., row * h:(row + 1) * h, col * w:(col + 1) * w]


def reconstruction_targets(images: list[torch.Tensor], part: int) -> list[torch.Tensor]:
    """What ``reconstruct`` should give back for these (real) images."""
    small, image = images
    size = small.shape[-1]
    return [downsample(image, image.shape[-1] // size),
            downsample(crop_quarter(image, part), image.shape[-1] // 2 // size),
            small]


@register_model("fastgan")
class FastGAN(ModelFamily):
    labels_refusal = ("its authors published no class-conditional version, and its "
                      "discriminator's reconstruction decoders have no place for a label")
    description = (
        "FastGAN (Liu et al. 2021) for few pictures (100 to 1,000): a light generator with "
        "skip-layer excitation, a discriminator that also learns to reconstruct real images "
        "(a self-supervised loss), hinge loss and DiffAugment by default; 32 to 1024 px")
    recipe = "fastgan"
    option_help = {
        "base_channels": "width of both networks in the paper's units (the paper: 64; "
                         "auto: 16, a size for CPUs)",
        "reconstruction_weight": "weight of the discriminator's reconstruction loss "
                                 "(0: off, a plain GAN with FastGAN's networks)",
    }

    @dataclass(frozen=True)
    class Options:
        base_channels: int | None = None
        reconstruction_weight: float = 1.0

        def problem(self) -> str | None:
            if self.base_channels is not None and not 1 <= self.base_channels <= 1024:
                return "base_channels must be 1..1024"
            if not 0 <= self.reconstruction_weight <= 1000:
                return "reconstruction_weight must be from 0 to 1000"
            return None

    @classmethod
    def resolution_problem(cls, resolution: int) -> str | None:
        if is_power_of_two(resolution, 32, 1024):
            return None
        return "model fastgan works at a power of two from 32 to 1024 px (32, 64, ..., 1024)"

    chosen_for = (f"fewer than {SMALL_DATA:,} pictures at a power of two from 32 to 1024 px "
                  "(when a stronger claim cannot train here)")

    @classmethod
    def claim(cls, data: DataProfile) -> Claim | None:
        return small_data_claim(cls, data, 20, "FastGAN, built for 100 to 1,000 pictures")

    @classmethod
    def auto_settings(cls, resolution: int, num_images: int, loss: str | None
                      ) -> dict[str, Any]:
        # The paper's: hinge loss, Adam 2e-4 with betas 0.5 / 0.999, batch 8, DiffAugment
        # (colour and translation), an EMA of 0.999 per step (a half-life of about 5 kimg).
        return {"loss": loss or "hinge", "lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5,
                "beta2": 0.999, "batch_size": 8, "ema_kimg": 5.0,
                "augment": "diffaugment", "diffaugment_policy": "color,translation"}

    @classmethod
    def auto_options(cls, resolution: int, num_images: int, batch_size: int,
                     given: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"base_channels": 16}

    @classmethod
    def build_generator(cls, spec: ModelSpec) -> nn.Module:
        return FastGANGenerator(spec, spec.options.base_channels or 16)

    @classmethod
    def build_discriminator(cls, spec: ModelSpec) -> nn.Module:
        return FastGANDiscriminator(spec, spec.options.base_channels or 16)

    @classmethod
    def real_input(cls, spec: ModelSpec, images: torch.Tensor, point: SchedulePoint
                   ) -> list[torch.Tensor]:
        """Reals as ``[half-size, image]`` like the generator's output (area-shrunk)."""
        return [downsample(images, spec.resolution // small_resolution(spec.resolution)),
                images]
