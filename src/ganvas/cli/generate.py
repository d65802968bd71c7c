"""``ganvas generate``: sample images from a run, a checkpoint or a generator folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ganvas.cli.parsing import HelpFormatter, print_stdout
from ganvas.errors import GanvasError
from ganvas.generate import generate_to_folder, parse_numbers

EXAMPLES = """\
examples:
  ganvas generate runs/00000-digits-dcgan-28px --num 64 --grid
  ganvas generate runs/00000-digits-dcgan-28px/checkpoints/step-0002000.pt --seed 7 --out seven
  ganvas generate runs/00000-digits-dcgan-28px/generator --num 16 --grid --no-singles
  ganvas generate runs/00001-emoji-progressive-64px --grid --truncation 0.7
  ganvas generate runs/00002-emoji-stylegan2-64px --style-mix 1,2,3,4 10-15
  ganvas generate runs/00002-emoji-stylegan2-64px --seeds 1,5,9-12 --grid   # by seed
  ganvas generate runs/00002-emoji-stylegan2-64px --grid-tile 2,3   # a tile of final.png again
  ganvas generate runs/00002-emoji-stylegan2-64px --truncation 0.5 --truncation-cutoff 4
  ganvas generate runs/00002-emoji-stylegan2-64px --latent projections/me/latent.safetensors
  ganvas generate runs/00003-cats-stylegan2-128px --nearest       # is it copying my pictures?
  ganvas generate runs/00004-pets-dcgan-64px --class dogs --num 16 --grid   # a conditional run
  ganvas generate runs/00004-pets-dcgan-64px --seeds 1-8 --grid --classes all  # class by seed
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate", help="sample images from a trained generator",
        description="Write generated images as PNG files. The same --seed always gives the "
                    "same images.", epilog=EXAMPLES, formatter_class=HelpFormatter)
    parser.add_argument("source", metavar="RUN_DIR|CKPT|GENERATOR_DIR",
                        help="a run folder (newest checkpoint), a checkpoint .pt file, or an "
                             "exported generator folder")
    parser.add_argument("--num", type=int, default=None,
                        help="how many images (default: 64; 8 with --nearest)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    parser.add_argument("--seeds", default=None, metavar="LIST",
                        help="one picture per seed, named by it (seed0005.png), e.g. 1,5,9-12; "
                             "each is the first picture of --seed S --num 1, and --grid writes "
                             "the seeds under the tiles")
    parser.add_argument("--class", dest="label", default=None, metavar="NAME",
                        help="a conditional model (trained with --conditional): draw this "
                             "class, by name or index (default: the classes in turn)")
    parser.add_argument("--classes", default=None, metavar="all|A,B",
                        help="a conditional model, with --seeds and --grid: write "
                             "grid-classes.png, a row per class (all, or names/indices "
                             "separated by commas), a column per seed")
    parser.add_argument("--grid-tile", default=None, metavar="ROW,COL",
                        help="draw one tile of a training sample grid again, alone and at full "
                             "size (the top left is 1,1), as in the snapshot")
    parser.add_argument("--step", type=int, default=None, metavar="N",
                        help="with --grid-tile: the grid of step N (its checkpoint must be "
                             "kept; default: the newest checkpoint)")
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
    parser.add_argument("--truncation-cutoff", type=int, default=None, metavar="N",
                        help="models with style vectors (stylegan2): truncate only the styles "
                             "of the first N layers (default: all)")
    parser.add_argument("--noise-mode", choices=("const", "random", "none"), default="const",
                        help="per-pixel noise of models that have it (default: const)")
    parser.add_argument("--style-mix", nargs=2, default=None, metavar=("ROW_SEEDS", "COL_SEEDS"),
                        help="models with style vectors: write style-mix.png, each row's "
                             "picture with its column's coarse styles (seeds such as 1,2,5-8)")
    parser.add_argument("--mix-layers", default=None, metavar="LAYERS",
                        help="with --style-mix: the layers whose styles come from the columns "
                             "(default 0-3: the 4 and 8 px layers and the first of 16 px)")
    parser.add_argument("--latent", default=None, metavar="FILE",
                        help="draw the latent of a `ganvas project` result (latent.safetensors) "
                             "instead of random ones")
    parser.add_argument("--nearest", type=int, nargs="?", const=4, default=None, metavar="K",
                        help="memorisation check: write nearest.png, each sample beside its K "
                             "nearest training images (default K: 4) on Inception features, and "
                             "say which samples look copied")
    parser.add_argument("--data", default=None,
                        help="with --nearest: the training images (default: the run's own)")
    parser.add_argument("--inception", default=None, metavar="FILE",
                        help="with --nearest: the Inception weights (as for ganvas eval)")
    parser.add_argument("--device", default="auto",
                        help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    source = Path(args.source)
    out = args.out or (source / "generated" if (source / "checkpoints").is_dir()
                       else Path("generated"))
    if args.nearest is not None:
        return _nearest(args, source, Path(out))
    if args.grid_tile is not None:
        return _grid_tile(args, source, Path(out))
    if args.step is not None:
        raise GanvasError("--step goes with --grid-tile")
    if args.data is not None or args.inception is not None:
        raise GanvasError("--data and --inception go with --nearest")
    if args.classes is not None and (args.seeds is None or not args.grid
                                     or args.label is not None):
        raise GanvasError("--classes draws a class-by-seed grid: give it with --seeds and "
                          "--grid, without --class")
    classes = (None if args.classes is None or args.classes.strip().lower() == "all"
               else [name.strip() for name in args.classes.split(",")])
    seeds = None
    if args.seeds is not None:
        if args.num is not None or args.seed is not None:
            raise GanvasError("--seeds names every picture; leave out --num and --seed")
        seeds = parse_numbers(args.seeds, "--seeds")
    args.num = 64 if args.num is None else args.num
    args.seed = 0 if args.seed is None else args.seed
    style_mix = (None if args.style_mix is None else
                 tuple(parse_numbers(seeds, "--style-mix") for seeds in args.style_mix))
    layers = None if args.mix_layers is None else parse_numbers(args.mix_layers, "--mix-layers")
    written = generate_to_folder(source, out, num=args.num, seed=args.seed,
                                 grid=args.grid or args.no_singles,
                                 singles=not args.no_singles, device=args.device,
                                 truncation=args.truncation, noise_mode=args.noise_mode,
                                 truncation_cutoff=args.truncation_cutoff,
                                 style_mix=style_mix, mix_layers=layers, latent=args.latent,
                                 seeds=seeds, label=args.label,
                                 class_grid=args.classes is not None, classes=classes)
    print_stdout(f"wrote {len(written)} file(s) to {out}")
    return 0


def _nearest(args: argparse.Namespace, source: Path, out: Path) -> int:
    from ganvas.metrics.nearest import nearest_training_images
    from ganvas.runs.folders import ensure_writable_dir
    from ganvas.utils.images import save_image

    if args.style_mix is not None or args.latent is not None or args.grid or args.no_singles \
            or args.seeds is not None or args.classes is not None:
        raise GanvasError("--nearest writes its own picture of random samples; leave out "
                          "--seeds, --style-mix, --latent, --grid, --classes and --no-singles")
    args.seed = 0 if args.seed is None else args.seed
    ensure_writable_dir(out, "--out")
    result = nearest_training_images(
        source, data=args.data, num=8 if args.num is None else args.num, k=args.nearest,
        seed=args.seed, inception=args.inception, device=args.device,
        truncation=args.truncation, truncation_cutoff=args.truncation_cutoff,
        noise_mode=args.noise_mode, progress=sys.stderr.isatty(),
        log=lambda message: print(message, file=sys.stderr))
    path = save_image(result.picture, out / f"nearest-seed{args.seed}.png")
    print_stdout(result.summary())
    print_stdout(f"wrote {path}")
    return 0


def _grid_tile(args: argparse.Namespace, source: Path, out: Path) -> int:
    from ganvas.grid_tile import parse_tile, save_grid_tile

    given = [flag for flag, value in (("--num", args.num), ("--seed", args.seed),
                                      ("--seeds", args.seeds), ("--style-mix", args.style_mix),
                                      ("--latent", args.latent), ("--class", args.label),
                                      ("--classes", args.classes)) if value is not None]
    if given or args.grid or args.no_singles:
        raise GanvasError("--grid-tile draws the run's own tile; leave out "
                          + ", ".join(given + ["--grid"] * args.grid
                                      + ["--no-singles"] * args.no_singles))
    if args.truncation != 1.0 or args.noise_mode != "const" or args.truncation_cutoff:
        raise GanvasError("--grid-tile draws the tile as training drew it; leave out "
                          "--truncation, --truncation-cutoff and --noise-mode")
    row, column = parse_tile(args.grid_tile)
    # the run's own device draws the snapshot's pixels exactly ("auto" may pick another)
    device = "cpu" if args.device == "auto" else args.device
    path = save_grid_tile(source, out, row, column, args.step, device)
    print_stdout(f"wrote {path}")
    return 0
