"""StyleGAN2 (Karras et al. 2020) in plain PyTorch: no compiled extensions, so it runs
wherever PyTorch does (CPU, CUDA, MPS) and exports with ordinary operators.

Generator: a mapping network turns z into a style vector w (learning rate x0.01, its mean
``w_avg`` tracked for truncation); the synthesis network starts from a learned 4x4 constant
and, at each resolution, applies modulated/demodulated 3x3 convolutions (the style scales
each input channel; demodulation rescales each output channel to unit variance), adds
per-pixel noise with a learned strength (option ``per_pixel_noise``; off by default below
SMALL_DATA pictures), and adds its own RGB layer's output to the
upsampled image so far (the skip architecture). Discriminator: residual blocks from the
image down to 4x4, then ProGAN's minibatch standard deviation and dense end. Up- and
downsampling use the [1, 3, 3, 1] FIR filter as ordinary (transposed) depthwise convolutions.

The modulated convolution is the non-fused form: scale the input's channels by the style,
run one ordinary convolution for the whole batch, scale the output's channels by the
demodulation coefficients. It costs no more than a plain convolution and needs no grouped
convolution per image.

The loss recipe (path length, style mixing, lazy R1) is :mod:`ganvas.losses.stylegan2`.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganvas.errors import GanvasError
from ganvas.models.layers import (
    EqualizedConv2d,
    EqualizedLinear,
    LabelEmbedding,
    OutputBlock,
    check_labels,
    chosen_widths,
    cpu_widths,
    is_power_of_two,
    join_labels,
    pixel_norm,
    resolutions,
    widths,
)
from ganvas.models.networks import (
    DiscriminatorNetwork,
    GeneratorNetwork,
    check_sampling_arguments,
)
from ganvas.models.registry import (
    R1_LOSSES,
    SMALL_DATA,
    Claim,
    DataProfile,
    ModelFamily,
    ModelSpec,
    given_batch,
    r1_for_given_batch,
    r1_gamma,
    register_model,
)
from ganvas.rng import per_sample
from ganvas.utils.device import autocast_off

SQRT2 = math.sqrt(2)
W_AVG_BETA = 0.995  # stylegan2's tracking rate of the mean style vector


def fir_kernel() -> torch.Tensor:
    """The separable [1, 3, 3, 1] filter as a 4x4 kernel summing to 1."""
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    kernel = torch.outer(f, f)
    return kernel / kernel.sum()


def upsample2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Double the size: insert zeros, then low-pass with the FIR filter (times 4 to keep the
    level), as one depthwise transposed convolution."""
    channels = x.shape[1]
    with float32(x) as x32:
        return F.conv_transpose2d(x32, (kernel * 4).expand(channels, 1, 4, 4), stride=2,
                                  padding=1, groups=channels).to(x.dtype)


def downsample2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Halve the size: low-pass with the FIR filter, keep every second pixel."""
    channels = x.shape[1]
    with float32(x) as x32:
        return F.conv2d(x32, kernel.expand(channels, 1, 4, 4), stride=2, padding=1,
                        groups=channels).to(x.dtype)


@contextlib.contextmanager
def float32(x: torch.Tensor):
    """``x`` in float32 with autocast off: oneDNN's depthwise convolutions in bfloat16 take
    the slow path on CPU (13 ms against 0.4 ms in float32 for a batch of 4x4 maps)."""
    with autocast_off(x.device):
        yield x.float()


def activate(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU with stylegan2's gain of sqrt(2), which keeps unit variance."""
    return F.leaky_relu(x, 0.2) * SQRT2


class MappingNetwork(nn.Module):
    """z -> w: normalise z, then ``layers`` dense layers at a hundredth of the learning rate.
    A conditional network joins the embedding of the class (w's size) to the normalised z,
    as stylegan2-ada's does; its average style is the average over all classes."""

    def __init__(self, z_dim: int, w_dim: int, layers: int, lr_multiplier: float = 0.01,
                 classes: int = 0):
        super().__init__()
        self.classes = classes
        self.labels = LabelEmbedding(classes, w_dim) if classes else None
        inputs = z_dim + (w_dim if classes else 0)
        self.layers = nn.ModuleList([
            EqualizedLinear(inputs if i == 0 else w_dim, w_dim, lr_multiplier=lr_multiplier)
            for i in range(layers)])
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None,
                update_w_avg: bool = False) -> torch.Tensor:
        check_labels(self, c)
        x = join_labels(pixel_norm(z), self.labels, c)
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.2)  # the He gain is inside the layer
        if update_w_avg:
            self.w_avg.copy_(x.detach().float().mean(0).lerp(self.w_avg, W_AVG_BETA))
        return x


