"""Hooks into the training loop, for monitoring without editing the loop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ganvas.training.trainer import Trainer, TrainResult


class Callback:
    """Override any of these; each receives the live trainer.

    ``on_tick`` gets the record about to be written to metrics.jsonl (a dict with
    ``step``, ``Loss/D``, ``Loss/G``, ``D/real``, ``D/fake``, ...) and may add fields to it.
    A callback may call
    ``trainer.request_stop(reason)`` to end training cleanly (a checkpoint is still written).

    On several processes callbacks run on rank 0 alone; the learning rates and balance
    settings they set and their requests to stop reach the other processes at the tick. They
    must not call what every process has to call together (``save_checkpoint``,
    ``rollback``).
    """

    def on_train_start(self, trainer: Trainer) -> None:
        pass

    def on_step_end(self, trainer: Trainer) -> None:
        pass

    def on_tick(self, trainer: Trainer, record: dict[str, Any]) -> None:
        pass

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        pass

    def state_dict(self) -> dict[str, Any] | None:
        """State to keep in checkpoints (plain values and tensors), or None for none."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
