"""The training loop: batch -> D step -> G step -> once per tick: log, samples, checkpoint.

Everything a run owns (data, models, optimisers, random streams) is created in
``Trainer.__init__`` and nowhere else, so a distributed wrapper can later take them over in
one place. ``Trainer.fit`` reads top to bottom; monitoring plugs in through callbacks.
"""

from __future__ import annotations

import contextlib
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
from ganvas.data import load_images
from ganvas.data.builtin import parse_builtin
from ganvas.data.loader import BatchStream
from ganvas.errors import GanvasError
from ganvas.models import build_models
from ganvas.models.export import load_weights, save_generator
from ganvas.models.spectral import apply_spectral_norm
from ganvas.training import checkpoint as ckpt
from ganvas.training.balance import BalanceGate
from ganvas.training.callbacks import Callback
from ganvas.training.ema import GeneratorEMA
from ganvas.training.fid_monitor import FIDMonitor
from ganvas.training.losses import get_loss
from ganvas.training.plots import plot_training_curves
from ganvas.training.regularizers import gradient_penalty, r1_penalty
from ganvas.training.run_dir import describe, new_run_dir, prepare_out_dir
from ganvas.training.signals import GracefulStop
from ganvas.training.stats import MetricsLog, StatsCollector
from ganvas.utils.device import resolve_device, resolve_precision
from ganvas.utils.files import atomic_write_text
from ganvas.utils.images import make_grid, save_image

DEFAULT_STEPS = 10_000
EXPLODING_LOSS = 1e6  # a loss beyond this is treated like NaN: the run has diverged
# Settings that define the data or the networks; changing them on resume would not continue
# the same run, so --resume refuses them.
FIXED_ON_RESUME = ("resolution", "channels", "mirror", "model", "latent_dim",
                   "model_options", "seed", "runs_dir", "spectral_norm", "ema")


def log_line(message: str) -> None:
    """Print above any progress bar, to stderr, so stdout stays clean for scripts."""
    tqdm.write(message, file=sys.stderr)