class ModulatedConv2d(nn.Module):
    """A convolution whose input channels are scaled by a style from w; with ``demodulate``
    every output channel is then rescaled to unit expected variance."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, w_dim: int, *,
                 demodulate: bool = True):
        super().__init__()
        self.affine = EqualizedLinear(w_dim, in_channels, gain=1.0)
        nn.init.ones_(self.affine.bias)  # styles start at 1: the plain convolution
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel * kernel)
        self.demodulate = demodulate
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor, up: torch.Tensor | None = None
                ) -> torch.Tensor:
        """``up``: the FIR kernel to double the size with (after modulating, before the
        convolution), or None."""
        styles = self.affine(w)  # [N, in]
        weight = self.weight * self.weight_gain
        if not self.demodulate:  # the RGB layers: scale styles like an equalised weight
            styles = styles * self.weight_gain
            weight = self.weight
        x = x * styles.to(x.dtype)[:, :, None, None]
        if up is not None:
            x = upsample2d(x, up)
        x = F.conv2d(x, weight.to(x.dtype), padding=self.padding)
        if self.demodulate:
            # sum over input channels and taps of (w * s)^2 = s^2 . sum_taps w^2, in float32
            # whatever the training precision (as the paper's code does)
            with autocast_off(x.device):
                power = styles.float().square() @ weight.float().square().sum(dim=(2, 3)).t()
            x = x * torch.rsqrt(power + 1e-8).to(x.dtype)[:, :, None, None]
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution, per-pixel noise of learned strength, bias, activation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 aspect: tuple[int, int] = (1, 1), per_pixel_noise: bool = True):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.size = (resolution * aspect[1], resolution * aspect[0])  # (height, width)
        self.has_noise = per_pixel_noise
        if per_pixel_noise:  # (without it, no parameter that would never get a gradient)
            self.noise_strength = nn.Parameter(torch.zeros(()))
            # The fixed noise of noise="const": part of the weights, so a saved model draws
            # the same pictures everywhere.
            self.register_buffer("noise_const", torch.randn(*self.size))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: str,
                rng: torch.Generator | None, up: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conv(x, w, up)
        if not self.has_noise:
            noise = "none"
        if noise == "random":
            n = per_sample(lambda m: torch.randn(m, 1, *self.size, generator=rng), len(x))
            x = x + (n.to(x.device, x.dtype) * self.noise_strength.to(x.dtype))
        elif noise == "const":
            x = x + (self.noise_const * self.noise_strength).to(x.dtype)
        return activate(x + self.bias.to(x.dtype)[:, None, None])


class ToRGB(nn.Module):
    """A modulated 1x1 convolution to pixels (not demodulated), plus bias; linear."""

    def __init__(self, in_channels: int, image_channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, image_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(image_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias.to(x.dtype)[:, None, None]


class SynthesisBlock(nn.Module):
    """One resolution: (the constant, or an upsampling layer), a layer, an RGB output added
    to the upsampled image of the resolutions before."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 image_channels: int, aspect: tuple[int, int] = (1, 1),
                 per_pixel_noise: bool = True):
        super().__init__()
        self.first = resolution == 4
        if self.first:  # 4x4, or 4x8 (height x width) for 2:1 pictures
            self.const = nn.Parameter(torch.randn(out_channels, 4 * aspect[1], 4 * aspect[0]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, aspect,
                                        per_pixel_noise)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, aspect,
                                    per_pixel_noise)
        self.to_rgb = ToRGB(out_channels, image_channels, w_dim)
        self.num_ws = 2 if self.first else 3  # the last is shared with the next block

    def forward(self, x, image, ws: torch.Tensor, noise: str, rng, kernel):
        if self.first:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1).to(ws.dtype)
            x = self.conv1(x, ws[:, 0], noise, rng)
        else:
            x = self.conv0(x, ws[:, 0], noise, rng, up=kernel)
            x = self.conv1(x, ws[:, 1], noise, rng)
        rgb = self.to_rgb(x, ws[:, -1])
        image = rgb if image is None else upsample2d(image, kernel) + rgb
        return x, image


