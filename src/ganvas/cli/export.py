"""``ganvas export``: a styliser as an ONNX graph, for other runtimes."""

from __future__ import annotations

import argparse
import sys

from ganvas.cli.parsing import HelpFormatter

EXAMPLES = """\
examples:
  ganvas export styler/ --format onnx                 # writes styler/styliser.onnx
  ganvas export anystyle/ --format onnx -o any.onnx   # inputs content, style, alpha (AdaIN)

The graph takes pictures of any size in [0, 1] (N x 3 x H x W, float32) and is checked
with onnxruntime against PyTorch (at most 1e-4 apart) before it is kept.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export a styliser to ONNX",
        description="Write a styliser from `ganvas style-train` as an ONNX graph, checked "
                    "with onnxruntime.", epilog=EXAMPLES, formatter_class=HelpFormatter)
    parser.add_argument("folder", metavar="STYLISER", help="a styliser folder")
    parser.add_argument("--format", choices=("onnx",), default="onnx",
                        help="the format to write (default: onnx)")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="where to write it (default: STYLISER/styliser.onnx)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ganvas.stylisers.export import export_onnx

    result = export_onnx(args.folder, args.output)
    print(f"wrote {result.path} (inputs: {', '.join(result.inputs)}; onnxruntime matches "
          f"PyTorch to {result.difference:.1e})", file=sys.stderr)
    return 0
