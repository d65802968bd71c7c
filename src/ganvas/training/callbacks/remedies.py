"""Settings changed mid-run: the remedies the health monitor (with --auto-balance) and the
settings check apply, and the agreement that gives every process rank 0's decisions.

Only what can change without a new run changes here: learning rates, Adam's betas, R1's
gamma, the form of the logistic loss, augmentation turned on, the balance gate's skip
threshold. Each is saved with the config (and the optimisers), so a resumed run keeps it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ganvas.augment import build_augment
from ganvas.losses import get_loss
from ganvas.losses.criteria import LOSSES, BCELoss
from ganvas.rng import AUGMENT, stream_seed

if TYPE_CHECKING:
    from ganvas.training.loop import Trainer

LR_FLOOR = 1e-6  # remedies never lower a learning rate below this: training would stop


def apply_changes(trainer: Trainer, changes: dict[str, Any]) -> list[str]:
    """Apply the remedies that can change mid-run; returns what changed, in flag words."""
    done = []
    lr_g, lr_d = trainer.learning_rates
    for name, old in (("lr_g", lr_g), ("lr_d", lr_d)):
        if name in changes:
            new = max(float(changes[name]), LR_FLOOR)
            trainer.set_learning_rates(**{name[-1]: new})
            done.append(f"--{name.replace('_', '-')} {old:.2g} -> {new:.2g}")
    c = trainer.config
    new_betas = (float(changes.get("beta1", c.beta1)), float(changes.get("beta2", c.beta2)))
    if new_betas != (c.beta1, c.beta2):
        set_betas(trainer, *new_betas)
        done.append(f"--beta1 {c.beta1:g} --beta2 {c.beta2:g} -> --beta1 {new_betas[0]:g} "
                    f"--beta2 {new_betas[1]:g}")
    if "r1_gamma" in changes and changes["r1_gamma"] != c.r1_gamma:
        done.append(f"--r1-gamma {c.r1_gamma:g} -> {changes['r1_gamma']:g}")
        set_r1_gamma(trainer, float(changes["r1_gamma"]))
    if "loss" in changes and changes["loss"] != c.loss \
            and set_loss(trainer, str(changes["loss"])):
        done.append(f"--loss {changes['loss']}")
    if changes.get("augment") == "ada" and trainer.config.augment == "none":
        set_augment(trainer, "ada")
        done.append("--augment none -> ada")
    if "d_skip_below" in changes and trainer.gate.skip_below is None:
        trainer.gate.skip_below = changes["d_skip_below"]
        done.append(f"--d-skip-below {changes['d_skip_below']}")
    return done


def _configure(trainer: Trainer, **values: Any) -> None:
    trainer.config = trainer.recipe.config = trainer.config.replace(**values)


def set_betas(trainer: Trainer, beta1: float, beta2: float) -> None:
    """Adam's betas for both networks."""
    _configure(trainer, beta1=beta1, beta2=beta2)
    trainer.recipe.set_betas(trainer.config)


def set_loss(trainer: Trainer, name: str) -> bool:
    """Switch to loss ``name`` where only the generator's objective changes (between the
    forms of the logistic loss: bce-saturating, bce, ns); False else."""
    if not (isinstance(trainer.loss, BCELoss) and name in LOSSES
            and issubclass(LOSSES[name], BCELoss)):
        return False
    _configure(trainer, loss=name)
    trainer.recipe.criterion = get_loss(name, trainer.config.label_smoothing)
    return True


def set_augment(trainer: Trainer, name: str) -> None:
    """Turn augmentation ``name`` on (from none: ADA starts at strength 0)."""
    _configure(trainer, augment=name)
    c = trainer.config
    trainer.recipe.augment = build_augment(
        name, seed=stream_seed(c.seed, AUGMENT), diffaugment_policy=c.diffaugment_policy,
        ada_target=c.ada_target, ada_kimg=c.ada_kimg, sum_over_processes=trainer.strategy.sum)


def set_r1_gamma(trainer: Trainer, gamma: float) -> None:
    _configure(trainer, r1_gamma=gamma)


def share_decisions(trainer: Trainer) -> None:
    """Rank 0's settings after its callbacks ran (auto-balance may change rates, the
    balance gate, the loss and augmentation; a callback may ask to stop), on every
    process."""
    strategy = trainer.strategy
    if not strategy.distributed:
        return
    gate, c = trainer.gate, trainer.config
    lr_g, lr_d, skip, band, reason, betas, r1_gamma, loss, augment = strategy.agree(
        (*trainer.learning_rates, gate.skip_below, gate.accuracy_band, trainer.stop_reason,
         (c.beta1, c.beta2), c.r1_gamma, c.loss, c.augment))
    if strategy.is_main:
        return
    trainer.set_learning_rates(g=lr_g, d=lr_d)
    gate.skip_below, gate.accuracy_band = skip, band
    trainer.stop_reason = reason
    set_betas(trainer, *betas)
    set_r1_gamma(trainer, r1_gamma)
    if loss != c.loss:
        set_loss(trainer, loss)
    if augment != trainer.config.augment:
        set_augment(trainer, augment)


def check_settings(trainer: Trainer) -> None:
    """Before the first step: warn about settings far outside what is known to work
    (unless --quiet-checks; ``ganvas doctor`` checks config.yaml again), and with
    --auto-balance correct the ones that need no new run."""
    if not trainer.config.health:
        return
    from ganvas.health.settings_check import check_settings as find_risky_settings

    findings = find_risky_settings(
        trainer.config,
        generator_params=sum(p.numel() for p in trainer.generator.parameters()),
        discriminator_params=sum(p.numel() for p in trainer.discriminator.parameters()))
    if not trainer.config.quiet_checks:
        for finding in findings:
            trainer.log(f"warning: {finding.message}")
    if not trainer.config.auto_balance:
        return
    for finding in findings:
        done = apply_changes(trainer, finding.changes)
        if done:
            trainer.log_event("auto_balance", f"auto-balance ({finding.kind}): "
                              f"{', '.join(done)}.", cause=finding.kind, changes=finding.changes)
