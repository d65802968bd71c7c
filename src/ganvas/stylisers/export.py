"""A styliser as an ONNX graph, checked against PyTorch with onnxruntime.

A per-style network becomes ``image [1, 3, H, W] in [0, 1] -> stylised`` for any H and W.
An arbitrary one becomes ``(content, style, alpha) -> stylised`` with AdaIN inside the
graph (the style picture may have any size too); WCT needs an eigendecomposition, which
ONNX has no operator for, so it stays a PyTorch method. The graph is exported at one size
and checked at another, so its shapes are known to be free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ganvas.errors import GanvasError
from ganvas.stylisers.arbitrary import ALIGN, ArbitraryStyliser, adain, measure
from ganvas.stylisers.folder import load_styliser
from ganvas.stylisers.network import Styliser
from ganvas.utils.onnx_check import export_and_check, import_onnxruntime


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
    import_onnxruntime()
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
    difference = export_and_check(module, example, check, path, inputs=names, outputs=outputs,
                                  shapes=shapes, what=str(folder), quiet=quiet)
    return ExportResult(path, difference, names)
