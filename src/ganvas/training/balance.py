"""Keeping the two players even: the lesson's discriminator skipping, and an adaptive form.

The lesson's remedy for a discriminator that wins too fast is to skip its update while its
loss is below a threshold. The adaptive form watches D's accuracy instead (how often it
tells real from fake correctly) and keeps it inside a band: above the band D pauses, below
it the generator pauses so D can catch up.
"""

from __future__ import annotations

import torch


class BalanceGate:
    """Decides, step by step, which of the two networks updates.

    Args:
        skip_below: skip D's update while its loss is below this (None: never).
        accuracy_band: ``(low, high)`` target for D's smoothed accuracy (None: off).
    """

    SMOOTHING = 0.1  # weight of the newest step in the running accuracy

    def __init__(self, skip_below: float | None = None,
                 accuracy_band: tuple[float, float] | None = None):
        self.skip_below = skip_below
        self.accuracy_band = accuracy_band
        self.accuracy = 0.5  # running estimate; 0.5 = chance

    def update_discriminator(self, loss_d: torch.Tensor, accuracy: torch.Tensor) -> bool:
        if self.accuracy_band is not None:
            self.accuracy += self.SMOOTHING * (float(accuracy) - self.accuracy)
            if self.accuracy > self.accuracy_band[1]:
                return False
        return self.skip_below is None or float(loss_d) >= self.skip_below

    def update_generator(self) -> bool:
        return self.accuracy_band is None or self.accuracy >= self.accuracy_band[0]

    def state_dict(self) -> dict:
        return {"accuracy": self.accuracy, "skip_below": self.skip_below,
                "accuracy_band": list(self.accuracy_band) if self.accuracy_band else None}

    def load_state_dict(self, state: dict) -> None:
        self.accuracy = float(state["accuracy"])
        self.skip_below = state.get("skip_below", self.skip_below)
        band = state.get("accuracy_band")
        self.accuracy_band = tuple(band) if band else self.accuracy_band
