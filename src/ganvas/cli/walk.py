"""``ganvas walk``: a latent-walk video (MP4 or GIF) or a folder of frames."""

from __future__ import annotations

import argparse
import sys

from ganvas.cli.parsing import HelpFormatter, print_stdout

EXAMPLES = """\
examples:
  ganvas walk runs/00002-emoji-stylegan2-64px --seeds 3,8,21 --frames 90 --loop -o walk.gif
  ganvas walk runs/demo --seeds 1,2 --frames 30 -o frames/           # PNG frames in a folder
  ganvas walk runs/00002-emoji-stylegan2-64px --random --seconds 10 --fps 30 -o walk.mp4

Each seed's keyframe is its own picture, as `ganvas generate --seeds` draws it. MP4 needs
the video extra (pip install "ganvas[video]"); GIF and folders always work.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "walk", help="a latent walk through a trained generator, as a video or frames",
        description="Walk through a generator's latent space: through chosen seeds, or at "
                    "random; write an MP4, a GIF or a folder of PNG frames.",
        epilog=EXAMPLES, formatter_class=HelpFormatter)
    parser.add_argument("source", metavar="RUN_DIR|CKPT|GENERATOR_DIR",
                        help="a run folder, a checkpoint or a generator folder")
    parser.add_argument("-o", "--output", required=True, metavar="PATH",
                        help="walk.mp4, walk.gif, or a folder for PNG frames")
    parser.add_argument("--seeds", default=None, metavar="LIST",
                        help="the keyframes' seeds, e.g. 3,8,21 (at least two)")
    parser.add_argument("--random", action="store_true",
                        help="a smooth random walk instead (keyframes from --seed every 2 s)")
    parser.add_argument("--frames", type=int, default=None, metavar="N",
                        help="frames in all (default: 60; --random: --seconds x --fps)")
    parser.add_argument("--loop", action="store_true",
                        help="come back to the first keyframe, for a video that repeats")
    parser.add_argument("--seconds", type=float, default=10.0, metavar="S",
                        help="--random: the walk's length (default: 10)")
    parser.add_argument("--fps", type=int, default=30, help="frames per second (default: 30)")
    parser.add_argument("--seed", type=int, default=0, help="--random: its seed (default: 0)")
    parser.add_argument("--truncation", type=float, default=1.0, metavar="PSI",
                        help="below 1: more typical pictures (default: 1)")
    parser.add_argument("--class", dest="label", default=None, metavar="NAME",
                        help="a conditional model: walk within this class, by name or index "
                             "(default: its first class)")
    parser.add_argument("--scale", type=int, default=None, metavar="N",
                        help="enlarge each frame N times (default: to at least 256 px)")
    parser.add_argument("--device", default="auto",
                        help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ganvas.generate import parse_numbers
    from ganvas.walk import write_walk

    seeds = None if args.seeds is None else parse_numbers(args.seeds, "--seeds")
    result = write_walk(args.source, args.output, seeds=seeds, frames=args.frames,
                        loop=args.loop, random=args.random, seconds=args.seconds,
                        fps=args.fps, seed=args.seed, truncation=args.truncation,
                        scale=args.scale, device=args.device, progress=sys.stderr.isatty(),
                        label=args.label)
    print_stdout(f"wrote {result.path}: {result.frames} frames of {result.size[0]} x "
                 f"{result.size[1]} px at {args.fps} frames/s")
    return 0
