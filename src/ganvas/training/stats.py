"""The statistics channel: whoever owns a value reports it, ticks collect them.

Two kinds of value: a *report* (a loss, D's scores) is averaged over the steps since the
last tick; a *gauge* (augmentation strength, where a growing schedule stands) is a level,
and the tick shows its newest value. Reports stay as tensors until a tick, so reporting
costs no device synchronisation per step. Names form a slash hierarchy (``Loss/D``,
``D/real``); the health monitor and the metrics file (:mod:`ganvas.runs.metrics`) read the
same records.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ganvas.distributed import Strategy


class StatsCollector:
    """Accumulates reported values between ticks."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor | float] = {}
        self._counts: dict[str, int] = {}
        self._gauges: dict[str, float | str] = {}

    def gauge(self, name: str, value: float | str) -> None:
        """A level whose newest value the next tick shows. Gauges are re-reported every
        step by their owners, so they are neither checkpointed nor summed over processes
        (every process holds the same level)."""
        self._gauges[name] = value

    def gauges(self, values: dict[str, float | str]) -> None:
        """Several gauges at once."""
        self._gauges.update(values)

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

    def gather(self, strategy: Strategy) -> None:
        """Move every process's partial sums into rank 0's (the others start again from
        zero): rank 0 can then checkpoint them, and a later :meth:`collect` still counts
        each value once."""
        if not strategy.distributed:
            return
        names, sums, counts = self._totals(strategy)
        main = strategy.is_main
        self._sums = {n: float(s) for n, s, c in zip(names, sums, counts) if main and c}
        self._counts = {n: int(c) for n, c in zip(names, counts) if main and c}

    def _totals(self, strategy: Strategy) -> tuple[list[str], list[float], list[float]]:
        # Rank 0's names decide the order, so every process reduces a vector of one length.
        names = strategy.agree(sorted(self._sums))
        local = torch.tensor([[float(self._sums.get(n, 0.0)), float(self._counts.get(n, 0))]
                              for n in names], dtype=torch.float64).reshape(-1, 2)
        total = strategy.sum(local)
        return names, total[:, 0].tolist(), total[:, 1].tolist()

    def collect(self, strategy: Strategy | None = None) -> dict[str, Any]:
        """Means since the last collect (over all processes of ``strategy``) and the newest
        gauges; resets both."""
        if strategy is not None and strategy.distributed:
            names, sums, counts = self._totals(strategy)
            self._sums = {n: s for n, s, c in zip(names, sums, counts) if c}
            self._counts = {n: int(c) for n, c in zip(names, counts) if c}
        means: dict[str, Any] = {}
        for name, total in self._sums.items():
            value = float(total) / self._counts[name]
            means[name] = value if math.isfinite(value) else float("nan")
        means.update(self._gauges)
        self._sums.clear()
        self._counts.clear()
        self._gauges.clear()
        return means
