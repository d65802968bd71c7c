"""Neural style transfer by optimisation (Gatys et al.), coarse to fine.

The picture is first optimised small, then enlarged and refined, so most iterations run
where they are cheap and the large structures of the style appear at the scale of the
picture rather than of the network's receptive field. Large pictures are processed in
tiles (:mod:`ganvas.style.tiling`), so memory stays bounded at print sizes.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from ganvas.errors import GanvasError
from ganvas.style.backbones import Backbone, load_backbone
from ganvas.style.colors import (
    COLOR_MODES,
    gray_like,
    luminance,
    match_color_statistics,
    with_chroma_of,
)
from ganvas.style.images import (
    MAX_PIXELS,
    MIN_SIDE,
    fitted_size,
    open_picture,
    resized,
    save_picture,
    to_image,
    to_tensor,
)
from ganvas.style.losses import blend_grams, gram_matrix
from ganvas.style.objective import Evaluation, LossWeights, StyleObjective, TileSettings
from ganvas.style.tiling import plan_tiles, tiled_features, tiled_grams
from ganvas.utils.checks import whole_number
from ganvas.utils.device import resolve_device

PictureSource = str | os.PathLike | Image.Image

MIN_SCALE_SIDE = 128  # the coarsest scale's longest side: relu5_1 still sees 8x8 positions
MAX_SCALES = 4
TILE_ABOVE = 1024 * 1024  # pixels; larger pictures are tiled unless told otherwise
DEFAULT_TILE = 512
LBFGS_MEMORY = 1 << 30  # bytes of L-BFGS history we allow; it holds 2 vectors per step
ADAM_LR = 0.02  # in [0, 1] pixel units: a step moves a pixel by about 5 levels of 255
INIT_NOISE = "noise"
INIT_CONTENT = "content"


@dataclass
class StyleOptions:
    """Every setting of a style transfer; ``None`` means the backbone's tuned default."""

    size: int = 512
    backbone: str = "vgg19"
    weights: str | None = None
    pooling: str = "max"
    content_layers: tuple[str, ...] | None = None
    style_layers: tuple[str, ...] | None = None
    style_layer_weights: tuple[float, ...] | None = None
    content_weight: float | None = None
    style_weight: float | None = None
    tv_weight: float | None = None
    tv_kind: str = "l2"
    init: str = INIT_CONTENT
    optimizer: str = "lbfgs"
    iterations: int = 500
    learning_rate: float = ADAM_LR
    seed: int = 0
    style_blend: tuple[float, ...] | None = None
    style_scale: float = 1.0
    preserve_colors: str | None = None
    scales: int | None = None
    tile_size: int | None = None
    tile_halo: int = 64
    save_every: int = 0
    device: str = "auto"
    max_pixels: int = MAX_PIXELS

    def check(self, n_styles: int) -> None:
        whole_number(self.size, "--size", 16, 8192)
        whole_number(self.iterations, "--iterations", 1, 1_000_000)
        whole_number(self.seed, "--seed", 0, 2**63 - 1)
        whole_number(self.save_every, "--save-every", 0, 1_000_000)
        whole_number(self.tile_halo, "--tile-halo", 0, 4096)
        if self.scales is not None:
            whole_number(self.scales, "--scales", 1, 8)
        if self.tile_size is not None:
            whole_number(self.tile_size, "--tile-size", 0, 16384)
            if 0 < self.tile_size < 64:
                raise GanvasError("--tile-size must be 0 (never tile) or at least 64")
        for name in ("content_weight", "style_weight", "tv_weight"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise GanvasError(f"--{name.replace('_', '-')} must be a finite number >= 0, "
                                  f"got {value}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise GanvasError(f"--learning-rate must be > 0, got {self.learning_rate}")
        if not (math.isfinite(self.style_scale) and 0.05 <= self.style_scale <= 8):
            raise GanvasError(f"--style-scale must be between 0.05 and 8, got {self.style_scale}")
        if self.optimizer not in ("lbfgs", "adam"):
            raise GanvasError(f"--optimizer {self.optimizer!r}: use lbfgs or adam")
        if self.tv_kind not in ("l1", "l2"):
            raise GanvasError(f"--tv-kind {self.tv_kind!r}: use l1 or l2")
        if self.preserve_colors is not None and self.preserve_colors not in COLOR_MODES:
            raise GanvasError(f"--preserve-colors {self.preserve_colors!r}: use "
                              f"{' or '.join(COLOR_MODES)}")
        if self.style_blend is not None:
            if len(self.style_blend) != n_styles:
                raise GanvasError(f"--style-blend has {len(self.style_blend)} weight(s) for "
                                  f"{n_styles} style image(s); give one weight per image")
            if any(not math.isfinite(w) or w < 0 for w in self.style_blend) or not any(
                    w > 0 for w in self.style_blend):
                raise GanvasError("--style-blend weights must be >= 0 and not all 0")
        if self.style_layer_weights is not None and self.style_layers is not None and len(
                self.style_layer_weights) != len(self.style_layers):
            raise GanvasError(f"--style-layer-weights has {len(self.style_layer_weights)} "
                              f"value(s) for {len(self.style_layers)} --style-layers")


@dataclass
class Progress:
    """What a progress callback sees after each evaluation of the loss."""

    scale: int  # 0 = coarsest
    scales: int
    size: tuple[int, int]  # (width, height) of this scale
    evaluation: int  # counted over all scales
    total: int
    losses: Evaluation
    picture: torch.Tensor = field(repr=False)


ProgressCallback = Callable[[Progress], None]


def stylize(content: PictureSource, style: PictureSource | Sequence[PictureSource], *,
            callback: ProgressCallback | None = None, progress: bool = False,
            save_every_path: str | os.PathLike | None = None,
            interrupted: Callable[[Image.Image], None] | None = None,
            network: Backbone | None = None, **options: Any) -> Image.Image:
    """Redraw ``content`` in the style of ``style`` (one picture or several to blend).

    Pictures are file paths or PIL images. ``options`` are the fields of
    :class:`StyleOptions` (``size``, ``style_weight``, ``preserve_colors``, ...). Returns
    the result as an RGB PIL image whose longest side is ``size``. On Ctrl-C,
    ``interrupted`` (if given) receives the picture as it was at the last evaluation.
    ``network``: the backbone, already loaded (for many pictures in a row, as video frames).
    """
    known = {f.name for f in fields(StyleOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise GanvasError(f"stylize: unknown option(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(known))}")
    opts = StyleOptions(**options)
    styles = [style] if isinstance(style, (str, os.PathLike, Image.Image)) else list(style)
    if not styles:
        raise GanvasError("give at least one style image")
    opts.check(len(styles))
    device = resolve_device(opts.device)
    backbone = network if network is not None else load_backbone(
        opts.backbone, opts.weights, pooling=opts.pooling, device=device)
    plan = _Plan.make(backbone, opts)
    content_img = open_picture(content, "content image", opts.max_pixels, opts.size)
    style_imgs = [open_picture(s, "style image", opts.max_pixels,
                               round(opts.size * opts.style_scale)) for s in styles]
    init_img = None
    if opts.init not in (INIT_CONTENT, INIT_NOISE):
        init_img = open_picture(opts.init, "--init picture", opts.max_pixels, opts.size)

    bar = None
    if progress:
        from ganvas.utils.progress import progress_bar

        bar = progress_bar(total=opts.iterations, unit="it", desc="stylize")

    latest: list[Progress] = []

    def report(state: Progress) -> None:
        latest[:] = [state]
        if bar is not None:
            width, height = state.size
            bar.set_description(f"scale {state.scale + 1}/{state.scales} {width}x{height}")
            bar.set_postfix_str(f"loss {state.losses.loss:.4g} content "
                                f"{state.losses.content:.3g} style {state.losses.style:.3g}",
                                refresh=False)
            bar.update(1)
        if opts.save_every and save_every_path and state.evaluation % opts.save_every == 0:
            path = Path(save_every_path)
            picture = _finish(state.picture.detach().clamp(0, 1), content_img, opts)
            save_picture(picture, path.with_name(f"{path.stem}.{state.evaluation:05d}"
                                                 f"{path.suffix}"))
        if callback is not None:
            callback(state)

    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(opts.seed)
            result = _run(backbone, plan, opts, content_img, style_imgs, init_img, device,
                          report)
    except KeyboardInterrupt:
        if interrupted is not None and latest:
            interrupted(_finish(latest[-1].picture.detach().clamp(0, 1), content_img, opts))
        raise
    finally:
        if bar is not None:
            bar.close()
    return _finish(result, content_img, opts)


@dataclass
class _Plan:
    """Layers and weights after filling in the backbone's defaults."""

    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    layer_weights: dict[str, float]
    weights: LossWeights

    @classmethod
    def make(cls, backbone: Backbone, opts: StyleOptions) -> _Plan:
        d = backbone.defaults
        content_layers = backbone.check_layers(opts.content_layers or d.content_layers,
                                               "--content-layers")
        style_layers = backbone.check_layers(opts.style_layers or d.style_layers,
                                             "--style-layers")
        if opts.style_layer_weights is not None:
            per_layer = tuple(opts.style_layer_weights)
        elif opts.style_layers is None:
            per_layer = tuple(d.style_layer_weights)
        else:
            per_layer = (1.0,) * len(style_layers)
        if len(per_layer) != len(style_layers):
            raise GanvasError(f"--style-layer-weights has {len(per_layer)} value(s) for "
                              f"{len(style_layers)} style layer(s)")
        weights = LossWeights(
            d.content_weight if opts.content_weight is None else opts.content_weight,
            d.style_weight if opts.style_weight is None else opts.style_weight,
            d.tv_weight if opts.tv_weight is None else opts.tv_weight,
            opts.tv_kind)
        return cls(content_layers, style_layers, dict(zip(style_layers, per_layer)), weights)


def scale_sizes(size: tuple[int, int], scales: int | None) -> list[tuple[int, int]]:
    """``(width, height)`` of each scale, coarsest first, the last one ``size``.

    By default each scale halves the previous one down to a longest side of
    :data:`MIN_SCALE_SIDE`, at most :data:`MAX_SCALES` scales.
    """
    longest = max(size)
    if scales is None:
        scales = 1
        while scales < MAX_SCALES and longest / 2**scales >= MIN_SCALE_SIDE:
            scales += 1
    out = []
    for k in range(scales - 1, 0, -1):
        smaller = fitted_size(size, round(longest / 2**k))
        if min(smaller) >= MIN_SIDE:  # a thin panorama skips scales the network can't see
            out.append(smaller)
    out.append(size)
    return out


def iteration_split(total: int, scales: int) -> list[int]:
    """Evaluations per scale, coarsest first: each coarser scale gets twice as many.

    A coarse evaluation costs a quarter of the next finer one, so the finest scale still
    takes most of the time while starting close to a good solution.
    """
    shares = [2.0 ** (scales - 1 - k) for k in range(scales)]
    counts = [int(total * share / sum(shares)) for share in shares]
    counts[-1] += total - sum(counts)
    if counts[-1] < 1:  # fewer iterations than scales: the finest scale needs one
        counts[counts.index(max(counts))] -= 1
        counts[-1] += 1
    return counts


def _tiling(backbone: Backbone, layers: Sequence[str], pixels: int, opts: StyleOptions
            ) -> TileSettings | None:
    size = opts.tile_size
    if size == 0 or (size is None and pixels <= TILE_ABOVE):
        return None
    return TileSettings.for_layers(backbone, layers, size or DEFAULT_TILE, opts.tile_halo,
                                   opts.seed)


def _targets(backbone: Backbone, plan: _Plan, content: torch.Tensor,
             styles: Sequence[torch.Tensor], blend: Sequence[float], opts: StyleOptions
             ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    content_layers, style_layers = list(plan.content_layers), list(plan.style_layers)
    tiling = _tiling(backbone, [*content_layers, *style_layers], content[0, 0].numel(), opts)
    with torch.no_grad():
        if tiling is None:
            feats = backbone(backbone.preprocess(content), content_layers)
            content_targets = {n: feats[n].detach() for n in content_layers}
        else:
            tiles = plan_tiles(*content.shape[-2:], tiling.size, tiling.halo, tiling.align)
            content_targets = tiled_features(backbone, content, content_layers, tiles,
                                             tiling.factors)
        per_style = []
        for style in styles:
            tiling = _tiling(backbone, style_layers, style[0, 0].numel(), opts)
            if tiling is None:
                feats = backbone(backbone.preprocess(style), style_layers)
                per_style.append({n: gram_matrix(feats[n]) for n in style_layers})
            else:
                tiles = plan_tiles(*style.shape[-2:], tiling.size, tiling.halo, tiling.align)
                per_style.append(tiled_grams(backbone, style, style_layers, tiles,
                                             tiling.factors)[0])
    return content_targets, blend_grams(per_style, blend)


def _prepare_styles(content: torch.Tensor, styles: list[Image.Image], size: tuple[int, int],
                    opts: StyleOptions, device: torch.device) -> list[torch.Tensor]:
    longest = max(16, round(max(size) * opts.style_scale))
    out = []
    for img in styles:
        style = to_tensor(resized(img, fitted_size(img.size, longest))).to(device)
        if opts.preserve_colors == "luminance":
            style = gray_like(luminance(style), content)
        elif opts.preserve_colors == "histogram":
            style = match_color_statistics(style, content)
        out.append(style)
    return out


def _run(backbone: Backbone, plan: _Plan, opts: StyleOptions, content_img: Image.Image,
         style_imgs: list[Image.Image], init_img: Image.Image | None, device: torch.device,
         report: Callable[[Progress], None]) -> torch.Tensor:
    final = fitted_size(content_img.size, opts.size)
    if min(final) < MIN_SIDE:
        raise GanvasError(f"the content image is too thin for --size {opts.size} "
                          f"({final[0]}x{final[1]} pixels); use a larger --size or crop it")
    for img in style_imgs:
        shape = fitted_size(img.size, round(opts.size * opts.style_scale))
        if min(shape) < MIN_SIDE:
            raise GanvasError(f"a style image ({img.size[0]}x{img.size[1]}) is too thin at "
                              f"--size {opts.size} --style-scale {opts.style_scale} "
                              f"({shape[0]}x{shape[1]}); use a larger size or crop it")
    sizes = scale_sizes(final, opts.scales)
    budget = iteration_split(opts.iterations, len(sizes))
    blend = opts.style_blend or (1.0,) * len(style_imgs)
    picture: torch.Tensor | None = None
    done = 0
    for k, (size, evaluations) in enumerate(zip(sizes, budget)):
        if evaluations == 0:
            continue
        content = to_tensor(resized(content_img, size)).to(device)
        if opts.preserve_colors == "luminance":
            content = luminance(content).expand(-1, 3, -1, -1).contiguous()
        styles = _prepare_styles(content, style_imgs, size, opts, device)
        content_targets, style_targets = _targets(backbone, plan, content, styles, blend, opts)
        del styles
        tiling = _tiling(backbone, list(dict.fromkeys([*plan.content_layers,
                                                       *plan.style_layers])),
                         size[0] * size[1], opts)
        objective = StyleObjective(backbone, content_targets, style_targets, plan.layer_weights,
                                   plan.weights, tiling)
        picture = _start(picture, content, init_img, size, opts, device)

        def step_report(losses: Evaluation, picture: torch.Tensor, k: int = k,
                        size: tuple[int, int] = size) -> None:
            nonlocal done
            done += 1
            report(Progress(k, len(sizes), size, done, opts.iterations, losses, picture))

        picture = _optimize(picture, objective, evaluations, opts, step_report)
    assert picture is not None
    return picture.detach().clamp(0, 1)


def _start(previous: torch.Tensor | None, content: torch.Tensor, init_img: Image.Image | None,
           size: tuple[int, int], opts: StyleOptions, device: torch.device) -> torch.Tensor:
    width, height = size
    if previous is not None:
        return F.interpolate(previous, size=(height, width), mode="bicubic",
                             align_corners=False).clamp(0, 1)
    if opts.init == INIT_CONTENT:
        return content.clone()
    if opts.init == INIT_NOISE:
        return torch.rand(1, 3, height, width).to(device)
    assert init_img is not None
    start = to_tensor(resized(init_img, size)).to(device)
    if opts.preserve_colors == "luminance":
        start = luminance(start).expand(-1, 3, -1, -1).contiguous()
    return start


def _optimize(picture: torch.Tensor, objective: StyleObjective, evaluations: int,
              opts: StyleOptions, report: Callable[[Evaluation, torch.Tensor], None]
              ) -> torch.Tensor:
    picture = picture.detach().clone().contiguous().requires_grad_(True)

    def evaluate() -> Evaluation:
        losses = objective(picture)
        if not math.isfinite(losses.loss):
            raise GanvasError("the loss became infinite or NaN; lower --style-weight (or "
                              "--learning-rate with --optimizer adam)")
        report(losses, picture)
        return losses

    if opts.optimizer == "adam":
        optimizer = torch.optim.Adam([picture], lr=opts.learning_rate)
        for _ in range(evaluations):
            evaluate()
            optimizer.step()
            with torch.no_grad():
                picture.clamp_(0, 1)
        return picture.detach()

    history = int(max(5, min(100, LBFGS_MEMORY // (2 * picture.numel() * 4))))
    optimizer = torch.optim.LBFGS([picture], lr=1.0, max_iter=evaluations, max_eval=evaluations,
                                  history_size=history, tolerance_grad=0.0,
                                  tolerance_change=0.0, line_search_fn=None)

    def closure() -> torch.Tensor:  # LBFGS reads the gradient the objective left in .grad
        return torch.tensor(evaluate().loss)

    optimizer.step(closure)
    return picture.detach()


def _finish(result: torch.Tensor, content_img: Image.Image, opts: StyleOptions) -> Image.Image:
    if opts.preserve_colors == "luminance":
        width, height = result.shape[-1], result.shape[-2]
        content = to_tensor(resized(content_img, (width, height))).to(result.device)
        result = with_chroma_of(result, content)
    return to_image(result.cpu())


def stylize_to_file(content: PictureSource, style: PictureSource | Sequence[PictureSource],
                    output: str | os.PathLike, **kwargs: Any) -> Path:
    """:func:`stylize`, then write the result atomically (the format follows the name)."""
    from ganvas.style.images import check_output_path

    check_output_path(output)

    def keep(picture: Image.Image) -> None:  # Ctrl-C: the work so far is not lost
        path = save_picture(picture, output)
        print(f"ganvas: interrupted; wrote the picture so far to {path}", file=sys.stderr)

    image = stylize(content, style, save_every_path=output, interrupted=keep, **kwargs)
    return save_picture(image, output)
