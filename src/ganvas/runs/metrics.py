"""A run's ``metrics.jsonl``: one JSON record per tick, plus health events.

Written by training, read by ``ganvas doctor``, the loss plots and the health monitor, so
the reader lives here, beside the run folder's other formats, not in the trainer.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from ganvas.errors import GanvasError
from ganvas.utils.files import atomic_write


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
        """Drop records newer than ``step`` (written after the checkpoint we resume from).

        Streams the file into a temporary one beside it, so a long run's log never has to
        fit in memory. Lines that are not records (a torn last line, garbage) go too: the
        next append must start on a line of its own.
        """
        if not self.writable or not _is_regular(self.path):
            return
        with open(self.path, encoding="utf-8", errors="replace") as source, \
                atomic_write(self.path) as target:
            for line in _bounded_lines(source):
                record = _parse(line)
                if record is not None and record["step"] <= step:
                    target.write(line.rstrip("\r\n").encode("utf-8") + b"\n")


MAX_LINE = 100_000  # a record is a few hundred bytes; longer lines are not ours
MAX_STEP = 10**12


def iter_metrics(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """The records of a metrics.jsonl file, one at a time, each with a whole-number
    ``step``; memory stays bounded whatever the file's size.

    Anything else (a torn last line, garbage, hostile nesting, a FIFO or device in place
    of the file) is skipped rather than trusted.
    """
    path = Path(path)
    if not _is_regular(path):
        return
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in _bounded_lines(handle):
            record = _parse(line)
            if record is not None:
                yield record


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All the records of a metrics.jsonl file (see :func:`iter_metrics`)."""
    return list(iter_metrics(path))


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def _bounded_lines(handle: TextIO) -> Iterator[str]:
    """The lines of ``handle`` no longer than MAX_LINE (newline included); a longer one is
    read past in MAX_LINE pieces, never held whole."""
    while line := handle.readline(MAX_LINE + 1):
        if len(line) <= MAX_LINE:
            yield line
            continue
        while line and not line.endswith("\n"):
            line = handle.readline(MAX_LINE + 1)


def parse_record(line: str | bytes) -> dict[str, Any] | None:
    """One line of metrics.jsonl as a record with a whole-number ``step``, or None for
    anything else (a torn line, garbage, hostile nesting)."""
    return _parse(line)


def _parse(line: str | bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    step = record.get("step") if isinstance(record, dict) else None
    if isinstance(step, int) and not isinstance(step, bool) and 0 <= step <= MAX_STEP:
        return record
    return None
