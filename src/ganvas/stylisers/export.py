"""A styliser as an ONNX graph, checked against PyTorch with onnxruntime.

A per-style network becomes ``image [1, 3, H, W] in [0, 1] -> stylised`` for any H and W.
An arbitrary one becomes ``(content, style, alpha) -> stylised`` with AdaIN inside the
graph (the style picture may have any size too); WCT needs an eigendecomposition, which
ONNX has no operator for, so it stays a PyTorch method. The graph is exported at one size
and checked at another, so its shapes are known to be free.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganvas.errors import GanvasError
from ganvas.stylisers.arbitrary import ALIGN, ArbitraryStyliser, adain, measure
from ganvas.stylisers.folder import load_styliser
from ganvas.stylisers.network import Styliser
from ganvas.utils.files import atomic_write

TOLERANCE = 1e-4  # largest difference from PyTorch, in [0, 1] pixel units
OPSET = 18


class AdaINGraph(nn.Module):
    """The arbitrary styliser's AdaIN path as one traceable function."""

    def __init__(self, net: ArbitraryStyliser):
        super().__init__()
        self.encoder, self.decoder = net.encoder, net.decoder
        self.align = ALIGN[net.backbone_name]

    def forward(self, content: torch.Tensor, style: torch.Tensor, alpha: torch.Tensor
                ) -> torch.Tensor:
        h, w = content.shape[-2:]
        padded = F.pad(content, (0, (-w) % self.align, 0, (-h) % self.align), mode="reflect")
        features = self.encoder(padded)[-1]
        target = adain(features, measure(self.encoder(style)[-1]))
        mixed = alpha * target + (1 - alpha) * features
        return self.decoder(mixed).clamp(0, 1)[..., :h, :w]


@dataclass
class ExportResult:
    path: Path
    difference: float  # largest, at the checking size
    inputs: list[str]


def export_onnx(folder: str | os.PathLike, output: str | os.PathLike | None = None, *,
                check_size: tuple[int, int] = (75, 101), quiet: bool = True) -> ExportResult:
    """Write ``folder``'s styliser as ONNX (default ``FOLDER/styliser.onnx``) and check it with
    onnxruntime on a picture of ``check_size`` (height, width)."""
    try:
        import onnxruntime
    except ImportError:
        raise GanvasError("ONNX export needs onnx, onnxscript and onnxruntime: pip install "
                          "onnx onnxscript onnxruntime") from None
    net, meta = load_styliser(folder)
    path = Path(output) if output is not None else Path(folder) / "styliser.onnx"
    if path.suffix.lower() != ".onnx":
        raise GanvasError(f"-o {path}: name the file .onnx")
    generator = torch.Generator().manual_seed(0)
    height, width = torch.export.Dim("height", min=16, max=8192), \
        torch.export.Dim("width", min=16, max=8192)
    if isinstance(net, Styliser):
        module: nn.Module = net
        example = (torch.rand(1, 3, 64, 64, generator=generator),)
        names, outputs = ["image"], ["stylised"]
        shapes: dict = {"images": {2: height, 3: width}}
        check = (torch.rand(1, 3, *check_size, generator=generator),)
    else:
        module = AdaINGraph(net)
        style_h, style_w = torch.export.Dim("style_height", min=16, max=8192), \
            torch.export.Dim("style_width", min=16, max=8192)
        example = (torch.rand(1, 3, 64, 64, generator=generator),
                   torch.rand(1, 3, 48, 56, generator=generator), torch.tensor(1.0))
        names, outputs = ["content", "style", "alpha"], ["stylised"]
        shapes = {"content": {2: height, 3: width}, "style": {2: style_h, 3: style_w},
                  "alpha": None}
        check = (torch.rand(1, 3, *check_size, generator=generator),
                 torch.rand(1, 3, 61, 43, generator=generator), torch.tensor(0.7))
    module.eval()
    with _quiet(quiet), torch.no_grad():
        try:
            program = torch.onnx.export(module, example, dynamo=True, input_names=names,
                                        output_names=outputs, dynamic_shapes=shapes,
                                        opset_version=OPSET, verbose=False)
        except Exception as exc:  # noqa: BLE001 -- the exporter raises many kinds
            raise GanvasError(f"the ONNX exporter failed on {folder} "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") \
                from None
    with atomic_write(path) as handle:
        handle.write(program.model_proto.SerializeToString())
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = module(*check).numpy()
    got = session.run(None, {n: t.numpy() for n, t in zip(names, check)})[0]
    difference = float(np.abs(got - expected).max()) if got.shape == expected.shape else \
        float("inf")
    if not difference <= TOLERANCE:
        path.unlink(missing_ok=True)
        raise GanvasError(f"the ONNX graph differs from PyTorch by {difference:.3g} (more than "
                          f"{TOLERANCE:g}); not kept")
    return ExportResult(path, difference, names)


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
