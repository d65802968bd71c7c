"""Exporting a module to ONNX and checking the graph against PyTorch with onnxruntime: what
the styliser and generator exports share."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ganvas.errors import GanvasError
from ganvas.utils.files import atomic_write

TOLERANCE = 1e-4  # largest difference from PyTorch, in [0, 1] pixel units
OPSET = 18
MISSING = ("ONNX export needs onnx, onnxscript and onnxruntime: pip install onnx onnxscript "
           "onnxruntime (or pip install \"ganvas[export]\")")


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise GanvasError(MISSING) from None
    return onnxruntime


def export_and_check(module: nn.Module, example: tuple, check: tuple, path: Path, *,
                     inputs: Sequence[str], outputs: Sequence[str], shapes: dict,
                     what: str, quiet: bool = True) -> float:
    """Write ``module`` as ONNX to ``path`` (traced on ``example``, with ``shapes`` free),
    run it with onnxruntime on ``check`` (other sizes than ``example``, so the free shapes
    are known to be free) and return the largest difference from PyTorch; a graph further
    than TOLERANCE from it is deleted and refused."""
    onnxruntime = import_onnxruntime()
    module.eval()
    with _quiet(quiet), torch.no_grad():
        try:
            program = torch.onnx.export(module, example, dynamo=True, input_names=list(inputs),
                                        output_names=list(outputs), dynamic_shapes=shapes,
                                        opset_version=OPSET, verbose=False)
        except Exception as exc:  # noqa: BLE001 -- the exporter raises many kinds
            raise GanvasError(f"the ONNX exporter failed on {what} "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") \
                from None
    with atomic_write(path) as handle:
        handle.write(program.model_proto.SerializeToString())
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = module(*check).numpy()
    got = session.run(None, {n: t.numpy() for n, t in zip(inputs, check)})[0]
    difference = float(np.abs(got - expected).max()) if got.shape == expected.shape else \
        float("inf")
    if not difference <= TOLERANCE:
        path.unlink(missing_ok=True)
        raise GanvasError(f"the ONNX graph of {what} differs from PyTorch by {difference:.3g} "
                          f"(more than {TOLERANCE:g}); not kept")
    return difference


@contextlib.contextmanager
def _quiet(enabled: bool):
    """The exporter prints its progress and warns about packages ganvas does not use."""
    if not enabled:
        yield
        return
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
