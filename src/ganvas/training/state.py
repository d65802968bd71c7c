"""A run's state: what a checkpoint holds, the health monitor's in-memory snapshots, and
restoring both.

A checkpoint is everything needed to continue *exactly*: the config, the clock (step,
images seen, training time, rollbacks), the networks and the moving average, the recipe's
optimisers and streams, the statistics since the last tick, every callback's own state, the
data position and every random generator. A snapshot is only the networks and their
optimisers: the monitor's way back to an earlier state that training then continues from.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch

from ganvas import __version__
from ganvas.errors import GanvasError
from ganvas.models.export import load_weights
from ganvas.runs.rng_state import capture_global_rng, restore_global_rng

if TYPE_CHECKING:
    from ganvas.training.loop import Trainer


def run_state(trainer: Trainer) -> dict[str, Any]:
    """The checkpoint of ``trainer`` as it stands (tensors and plain values only)."""
    t = trainer
    state = {
        "config": t.config.to_dict(),
        "step": t.step,
        "images_seen": t.images_seen,
        "elapsed": t.elapsed,
        "rollbacks": t.rollbacks,
        "generator": t.generator.state_dict(),
        "discriminator": t.discriminator.state_dict(),
        **t.recipe.state_dict(),
        "stats": t.stats.state_dict(),
        "callbacks": {name: saved for name, saved in
                      ((type(cb).__name__, cb.state_dict()) for cb in t.callbacks)
                      if saved is not None},
        "data": t.stream.state_dict(),
        "dataset": {"source": t.data.source, "num_images": len(t.data)},
        "rng": {"latent": t.latent_rng.get_state(), **capture_global_rng(),
                **({"labels": t.labels.rng.get_state()} if t.labels is not None else {})},
        "ganvas_version": __version__,
    }
    if t.ema is not None:
        state["generator_ema"] = t.ema.average.state_dict()
    return state


def snapshot(trainer: Trainer) -> dict[str, Any]:
    """A copy of the networks and their optimisers, not of the clock, the data position or
    the random streams."""
    t = trainer
    state = {"generator": t.generator.state_dict(),
             "discriminator": t.discriminator.state_dict(),
             "opt_g": t.opt_g.state_dict(), "opt_d": t.opt_d.state_dict()}
    if t.ema is not None:
        state["generator_ema"] = t.ema.average.state_dict()
    return copy.deepcopy(state)


def restore_snapshot(trainer: Trainer, state: dict[str, Any]) -> None:
    """Load what :func:`snapshot` copied (the snapshot itself stays unchanged)."""
    t, state = trainer, copy.deepcopy(state)
    where = "the health monitor's best state"
    load_weights(t.generator, state["generator"], f"{where} (generator)")
    load_weights(t.discriminator, state["discriminator"], f"{where} (discriminator)")
    if t.ema is not None and "generator_ema" in state:
        load_weights(t.ema.average, state["generator_ema"], f"{where} (generator_ema)")
    t.recipe.load_optimizers(state, where)


def restore_networks(trainer: Trainer, state: dict[str, Any], where: str) -> None:
    """The networks, the average, the optimisers and the clock from a checkpoint (before
    the data is read, so a damaged checkpoint fails fast)."""
    t = trainer
    for key in ("generator", "discriminator", "generator_ema"):
        weights = state.get(key)
        if isinstance(weights, dict) and not all(
                torch.isfinite(v).all() for v in weights.values()
                if isinstance(v, torch.Tensor) and v.is_floating_point()):
            raise GanvasError(f"{where}: the {key.replace('_', ' ')} weights hold NaN or "
                              "infinity (damaged checkpoint); resume from an older one")
    load_weights(t.generator, state["generator"], f"{where} (generator)")
    load_weights(t.discriminator, state["discriminator"], f"{where} (discriminator)")
    if t.ema is not None:
        # A run that had EMA off starts its average from the current weights.
        average = state.get("generator_ema", state["generator"])
        load_weights(t.ema.average, average, f"{where} (generator_ema)")
    t.recipe.load_optimizers(state, where)
    try:
        t.step = int(state["step"])
        t.images_seen = state.get("images_seen", t.step * t.config.batch_size)
        if isinstance(t.images_seen, bool) or not isinstance(t.images_seen, int) \
                or not 0 <= t.images_seen < 2**62:
            raise ValueError("images seen")
        t.elapsed = float(state.get("elapsed", 0.0))
        t.rollbacks = max(t.rollbacks, int(state.get("rollbacks", 0)))
    except (TypeError, ValueError, OverflowError):
        raise GanvasError(f"{where}: step, images seen, time or rollback count is damaged"
                          ) from None


def restore_progress(trainer: Trainer, state: dict[str, Any], where: str) -> None:
    """The data position, the recipe's streams, the statistics, the callbacks' states and
    every random generator from a checkpoint."""
    t = trainer
    try:
        position = state["data"]["position"]
        if not isinstance(position, int) or position < 0:
            raise ValueError(f"data position {position!r:.40}")
        t.stream.load_state_dict(state["data"])
        t.recipe.load_state_dict(state)
        if state.get("stats"):
            t.stats.load_state_dict(state["stats"])
        for callback in t.callbacks:
            saved = state.get("callbacks", {}).get(type(callback).__name__)
            if saved is not None:
                callback.load_state_dict(saved)
        t.latent_rng.set_state(state["rng"]["latent"])
        if t.labels is not None:
            t.labels.rng.set_state(state["rng"]["labels"])
        restore_global_rng(state["rng"])
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError,
            AttributeError) as exc:
        raise GanvasError(f"{where}: data position or random state is damaged "
                          f"({type(exc).__name__}: {str(exc)[:100]})") from None
    dataset = state.get("dataset", {})
    if isinstance(dataset, dict) and dataset.get("num_images") not in (None, len(t.data)):
        t.log(f"warning: the data now holds {len(t.data)} images, the run started "
              f"with {dataset['num_images']}; batches will differ from the original run")
