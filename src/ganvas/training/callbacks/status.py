"""``status.json`` in the run folder (``ganvas/runs/status.py`` reads it): written when the
run starts, at every tick, at least every ``HEARTBEAT_SECONDS`` between ticks (a slow tick
must not look like a dead process), with the newest health event and sample grid as they
come, and at the end with how the run ended."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ganvas.config import LIMITS
from ganvas.runs.status import HEARTBEAT_SECONDS, RunStatus, this_host, write_status
from ganvas.training.callbacks import Callback

if TYPE_CHECKING:
    from ganvas.training.callbacks import RunView
    from ganvas.training.loop import TrainResult


class StatusFile(Callback):
    def __init__(self, clock=None):
        self.clock = clock or time.time
        self.status: RunStatus | None = None

    def _write(self, trainer: RunView) -> None:
        status = self.status
        status.step, status.images_seen = trainer.step, trainer.images_seen
        status.heartbeat = self.clock()
        write_status(trainer.run_dir, status)

    def on_train_start(self, trainer: RunView) -> None:
        samples = sorted((Path(trainer.run_dir) / "samples").glob("*.png"),
                         key=lambda p: p.stat().st_mtime)
        # A run whose only length is --time plans no number of steps (its config holds
        # the largest allowed, a bound, not a plan): say none rather than a billion.
        steps = trainer.config.steps
        self.status = RunStatus(state="running", pid=os.getpid(), host=this_host(),
                                steps=None if steps >= LIMITS["steps"] else steps,
                                started=self.clock(),
                                samples=str(samples[-1].resolve()) if samples else None)
        self._write(trainer)

    def on_step_end(self, trainer: RunView) -> None:
        if self.status is not None and self.clock() - self.status.heartbeat >= HEARTBEAT_SECONDS:
            self._write(trainer)

    def on_tick(self, trainer: RunView, record: dict[str, Any]) -> None:
        speed = record.get("Speed/img_per_s")
        if isinstance(speed, (int, float)) and math.isfinite(speed):
            self.status.images_per_second = round(float(speed), 1)
        self._write(trainer)

    def on_event(self, trainer: RunView, record: dict[str, Any]) -> None:
        if self.status is not None:
            self.status.last_event = {k: record.get(k) for k in ("step", "event", "message")}

    def on_samples(self, trainer: RunView, path: Path) -> None:
        if self.status is not None:
            self.status.samples = str(Path(path).resolve())

    def on_train_end(self, trainer: RunView, result: TrainResult) -> None:
        status = self.status
        if result.diverged:
            status.state, status.reason = "diverged", "stopped after --max-rollbacks"
        elif result.interrupted:
            status.state = "interrupted"
            status.reason = result.stop_reason or "stopped (Ctrl-C or a signal)"
        else:
            status.state, status.reason = "finished", None
        status.samples = str(Path(result.samples).resolve()) if result.samples else \
            status.samples
        self._write(trainer)
