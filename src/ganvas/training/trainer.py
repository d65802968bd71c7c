"""The training loop: batch -> D step -> G step -> once per tick: log, samples, checkpoint.

Everything a run owns (data, models, optimisers, random streams) is created in
``Trainer.__init__`` and nowhere else, so a distributed wrapper can later take them over in
one place. ``Trainer.fit`` reads top to bottom; monitoring plugs in through callbacks.
"""

from __future__ import annotations

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
from ganvas.config import TrainConfig, dump_yaml
from ganvas.data import load_images
from ganvas.data.builtin import parse_builtin
from ganvas.data.loader import BatchStream
from ganvas.errors import GanvasError
from ganvas.models import build_models
from ganvas.models.export import load_weights, save_generator
from ganvas.training import checkpoint as ckpt
from ganvas.training.callbacks import Callback
from ganvas.training.losses import get_loss
from ganvas.training.plots import plot_training_curves
from ganvas.training.run_dir import describe, new_run_dir, prepare_out_dir
from ganvas.training.signals import GracefulStop
from ganvas.training.stats import MetricsLog, StatsCollector
from ganvas.utils.device import resolve_device
from ganvas.utils.files import atomic_write_text
from ganvas.utils.images import make_grid, save_image

DEFAULT_STEPS = 10_000
# Settings that define the data or the networks; changing them on resume would not continue
# the same run, so --resume refuses them.
FIXED_ON_RESUME = ("data", "resolution", "channels", "mirror", "model", "latent_dim",
                   "model_options", "seed", "out", "runs_dir", "max_image_pixels")


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


