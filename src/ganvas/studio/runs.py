"""The studio's runs: find run folders, and start, stop and resume ``ganvas train`` processes.

Training always runs in a process of its own, in a session of its own (``start_new_session``):
closing the browser, or stopping or killing the studio, never stops a run, and the studio
finds running and finished runs again from their folders (``status.json``). The options
are the command line's: the studio builds ``ganvas train`` arguments, checks them with the
same parser and ``--dry-run`` code, and the run folder records them like any other run.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from ganvas.cli.parsing import Parser, config_values
from ganvas.config import TrainConfig
from ganvas.errors import GanvasError
from ganvas.runs.folders import describe, ensure_writable_dir, new_run_dir
from ganvas.runs.status import RunStatus, process_alive, read_status, this_host

LOG_NAME = "train.log"  # what the studio's training processes print, in their run folder
STYLISER_META = "styliser.json"  # a styliser folder (ganvas.stylisers.folder.META_NAME)


class _RaisingParser(Parser):
    """The CLI's parser, whose errors are raised (one line) instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise GanvasError(message)


def _train_parser() -> _RaisingParser:
    from ganvas.cli import train

    root = _RaisingParser(prog="ganvas")
    train.add_parser(root.add_subparsers(parser_class=_RaisingParser))
    return root


def split_flags(text: str | None) -> list[str]:
    """Extra ``ganvas train`` flags typed in a box, split as a shell would."""
    try:
        return shlex.split(text or "")
    except ValueError as exc:
        raise GanvasError(f"more options: {exc} (check the quotes)") from None


def train_arguments(data: str | None = None, model: str | None = None,
                    resolution: str | int | None = None, steps: str | int | None = None,
                    batch_size: str | int | None = None, augment: str | None = None,
                    time_budget: str | None = None, extra: str | None = None) -> list[str]:
    """``ganvas train`` arguments from the Train form; empty or "auto" fields are left to
    ganvas's automatic settings, as on the command line."""
    args: list[str] = []
    chosen = {"--data": data, "--model": model, "--resolution": resolution,
              "--steps": steps, "--batch-size": batch_size, "--augment": augment,
              "--time": time_budget}
    for flag, value in chosen.items():
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        args += [flag, str(value).strip()]
    return args + split_flags(extra)


@dataclass
class Plan:
    """A checked ``ganvas train`` command: its arguments, config and ``--dry-run`` text."""

    arguments: list[str]
    config: TrainConfig
    resolved: TrainConfig
    text: str


def plan_run(arguments: Sequence[str]) -> Plan:
    """Check ``arguments`` as ``ganvas train`` would (options, data, model, loss) without
    training; GanvasError (one line) for anything wrong."""
    from ganvas.auto_settings import resolve_settings
    from ganvas.cli.train import dry_run

    arguments = list(arguments)
    if "--data" not in arguments and not any(a.startswith("--data=") for a in arguments):
        raise GanvasError("choose the pictures: a folder's path or a built-in dataset "
                          "(digits, mnist, fashion-mnist, emoji)")
    for word in ("--resume", "--out", "--nproc", "--dry-run", "--config"):
        if word in arguments or any(a.startswith(word + "=") for a in arguments):
            raise GanvasError(f"{word} is not for the Train form: the studio chooses the run "
                              "folder and resumes runs with its own buttons")
    parsed = _train_parser().parse_args(["train", *arguments])
    config = TrainConfig.from_dict(config_values(parsed), source="options").validate()
    text = dry_run(config)
    resolved = resolve_settings(config)[0]
    return Plan(arguments, config, resolved, text)


@dataclass
class RunView:
    """What the studio shows of one run folder."""

    folder: Path
    state: str  # running, finished, interrupted, diverged, stopped, starting, failed, unknown
    reason: str | None = None
    status: RunStatus | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def running(self) -> bool:
        return self.state in ("running", "starting")

    def label(self) -> str:
        """One line for a list of runs: its name and state (the step is left to Watch, so
        that the list changes only when a run's state does)."""
        return f"{self.name} ({self.state})"


def is_run_folder(folder: Path) -> bool:
    return (folder / "config.yaml").is_file() and any(
        (folder / name).exists() for name in ("status.json", "metrics.jsonl", "checkpoints"))


_CONFIGS: dict[Path, tuple[tuple[int, float], dict[str, Any]]] = {}


def read_config(folder: Path) -> dict[str, Any]:
    """A run's config.yaml as a dict ({} when missing or unreadable: shown, not trusted);
    parsed again only when the file changes (a page polls every run's)."""
    path = folder / "config.yaml"
    try:
        info = path.stat()
        key = (info.st_size, info.st_mtime)
        held = _CONFIGS.get(path)
        if held is not None and held[0] == key:
            return held[1]
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    saved = saved if isinstance(saved, dict) else {}
    _CONFIGS[path] = (key, saved)
    return saved


def tail_lines(path: Path, limit: int = 64_000) -> list[str]:
    """The lines of the last ``limit`` bytes of a (log) file; OSError when unreadable."""
    with open(path, "rb") as handle:
        handle.seek(max(0, handle.seek(0, os.SEEK_END) - limit))
        return handle.read().decode("utf-8", "replace").splitlines()


def last_line(path: Path, limit: int = 64_000) -> str | None:
    """The last non-empty line of a (log) file, or None."""
    try:
        lines = [x.strip() for x in tail_lines(path, limit) if x.strip()]
    except OSError:
        return None
    return lines[-1] if lines else None


