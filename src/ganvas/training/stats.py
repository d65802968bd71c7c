"""The statistics channel: the loop reports named values, ticks collect their means.

Values stay as tensors until a tick, so reporting costs no device synchronisation per step.
Names form a slash hierarchy (``Loss/D``, ``D/real``); the health monitor and the metrics
file read the same records.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

import torch


class StatsCollector:
    """Accumulates reported values between ticks."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor | float] = {}
        self._counts: dict[str, int] = {}

    def report(self, name: str, value: torch.Tensor | float) -> None:
        if isinstance(value, torch.Tensor):
            value = value.detach().float().mean()
        self._sums[name] = self._sums.get(name, 0.0) + value
        self._counts[name] = self._counts.get(name, 0) + 1

    def state_dict(self) -> dict[str, Any]:
        """The partial sums since the last tick, for checkpoints."""
        return {name: [float(total), self._counts[name]] for name, total in self._sums.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._sums = {str(name): float(pair[0]) for name, pair in state.items()}
        self._counts = {str(name): int(pair[1]) for name, pair in state.items()}

    def collect(self) -> dict[str, float]:
        """Means since the last collect; resets the accumulators."""
        means = {}
        for name, total in self._sums.items():
            value = float(total) / self._counts[name]
            means[name] = value if math.isfinite(value) else float("nan")
        self._sums.clear()
        self._counts.clear()
        return means


class MetricsLog:
    """Append-only ``metrics.jsonl``: one JSON object per tick."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():
            from ganvas.errors import GanvasError

            raise GanvasError(f"{self.path}: not a regular file; move it out of the run folder")

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, allow_nan=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()

    def read(self) -> list[dict[str, Any]]:
        return read_metrics(self.path)

    def truncate_after(self, step: int) -> None:
        """Drop records newer than ``step`` (written after the checkpoint we resume from)."""
        from ganvas.utils.files import atomic_write_text

        if not self.path.exists():
            return
        kept = [r for r in self.read() if r.get("step", 0) <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))


MAX_LINE = 100_000  # a record is a few hundred bytes; longer lines are not ours
MAX_STEP = 10**12


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Parse a metrics.jsonl file into records with a whole-number ``step``.

    Anything else (a torn last line, garbage, hostile nesting, a FIFO or device in place
    of the file) is skipped rather than trusted.
    """
    path = Path(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return []
    except OSError:
        return []
    records = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if len(line) > MAX_LINE:
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                continue
            step = record.get("step") if isinstance(record, dict) else None
            if isinstance(step, int) and not isinstance(step, bool) and 0 <= step <= MAX_STEP:
                records.append(record)
    return records