class Trainer:
    """Owns one run. Use :func:`train` or :func:`resume` rather than building it directly."""

    def __init__(self, config: TrainConfig, run_dir: Path, *, callbacks: Sequence[Callback] = (),
                 progress: bool = True, log: Callable[[str], None] = log_line,
                 state: dict[str, Any] | None = None, state_source: str = "checkpoint"):
        self.config = config = resolve_auto_settings(config.validate())
        self.run_dir = Path(run_dir)
        self.callbacks = list(callbacks)
        self.progress = progress
        self.log = log
        self.device = resolve_device(config.device)

        # Same seed -> same initial weights, whatever the device: build on CPU, then move.
        torch.manual_seed(config.seed)
        generator, discriminator = build_models(
            config.model, resolution=config.resolution, channels=config.channels,
            latent_dim=config.latent_dim, options=config.model_options)
        self.generator = generator.to(self.device)
        self.discriminator = discriminator.to(self.device)
        self.loss = get_loss(config.loss)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr_g,
                                      betas=(config.beta1, config.beta2))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr_d,
                                      betas=(config.beta1, config.beta2))
        self.step = 0
        self.elapsed = 0.0  # training seconds over all sessions of this run
        if state is not None:  # before the data, so a bad checkpoint fails fast
            self._restore_networks(state, state_source)

        self.data = load_images(config.data, resolution=config.resolution,
                                channels=config.channels, workers=config.workers,
                                max_image_pixels=config.max_image_pixels, progress=progress,
                                log=log)
        if config.steps is None:
            per_epoch = len(self.data) / config.batch_size
            steps = math.ceil(config.epochs * per_epoch) if config.epochs else DEFAULT_STEPS
            self.config = config = config.replace(steps=max(1, steps), epochs=None)
        self.stream = BatchStream(self.data.images, config.batch_size, seed=config.seed,
                                  mirror=config.mirror, device=self.device)
        # Latents come from their own CPU generator so results do not depend on the device
        # and nothing else (sampling, logging) can shift the training randomness.
        self.latent_rng = torch.Generator().manual_seed(config.seed)
        self.fixed_latents = torch.randn(config.num_samples, config.latent_dim,
                                         generator=torch.Generator().manual_seed(config.seed + 1))
        self.stats = StatsCollector()
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl")
        self._stop_reason: str | None = None
        if state is not None:
            self._restore_progress(state, state_source)

    # ---- the loop ---------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        c = self.config
        self._announce()
        for callback in self.callbacks:
            callback.on_train_start(self)
        tick_images, tick_start = 0, time.perf_counter()
        # Redrawing often is fine on a terminal but floods a log file.
        interval = 0.5 if sys.stderr.isatty() else 30.0
        bar = tqdm(total=c.steps, initial=self.step, disable=not self.progress, unit="step",
                   dynamic_ncols=True, file=sys.stderr, desc="training", mininterval=interval)
        with GracefulStop(self.log) as signals, bar:
            while self.step < c.steps:
                real = self.stream.next()
                self.train_step(real)
                self.step += 1
                tick_images += len(real)
                bar.update(1)
                for callback in self.callbacks:
                    callback.on_step_end(self)
                stopping = signals.received is not None or self._stop_reason is not None
                # Once per tick: statistics, then the slower housekeeping on its own schedule.
                if self.step % c.log_every == 0 or self.step == c.steps or stopping:
                    seconds = time.perf_counter() - tick_start
                    self.elapsed += seconds
                    self._tick(bar, tick_images / max(seconds, 1e-9))
                    tick_images, tick_start = 0, time.perf_counter()
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

    def train_step(self, real: torch.Tensor) -> None:
        """One round of the lesson's two-phase game on one batch of real images."""
        G, D = self.generator, self.discriminator
        z = torch.randn(len(real), self.config.latent_dim, generator=self.latent_rng)
        fake = G(z.to(self.device, non_blocking=True))

        # 1. Discriminator: real images should score "real" (1), generated ones "fake" (0).
        real_logits = D(real)
        fake_logits = D(fake.detach())
        loss_d = self.loss.discriminator_loss(real_logits, fake_logits)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()

        # 2. Generator: with D frozen, make D call the same fakes "real". Reusing `fake`
        #    saves a second generator forward pass.
        D.requires_grad_(False)
        loss_g = self.loss.generator_loss(D(fake))
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        D.requires_grad_(True)

        self.stats.report("Loss/D", loss_d)
        self.stats.report("Loss/G", loss_g)
        self.stats.report("D/real", torch.sigmoid(real_logits.detach()))
        self.stats.report("D/fake", torch.sigmoid(fake_logits.detach()))

    def request_stop(self, reason: str) -> None:
        """Ask the loop to stop after the current step (used by callbacks)."""
        self._stop_reason = reason
        self.log(f"stopping: {reason}")

    # ---- housekeeping -----------------------------------------------------------------------

    def _tick(self, bar: tqdm, images_per_second: float) -> None:
        record: dict[str, Any] = {
            "step": self.step,
            "epoch": round(self.stream.epoch, 4),
            "kimg": round(self.step * self.config.batch_size / 1000, 3),
            "time": round(self.elapsed, 2),
            **{k: round(v, 6) for k, v in self.stats.collect().items()},
            "LR/G": self.opt_g.param_groups[0]["lr"],
            "LR/D": self.opt_d.param_groups[0]["lr"],
            "Speed/img_per_s": round(images_per_second, 1),
        }
        self.metrics.append(record)
        bar.set_postfix_str(
            f"D {record.get('Loss/D', float('nan')):.3f} G {record.get('Loss/G', float('nan')):.3f}"
            f" D(x) {record.get('D/real', float('nan')):.2f}"
            f" D(G(z)) {record.get('D/fake', float('nan')):.2f}"
            f" {images_per_second:.0f} img/s ep {self.stream.epoch:.1f}", refresh=False)
        for callback in self.callbacks:
            callback.on_tick(self, record)

    @torch.inference_mode()
    def render_samples(self) -> torch.Tensor:
        """The fixed latent batch through G in eval mode (no BatchNorm statistics change)."""
        was_training = self.generator.training
        self.generator.eval()
        try:
            return self.generator(self.fixed_latents.to(self.device)).float().cpu()
        finally:
            self.generator.train(was_training)

    def save_samples(self, name: str | None = None) -> Path:
        path = self.run_dir / "samples" / (name or f"step-{self.step:07d}.png")
        save_image(make_grid(self.render_samples()), path)
        plot_training_curves(self.metrics.read(), self.run_dir / "loss.png")
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
        return {
            "config": self.config.to_dict(),
            "step": self.step,
            "elapsed": self.elapsed,
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "data": self.stream.state_dict(),
            "dataset": {"source": self.data.source, "num_images": len(self.data)},
            "rng": rng,
            "ganvas_version": __version__,
        }

    def _restore_networks(self, state: dict[str, Any], where: str) -> None:
        load_weights(self.generator, state["generator"], f"{where} (generator)")
        load_weights(self.discriminator, state["discriminator"], f"{where} (discriminator)")
        try:
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:
            raise GanvasError(f"{where}: optimiser state does not fit the networks "
                              f"({type(exc).__name__}: {str(exc)[:100]})") from None
        self.step = int(state["step"])
        self.elapsed = float(state.get("elapsed", 0.0))

    def _restore_progress(self, state: dict[str, Any], where: str) -> None:
        try:
            self.stream.load_state_dict(state["data"])
            rng = state["rng"]
            self.latent_rng.set_state(rng["latent"])
            torch.set_rng_state(rng["torch"])
            random.setstate(_as_tuple(rng["python"]))
            _set_numpy_state(rng["numpy"])
            if "cuda" in rng and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:
            raise GanvasError(f"{where}: data position or random state is damaged "
                              f"({type(exc).__name__}: {str(exc)[:100]})") from None
        dataset = state.get("dataset", {})
        if isinstance(dataset, dict) and dataset.get("num_images") not in (None, len(self.data)):
            self.log(f"warning: the data now holds {len(self.data)} images, the run started "
                     f"with {dataset['num_images']}; batches will differ from the original run")

    def save_checkpoint(self) -> Path:
        path = ckpt.save_checkpoint(ckpt.checkpoint_path(self.run_dir, self.step),
                                    self.state_dict())
        ckpt.prune_checkpoints(self.run_dir, self.config.keep_checkpoints)
        return path

    def _announce(self) -> None:
        c = self.config
        g = sum(p.numel() for p in self.generator.parameters()) / 1e6
        d = sum(p.numel() for p in self.discriminator.parameters()) / 1e6
        self.log(f"run folder: {self.run_dir}")
        self.log(f"data: {self.data.source}")
        self.log(f"model: {c.model} {c.resolution}px x{c.channels} (G {g:.2f}M, D {d:.2f}M "
                 f"parameters), loss {c.loss}, batch {c.batch_size}, on {self.device}")
        if self.step:
            self.log(f"resuming at step {self.step} of {c.steps}")

    def _finish(self, interrupted: bool) -> TrainResult:
        checkpoint = self.save_checkpoint()
        samples = self.save_samples("final.png")
        generator_dir = save_generator(self.run_dir / "generator", self.generator,
                                       self.config.to_dict(), step=self.step,
                                       ganvas_version=__version__)
        if interrupted:
            self.log(f"stopped at step {self.step} of {self.config.steps}; checkpoint saved. "
                     f"Continue with: ganvas train --resume {self.run_dir}")
        return TrainResult(self.run_dir, self.step, checkpoint, samples, generator_dir,
                           interrupted)


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
    values = config.to_dict() if isinstance(config, TrainConfig) else dict(config or {})
    config = TrainConfig.from_dict({**values, **options}, source="train()").validate()
    config = resolve_auto_settings(config)
    from ganvas.models.registry import make_spec

    # Reject a bad model/resolution/option before any decoding or folder creation.
    make_spec(config.model, resolution=config.resolution, channels=config.channels,
              latent_dim=config.latent_dim, options=config.model_options)
    get_loss(config.loss)
    resolve_device(config.device)
    if config.out:
        run_dir = prepare_out_dir(config.out)
    else:
        run_dir = new_run_dir(config.runs_dir, describe(config.data, config.model,
                                                        config.resolution))
    trainer = Trainer(config, run_dir, callbacks=callbacks, progress=progress, log=log)
    atomic_write_text(run_dir / "config.yaml", dump_yaml(trainer.config))
    return trainer.fit()


