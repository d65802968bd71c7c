"""The loss recipe: how a family's two networks are trained, as a list of phases.

A recipe owns everything between a batch and the optimisers' steps: the adversarial
criterion, its regularisers, augmentation and instance noise, the balance between the two
players, the optimisers themselves, and the state of all of them for checkpoints. It exposes
*phases* (stylegan2-ada's ``Dmain``, ``Gmain``, ...): each names the optimisers it steps and
how often it is due. The training loop only runs the due phases in order: zero their
gradients, let the recipe accumulate them, step the optimisers the recipe lets update.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ganvas.models.schedule import SchedulePoint


@dataclass(frozen=True)
class Phase:
    """One kind of update.

    Attributes:
        name: a short label (``D``, ``G``, ``GD`` for a joint update of both).
        optimizers: names of the recipe's optimisers this phase may step (``"G"``, ``"D"``).
        interval: due every this many steps (lazy regularisation uses more than 1).
        keep_fakes: keep this phase's generated batch, with its graph, for the next phase.
    """

    name: str
    optimizers: tuple[str, ...]
    interval: int = 1
    keep_fakes: bool = False

    def due(self, step: int) -> bool:
        return step % self.interval == 0


class StepInputs:
    """What one pass of a phase draws: real batches and latents, on demand and in order, so
    each phase draws only what it uses and the order of random draws is the recipe's.

    ``batch_size`` is the batch of this pass in this process: the schedule's (global) batch
    divided among the processes and the gradient-accumulation rounds. Latents, labels and
    reals are this process's slice of the global draw (see :func:`ganvas.rng.per_sample`).
    """

    def __init__(self, *, reals: Callable[[int], tuple[torch.Tensor, torch.Tensor | None]],
                 latents: Callable[[int], torch.Tensor], point: SchedulePoint, step: int,
                 images_seen: int, batch_size: int | None = None,
                 labels: Callable[[int], torch.Tensor] | None = None):
        self._reals, self._latents, self._labels = reals, latents, labels
        self.point, self.step, self.images_seen = point, step, images_seen
        self.batch_size = point.batch_size if batch_size is None else batch_size

    def reals(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next batch of real images ``[B, C, R, R]`` in ``[-1, 1]`` and their labels,
        one-hot ``[B, classes]`` (None: unconditional)."""
        return self._reals(self.batch_size)

    def latents(self, n: int) -> torch.Tensor:
        return self._latents(n)

    def labels(self, n: int) -> torch.Tensor | None:
        """Labels for ``n`` generated images, one-hot, drawn as the training pictures' classes
        are distributed (stylegan2-ada's way); None for an unconditional run."""
        return None if self._labels is None else self._labels(n)


class LossRecipe:
    """Base class; see :class:`ganvas.losses.standard.StandardRecipe`."""

    name: str = ""
    phases: list[Phase]
    optimizers: dict[str, torch.optim.Optimizer]

    def accumulate_gradients(self, phase: Phase, inputs: StepInputs) -> list[str]:
        """Run ``phase``'s forward and backward passes (its gradients were zeroed); return the
        names of the optimisers that should step (the balance gate may hold one back)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError


def adam(module: torch.nn.Module, lr: float, betas: tuple[float, float]
         ) -> torch.optim.Adam:
    """Adam with the fused kernel where this PyTorch has it for the device: one pass over
    all weights instead of a dozen small operations per tensor (about 5 % of a step for the
    lesson's DCGAN on 2 CPU cores). Each parameter group remembers its ``base_lr`` (the rate
    the user or the health monitor set) apart from the ``lr`` in use, which a schedule may
    scale, and its ``lr_scale``, a fixed factor of the group."""
    params = list(module.parameters())
    try:
        optimizer = torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, ValueError, TypeError):  # older torch or an unsupported device
        optimizer = torch.optim.Adam(params, lr=lr, betas=betas)
    complete_groups(optimizer)
    return optimizer


def complete_groups(optimizer: torch.optim.Optimizer) -> None:
    """Give every parameter group ``base_lr`` and ``lr_scale`` (checkpoints written before
    ganvas had them hold only ``lr``)."""
    for group in optimizer.param_groups:
        group.setdefault("lr_scale", 1.0)
        if "base_lr" not in group:  # (damaged values are for the caller's checks to find)
            lr, scale = group.get("lr"), group["lr_scale"]
            numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool)
                          for v in (lr, scale))
            group["base_lr"] = lr / scale if numbers and scale else lr


def precision_context(device: torch.device, dtype: torch.dtype | None
                      ) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of the autocast context for the training forward passes (None: float32)."""
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=dtype)
