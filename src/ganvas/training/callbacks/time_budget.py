"""``--time 20m``: train for a wall-clock budget, the way laptop users think. The budget
counts from the start of this session (a resumed run gets it afresh, or a new one with
``--time``); once it is spent, the run stops at the next tick, where every process agrees to
stop, and ends as a stopped run does: a checkpoint, the samples, the generator folder.
The time left joins each tick's record (``Time/left``), which the progress bar shows."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ganvas.config import duration_seconds
from ganvas.training.callbacks import Callback

if TYPE_CHECKING:
    from ganvas.training.callbacks import RunView


class TimeBudget(Callback):
    def __init__(self, budget: str, clock=None):
        self.budget = budget
        self.seconds = duration_seconds(budget)
        self.clock = clock or time.monotonic
        self.started: float | None = None
        self.asked = False

    def on_train_start(self, trainer: RunView) -> None:
        self.started = self.clock()

    def left(self) -> float:
        now = self.clock()
        return self.seconds - (now - (now if self.started is None else self.started))

    def on_step_end(self, trainer: RunView) -> None:
        # Asked between ticks, so the next tick stops every process at the same step.
        if not self.asked and self.left() <= 0:
            self.asked = True
            trainer.request_stop(f"the time budget ({self.budget}) is spent")

    def on_tick(self, trainer: RunView, record: dict[str, Any]) -> None:
        record["Time/left"] = round(max(0.0, self.left()), 1)