class StyleGAN2Generator(GeneratorNetwork):
    """``forward(z)`` is the image (random noise); the recipe calls ``mapping`` and
    ``synthesis`` itself to mix styles and measure path lengths."""

    has_styles = True

    def __init__(self, spec: ModelSpec, base: int, cap: int, w_dim: int, mapping_layers: int,
                 per_pixel_noise: bool = True):
        super().__init__()
        self.declare(latent_dim=spec.latent_dim, resolution=spec.resolution,
                     channels=spec.channels, c_dim=spec.c_dim, aspect=spec.aspect)
        sizes = resolutions(spec.resolution)
        width = widths(spec.resolution, base, cap)
        self.mapping = MappingNetwork(spec.latent_dim, w_dim, mapping_layers,
                                      classes=spec.c_dim)
        self.blocks = nn.ModuleList([
            SynthesisBlock(width[max(4, r // 2)], width[r], w_dim, r, spec.channels,
                           spec.aspect, per_pixel_noise)
            for r in sizes])
        self.register_buffer("fir", fir_kernel(), persistent=False)
        # one w per layer: 1 at 4 px, 2 per doubling, and the final RGB layer's
        self.num_ws = 2 * len(sizes)
        self.w_dim = w_dim

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """``[N, w_dim]`` -> ``[N, num_ws, w_dim]``: the same style for every layer."""
        return w.unsqueeze(1).expand(-1, self.num_ws, -1)

    def synthesis(self, ws: torch.Tensor, noise: str = "random",
                  rng: torch.Generator | None = None) -> torch.Tensor:
        """Styles ``[N, num_ws, w_dim]`` -> images (not clamped). ``rng`` draws the random
        noise (None: the global generator)."""
        x = image = None
        index = 0
        for block in self.blocks:
            x, image = block(x, image, ws[:, index:index + block.num_ws], noise, rng, self.fir)
            index += block.num_ws - 1
        return image

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.synthesis(self.broadcast(self.mapping(z, c)))

    def training_images(self, z, rng=None):
        # the average style follows training, as in StyleGAN2's own recipe (truncation)
        return self.synthesis(self.broadcast(self.mapping(z, update_w_avg=True)), "random", rng)

    # ---- the sampling contract, in W ------------------------------------------------------

    def map(self, z: torch.Tensor, c: torch.Tensor | None = None, *, truncation: float = 1.0,
            truncation_cutoff: int | None = None) -> torch.Tensor:
        """Latents -> styles ``[N, num_ws, w_dim]``, truncated towards ``w_avg`` (the style of
        the average image) in the first ``truncation_cutoff`` layers (None: all)."""
        if truncation_cutoff is not None and (
                isinstance(truncation_cutoff, bool) or not isinstance(truncation_cutoff, int)
                or not 1 <= truncation_cutoff <= self.num_ws):
            raise GanvasError(f"--truncation-cutoff must be a whole number from 1 to "
                              f"{self.num_ws}, got {truncation_cutoff!r:.40}")
        ws = self.broadcast(self.mapping(z, c))
        if truncation != 1.0:
            average = self.w_avg.to(ws.dtype)
            cut = self.num_ws if truncation_cutoff is None else truncation_cutoff
            truncated = average.lerp(ws[:, :cut], truncation)
            ws = torch.cat([truncated, ws[:, cut:]], dim=1)
        return ws

    def synthesize(self, ws: torch.Tensor, noise: str = "const", *, clamp: bool = True
                   ) -> torch.Tensor:
        """Styles ``[N, num_ws, w_dim]`` (from ``map``, mixed or projected) -> images in
        ``[-1, 1]`` (unclamped with ``clamp=False``: a search keeps its gradients); random
        noise is drawn from the global generator."""
        images = self.synthesis(ws, noise)
        return images.clamp(-1, 1) if clamp else images

    def noise_inputs(self) -> list[nn.Module]:
        return [m for m in self.modules() if isinstance(m, SynthesisLayer) and m.has_noise]

    def sample(self, z, c=None, *, truncation=1.0, noise="const", truncation_cutoff=None):
        check_sampling_arguments(self, z, c, truncation, noise)
        return self.synthesize(self.map(z, c, truncation=truncation,
                                        truncation_cutoff=truncation_cutoff), noise)

    @property
    def w_avg(self) -> torch.Tensor:
        return self.mapping.w_avg


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions and a halving, beside a shortcut (halve, 1x1); the sum is scaled
    by sqrt(1/2) to keep the variance. Unlike stylegan2-ada, whose second convolution is a
    stride-2 one over the blurred full-size map, ours runs on the blurred, halved map: a
    quarter of the work, taps twice as far apart."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = EqualizedConv2d(in_channels, in_channels, 3)
        self.conv1 = EqualizedConv2d(in_channels, out_channels, 3)
        self.skip = EqualizedConv2d(in_channels, out_channels, 1, gain=1.0, bias=False)

    def forward(self, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        # Halving before the second convolution runs it on a quarter of the pixels.
        y = self.skip(downsample2d(x, kernel))
        x = F.leaky_relu(self.conv0(x), 0.2)
        x = F.leaky_relu(self.conv1(downsample2d(x, kernel)), 0.2)
        return (x + y) * math.sqrt(0.5)


class StyleGAN2Discriminator(DiscriminatorNetwork):
    def __init__(self, spec: ModelSpec, base: int, cap: int, group_size: int):
        super().__init__()
        self.classes = spec.c_dim
        sizes = resolutions(spec.resolution)
        width = widths(spec.resolution, base, cap)
        self.from_rgb = EqualizedConv2d(spec.channels, width[spec.resolution], 1)
        self.blocks = nn.ModuleList([ResidualBlock(width[big], width[small])
                                     for small, big in zip(sizes[::-1][1:], sizes[::-1])])
        # conditional: the projection of the class onto the last features (stylegan2-ada
        # projects a mapped class onto its output the same way)
        self.output = OutputBlock(width[4], width[4], group_size, classes=spec.c_dim,
                                  cells=16 * spec.aspect[0] * spec.aspect[1])
        self.register_buffer("fir", fir_kernel(), persistent=False)
        self.batch_group = group_size

    def forward(self, images: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = F.leaky_relu(self.from_rgb(images), 0.2)
        for block in self.blocks:
            x = block(x, self.fir)
        return self.output(x, c)


@register_model("stylegan2")
class StyleGAN2(ModelFamily):
    equalised_lr = True  # every layer scales its weights by He's constant
    can_take_labels = True  # as stylegan2-ada: the class joins z in the mapping network
    can_be_non_square = True  # from a 4x8 (8x4, ...) constant, to a 4x8 map read at the end
    description = (
        "StyleGAN2 (Karras et al. 2020) in plain PyTorch (no compiled extensions: CPU, CUDA, "
        "MPS): mapping network, modulated convolutions, per-pixel noise, skip generator, "
        "residual discriminator; trained with the non-saturating loss, lazy R1, lazy path "
        "length regularisation and style mixing, in its own phases (--update has no effect); "
        "8 to 1024 px")
    recipe = "stylegan2"
    option_help = {
        "base_channels": "channels at the final resolution, doubling as it halves (auto: "
                         "chosen from the resolution)",
        "max_channels": "cap for the small resolutions (auto: chosen from the resolution; "
                        "the paper: 512)",
        "w_dim": "size of the style vector w (the paper: 512)",
        "mapping_layers": "dense layers of the mapping network (the paper: 8; "
                          "stylegan2-ada's auto config: 2)",
        "style_mixing": "probability that a training batch mixes two latents' styles",
        "pl_weight": "weight of the path length penalty (0: off; auto: off up to 64 px, "
                     "the paper's 2 above)",
        "per_pixel_noise": "add per-pixel noise of learned strength in every layer (auto: "
                           f"on, as in the paper; off below {SMALL_DATA:,} pictures)",
        "pl_every": "apply the path length penalty every N steps, scaled by N",
        "group_size": "images per minibatch-standard-deviation group",
    }

    @dataclass(frozen=True)
    class Options:
        base_channels: int | None = None
        max_channels: int | None = None
        w_dim: int = 256
        mapping_layers: int = 2
        style_mixing: float = 0.9
        pl_weight: float | None = None
        pl_every: int = 4
        group_size: int = 4
        per_pixel_noise: bool | None = None  # None: on (a model saved before it existed)

        def problem(self) -> str | None:
            for name in ("base_channels", "max_channels"):
                value = getattr(self, name)
                if value is not None and not 1 <= value <= 4096:
                    return f"{name} must be 1..4096"
            if not 1 <= self.w_dim <= 4096:
                return "w_dim must be 1..4096"
            if not 1 <= self.mapping_layers <= 16:
                return "mapping_layers must be 1..16"
            if not 0 <= self.style_mixing <= 1:
                return "style_mixing must be a probability from 0 to 1"
            if self.pl_weight is not None and not 0 <= self.pl_weight <= 1000:
                return "pl_weight must be from 0 to 1000"
            if not 1 <= self.pl_every <= 1000:
                return "pl_every must be 1..1000"
            if not 1 <= self.group_size <= 64:
                return "group_size must be 1..64"
            if self.per_pixel_noise is not None and not isinstance(self.per_pixel_noise, bool):
                return "per_pixel_noise must be true or false"
            return None

    @classmethod
    def resolution_problem(cls, resolution: int) -> str | None:
        if is_power_of_two(resolution, 8, 1024):
            return None
        return "model stylegan2 works at a power of two from 8 to 1024 px (8, 16, ..., 1024)"

    chosen_for = (f"{SMALL_DATA:,} pictures or more at a power of two from 64 to 1024 px, as "
                  "stylegan2-ada chooses it for any data")

    @classmethod
    def claim(cls, data: DataProfile) -> Claim | None:
        if data.num_images is None or data.small or data.lesson \
                or not is_power_of_two(data.resolution, 64, 1024):
            return None
        return Claim(20, f"{data.described()}: StyleGAN2")

    @classmethod
    def auto_settings(cls, resolution: int, num_images: int, loss: str | None
                      ) -> dict[str, Any]:
        # stylegan2-ada's --cfg auto: Adam 0.0025 with betas 0 / 0.99, R1 gamma
        # 0.0002 res^2 / batch, an EMA half-life of batch * 10 / 32 kimg; a batch for CPUs.
        batch = 32 if resolution <= 64 else 16 if resolution <= 256 else 8
        small = num_images < SMALL_DATA
        if small:
            # A small folder trains for a few hundred steps on a CPU, where more steps beat
            # more pictures per step, as for FastGAN and the projected discriminator: on
            # 200 emoji at 64 px, 10 CPU minutes, five seeds, FID 187.4 at a batch of 8,
            # 219.6 at 16, 269.2 at 32 (docs/benchmarks.md, stop 42). R1 gamma and the EMA
            # follow it.
            batch = min(batch, 8)
        settings: dict[str, Any] = {
            "loss": loss or "ns", "lr_g": 0.0025, "lr_d": 0.0025, "beta1": 0.0, "beta2": 0.99,
            "batch_size": batch, "ema_kimg": batch * 10 / 32}
        if (loss or "ns") in R1_LOSSES:
            settings["r1_gamma"] = r1_gamma(resolution, batch)
        if small:
            # On 200 emoji at 64 px, 10 CPU minutes, two seeds of five drew one shape 32
            # times (with its old defaults too); the mode-seeking term, MSG's cure, took
            # them from FID 362 and 360 to 283 and 318 (docs/benchmarks.md, stop 41).
            settings["mode_seeking"] = 1.0
        return settings

    @classmethod
    def settings_for_given(cls, resolution: int, options: dict[str, Any],
                           settings: dict[str, Any]) -> dict[str, Any]:
        # As --cfg auto: R1 gamma and the EMA's half-life follow the batch trained with,
        # the user's too (a batch of 8 at 64 px: gamma 0.1024, not the 0.0256 of 32)
        batch = given_batch(settings)
        if batch is None:
            return {}
        return {**r1_for_given_batch(resolution, settings), "ema_kimg": batch * 10 / 32}

    @classmethod
    def auto_options(cls, resolution: int, num_images: int, batch_size: int,
                     given: dict[str, Any] | None = None) -> dict[str, Any]:
        base, cap = cpu_widths(resolution)
        # Path length regularisation is off at small sizes, as in stylegan2-ada's cifar
        # config: on emoji at 64 px, 20 CPU minutes, FID 227.5 with the paper's weight 2
        # against 169.9 without (its double backward also costs a fifth of the images).
        # Per-pixel noise is off on a small folder: on 200 emoji the young generator drew
        # speckle with it, from the last layer's noise (its strength grew from 0 to -0.08,
        # and to -0.2 with ADA, in 10 CPU minutes; docs/benchmarks.md, stop 41).
        return {"base_channels": base, "max_channels": cap,
                "pl_weight": 0.0 if resolution <= 64 else 2.0,
                "per_pixel_noise": num_images >= SMALL_DATA}

    @classmethod
    def build_generator(cls, spec: ModelSpec) -> nn.Module:
        o = spec.options
        return StyleGAN2Generator(spec, *chosen_widths(o, spec.resolution), o.w_dim,
                                  o.mapping_layers, o.per_pixel_noise is not False)

    @classmethod
    def build_discriminator(cls, spec: ModelSpec) -> nn.Module:
        o = spec.options
        return StyleGAN2Discriminator(spec, *chosen_widths(o, spec.resolution), o.group_size)
