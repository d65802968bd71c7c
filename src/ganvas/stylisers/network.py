"""The feed-forward styliser of Johnson et al. (2016), "Perceptual Losses for Real-Time
Style Transfer and Super-Resolution", with the changes that practice settled on.

A 9x9 convolution, two strided 3x3 convolutions down to a quarter of the size, five residual
blocks, and back up with nearest-neighbour upsampling followed by a convolution (a
transposed convolution leaves checkerboard patterns: Odena et al. 2016), then a 9x9
convolution to RGB. Reflection padding everywhere (zero padding darkens the borders) and
instance normalisation (Ulyanov et al. 2016: per-picture statistics make the result
independent of the batch and of the contrast of the photo).

``width`` scales every layer: 32 is the paper's network, 16 the half-width one that trains
and runs about three times faster on a CPU.

The normalisation statistics can be given instead of measured (``forward(x, stats)``):
tiled inference measures them once on a downscaled copy of the whole picture, so every tile
is normalised alike and the tiles join without seams.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

WIDTHS = (32, 16)
RESIDUAL_BLOCKS = 5
EPS = 1e-5


class ConvLayer(nn.Module):
    """Reflection padding, convolution, instance norm (affine), optional ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1,
                 *, norm: bool = True, relu: bool = True):
        super().__init__()
        self.pad = kernel // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride)
        self.norm = nn.InstanceNorm2d(out_channels, affine=True, eps=EPS) if norm else None
        self.relu = relu

    def forward(self, x: torch.Tensor, stats: NormStatistics | None = None) -> torch.Tensor:
        x = self.conv(F.pad(x, (self.pad,) * 4, mode="reflect"))
        if self.norm is not None:
            x = normalise(x, self.norm, stats)
        return F.relu(x) if self.relu else x


class NormStatistics:
    """The instance-norm statistics of one picture: recorded by one pass over it (usually a
    downscaled copy), then replayed, layer by layer, by the passes over its tiles."""

    def __init__(self):
        self.values: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.replaying = False
        self.position = 0

    def replay(self) -> NormStatistics:
        self.replaying, self.position = True, 0
        return self

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.replaying:
            mean, var = self.values[self.position]
            self.position += 1
            return mean, var
        mean = x.mean(dim=(2, 3), keepdim=True)
        var = x.var(dim=(2, 3), keepdim=True, unbiased=False)
        self.values.append((mean.detach(), var.detach()))
        return mean, var


def normalise(x: torch.Tensor, norm: nn.InstanceNorm2d, stats: NormStatistics | None
              ) -> torch.Tensor:
    """Instance norm with this picture's statistics, or with recorded ones."""
    if stats is None:
        mean = x.mean(dim=(2, 3), keepdim=True)
        var = x.var(dim=(2, 3), keepdim=True, unbiased=False)
    else:
        mean, var = stats(x)
    x = (x - mean) * torch.rsqrt(var + norm.eps)
    return x * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.first = ConvLayer(channels, channels, 3)
        self.second = ConvLayer(channels, channels, 3, relu=False)

    def forward(self, x: torch.Tensor, stats: NormStatistics | None = None) -> torch.Tensor:
        return x + self.second(self.first(x, stats), stats)


class UpsampleConv(nn.Module):
    """Nearest-neighbour upsampling by 2, then a convolution (no checkerboards)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.layer = ConvLayer(in_channels, out_channels, 3)

    def forward(self, x: torch.Tensor, stats: NormStatistics | None = None) -> torch.Tensor:
        return self.layer(F.interpolate(x, scale_factor=2, mode="nearest"), stats)


class Styliser(nn.Module):
    """``forward(images [N, 3, H, W] in [0, 1]) -> stylised images in [0, 1]``, any H and W
    (odd sizes are padded by reflection to a multiple of 4 and cropped back)."""

    def __init__(self, width: int = 32):
        super().__init__()
        if width not in WIDTHS:
            raise ValueError(f"width must be one of {WIDTHS}")
        self.width = width
        w = width
        self.layers = nn.ModuleList([
            ConvLayer(3, w, 9), ConvLayer(w, 2 * w, 3, 2), ConvLayer(2 * w, 4 * w, 3, 2),
            *[ResidualBlock(4 * w) for _ in range(RESIDUAL_BLOCKS)],
            UpsampleConv(4 * w, 2 * w), UpsampleConv(2 * w, w),
            ConvLayer(w, 3, 9, norm=False, relu=False)])

    def forward(self, images: torch.Tensor, stats: NormStatistics | None = None) -> torch.Tensor:
        h, w = images.shape[-2:]
        pad_h, pad_w = -h % 4, -w % 4
        # padded even when by 0, so an exported graph takes any size
        x = F.pad(images * 2 - 1, (0, pad_w, 0, pad_h), mode="reflect")
        for layer in self.layers:
            x = layer(x, stats)
        # tanh keeps the output in range without clipping the gradients of a saturated pixel
        return ((torch.tanh(x[..., :h, :w]) + 1) / 2)

    def measure_statistics(self, images: torch.Tensor) -> NormStatistics:
        """The instance-norm statistics of every layer for ``images`` (one picture); pass
        ``stats.replay()`` to ``forward`` to normalise a tile of it alike."""
        stats = NormStatistics()
        with torch.no_grad():
            self(images, stats)
        return stats
