"""The live health monitor: measures diversity each tick, diagnoses, advises, and with
--auto-balance applies its own advice."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ganvas.rng import HEALTH_PROBE, HEALTH_REFERENCE, numpy_stream, stream
from ganvas.training.callbacks import Callback
from ganvas.training.health import diversity
from ganvas.training.health.rules import diagnose

if TYPE_CHECKING:
    from ganvas.training.trainer import Trainer

REFERENCE_IMAGES = 256
PROBE_SAMPLES = 128
HISTORY = 32  # ticks kept for the rules
COOLDOWN = 10  # ticks before the same finding is reported (or acted on) again
LR_FLOOR = 1e-6


class HealthMonitor(Callback):
    """Watches every tick for mode collapse, a dominating network and oscillation.

    Each finding is printed as one sentence with a remedy and recorded in metrics.jsonl as an
    event. Divergence (NaN/inf) is handled by the trainer's rollback, which the monitor's
    events sit beside.
    """

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self.last_reported: dict[str, int] = {}  # finding kind -> tick index
        self.ticks = 0
        self.real: torch.Tensor | None = None
        self.real_spread: dict[int, tuple[float, float]] = {}  # feature size -> spread
        self.probe: torch.Tensor | None = None

    def on_train_start(self, trainer: Trainer) -> None:
        c = trainer.config
        images = trainer.data.images
        pick = numpy_stream(c.seed, HEALTH_REFERENCE).choice(
            len(images), size=min(REFERENCE_IMAGES, len(images)), replace=False)
        real = torch.from_numpy(np.asarray(images[np.sort(pick)], dtype=np.float32))
        self.real = real / 127.5 - 1
        self.probe = torch.randn(PROBE_SAMPLES, c.latent_dim,
                                 generator=stream(c.seed, HEALTH_PROBE))

    def spread_of_reals(self, size: int) -> tuple[float, float]:
        """The reals' spread in the feature space of ``size`` pixels, computed once."""
        if size not in self.real_spread:
            self.real_spread[size] = diversity.spread(diversity.features(self.real, size))
        return self.real_spread[size]

    def on_tick(self, trainer: Trainer, record: dict[str, Any]) -> None:
        # The raw generator, not the average: collapse shows there first. A growing model
        # is compared at the resolution it trains at: finer detail is not its job yet.
        generated = trainer.render(self.probe, network=trainer.generator)
        if torch.isfinite(generated).all() and len(self.probe) > 1:
            size = min(diversity.FEATURE_SIZE, trainer.point.resolution)
            ratio, duplicates = diversity.compare(generated, *self.spread_of_reals(size), size)
            record["Health/diversity"] = round(ratio, 4)
            record["Health/duplicates"] = round(duplicates, 4)
        self.ticks += 1
        self.history = (self.history + [dict(record)])[-HISTORY:]
        findings = diagnose(self.history, probabilistic=trainer.loss.probabilistic,
                            warmup=trainer.config.health_warmup, loss_name=trainer.loss.name)
        for finding in findings:
            last = self.last_reported.get(finding.kind)
            if last is not None and self.ticks - last < COOLDOWN:
                continue
            self.last_reported[finding.kind] = self.ticks
            trainer.log_event(finding.kind, finding.message)
            if trainer.config.auto_balance:
                self._apply(trainer, finding.kind, finding.changes)

    def _apply(self, trainer: Trainer, kind: str, changes: dict[str, Any]) -> None:
        lr_g, lr_d = trainer.learning_rates
        done = []
        if "lr_g" in changes:
            new = max(changes["lr_g"], LR_FLOOR)
            trainer.set_learning_rates(g=new)
            done.append(f"--lr-g {lr_g:.2g} -> {new:.2g}")
        if "lr_d" in changes:
            new = max(changes["lr_d"], LR_FLOOR)
            trainer.set_learning_rates(d=new)
            done.append(f"--lr-d {lr_d:.2g} -> {new:.2g}")
        if "d_skip_below" in changes and trainer.gate.skip_below is None:
            trainer.gate.skip_below = changes["d_skip_below"]
            done.append(f"--d-skip-below {changes['d_skip_below']}")
        if done:
            # The new settings need time to act: judge afresh after they have had it.
            self.history.clear()
            trainer.log_event("auto_balance", f"auto-balance ({kind}): {', '.join(done)}.",
                              cause=kind, changes=changes)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "last_reported": self.last_reported,
                "ticks": self.ticks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what is sound; a damaged history only means judging afresh."""
        history = state.get("history", [])
        reported = state.get("last_reported", {})
        ticks = state.get("ticks", 0)
        self.history = ([r for r in history if isinstance(r, dict)][-HISTORY:]
                        if isinstance(history, list) else [])
        self.last_reported = ({k: v for k, v in reported.items() if isinstance(k, str)
                               and isinstance(v, int) and not isinstance(v, bool)}
                              if isinstance(reported, dict) else {})
        self.ticks = ticks if isinstance(ticks, int) and not isinstance(ticks, bool) else 0
