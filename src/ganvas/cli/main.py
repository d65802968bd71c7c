"""Entry point of the ``ganvas`` command: dispatch, and turn errors into one clear line."""

from __future__ import annotations

import os
import sys

from ganvas import __version__
from ganvas.cli import (
    doctor,
    evaluate,
    export,
    generate,
    models,
    project,
    studio,
    style_train,
    stylize,
    train,
    walk,
)
from ganvas.cli.parsing import HelpFormatter, Parser
from ganvas.errors import GanvasError

EXAMPLES = """\
examples:
  ganvas train --data digits --steps 2000          # train the offline demo
  ganvas train --data ./my_photos --resolution 64  # train on your own pictures
  ganvas train --resume runs/00000-digits-dcgan-28px --steps 4000
  ganvas train --nproc 2 --data digits --steps 2000 # on 2 processes (GPUs or CPU cores)
  ganvas generate runs/00000-digits-dcgan-28px --num 64 --grid
  ganvas walk runs/00000-digits-dcgan-28px --seeds 1,2,3 --loop -o walk.gif   # a latent walk
  ganvas eval runs/00000-digits-dcgan-28px --num 10000   # FID, KID, precision/recall
  ganvas doctor runs/00000-digits-dcgan-28px       # health report of a run
  ganvas models                                    # the architectures and their settings
  ganvas project photo.jpg --model runs/00002-emoji-stylegan2-64px   # find a photo's latent
  ganvas stylize photo.jpg --style painting.jpg -o out.jpg   # neural style transfer
  ganvas style-train --style painting.jpg --content ~/photos -o styler/   # a fast styliser
  ganvas stylize photo.jpg --model styler/ -o out.jpg         # ... in one forward pass
  ganvas stylize --video clip.mp4 --model styler/ -o out.mp4  # a video, steadied
  ganvas export styler/ --format onnx                         # for other runtimes
  ganvas studio                                    # all of it in a browser (127.0.0.1:7860)

Every subcommand has its own --help. Set GANVAS_DEBUG=1 to see tracebacks.
"""


def build_parser() -> Parser:
    parser = Parser(prog="ganvas", description="Train GANs on your own pictures, generate "
                    "images, and repaint photos in the style of paintings.", epilog=EXAMPLES,
                    formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"ganvas {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND",
                                       parser_class=Parser, required=False)
    for command in (train, generate, walk, project, evaluate, doctor, models, stylize,
                    style_train, export, studio):
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # for commands that start copies of themselves (train --nproc)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except GanvasError as exc:
        rank = _rank()
        if rank == 0:
            print(f"ganvas: error: {exc}", file=sys.stderr)
        elif _speaks_for_itself(exc):
            print(f"ganvas: error: [process {rank}] {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ganvas: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("GANVAS_DEBUG"):
            raise
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            print("ganvas: error: out of memory on the device; try a smaller --batch-size or "
                  "--resolution", file=sys.stderr)
            return 2
        if isinstance(exc, MemoryError):
            print("ganvas: error: out of memory; try a smaller --batch-size or --resolution",
                  file=sys.stderr)
            return 2
        if isinstance(exc, OSError) and exc.filename:
            print(f"ganvas: error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        print(f"ganvas: internal error: {type(exc).__name__}: {str(exc)[:200]} "
              "(set GANVAS_DEBUG=1 for the traceback, and please report it)", file=sys.stderr)
        return 1


def _rank() -> int:
    """This process's rank in a distributed run (0 otherwise), without importing torch for
    the commands that never need it."""
    if "ganvas.distributed" in sys.modules:
        return sys.modules["ganvas.distributed"].process_rank()
    return int(os.environ.get("RANK", "0") or 0) if "LOCAL_RANK" in os.environ else 0


def _speaks_for_itself(exc: GanvasError) -> bool:
    """Whether a process other than rank 0 should print its error: only for what happened to
    it alone (rank 0 reports everything the processes share: the options, the run folder,
    the checkpoint, a process that stopped)."""
    from ganvas.distributed import LocalProblem

    return isinstance(exc, LocalProblem)


if __name__ == "__main__":
    sys.exit(main())
