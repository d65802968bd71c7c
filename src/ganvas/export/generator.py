"""A trained generator as an ONNX graph (checked against PyTorch with onnxruntime) or as a
safetensors folder that ``ganvas.load`` reads, each in a folder with a model card.

The ONNX graph is the sampling contract and nothing else: ``z [N, latent_dim]`` and
``truncation`` (a float, 1 for none) in, ``images [N, C, H, W]`` in [0, 1] out, the batch
size free. Truncation is the family's own: towards the average style in W for a generator
with styles (StyleGAN2), in z otherwise; per-pixel noise is the fixed one (``--noise-mode
const``), so the same z gives the same picture in every runtime. A class-conditional
generator takes ``c [N, classes]`` too, one-hot rows (the classes in the model card's order).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ganvas import __version__
from ganvas.errors import GanvasError
from ganvas.export.card import run_folder, write_model_card
from ganvas.models.export import save_generator
from ganvas.models.networks import GeneratorNetwork
from ganvas.runs.folders import ensure_writable_dir
from ganvas.runs.sources import read_generator
from ganvas.utils.onnx_check import export_and_check, import_onnxruntime

FORMATS = ("onnx", "safetensors")
ONNX_NAME = "generator.onnx"


class SamplingGraph(nn.Module):
    """``(z, truncation) -> images in [0, 1]`` through the sampling contract."""

    def __init__(self, generator: GeneratorNetwork):
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor, truncation: torch.Tensor) -> torch.Tensor:
        return self.draw(z, None, truncation)

    def draw(self, z: torch.Tensor, c: torch.Tensor | None, truncation: torch.Tensor
             ) -> torch.Tensor:
        g = self.generator
        if g.has_styles:  # truncation in W, towards the average style
            ws = g.map(z, c)
            images = g.synthesize(g.w_avg.to(ws.dtype).lerp(ws, truncation), "const")
        else:
            images = g.synthesize_images(g.truncate(z, truncation), c, "const")
        return (images.clamp(-1, 1) + 1) / 2


class ConditionalSamplingGraph(SamplingGraph):
    """``(z, c, truncation) -> images in [0, 1]``: ``c`` one-hot class rows."""

    def forward(self, z: torch.Tensor, c: torch.Tensor, truncation: torch.Tensor
                ) -> torch.Tensor:
        return self.draw(z, c, truncation)


@dataclass
class GeneratorExport:
    folder: Path
    files: list[Path]
    difference: float | None  # ONNX against PyTorch, largest; None for safetensors


def export_generator(source: str | os.PathLike, fmt: str = "onnx",
                     output: str | os.PathLike | None = None, *,
                     quiet: bool = True) -> GeneratorExport:
    """Write the generator of ``source`` (a run folder, a checkpoint or a generator folder)
    as ``fmt`` into the folder ``output`` (default ``RUN/export-FORMAT``), with a model
    card (README.md)."""
    if fmt not in FORMATS:
        raise GanvasError(f"--format {fmt!r:.30}: choose one of {', '.join(FORMATS)}")
    if fmt == "onnx":
        import_onnxruntime()  # missing packages fail before anything is read
    source = Path(source)
    read = read_generator(source, warn=lambda message: None)
    generator = read.generator.eval()
    folder = Path(output) if output is not None else run_folder(source) / f"export-{fmt}"
    if folder.suffix.lower() in (".onnx", ".safetensors"):
        raise GanvasError(f"-o {folder}: give a folder; the export writes its files and a "
                          "model card (README.md) into it")
    ensure_writable_dir(folder, "-o")
    difference = None
    if fmt == "onnx":
        batch = torch.export.Dim("batch", min=1, max=4096)
        z = torch.Generator().manual_seed(0)
        example = (torch.randn(2, generator.latent_dim, generator=z), torch.tensor(1.0))
        check = (torch.randn(3, generator.latent_dim, generator=z), torch.tensor(0.7))
        graph, inputs = SamplingGraph(generator.for_export()), ["z", "truncation"]
        shapes = {"z": {0: batch}, "truncation": None}
        if generator.c_dim:  # the labels between z and truncation, one row per image
            def labels(n: int) -> torch.Tensor:
                return torch.eye(generator.c_dim)[torch.arange(n) % generator.c_dim]

            example = (example[0], labels(2), example[1])
            check = (check[0], labels(3), check[1])
            graph, inputs = ConditionalSamplingGraph(generator.for_export()), ["z", "c",
                                                                               "truncation"]
            shapes = {"z": {0: batch}, "c": {0: batch}, "truncation": None}
        difference = export_and_check(
            graph, example, check, folder / ONNX_NAME, inputs=inputs, outputs=["images"],
            shapes=shapes, what=str(source), quiet=quiet)
        files = [folder / ONNX_NAME]
    else:
        save_generator(folder, generator, read.config, step=read.step,
                       ganvas_version=__version__)
        files = sorted(p for p in folder.iterdir() if p.suffix in (".json", ".safetensors"))
    files.append(write_model_card(folder, fmt, generator, read, source, difference))
    return GeneratorExport(folder, files, difference)
