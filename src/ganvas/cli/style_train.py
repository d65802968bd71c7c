"""``ganvas style-train``: teach a network one style, to apply it in one forward pass."""

from __future__ import annotations

import argparse

from ganvas.cli.parsing import HelpFormatter, number

EXAMPLES = """\
examples:
  ganvas style-train --style painting.jpg --content ~/photos -o styler/ --backbone vgg16-hed
  ganvas style-train --style painting.jpg --content ~/photos -o styler/ --width 16   # CPU
  ganvas style-train --resume styler/ --steps 4000        # continue, or train longer
  ganvas stylize photo.jpg --model styler/ -o out.jpg     # then: one forward pass
  ganvas stylize ~/photos --model styler/ -o painted/     # a whole folder
  ganvas style-train --style painting.jpg --content ~/photos -o styler/ --temporal-weight 10
  ganvas style-train --arbitrary --content ~/photos --styles ~/paintings -o anystyle/
  ganvas stylize photo.jpg --model anystyle/ --style any.jpg --alpha 0.7 -o out.jpg

The photos are centre-cropped to squares of --size pixels; a few hundred are enough. The
style picture is shown at --style-size pixels (its longest side): smaller gives finer
strokes. Progress pictures go to OUT/previews/, the styliser to OUT/styliser.safetensors
(usable while training runs), the training state to OUT/checkpoint.pt (Ctrl-C keeps it).
--temporal-weight teaches the network to follow small motions steadily, for video.
--arbitrary trains a decoder that applies any style picture given later (AdaIN or WCT);
without --styles the photos serve as styles too (paintings teach it brush strokes).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "style-train", help="train a feed-forward styliser for one style (Johnson et al.)",
        description="Train a network that repaints any photo in the style of one picture in "
                    "one forward pass, with the perceptual losses of `ganvas stylize`.",
        epilog=EXAMPLES, formatter_class=HelpFormatter)
    parser.add_argument("--style", metavar="PICTURE", help="the style picture")
    parser.add_argument("--content", metavar="FOLDER", help="a folder of training photos")
    parser.add_argument("-o", "--out", metavar="DIR", help="the styliser folder to write")
    parser.add_argument("--resume", metavar="DIR", help="continue the styliser in DIR")
    parser.add_argument("--arbitrary", action="store_true",
                        help="train a decoder for any style instead of a network for one")
    parser.add_argument("--styles", metavar="FOLDER",
                        help="with --arbitrary: style pictures to learn from (default: the "
                             "photos)")
    parser.add_argument("--temporal-weight", type=number,
                        help="weight of the loss against flicker on video (default: 0)")
    parser.add_argument("--steps", type=int, help="training steps in all (default: 2000)")
    parser.add_argument("--batch-size", type=int, help="photos per step (default: 4)")
    parser.add_argument("--size", type=int, help="side of the training crops (default: 256)")
    parser.add_argument("--style-size", type=int,
                        help="longest side of the style picture (default: --size)")
    parser.add_argument("--width", type=int, choices=(32, 16),
                        help="32: the paper's network (default); 16: half width, for CPUs")
    parser.add_argument("--backbone", help="vgg19 (default), vgg16 or vgg16-hed (offline)")
    parser.add_argument("--weights", metavar="FILE", help="the backbone's weights file")
    parser.add_argument("--content-weight", type=number, help="default: per backbone")
    parser.add_argument("--style-weight", type=number, help="default: per backbone")
    parser.add_argument("--tv-weight", type=number, help="default: per backbone")
    parser.add_argument("--lr", type=number, dest="learning_rate",
                        help="Adam's learning rate (default: 0.001)")
    parser.add_argument("--seed", type=int, help="random seed (default: 0)")
    parser.add_argument("--preview-every", type=int, metavar="N",
                        help="steps between preview pictures (default: 100)")
    parser.add_argument("--checkpoint-every", type=int, metavar="N",
                        help="steps between checkpoints (default: 200)")
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ganvas.errors import GanvasError
    from ganvas.stylisers.training import train_styliser

    names = ("style", "content", "out", "styles", "temporal_weight", "steps", "batch_size",
             "size", "style_size", "width", "backbone", "weights", "content_weight",
             "style_weight", "tv_weight",
             "learning_rate", "seed", "preview_every", "checkpoint_every", "device")
    options = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    if args.arbitrary:
        options["arbitrary"] = True
    if args.resume:
        given = sorted(set(options) - {"steps", "device"})
        if given:
            raise GanvasError(f"--resume continues with the saved settings; only --steps and "
                              f"--device can change (drop --{given[0].replace('_', '-')})")
        result = train_styliser(resume=args.resume, progress=not args.no_progress, **options)
        return 130 if result.interrupted else 0
    needed = ("content", "out") if args.arbitrary else ("style", "content", "out")
    missing = [f"--{n}" for n in needed if n not in options]
    if missing:
        raise GanvasError(f"style-train needs {', '.join(missing)} (or --resume DIR)")
    result = train_styliser(progress=not args.no_progress, **options)
    return 130 if result.interrupted else 0
