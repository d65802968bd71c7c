"""The training loop: for each step, the due phases of the loss recipe, then EMA, then the
images-seen clock; once per tick: log, health, samples, checkpoint.

Everything a run owns (data, networks, the recipe with its optimisers, random streams) is
created in ``Trainer.__init__`` and nowhere else, so a distributed wrapper can later take
them over in one place. The loop knows nothing about any family: what a generator hands its
discriminator, how reals are shown to it and how the networks grow are the family's, the
losses and their phases the recipe's. One clock, the number of images seen, drives ticks,
samples, checkpoints, EMA, instance noise and the family's schedule.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ganvas import __version__
from ganvas.augment import build_augment
from ganvas.config import LIMITS, TrainConfig, dump_yaml
from ganvas.data import count_images, load_images
from ganvas.data.loader import BatchStream
from ganvas.data.split import auto_holdout, split_indices
from ganvas.errors import GanvasError
from ganvas.losses import get_loss
from ganvas.losses.criteria import LOSSES, BCELoss
from ganvas.losses.recipe import StepInputs, get_recipe
from ganvas.models.export import load_weights, save_generator
from ganvas.models.networks import DiscriminatorNetwork, GeneratorNetwork, uses_batchnorm
from ganvas.models.registry import make_spec
from ganvas.models.schedule import SchedulePoint, steps_for_images
from ganvas.models.spectral import apply_spectral_norm
from ganvas.rng import (
    AUGMENT,
    DATA,
    LATENTS,
    SAMPLES,
    batch_slice,
    per_sample,
    stream,
    stream_seed,
)
from ganvas.runs import checkpoint as ckpt
from ganvas.runs.folders import describe, new_run_dir, prepare_out_dir
from ganvas.runs.metrics import MetricsLog
from ganvas.training.callbacks import Callback
from ganvas.training.compilation import compile_blocks
from ganvas.training.distributed import (
    PeerLost,
    Strategy,
    current_strategy,
    globalise_batchnorm,
)
from ganvas.training.ema import GeneratorEMA
from ganvas.training.fid_monitor import FIDMonitor
from ganvas.training.plots import plot_training_curves
from ganvas.training.settings import DEFAULT_STEPS, resolve_settings
from ganvas.training.signals import GracefulStop
from ganvas.training.stats import StatsCollector
from ganvas.utils.device import resolve_device, resolve_precision
from ganvas.utils.files import atomic_write_text
from ganvas.utils.images import make_grid, save_image
from ganvas.utils.progress import progress_bar

EXPLODING_LOSS = 1e6  # a loss beyond this is treated like NaN: the run has diverged
LR_FLOOR = 1e-6  # remedies never lower a learning rate below this: training would stop
# Settings that define the data or the networks; changing them on resume would not continue
# the same run, so --resume refuses them.
FIXED_ON_RESUME = ("resolution", "channels", "mirror", "model", "latent_dim",
                   "model_options", "seed", "runs_dir", "spectral_norm", "ema", "holdout")
LENGTHS = ("steps", "epochs", "kimg")


def log_line(message: str) -> None:
    """Print above any progress bar, to stderr, so stdout stays clean for scripts."""
    tqdm.write(message, file=sys.stderr)


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


class Trainer:
    """Owns one run. Use :func:`train` or :func:`resume` rather than building it directly."""

    def __init__(self, config: TrainConfig, run_dir: Path, *, callbacks: Sequence[Callback] = (),
                 progress: bool = True, log: Callable[[str], None] = log_line,
                 state: dict[str, Any] | None = None, state_source: str = "checkpoint",
                 strategy: Strategy | None = None):
        config = config.validate()
        if any(getattr(config, name) is None for name in TrainConfig.auto_fields()) \
                or not config.resolution or not config.channels:
            config, _ = resolve_settings(config)
        self.config = config
        self.run_dir = Path(run_dir)
        self.callbacks = list(callbacks)
        if config.health:
            from ganvas.training.health import HealthMonitor

            self.callbacks.append(HealthMonitor())
        if config.fid_every and not any(isinstance(cb, FIDMonitor) for cb in self.callbacks):
            self.callbacks.append(FIDMonitor(config.fid_every, config.fid_num, config.inception))
        requested = resolve_device(config.device)
        self.strategy = strategy or current_strategy(requested)
        main = self.strategy.is_main
        # Rank 0 speaks for the run; the other processes only report their own failures.
        self.progress = progress and main
        self.log = log if main else _quiet
        self.device = self.strategy.device(requested)
        self.autocast_dtype = resolve_precision(config.precision, self.device)
        if self.device.type == "cpu":
            # Subnormal floats take the slow path on x86: a progressive run at 4 px fell from
            # 340 to 15 images/s when its activations drifted into that range. Flushing them
            # to zero changes values only below 1e-38.
            torch.set_flush_denormal(True)

        # Same seed -> same initial weights, whatever the device: build on CPU, then move.
        torch.manual_seed(config.seed)
        self.family, self.spec = make_spec(
            config.model, resolution=config.resolution, channels=config.channels,
            latent_dim=config.latent_dim, options=config.model_options)
        generator = self.family.build_generator(self.spec)
        discriminator = self.family.build_discriminator(self.spec)
        if not (isinstance(generator, GeneratorNetwork)
                and isinstance(discriminator, DiscriminatorNetwork)):
            raise TypeError(f"model {config.model}: its networks must subclass "
                            "ganvas.models.networks.GeneratorNetwork / DiscriminatorNetwork")
        if config.spectral_norm:
            apply_spectral_norm(discriminator)
        self._prepare_batchnorm(generator, discriminator)
        self.strategy.broadcast_weights([generator, discriminator])
        # channels_last lets oneDNN/cuDNN pick their fastest convolution kernels (about 25 %
        # faster for the lesson's DCGAN on 2 CPU cores); it changes layout, not values.
        self.generator = generator.to(self.device, memory_format=torch.channels_last)
        self.discriminator = discriminator.to(self.device, memory_format=torch.channels_last)
        self.ema = (GeneratorEMA(self.generator, config.ema_kimg, seed=config.seed)
                    if config.ema else None)
        if config.compile:  # the trained networks; the average samples eagerly
            for network in (self.generator, self.discriminator):
                compile_blocks(network)
        self.stats = StatsCollector()
        self.recipe = get_recipe(self.family.recipe)(
            config, generator=self.generator, discriminator=self.discriminator,
            family=self.family, spec=self.spec, stats=self.stats, device=self.device,
            autocast_dtype=self.autocast_dtype, strategy=self.strategy)
        if self.recipe.gp_weight and uses_batchnorm(self.discriminator):
            self.log(f"warning: the gradient penalty of --loss {config.loss} assumes every "
                     f"image is scored alone, but the discriminator of model {config.model} "
                     "uses BatchNorm, which mixes the images of a batch: it trains, less "
                     "reliably (see `ganvas models` for a discriminator_norm option)")
        self.schedule = self.family.schedule(self.spec, config.batch_size)
        self._check_batch_split(self.schedule(0).batch_size)
        self.step = 0
        self.images_seen = 0  # the run's clock
        self.elapsed = 0.0  # training seconds over all sessions of this run
        self.rollbacks = 0
        if state is not None:  # before the data, so a bad checkpoint fails fast
            self._restore_networks(state, state_source)

        # The first process of each machine decodes (and caches) the data; the others read
        # the cache it leaves.
        self.data = self.strategy.main_first(lambda: load_images(
            config.data, resolution=config.resolution, channels=config.channels,
            workers=config.workers, max_image_pixels=config.max_image_pixels,
            progress=self.progress, log=self.log))
        if config.holdout is None:  # fixed now: a resumed run keeps the same split
            # Only the health monitor looks at held-out pictures: without it, all train.
            held = auto_holdout(len(self.data)) if config.health else 0
            self.config = config = config.replace(holdout=held)
        self.train_indices, self.held_out = split_indices(len(self.data), config.holdout,
                                                          config.seed)
        if config.steps is None:
            target = (config.epochs * len(self.train_indices) if config.epochs is not None
                      else config.kimg * 1000 if config.kimg is not None else None)
            steps = (steps_for_images(self.schedule, target) if target is not None
                     else DEFAULT_STEPS)
            steps = min(steps, LIMITS["steps"])
            self.config = config = config.replace(steps=max(1, steps), epochs=None, kimg=None)
        if config.instance_noise and config.instance_noise_steps is None:
            # Fixed now, so extending the run later does not bring the noise back.
            self.config = config = config.replace(instance_noise_steps=config.steps)
        self.recipe.config = config
        self.stream = BatchStream(self.data.images, config.batch_size,
                                  seed=stream_seed(config.seed, DATA), mirror=config.mirror,
                                  device=self.device,
                                  indices=self.train_indices if config.holdout else None)
        # Every random stream of the loop is its own CPU generator: results do not depend on
        # the device, and nothing else (sampling, logging, monitoring) can shift them.
        self.latent_rng = stream(config.seed, LATENTS)
        self.fixed_latents = torch.randn(config.num_samples, config.latent_dim,
                                         generator=stream(config.seed, SAMPLES))
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl", writable=main)
        self._stop_reason: str | None = None
        self._diverged = False
        self._in_step = False
        self._good_checkpoint: Path | None = None
        self._networks_point: SchedulePoint | None = None  # what the networks were set to
        if state is not None:
            self._restore_progress(state, state_source)
            # Rank 0's disk decides: the others may not see the run folder (other machines).
            found = self.strategy.agree(Path(state_source).is_file())
            self._good_checkpoint = Path(state_source) if found else None

    # ---- what the recipe owns, for callbacks and the monitor ---------------------------------

    @property
    def loss(self):
        """The adversarial criterion (its ``name``, ``probabilistic``, ...)."""
        return self.recipe.criterion

    @property
    def gate(self):
        return self.recipe.gate

    @property
    def augment(self):
        return self.recipe.augment

    @property
    def opt_g(self) -> torch.optim.Optimizer:
        return self.recipe.optimizers["G"]

    @property
    def opt_d(self) -> torch.optim.Optimizer:
        return self.recipe.optimizers["D"]

    @property
    def point(self) -> SchedulePoint:
        """Where the schedule stands now."""
        return self.schedule(self.images_seen)

    # ---- the loop ---------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        c = self.config
        self._announce()
        if self.step == 0:
            self._check_settings()
        if self._good_checkpoint is None:  # something to roll back to if training diverges
            self.save_checkpoint()
        for callback in self._callbacks_here:
            callback.on_train_start(self)
        tick_images, tick_start = 0, time.perf_counter()
        bar = progress_bar(total=c.steps, initial=self.step, enabled=self.progress,
                           unit="step", desc="training")
        with GracefulStop(self.log, patient=self.strategy.distributed) as signals, bar, \
                self._checkpoint_on_crash():
            while self.step < c.steps:
                point = self.schedule(self.images_seen)
                self._in_step = True  # a crash in here leaves a half-updated state
                self.train_step(point)
                self.step += 1
                self.images_seen += point.batch_size
                self._in_step = False
                tick_images += point.batch_size * c.n_critic
                bar.update(1)
                for callback in self._callbacks_here:
                    callback.on_step_end(self)
                # Every process stops at the same step, whichever one was asked to.
                stopping = self.strategy.any(signals.received is not None
                                             or self._stop_reason is not None)
                # Once per tick: statistics, then the slower housekeeping on its own schedule.
                # A stop between ticks keeps its partial statistics in the checkpoint instead,
                # so a resumed run ticks (and auto-balances) exactly where it would have.
                seconds = time.perf_counter() - tick_start
                if self._due(c.log_every, point) or self.step == c.steps:
                    self.elapsed += seconds
                    self._tick(bar, tick_images / max(seconds, 1e-9))
                    tick_images, tick_start = 0, time.perf_counter()
                    bar.n = self.step  # a rollback moves the step back
                    stopping = stopping or self._stop_reason is not None
                elif stopping:
                    self.elapsed += seconds
                if self._due(c.sample_every, point):
                    self.save_samples()
                if self.point.resolution != point.resolution:  # a growing model completed one
                    self.save_samples(f"grown-{point.resolution:04d}px.png")
                if self._due(c.checkpoint_every, point) and self.step < c.steps:
                    self.save_checkpoint()
                if stopping:
                    break
        interrupted = self.step < c.steps
        result = self._finish(interrupted)
        for callback in self._callbacks_here:
            callback.on_train_end(self, result)
        self.strategy.barrier()  # nobody leaves (and tears the group down) before rank 0 wrote
        return result

    @property
    def _callbacks_here(self) -> list[Callback]:
        """Callbacks (the health monitor, FID, the user's) run on rank 0 alone; what they
        decide reaches the other processes through :meth:`_share_decisions`."""
        return self.callbacks if self.strategy.is_main else []

    def _share_decisions(self) -> None:
        """Rank 0's settings after its callbacks ran (auto-balance may change rates and the
        balance gate; a callback may ask to stop), on every process."""
        if not self.strategy.distributed:
            return
        gate = self.gate
        lr_g, lr_d, skip, band, reason, betas, r1_gamma, loss, augment = self.strategy.agree(
            (*self.learning_rates, gate.skip_below, gate.accuracy_band, self._stop_reason,
             (self.config.beta1, self.config.beta2), self.config.r1_gamma, self.config.loss,
             self.config.augment))
        if not self.strategy.is_main:
            self.set_learning_rates(g=lr_g, d=lr_d)
            gate.skip_below, gate.accuracy_band = skip, band
            self._stop_reason = reason
            self.set_betas(*betas)
            self.set_r1_gamma(r1_gamma)
            if loss != self.config.loss:
                self.set_loss(loss)
            if augment != self.config.augment:
                self.set_augment(augment)

    def _prepare_batchnorm(self, *networks: torch.nn.Module) -> None:
        """BatchNorm sees one process's slice of the batch unless --sync-bn (said once the
        data is loaded, with the run's first lines)."""
        self._notes: list[str] = []
        if not self.strategy.distributed:
            return
        if self.config.sync_bn:
            for network in networks:
                globalise_batchnorm(network)
        elif any(uses_batchnorm(network) for network in networks):
            per_process = self.config.batch_size // self.strategy.world_size
            self._notes.append(
                f"note: the BatchNorm layers of model {self.config.model} normalise each "
                f"process's {per_process} images, not the whole batch, so results differ from "
                "one process; add --sync-bn for the statistics of the whole batch")

    def _check_batch_split(self, batch_size: int) -> None:
        """A global batch the processes (and accumulation rounds) cannot share evenly would
        weigh some images more than others."""
        parts = self.strategy.world_size * self.config.grad_accum
        if batch_size % parts:
            who = (f"{self.strategy.world_size} processes" if self.strategy.distributed
                   else "")
            rounds = (f"{self.config.grad_accum} accumulation rounds"
                      if self.config.grad_accum > 1 else "")
            split = " x ".join(x for x in (who, rounds) if x)
            raise GanvasError(f"--batch-size {batch_size} cannot be split evenly over {split}; "
                              f"use a multiple of {parts}")

    def _due(self, every: int, point: SchedulePoint) -> bool:
        """Whether the last step crossed a multiple of ``every`` steps of the base batch
        (``every * --batch-size`` images): housekeeping counts images, not steps, so a
        schedule that changes the batch size does not change how often it comes."""
        interval = every * self.config.batch_size
        return self.images_seen // interval != (self.images_seen - point.batch_size) // interval

    @contextlib.contextmanager
    def _checkpoint_on_crash(self):
        """No work is lost: an unexpected error (or a second Ctrl-C) still leaves a checkpoint
        of the last completed step, then the error goes on to the caller."""
        try:
            yield
        except BaseException as exc:
            existing = ckpt.checkpoint_path(self.run_dir, self.step)
            if self.strategy.is_main and self.step and not self._in_step \
                    and not existing.exists() and self._weights_finite():
                with contextlib.suppress(Exception):
                    path = ckpt.save_checkpoint(ckpt.checkpoint_path(self.run_dir, self.step),
                                                self.state_dict())
                    self.log(f"saved {path} before stopping; continue with: "
                             f"ganvas train --resume {self.run_dir}")
            if isinstance(exc, PeerLost):
                newest = ckpt.list_checkpoints(self.run_dir) if self.strategy.is_main else []
                where = f"; the last checkpoint is {newest[-1]}" if newest else ""
                raise PeerLost(f"{exc}{where}. Continue with: ganvas train --resume "
                               f"{self.run_dir}") from None
            raise

    def train_step(self, point: SchedulePoint) -> None:
        """One step: the networks follow the schedule, the recipe's due phases run in order
        (zero their gradients, accumulate, step what the recipe lets update), then EMA."""
        for network in (self.generator, self.discriminator):
            network.set_schedule(point)
        self._networks_point = point
        self.recipe.apply_schedule(point.lr_scale)
        strategy, rounds = self.strategy, self.config.grad_accum
        self._check_batch_split(point.batch_size)
        inputs = StepInputs(reals=self._reals, latents=self._latents, point=point,
                            step=self.step, images_seen=self.images_seen,
                            batch_size=point.batch_size // (strategy.world_size * rounds))
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
                    optimizer = self.recipe.optimizers[name]
                    params = [p for group in optimizer.param_groups for p in group["params"]]
                    if rounds > 1:  # the mean over the whole batch, as one round would give
                        for p in params:
                            if p.grad is not None:
                                p.grad.div_(rounds)
                    strategy.average_gradients(params)
                    self.recipe.step_optimizer(name)
        self.recipe.end_step()
        strategy.average_buffers([self.generator, self.discriminator])
        # The moving average of G that samples and exports use.
        if self.ema is not None:
            self.ema.update(self.generator, point.batch_size,
                            self.images_seen + point.batch_size)

    def _latents(self, n: int) -> torch.Tensor:
        dim = self.config.latent_dim
        return per_sample(lambda m: torch.randn(m, dim, generator=self.latent_rng), n)

    def _reals(self, n: int) -> torch.Tensor:
        """This process's ``n`` images of the next global batch."""
        return self.stream.next(n, part=(self.strategy.rank, self.strategy.world_size))

    def request_stop(self, reason: str) -> None:
        """Ask the loop to stop after the current step (used by callbacks)."""
        self._stop_reason = reason
        self.log(f"stopping: {reason}")

    def set_learning_rates(self, *, g: float | None = None, d: float | None = None) -> None:
        """Set the base rates (a schedule may scale the rates in use)."""
        self.recipe.set_learning_rates(g=g, d=d, lr_scale=self.point.lr_scale)

    @property
    def learning_rates(self) -> tuple[float, float]:
        return self.recipe.learning_rates

    def log_event(self, kind: str, message: str, **data: Any) -> None:
        """A plain-language event: printed, and recorded in metrics.jsonl."""
        self.metrics.append({"step": self.step, "event": kind, "message": message, **data})
        self.log(message)

    # ---- divergence -------------------------------------------------------------------------

    def _divergence(self, record: dict[str, Any]) -> str | None:
        for key in ("Loss/D", "Loss/G"):
            value = record.get(key)
            if value is not None and not math.isfinite(value):
                return f"{key} is {value}"
            if value is not None and abs(value) > EXPLODING_LOSS:
                return f"{key} exploded to {value:.3g}"
        if not self._weights_finite():
            return "the weights contain NaN or infinity"
        return None

    def _weights_finite(self) -> bool:
        params = [*self.generator.parameters(), *self.discriminator.parameters()]
        return bool(torch.isfinite(torch.stack([p.detach().sum() for p in params])).all())

    def rollback(self, reason: str) -> bool:
        """Return to the last good checkpoint with halved learning rates; False once the
        allowance (--max-rollbacks) is used up, after which training stops."""
        c = self.config
        failed_step = self.step
        def last_good() -> Path | None:
            if self._good_checkpoint is not None and self._good_checkpoint.is_file():
                return self._good_checkpoint
            candidates = ckpt.list_checkpoints(self.run_dir)
            return candidates[-1] if candidates else None

        self._good_checkpoint = self.strategy.share(last_good)
        if self._good_checkpoint is None:
            self.request_stop(f"training diverged at step {failed_step} ({reason}) and there "
                              "is no checkpoint to roll back to")
            return False
        good = self._good_checkpoint
        state = self.strategy.share(lambda: ckpt.load_checkpoint(good))
        self._restore_networks(state, str(self._good_checkpoint))
        self._restore_progress(state, str(self._good_checkpoint))
        if self.rollbacks >= c.max_rollbacks:
            self.metrics.truncate_after(self.step)
            self._diverged = True
            self.log_event(
                "divergence", f"Training diverged at step {failed_step} ({reason}) after "
                f"{self.rollbacks} rollback(s); stopped at the last good state (step "
                f"{self.step}). Try lower learning rates (--lr-g, --lr-d), --spectral-norm or "
                "--r1-gamma.", reason=reason, rollbacks=self.rollbacks)
            self._stop_reason = "training diverged"
            return False
        self.rollbacks += 1
        # Halve relative to the checkpoint's rates once per rollback since it was written.
        factor = 0.5 ** (self.rollbacks - int(state.get("rollbacks", 0)))
        lr_g, lr_d = self.learning_rates
        self.set_learning_rates(g=lr_g * factor, d=lr_d * factor)
        self.metrics.truncate_after(self.step)
        self.log_event(
            "rollback", f"Training diverged at step {failed_step} ({reason}): rolled back to "
            f"step {self.step} and lowered the learning rates to lr-g {lr_g * factor:.3g}, "
            f"lr-d {lr_d * factor:.3g} (rollback {self.rollbacks} of {c.max_rollbacks}).",
            reason=reason, rollbacks=self.rollbacks, failed_step=failed_step)
        return True

    # ---- housekeeping -----------------------------------------------------------------------

    def _tick(self, bar: tqdm, images_per_second: float) -> None:
        lr_g, lr_d = self.learning_rates
        point = self.point
        record: dict[str, Any] = {
            "step": self.step,
            "epoch": round(self.stream.epoch, 4),
            "kimg": round(self.images_seen / 1000, 3),
            "time": round(self.elapsed, 2),
            **{k: round(v, 6) for k, v in self.stats.collect(self.strategy).items()},
            "LR/G": lr_g,
            "LR/D": lr_d,
            "Speed/img_per_s": round(images_per_second, 1),
        }
        if point.phase:  # a growing family: where its schedule stands
            record.update({"phase": point.phase, "Schedule/resolution": point.resolution,
                           "Schedule/alpha": round(point.alpha, 4),
                           "Schedule/batch": point.batch_size})
        if self.config.augment != "none":
            record["Augment/p"] = round(self.augment.p, 5)
        if self.config.instance_noise:
            record["Noise/sigma"] = round(self.recipe.instance_noise_sigma(self.images_seen), 5)
        problem = self.strategy.agree(self._divergence(record))
        if problem:
            self.metrics.append(record)
            self.rollback(problem)
            return
        for callback in self._callbacks_here:  # may add fields (the health monitor's diversity)
            callback.on_tick(self, record)
        self._share_decisions()
        self.metrics.append(record)
        phase = f" {point.phase}" if point.phase else ""
        bar.set_postfix_str(
            f"D {record.get('Loss/D', float('nan')):.3f} G {record.get('Loss/G', float('nan')):.3f}"
            f" D(x) {record.get('D/real', float('nan')):.2f}"
            f" D(G(z)) {record.get('D/fake', float('nan')):.2f}"
            f" {images_per_second:.0f} img/s ep {self.stream.epoch:.1f}{phase}", refresh=False)

    @property
    def sampling_generator(self) -> torch.nn.Module:
        """The network samples come from: the moving average when --ema is on."""
        return self.ema.average if self.ema is not None else self.generator

    @torch.inference_mode()
    def render(self, latents: torch.Tensor, network: torch.nn.Module | None = None
               ) -> torch.Tensor:
        """Latents through a generator's preview (the network as it trains now, at the final
        resolution), in eval mode so no BatchNorm statistics change."""
        network = network or self.sampling_generator
        was_training = network.training
        network.eval()
        try:
            return network.preview(latents.to(self.device)).float().cpu()
        finally:
            network.train(was_training)

    @torch.inference_mode()
    def score(self, images: torch.Tensor) -> torch.Tensor:
        """The discriminator's float32 scores ``[N]`` for images ``[N, C, R, R]`` in
        [-1, 1], shown as the family's D takes them now, without augmentation, in eval mode
        (no BatchNorm statistics or spectral-norm vectors change). A growing D is shown them
        at the resolution of its last step (``self.point`` may already be the next one's)."""
        network = self.discriminator
        point = self._networks_point or self.point
        was_training = network.training
        network.eval()
        eager = (torch.compiler.set_stance("force_eager") if self.config.compile
                 else contextlib.nullcontext())
        try:
            with eager:
                seen = self.family.real_input(self.spec, images.to(self.device), point)
                return self.recipe.discriminate(seen).float().flatten().cpu()
        finally:
            network.train(was_training)

    def save_samples(self, name: str | None = None) -> Path:
        """Sample grid and loss curves; a failure to write them is a warning, not a crash."""
        path = self.run_dir / "samples" / (name or f"step-{self.step:07d}.png")
        if not self.strategy.is_main:
            return path
        try:
            save_image(make_grid(self.render(self.fixed_latents)), path)
            plot_training_curves(self.metrics.read(), self.run_dir / "loss.png")
        except (GanvasError, OSError) as exc:
            self.log(f"warning: could not write the sample grid or loss curves: {exc}")
        return path

    def state_dict(self) -> dict[str, Any]:
        rng = {
            "latent": self.latent_rng.get_state(),
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": _numpy_state(),
        }
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        state = {
            "config": self.config.to_dict(),
            "step": self.step,
            "images_seen": self.images_seen,
            "elapsed": self.elapsed,
            "rollbacks": self.rollbacks,
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            **self.recipe.state_dict(),
            "stats": self.stats.state_dict(),
            "callbacks": {name: saved for name, saved in
                          ((type(cb).__name__, cb.state_dict()) for cb in self.callbacks)
                          if saved is not None},
            "data": self.stream.state_dict(),
            "dataset": {"source": self.data.source, "num_images": len(self.data)},
            "rng": rng,
            "ganvas_version": __version__,
        }
        if self.ema is not None:
            state["generator_ema"] = self.ema.average.state_dict()
        return state

    def snapshot(self) -> dict[str, Any]:
        """A copy of the networks and their optimisers, but not of the clock, the data
        position or the random streams: the health monitor's way back to an earlier state
        that training then continues from."""
        state = {"generator": self.generator.state_dict(),
                 "discriminator": self.discriminator.state_dict(),
                 "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()}
        if self.ema is not None:
            state["generator_ema"] = self.ema.average.state_dict()
        return copy.deepcopy(state)

    def restore_snapshot(self, state: dict[str, Any]) -> None:
        """Load what :meth:`snapshot` copied (the snapshot itself stays unchanged)."""
        state = copy.deepcopy(state)
        where = "the health monitor's best state"
        load_weights(self.generator, state["generator"], f"{where} (generator)")
        load_weights(self.discriminator, state["discriminator"], f"{where} (discriminator)")
        if self.ema is not None and "generator_ema" in state:
            load_weights(self.ema.average, state["generator_ema"], f"{where} (generator_ema)")
        self.recipe.load_optimizers(state, where)

    def _restore_networks(self, state: dict[str, Any], where: str) -> None:
        for key in ("generator", "discriminator", "generator_ema"):
            weights = state.get(key)
            if isinstance(weights, dict) and not all(
                    torch.isfinite(t).all() for t in weights.values()
                    if isinstance(t, torch.Tensor) and t.is_floating_point()):
                raise GanvasError(f"{where}: the {key.replace('_', ' ')} weights hold NaN or "
                                  "infinity (damaged checkpoint); resume from an older one")
        load_weights(self.generator, state["generator"], f"{where} (generator)")
        load_weights(self.discriminator, state["discriminator"], f"{where} (discriminator)")
        if self.ema is not None:
            # A run that had EMA off starts its average from the current weights.
            average = state.get("generator_ema", state["generator"])
            load_weights(self.ema.average, average, f"{where} (generator_ema)")
        self.recipe.load_optimizers(state, where)
        try:
            self.step = int(state["step"])
            self.images_seen = state.get("images_seen", self.step * self.config.batch_size)
            if isinstance(self.images_seen, bool) or not isinstance(self.images_seen, int) \
                    or not 0 <= self.images_seen < 2**62:
                raise ValueError("images seen")
            self.elapsed = float(state.get("elapsed", 0.0))
            self.rollbacks = max(self.rollbacks, int(state.get("rollbacks", 0)))
        except (TypeError, ValueError, OverflowError):
            raise GanvasError(f"{where}: step, images seen, time or rollback count is damaged"
                              ) from None

    def _restore_progress(self, state: dict[str, Any], where: str) -> None:
        try:
            position = state["data"]["position"]
            if not isinstance(position, int) or position < 0:
                raise ValueError(f"data position {position!r:.40}")
            self.stream.load_state_dict(state["data"])
            self.recipe.load_state_dict(state)
            if state.get("stats"):
                self.stats.load_state_dict(state["stats"])
            for callback in self.callbacks:
                saved = state.get("callbacks", {}).get(type(callback).__name__)
                if saved is not None:
                    callback.load_state_dict(saved)
            rng = state["rng"]
            self.latent_rng.set_state(rng["latent"])
            torch.set_rng_state(rng["torch"])
            random.setstate(_as_tuple(rng["python"]))
            _set_numpy_state(rng["numpy"])
            if "cuda" in rng and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError,
                AttributeError) as exc:
            raise GanvasError(f"{where}: data position or random state is damaged "
                              f"({type(exc).__name__}: {str(exc)[:100]})") from None
        dataset = state.get("dataset", {})
        if isinstance(dataset, dict) and dataset.get("num_images") not in (None, len(self.data)):
            self.log(f"warning: the data now holds {len(self.data)} images, the run started "
                     f"with {dataset['num_images']}; batches will differ from the original run")

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint unless the weights are broken (then roll back instead). Every
        process calls it (the statistics since the last tick are pooled); rank 0 writes."""
        if not self._weights_finite():
            self.rollback("the weights contain NaN or infinity")
            return None
        self.stats.gather(self.strategy)
        path = ckpt.checkpoint_path(self.run_dir, self.step)
        if self.strategy.is_main:
            ckpt.save_checkpoint(path, self.state_dict())
            ckpt.prune_checkpoints(self.run_dir, self.config.keep_checkpoints)
        self._good_checkpoint = path
        return path

    def _announce(self) -> None:
        c = self.config
        g = sum(p.numel() for p in self.generator.parameters()) / 1e6
        d = sum(p.numel() for p in self.discriminator.parameters()) / 1e6
        self.log(f"run folder: {self.run_dir}")
        self.log(f"data: {self.data.source}")
        self.log(f"model: {c.model} {c.resolution}px x{c.channels} (G {g:.2f}M, D {d:.2f}M "
                 f"parameters), loss {c.loss}, batch {c.batch_size}{self._batch_split()}, on "
                 f"{self.device if not self.strategy.distributed else self.device.type}"
                 f"{_precision_words(self.autocast_dtype)}")
        plan = getattr(self.schedule, "describe", None)
        if plan is not None:
            self.log(f"schedule: {plan()}")
        for note in self._notes:
            self.log(note)
        if self.step:
            self.log(f"resuming at step {self.step} of {c.steps}"
                     + (f" ({self.point.phase})" if self.point.phase else ""))

    def _check_settings(self) -> None:
        """Warn about settings far outside what is known to work (printed unless
        --quiet-checks; ``ganvas doctor`` checks config.yaml again). With --auto-balance,
        the ones that need no new run are corrected before the first step."""
        if not self.config.health:
            return
        from ganvas.training.health.settings_check import check_settings

        findings = check_settings(
            self.config, generator_params=sum(p.numel() for p in self.generator.parameters()),
            discriminator_params=sum(p.numel() for p in self.discriminator.parameters()))
        if not self.config.quiet_checks:
            for finding in findings:
                self.log(f"warning: {finding.message}")
        if not self.config.auto_balance:
            return
        for finding in findings:
            done = self.apply_changes(finding.changes)
            if done:
                self.log_event("auto_balance", f"auto-balance ({finding.kind}): "
                               f"{', '.join(done)}.", cause=finding.kind,
                               changes=finding.changes)

    def apply_changes(self, changes: dict[str, Any]) -> list[str]:
        """Apply the remedies that can change mid-run (learning rates, Adam betas, R1 gamma,
        the balance gate's skip threshold); returns what changed, in flag words."""
        done = []
        lr_g, lr_d = self.learning_rates
        for name, old in (("lr_g", lr_g), ("lr_d", lr_d)):
            if name in changes:
                new = max(float(changes[name]), LR_FLOOR)
                self.set_learning_rates(**{name[-1]: new})
                done.append(f"--{name.replace('_', '-')} {old:.2g} -> {new:.2g}")
        beta1, beta2 = self.config.beta1, self.config.beta2
        new_betas = (float(changes.get("beta1", beta1)), float(changes.get("beta2", beta2)))
        if new_betas != (beta1, beta2):
            self.set_betas(*new_betas)
            done.append(f"--beta1 {beta1:g} --beta2 {beta2:g} -> --beta1 {new_betas[0]:g} "
                        f"--beta2 {new_betas[1]:g}")
        if "r1_gamma" in changes and changes["r1_gamma"] != self.config.r1_gamma:
            done.append(f"--r1-gamma {self.config.r1_gamma:g} -> {changes['r1_gamma']:g}")
            self.set_r1_gamma(float(changes["r1_gamma"]))
        if "loss" in changes and changes["loss"] != self.config.loss \
                and self.set_loss(str(changes["loss"])):
            done.append(f"--loss {changes['loss']}")
        if changes.get("augment") == "ada" and self.config.augment == "none":
            self.set_augment("ada")
            done.append("--augment none -> ada")
        if "d_skip_below" in changes and self.gate.skip_below is None:
            self.gate.skip_below = changes["d_skip_below"]
            done.append(f"--d-skip-below {changes['d_skip_below']}")
        return done

    def set_betas(self, beta1: float, beta2: float) -> None:
        """Adam's betas for both networks (saved with the config and the optimisers, so a
        resumed run keeps them)."""
        self.config = self.config.replace(beta1=beta1, beta2=beta2)
        self.recipe.set_betas(self.config)

    def set_loss(self, name: str) -> bool:
        """Switch to loss ``name`` mid-run where only the generator's objective changes
        (between the forms of the logistic loss: bce-saturating, bce, ns); False else."""
        if not (isinstance(self.loss, BCELoss) and name in LOSSES
                and issubclass(LOSSES[name], BCELoss)):
            return False
        self.config = self.recipe.config = self.config.replace(loss=name)
        self.recipe.criterion = get_loss(name, self.config.label_smoothing)
        return True

    def set_augment(self, name: str) -> None:
        """Turn augmentation ``name`` on mid-run (from none: ADA starts at strength 0)."""
        c = self.config = self.recipe.config = self.config.replace(augment=name)
        self.recipe.augment = build_augment(
            name, seed=stream_seed(c.seed, AUGMENT), diffaugment_policy=c.diffaugment_policy,
            ada_target=c.ada_target, ada_kimg=c.ada_kimg, sum_over_processes=self.strategy.sum)

    def set_r1_gamma(self, gamma: float) -> None:
        self.config = self.recipe.config = self.config.replace(r1_gamma=gamma)

    def _batch_split(self) -> str:
        """How the global batch is shared out, for the run's first lines."""
        s, rounds = self.strategy, self.config.grad_accum
        if not s.distributed and rounds == 1:
            return ""
        per_process = self.config.batch_size // s.world_size
        parts = []
        if s.distributed:
            parts.append(f"{per_process} per process x {s.world_size} processes "
                         f"({s.backend})")
        if rounds > 1:
            parts.append(f"{per_process // rounds} per pass x {rounds} accumulation rounds")
        return " = " + ", ".join(parts)

    def _finish(self, interrupted: bool) -> TrainResult:
        checkpoint = self.save_checkpoint() or self._good_checkpoint
        samples = self.save_samples("final.png")
        generator_dir = self.run_dir / "generator"
        if self.strategy.is_main:
            save_generator(generator_dir, self.sampling_generator, self.config.to_dict(),
                           step=self.step, ema=self.ema is not None, ganvas_version=__version__)
        if interrupted and not self._diverged:
            self.log(f"stopped at step {self.step} of {self.config.steps}; checkpoint saved. "
                     f"Continue with: ganvas train --resume {self.run_dir}")
        return TrainResult(self.run_dir, self.step, checkpoint, samples, generator_dir,
                           interrupted, self._diverged)


def _precision_words(dtype: torch.dtype | None) -> str:
    if dtype is None:
        return ""
    if dtype == torch.float16:
        return " in mixed fp16 (gradient scaler, penalties in fp32)"
    return " in mixed bf16"


def _quiet(message: str) -> None:
    """The log of processes other than rank 0."""


def _numpy_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _set_numpy_state(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["gauss"]))


def _as_tuple(value: Any) -> Any:
    """random.setstate needs tuples; a round trip through a checkpoint may give lists."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


# ---- public entry points ------------------------------------------------------------------

def train(config: TrainConfig | dict | None = None, *, callbacks: Sequence[Callback] = (),
          progress: bool = True, log: Callable[[str], None] = log_line,
          **options: Any) -> TrainResult:
    """Train a GAN from scratch.

    Args:
        config: a TrainConfig (or a dict of its fields); keyword ``options`` override it,
            using the same names as the command line (``lr_d=1e-4``).
        callbacks: objects with ``on_tick`` etc. hooks (see :class:`Callback`).
        progress: show progress bars.
        log: receives one-line status messages.

    Returns:
        TrainResult with the run folder, final step, checkpoint, sample grid and the
        exported generator folder.

    Example:
        >>> result = ganvas.train(data="digits", steps=2000)  # doctest: +SKIP
        >>> ganvas.load(result.run_dir).sample(8, seed=0)      # doctest: +SKIP
    """
    if config is not None and not isinstance(config, (TrainConfig, dict)):
        raise GanvasError(f"train() takes a TrainConfig or a dict of options, got "
                          f"{type(config).__name__}; for a dataset write train(data=...)")
    _check_callbacks(callbacks)
    values = config.to_dict() if isinstance(config, TrainConfig) else dict(config or {})
    config = TrainConfig.from_dict({**values, **options}, source="train()").validate()
    # Reject a bad model/resolution/option before any decoding or folder creation.
    config, chosen = resolve_settings(config, count_images(config.data))
    family, _ = make_spec(config.model, resolution=config.resolution,
                          channels=config.channels, latent_dim=config.latent_dim,
                          options=config.model_options)
    get_recipe(family.recipe)
    get_loss(config.loss, config.label_smoothing)
    strategy = current_strategy(resolve_device(config.device))
    if config.fid_every and not any(isinstance(cb, FIDMonitor) for cb in callbacks) \
            and strategy.is_main:
        from ganvas.metrics.inception import resolve_weights

        resolve_weights(config.inception, log=log)  # no weights: say so before any work

    def make_run_dir() -> Path:
        if config.out:
            return prepare_out_dir(config.out)
        return new_run_dir(config.runs_dir, describe(config.data, config.model,
                                                     config.resolution))

    run_dir = strategy.share(make_run_dir)  # rank 0 creates it; every process writes there
    try:
        trainer = Trainer(config, run_dir, callbacks=callbacks, progress=progress, log=log,
                          strategy=strategy)
    except BaseException:
        # Nothing was trained: do not leave an empty numbered folder behind.
        if strategy.is_main:
            for leftover in (run_dir / "metrics.jsonl",):
                leftover.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                run_dir.rmdir()
        raise
    if strategy.is_main:
        atomic_write_text(run_dir / "config.yaml", dump_yaml(trainer.config))
        if "model_reason" in chosen:  # said once everything checked out: errors stay alone
            log(f"model {config.model}, chosen for the data ({chosen['model_reason']}); "
                "another with --model NAME")
    return trainer.fit()


def resume(run: str | os.PathLike, *, callbacks: Sequence[Callback] = (), progress: bool = True,
           log: Callable[[str], None] = log_line, **overrides: Any) -> TrainResult:
    """Continue a run from its newest checkpoint (or from a given checkpoint file).

    ``overrides`` may extend the run (``steps=`` a new total, or ``epochs=``), point to the
    data's new location (``data=``), or change housekeeping and optimiser settings; settings
    that define the networks are fixed for the life of a run. A checkpoint file outside a
    run's ``checkpoints/`` folder continues in a new run folder given by ``out=``.
    """
    _check_callbacks(callbacks)
    if not isinstance(run, (str, os.PathLike)) or not str(run):
        raise GanvasError(f"--resume needs a run folder or checkpoint file, got {run!r:.40}")
    path = Path(run)
    out = overrides.pop("out", None)
    new_folder = False
    strategy = current_strategy(resolve_device(overrides.get("device") or "auto"))
    if path.is_file():
        state, source = strategy.share(lambda: ckpt.load_checkpoint(path)), path
        if path.parent.name == ckpt.CHECKPOINT_DIR and out is None:
            run_dir = path.parent.parent
        elif out is not None:
            run_dir, new_folder = Path(out), True  # created once the settings are checked
        else:
            raise GanvasError(f"--resume {path}: this checkpoint is not inside a run folder's "
                              "checkpoints/; add --out DIR to continue it in a new run folder")
    elif path.is_dir():
        source, state = strategy.share(lambda: ckpt.latest_checkpoint(
            path, warn=log if strategy.is_main else _quiet))
        run_dir = path
        if out is not None and Path(out).resolve() != path.resolve():
            raise GanvasError("--out cannot change when resuming a run folder")
    else:
        raise GanvasError(f"--resume {path}: no such run folder or checkpoint file")
    try:
        saved = TrainConfig.from_dict(state["config"], source="saved config").validate()
    except GanvasError as exc:
        raise GanvasError(f"{source}: {exc}") from None
    if isinstance(state["config"], dict) and "holdout" not in state["config"]:
        saved = saved.replace(holdout=0)  # written before ganvas held images out: it trained on all
    changed = [k for k, v in overrides.items()
               if k in FIXED_ON_RESUME and v is not None and _plain(v) != _plain(getattr(saved, k))]
    if changed:
        flags = ", ".join("--model-option" if k == "model_options" else
                          "--" + k.replace("_", "-") for k in changed)
        raise GanvasError(f"{flags} cannot change when resuming (they define the run's "
                          "networks); start a new run instead")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    given = [k for k in LENGTHS if k in overrides]
    if given:  # a new length replaces the old one, whichever way it is said
        overrides.update({k: None for k in LENGTHS if k not in given})
    config = TrainConfig.from_dict({**saved.to_dict(), **overrides}, source="--resume")
    if config.steps is not None and config.steps <= state["step"]:  # before loading any data
        raise GanvasError(f"{run_dir} has already trained {state['step']} steps; give a larger "
                          f"--steps (a new total) to continue it")
    if new_folder:
        target = run_dir
        run_dir = strategy.share(lambda: prepare_out_dir(target))
    try:
        trainer = Trainer(config, run_dir, callbacks=callbacks, progress=progress, log=log,
                          state=state, state_source=str(source), strategy=strategy)
    except GanvasError as exc:
        if "--data" in str(exc) and "data" not in overrides:
            raise GanvasError(f"{exc}; if the images moved, add --data NEW_LOCATION to "
                              "--resume") from None
        raise
    # Settings given now win over those the checkpoint restored (auto-balance may have
    # changed them during the run).
    if "lr_g" in overrides or "lr_d" in overrides:
        trainer.set_learning_rates(g=overrides.get("lr_g"), d=overrides.get("lr_d"))
    if "d_skip_below" in overrides:
        trainer.gate.skip_below = trainer.config.d_skip_below
    if "d_accuracy_band" in overrides:
        trainer.gate.accuracy_band = trainer.config.d_accuracy_band
    if trainer.step >= trainer.config.steps:
        more = next((f"--{k} (a new total)" for k in ("epochs", "kimg") if k in overrides),
                    "--steps (a new total)")
        raise GanvasError(f"{run_dir} has already trained {trainer.step} steps "
                          f"({trainer.stream.epoch:.1f} epochs); "
                          f"give a larger {more} to continue it")
    if strategy.is_main:
        _set_aside_newer_checkpoints(run_dir, trainer.step, log)
    strategy.barrier()  # before anyone could write a checkpoint of the new continuation
    if overrides.keys() & {"lr_g", "lr_d", "d_skip_below", "d_accuracy_band"}:
        trainer.save_checkpoint()  # so a rollback returns to the new settings, not the old
    trainer.metrics.truncate_after(trainer.step)
    if strategy.is_main:
        atomic_write_text(run_dir / "config.yaml", dump_yaml(trainer.config))
    return trainer.fit()


def _set_aside_newer_checkpoints(run_dir: Path, step: int, log: Callable[[str], None]) -> None:
    """Resuming from an older checkpoint abandons the newer ones: move them out of the way
    (never delete them) so the newest checkpoint is again the run's real state."""
    newer = [p for p in ckpt.list_checkpoints(run_dir)
             if int(p.stem.split("-")[1]) > step]
    if not newer:
        return
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = Path(run_dir) / ckpt.CHECKPOINT_DIR / "abandoned"
    root.mkdir(parents=True, exist_ok=True)
    for attempt in range(1000):  # a fresh folder each time: never overwrite earlier ones
        aside = root / (f"after-step-{step}-{stamp}" + (f"-{attempt}" if attempt else ""))
        try:
            aside.mkdir()
            break
        except FileExistsError:
            continue
    for path in newer:
        path.replace(aside / path.name)
    log(f"moved {len(newer)} newer checkpoint(s) of the abandoned continuation to {aside}")


def _plain(value: Any) -> Any:
    """Compare config values the way they are saved (tuples as lists)."""
    return list(value) if isinstance(value, tuple) else value


def _check_callbacks(callbacks: Sequence[Callback]) -> None:
    for callback in callbacks:
        if not isinstance(callback, Callback):
            raise GanvasError(f"callbacks must be ganvas.Callback instances, got "
                              f"{type(callback).__name__}")
