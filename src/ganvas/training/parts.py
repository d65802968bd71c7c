"""The pieces of one run, as the session builds them and the loop runs them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ganvas.config import TrainConfig
from ganvas.distributed import Strategy


@dataclass(eq=False, repr=False)
class RunParts:
    """Everything a run owns, built in one place (:mod:`ganvas.training.session`).

    The networks, the average and the recipe come first, the data after them (a damaged
    checkpoint fails before any picture is decoded); the clock is what a checkpoint
    restored, or zero.
    """

    config: TrainConfig
    run_dir: Path
    strategy: Strategy
    device: torch.device
    autocast_dtype: torch.dtype | None
    progress: bool
    log: Callable[[str], None]
    callbacks: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # said with the run's first lines
    family: Any = None  # the ModelFamily class
    spec: Any = None  # its ModelSpec
    generator: torch.nn.Module | None = None
    discriminator: torch.nn.Module | None = None
    ema: Any = None  # GeneratorEMA, or None with --no-ema
    stats: Any = None  # the StatsCollector the recipe reports to
    recipe: Any = None  # the LossRecipe, with the optimisers
    schedule: Any = None  # images seen -> SchedulePoint
    data: Any = None  # the decoded ImageSet
    train_indices: Any = None
    held_out: Any = None
    stream: Any = None  # the BatchStream of training pictures
    latent_rng: torch.Generator | None = None
    fixed_latents: torch.Tensor | None = None  # the sample grids' latents
    labels: Any = None  # a conditional run's RunLabels (None: unconditional)
    metrics: Any = None  # the MetricsLog of metrics.jsonl
    good_checkpoint: Path | None = None  # what a rollback returns to
    step: int = 0  # the clock
    images_seen: int = 0
    elapsed: float = 0.0  # training seconds over all sessions of this run
    rollbacks: int = 0

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
    def distributed(self) -> bool:
        return self.strategy.distributed

    @property
    def learning_rates(self) -> tuple[float, float]:
        return self.recipe.learning_rates

    @property
    def sampling_generator(self) -> torch.nn.Module:
        """The network samples come from: the moving average when --ema is on."""
        return self.ema.average if self.ema is not None else self.generator

    def check_batch_split(self, batch_size: int) -> None:
        """A global batch the processes (and accumulation rounds) cannot share evenly would
        weigh some images more than others."""
        from ganvas.errors import GanvasError

        parts = self.strategy.world_size * self.config.grad_accum
        if batch_size % parts:
            who = f"{self.strategy.world_size} processes" if self.strategy.distributed else ""
            rounds = (f"{self.config.grad_accum} accumulation rounds"
                      if self.config.grad_accum > 1 else "")
            split = " x ".join(x for x in (who, rounds) if x)
            raise GanvasError(f"--batch-size {batch_size} cannot be split evenly over {split}; "
                              f"use a multiple of {parts}")
