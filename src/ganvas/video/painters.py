"""Frame painters for :func:`ganvas.video.stylise.stylise_video`, one per method."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from ganvas.style.backbones import load_backbone
from ganvas.style.images import to_image, to_tensor
from ganvas.style.transfer import StyleOptions, stylize
from ganvas.stylisers.apply import Painter
from ganvas.utils.device import resolve_device
from ganvas.video.stylise import FramePainter

FOLLOW_UP_SHARE = 0.4  # a frame that starts from the last result needs fewer iterations


def network_painter(paint: Painter) -> FramePainter:
    """A styliser's one forward pass per frame (its temporal steadiness comes from its
    training and from the stabilisation that follows)."""

    def frame_painter(frame: np.ndarray, warped: np.ndarray | None,
                      mask: np.ndarray | None) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(to_image(paint(to_tensor(Image.fromarray(frame)))))

    return frame_painter


def optimisation_painter(styles: Sequence[Any], options: dict[str, Any], *,
                         warm_start: bool = True) -> FramePainter:
    """Gatys et al.'s optimisation per frame, as ``ganvas stylize`` does it, started from the
    previous result warped to this frame (Ruder et al. 2016) where that warp is valid and
    from the frame elsewhere; the first frame gets every iteration and scale, the others
    a single scale and :data:`FOLLOW_UP_SHARE` of the iterations. Without ``warm_start``
    every frame is painted on its own, from scratch."""
    opts = StyleOptions(**{k: v for k, v in options.items() if k != "size"})
    opts.check(len(styles))
    backbone = load_backbone(opts.backbone, opts.weights, pooling=opts.pooling,
                             device=resolve_device(opts.device))
    follow_up = max(1, round(opts.iterations * FOLLOW_UP_SHARE))

    def frame_painter(frame: np.ndarray, warped: np.ndarray | None,
                      mask: np.ndarray | None) -> np.ndarray:
        picture = Image.fromarray(frame)
        here = {**options, "size": max(picture.size)}
        if warm_start and warped is not None and mask is not None:
            m = mask[..., None]
            start = (m * warped + (1 - m) * frame).round().astype(np.uint8)
            here.update(init=Image.fromarray(start), scales=1, iterations=follow_up)
        result = stylize(picture, list(styles), network=backbone, **here)
        return np.asarray(result.convert("RGB"))

    return frame_painter
