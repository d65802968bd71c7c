"""``ganvas train --nproc N``: start N training processes on this machine with torchrun's own
launcher (its elastic agent, a free port found by the c10d rendezvous), for users who do not
know torchrun. Several machines: run ``torchrun`` yourself (see docs/distributed.md).

Each process runs ``python -m ganvas train ...`` with the same options; what they print is
rank 0's. A process that fails ends the whole run, and this launcher says which one and how,
in one line.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Callable

from ganvas.errors import GanvasError

MAX_PROCESSES = 256
# Seconds torchrun's agent gives the processes to write their checkpoint after Ctrl-C or
# SIGTERM before it kills them.
SHUTDOWN_SECONDS = 120


def launch(nproc: int, argv: list[str], *, log: Callable[[str], None]) -> int:
    """Run ``ganvas`` with ``argv`` in ``nproc`` processes; returns the exit status."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if not 1 <= nproc <= MAX_PROCESSES:
        raise GanvasError(f"--nproc must be between 1 and {MAX_PROCESSES}, got {nproc}")
    # Share the cores out instead of letting every process start one thread per core.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (cores or 1) // nproc)))
    # The agent's own INFO/WARNING lines (rendezvous, "sending SIGTERM") are not for users;
    # a failure is told below in one line.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"ganvas-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
        monitor_interval=0.2, shutdown_timeout=SHUTDOWN_SECONDS)
    try:
        elastic_launch(config, sys.executable)("-m", "ganvas", *argv)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        code = failure.exitcode
        if code in (1, 2, 130):  # the process said why itself
            return code
        if code < 0:
            name = failure.signal_name()
            if name in ("SIGINT", "SIGTERM"):
                return 130
            log(f"ganvas: error: training process {rank} (of {nproc}) was killed by {name}"
                f"{' (out of memory?)' if name == 'SIGKILL' else ''}; the run stopped and its "
                "last checkpoint is intact: continue with ganvas train --resume RUN_DIR")
        else:
            log(f"ganvas: error: training process {rank} (of {nproc}) exited with status {code}; "
                "the run stopped and its last checkpoint is intact")
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # torchrun's agent turns Ctrl-C / SIGTERM into SignalException
        if type(exc).__name__ == "SignalException":
            return 130
        raise
    return 0


def without_nproc(argv: list[str]) -> list[str]:
    """The command line the processes run: this one less ``--nproc N``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out