def resolve_auto_settings(config: TrainConfig) -> TrainConfig:
    """Fill resolution/channels left on auto from the kind of data."""
    builtin = parse_builtin(config.data) is not None
    return config.replace(
        resolution=config.resolution or (28 if builtin else 64),
        channels=config.channels or (1 if builtin else 3),
    )


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
                 state: dict[str, Any] | None = None, state_source: str = "checkpoint"):
        self.config = config = resolve_auto_settings(config.validate())
        self.run_dir = Path(run_dir)
        self.callbacks = list(callbacks)
        if config.health:
            from ganvas.training.health import HealthMonitor

            self.callbacks.append(HealthMonitor())
        if config.fid_every and not any(isinstance(cb, FIDMonitor) for cb in self.callbacks):
            self.callbacks.append(FIDMonitor(config.fid_every, config.fid_num, config.inception))
        self.progress = progress
        self.log = log
        self.device = resolve_device(config.device)
        self.autocast_dtype = resolve_precision(config.precision, self.device)

        # Same seed -> same initial weights, whatever the device: build on CPU, then move.
        torch.manual_seed(config.seed)
        generator, discriminator = build_models(
            config.model, resolution=config.resolution, channels=config.channels,
            latent_dim=config.latent_dim, options=config.model_options)
        if config.spectral_norm:
            apply_spectral_norm(discriminator)
        # channels_last lets oneDNN/cuDNN pick their fastest convolution kernels (about 25 %
        # faster for the lesson's DCGAN on 2 CPU cores); it changes layout, not values.
        self.generator = generator.to(self.device, memory_format=torch.channels_last)
        self.discriminator = discriminator.to(self.device, memory_format=torch.channels_last)
        self.ema = (GeneratorEMA(self.generator, config.ema_kimg) if config.ema else None)
        # Batch statistics would mix real and generated images if D saw them in one batch.
        self._joint_batches = not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                                      for m in self.discriminator.modules())
        self.loss = get_loss(config.loss, config.label_smoothing)
        self.gp_weight = (config.gp_weight if config.gp_weight is not None
                          else 10.0 if self.loss.needs_gradient_penalty else 0.0)
        self.opt_g = _adam(self.generator, config.lr_g, (config.beta1, config.beta2))
        self.opt_d = _adam(self.discriminator, config.lr_d, (config.beta1, config.beta2))
        self.gate = BalanceGate(config.d_skip_below, config.d_accuracy_band)
        self.augment = build_augment(config.augment, seed=config.seed,
                                     batch_size=config.batch_size,
                                     diffaugment_policy=config.diffaugment_policy,
                                     ada_target=config.ada_target, ada_kimg=config.ada_kimg)
        self.step = 0
        self.elapsed = 0.0  # training seconds over all sessions of this run
        self.rollbacks = 0
        if state is not None:  # before the data, so a bad checkpoint fails fast
            self._restore_networks(state, state_source)

        self.data = load_images(config.data, resolution=config.resolution,
                                channels=config.channels, workers=config.workers,
                                max_image_pixels=config.max_image_pixels, progress=progress,
                                log=log)
        if config.steps is None:
            per_epoch = len(self.data) / config.batch_size
            steps = math.ceil(config.epochs * per_epoch) if config.epochs else DEFAULT_STEPS
            steps = min(steps, LIMITS["steps"])
            self.config = config = config.replace(steps=max(1, steps), epochs=None)
        if config.instance_noise and config.instance_noise_steps is None:
            # Fixed now, so extending the run later does not bring the noise back.
            self.config = config = config.replace(instance_noise_steps=config.steps)
        self.stream = BatchStream(self.data.images, config.batch_size, seed=config.seed,
                                  mirror=config.mirror, device=self.device)
        # Every random stream of the loop is its own CPU generator: results do not depend on
        # the device, and nothing else (sampling, logging, monitoring) can shift them.
        self.latent_rng = torch.Generator().manual_seed(config.seed)
        self.noise_rng = torch.Generator().manual_seed(config.seed + 2)
        self.fixed_latents = torch.randn(config.num_samples, config.latent_dim,
                                         generator=torch.Generator().manual_seed(config.seed + 1))
        self.stats = StatsCollector()
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl")
        self._stop_reason: str | None = None
        self._diverged = False
        self._in_step = False
        self._good_checkpoint: Path | None = None
        if state is not None:
            self._restore_progress(state, state_source)
            self._good_checkpoint = Path(state_source) if Path(state_source).is_file() else None

    # ---- the loop ---------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        c = self.config
        self._announce()
        if self._good_checkpoint is None:  # something to roll back to if training diverges
            self.save_checkpoint()
        for callback in self.callbacks:
            callback.on_train_start(self)
        tick_images, tick_start = 0, time.perf_counter()
        # Redrawing often is fine on a terminal but floods a log file.
        interval = 0.5 if sys.stderr.isatty() else 30.0
        bar = tqdm(total=c.steps, initial=self.step, disable=not self.progress, unit="step",
                   dynamic_ncols=True, file=sys.stderr, desc="training", mininterval=interval)
        with GracefulStop(self.log) as signals, bar, self._checkpoint_on_crash():
            while self.step < c.steps:
                self._in_step = True  # a crash in here leaves a half-updated state
                self.train_step()
                self.step += 1
                self._in_step = False
                tick_images += c.batch_size * c.n_critic
                bar.update(1)
                for callback in self.callbacks:
                    callback.on_step_end(self)
                stopping = signals.received is not None or self._stop_reason is not None
                # Once per tick: statistics, then the slower housekeeping on its own schedule.
                # A stop between ticks keeps its partial statistics in the checkpoint instead,
                # so a resumed run ticks (and auto-balances) exactly where it would have.
                seconds = time.perf_counter() - tick_start
                if self.step % c.log_every == 0 or self.step == c.steps:
                    self.elapsed += seconds
                    self._tick(bar, tick_images / max(seconds, 1e-9))
                    tick_images, tick_start = 0, time.perf_counter()
                    bar.n = self.step  # a rollback moves the step back
                    stopping = stopping or self._stop_reason is not None
                elif stopping:
                    self.elapsed += seconds
                if self.step % c.sample_every == 0:
                    self.save_samples()
                if self.step % c.checkpoint_every == 0 and self.step < c.steps:
                    self.save_checkpoint()
                if stopping:
                    break
        interrupted = self.step < c.steps
        result = self._finish(interrupted)
        for callback in self.callbacks:
            callback.on_train_end(self, result)
        return result

    @contextlib.contextmanager
    def _checkpoint_on_crash(self):
        """No work is lost: an unexpected error (or a second Ctrl-C) still leaves a checkpoint
        of the last completed step, then the error goes on to the caller."""
        try:
            yield
        except BaseException:
            existing = ckpt.checkpoint_path(self.run_dir, self.step)
            if self.step and not self._in_step and not existing.exists() \
                    and self._weights_finite():
                with contextlib.suppress(Exception):
                    path = ckpt.save_checkpoint(ckpt.checkpoint_path(self.run_dir, self.step),
                                                self.state_dict())
                    self.log(f"saved {path} before stopping; continue with: "
                             f"ganvas train --resume {self.run_dir}")
            raise

    def train_step(self) -> None:
        """One round of the two-player game: D updates (n_critic times), then G once."""
        c, G, D = self.config, self.generator, self.discriminator
        simultaneous = c.update == "simultaneous"

        # 1. Discriminator: real images should score "real", generated ones "fake".
        for i in range(c.n_critic):
            real = self.stream.next()
            z = torch.randn(len(real), c.latent_dim, generator=self.latent_rng)
            last = i == c.n_critic - 1
            # Only the last batch of fakes is reused by the generator step and needs a graph.
            with torch.set_grad_enabled(last), self.forward_precision():
                fake = G(z.to(self.device, non_blocking=True))
            # Augmentation, noise, penalties and monitors all see float32 images.
            fake = fake.float()
            if simultaneous and last:
                self.joint_step(real, fake)
                break
            self.discriminator_step(real, fake)

        # 2. Generator: with D frozen, make D call the same fakes "real".
        if not simultaneous:
            update_g = self.gate.update_generator()
            if update_g:
                D.requires_grad_(False)
                loss_g = self.loss.generator_loss(self.discriminate(self.discriminator_view(fake)))
                self.opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                self.stats.report("Grad/G", _grad_norm(G))
                self.opt_g.step()
                D.requires_grad_(True)
                self.stats.report("Loss/G", loss_g)
            self.stats.report("G/skipped", 0.0 if update_g else 1.0)

        # 3. The moving average of G that samples and exports use.
        if self.ema is not None:
            self.ema.update(G, len(fake), (self.step + 1) * c.batch_size)

    def joint_step(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        """Both players from one forward of D on the fakes, as TensorFlow's DCGAN tutorial
        does with two gradient tapes: D's loss is differentiated for D's weights only, G's
        loss for G's weights only, and both step from the same position."""
        G, D = self.generator, self.discriminator
        total, fake_logits, update_d = self.discriminator_losses(real, fake)
        update_g = self.gate.update_generator()
        loss_g = self.loss.generator_loss(fake_logits)
        d_params = [p for p in D.parameters() if p.requires_grad]
        g_params = [p for p in G.parameters() if p.requires_grad]
        # Both backward passes read the same graph, so no weight may change before both ran.
        if update_d:
            self.opt_d.zero_grad(set_to_none=True)
            total.backward(inputs=d_params, retain_graph=update_g)
        if update_g:
            self.opt_g.zero_grad(set_to_none=True)
            loss_g.backward(inputs=g_params)
            self.stats.report("Grad/G", _grad_norm(G))
        if update_d:
            self.opt_d.step()
        if update_g:
            self.opt_g.step()
        self.stats.report("Loss/G", loss_g)
        self.stats.report("G/skipped", 0.0 if update_g else 1.0)

    def discriminator_losses(self, real: torch.Tensor, fake: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """D's loss with its penalties, its statistics, and whether the gate lets it update.

        Returns ``(loss to minimise, logits on the fakes, update)``. ``fake`` may carry G's
        graph (the simultaneous update); penalties never differentiate into G.
        """
        c, D = self.config, self.discriminator
        lazy_r1 = c.r1_gamma > 0 and self.step % c.r1_every == 0
        if lazy_r1:  # R1 differentiates D with respect to the (un-augmented) real images
            real = real.detach().requires_grad_(True)
        real_seen, fake_seen = self.discriminator_view(real), self.discriminator_view(fake)
        if self._joint_batches and len(real_seen) == len(fake_seen):
            # One forward of twice the batch uses the CPU better than two (about 9 % of a
            # step for the lesson's DCGAN); without BatchNorm in D each image's score is
            # independent of the others, so nothing but speed changes.
            real_logits, fake_logits = self.discriminate(
                torch.cat([real_seen, fake_seen])).chunk(2)
        else:
            real_logits, fake_logits = self.discriminate(real_seen), self.discriminate(fake_seen)
        loss_d = self.loss.discriminator_loss(real_logits, fake_logits)
        total = loss_d
        if self.gp_weight:  # its own forward of D, outside autocast: a gradient norm in float32
            penalty = gradient_penalty(D, real_seen, fake_seen.detach(),
                                       generator=self.noise_rng)
            total = total + self.gp_weight * penalty
            self.stats.report("Loss/GP", penalty)
        if lazy_r1:
            penalty = r1_penalty(real_logits, real)
            total = total + (c.r1_gamma / 2) * c.r1_every * penalty
            self.stats.report("Loss/R1", penalty)
        threshold = self.loss.decision_threshold
        self.augment.observe(real_logits - threshold)
        real_detached, fake_detached = real_logits.detach(), fake_logits.detach()
        accuracy = ((real_detached > threshold).float().mean()
                    + (fake_detached <= threshold).float().mean()) / 2
        update = self.gate.update_discriminator(loss_d.detach(), accuracy)
        self.stats.report("Loss/D", loss_d)
        self.stats.report("D/accuracy", accuracy)
        self.stats.report("D/skipped", 0.0 if update else 1.0)
        to_score = torch.sigmoid if self.loss.probabilistic else (lambda t: t)
        self.stats.report("D/real", to_score(real_detached))
        self.stats.report("D/fake", to_score(fake_detached))
        return total, fake_logits, update

    def discriminator_step(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        """One update of D alone on a batch of real and (detached) generated images."""
        total, _, update = self.discriminator_losses(real, fake.detach())
        if update:
            self.opt_d.zero_grad(set_to_none=True)
            total.backward()
            self.opt_d.step()

    def discriminate(self, images: torch.Tensor) -> torch.Tensor:
        """D's float32 logits for what it sees, its forward in the training precision."""
        with self.forward_precision():
            return self.discriminator(images).float()

    def forward_precision(self) -> contextlib.AbstractContextManager:
        """bf16 autocast for the training forward passes when --precision resolved to it.
        Backward passes run outside it, in the dtypes autocast chose for each operation."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def discriminator_view(self, images: torch.Tensor) -> torch.Tensor:
        """What D sees of an image batch: augmented, plus decaying instance noise."""
        images = self.augment(images)
        sigma = self.instance_noise_sigma()
        if sigma > 0:
            noise = torch.randn(images.shape, generator=self.noise_rng)
            images = images + sigma * noise.to(images.device, images.dtype)
        return images

    def instance_noise_sigma(self) -> float:
        c = self.config
        if not c.instance_noise:
            return 0.0
        return c.instance_noise * max(0.0, 1.0 - self.step / c.instance_noise_steps)

    def request_stop(self, reason: str) -> None:
        """Ask the loop to stop after the current step (used by callbacks)."""
        self._stop_reason = reason
        self.log(f"stopping: {reason}")

    def set_learning_rates(self, *, g: float | None = None, d: float | None = None) -> None:
        for optimizer, lr in ((self.opt_g, g), (self.opt_d, d)):
            if lr is not None:
                for group in optimizer.param_groups:
                    group["lr"] = lr

    @property
    def learning_rates(self) -> tuple[float, float]:
        return self.opt_g.param_groups[0]["lr"], self.opt_d.param_groups[0]["lr"]

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
        if self._good_checkpoint is None or not self._good_checkpoint.is_file():
            candidates = ckpt.list_checkpoints(self.run_dir)
            self._good_checkpoint = candidates[-1] if candidates else None
        if self._good_checkpoint is None:
            self.request_stop(f"training diverged at step {failed_step} ({reason}) and there "
                              "is no checkpoint to roll back to")
            return False
        state = ckpt.load_checkpoint(self._good_checkpoint)
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
        record: dict[str, Any] = {
            "step": self.step,
            "epoch": round(self.stream.epoch, 4),
            "kimg": round(self.step * self.config.batch_size / 1000, 3),
            "time": round(self.elapsed, 2),
            **{k: round(v, 6) for k, v in self.stats.collect().items()},
            "LR/G": lr_g,
            "LR/D": lr_d,
            "Speed/img_per_s": round(images_per_second, 1),
        }
        if self.config.augment != "none":
            record["Augment/p"] = round(self.augment.p, 5)
        if self.config.instance_noise:
            record["Noise/sigma"] = round(self.instance_noise_sigma(), 5)
        problem = self._divergence(record)
        if problem:
            self.metrics.append(record)
            self.rollback(problem)
            return
        for callback in self.callbacks:  # may add fields (the health monitor's diversity)
            callback.on_tick(self, record)
        self.metrics.append(record)
        bar.set_postfix_str(
            f"D {record.get('Loss/D', float('nan')):.3f} G {record.get('Loss/G', float('nan')):.3f}"
            f" D(x) {record.get('D/real', float('nan')):.2f}"
            f" D(G(z)) {record.get('D/fake', float('nan')):.2f}"
            f" {images_per_second:.0f} img/s ep {self.stream.epoch:.1f}", refresh=False)

    @property
    def sampling_generator(self) -> torch.nn.Module:
        """The network samples come from: the moving average when --ema is on."""
        return self.ema.average if self.ema is not None else self.generator

    @torch.inference_mode()
    def render(self, latents: torch.Tensor, network: torch.nn.Module | None = None
               ) -> torch.Tensor:
        """Latents through a generator in eval mode (no BatchNorm statistics change)."""
        network = network or self.sampling_generator
        was_training = network.training
        network.eval()
        try:
            return network(latents.to(self.device)).float().cpu()
        finally:
            network.train(was_training)

    def save_samples(self, name: str | None = None) -> Path:
        """Sample grid and loss curves; a failure to write them is a warning, not a crash."""
        path = self.run_dir / "samples" / (name or f"step-{self.step:07d}.png")
        try:
            save_image(make_grid(self.render(self.fixed_latents)), path)
            plot_training_curves(self.metrics.read(), self.run_dir / "loss.png")
        except (GanvasError, OSError) as exc:
            self.log(f"warning: could not write the sample grid or loss curves: {exc}")
        return path

    def state_dict(self) -> dict[str, Any]:
        rng = {
            "latent": self.latent_rng.get_state(),
            "noise": self.noise_rng.get_state(),
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": _numpy_state(),
        }
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        state = {
            "config": self.config.to_dict(),
            "step": self.step,
            "elapsed": self.elapsed,
            "rollbacks": self.rollbacks,
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "augment": self.augment.state_dict(),
            "stats": self.stats.state_dict(),
            "balance": self.gate.state_dict(),
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
        try:
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:
            raise GanvasError(f"{where}: optimiser state does not fit the networks "
                              f"({type(exc).__name__}: {str(exc)[:100]})") from None
        _check_optimizer_shapes(self.opt_g, where)
        _check_optimizer_shapes(self.opt_d, where)
        try:
            self.step = int(state["step"])
            self.elapsed = float(state.get("elapsed", 0.0))
            self.rollbacks = max(self.rollbacks, int(state.get("rollbacks", 0)))
        except (TypeError, ValueError, OverflowError):
            raise GanvasError(f"{where}: step, time or rollback count is damaged") from None

    def _restore_progress(self, state: dict[str, Any], where: str) -> None:
        try:
            position = state["data"]["position"]
            if not isinstance(position, int) or position < 0:
                raise ValueError(f"data position {position!r:.40}")
            self.stream.load_state_dict(state["data"])
            if state.get("augment"):
                self.augment.load_state_dict(state["augment"])
            if state.get("stats"):
                self.stats.load_state_dict(state["stats"])
            if state.get("balance"):
                self.gate.load_state_dict(state["balance"])
            for callback in self.callbacks:
                saved = state.get("callbacks", {}).get(type(callback).__name__)
                if saved is not None:
                    callback.load_state_dict(saved)
            rng = state["rng"]
            self.latent_rng.set_state(rng["latent"])
            if "noise" in rng:
                self.noise_rng.set_state(rng["noise"])
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
        """Write a checkpoint unless the weights are broken (then roll back instead)."""
        if not self._weights_finite():
            self.rollback("the weights contain NaN or infinity")
            return None
        path = ckpt.save_checkpoint(ckpt.checkpoint_path(self.run_dir, self.step),
                                    self.state_dict())
        self._good_checkpoint = path
        ckpt.prune_checkpoints(self.run_dir, self.config.keep_checkpoints)
        return path

    def _announce(self) -> None:
        c = self.config
        g = sum(p.numel() for p in self.generator.parameters()) / 1e6
        d = sum(p.numel() for p in self.discriminator.parameters()) / 1e6
        self.log(f"run folder: {self.run_dir}")
        self.log(f"data: {self.data.source}")
        self.log(f"model: {c.model} {c.resolution}px x{c.channels} (G {g:.2f}M, D {d:.2f}M "
                 f"parameters), loss {c.loss}, batch {c.batch_size}, on {self.device}"
                 f"{' in mixed bf16' if self.autocast_dtype is not None else ''}")
        if self.step:
            self.log(f"resuming at step {self.step} of {c.steps}")

    def _finish(self, interrupted: bool) -> TrainResult:
        checkpoint = self.save_checkpoint() or self._good_checkpoint
        samples = self.save_samples("final.png")
        generator_dir = save_generator(self.run_dir / "generator", self.sampling_generator,
                                       self.config.to_dict(), step=self.step,
                                       ema=self.ema is not None, ganvas_version=__version__)
        if interrupted and not self._diverged:
            self.log(f"stopped at step {self.step} of {self.config.steps}; checkpoint saved. "
                     f"Continue with: ganvas train --resume {self.run_dir}")
        return TrainResult(self.run_dir, self.step, checkpoint, samples, generator_dir,
                           interrupted, self._diverged)


def _check_optimizer_shapes(optimizer: torch.optim.Optimizer, where: str) -> None:
    """Adam's settings and moments must be sane, or the first step fails obscurely."""
    for group in optimizer.param_groups:
        lr, betas, eps = group.get("lr"), group.get("betas"), group.get("eps")
        sane = (isinstance(lr, (int, float)) and 0 < lr <= 10
                and isinstance(betas, (list, tuple)) and len(betas) == 2
                and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas)
                and isinstance(eps, (int, float)) and 0 < eps < 1)
        if not sane:
            raise GanvasError(f"{where}: optimiser settings are damaged (lr, betas or eps)")
        for param in group["params"]:
            for name, value in optimizer.state.get(param, {}).items():
                if (isinstance(value, torch.Tensor) and value.dim() > 0
                        and value.shape != param.shape):
                    raise GanvasError(f"{where}: optimiser state '{name}' does not fit the "
                                      "network (damaged checkpoint)")
                if isinstance(value, torch.Tensor) and not torch.isfinite(value).all():
                    raise GanvasError(f"{where}: optimiser state '{name}' holds NaN or "
                                      "infinity (damaged checkpoint)")
                if name == "step" and (float(value) < 0 or not float(value).is_integer()):
                    raise GanvasError(f"{where}: optimiser step count is damaged")


def _adam(module: torch.nn.Module, lr: float, betas: tuple[float, float]
          ) -> torch.optim.Adam:
    """Adam with the fused kernel where this PyTorch has it for the device: one pass over
    all weights instead of a dozen small operations per tensor (about 5 % of a step for the
    lesson's DCGAN on 2 CPU cores)."""
    params = list(module.parameters())
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, ValueError, TypeError):  # older torch or an unsupported device
        return torch.optim.Adam(params, lr=lr, betas=betas)


def _grad_norm(module: torch.nn.Module) -> torch.Tensor:
    norms = [p.grad.detach().norm() for p in module.parameters() if p.grad is not None]
    return torch.stack(norms).norm() if norms else torch.zeros(())


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
    config = resolve_auto_settings(config)
    from ganvas.models.registry import make_spec

    # Reject a bad model/resolution/option before any decoding or folder creation.
    make_spec(config.model, resolution=config.resolution, channels=config.channels,
              latent_dim=config.latent_dim, options=config.model_options)
    get_loss(config.loss, config.label_smoothing)
    resolve_device(config.device)
    if config.fid_every and not any(isinstance(cb, FIDMonitor) for cb in callbacks):
        from ganvas.metrics.inception import resolve_weights

        resolve_weights(config.inception, log=log)  # no weights: say so before any work
    if config.out:
        run_dir = prepare_out_dir(config.out)
    else:
        run_dir = new_run_dir(config.runs_dir, describe(config.data, config.model,
                                                        config.resolution))
    try:
        trainer = Trainer(config, run_dir, callbacks=callbacks, progress=progress, log=log)
    except BaseException:
        # Nothing was trained: do not leave an empty numbered folder behind.
        for leftover in (run_dir / "metrics.jsonl",):
            leftover.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            run_dir.rmdir()
        raise
    atomic_write_text(run_dir / "config.yaml", dump_yaml(trainer.config))
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
    if path.is_file():
        state, source = ckpt.load_checkpoint(path), path
        if path.parent.name == ckpt.CHECKPOINT_DIR and out is None:
            run_dir = path.parent.parent
        elif out is not None:
            run_dir, new_folder = Path(out), True  # created once the settings are checked
        else:
            raise GanvasError(f"--resume {path}: this checkpoint is not inside a run folder's "
                              "checkpoints/; add --out DIR to continue it in a new run folder")
    elif path.is_dir():
        source, state = ckpt.latest_checkpoint(path, warn=log)
        run_dir = path
        if out is not None and Path(out).resolve() != path.resolve():
            raise GanvasError("--out cannot change when resuming a run folder")
    else:
        raise GanvasError(f"--resume {path}: no such run folder or checkpoint file")
    try:
        saved = TrainConfig.from_dict(state["config"], source="saved config").validate()
    except GanvasError as exc:
        raise GanvasError(f"{source}: {exc}") from None
    changed = [k for k, v in overrides.items()
               if k in FIXED_ON_RESUME and v is not None and _plain(v) != _plain(getattr(saved, k))]
    if changed:
        flags = ", ".join("--model-option" if k == "model_options" else
                          "--" + k.replace("_", "-") for k in changed)
        raise GanvasError(f"{flags} cannot change when resuming (they define the run's "
                          "networks); start a new run instead")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "epochs" in overrides:
        overrides.setdefault("steps", None)
    config = TrainConfig.from_dict({**saved.to_dict(), **overrides}, source="--resume")
    if config.steps is not None and config.steps <= state["step"]:  # before loading any data
        raise GanvasError(f"{run_dir} has already trained {state['step']} steps; give a larger "
                          f"--steps (a new total) to continue it")
    if new_folder:
        run_dir = prepare_out_dir(run_dir)
    try:
        trainer = Trainer(config, run_dir, callbacks=callbacks, progress=progress, log=log,
                          state=state, state_source=str(source))
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
        more = ("--epochs (a new total)" if "epochs" in overrides
                else "--steps (a new total)")
        raise GanvasError(f"{run_dir} has already trained {trainer.step} steps "
                          f"({trainer.step * config.batch_size / len(trainer.data):.1f} epochs); "
                          f"give a larger {more} to continue it")
    _set_aside_newer_checkpoints(run_dir, trainer.step, log)
    if overrides.keys() & {"lr_g", "lr_d", "d_skip_below", "d_accuracy_band"}:
        trainer.save_checkpoint()  # so a rollback returns to the new settings, not the old
    trainer.metrics.truncate_after(trainer.step)
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
