"""Optical flow between video frames (OpenCV's DIS), warping, occlusions, warping error.

Conventions: a *backward* flow ``b`` of frame t says, for each pixel p of frame t, where it
was in frame t-1 (``p + b(p)``); warping the previous result with it gives "the previous
result, moved to where things are now". Pixels whose forward and backward flows do not
cancel out (Sundaram et al. 2010) are occluded or newly visible: they have no valid
previous value and are left out of the stabilisation and of the warping error.
"""

from __future__ import annotations

import numpy as np


def _cv2():
    try:
        import cv2
    except ImportError:
        from ganvas.errors import GanvasError

        raise GanvasError("video needs OpenCV's optical flow: pip install "
                          "opencv-python-headless") from None
    return cv2


class FlowEstimator:
    """DIS optical flow (Kroeger et al. 2016) at OpenCV's "medium" preset: fast on a CPU
    and good enough to tell where each pixel of the last frame went."""

    def __init__(self):
        cv2 = _cv2()
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self._cv2 = cv2

    def __call__(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Flow ``[H, W, 2]`` (dx, dy) from RGB frame ``source`` to ``target``: pixel p of
        ``source`` is at ``p + flow(p)`` in ``target``."""
        gray = self._cv2.COLOR_RGB2GRAY
        return self._dis.calc(self._cv2.cvtColor(source, gray),
                              self._cv2.cvtColor(target, gray), None)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` sampled at ``p + flow(p)`` for every pixel p (bilinear, edges repeated)."""
    cv2 = _cv2()
    h, w = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image, grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def valid_mask(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """``[H, W]`` float mask: 1 where frame t's pixel has a trustworthy match in frame t-1
    (the flows agree, and it does not come from outside the picture)."""
    h, w = backward.shape[:2]
    forward_there = warp(forward, backward)
    round_trip = backward + forward_there
    agree = (round_trip ** 2).sum(-1) <= 0.01 * ((backward ** 2).sum(-1)
                                                 + (forward_there ** 2).sum(-1)) + 0.5
    grid_x, grid_y = np.meshgrid(np.arange(w), np.arange(h))
    x, y = grid_x + backward[..., 0], grid_y + backward[..., 1]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    return (agree & inside).astype(np.float32)


def stabilised(painted: np.ndarray, previous_warped: np.ndarray, mask: np.ndarray,
               weight: float) -> np.ndarray:
    """The new result pulled towards the warped previous one where it is valid:
    ``(painted + w * previous) / (1 + w)`` there, ``painted`` elsewhere."""
    m = (weight * mask)[..., None]
    out = (painted.astype(np.float32) + m * previous_warped.astype(np.float32)) / (1 + m)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def warping_error(current: np.ndarray, previous_warped: np.ndarray, mask: np.ndarray
                  ) -> tuple[float, float]:
    """Sum of squared differences (pixel values in [0, 1], averaged over the channels) over
    the valid pixels, and their count: the flicker between two results that the motion
    does not explain (Lai et al. 2018)."""
    difference = (current.astype(np.float32) - previous_warped.astype(np.float32)) / 255
    per_pixel = (difference ** 2).mean(-1)
    return float((per_pixel * mask).sum()), float(mask.sum())
