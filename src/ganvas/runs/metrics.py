"""A run's ``metrics.jsonl``: one JSON record per tick, plus health events.

Written by training, read by ``ganvas doctor``, the loss plots and the health monitor, so
the reader lives here, beside the run folder's other formats, not in the trainer.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from ganvas.errors import GanvasError
from ganvas.utils.files import atomic_write_text


class MetricsLog:
    """Append-only ``metrics.jsonl``: one JSON object per tick. ``writable=False`` (the
    processes of a distributed run other than rank 0) reads but never writes."""

    def __init__(self, path: str | os.PathLike, *, writable: bool = True):
        self.path = Path(path)
        self.writable = writable
        if self.path.exists() and not self.path.is_file():
            raise GanvasError(f"{self.path}: not a regular file; move it out of the run folder")

    def append(self, record: dict[str, Any]) -> None:
        if not self.writable:
            return
        line = json.dumps(record, allow_nan=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()

    def read(self) -> list[dict[str, Any]]:
        return read_metrics(self.path)

    def truncate_after(self, step: int) -> None:
        """Drop records newer than ``step`` (written after the checkpoint we resume from)."""
        if not self.writable or not self.path.exists():
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
