"""``ganvas export``: a trained generator as ONNX or safetensors (with a model card), or a
styliser as an ONNX graph, for other runtimes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ganvas.cli.parsing import HelpFormatter

EXAMPLES = """\
examples:
  ganvas export runs/00002-emoji-stylegan2-64px                      # RUN/export-onnx/
  ganvas export runs/00002-emoji-stylegan2-64px --format safetensors -o emoji-generator
  ganvas export styler/ --format onnx                 # writes styler/styliser.onnx
  ganvas export anystyle/ --format onnx -o any.onnx   # inputs content, style, alpha (AdaIN)

A generator's graph takes z (N x latent size) and truncation (1 for none) and gives images
in [0, 1]; a styliser's takes pictures of any size in [0, 1] (N x 3 x H x W, float32). Each
is checked with onnxruntime against PyTorch (at most 1e-4 apart) before it is kept. A
generator's export folder carries a model card (README.md).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export a trained generator (ONNX, safetensors) or a styliser (ONNX)",
        description="Write a trained generator as an ONNX graph checked with onnxruntime, or "
                    "as a safetensors folder that ganvas.load reads, each with a model card; "
                    "or a styliser from `ganvas style-train` as an ONNX graph.",
        epilog=EXAMPLES, formatter_class=HelpFormatter)
    parser.add_argument("source", metavar="RUN|CKPT|GENERATOR_DIR|STYLISER",
                        help="a run folder (its newest checkpoint), a checkpoint, a generator "
                             "folder, or a styliser folder")
    parser.add_argument("--format", choices=("onnx", "safetensors"), default="onnx",
                        help="the format to write (default: onnx; stylisers: onnx only)")
    parser.add_argument("-o", "--output", metavar="PATH",
                        help="a generator: the export folder (default: RUN/export-FORMAT); a "
                             "styliser: the .onnx file (default: STYLISER/styliser.onnx)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ganvas.errors import GanvasError
    from ganvas.stylisers.folder import META_NAME

    if (Path(args.source) / META_NAME).is_file():
        from ganvas.stylisers.export import export_onnx

        if args.format != "onnx":
            raise GanvasError(f"--format {args.format}: a styliser exports to onnx only")
        result = export_onnx(args.source, args.output)
        print(f"wrote {result.path} (inputs: {', '.join(result.inputs)}; onnxruntime matches "
              f"PyTorch to {result.difference:.1e})", file=sys.stderr)
        return 0
    from ganvas.export.generator import export_generator

    done = export_generator(args.source, args.format, args.output)
    check = ("" if done.difference is None else
             f"; onnxruntime matches PyTorch to {done.difference:.1e}")
    print(f"wrote {', '.join(p.name for p in done.files)} to {done.folder}{check}",
          file=sys.stderr)
    return 0
