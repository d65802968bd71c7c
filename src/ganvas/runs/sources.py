"""What inference reads: the generator behind a run folder, a checkpoint or a generator folder.

``ganvas generate``, ``ganvas eval`` and the Python API's ``ganvas.load`` all come through
here, so none of them imports the trainer.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ganvas.errors import GanvasError
from ganvas.models.export import CONFIG_NAME, build_from_config, load_generator, load_weights
from ganvas.runs import checkpoint as ckpt


@dataclass
class GeneratorSource:
    """A generator as a run left it.

    Attributes:
        generator: the network (the moving average of the weights when the run kept one).
        config: the training config it came from (a dict).
        step: training steps behind these weights.
        where: what was read (for messages).
    """

    generator: nn.Module
    config: dict[str, Any]
    step: int
    where: str


def read_generator(path: str | os.PathLike, *, warn: Callable[[str], None] = print
                   ) -> GeneratorSource:
    """The generator stored at ``path``: an exported generator folder, a run folder (its
    newest loadable checkpoint) or a checkpoint file. Nothing is executed on loading
    (safetensors, or ``torch.load(weights_only=True)``)."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise GanvasError(f"load() needs a path to a run, checkpoint or generator folder, "
                          f"got {type(path).__name__}")
    path = Path(path)
    if path.is_dir() and (path / CONFIG_NAME).exists():
        generator, meta = load_generator(path)
        config = meta.get("train_config")
        return GeneratorSource(generator, config if isinstance(config, dict) else meta,
                               _step(meta.get("step")), str(path))
    if path.is_dir():
        _, state = ckpt.latest_checkpoint(path, warn=warn)
        where = str(path)
    elif path.is_file():
        state, where = ckpt.load_checkpoint(path), str(path)
    else:
        raise GanvasError(f"{path}: no such run folder, checkpoint or generator folder")
    config = state["config"]
    if not isinstance(config, dict):
        raise GanvasError(f"{where}: the checkpoint's config is not readable")
    generator = build_from_config(config, where)
    # Samples come from the moving average of the generator when the run kept one.
    weights = state.get("generator_ema", state["generator"])
    if not isinstance(weights, dict):
        raise GanvasError(f"{where}: the checkpoint's generator weights are not readable")
    load_weights(generator, weights, where)
    return GeneratorSource(generator, config, state["step"], where)


def _step(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
