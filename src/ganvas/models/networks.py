"""Base classes of every family's networks, and the one sampling contract.

Everything outside training (generate, eval, the health monitor, export, latent walks)
draws images through :meth:`GeneratorNetwork.sample`; what a generator returns from
``forward`` during training (a pyramid of images, a fade-in at a lower resolution) is the
family's own business and only its discriminator and loss recipe read it.
"""

from __future__ import annotations

import torch
from torch import nn

from ganvas.models.schedule import SchedulePoint

NOISE_MODES = ("const", "random", "none")


class GeneratorNetwork(nn.Module):
    """A generator. Subclasses set the declared attributes and implement ``forward``.

    Attributes:
        latent_dim: size of z.
        c_dim: size of the label vector c (0: unconditional).
        resolution: side of the images ``sample`` returns (the shorter one of non-square
            images).
        aspect: ``(width, height)`` of the images in units of ``resolution``: (1, 1) square,
            (2, 1) twice as wide as tall.
        channels: 1 (grayscale), 3 (RGB) or 4 (RGB with alpha).
    """

    latent_dim: int
    c_dim: int = 0
    resolution: int
    aspect: tuple[int, int] = (1, 1)
    channels: int
    # True for a generator normalised by BatchNorm throughout: its moving average then keeps
    # BatchNorm statistics of its own instead of copying the live network's (training/ema.py).
    average_needs_own_statistics: bool = False
    # True for a generator that draws through per-layer style vectors (StyleGAN2's W). It then
    # also offers, for truncation, style mixing, projection and latent files: ``map(z, c, *,
    # truncation, truncation_cutoff) -> ws [N, num_ws, w_dim]``, ``synthesize(ws, noise, *,
    # clamp=True) -> images``, ``broadcast(w [N, w_dim]) -> ws``, ``num_ws``, ``w_dim`` and
    # ``w_avg`` (the average style), and its noise layers through ``noise_inputs()``.
    has_styles: bool = False

    def declare(self, *, latent_dim: int, resolution: int, channels: int, c_dim: int = 0,
                aspect: tuple[int, int] = (1, 1)) -> None:
        self.latent_dim, self.resolution, self.channels, self.c_dim = (
            latent_dim, resolution, channels, c_dim)
        self.aspect = tuple(aspect)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of the images ``sample`` returns."""
        return self.resolution * self.aspect[1], self.resolution * self.aspect[0]

    def sample(self, z: torch.Tensor, c: torch.Tensor | None = None, *,
               truncation: float = 1.0, noise: str = "const") -> torch.Tensor:
        """Images for latents ``z [N, latent_dim]`` (and labels ``c [N, c_dim]``).

        Args:
            z: latent vectors, one per image.
            c: class labels; ``None`` for unconditional models.
            truncation: below 1, pulls each latent towards the mean latent (the truncation
                trick: less variety, more typical images); 1 leaves them as drawn.
            noise: how per-pixel noise inputs are drawn by families that have them:
                ``const`` (fixed, repeatable), ``random`` or ``none``; ignored by the rest.

        Returns:
            ``[N, channels, height, width]`` (``shape``) in ``[-1, 1]``.
        """
        check_sampling_arguments(self, z, c, truncation, noise)
        return self.synthesize_images(self.truncate(z, truncation), c, noise)

    def for_export(self) -> nn.Module:
        """This network as an ONNX graph can hold it: whatever ``sample`` reads from its own
        state at run time (a growing network's level) fixed as constants. Default: itself."""
        return self

    def truncate(self, z: torch.Tensor, truncation: float) -> torch.Tensor:
        """z-space truncation: z ~ N(0, I), so its mean latent is 0. (A product even at 1,
        which leaves z exactly as it is, so ``truncation`` may be a tensor: an ONNX input.)"""
        return z * truncation

    def synthesize_images(self, z: torch.Tensor, c: torch.Tensor | None, noise: str
                          ) -> torch.Tensor:
        """The final images for (already truncated) latents; override for families whose
        ``forward`` returns something else than the finished image."""
        return (self(z) if c is None else self(z, c)).clamp(-1, 1)

    def preview(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """What sample grids show during training: the network as it is trained right now,
        at ``resolution``. The same as ``sample`` except for growing families."""
        return self.sample(z, c)

    def training_images(self, z: torch.Tensor, rng: torch.Generator | None = None
                        ) -> torch.Tensor | list[torch.Tensor]:
        """What the generator shows a discriminator during training, as its own recipe
        would draw it: per-pixel noise from ``rng`` (a CPU generator; None: the global one)
        and whatever running statistics training keeps (StyleGAN2's average style)
        updated. Recipes that train any family's generator (a projected discriminator's)
        call this rather than the family's internals."""
        return self(z)

    def noise_inputs(self) -> list[nn.Module]:
        """The layers that add per-pixel noise and can be given a fixed map: each holds it as
        a buffer ``noise_const [H, W]`` (what ``noise="const"`` adds; projection optimises
        them). In model order; none by default."""
        return []

    def set_schedule(self, point: SchedulePoint) -> None:
        """Follow the training schedule (a growing family changes its level); no-op here."""

    @property
    def completed_resolution(self) -> int:
        """The finest resolution this network has finished learning (a growing model that
        stopped early samples this one, enlarged to ``resolution``)."""
        return self.resolution


class DiscriminatorNetwork(nn.Module):
    """A discriminator: what its generator's ``forward`` returns -> one logit per image."""

    # Images whose scores depend on each other: 1 when each image is scored alone; a layer
    # such as minibatch standard deviation makes it the size of its groups of consecutive
    # images. (BatchNorm mixes the whole batch and is detected separately.)
    batch_group: int = 1
    # Buffers that never change in training (a projected discriminator's frozen random
    # projections): processes never average them, so they stay bit-identical to the seed's.
    fixed_buffers: tuple[str, ...] = ()

    def set_schedule(self, point: SchedulePoint) -> None:
        """Follow the training schedule; no-op here."""


def uses_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def scores_are_independent(discriminator: nn.Module, batch_size: int) -> bool:
    """Whether scoring reals and fakes in one concatenated batch gives each the scores it
    would get alone (then one forward of twice the batch can replace two)."""
    if uses_batchnorm(discriminator):
        return False
    group = getattr(discriminator, "batch_group", 1)
    return batch_size % group == 0


def check_sampling_arguments(generator: GeneratorNetwork, z: torch.Tensor,
                             c: torch.Tensor | None, truncation: float, noise: str) -> None:
    from ganvas.errors import GanvasError

    if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != generator.latent_dim:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise GanvasError(f"sample() needs latents of shape [N, {generator.latent_dim}], "
                          f"got {shape}")
    if generator.c_dim == 0 and c is not None:
        raise GanvasError("this model is unconditional: sample() takes no labels (c=None)")
    if generator.c_dim and (c is None or tuple(c.shape) != (len(z), generator.c_dim)):
        raise GanvasError(f"this model needs labels c of shape [N, {generator.c_dim}]")
    if isinstance(truncation, bool) or not isinstance(truncation, (int, float)) \
            or not 0 <= truncation <= 1:
        raise GanvasError(f"--truncation must be a number from 0 to 1, got {truncation!r:.40}")
    if noise not in NOISE_MODES:
        raise GanvasError(f"--noise-mode must be one of {', '.join(NOISE_MODES)}, "
                          f"got {noise!r:.40}")
