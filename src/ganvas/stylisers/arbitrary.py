"""Any style with one network: a VGG encoder, a feature transform, a trained decoder.

The encoder is the style-transfer backbone up to ``relu4_1`` (``relu3_1`` for the offline
``vgg16-hed``, whose deeper layers are tuned to edges; ``relu2_1`` for the tests' tiny
backbone). The content photo's features there are given the style's statistics, then the
decoder turns them back into a picture:

- **AdaIN** (Huang & Belongie 2017) gives each channel the style's mean and standard
  deviation;
- **WCT** (Li et al. 2017) whitens the content features (identity covariance) and colours
  them with the style's full covariance, which carries the correlations between channels
  too. This is the single-level version at the encoder's layer (the paper cascades five
  decoders, one per layer).

``alpha`` blends the transformed features with the photo's own (1: all style), and several
styles are blended by mixing their transformed features with the given weights.

The decoder mirrors the encoder with nearest-neighbour upsampling and reflection padding.
The encoder's weights are stored with the decoder's, so a folder is enough on its own: no
download at inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ganvas.style.backbones import Backbone
from ganvas.style.tiling import plan_tiles, window_of

METHODS = ("adain", "wct")
EPS = 1e-5
WCT_EPS = 1e-5  # added to the covariance's eigenvalues: dead channels are common after ReLU

# The deepest layer each backbone's decoder inverts.
ENCODER_LAYERS = {"vgg19": "relu4_1", "vgg16": "relu4_1", "vgg16-hed": "relu3_1",
                  "tiny": "relu2_1"}
# Channels and convolutions of each VGG block, per backbone (the tiny test network: 8, 16).
_BLOCKS = {"vgg19": ((64, 2), (128, 2), (256, 4), (512, 4)),
           "vgg16": ((64, 2), (128, 2), (256, 3), (512, 3)),
           "vgg16-hed": ((64, 2), (128, 2), (256, 3)),
           "tiny": ((8, 2), (16, 2))}


def style_layers(backbone_name: str) -> list[str]:
    """``relu1_1`` up to the encoder's layer: where the decoder's output must match the
    style's statistics during training."""
    depth = int(ENCODER_LAYERS[backbone_name][4])
    return [f"relu{b}_1" for b in range(1, depth + 1)]


class Encoder(nn.Module):
    """The backbone's layers up to the encoder layer, frozen; ``forward(images in [0, 1],
    layers)`` -> those layers' activations (the last one always the encoder's)."""

    def __init__(self, backbone: Backbone):
        super().__init__()
        self.name = backbone.name
        self.layer = ENCODER_LAYERS[backbone.name]
        last = backbone.layer_names.index(self.layer)
        self.layer_names = backbone.layer_names[:last + 1]
        self.features = nn.Sequential(*list(backbone.features)[:last + 1])
        self.register_buffer("mean", backbone.mean.clone(), persistent=False)
        self.register_buffer("std", backbone.std.clone(), persistent=False)
        self.bgr, self.scale = backbone.bgr, backbone.scale
        self.requires_grad_(False)
        self.eval()

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        x = images.flip(1) if self.bgr else images
        return (x * self.scale - self.mean) / self.std

    def forward(self, images: torch.Tensor, layers: Sequence[str] = ()) -> list[torch.Tensor]:
        wanted = [*layers, self.layer] if not layers or layers[-1] != self.layer else list(layers)
        x, found = self.preprocess(images), {}
        for name, module in zip(self.layer_names, self.features):
            x = module(x)
            if name in wanted:
                found[name] = x
        return [found[n] for n in wanted]


class Decoder(nn.Module):
    """Encoder features -> a picture in [0, 1] (not clamped while training, so the loss
    still has a gradient where it overshoots). ``half=True`` halves every width but the
    input's: about a quarter of the work, for CPUs."""

    def __init__(self, backbone_name: str, *, half: bool = False):
        super().__init__()
        blocks = _BLOCKS[backbone_name]
        shrink = 2 if half else 1
        layers: list[nn.Module] = []
        channels = blocks[-1][0]
        for i in range(len(blocks) - 1, -1, -1):
            width, convs = blocks[i]
            inner = width // shrink
            out = blocks[i - 1][0] // shrink if i > 0 else 3
            # The deepest block contributes its first conv only: the encoder stops there.
            for _ in range(convs - 1 if i < len(blocks) - 1 else 0):
                layers += [_conv(channels, inner), nn.ReLU()]
                channels = inner
            if i > 0:
                layers += [_conv(channels, out), nn.ReLU(), nn.Upsample(scale_factor=2.0)]
            else:
                layers.append(_conv(channels, out))
            channels = out
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


def _conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_out, 3))


# ---- feature transforms -----------------------------------------------------------------

@dataclass
class ContentStatistics:
    """Per-channel mean, and (for WCT) covariance, of a picture's encoder features: measured
    once on the whole picture, so every tile of a large one is transformed alike."""

    mean: torch.Tensor  # [N, C, 1, 1]
    std: torch.Tensor  # [N, C, 1, 1]
    covariance: torch.Tensor | None = None  # [N, C, C]


