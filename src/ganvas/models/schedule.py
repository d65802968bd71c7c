"""A family's training schedule: a pure function of the number of images seen.

Everything that changes during a run (the resolution a progressive model trains at, its
fade-in, the batch size, a learning-rate multiplier) is read from ``schedule(images_seen)``,
so a run resumed anywhere (mid-fade included) continues exactly: the position is one number
that the checkpoint already holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SchedulePoint:
    """What one training step uses.

    Attributes:
        batch_size: images in this step's batch.
        resolution: the resolution the networks train at now.
        level: growth level for progressive families (0 = the 4 px stage; 2.4 = the third
            block, 16 px, fading in at 40 %); unused by others.
        alpha: fade-in of the newest block, 1 when nothing is fading.
        lr_scale: multiplier of both learning rates.
        until: images seen at which this point's batch size next changes (``inf``: never);
            lets a number of images be turned into a number of steps without iterating.
        phase: a short description for logs ("32 px, fading in 40 %").
    """

    batch_size: int
    resolution: int
    level: float = 0.0
    alpha: float = 1.0
    lr_scale: float = 1.0
    until: float = math.inf
    phase: str = ""

    def gauges(self) -> dict[str, float | str]:
        """What the metrics record of a growing schedule (nothing for a constant one)."""
        if not self.phase:
            return {}
        return {"phase": self.phase, "Schedule/resolution": self.resolution,
                "Schedule/alpha": round(self.alpha, 4), "Schedule/batch": self.batch_size}


class ConstantSchedule:
    """The same batch size and resolution throughout (every non-growing family)."""

    def __init__(self, resolution: int, batch_size: int):
        self.point = SchedulePoint(batch_size=batch_size, resolution=resolution)

    def __call__(self, images_seen: int) -> SchedulePoint:
        return self.point


def steps_for_images(schedule, images: int, start: int = 0) -> int:
    """Steps a run takes to see ``images`` images from ``start``, following the schedule."""
    steps, seen = 0, start
    while seen < images:
        point = schedule(seen)
        stop = min(point.until, images)
        count = max(1, math.ceil((stop - seen) / point.batch_size))
        steps += count
        seen += count * point.batch_size
    return steps
