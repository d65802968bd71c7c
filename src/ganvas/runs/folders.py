"""Numbered, described run folders (``runs/00007-digits-dcgan-28px``) and their checks."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from ganvas.errors import GanvasError

_NUMBERED = re.compile(r"^(\d{5})-")


def describe(data: str, model: str, resolution: int) -> str:
    """A short folder-name-safe description of a run."""
    name = Path(str(data).rstrip("/\\")).name or "data"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "data"
    return f"{name[:40]}-{model}-{resolution}px"


def new_run_dir(runs_dir: str | os.PathLike, description: str) -> Path:
    """Create the next numbered folder under ``runs_dir``."""
    root = Path(runs_dir)
    ensure_writable_dir(root, "--runs-dir")
    numbers = [int(m.group(1)) for e in root.iterdir() if (m := _NUMBERED.match(e.name))]
    number = max(numbers, default=-1) + 1
    while True:
        run = root / f"{number:05d}-{description}"
        try:
            run.mkdir()
            return run
        except FileExistsError:  # another run started at the same moment
            number += 1


def prepare_out_dir(out: str | os.PathLike) -> Path:
    """Use ``--out`` as the run folder, refusing to overwrite an existing run."""
    run = Path(out)
    ensure_writable_dir(run, "--out")
    if (run / "checkpoints").is_dir() and any((run / "checkpoints").iterdir()):
        raise GanvasError(f"--out {run} already holds a run; continue it with "
                          f"`ganvas train --resume {run}` or choose another --out")
    return run


def ensure_writable_dir(path: Path, option: str) -> None:
    """Create ``path`` if needed and prove we can write into it, before any work is done."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        # a probe of its own: two runs checking one folder at once must not delete each
        # other's (a fixed name did, and the second run said it could not write there)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".ganvas-write-test-"):
            pass
    except FileExistsError:
        raise GanvasError(f"{option} {path}: exists and is not a folder") from None
    except NotADirectoryError:
        raise GanvasError(f"{option} {path}: a part of this path is a file, not a folder"
                          ) from None
    except PermissionError:
        raise GanvasError(f"{option} {path}: permission denied; choose a folder you can "
                          "write to") from None
    except OSError as exc:
        raise GanvasError(f"{option} {path}: cannot write there ({exc.strerror or exc})"
                          ) from None
