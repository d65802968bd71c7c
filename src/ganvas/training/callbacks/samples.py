"""Sample grids: the fixed latents through the sampling generator every --sample-every
steps' worth of images (``samples/step-NNNNNNN.png``), when a growing model completes a
resolution (``grown-NNNNpx.png``) and at the end (``final.png``), with the loss curves
(``loss.png``) beside them. Rank 0 draws; a failure to write is a warning, not a crash."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ganvas.errors import GanvasError
from ganvas.runs.plots import plot_training_curves
from ganvas.utils.images import make_grid, save_image

if TYPE_CHECKING:
    from ganvas.training.loop import Trainer


def save_samples(trainer: Trainer, name: str | None = None) -> Path:
    path = trainer.run_dir / "samples" / (name or f"step-{trainer.step:07d}.png")
    if not trainer.strategy.is_main:
        return path
    try:
        labels = trainer.labels  # a conditional run's grids: a row per class
        images = trainer.render(trainer.fixed_latents, labels=labels and labels.grid)
        save_image(make_grid(images, columns=labels and labels.columns), path)
        plot_training_curves(trainer.metrics.read(), trainer.run_dir / "loss.png")
    except (GanvasError, OSError) as exc:
        trainer.log(f"warning: could not write the sample grid or loss curves: {exc}")
        return path
    for callback in trainer.callbacks_here:
        callback.on_samples(trainer, path)
    return path


def growth_grid_name(resolution: int) -> str:
    """The grid drawn when a growing model completed ``resolution``."""
    return f"grown-{resolution:04d}px.png"
