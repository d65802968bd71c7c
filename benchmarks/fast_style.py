"""Feed-forward style transfer against optimisation: speed, losses, flicker.

For each method — ``ganvas stylize`` (optimisation, the reference), a per-style styliser
(``--styliser``) and an arbitrary decoder (``--decoder``, AdaIN and WCT) — on the same
photos at 512 px (scikit-image's cat, coffee and astronaut, which the stylisers never saw
in training) and the same style picture:

- milliseconds per picture (the median of the photos, after one warm-up), and the ratio to
  optimisation;
- the content and style losses each result reaches, measured with a backbone *other* than
  the one trained with, so a network is not graded by its own teacher: torchvision's
  ImageNet VGG19 when its weights are on this machine, else a VGG19 with seeded random
  weights (random filters still capture texture statistics: Ustyuzhaninov et al. 2016);
- the warping error (mean squared change between consecutive results that the motion does
  not explain, over valid pixels) on a synthetic panning clip made from a still photo, so
  the flow is known exactly, without and with temporal stabilisation (``--temporal-weight``
  0 and the default; by optimisation, "with" also starts each frame from the last result).

    python benchmarks/fast_style.py --styliser STYLER --decoder ANYSTYLE --style STYLE.png
    python benchmarks/fast_style.py ... --iterations 100 --video-frames 8   # quicker

Make the stylisers with ``benchmarks/style_pictures.py`` (photos and styles) and
``ganvas style-train`` (docs/style-transfer.md gives the commands).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

from style_pictures import source_photos  # noqa: E402

from ganvas import video  # noqa: E402
from ganvas.errors import GanvasError  # noqa: E402
from ganvas.style.backbones import build_backbone, load_backbone  # noqa: E402
from ganvas.style.images import fitted_size, resized, to_tensor  # noqa: E402
from ganvas.style.losses import gram_matrix  # noqa: E402
from ganvas.style.transfer import stylize  # noqa: E402
from ganvas.stylisers.apply import ArbitraryStyle, make_painter  # noqa: E402
from ganvas.stylisers.folder import load_styliser  # noqa: E402
from ganvas.video.flow import warping_error  # noqa: E402
from ganvas.video.io import FrameWriter  # noqa: E402
from ganvas.video.painters import network_painter, optimisation_painter  # noqa: E402
from ganvas.video.stylise import stylise_video  # noqa: E402

TRAINED_WITH = "vgg16-hed"
CONTENT_LAYER = "relu4_2"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
PAN = (3, 1)  # pixels per frame the synthetic camera moves (x, y)


def judge_backbone() -> tuple[torch.nn.Module, str]:
    try:
        return load_backbone("vgg19"), "vgg19 (ImageNet)"
    except GanvasError:
        net = build_backbone("vgg19")
        generator = torch.Generator().manual_seed(1234)
        with torch.no_grad():  # He initialisation: activations keep their scale with depth
            for i in net.conv_indices():
                conv = net.features[i]
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator)
                                  * (2.0 / conv.weight[0].numel()) ** 0.5)
                conv.bias.zero_()
        return net, "vgg19 with seeded random weights"


class Judge:
    """Content and style losses of a result against its photo and the style picture."""

    def __init__(self, style: Image.Image, size: int):
        self.net, self.name = judge_backbone()
        picture = to_tensor(resized(style, fitted_size(style.size, size)))
        with torch.no_grad():
            feats = self.net(self.net.preprocess(picture), list(STYLE_LAYERS))
        self.grams = {n: gram_matrix(f) for n, f in feats.items()}

    @torch.no_grad()
    def __call__(self, result: Image.Image, photo: Image.Image) -> tuple[float, float]:
        x, p = to_tensor(result), to_tensor(resized(photo, result.size))
        layers = [CONTENT_LAYER, *STYLE_LAYERS]
        fx = self.net(self.net.preprocess(x), layers)
        fp = self.net(self.net.preprocess(p), [CONTENT_LAYER])
        content = torch.nn.functional.mse_loss(fx[CONTENT_LAYER], fp[CONTENT_LAYER])
        style = sum(torch.nn.functional.mse_loss(gram_matrix(fx[n]), self.grams[n])
                    for n in STYLE_LAYERS)
        return float(content), float(style)


def panning_clip(photo: Image.Image, folder: Path, frames: int, size: tuple[int, int]
                 ) -> Path:
    """A video of a window moving across ``photo`` by :data:`PAN` pixels per frame."""
    width, height = size
    dx, dy = PAN
    need = (width + dx * frames, height + dy * frames)
    scale = max(need[0] / photo.width, need[1] / photo.height)
    big = np.asarray(photo.resize((round(photo.width * scale) + 1,
                                   round(photo.height * scale) + 1), Image.Resampling.LANCZOS))
    path = folder / "pan.mp4"
    writer = FrameWriter(path, width, height, fps=Fraction(12))
    writer.stream.options = {"crf": "0", "bf": "0"}  # lossless: the flow stays exact
    for i in range(frames):
        writer.write(big[dy * i:dy * i + height, dx * i:dx * i + width])
    writer.close()
    return path


def exact_warping_error(results: list[np.ndarray]) -> float:
    """Warping error with the known flow: frame t at p shows what t-1 showed at p + PAN."""
    dx, dy = PAN
    total, count = 0.0, 0.0
    for before, now in zip(results, results[1:]):
        h, w = now.shape[:2]
        moved = before[dy:, dx:]  # the part of frame t-1 still in view, where it is now
        current = now[:h - dy, :w - dx]
        error, n = warping_error(current, moved, np.ones(current.shape[:2], np.float32))
        total, count = total + error, count + n
    return total / count


def clip_errors(painter_for, clip: Path, folder: Path, weight: float) -> tuple[float, float]:
    """Warping error of the clip painted without and with stabilisation."""
    found = []
    for label, w in (("plain", 0.0), ("steady", weight)):
        frames: list[np.ndarray] = []
        stylise_video(clip, folder / f"{label}-{len(found)}.mp4", painter_for(w > 0),
                      settings={}, temporal_weight=w, progress=False, log=lambda m: None,
                      on_frame=frames.append)
        found.append(exact_warping_error(frames))
    return found[0], found[1]


def timed(paint, photos: list[Image.Image]) -> tuple[float, list[Image.Image]]:
    # warm-up on a small copy: first-call allocations and lazy initialisation, cheaply
    paint(resized(photos[0], fitted_size(photos[0].size, 64)))
    times, results = [], []
    for photo in photos:
        start = time.perf_counter()
        results.append(paint(photo))
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--styliser", type=Path, required=True, help="a per-style styliser")
    parser.add_argument("--decoder", type=Path, required=True, help="an arbitrary styliser")
    parser.add_argument("--style", type=Path, required=True,
                        help="the style picture (the one the per-style styliser learnt)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--iterations", type=int, default=200,
                        help="optimisation's iterations per picture (default: 200)")
    parser.add_argument("--video-frames", type=int, default=16)
    parser.add_argument("--video-size", type=int, nargs=2, default=(256, 192))
    parser.add_argument("--video-iterations", type=int, default=60,
                        help="optimisation's iterations for a clip's first frame")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    torch.set_num_threads(torch.get_num_threads())
    style = Image.open(args.style).convert("RGB")
    photos = [resized(p, fitted_size(p.size, args.size)) for p in source_photos(
        held_out=True).values()]
    judge = Judge(style, args.size)
    styliser, _ = load_styliser(args.styliser)
    decoder, _ = load_styliser(args.decoder)
    per_style = make_painter(styliser)
    arbitrary = {m: make_painter(decoder, style=ArbitraryStyle([style], method=m,
                                                               style_size=args.size))
                 for m in ("adain", "wct")}

    def network(paint):
        from ganvas.style.images import to_image

        return lambda photo: to_image(paint(to_tensor(photo)))

    backbone = load_backbone(TRAINED_WITH)
    methods = {
        "optimisation": lambda photo: stylize(photo, style, size=args.size,
                                              backbone=TRAINED_WITH, network=backbone,
                                              iterations=args.iterations),
        "per-style styliser": network(per_style),
        "arbitrary, AdaIN": network(arbitrary["adain"]),
        "arbitrary, WCT": network(arbitrary["wct"]),
    }
    video_options = {"backbone": TRAINED_WITH, "iterations": args.video_iterations}
    painters = {
        "optimisation": lambda steady: optimisation_painter([style], video_options,
                                                            warm_start=steady),
        "per-style styliser": lambda steady: network_painter(per_style),
        "arbitrary, AdaIN": lambda steady: network_painter(arbitrary["adain"]),
        "arbitrary, WCT": lambda steady: network_painter(arbitrary["wct"]),
    }
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        clip = panning_clip(photos[0], Path(tmp), args.video_frames, tuple(args.video_size))
        for name, paint in methods.items():
            ms, results = timed(paint, photos)
            losses = [judge(r, p) for r, p in zip(results, photos)]
            plain, steady = clip_errors(painters[name], clip, Path(tmp),
                                        video.DEFAULT_TEMPORAL_WEIGHT)
            rows[name] = {"ms": ms, "content": statistics.mean(c for c, _ in losses),
                          "style": statistics.mean(s for _, s in losses),
                          "warping_plain": plain, "warping_steady": steady}
            print(f"  {name}: {ms:.0f} ms, warping {plain:.5f} -> {steady:.5f}",
                  file=sys.stderr)

    reference = rows["optimisation"]["ms"]
    print(f"\n{len(photos)} photos at {args.size} px, style {args.style.name}; "
          f"optimisation: {args.iterations} iterations with {TRAINED_WITH}; losses judged "
          f"with {judge.name}; clip: {args.video_frames} frames of "
          f"{args.video_size[0]}x{args.video_size[1]} panning {PAN} px per frame, "
          f"temporal weight {video.DEFAULT_TEMPORAL_WEIGHT:g}; {torch.get_num_threads()} "
          f"threads on {platform.processor() or platform.machine()}\n")
    print("| method | ms per picture | vs optimisation | content loss | style loss | "
          "warping error | stabilised |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['ms']:,.0f} | {r['ms'] / reference:.4f}x | {r['content']:.4g} | "
              f"{r['style']:.4g} | {r['warping_plain']:.5f} | {r['warping_steady']:.5f} "
              f"({r['warping_steady'] / r['warping_plain']:.2f}x) |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
