"""Style-transfer speed and memory: ganvas against the PyTorch tutorial's loop.

The reference is written the way the PyTorch neural-style tutorial does it: one scale,
the picture initialised from the content image, torch.optim.LBFGS with its defaults
(20 iterations per ``step``), the picture clamped to [0, 1] inside the closure, and loss
modules inserted after the chosen layers of a truncated ``nn.Sequential``. It uses the same
backbone, layers, weights and loss definitions as ganvas (mean-squared content error,
Gram matrices normalised by C*H*W), so the two loss values mean the same thing.

For each size the table shows the reference's time for its iterations, its final loss and
its best loss (the tutorial's loss jumps up and down), and how long ganvas (default
coarse-to-fine schedule) takes until its loss at full size is at or below each of them,
as a ratio of the time the reference took to get there. A second table gives the peak
resident memory of ``ganvas stylize`` at large sizes, each measured in a fresh process.

    python benchmarks/stylize.py                        # 256 and 512 px, memory at 1024-3840
    python benchmarks/stylize.py --sizes 256 --memory   # no memory table
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from ganvas.style.backbones import load_backbone
from ganvas.style.images import fitted_size, resized, to_tensor
from ganvas.style.losses import gram_matrix
from ganvas.style.transfer import stylize

BACKBONE = "vgg16-hed"  # the backbone every machine here has offline


def sample_pictures() -> tuple[Image.Image, Image.Image]:
    """Content: scikit-image's astronaut; style: scikit-learn's flower photo."""
    import skimage.data
    from sklearn.datasets import load_sample_image

    return (Image.fromarray(skimage.data.astronaut()),
            Image.fromarray(load_sample_image("flower.jpg")))


# ---------------------------------------------------------------- the tutorial's way

class ContentLoss(nn.Module):
    def __init__(self, target: torch.Tensor) -> None:
        super().__init__()
        self.target = target.detach()
        self.loss = torch.zeros(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.loss = F.mse_loss(x, self.target)
        return x


class StyleLoss(nn.Module):
    def __init__(self, target_feature: torch.Tensor) -> None:
        super().__init__()
        self.target = gram_matrix(target_feature).detach()
        self.loss = torch.zeros(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.loss = F.mse_loss(gram_matrix(x), self.target)
        return x


class Preprocess(nn.Module):
    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.preprocess(x)


def tutorial_model(backbone, content, style, content_layers, style_layers):
    """A Sequential of the backbone's layers with loss modules after the chosen ones."""
    content_targets = backbone(backbone.preprocess(content), content_layers)
    style_targets = backbone(backbone.preprocess(style), style_layers)
    model = nn.Sequential(Preprocess(backbone))
    content_losses, style_losses = [], []
    last = max(backbone.layer_names.index(n) for n in (*content_layers, *style_layers))
    for name, layer in zip(backbone.layer_names[: last + 1], backbone.features):
        model.add_module(name, layer)
        if name in content_layers:
            content_losses.append(ContentLoss(content_targets[name]))
            model.add_module(f"content_loss_{name}", content_losses[-1])
        if name in style_layers:
            style_losses.append(StyleLoss(style_targets[name]))
            model.add_module(f"style_loss_{name}", style_losses[-1])
    return model, content_losses, style_losses


def reference(backbone, content, style, iterations, content_weight, style_weight):
    """Returns (seconds, [(seconds since start, loss) per evaluation])."""
    d = backbone.defaults
    start = time.perf_counter()
    with torch.no_grad():
        model, content_losses, style_losses = tutorial_model(
            backbone, content, style, d.content_layers, d.style_layers)
    picture = content.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([picture])
    trace, run = [], [0]
    while run[0] < iterations:
        def closure():
            with torch.no_grad():
                picture.clamp_(0, 1)
            optimizer.zero_grad()
            model(picture)
            style_score = style_weight * sum(s.loss for s in style_losses)
            content_score = content_weight * sum(c.loss for c in content_losses)
            loss = style_score + content_score
            loss.backward()
            run[0] += 1
            trace.append((time.perf_counter() - start, loss.item()))
            return loss

        optimizer.step(closure)
    return time.perf_counter() - start, trace


# ---------------------------------------------------------------- ganvas

def ganvas_run(content_img, style_img, size, iterations):
    """Returns (seconds, [(seconds since start, loss) per full-size evaluation])."""
    trace = []
    start = time.perf_counter()

    def record(progress):
        if progress.scale == progress.scales - 1:
            trace.append((time.perf_counter() - start, progress.losses.loss))

    stylize(content_img, style_img, backbone=BACKBONE, size=size, iterations=iterations,
            device="cpu", callback=record)
    return time.perf_counter() - start, trace


