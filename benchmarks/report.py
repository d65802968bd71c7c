"""What every benchmark script ends with: its own cost, and bad input as one line."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from ganvas.errors import GanvasError


def print_cost(wall_started: float, cpu_started: float) -> None:
    """The wall-clock and CPU seconds since ``time.perf_counter()`` / ``time.process_time()``
    read ``wall_started`` and ``cpu_started`` (CPU: all threads of this process)."""
    print(f"\nwall {time.perf_counter() - wall_started:.0f} s, "
          f"CPU {time.process_time() - cpu_started:.0f} s (this process)")


def run_script(main: Callable[[], None], script: str) -> None:
    """``main()``, with a GanvasError turned into ``SCRIPT: error: ...`` and status 1."""
    try:
        main()
    except GanvasError as exc:
        raise SystemExit(f"{Path(script).name}: error: {exc}") from None
