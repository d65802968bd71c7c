"""Hooks into the training loop, for monitoring without editing the loop.

A callback sees the run through :class:`RunView`: what it may read (the config, the clock,
the data split, the networks, the schedule's point) and what it may ask for (render or score
images, log an event, change the settings that may change mid-run, keep or restore a
snapshot, stop). The loop's own housekeeping lives beside the user's callbacks in this
package, one module per job: :mod:`.console` (first lines and the progress bar),
:mod:`.samples` (sample and growth grids, loss curves), :mod:`.checkpoints`, :mod:`.fid`,
:mod:`.health` (the monitor), :mod:`.rollback` (divergence) and :mod:`.remedies` (settings
changed mid-run, agreed between processes). It all runs at the loop's tick.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

if TYPE_CHECKING:
    from ganvas.config import TrainConfig
    from ganvas.data import ImageData
    from ganvas.models.schedule import SchedulePoint
    from ganvas.training.loop import TrainResult


class RunView(Protocol):
    """What a callback may read and ask of the run (the trainer implements it)."""

    config: TrainConfig
    run_dir: Path
    step: int
    images_seen: int
    device: torch.device
    progress: bool
    distributed: bool  # several processes share the run (callbacks run on rank 0)
    data: ImageData
    train_indices: Any  # indices of the training pictures in ``data``
    held_out: Any  # indices of the held-out pictures (never trained on)
    fixed_latents: torch.Tensor
    labels: Any  # a conditional run's RunLabels (training/labels.py); None: unconditional
    generator: torch.nn.Module
    discriminator: torch.nn.Module

    @property
    def point(self) -> SchedulePoint: ...

    @property
    def learning_rates(self) -> tuple[float, float]: ...

    @property
    def loss(self) -> Any: ...  # the adversarial criterion (``name``, ``probabilistic``)

    @property
    def gate(self) -> Any: ...  # the balance gate (``skip_below``, ``accuracy_band``)

    def log(self, message: str) -> None: ...

    def log_event(self, kind: str, message: str, **data: Any) -> None: ...

    def render(self, latents: torch.Tensor, network: torch.nn.Module | None = None
               ) -> torch.Tensor: ...

    def score(self, images: torch.Tensor) -> torch.Tensor: ...

    def request_stop(self, reason: str) -> None: ...

    def set_learning_rates(self, *, g: float | None = None, d: float | None = None) -> None: ...

    def apply_changes(self, changes: dict[str, Any]) -> list[str]: ...

    def snapshot(self) -> dict[str, Any]: ...

    def state_dict(self) -> dict[str, Any]: ...  # what a checkpoint of this step holds

    @property
    def sampling_generator(self) -> torch.nn.Module: ...  # the moving average, if kept

    def restore_snapshot(self, state: dict[str, Any]) -> None: ...


class Callback:
    """Override any of these; each receives the run (a :class:`RunView`).

    ``on_tick`` gets the record about to be written to metrics.jsonl (a dict with
    ``step``, ``Loss/D``, ``Loss/G``, ``D/real``, ``D/fake``, ...) and may add fields to it.
    ``on_step_end`` runs after every step, for light checks (counting, a time budget): the
    housekeeping belongs to the tick. ``on_event`` and ``on_samples`` hear of each event
    and each sample grid as they are written. A callback may call ``trainer.request_stop(reason)``
    to end training cleanly (a checkpoint is still written).

    On several processes callbacks run on rank 0 alone; the learning rates and balance
    settings they set and their requests to stop reach the other processes at the tick.
    """

    def on_train_start(self, trainer: RunView) -> None:
        pass

    def on_step_end(self, trainer: RunView) -> None:
        pass

    def on_tick(self, trainer: RunView, record: dict[str, Any]) -> None:
        pass

    def on_event(self, trainer: RunView, record: dict[str, Any]) -> None:
        """A plain-language event (the monitor's diagnoses, remedies, rollbacks) as written
        to metrics.jsonl: ``step``, ``event`` (its kind), ``message`` and its data."""

    def on_samples(self, trainer: RunView, path: Path) -> None:
        """A sample grid was written to ``path`` (every --sample-every, growth, final)."""

    def on_train_end(self, trainer: RunView, result: TrainResult) -> None:
        pass

    def state_dict(self) -> dict[str, Any] | None:
        """State to keep in checkpoints (plain values and tensors), or None for none."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
