"""Checkpoints: written atomically every --checkpoint-every steps' worth of images, at the
end, and after an unexpected error; the oldest pruned beyond --keep-checkpoints. A
checkpoint is never written from broken weights: the tick rolls back instead."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ganvas.distributed import PeerLost
from ganvas.runs import checkpoint as ckpt
from ganvas.training.callbacks.rollback import weights_finite

if TYPE_CHECKING:
    from ganvas.training.loop import Trainer


def save_checkpoint(trainer: Trainer) -> Path | None:
    """Write a checkpoint, or None when the weights are broken (a rollback is requested).
    Every process calls it (the statistics since the last tick are pooled); rank 0 writes."""
    t = trainer
    if not weights_finite(t):
        t.request_rollback("the weights contain NaN or infinity")
        return None
    t.stats.gather(t.strategy)
    path = ckpt.checkpoint_path(t.run_dir, t.step)
    if t.strategy.is_main:
        ckpt.save_checkpoint(path, t.state_dict())
        ckpt.prune_checkpoints(t.run_dir, t.config.keep_checkpoints)
    t.good_checkpoint = path
    return path


@contextlib.contextmanager
def checkpoint_on_crash(trainer: Trainer) -> Iterator[None]:
    """No work is lost: an unexpected error (or a second Ctrl-C) still leaves a checkpoint
    of the last completed step, then the error goes on to the caller."""
    t = trainer
    try:
        yield
    except BaseException as exc:
        existing = ckpt.checkpoint_path(t.run_dir, t.step)
        if t.strategy.is_main and t.step and not t.in_step \
                and not existing.exists() and weights_finite(t):
            with contextlib.suppress(Exception):
                path = ckpt.save_checkpoint(existing, t.state_dict())
                t.log(f"saved {path} before stopping; continue with: "
                      f"ganvas train --resume {t.run_dir}")
        if isinstance(exc, PeerLost):
            newest = ckpt.list_checkpoints(t.run_dir) if t.strategy.is_main else []
            where = f"; the last checkpoint is {newest[-1]}" if newest else ""
            raise PeerLost(f"{exc}{where}. Continue with: ganvas train --resume "
                           f"{t.run_dir}") from None
        raise