def resume(run: str | os.PathLike, *, callbacks: Sequence[Callback] = (), progress: bool = True,
           log: Callable[[str], None] = log_line, **overrides: Any) -> TrainResult:
    """Continue a run from its newest checkpoint (or from a given checkpoint file).

    ``overrides`` may extend the run (``steps=`` a new total, or ``epochs=``) or change
    housekeeping and optimiser settings; settings that define the data or the networks
    are fixed for the life of a run.
    """
    path = Path(run)
    if path.is_file():
        state, run_dir, source = ckpt.load_checkpoint(path), path.parent.parent, path
    elif path.is_dir():
        source, state = ckpt.latest_checkpoint(path, warn=log)
        run_dir = path
    else:
        raise GanvasError(f"--resume {path}: no such run folder or checkpoint file")
    config = TrainConfig.from_dict(state["config"], source=f"{path} (saved config)")
    fixed = [k for k in overrides if k in FIXED_ON_RESUME]
    if fixed:
        flags = ", ".join("--" + k.replace("_", "-") for k in fixed)
        raise GanvasError(f"{flags} cannot change when resuming (they define the run's data "
                          "and networks); start a new run instead")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "epochs" in overrides:
        overrides.setdefault("steps", None)
    config = TrainConfig.from_dict({**config.to_dict(), **overrides}, source="--resume")
    trainer = Trainer(config, run_dir, callbacks=callbacks, progress=progress, log=log,
                      state=state, state_source=str(source))
    if trainer.step >= trainer.config.steps:
        raise GanvasError(f"{run_dir} has already trained {trainer.step} steps; give a larger "
                          f"--steps (a new total) to continue it")
    trainer.metrics.truncate_after(trainer.step)
    atomic_write_text(run_dir / "config.yaml", dump_yaml(trainer.config))
    return trainer.fit()
