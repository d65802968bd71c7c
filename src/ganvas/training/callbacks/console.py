"""What a run says on the console: its first lines (folder, data, model, precision, how
the batch is shared out, the schedule) and the progress bar's line at each tick. Messages
go to stderr above the bar, so stdout stays clean for scripts; processes other than rank 0
stay quiet."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from ganvas.config import LIMITS
from ganvas.picture_size import size_label

if TYPE_CHECKING:
    from ganvas.training.loop import Trainer


def log_line(message: str) -> None:
    """Print above any progress bar, to stderr, so stdout stays clean for scripts."""
    tqdm.write(message, file=sys.stderr)


def quiet(message: str) -> None:
    """The log of processes other than rank 0."""


def announce(trainer: Trainer, notes: list[str]) -> None:
    t, c = trainer, trainer.config
    g = sum(p.numel() for p in t.generator.parameters()) / 1e6
    d = sum(p.numel() for p in t.discriminator.parameters()) / 1e6
    t.log(f"run folder: {t.run_dir}")
    t.log(f"data: {t.data.source}")
    where = t.device if not t.strategy.distributed else t.device.type
    size = size_label(c.resolution, c.aspect).replace(" px", "px")
    t.log(f"model: {c.model} {size} x{c.channels} (G {g:.2f}M, D {d:.2f}M "
          f"parameters), loss {c.loss}, batch {c.batch_size}{batch_split(t)}, on "
          f"{where}{precision_words(t.autocast_dtype)}")
    plan = getattr(t.schedule, "describe", None)
    if plan is not None:
        t.log(f"schedule: {plan()}")
    for note in notes:
        t.log(note)
    if t.step:
        t.log(f"resuming at step {t.step}" + (f" of {c.steps}" if c.steps < LIMITS["steps"]
                                              else "")
              + (f" ({t.point.phase})" if t.point.phase else ""))


def batch_split(trainer: Trainer) -> str:
    """How the global batch is shared out over processes and accumulation rounds."""
    s, rounds = trainer.strategy, trainer.config.grad_accum
    if not s.distributed and rounds == 1:
        return ""
    per_process = trainer.config.batch_size // s.world_size
    parts = []
    if s.distributed:
        parts.append(f"{per_process} per process x {s.world_size} processes ({s.backend})")
    if rounds > 1:
        parts.append(f"{per_process // rounds} per pass x {rounds} accumulation rounds")
    return " = " + ", ".join(parts)


def precision_words(dtype: torch.dtype | None) -> str:
    if dtype is None:
        return ""
    if dtype == torch.float16:
        return " in mixed fp16 (gradient scaler, penalties in fp32)"
    return " in mixed bf16"


def training_bar(trainer: Trainer) -> tqdm:
    """The progress bar, counting steps; a run whose length is only a time budget has no
    step total to show (the time left is on the bar's line instead)."""
    from ganvas.utils.progress import progress_bar

    c = trainer.config
    total = None if c.time_budget and c.steps >= LIMITS["steps"] else c.steps
    return progress_bar(total=total, initial=trainer.step, enabled=trainer.progress,
                        unit="step", desc="training")


def say_stopped(trainer: Trainer) -> None:
    t = trainer
    of = f" of {t.config.steps}" if t.config.steps < LIMITS["steps"] else ""
    t.log(f"stopped at step {t.step}{of}; checkpoint saved. Continue with: ganvas train "
          f"--resume {t.run_dir}")


def show_tick(bar: tqdm, record: dict[str, Any], images_per_second: float, epoch: float,
              phase: str | None) -> None:
    """The progress bar's line: losses, D's outputs, speed, epoch, growth phase, time left."""
    nan = float("nan")
    left = record.get("Time/left")
    bar.set_postfix_str(
        f"D {record.get('Loss/D', nan):.3f} G {record.get('Loss/G', nan):.3f}"
        f" D(x) {record.get('D/real', nan):.2f} D(G(z)) {record.get('D/fake', nan):.2f}"
        f" {images_per_second:.0f} img/s ep {epoch:.1f}" + (f" {phase}" if phase else "")
        + (f" {_clock(left)} left" if left is not None else ""), refresh=False)


def _clock(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else f"{m}m{s:02d}s" if m else f"{s}s"
