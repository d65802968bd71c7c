"""ganvas: train GANs on your own pictures, watch them learn, and generate images.

Quick start::

    import ganvas
    result = ganvas.train(data="digits", steps=2000)
    images = ganvas.load(result.run_dir).sample(16, seed=0)
    picture = ganvas.stylize("photo.jpg", "painting.jpg", size=512)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

# Imported on first use, so that loading a generator (ganvas.load, generate, eval, doctor)
# never imports the trainer, and `import ganvas` stays quick.
_EXPORTS = {
    "Callback": "ganvas.training.callbacks",
    "GanvasError": "ganvas.errors",
    "ImageGenerator": "ganvas.generate",
    "StyleOptions": "ganvas.style",
    "TrainConfig": "ganvas.config",
    "TrainResult": "ganvas.training.session",
    "load": "ganvas.generate",
    "resume": "ganvas.training.session",
    "stylize": "ganvas.style",
    "train": "ganvas.training.session",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ganvas' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
