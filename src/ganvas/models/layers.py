"""Building blocks of ProGAN-style networks (Karras et al. 2018), shared by the progressive
and MSG-GAN families: equalised learning rate, pixel-wise feature normalisation, minibatch
standard deviation, and the width of each resolution.

Equalised learning rate: weights are drawn from N(0, 1) and scaled by He's constant at
every forward pass instead of once at initialisation, so Adam's step (which is scale-free)
moves every layer at the same relative speed, whatever its fan-in.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LEAKY_SLOPE = 0.2


class EqualizedConv2d(nn.Module):
    """Convolution with a runtime He scale; ``padding`` keeps the size for odd kernels."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, *,
                 gain: float = math.sqrt(2), bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = gain / math.sqrt(in_channels * kernel * kernel)
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class EqualizedLinear(nn.Module):
    """Fully connected layer with a runtime He scale and an optional learning-rate
    multiplier (StyleGAN's mapping network trains at a hundredth of the rate)."""

    def __init__(self, in_features: int, out_features: int, *, gain: float = math.sqrt(2),
                 bias: bool = True, lr_multiplier: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.scale = gain / math.sqrt(in_features) * lr_multiplier
        self.lr_multiplier = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_multiplier if self.bias is not None else None
        return F.linear(x, self.weight * self.scale, bias)


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Each pixel's feature vector (dim 1) scaled to unit mean square (ProGAN's generator
    norm). PyTorch's fused RMS norm over the channels of a channels-last view is the same
    function at about two thirds of the time of the three separate operations."""
    if not hasattr(F, "rms_norm"):  # PyTorch before 2.4
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)
    if x.dim() == 2:
        return F.rms_norm(x, (x.shape[1],), eps=eps)
    moved = x.movedim(1, -1)
    return F.rms_norm(moved, (moved.shape[-1],), eps=eps).movedim(-1, 1)


def leaky(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, LEAKY_SLOPE)


def gated_linear_unit(x: torch.Tensor) -> torch.Tensor:
    """``F.glu(x, dim=1)``: the first half of the channels gated by the sigmoid of the second.
    Written out because ``F.glu``'s backward hands a channels_last input a contiguous
    gradient, and a BatchNorm before it then takes PyTorch's slow mixed-layout backward
    (7x slower on a CPU; FastGAN's generator as a whole trained 1.2-1.3x faster written so)."""
    value, gate = x.chunk(2, dim=1)
    return value * torch.sigmoid(gate)


class GatedLinearUnit(nn.Module):
    """:func:`gated_linear_unit` as a layer (over channels)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gated_linear_unit(x)


class MinibatchStdDev(nn.Module):
    """Appends one feature map: the standard deviation of the features over groups of
    ``group_size`` consecutive images, averaged. A discriminator that sees how varied a
    group is can punish a generator that draws the same picture again and again.

    Groups are consecutive images, so a batch of reals followed by a batch of fakes (each a
    multiple of the group size) is scored exactly as the two batches separately.
    """

    def __init__(self, group_size: int = 4):
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        group = max(g for g in range(1, min(self.group_size, n) + 1) if n % g == 0)
        y = x.float().reshape(n // group, group, c, h, w)
        y = (y - y.mean(dim=1, keepdim=True)).pow(2).mean(dim=1).add(1e-8).sqrt()
        y = y.mean(dim=(1, 2, 3)).repeat_interleave(group)  # [n]
        return torch.cat([x, y.to(x.dtype).view(n, 1, 1, 1).expand(n, 1, h, w)], dim=1)


def upsample(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    return F.interpolate(x, scale_factor=factor, mode="nearest") if factor > 1 else x


def downsample(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Area average: exact for powers of two, the same as shrinking the picture."""
    return F.avg_pool2d(x, factor) if factor > 1 else x


def resolutions(final: int) -> list[int]:
    """4, 8, ..., final."""
    return [4 * 2**i for i in range(int(math.log2(final // 4)) + 1)]


def widths(final: int, base: int, cap: int) -> dict[int, int]:
    """Channels at each resolution: ``base`` at the final one, doubling as the resolution
    halves, at most ``cap`` (ProGAN's shape, scaled down for CPUs)."""
    return {r: min(cap, base * final // r) for r in resolutions(final)}


def cpu_widths(resolution: int) -> tuple[int, int]:
    """(channels at the final resolution, cap): ProGAN's shape (channels doubling as the
    resolution halves) at widths a CPU trains in minutes: at 64 px it trains at about the
    images/s of the standard DCGAN. ProGAN itself used 512 at most and 16 at 1024 px; on a GPU
    try --model-option base_channels=64 --model-option max_channels=512."""
    return {8: 128, 16: 64, 32: 32}.get(resolution, 16), 256


def chosen_widths(options, resolution: int) -> tuple[int, int]:
    """The (base, cap) an options object asks for, auto (None) filled by :func:`cpu_widths`."""
    base, cap = cpu_widths(resolution)
    return options.base_channels or base, options.max_channels or cap


def block_options_problem(options) -> str | None:
    """Checks the options every ProGAN-style family has: base_channels, max_channels and
    group_size."""
    for name in ("base_channels", "max_channels"):
        value = getattr(options, name)
        if value is not None and not 1 <= value <= 4096:
            return f"{name} must be 1..4096"
    if not 1 <= options.group_size <= 64:
        return "group_size must be 1..64"
    return None


def is_power_of_two(value: int, low: int, high: int) -> bool:
    return low <= value <= high and value & (value - 1) == 0


class UpBlock(nn.Module):
    """Double the size, then two 3x3 convolutions, each with leaky ReLU and pixel norm."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = EqualizedConv2d(in_channels, out_channels, 3)
        self.conv2 = EqualizedConv2d(out_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pixel_norm(leaky(self.conv1(upsample(x))))
        return pixel_norm(leaky(self.conv2(x)))


class SphericalLatents:
    """Truncation for generators that start by putting z on a sphere (ProGAN's pixel norm
    of z): scaling raw z would be undone by that normalisation, so the latent is normalised
    first and then pulled towards the sphere's centre, whose image is the mean image."""

    def truncate(self, z: torch.Tensor, truncation: float) -> torch.Tensor:
        return pixel_norm(z) * truncation


class InputBlock(nn.Module):
    """Normalised z -> dense to 4x4 -> 3x3 convolution (ProGAN's first block); the
    generator normalises z (see :class:`SphericalLatents`)."""

    def __init__(self, latent_dim: int, channels: int):
        super().__init__()
        self.channels = channels
        self.dense = EqualizedLinear(latent_dim, channels * 16, gain=math.sqrt(2) / 4)
        self.conv = EqualizedConv2d(channels, channels, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = leaky(self.dense(z)).view(-1, self.channels, 4, 4)
        return pixel_norm(leaky(self.conv(pixel_norm(x))))


class DownBlock(nn.Module):
    """Two 3x3 convolutions with leaky ReLU, then halve the size."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None):
        super().__init__()
        mid = mid_channels or in_channels
        self.conv1 = EqualizedConv2d(in_channels, mid, 3)
        self.conv2 = EqualizedConv2d(mid, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return downsample(leaky(self.conv2(leaky(self.conv1(x)))))


class LabelEmbedding(nn.Module):
    """Class labels ``c`` (one-hot rows ``[N, classes]``) -> vectors of ``dim`` at unit mean
    square. A conditional generator joins them to its normalised z, as stylegan2-ada's
    mapping network does; a projection discriminator compares them with its features."""

    def __init__(self, classes: int, dim: int):
        super().__init__()
        self.embed = EqualizedLinear(classes, dim, gain=1.0, bias=False)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return pixel_norm(self.embed(c))


def join_labels(x: torch.Tensor, labels: LabelEmbedding | None, c: torch.Tensor | None
                ) -> torch.Tensor:
    """A generator's normalised latents ``[N, D]`` with the embedding of ``c`` joined on
    (unchanged for an unconditional network)."""
    if labels is None:
        return x
    return torch.cat([x, labels(c.to(x.dtype))], dim=1)


class ProjectionHead(nn.Module):
    """The projection discriminator's class term (Miyato & Koyama 2018): the inner product
    of the class's embedding with the image's features ``[N, F]``, scaled by 1/sqrt(F) as
    stylegan2-ada scales its own, so at the start it weighs as much as the plain logit."""

    def __init__(self, classes: int, features: int):
        super().__init__()
        self.labels = LabelEmbedding(classes, features)
        self.scale = 1 / math.sqrt(features)

    def forward(self, features: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return (self.labels(c.to(features.dtype)) * features).sum(1) * self.scale


def check_labels(network: nn.Module, c: torch.Tensor | None) -> None:
    """A conditional network given no labels, or an unconditional one given some: a bug in
    the caller, said plainly rather than as a shape error deep inside."""
    classes = getattr(network, "classes", None)
    if classes is None:  # a generator declares c_dim
        classes = getattr(network, "c_dim", 0)
    if bool(classes) != (c is not None):
        raise ValueError(f"{type(network).__name__} takes "
                         f"{'labels c' if classes else 'no labels'}")


class OutputBlock(nn.Module):
    """The discriminator's 4x4 end: minibatch standard deviation, a 3x3 convolution, a
    dense layer over the 4x4 map (``cells``: 32 for the 4x8 map of 2:1 pictures), and the
    logit (plus the projection of the class labels onto the dense layer's features, for a
    conditional discriminator)."""

    def __init__(self, in_channels: int, channels: int, group_size: int = 4, classes: int = 0,
                 cells: int = 16):
        super().__init__()
        self.stddev = MinibatchStdDev(group_size)
        self.conv = EqualizedConv2d(in_channels + 1, channels, 3)
        self.dense = EqualizedLinear(channels * cells, channels)
        self.logit = EqualizedLinear(channels, 1, gain=1.0)
        self.classes = classes
        self.projection = ProjectionHead(classes, channels) if classes else None

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(self, c)
        x = leaky(self.conv(self.stddev(x)))
        x = leaky(self.dense(x.flatten(1)))
        logit = self.logit(x).squeeze(1)
        return logit if self.projection is None else logit + self.projection(x, c)


def to_rgb(in_channels: int, image_channels: int) -> EqualizedConv2d:
    """1x1 convolution to pixels, linear (no activation), as in ProGAN."""
    return EqualizedConv2d(in_channels, image_channels, 1, gain=1.0)


class FromRGB(nn.Module):
    """1x1 convolution from pixels to features, with leaky ReLU."""

    def __init__(self, image_channels: int, out_channels: int):
        super().__init__()
        self.conv = EqualizedConv2d(image_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return leaky(self.conv(x))
