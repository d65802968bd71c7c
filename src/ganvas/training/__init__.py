"""Training: the loop, the monitor, EMA, callbacks and the statistics channel.

The loss recipes live in :mod:`ganvas.losses`, run folders and checkpoints in
:mod:`ganvas.runs`. The loop's names are imported on first use, so the health report
(``ganvas doctor``) can be read without loading the trainer.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"Callback": "ganvas.training.callbacks", "TrainResult": "ganvas.training.session",
            "Trainer": "ganvas.training.loop", "resume": "ganvas.training.session",
            "train": "ganvas.training.session"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ganvas.training' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
