"""The training loop: for each step, a batch through the loss recipe's due phases, the
moving average, the clock (images seen); then the tick, where all housekeeping happens.

The :class:`Trainer` is handed ready-built pieces (:mod:`ganvas.training.session` builds
them from the config) and knows nothing about any family: what a generator hands its
discriminator and how the networks grow are the family's, the losses and their phases the
recipe's. One clock, the number of images seen, drives the schedule and every cadence.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ganvas import __version__
from ganvas.losses.recipe import StepInputs
from ganvas.models.export import save_generator
from ganvas.models.schedule import SchedulePoint
from ganvas.rng import batch_slice, per_sample
from ganvas.training import state as run_state
from ganvas.training.callbacks import console, remedies, rollback
from ganvas.training.callbacks.checkpoints import checkpoint_on_crash, save_checkpoint
from ganvas.training.callbacks.samples import growth_grid_name, save_samples
from ganvas.training.parts import RunParts
from ganvas.utils.signals import GracefulStop


@dataclass
class TrainResult:
    """Where a finished (or interrupted) run left its outputs."""

    run_dir: Path
    step: int
    checkpoint: Path
    samples: Path
    generator_dir: Path
    interrupted: bool = False
    diverged: bool = False  # stopped after --max-rollbacks; weights are the last good ones
    stop_reason: str | None = None  # a stop a callback asked for (--time, ...), not Ctrl-C


class Trainer(RunParts):
    """Runs one run's pieces (a :class:`RunParts` the session built) to its length."""

    def __init__(self, parts: RunParts):
        for field in dataclasses.fields(RunParts):
            setattr(self, field.name, getattr(parts, field.name))
        self.stop_reason: str | None = None
        self.rollback_reason: str | None = None
        self.diverged = False
        self.in_step = False  # a crash inside a step leaves a half-updated state
        self.networks_point: SchedulePoint | None = None  # what the networks were set to

    def fit(self) -> TrainResult:
        c = self.config
        console.announce(self, self.notes)
        if self.step == 0:
            remedies.check_settings(self)
        if self.good_checkpoint is None:  # something to roll back to if training diverges
            save_checkpoint(self)
        for callback in self.callbacks_here:
            callback.on_train_start(self)
        self.tick_images, self.tick_start = 0, time.perf_counter()
        self.bar = console.training_bar(self)
        with GracefulStop(self.log, patient=self.strategy.distributed) as self.signals, \
                self.bar, checkpoint_on_crash(self):
            while self.step < c.steps:
                point = self.schedule(self.images_seen)
                self.in_step = True
                self.train_step(point)
                self.step += 1
                self.images_seen += point.batch_size
                self.in_step = False
                self.tick_images += point.batch_size * c.n_critic
                self.bar.update(1)
                for callback in self.callbacks_here:
                    callback.on_step_end(self)
                if self.tick(point):
                    break
        result = self.finish(interrupted=self.step < c.steps)
        for callback in self.callbacks_here:
            callback.on_train_end(self, result)
        self.strategy.barrier()  # nobody leaves (and tears the group down) before rank 0 wrote
        return result

    def train_step(self, point: SchedulePoint) -> None:
        """One step: the networks follow the schedule, the recipe's due phases run in order
        (zero their gradients, accumulate, step what the recipe lets update), then EMA."""
        for network in (self.generator, self.discriminator):
            network.set_schedule(point)
        self.networks_point = point
        self.recipe.apply_schedule(point.lr_scale)
        strategy, rounds = self.strategy, self.config.grad_accum
        self.check_batch_split(point.batch_size)
        inputs = StepInputs(reals=self._reals, latents=self._latents, point=point,
                            step=self.step, images_seen=self.images_seen,
                            batch_size=point.batch_size // (strategy.world_size * rounds),
                            labels=self.labels.generated if self.labels else None)
        with batch_slice(strategy.rank, strategy.world_size):
            for phase in self.recipe.phases:
                if not phase.due(self.step):
                    continue
                for name in phase.optimizers:
                    self.recipe.optimizers[name].zero_grad(set_to_none=True)
                stepping: list[str] = []
                for _ in range(rounds):  # gradients add up over the rounds
                    for name in self.recipe.accumulate_gradients(phase, inputs):
                        if name not in stepping:
                            stepping.append(name)
                for name in stepping:
                    params = [p for group in self.recipe.optimizers[name].param_groups
                              for p in group["params"]]
                    if rounds > 1:  # the mean over the whole batch, as one round would give
                        for p in params:
                            if p.grad is not None:
                                p.grad.div_(rounds)
                    strategy.average_gradients(params)
                    self.recipe.step_optimizer(name)
        self.recipe.end_step()
        strategy.average_buffers([self.generator, self.discriminator])
        if self.ema is not None:  # the moving average of G that samples and exports use
            self.ema.update(self.generator, point.batch_size,
                            self.images_seen + point.batch_size)

    def tick(self, point: SchedulePoint) -> bool:
        """All housekeeping, each part when due: statistics, log record, health and the
        other callbacks, agreement between processes, samples, growth grids, checkpoints,
        rollback and stop requests. Returns whether to stop. Every process stops at the
        same step, whichever one was asked to."""
        c = self.config
        stopping = self.strategy.any(self.signals.received is not None
                                     or self.stop_reason is not None)
        # A stop between records keeps its partial statistics in the checkpoint instead, so
        # a resumed run records (and auto-balances) exactly where it would have.
        seconds = time.perf_counter() - self.tick_start
        if self._due(c.log_every, point) or self.step == c.steps:
            self.elapsed += seconds
            self.record(self.tick_images / max(seconds, 1e-9))
            self.tick_images, self.tick_start = 0, time.perf_counter()
            stopping = stopping or self.stop_reason is not None
        elif stopping:
            self.elapsed += seconds
        if self.rollback_reason is None:
            if self._due(c.sample_every, point):
                save_samples(self)
            if self.point.resolution != point.resolution:  # a growing model completed one
                save_samples(self, growth_grid_name(point.resolution))
            if self._due(c.checkpoint_every, point) and self.step < c.steps:
                save_checkpoint(self)
        self.serve_rollback()
        self.bar.n = self.step  # a rollback moves the step back
        return stopping or self.stop_reason is not None

    def record(self, images_per_second: float) -> None:
        """The tick's record: statistics since the last one, rates, the schedule; checked
        for divergence, shown to the callbacks, written to metrics.jsonl."""
        lr_g, lr_d = self.learning_rates
        point = self.point
        self.stats.gauges(point.gauges())  # a growing schedule says where it stands
        record: dict[str, Any] = {
            "step": self.step, "epoch": round(self.stream.epoch, 4),
            "kimg": round(self.images_seen / 1000, 3), "time": round(self.elapsed, 2),
            **{k: v if isinstance(v, str) else round(v, 6)
               for k, v in self.stats.collect(self.strategy).items()},
            "LR/G": lr_g, "LR/D": lr_d, "Speed/img_per_s": round(images_per_second, 1)}
        problem = self.strategy.agree(rollback.divergence(self, record))
        if problem:
            self.metrics.append(record)
            self.request_rollback(problem)
            return
        for callback in self.callbacks_here:  # may add fields (the health monitor's diversity)
            callback.on_tick(self, record)
        remedies.share_decisions(self)
        self.metrics.append(record)
        console.show_tick(self.bar, record, images_per_second, self.stream.epoch, point.phase)

    def finish(self, interrupted: bool) -> TrainResult:
        checkpoint = save_checkpoint(self)
        self.serve_rollback()
        checkpoint = checkpoint or self.good_checkpoint
        samples = save_samples(self, "final.png")
        generator_dir = self.run_dir / "generator"
        if self.strategy.is_main:
            save_generator(generator_dir, self.sampling_generator, self.config.to_dict(),
                           step=self.step, ema=self.ema is not None, ganvas_version=__version__)
        if interrupted and not self.diverged:
            console.say_stopped(self)
        return TrainResult(self.run_dir, self.step, checkpoint, samples, generator_dir,
                           interrupted, self.diverged,
                           self.stop_reason if interrupted else None)

    # ---- requests (from callbacks and the tick's own checks) ---------------------------------

    def request_stop(self, reason: str) -> None:
        """Ask the loop to stop after the current step (used by callbacks)."""
        self.stop_reason = reason
        self.log(f"stopping: {reason}")

    def request_rollback(self, reason: str) -> None:
        """Ask the tick to return to the last good checkpoint (every process asks alike)."""
        self.rollback_reason = self.rollback_reason or reason

    def serve_rollback(self) -> None:
        if self.rollback_reason is not None:
            reason, self.rollback_reason = self.rollback_reason, None
            rollback.roll_back(self, reason)

    def apply_changes(self, changes: dict[str, Any]) -> list[str]:
        """Apply the remedies that can change mid-run (see :mod:`.callbacks.remedies`)."""
        return remedies.apply_changes(self, changes)

    def set_learning_rates(self, *, g: float | None = None, d: float | None = None) -> None:
        """Set the base rates (a schedule may scale the rates in use)."""
        self.recipe.set_learning_rates(g=g, d=d, lr_scale=self.point.lr_scale)

    def log_event(self, kind: str, message: str, **data: Any) -> None:
        """A plain-language event: printed, and recorded in metrics.jsonl."""
        record = {"step": self.step, "event": kind, "message": message, **data}
        self.metrics.append(record)
        self.log(message)
        for callback in self.callbacks_here:
            callback.on_event(self, record)

    # ---- what callbacks read -----------------------------------------------------------------

    @property
    def point(self) -> SchedulePoint:
        """Where the schedule stands now."""
        return self.schedule(self.images_seen)

    @property
    def callbacks_here(self) -> list:
        """Callbacks run on rank 0 alone (their decisions are shared: remedies.py)."""
        return self.callbacks if self.strategy.is_main else []

    @torch.inference_mode()
    def render(self, latents: torch.Tensor, network: torch.nn.Module | None = None,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """Latents (and a conditional run's one-hot labels; None: typical ones) through a
        generator's preview (the network as it trains now, at the final resolution), in
        eval mode so no BatchNorm statistics change."""
        network = network or self.sampling_generator
        if labels is None and network.c_dim:
            labels = self.labels.typical(len(latents))
        c = None if labels is None else labels.to(self.device)
        was_training = network.training
        network.eval()
        try:
            return network.preview(latents.to(self.device), c).float().cpu()
        finally:
            network.train(was_training)

    @torch.inference_mode()
    def score(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """D's float32 scores ``[N]`` for images ``[N, C, R, R]`` in [-1, 1] (and their
        one-hot labels), as the family's D takes them now, without augmentation, in eval
        mode (no BatchNorm statistics or spectral-norm vectors change). A growing D sees
        them at the resolution of its last step (``self.point`` may be the next one's)."""
        network, point = self.discriminator, self.networks_point or self.point
        was_training = network.training
        network.eval()
        eager = (torch.compiler.set_stance("force_eager") if self.config.compile
                 else contextlib.nullcontext())
        try:
            with eager:
                seen = self.family.real_input(self.spec, images.to(self.device), point)
                c = None if labels is None else labels.to(self.device)
                return self.recipe.score_images(seen, c).cpu()
        finally:
            network.train(was_training)

    def state_dict(self) -> dict[str, Any]:
        return run_state.run_state(self)

    def snapshot(self) -> dict[str, Any]:
        return run_state.snapshot(self)

    def restore_snapshot(self, state: dict[str, Any]) -> None:
        run_state.restore_snapshot(self, state)

    def _due(self, every: int, point: SchedulePoint) -> bool:
        """Whether the last step crossed a multiple of ``every * --batch-size`` images:
        cadences count images, so a schedule that changes the batch changes no cadence."""
        interval = every * self.config.batch_size
        return self.images_seen // interval != (self.images_seen - point.batch_size) // interval

    def _latents(self, n: int) -> torch.Tensor:
        dim = self.config.latent_dim
        return per_sample(lambda m: torch.randn(m, dim, generator=self.latent_rng), n)

    def _reals(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This process's ``n`` images of the next global batch and their one-hot labels."""
        return self.stream.next_labelled(n, part=(self.strategy.rank, self.strategy.world_size))
