"""Progressive growing (Karras et al. 2018, ProGAN): train at 4x4 first, then add a block
to both networks for each doubling of the resolution, fading each new block in.

Both networks hold every block from the start; a ``level`` buffer (saved with the weights,
so an exported generator knows how far it grew) says which are in use: level 2 uses the
blocks up to 16 px; level 2.4 fades the 32 px block in at 40 % (its output blended with the
upsampled 16 px output). The schedule moves the level with the images seen: a stable phase
at each resolution, then a fade-in of the next block, so a run resumed mid-fade continues
exactly. The discriminator sees real images shrunk to the resolution in training, blended
the same way during a fade.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ganvas.models.layers import (
    DownBlock,
    FromRGB,
    InputBlock,
    LabelEmbedding,
    OutputBlock,
    SphericalLatents,
    UpBlock,
    block_options_problem,
    check_labels,
    chosen_widths,
    cpu_widths,
    downsample,
    is_power_of_two,
    join_labels,
    pixel_norm,
    resolutions,
    to_rgb,
    upsample,
    widths,
)
from ganvas.models.networks import DiscriminatorNetwork, GeneratorNetwork
from ganvas.models.registry import (
    R1_LOSSES,
    ModelFamily,
    ModelSpec,
    r1_for_given_batch,
    r1_gamma,
    register_model,
)
from ganvas.models.schedule import SchedulePoint


def split_level(level: float) -> tuple[int, float]:
    """Level -> (index of the newest block in use, its fade-in alpha)."""
    newest = math.ceil(level - 1e-9)
    return newest, 1.0 - (newest - level)


class ProgressiveGenerator(SphericalLatents, GeneratorNetwork):
    def __init__(self, spec: ModelSpec, base: int, cap: int):
        super().__init__()
        self.declare(latent_dim=spec.latent_dim, resolution=spec.resolution,
                     channels=spec.channels, c_dim=spec.c_dim)
        sizes = resolutions(spec.resolution)
        width = widths(spec.resolution, base, cap)
        # conditional: the class's embedding (z's size) joins the normalised z
        self.labels = LabelEmbedding(spec.c_dim, spec.latent_dim) if spec.c_dim else None
        inputs = spec.latent_dim * (2 if spec.c_dim else 1)
        self.blocks = nn.ModuleList([InputBlock(inputs, width[4])] + [
            UpBlock(width[small], width[big]) for small, big in zip(sizes, sizes[1:])])
        self.to_rgb = nn.ModuleList([to_rgb(width[r], spec.channels) for r in sizes])
        # Fully grown unless a schedule says otherwise; saved with the weights.
        self.register_buffer("level", torch.tensor(float(len(sizes) - 1)))
        self.fixed_level: float | None = None  # the level as a constant (for_export)

    def set_schedule(self, point: SchedulePoint) -> None:
        self.level.fill_(point.level)

    def current_level(self) -> float:
        return float(self.level) if self.fixed_level is None else self.fixed_level

    def for_export(self) -> ProgressiveGenerator:
        fixed = copy.deepcopy(self)
        fixed.fixed_level = self.current_level()
        return fixed

    def grow(self, z: torch.Tensor, level: float) -> torch.Tensor:
        """The image at ``level`` for normalised latents: ``[N, C, r, r]`` with r the newest
        block's resolution."""
        newest, alpha = split_level(level)
        x = self.blocks[0](z)
        previous = x
        for block in self.blocks[1:newest + 1]:
            previous, x = x, block(x)
        image = self.to_rgb[newest](x)
        if alpha < 1:  # the new block fades in over the upsampled output of the last one
            image = torch.lerp(upsample(self.to_rgb[newest - 1](previous)), image, alpha)
        return image

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(self, c)
        return self.grow(join_labels(pixel_norm(z), self.labels, c), self.current_level())

    def _full_size(self, image: torch.Tensor) -> torch.Tensor:
        return upsample(image, self.resolution // image.shape[-1]).clamp(-1, 1)

    def synthesize_images(self, z, c, noise):
        # z comes normalised from truncate(). The last completed resolution (no block half
        # faded in), enlarged to full size.
        x = join_labels(z, self.labels, c)
        return self._full_size(self.grow(x, math.floor(self.current_level() + 1e-9)))

    def preview(self, z, c=None):
        return self._full_size(self(z, c))

    @property
    def completed_resolution(self) -> int:
        return 4 * 2 ** math.floor(self.current_level() + 1e-9)


class ProgressiveDiscriminator(DiscriminatorNetwork):
    def __init__(self, spec: ModelSpec, base: int, cap: int, group_size: int):
        super().__init__()
        sizes = resolutions(spec.resolution)
        width = widths(spec.resolution, base, cap)
        self.from_rgb = nn.ModuleList([FromRGB(spec.channels, width[r]) for r in sizes])
        self.blocks = nn.ModuleList([OutputBlock(width[4], width[4], group_size,
                                                 classes=spec.c_dim)] + [
            DownBlock(width[big], width[small]) for small, big in zip(sizes, sizes[1:])])
        self.batch_group = group_size
        self.register_buffer("level", torch.tensor(float(len(sizes) - 1)))

    def set_schedule(self, point: SchedulePoint) -> None:
        self.level.fill_(point.level)

    def forward(self, images: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        newest, alpha = split_level(float(self.level))
        x = self.from_rgb[newest](images)
        if newest > 0:
            x = self.blocks[newest](x)
            if alpha < 1:  # fade in: blend with the shrunk image through the old entry
                x = torch.lerp(self.from_rgb[newest - 1](downsample(images)), x, alpha)
        for block in reversed(self.blocks[1:newest]):
            x = block(x)
        return self.blocks[0](x, c)


class GrowthSchedule:
    """Stable ``stable_kimg`` at 4 px, then for each doubling: fade in over ``fade_kimg``,
    train ``stable_kimg``; full size for the rest of the run.

    The batch size is the run's ``--batch-size`` at the final resolution; with
    ``batch_growth`` above 1 it grows as the resolution shrinks (cheaper images: more of them
    per step, ProGAN's choice), at most that many times. On a 20-minute CPU budget the
    constant batch did better (FID 219 against 245 with 4x at 64 px on emoji): the schedule
    counts images, so a larger batch means fewer steps at the resolutions that cost least.
    """

    def __init__(self, spec: ModelSpec, batch_size: int, fade_kimg: float,
                 stable_kimg: float, batch_growth: int):
        self.final = spec.resolution
        self.stages = len(resolutions(spec.resolution))
        self.fade, self.stable = fade_kimg * 1000, stable_kimg * 1000
        self.batch_size, self.batch_growth = batch_size, batch_growth

    def stage_start(self, stage: int) -> float:
        """Images seen when the block of ``stage`` (0 = 4 px) starts fading in."""
        return 0.0 if stage == 0 else self.stable + (stage - 1) * (self.fade + self.stable)

    def batch_at(self, resolution: int) -> int:
        return self.batch_size * min(self.batch_growth, max(1, self.final // resolution))

    def __call__(self, images_seen: int) -> SchedulePoint:
        stage = next((s for s in range(self.stages - 1, -1, -1)
                      if images_seen >= self.stage_start(s)), 0)
        into = images_seen - self.stage_start(stage)
        fading = stage > 0 and into < self.fade
        level = stage - 1 + into / self.fade if fading else float(stage)
        resolution = 4 * 2**stage
        until = self.stage_start(stage + 1) if stage + 1 < self.stages else math.inf
        if stage == self.stages - 1 and not fading:
            phase = f"{resolution} px" + (", full size" if stage else "")
        elif fading:
            phase = f"{resolution} px, fading in {100 * (level - stage + 1):.0f} %"
        else:
            phase = f"{resolution} px, stable"
        return SchedulePoint(batch_size=self.batch_at(resolution), resolution=resolution,
                             level=level, alpha=level - math.floor(level) or 1.0,
                             until=until, phase=phase)

    def describe(self) -> str:
        grown = self.stage_start(self.stages - 1) + self.fade
        steps = ", ".join(f"{4 * 2**s} px from {self.stage_start(s) / 1000:g} kimg"
                          for s in range(1, self.stages))
        batch = (f"batch {self.batch_size} throughout" if self.batch_at(4) == self.batch_size
                 else f"batch {self.batch_at(4)} at 4 px down to {self.batch_size} at "
                      f"{self.final} px")
        return (f"grows from 4 to {self.final} px ({steps}; each new block fades in over "
                f"{self.fade / 1000:g} kimg), full size from {grown / 1000:g} kimg; {batch}")


@register_model("progressive")
class Progressive(ModelFamily):
    equalised_lr = True  # every layer scales its weights by He's constant
    can_take_labels = True  # an embedding joined to z, a projection discriminator
    description = (
        "progressive growing (ProGAN, Karras et al. 2018): starts at 4x4 and adds a faded-in "
        "block per doubling up to --resolution (8 to 1024 px); equalised learning rate, pixel "
        "norm, minibatch standard deviation; the non-saturating loss with lazy R1 by default, "
        "--loss wgan-gp (with epsilon-drift) as in the paper")
    option_help = {
        "base_channels": "channels at the final resolution, doubling as it halves (auto: "
                         "chosen from the resolution)",
        "max_channels": "cap for the small resolutions (auto: chosen from the resolution)",
        "fade_kimg": "thousands of images over which each new block fades in (auto: "
                     "chosen from the dataset size); ADA's speed on auto follows it",
        "stable_kimg": "thousands of images trained at each resolution before the next "
                       "grows (auto: the same as fade_kimg)",
        "batch_growth": "the batch grows up to this many times --batch-size at low "
                        "resolutions, as in ProGAN (1: the same batch throughout, which gives "
                        "short CPU runs more steps at the cheap resolutions)",
        "group_size": "images per minibatch-standard-deviation group",
    }

    @dataclass(frozen=True)
    class Options:
        base_channels: int | None = None
        max_channels: int | None = None
        fade_kimg: float | None = None
        stable_kimg: float | None = None
        batch_growth: int = 1
        group_size: int = 4

        def problem(self) -> str | None:
            for name in ("fade_kimg", "stable_kimg"):
                value = getattr(self, name)
                if value is not None and not 0 < value <= 1e6:
                    return f"{name} must be a positive number of thousands of images"
            if not 1 <= self.batch_growth <= 64:
                return "batch_growth must be 1..64"
            return block_options_problem(self)

    @classmethod
    def resolution_problem(cls, resolution: int) -> str | None:
        if is_power_of_two(resolution, 8, 1024):
            return None
        return "model progressive grows to a power of two from 8 to 1024 px (8, 16, ..., 1024)"

    @classmethod
    def auto_settings(cls, resolution: int, num_images: int, loss: str | None
                      ) -> dict[str, Any]:
        # ProGAN trained with WGAN-GP; its double backward every step costs about as much
        # again as the step itself, and at equal CPU time the non-saturating loss with lazy
        # R1 reached the lower FID (docs/benchmarks.md: Models built for resolution).
        # ADA's strength has to settle within a growth phase: each new resolution gives the
        # discriminator a new block to overfit with. At the general 100 kimg a 10-kimg phase
        # moves p by 0.1 at most; on 200 emoji (docs/benchmarks.md: The small folder) ADA
        # then held r_t nowhere near its target and lost the fixed-feature distance to no
        # augmentation in three seeds of three. At the phase's length it held r_t at 0.6
        # (none: 0.8 to 0.9) and won FID, KID and that distance in three seeds of three.
        return {**progan_settings(resolution, loss or "ns"),
                "ada_kimg": phase_kimg(num_images)}

    @classmethod
    def settings_for_given(cls, resolution: int, options: dict[str, Any],
                           settings: dict[str, Any]) -> dict[str, Any]:
        # R1's strength follows a batch the user chose, as it follows the automatic one
        chosen = r1_for_given_batch(resolution, settings)
        # ADA's speed follows a fade-in the user chose, as it follows the automatic one (a
        # value the options check refuses is left for it to name)
        fade = options.get("fade_kimg")
        if isinstance(fade, (int, float)) and not isinstance(fade, bool) and 0 < fade <= 1e6:
            chosen["ada_kimg"] = float(fade)
        return chosen

    @classmethod
    def auto_options(cls, resolution: int, num_images: int, batch_size: int,
                     given: dict[str, Any] | None = None) -> dict[str, Any]:
        base, cap = cpu_widths(resolution)
        phase = phase_kimg(num_images)
        fade = (given or {}).get("fade_kimg")  # a stable phase as long as a given fade-in
        stable = phase if fade is None else fade
        return {"base_channels": base, "max_channels": cap, "fade_kimg": phase,
                "stable_kimg": stable}

    @classmethod
    def build_generator(cls, spec: ModelSpec) -> nn.Module:
        return ProgressiveGenerator(spec, *chosen_widths(spec.options, spec.resolution))

    @classmethod
    def build_discriminator(cls, spec: ModelSpec) -> nn.Module:
        return ProgressiveDiscriminator(spec, *chosen_widths(spec.options, spec.resolution),
                                        spec.options.group_size)

    @classmethod
    def schedule(cls, spec: ModelSpec, batch_size: int):
        o = spec.options
        fade = o.fade_kimg if o.fade_kimg is not None else 20.0
        stable = o.stable_kimg if o.stable_kimg is not None else fade
        return GrowthSchedule(spec, batch_size, fade, stable, o.batch_growth)

    @classmethod
    def real_input(cls, spec: ModelSpec, images: torch.Tensor, point: SchedulePoint
                   ) -> torch.Tensor:
        """Reals shrunk to the resolution in training; during a fade, blended with their
        half-size version the way the generator's output is."""
        newest, alpha = split_level(point.level)
        images = downsample(images, images.shape[-1] // (4 * 2**newest))
        if alpha < 1:
            images = torch.lerp(upsample(downsample(images)), images, alpha)
        return images


# Equalised learning rate makes Adam move every weight by about the rate *relative to its
# scale* at each step: ProGAN's 1e-3 is 0.1 % a step, fine for the paper's hundreds of
# thousands of steps, but a CPU run has a few thousand (DCGAN's 2e-4 on weights of size 0.02
# is 1 % a step). On emoji at 64 px, 20 CPU minutes (docs/benchmarks.md: Models built for
# resolution), FID fell from 218.8 at 1e-3 to 210.4 at 3e-3 and 204.7 at 5e-3 with the default loss.
FAST_LR = 5e-3


def phase_kimg(num_images: int) -> float:
    """The automatic length of each fade-in and each stable phase, in thousands of images:
    each resolution sees the data a few times over while it fades in and settles (at least
    10 kimg, a few hundred steps), but no phase is longer than ProGAN's 600 kimg."""
    return float(min(600, max(10, round(num_images * 2.5 / 1000, 1))))


def progan_settings(resolution: int, loss: str) -> dict[str, Any]:
    """ProGAN's optimiser (Adam, betas 0 / 0.99) at a rate for short runs (``FAST_LR``; the
    paper's 1e-3 with its WGAN-GP), a batch that shrinks as images grow, and the penalty
    that goes with the loss: epsilon-drift with WGAN-GP (one critic step per generator
    step, as in the paper), R1 with the logistic losses."""
    lr = 1e-3 if loss == "wgan-gp" else FAST_LR
    settings: dict[str, Any] = {
        "loss": loss, "lr_g": lr, "lr_d": lr, "beta1": 0.0, "beta2": 0.99,
        "batch_size": 32 if resolution <= 64 else 16 if resolution <= 256 else 8,
        "ema_kimg": 10.0}
    if loss == "wgan-gp":
        settings["drift"] = 0.001
    elif loss in R1_LOSSES:
        settings["r1_gamma"] = r1_gamma(resolution, settings["batch_size"])
    return settings
