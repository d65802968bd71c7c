"""Trainer checkpoints: everything needed to resume a run exactly, in one file.

A checkpoint is a ``torch.save`` of plain containers and tensors only, so it loads with
``weights_only=True`` and never runs code. It is written to a temporary file, fsynced and
renamed, so a crash or Ctrl-C mid-write leaves the previous checkpoint intact.

Format versions: 1 (ganvas 0.1.0) counted only steps and kept the noise generator's state
under ``rng``; 2 adds ``images_seen`` (the run's clock) and keeps the loss recipe's state
(``opt_g``, ``opt_d``, ``augment``, ``balance``, ``noise_rng``) at the top level. Version-1
files are upgraded in memory when read, so runs of the earlier release resume exactly.
"""

from __future__ import annotations

import os
import pickle
import re
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ganvas.errors import GanvasError
from ganvas.models.export import check_version
from ganvas.utils.files import atomic_write

FORMAT = "ganvas-checkpoint"
VERSION = 2
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step-(\d+)\.pt$")
REQUIRED_KEYS = ("config", "step", "generator", "discriminator", "opt_g", "opt_d", "data", "rng")


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step-{step:07d}.pt"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Atomically write ``payload`` (plus the format header) to ``path``."""
    with atomic_write(path) as handle:
        torch.save({"format": FORMAT, "version": VERSION, **payload}, handle)
    return Path(path)


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints, oldest first (by step number in the name)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match and entry.is_file():
            found.append((int(match.group(1)), entry))
    return [p for _, p in sorted(found)]


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    for old in list_checkpoints(run_dir)[:-keep]:
        try:
            old.unlink()
        except OSError:
            pass


def refuse_zip_bomb(path: Path) -> None:
    """torch.save stores its members uncompressed; a compressed member that unpacks to far
    more than the file holds is a decompression bomb, not a checkpoint."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise GanvasError(f"{path}: not a checkpoint ({type(exc).__name__})") from None
    unpacked = sum(m.file_size for m in members)
    if any(m.compress_type != zipfile.ZIP_STORED for m in members) and \
            unpacked > 4 * path.stat().st_size + 1_000_000:
        raise GanvasError(f"{path}: refusing to load: it unpacks to {unpacked:,} bytes from "
                          f"{path.stat().st_size:,} (not a file written by ganvas)")


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and sanity-check a checkpoint; every failure is a one-line GanvasError."""
    path = Path(path)
    if not path.is_file():
        raise GanvasError(f"{path}: no such checkpoint file" if not path.exists()
                          else f"{path}: not a regular file")
    try:
        with open(path, "rb") as handle:
            is_archive = zipfile.is_zipfile(handle)
    except PermissionError:
        raise GanvasError(f"{path}: permission denied") from None
    except OSError as exc:
        raise GanvasError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not is_archive:  # every torch.save since PyTorch 1.6 is a zip archive
        raise GanvasError(f"{path}: not a checkpoint (not a PyTorch file, or truncated)")
    refuse_zip_bomb(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise GanvasError(
            f"{path}: refusing to load: the file holds Python objects, not just tensors "
            "(it was not written by ganvas, or has been tampered with)"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError,
            AttributeError, TypeError, IndexError, MemoryError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise GanvasError(f"{path}: not a readable checkpoint (corrupt or truncated? {reason})"
                          ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise GanvasError(f"{path}: not a ganvas checkpoint (no '{FORMAT}' header); "
                          "give a run folder or a .pt file written by `ganvas train`")
    check_version(payload.get("version"), VERSION, str(path))
    if payload["version"] == 1:
        payload = _upgrade_from_version_1(payload)
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise GanvasError(f"{path}: incomplete checkpoint, missing {', '.join(missing)}")
    if (not isinstance(payload["step"], int) or isinstance(payload["step"], bool)
            or payload["step"] < 0):
        raise GanvasError(f"{path}: checkpoint has an invalid step {payload['step']!r}")
    for key in ("generator", "discriminator"):
        state = payload[key]
        if not isinstance(state, dict) or not all(
                isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
            raise GanvasError(f"{path}: checkpoint entry '{key}' is not a set of weights")
    if not isinstance(payload["config"], dict):
        raise GanvasError(f"{path}: the checkpoint's config is not readable")
    return payload


def _upgrade_from_version_1(payload: dict[str, Any]) -> dict[str, Any]:
    """A 0.1.0 checkpoint in today's layout: its clock was steps of a fixed batch size."""
    payload = dict(payload)
    config, step = payload.get("config"), payload.get("step")
    batch = config.get("batch_size") if isinstance(config, dict) else None
    if isinstance(step, int) and isinstance(batch, int) and not isinstance(batch, bool):
        payload.setdefault("images_seen", step * batch)
    rng = payload.get("rng")
    if isinstance(rng, dict) and "noise" in rng:
        payload.setdefault("noise_rng", rng["noise"])
    return payload


def latest_checkpoint(run_dir: Path, *, warn=print) -> tuple[Path, dict[str, Any]]:
    """Newest loadable checkpoint of a run; damaged newer ones are reported and skipped."""
    candidates = list_checkpoints(run_dir)
    if not candidates:
        raise GanvasError(f"{run_dir}: no checkpoints in {Path(run_dir) / CHECKPOINT_DIR}; "
                          "is this a ganvas run folder?")
    problems = []
    for path in reversed(candidates):
        try:
            return path, load_checkpoint(path)
        except GanvasError as exc:
            problems.append(str(exc))
            warn(f"warning: skipping {exc}")
    raise GanvasError(f"{run_dir}: none of its {len(candidates)} checkpoints can be loaded "
                      f"({problems[0]})")


def set_aside_newer_checkpoints(run_dir: Path, step: int, log: Callable[[str], None]) -> None:
    """Resuming from an older checkpoint abandons the newer ones: move them out of the way
    (never delete them) so the newest checkpoint is again the run's real state."""
    newer = [p for p in list_checkpoints(run_dir) if int(p.stem.split("-")[1]) > step]
    if not newer:
        return
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = Path(run_dir) / CHECKPOINT_DIR / "abandoned"
    root.mkdir(parents=True, exist_ok=True)
    for attempt in range(1000):  # a fresh folder each time: never overwrite earlier ones
        aside = root / (f"after-step-{step}-{stamp}" + (f"-{attempt}" if attempt else ""))
        try:
            aside.mkdir()
            break
        except FileExistsError:
            continue
    for path in newer:
        path.replace(aside / path.name)
    log(f"moved {len(newer)} newer checkpoint(s) of the abandoned continuation to {aside}")
