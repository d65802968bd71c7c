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

    @property
    def active(self) -> bool:
        """Whether it may hold a network back at all."""
        return self.skip_below is not None or self.accuracy_band is not None

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
        accuracy = float(state["accuracy"])
        skip = state.get("skip_below", self.skip_below)
        band = state.get("accuracy_band")
        if not 0.0 <= accuracy <= 1.0:
            raise ValueError(f"balance accuracy {accuracy}")
        if skip is not None and (isinstance(skip, bool) or not isinstance(skip, (int, float))
                                 or not skip > 0):
            raise ValueError(f"balance skip_below {skip!r:.30}")
        if band is not None:
            if (not isinstance(band, (list, tuple)) or len(band) != 2
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                               for v in band) or not 0 <= band[0] < band[1] <= 1):
                raise ValueError(f"balance accuracy_band {band!r:.40}")
            band = (float(band[0]), float(band[1]))
        self.accuracy, self.skip_below = accuracy, skip
        self.accuracy_band = band if band is not None else self.accuracy_band
