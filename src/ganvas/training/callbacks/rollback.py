"""Divergence: a loss that is NaN or explodes, or weights that are, sends the run back to
its last good checkpoint with halved learning rates, up to --max-rollbacks times; after
that, training stops at the last good state and says so.

The check runs at the tick (on the record's losses) and whenever a checkpoint is about to
be written (on the weights); either way the rollback is a request the tick serves, so the
step counter moves back in one place.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ganvas.runs import checkpoint as ckpt
from ganvas.training import state as run_state

if TYPE_CHECKING:
    from ganvas.training.loop import Trainer

EXPLODING_LOSS = 1e6  # a loss beyond this is treated like NaN: the run has diverged


def divergence(trainer: Trainer, record: dict[str, Any]) -> str | None:
    """Why the run diverged, in words, or None."""
    for key in ("Loss/D", "Loss/G"):
        value = record.get(key)
        if value is not None and not math.isfinite(value):
            return f"{key} is {value}"
        if value is not None and abs(value) > EXPLODING_LOSS:
            return f"{key} exploded to {value:.3g}"
    if not weights_finite(trainer):
        return "the weights contain NaN or infinity"
    return None


def weights_finite(trainer: Trainer) -> bool:
    params = [*trainer.generator.parameters(), *trainer.discriminator.parameters()]
    return bool(torch.isfinite(torch.stack([p.detach().sum() for p in params])).all())


def roll_back(trainer: Trainer, reason: str) -> bool:
    """Return to the last good checkpoint with halved learning rates; False once the
    allowance (--max-rollbacks) is used up, after which training stops. Every process
    calls it together."""
    t, c = trainer, trainer.config
    failed_step = t.step

    def last_good() -> Path | None:
        if t.good_checkpoint is not None and t.good_checkpoint.is_file():
            return t.good_checkpoint
        candidates = ckpt.list_checkpoints(t.run_dir)
        return candidates[-1] if candidates else None

    t.good_checkpoint = good = t.strategy.share(last_good)
    if good is None:
        t.request_stop(f"training diverged at step {failed_step} ({reason}) and there "
                       "is no checkpoint to roll back to")
        return False
    state = t.strategy.share(lambda: ckpt.load_checkpoint(good))
    run_state.restore_networks(t, state, str(good))
    run_state.restore_progress(t, state, str(good))
    if t.rollbacks >= c.max_rollbacks:
        t.metrics.truncate_after(t.step)
        t.diverged = True
        t.log_event(
            "divergence", f"Training diverged at step {failed_step} ({reason}) after "
            f"{t.rollbacks} rollback(s); stopped at the last good state (step "
            f"{t.step}). Try lower learning rates (--lr-g, --lr-d), --spectral-norm or "
            "--r1-gamma.", reason=reason, rollbacks=t.rollbacks)
        t.stop_reason = "training diverged"
        return False
    t.rollbacks += 1
    # Halve relative to the checkpoint's rates once per rollback since it was written.
    factor = 0.5 ** (t.rollbacks - int(state.get("rollbacks", 0)))
    lr_g, lr_d = t.learning_rates
    t.set_learning_rates(g=lr_g * factor, d=lr_d * factor)
    t.metrics.truncate_after(t.step)
    t.log_event(
        "rollback", f"Training diverged at step {failed_step} ({reason}): rolled back to "
        f"step {t.step} and lowered the learning rates to lr-g {lr_g * factor:.3g}, "
        f"lr-d {lr_d * factor:.3g} (rollback {t.rollbacks} of {c.max_rollbacks}).",
        reason=reason, rollbacks=t.rollbacks, failed_step=failed_step)
    return True
