"""The live health monitor: measures the samples each tick (diversity, fidelity, blur,
grain, checkerboard) and the discriminator's memory of its training set, diagnoses,
advises, and with --auto-balance applies its own advice."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ganvas.errors import GanvasError
from ganvas.health import diversity
from ganvas.health.pictures import FixedFeatures, RealReference, to_size
from ganvas.health.rules import HISTORY, RunMemory, diagnose
from ganvas.rng import HEALTH_MEMORY, HEALTH_PROBE, HEALTH_REFERENCE, numpy_stream, stream
from ganvas.training.callbacks import Callback

if TYPE_CHECKING:
    from ganvas.training.callbacks import RunView as Trainer

REFERENCE_IMAGES = 256
PROBE_SAMPLES = 128
MEMORY_IMAGES = 128  # held-out (and as many training) images D scores each tick ...
MEMORY_IMAGES_LARGE = 32  # ... above 64 px, where each costs more
COOLDOWN = 10  # ticks before the same finding is reported (or acted on) again


class HealthMonitor(Callback):
    """Watches every tick for mode collapse, a dominating network and oscillation.

    Each finding is printed as one sentence with a remedy and recorded in metrics.jsonl as an
    event. Divergence (NaN/inf) is handled by the trainer's rollback, which the monitor's
    events sit beside. With --auto-balance it keeps the state of the best samples so far, to
    return to it when quality gets worse.
    """

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self.last_reported: dict[str, int] = {}  # finding kind -> tick index
        self.ticks = 0
        self.memory = RunMemory()
        self.best_state: dict[str, Any] | None = None  # --auto-balance's way back
        self.real: torch.Tensor | None = None
        # feature size (and, per class, (size, class)) -> the reals' spread
        self.real_spread: dict[Any, tuple[float, float] | None] = {}
        self.real_classes: torch.Tensor | None = None
        self.references: dict[int, RealReference] = {}  # resolution -> picture reference
        self.features = FixedFeatures()
        self.probe: torch.Tensor | None = None
        self.trained: torch.Tensor | None = None  # training images D is checked on
        self.unseen: torch.Tensor | None = None  # held-out images, never trained on
        # A conditional run: the classes of those, and of the probe's samples; D scores
        # each image as the class it is.
        self.trained_c = self.unseen_c = self.probe_c = None
        self.context: dict[str, Any] = {}

    def on_train_start(self, trainer: Trainer) -> None:
        c = trainer.config
        images = trainer.data.images
        pick = numpy_stream(c.seed, HEALTH_REFERENCE).choice(
            len(images), size=min(REFERENCE_IMAGES, len(images)), replace=False)
        self.real = self._images(images, pick)
        # a conditional run: the class of each reference picture (None: unconditional)
        self.real_classes = (None if trainer.data.labels is None
                             else torch.from_numpy(trainer.data.labels[np.sort(pick)]))
        self.probe = torch.randn(PROBE_SAMPLES, c.latent_dim,
                                 generator=stream(c.seed, HEALTH_PROBE))
        self.probe_c = trainer.labels and trainer.labels.typical(PROBE_SAMPLES)
        held_out, train = trainer.held_out, trainer.train_indices
        self.context = {"train_images": len(train), "held_out": len(held_out)}
        if len(held_out):
            count = min(len(held_out), MEMORY_IMAGES if c.resolution <= 64
                        else MEMORY_IMAGES_LARGE)
            chooser = numpy_stream(c.seed, HEALTH_MEMORY)
            unseen = np.sort(chooser.choice(held_out, count, replace=False))
            trained = np.sort(chooser.choice(train, min(count, len(train)), replace=False))
            self.unseen, self.trained = self._images(images, unseen), self._images(images, trained)
            if trainer.labels is not None:
                self.unseen_c = trainer.labels.of_pictures(unseen)
                self.trained_c = trainer.labels.of_pictures(trained)

    @staticmethod
    def _images(images: np.ndarray, pick: np.ndarray) -> torch.Tensor:
        chosen = torch.from_numpy(np.asarray(images[np.sort(pick)], dtype=np.float32))
        return chosen / 127.5 - 1

    def reference(self, resolution: int) -> RealReference:
        """The reals' picture statistics at ``resolution`` (a growing model's current one)."""
        if resolution not in self.references:
            self.references[resolution] = RealReference(
                to_size(self.real, resolution), resolution, self.features)
        return self.references[resolution]

    def spread_of_reals(self, size: int) -> tuple[float, float]:
        """The reals' spread in the feature space of ``size`` pixels, computed once."""
        if size not in self.real_spread:
            self.real_spread[size] = diversity.spread(diversity.features(self.real, size))
        return self.real_spread[size]

    def on_tick(self, trainer: Trainer, record: dict[str, Any]) -> None:
        # The raw generator, not the average: collapse shows there first. A growing model
        # is compared at the resolution it trains at: finer detail is not its job yet.
        generated = trainer.render(self.probe, network=trainer.generator, labels=self.probe_c)
        if torch.isfinite(generated).all() and len(self.probe) > 1:
            size = min(diversity.FEATURE_SIZE, trainer.point.resolution)
            ratio, duplicates = (diversity.compare(generated, *self.spread_of_reals(size), size)
                                 if self.probe_c is None else
                                 self._diversity_per_class(generated, size))
            record["Health/diversity"] = round(ratio, 4)
            record["Health/duplicates"] = round(duplicates, 4)
            resolution = trainer.point.resolution
            signals = self.reference(resolution).compare(to_size(generated, resolution))
            record.update({k: round(v, 5) for k, v in signals.items()})
            if self.unseen is not None:
                record.update(self._memorisation(trainer, generated))
        self.ticks += 1
        self.history = (self.history + [dict(record)])[-HISTORY:]
        previous_best = self.memory.best_step
        self.memory.update(record, trainer.config.health_warmup)
        if (trainer.config.auto_balance and self.memory.best_step != previous_best
                and not trainer.distributed):
            self.best_state = trainer.snapshot()
        self.context["augment"] = trainer.config.augment  # auto-balance may turn ADA on
        findings = diagnose(self.history, probabilistic=trainer.loss.probabilistic,
                            warmup=trainer.config.health_warmup, loss_name=trainer.loss.name,
                            memory=self.memory, context=self.context)
        for finding in findings:
            last = self.last_reported.get(finding.kind)
            if last is not None and self.ticks - last < COOLDOWN:
                continue
            self.last_reported[finding.kind] = self.ticks
            trainer.log_event(finding.kind, finding.message)
            if trainer.config.auto_balance:
                self._apply(trainer, finding.kind, finding.changes)

    def _diversity_per_class(self, generated: torch.Tensor, size: int) -> tuple[float, float]:
        """A conditional run's diversity: each class's samples against that class's
        pictures (a model that draws one picture per class is collapsed, however different
        its classes are), averaged over the classes, weighted by their samples."""
        probe_classes = self.probe_c.argmax(1)
        ratios, duplicates, weights = [], [], []
        for k in probe_classes.unique().tolist():
            mine = generated[probe_classes == k]
            key = (size, k)
            if key not in self.real_spread:
                reals = self.real[self.real_classes == k]
                self.real_spread[key] = (diversity.spread(diversity.features(reals, size))
                                         if len(reals) >= 2 else None)
            if len(mine) < 2 or self.real_spread[key] is None:
                continue
            ratio, twins = diversity.compare(mine, *self.real_spread[key], size)
            ratios.append(ratio)
            duplicates.append(twins)
            weights.append(len(mine))
        if not weights:  # too few pictures per class to tell: the whole set
            return diversity.compare(generated, *self.spread_of_reals(size), size)
        total = sum(weights)
        return (sum(r * w for r, w in zip(ratios, weights)) / total,
                sum(d * w for d, w in zip(duplicates, weights)) / total)

    def _memorisation(self, trainer: Trainer, generated: torch.Tensor) -> dict[str, float]:
        """How D scores training images, held-out ones and samples. ``Health/memorisation``
        is where the held-out images fall between the two others: 0 where the training
        images are, 1 where the samples are (a discriminator that recognises its training set
        rather than what such pictures look like)."""
        trained = trainer.score(self.trained, self.trained_c)
        unseen = trainer.score(self.unseen, self.unseen_c)
        n = len(self.unseen)
        fake = trainer.score(generated[:n], None if self.probe_c is None else self.probe_c[:n])
        s_train, s_unseen, s_fake = (float(t.mean()) for t in (trained, unseen, fake))
        margin = s_train - s_fake
        # A D that barely tells reals from samples has nothing to memorise with; below half a
        # standard deviation of its scores the ratio would be noise.
        spread = float(torch.cat([trained, fake]).std())
        gap = (s_train - s_unseen) / margin if margin > 0.5 * spread and margin > 0 else 0.0
        return {"Health/memorisation": round(min(max(gap, -1.0), 2.0), 4),
                "Health/d_train": round(s_train, 4), "Health/d_heldout": round(s_unseen, 4),
                "Health/d_fake": round(s_fake, 4)}

    def _apply(self, trainer: Trainer, kind: str, changes: dict[str, Any]) -> None:
        done = []
        if kind == "quality_worse" and self.best_state is not None:
            try:
                trainer.restore_snapshot(self.best_state)
                done.append(f"returned to the weights of step {self.memory.best_step}")
            except GanvasError:  # a damaged checkpoint's copy: lowering the rates still helps
                self.best_state = None
        done += trainer.apply_changes(changes)
        if done:
            # The new settings need time to act: judge afresh after they have had it.
            self.history.clear()
            trainer.log_event("auto_balance", f"auto-balance ({kind}): {', '.join(done)}.",
                              cause=kind, changes=changes)

    def state_dict(self) -> dict[str, Any]:
        state = {"history": self.history, "last_reported": self.last_reported,
                 "ticks": self.ticks, "memory": self.memory.state_dict()}
        if self.best_state is not None:
            state["best_state"] = self.best_state
        return state

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
        self.memory = RunMemory.from_state(state.get("memory"))
        best = state.get("best_state")
        parts = ("generator", "discriminator", "opt_g", "opt_d")
        self.best_state = (best if isinstance(best, dict)
                           and all(isinstance(best.get(k), dict) for k in parts) else None)
