"""``ganvas generate``: sample images from a run, a checkpoint or a generator folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganvas.cli.parsing import HelpFormatter, print_stdout
from ganvas.generate import generate_to_folder

EXAMPLES = """\
examples:
  ganvas generate runs/00000-digits-dcgan-28px --num 64 --grid
  ganvas generate runs/00000-digits-dcgan-28px/checkpoints/step-0002000.pt --seed 7 --out seven
  ganvas generate runs/00000-digits-dcgan-28px/generator --num 16 --grid --no-singles
  ganvas generate runs/00001-emoji-progressive-64px --grid --truncation 0.7
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate", help="sample images from a trained generator",
        description="Write generated images as PNG files. The same --seed always gives the "
                    "same images.", epilog=EXAMPLES, formatter_class=HelpFormatter)
    parser.add_argument("source", metavar="RUN_DIR|CKPT|GENERATOR_DIR",
                        help="a run folder (newest checkpoint), a checkpoint .pt file, or an "
                             "exported generator folder")
    parser.add_argument("--num", type=int, default=64, help="how many images (default: 64)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: SOURCE/generated for a run folder, "
                             "else ./generated)")
    parser.add_argument("--grid", action="store_true",
                        help="also write all images tiled into grid-seedN.png")
    parser.add_argument("--no-singles", action="store_true",
                        help="do not write one PNG per image (use with --grid)")
    parser.add_argument("--truncation", type=float, default=1.0, metavar="PSI",
                        help="below 1, pull the latents towards the mean latent: less variety, "
                             "more typical images (default: 1, off)")
    parser.add_argument("--noise-mode", choices=("const", "random", "none"), default="const",
                        help="per-pixel noise of models that have it (default: const)")
    parser.add_argument("--device", default="auto",
                        help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    source = Path(args.source)
    out = args.out or (source / "generated" if (source / "checkpoints").is_dir()
                       else Path("generated"))
    written = generate_to_folder(source, out, num=args.num, seed=args.seed,
                                 grid=args.grid or args.no_singles,
                                 singles=not args.no_singles, device=args.device,
                                 truncation=args.truncation, noise_mode=args.noise_mode)
    print_stdout(f"wrote {len(written)} file(s) to {out}")
    return 0