def measure(features: torch.Tensor, *, covariance: bool = False) -> ContentStatistics:
    n, c = features.shape[:2]
    flat = features.reshape(n, c, -1)
    mean = flat.mean(-1, keepdim=True)
    std = (flat.var(-1, unbiased=False, keepdim=True) + EPS).sqrt()
    cov = None
    if covariance:
        centred = flat.double() - mean.double()
        cov = centred @ centred.transpose(1, 2) / max(1, flat.shape[-1] - 1)
    return ContentStatistics(mean[..., None], std[..., None], cov)


def adain(content: torch.Tensor, style: ContentStatistics,
          stats: ContentStatistics | None = None) -> torch.Tensor:
    """The content features with each channel's mean and deviation replaced by the
    style's (``stats``: the content's own, when they come from the whole picture)."""
    stats = stats or measure(content)
    return (content - stats.mean) / stats.std * style.std + style.mean


def wct(content: torch.Tensor, style: ContentStatistics,
        stats: ContentStatistics | None = None) -> torch.Tensor:
    """Whiten the content features, colour them with the style's covariance and mean."""
    stats = stats if stats is not None and stats.covariance is not None \
        else measure(content, covariance=True)
    assert style.covariance is not None
    n, c, h, w = content.shape
    whiten = _matrix_power(stats.covariance, -0.5)
    colour = _matrix_power(style.covariance, 0.5)
    flat = content.reshape(n, c, -1).double() - stats.mean.reshape(n, c, 1).double()
    out = colour @ (whiten @ flat) + style.mean.reshape(n, c, 1).double()
    return out.to(content.dtype).reshape(n, c, h, w)


def _matrix_power(matrix: torch.Tensor, power: float) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    values = (values.clamp_min(0) + WCT_EPS) ** power
    return vectors @ torch.diag_embed(values) @ vectors.transpose(-1, -2)


TRANSFORMS = {"adain": adain, "wct": wct}


class ArbitraryStyliser(nn.Module):
    """Encoder + decoder; ``forward(content, styles, ...)`` repaints ``content`` ([1, 3, H, W]
    in [0, 1]) in the given styles' statistics."""

    def __init__(self, backbone: Backbone, *, half: bool = False):
        super().__init__()
        self.encoder = Encoder(backbone)
        self.decoder = Decoder(backbone.name, half=half)
        self.backbone_name = backbone.name
        self.half = half

    def style_statistics(self, style: torch.Tensor, method: str) -> ContentStatistics:
        with torch.no_grad():
            return measure(self.encoder(style)[-1], covariance=method == "wct")

    def content_statistics(self, content: torch.Tensor, method: str) -> ContentStatistics:
        return self.style_statistics(content, method)

    def transform(self, features: torch.Tensor, styles: Sequence[ContentStatistics],
                  blend: Sequence[float], method: str, alpha: float,
                  stats: ContentStatistics | None = None) -> torch.Tensor:
        if stats is None:
            stats = measure(features, covariance=method == "wct")
        total = sum(blend)
        mixed = sum(w / total * TRANSFORMS[method](features, s, stats)
                    for s, w in zip(styles, blend))
        return alpha * mixed + (1 - alpha) * features

    @torch.no_grad()
    def forward(self, content: torch.Tensor, styles: Sequence[ContentStatistics],
                blend: Sequence[float] | None = None, *, method: str = "adain",
                alpha: float = 1.0, stats: ContentStatistics | None = None) -> torch.Tensor:
        blend = blend or [1.0] * len(styles)
        features = self.encoder(content)[-1]
        out = self.decoder(self.transform(features, styles, blend, method, alpha, stats))
        return out.clamp(0, 1)


ALIGN = {"vgg19": 8, "vgg16": 8, "vgg16-hed": 4, "tiny": 2}
HALO = 96  # context around each tile: the encoder and decoder each see ~40 px at relu4_1


@torch.no_grad()
def stylise_arbitrary(net: ArbitraryStyliser, content: torch.Tensor,
                      styles: Sequence[ContentStatistics], blend: Sequence[float] | None = None,
                      *, method: str = "adain", alpha: float = 1.0, tile: int | None = 1024,
                      statistics_side: int = 1024) -> torch.Tensor:
    """``content [1, 3, H, W]`` -> stylised; a picture larger than ``tile`` is processed tile by
    tile, every tile transformed with the statistics of the whole picture (measured on a copy
    shrunk to ``statistics_side``), so the tiles join without seams."""
    from ganvas.stylisers.inference import shrink

    h, w = content.shape[-2:]
    align = ALIGN[net.backbone_name]
    pad_h, pad_w = -h % align, -w % align
    padded = F.pad(content, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else content
    if tile is None or max(h, w) <= tile:
        return net(padded, styles, blend, method=method, alpha=alpha)[..., :h, :w]
    stats = net.content_statistics(shrink(padded, statistics_side), method)
    out = torch.empty_like(padded)
    for piece in plan_tiles(*padded.shape[-2:], tile, HALO, align):
        result = net(window_of(padded, piece), styles, blend, method=method, alpha=alpha,
                     stats=stats)
        top, bottom, left, right = piece.core
        wtop, _, wleft, _ = piece.window
        out[..., top:bottom, left:right] = result[..., top - wtop:bottom - wtop,
                                                  left - wleft:right - wleft]
    return out[..., :h, :w]
