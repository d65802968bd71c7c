"""Frozen ImageNet networks read at four scales, for the projected discriminator: the
paper's EfficientNet-lite0 and ResNet-18 (besides the VGGs of :mod:`ganvas.style.backbones`).

Both are our own small modules whose state-dict keys are exactly those of the files people
already have: timm's ``tf_efficientnet_lite0`` (as Sauer et al. 2021 use it) and
torchvision's ``resnet18``. The weights are downloaded once through ``torch.hub`` (their
hash checked against the file name, then cached) or read from a file the user gives
(``--model-option features_file=FILE``); neither timm nor torchvision is needed. Each
network is fed what it was trained with: 224 px by default (the paper resizes to 224 below
256 px), EfficientNet-lite's inputs scaled to [-1, 1], ResNet's normalised by ImageNet's
mean and deviation.

``build_feature_network`` gives the same architectures with PyTorch's random
initialisation, for tests: the download path cannot run without internet.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganvas.errors import GanvasError
from ganvas.utils.weight_files import (
    check_file,
    download,
    hub_checkpoints,
    read_safetensors,
    read_torch,
    sniff,
    unwrap_state,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Pretrained:
    """Where a network's ImageNet weights come from and what input they expect."""

    url: str
    size_mb: int
    origin: str  # who trained them, for messages
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resolution: int = 224  # the side it was trained at


