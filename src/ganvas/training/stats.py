"""The statistics channel: the loop reports named values, ticks collect their means.

Values stay as tensors until a tick, so reporting costs no device synchronisation per step.
Names form a slash hierarchy (``Loss/D``, ``D/real``); the health monitor and the metrics
file (:mod:`ganvas.runs.metrics`) read the same records.
"""

from __future__ import annotations

import math
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