@dataclass
class _Child:
    process: subprocess.Popen
    started: float  # time.time() at the start: a status.json older than this is not its own


class Studio:
    """The runs under one folder, and the training processes this studio started."""

    def __init__(self, runs_dir: str | os.PathLike, python: str = sys.executable):
        self.runs_dir = Path(runs_dir)
        self.python = python
        self._children: dict[Path, _Child] = {}
        self._lock = threading.Lock()

    # ---- finding runs ------------------------------------------------------------------------

    def runs(self) -> list[RunView]:
        """Every run folder under ``runs_dir``, newest name first."""
        self.reap()
        if not self.runs_dir.is_dir():
            return []
        folders = sorted((p for p in self.runs_dir.iterdir() if p.is_dir()), reverse=True)
        return [self.view(p) for p in folders if is_run_folder(p) or p in self._children]

    def stylisers(self) -> list[Path]:
        """Styliser folders (``ganvas style-train``) under ``runs_dir``."""
        if not self.runs_dir.is_dir():
            return []
        return sorted(p for p in self.runs_dir.iterdir() if (p / STYLISER_META).is_file())

    def find(self, name: str | os.PathLike | None) -> Path:
        """The run folder called ``name`` (under ``runs_dir``, or a path); one line if it is
        not a run."""
        if not name:
            raise GanvasError("choose a run first")
        text = str(name).split(" (")[0]  # a label from the list of runs
        folder = Path(text) if Path(text).is_absolute() else self.runs_dir / text
        if not folder.is_dir():
            raise GanvasError(f"{folder}: no such run folder")
        if not is_run_folder(folder) and folder not in self._children:
            raise GanvasError(f"{folder}: not a ganvas run folder (no config.yaml and "
                              "metrics.jsonl)")
        return folder

    def view(self, folder: Path) -> RunView:
        child = self._children.get(folder)
        exit_code = None if child is None else child.process.poll()
        config = read_config(folder)
        try:
            status = read_status(folder)
        except GanvasError as exc:
            status, unreadable = None, str(exc)
        # A process this studio started that has not written its status yet: starting, or
        # failed before its first step (the log's last line is the CLI's one-line error).
        if child is not None and (status is None or (status.heartbeat or 0) < child.started):
            if exit_code is None:
                return RunView(folder, "starting", "loading the data and building the model",
                               status, config)
            if exit_code != 0:
                return RunView(folder, "failed", last_line(folder / LOG_NAME)
                               or f"ganvas train ended with code {exit_code}", status, config)
        if status is None:
            return RunView(folder, "unknown", unreadable, None, config)
        if exit_code not in (None, 0) and status.state == "running":
            status.state = "stopped"
            status.reason = last_line(folder / LOG_NAME) or "its process ended"
        return RunView(folder, status.state, status.reason, status, config)

    # ---- processes ---------------------------------------------------------------------------

    def start(self, arguments: Sequence[str] | Plan) -> Path:
        """Check ``arguments`` (or take a checked plan) and start ``ganvas train`` in a new
        numbered run folder."""
        plan = arguments if isinstance(arguments, Plan) else plan_run(arguments)
        ensure_writable_dir(self.runs_dir, "--runs")
        r = plan.resolved
        folder = new_run_dir(self.runs_dir, describe(r.data, r.model, r.resolution))
        self._spawn(folder, [*plan.arguments, "--out", str(folder)])
        return folder

    def resume(self, name: str | os.PathLike, arguments: Sequence[str] = ()) -> Path:
        """Continue a run that is not running, with changed settings if given."""
        folder = self.find(name)
        view = self.view(folder)
        if view.running:
            raise GanvasError(f"{folder.name} is running; stop it first")
        arguments = list(arguments)
        _train_parser().parse_args(["train", "--resume", str(folder), *arguments])  # check
        self._spawn(folder, ["--resume", str(folder), *arguments])
        return folder

    def stop(self, name: str | os.PathLike) -> str:
        """Ask a running run to stop as Ctrl-C does: it finishes the step, writes a
        checkpoint and exits."""
        folder = self.find(name)
        view = self.view(folder)
        pid = view.status.pid if view.status is not None else None
        child = self._children.get(folder)
        if pid is None and child is not None and child.process.poll() is None:
            pid = child.process.pid
        if not view.running or pid is None:
            raise GanvasError(f"{folder.name} is not running ({view.state})")
        if view.status is not None and view.status.host not in (None, this_host()):
            raise GanvasError(f"{folder.name} runs on {view.status.host}; stop it there")
        if not process_alive(pid):
            raise GanvasError(f"{folder.name}: its process ({pid}) is gone")
        os.kill(pid, signal.SIGINT)
        return (f"asked {folder.name} to stop: it finishes this step and writes a checkpoint "
                "first")

    def reap(self) -> None:
        """Collect the exit status of finished children (no zombies left behind)."""
        with self._lock:
            for child in self._children.values():
                child.process.poll()

    def wait(self, name: str | os.PathLike, timeout: float | None = None) -> int | None:
        """Wait for a training process this studio started (tests, scripts)."""
        child = self._children.get(self.find(name))
        return None if child is None else child.process.wait(timeout)

    def _spawn(self, folder: Path, arguments: list[str]) -> None:
        command = [self.python, "-m", "ganvas", "train", *arguments, "--no-progress"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        started = time.time()
        with open(folder / LOG_NAME, "ab") as log:
            log.write(f"$ ganvas train {shlex.join(arguments)}\n".encode())
            log.flush()
            child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env,
                                     start_new_session=True)
        with self._lock:
            self._children[folder] = _Child(child, started)