PRETRAINED: dict[str, Pretrained] = {
    "efficientnet-lite0": Pretrained(
        "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/"
        "tf_efficientnet_lite0-0aa007d2.pth", 19, "timm's tf_efficientnet_lite0",
        (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "resnet18": Pretrained(
        "https://download.pytorch.org/models/resnet18-f37072fd.pth", 45,
        "torchvision's resnet18", IMAGENET_MEAN, IMAGENET_STD),
}


class FeatureNetwork(nn.Module):
    """A frozen network whose ``forward(x, layers)`` returns the named levels' maps."""

    level_names: tuple[str, ...] = ()

    def __init__(self, name: str, pretrained: Pretrained):
        super().__init__()
        self.name = name
        self.native_resolution = pretrained.resolution
        # Not persistent: the state dict holds only the weights of the original file.
        self.register_buffer("mean", torch.tensor(pretrained.mean).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(pretrained.std).view(1, 3, 1, 1),
                             persistent=False)

    def preprocess(self, images: Tensor) -> Tensor:
        """``N x 3 x H x W`` RGB in [0, 1] -> the normalisation the weights were trained with."""
        return (images.float() - self.mean) / self.std

    def stages(self) -> list[nn.Module]:
        """One module per level, in order: each takes the previous one's output."""
        raise NotImplementedError

    def forward(self, x: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:  # type: ignore[override]
        unknown = [n for n in layers if n not in self.level_names]
        if unknown:
            raise GanvasError(f"unknown level {unknown[0]!r} of {self.name}; its levels: "
                              f"{', '.join(self.level_names)}")
        found: dict[str, Tensor] = {}
        for name, stage in zip(self.level_names, self.stages()):
            if len(found) == len(set(layers)):
                break  # deep enough
            x = stage(x)
            if name in layers:
                found[name] = x
        return {n: found[n] for n in layers}

    def frozen(self) -> FeatureNetwork:
        self.requires_grad_(False)
        return self.eval()


# ---- EfficientNet-lite0 (Tan & Le 2019; the Lite variant: ReLU6, no squeeze-excitation) ------

class SameConv(nn.Conv2d):
    """A convolution with TensorFlow's SAME padding (the extra row and column at the end),
    as the TF-trained weights expect; no bias (a BatchNorm follows)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        k, s = self.kernel_size[0], self.stride[0]

        def amount(size: int) -> int:
            return max((math.ceil(size / s) - 1) * s + k - size, 0)

        ph, pw = amount(x.shape[-2]), amount(x.shape[-1])
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return super().forward(x)


def _tf_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3)  # TensorFlow's default epsilon


class DepthwiseSeparable(nn.Module):
    """The first block: depthwise 3x3, then a linear 1x1 projection."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv_dw, self.bn1 = SameConv(cin, cin, 3, groups=cin), _tf_norm(cin)
        self.conv_pw, self.bn2 = nn.Conv2d(cin, cout, 1, bias=False), _tf_norm(cout)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn2(self.conv_pw(F.relu6(self.bn1(self.conv_dw(x)))))


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expansion, depthwise kxk, linear 1x1 projection, and the
    input added back when the shape allows."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        mid = cin * expansion
        self.conv_pw, self.bn1 = nn.Conv2d(cin, mid, 1, bias=False), _tf_norm(mid)
        self.conv_dw = SameConv(mid, mid, kernel, stride, groups=mid)
        self.bn2 = _tf_norm(mid)
        self.conv_pwl, self.bn3 = nn.Conv2d(mid, cout, 1, bias=False), _tf_norm(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu6(self.bn1(self.conv_pw(x)))
        y = self.bn3(self.conv_pwl(F.relu6(self.bn2(self.conv_dw(y)))))
        return x + y if self.skip else y


# repeats, kernel, stride, expansion, output channels: EfficientNet-B0's stages
_LITE0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                 (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))


class EfficientNetLite0(FeatureNetwork):
    """Levels as the paper reads them: after stages 1, 2, 4 and 6 (24, 40, 112 and 320
    channels at 1/4, 1/8, 1/16 and 1/32 of the input)."""

    level_names = ("stage1", "stage2", "stage4", "stage6")
    _ends = (2, 3, 5, 7)  # blocks[0:2], [2:3], [3:5], [5:7]

    def __init__(self, name: str = "efficientnet-lite0"):
        super().__init__(name, PRETRAINED["efficientnet-lite0"])
        self.conv_stem, self.bn1 = SameConv(3, 32, 3, 2), _tf_norm(32)
        stages, cin = [], 32
        for repeats, kernel, stride, expansion, cout in _LITE0_STAGES:
            blocks: list[nn.Module] = []
            for i in range(repeats):
                blocks.append(DepthwiseSeparable(cin, cout) if expansion == 1 else
                              InvertedResidual(cin, cout, kernel, stride if i == 0 else 1,
                                               expansion))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)

    def stages(self) -> list[nn.Module]:
        stem = nn.Sequential(self.conv_stem, self.bn1, nn.ReLU6())
        starts = (0, *self._ends[:-1])
        parts = [nn.Sequential(*self.blocks[a:b]) for a, b in zip(starts, self._ends)]
        return [nn.Sequential(stem, parts[0]), *parts[1:]]


# ---- ResNet-18 (He et al. 2016), torchvision's layout -----------------------------------------

class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                         nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet18(FeatureNetwork):
    """Levels: the outputs of layer1 to layer4 (64, 128, 256 and 512 channels at 1/4, 1/8,
    1/16 and 1/32 of the input)."""

    level_names = ("layer1", "layer2", "layer3", "layer4")

    def __init__(self, name: str = "resnet18"):
        super().__init__(name, PRETRAINED["resnet18"])
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        widths = (64, 128, 256, 512)
        for i, (cin, cout) in enumerate(zip((64, *widths[:-1]), widths), start=1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(cin, cout, stride),
                                                     BasicBlock(cout, cout, 1)))

    def stages(self) -> list[nn.Module]:
        stem = nn.Sequential(self.conv1, self.bn1, nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        return [nn.Sequential(stem, self.layer1), self.layer2, self.layer3, self.layer4]


_ARCHITECTURES = {"efficientnet-lite0": EfficientNetLite0, "resnet18": ResNet18}


def build_feature_network(name: str) -> FeatureNetwork:
    """The architecture ``name`` with PyTorch's random initialisation, frozen (for tests)."""
    return _ARCHITECTURES[name]().frozen()


def load_feature_network(name: str, file: str | os.PathLike | None = None) -> FeatureNetwork:
    """``name`` with its ImageNet weights (downloaded once, or read from ``file``), frozen."""
    pretrained = PRETRAINED[name]
    ways = _ways(name)
    if file is None:
        state, where = download(name, pretrained.url, lambda why: GanvasError(
            f"cannot get the {name} weights ({why}); {ways}"))
    else:
        path = check_file(Path(file), missing=f"no such weights file; {ways}",
                          typical=f"{pretrained.origin} is about {pretrained.size_mb} MB")
        kind = sniff(path, f"{pretrained.origin}'s .pth or a .safetensors file")
        if kind == "hdf5":
            raise GanvasError(f"{path}: an HDF5 file holds no {name} weights; {ways}")
        state = read_safetensors(path) if kind == "safetensors" else read_torch(path, kind)
        where = str(path)
    network = _ARCHITECTURES[name]()
    copy_weights(network, unwrap_state(state, where), where)
    return network.frozen()


def _ways(name: str) -> str:
    pretrained = PRETRAINED[name]
    file = pretrained.url.rsplit("/", 1)[1]
    return (f"connect to the internet once (the {pretrained.size_mb} MB download is then cached "
            f"in {hub_checkpoints()}), or pass --model-option features_file=FILE with "
            f"{pretrained.origin}'s {file} (from {pretrained.url}), or use the offline "
            "--model-option features=vgg16-hed")


def copy_weights(network: nn.Module, state: dict[str, Any], where: str) -> None:
    """Every weight and BatchNorm statistic of ``network`` from ``state`` (other keys, such
    as the classifier's, are ignored), checked first: one line names the first problem."""
    expected = network.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3
                                          else "")
        raise GanvasError(f"{where}: missing {shown}; not {getattr(network, 'name', '')} "
                          "weights in the original layout")
    for key, param in expected.items():
        value = state[key]
        if not isinstance(value, Tensor) or value.is_floating_point() != \
                param.is_floating_point():
            raise GanvasError(f"{where}: {key} is not a tensor of the expected kind")
        if tuple(value.shape) != tuple(param.shape):
            raise GanvasError(f"{where}: {key} has shape {tuple(value.shape)}, expected "
                              f"{tuple(param.shape)}")
        if value.is_floating_point() and not torch.isfinite(value.float().sum()):
            raise GanvasError(f"{where}: {key} holds NaN or infinite values")
    network.load_state_dict({k: state[k] for k in expected})