def speed_table(sizes, ref_iterations, iterations):
    backbone = load_backbone(BACKBONE, device="cpu")
    d = backbone.defaults
    content_img, style_img = sample_pictures()
    rows = []
    for size in sizes:
        shape = fitted_size(content_img.size, size)
        content = to_tensor(resized(content_img, shape))
        style = to_tensor(resized(style_img, fitted_size(style_img.size, size)))
        ref_time, ref_trace = reference(backbone, content, style, ref_iterations,
                                        d.content_weight, d.style_weight)
        ref_loss = ref_trace[-1][1]
        # The tutorial's loss jumps up and down (L-BFGS with the picture clamped inside the
        # closure), so its best value is also a fair target, and a harder one.
        ref_best = min(loss for _, loss in ref_trace)
        ref_best_time = next(t for t, loss in ref_trace if loss == ref_best)
        ours_time, ours_trace = ganvas_run(content_img, style_img, size, iterations)
        reached = next((t for t, loss in ours_trace if loss <= ref_loss), None)
        reached_best = next((t for t, loss in ours_trace if loss <= ref_best), None)
        rows.append(dict(size=size, ref_time=ref_time, ref_loss=ref_loss, ref_best=ref_best,
                         ref_best_time=ref_best_time, ours_time=ours_time,
                         ours_loss=ours_trace[-1][1], reached=reached,
                         reached_best=reached_best))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"\nStyle transfer, {BACKBONE}, astronaut in the style of flower.jpg, "
          f"tutorial: {ref_iterations} evaluations, ganvas: {iterations} in all")
    print(f"{'size':>5} | {'tutorial s':>10} {'final loss':>10} {'best loss':>9} "
          f"{'at s':>6} | {'ganvas s':>8} {'final loss':>10} | {'reaches final':>18} "
          f"{'reaches best':>18}")

    def reach(seconds, reference_seconds):
        if seconds is None:
            return "never"
        return f"{seconds:.1f} s = {seconds / reference_seconds:.2f}x"

    for r in rows:
        print(f"{r['size']:>5} | {r['ref_time']:>10.1f} {r['ref_loss']:>10.4g} "
              f"{r['ref_best']:>9.4g} {r['ref_best_time']:>6.1f} | {r['ours_time']:>8.1f} "
              f"{r['ours_loss']:>10.4g} | {reach(r['reached'], r['ref_time']):>18} "
              f"{reach(r['reached_best'], r['ref_best_time']):>18}")
    return rows


# ---------------------------------------------------------------- memory

def widescreen(img: Image.Image) -> Image.Image:
    """The middle 16:9 band of a picture, so the largest size is 3840x2160 (4K UHD)."""
    w, h = img.size
    band = round(w * 9 / 16)
    return img.crop((0, (h - band) // 2, w, (h - band) // 2 + band))


def memory_child(size: int, iterations: int) -> None:
    content_img, style_img = sample_pictures()
    content_img = widescreen(content_img)
    start = time.perf_counter()
    stylize(content_img, style_img, backbone=BACKBONE, size=size, iterations=iterations,
            scales=1, device="cpu")
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"size": size, "peak_mb": peak_kb / 1024,
                      "seconds": time.perf_counter() - start}))


def memory_table(sizes, iterations):
    print(f"\nPeak resident memory of a fresh process, {BACKBONE}, {iterations} evaluation(s) "
          "at full size (tiles of 512 px above 1 megapixel)")
    print(f"{'size':>5} {'pixels':>13} {'peak MB':>8} {'s':>7}")
    for size in sizes:
        out = subprocess.run([sys.executable, __file__, "--memory-child", str(size),
                              "--memory-iterations", str(iterations)],
                             capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        w, h = fitted_size(widescreen(Image.new("RGB", (512, 512))).size, size)
        print(f"{size:>5} {f'{w}x{h}':>13} {row['peak_mb']:>8.0f} {row['seconds']:>7.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[256, 512])
    parser.add_argument("--reference-iterations", type=int, default=300,
                        help="the tutorial's num_steps (default: 300)")
    parser.add_argument("--iterations", type=int, default=300,
                        help="ganvas's --iterations (default: 300)")
    parser.add_argument("--memory-sizes", type=int, nargs="*", default=[1024, 2048, 3840])
    parser.add_argument("--memory-iterations", type=int, default=1)
    parser.add_argument("--no-memory", dest="memory", action="store_false")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.memory_iterations)
        return
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU "
          f"cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.sizes:
        speed_table(args.sizes, args.reference_iterations, args.iterations)
    if args.memory and args.memory_sizes:
        memory_table(args.memory_sizes, args.memory_iterations)


if __name__ == "__main__":
    main()
