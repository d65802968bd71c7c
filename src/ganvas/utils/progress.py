"""Progress bars that redraw often on a terminal and rarely in a log file."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm

LOG_INTERVAL = 30.0  # seconds between redraws when the output is not a terminal


def progress_bar(*, enabled: bool = True, **options: Any) -> tqdm:
    """A tqdm bar on stderr. Off a terminal it redraws every :data:`LOG_INTERVAL` seconds at
    most: tqdm's monitor would otherwise force a redraw every 10 s (``maxinterval``), and
    a log file would fill with them."""
    terminal = sys.stderr.isatty()
    interval = 0.5 if terminal else LOG_INTERVAL
    settings = dict(file=sys.stderr, dynamic_ncols=True, mininterval=interval,
                    maxinterval=max(10.0, interval), disable=not enabled)
    return tqdm(**{**settings, **options})
