"""A run's ``status.json``: what a training process is doing, for any tool that watches runs
(the studio, a script, ``cat``).

The trainer rewrites it atomically at the start, every tick, at least every
:data:`HEARTBEAT_SECONDS` in between, and at the end (``training/callbacks/status.py``).
A process killed with SIGKILL, or a machine switched off, cannot say it stopped: the reader
calls a run ``stopped`` when its process is gone (same machine) or its heartbeat is older than
:data:`STALE_SECONDS` (any machine), never ``running`` forever.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ganvas.errors import GanvasError
from ganvas.utils.files import atomic_write_text

STATUS_NAME = "status.json"
FORMAT = "ganvas-run-status"
HEARTBEAT_SECONDS = 30.0  # the longest a running trainer goes without rewriting the file
# A heartbeat this old means the process is gone (four missed heartbeats, two minutes)
STALE_SECONDS = max(120.0, 4 * HEARTBEAT_SECONDS)
# What a trainer writes: running while it trains; at its end one of the others.
STATES = ("running", "finished", "interrupted", "diverged")


@dataclass
class RunStatus:
    """What ``status.json`` says, and what the reader concluded.

    Attributes:
        state: ``running``, ``finished``, ``interrupted`` (stopped early: Ctrl-C, --time, a
            callback; ``reason`` says which), ``diverged`` (after --max-rollbacks), or
            ``stopped`` (the file says running, but its process is gone: killed, crashed).
        reason: why it is not running (None while running or finished).
        pid, host: the training process (rank 0) and its machine.
        step, steps: steps done and planned (None for a run whose length is only its
            ``--time``); ``images_seen``.
        started, heartbeat: when this process started, and last wrote (Unix time).
        images_per_second: the last tick's speed.
        last_event: the newest health event (``step``, ``event``, ``message``) or None.
        samples: the newest sample grid's path (absolute), or None.
    """

    state: str
    reason: str | None = None
    pid: int | None = None
    host: str | None = None
    step: int = 0
    steps: int | None = None
    images_seen: int = 0
    started: float | None = None
    heartbeat: float | None = None
    images_per_second: float | None = None
    last_event: dict[str, Any] | None = None
    samples: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "state": self.state, "reason": self.reason,
                "pid": self.pid, "host": self.host, "step": self.step, "steps": self.steps,
                "images_seen": self.images_seen, "started": self.started,
                "heartbeat": self.heartbeat, "images_per_second": self.images_per_second,
                "last_event": self.last_event, "samples": self.samples}


def write_status(run_dir: str | os.PathLike, status: RunStatus) -> None:
    """Replace ``run_dir/status.json`` whole (a reader never sees half a file)."""
    atomic_write_text(Path(run_dir) / STATUS_NAME,
                      json.dumps(status.as_dict(), indent=2, allow_nan=False) + "\n")


def this_host() -> str:
    return socket.gethostname()


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    except OSError:
        return False
    try:  # Linux: a killed child its parent has not reaped yet is a zombie, not alive
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def read_status(run_dir: str | os.PathLike, now: float | None = None) -> RunStatus:
    """The status of the run in ``run_dir``; GanvasError (one line) when there is none."""
    run_dir = Path(run_dir)
    path = run_dir / STATUS_NAME
    if not run_dir.is_dir():
        raise GanvasError(f"{run_dir}: no such run folder")
    if not path.is_file():
        if (run_dir / "metrics.jsonl").is_file():
            raise GanvasError(f"{run_dir}: no {STATUS_NAME}; this run was trained by a ganvas "
                              "that did not write one")
        raise GanvasError(f"{run_dir}: not a ganvas run folder (no {STATUS_NAME})")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise GanvasError(f"{path}: unreadable ({str(exc)[:80]})") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT \
            or saved.get("state") not in STATES:
        raise GanvasError(f"{path}: not a ganvas run status")

    def number(key: str, kind: type) -> Any:
        value = saved.get(key)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return kind(value) if ok else None

    event = saved.get("last_event")
    status = RunStatus(
        state=saved["state"], reason=saved.get("reason") if isinstance(
            saved.get("reason"), str) else None,
        pid=number("pid", int), host=saved.get("host") if isinstance(saved.get("host"), str)
        else None, step=number("step", int) or 0, steps=number("steps", int),
        images_seen=number("images_seen", int) or 0, started=number("started", float),
        heartbeat=number("heartbeat", float),
        images_per_second=number("images_per_second", float),
        last_event=event if isinstance(event, dict) else None,
        samples=saved.get("samples") if isinstance(saved.get("samples"), str) else None)
    if status.state == "running":
        now = time.time() if now is None else now
        if status.host == this_host() and status.pid is not None \
                and not process_alive(status.pid):
            status.state, status.reason = "stopped", (
                f"its process ({status.pid}) is gone: killed or crashed; resume it with "
                f"`ganvas train --resume {run_dir}`")
        elif status.heartbeat is None or now - status.heartbeat > STALE_SECONDS:
            status.state, status.reason = "stopped", (
                "no sign of life for "
                f"{'ever' if status.heartbeat is None else f'{now - status.heartbeat:.0f} s'}"
                f"; resume it with `ganvas train --resume {run_dir}`")
    return status
