"""The diagnoses, as pure functions of the metrics history.

Both the live monitor and ``ganvas doctor`` call :func:`diagnose` on a list of tick records
(the dicts in metrics.jsonl), so a run is judged the same way during training and after.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

WINDOW = 4  # ticks a condition must hold before it is reported
OSCILLATION_WINDOW = 8
COLLAPSE_RATIO = 0.3  # generated diversity below this fraction of the real diversity
COLLAPSE_DROP = 0.5  # ... and below this fraction of the best diversity the run has shown
DUPLICATE_SHARE = 0.5  # more than this share of samples have a near-twin


@dataclass
class Finding:
    """One diagnosed problem: a plain sentence with a remedy, and the remedy in numbers."""

    kind: str
    message: str
    changes: dict[str, Any] = field(default_factory=dict)  # what --auto-balance would set


def _values(records: list[dict[str, Any]], key: str) -> list[float]:
    return [r[key] for r in records if isinstance(r.get(key), (int, float))
            and math.isfinite(r[key])]


def _span(records: list[dict[str, Any]]) -> int:
    return records[-1]["step"] - records[0]["step"] + (records[1]["step"] - records[0]["step"]
                                                       if len(records) > 1 else 0)


def _lr(records: list[dict[str, Any]], key: str) -> float:
    return float(records[-1].get(key) or 2e-4)


def _d_dominates(record: dict[str, Any], probabilistic: bool) -> bool:
    accuracy = record.get("D/accuracy")
    if not isinstance(accuracy, (int, float)) or not accuracy >= 0.95:
        return False
    real, fake = record.get("D/real"), record.get("D/fake")
    if probabilistic and isinstance(real, (int, float)) and isinstance(fake, (int, float)):
        return real - fake >= 0.8
    return True


def _streak(recent: list[dict[str, Any]], holds) -> list[dict[str, Any]]:
    """The records at the end of ``recent`` for which ``holds`` is true, oldest first, the
    last one included. A lone record between two that hold does not end the streak: a
    discriminator that wins lets the generator catch up for a tick now and then, and that
    one tick must not hide the problem."""
    flags = [bool(holds(r)) for r in recent]
    count = 0
    for i in range(len(flags) - 1, -1, -1):
        if flags[i]:
            count += 1
        elif 0 < i < len(flags) - 1 and flags[i - 1] and flags[i + 1]:
            count += 1  # an isolated blip
        else:
            break
    return recent[len(recent) - count:]


def discriminator_wins(recent: list[dict[str, Any]], probabilistic: bool,
                       loss_name: str = "") -> Finding | None:
    streak = _streak(recent, lambda r: _d_dominates(r, probabilistic))
    if len(streak) < WINDOW:
        return None
    window = recent[-WINDOW:]
    accuracy = _values(window, "D/accuracy")
    real, fake = _values(window, "D/real"), _values(window, "D/fake")
    lr_d = _lr(window, "LR/D")
    loss = statistics.mean(_values(window, "Loss/D") or [float("nan")])
    detail = f"D loss {loss:.2g}, accuracy {statistics.mean(accuracy):.0%}"
    if probabilistic and real and fake:
        detail += f", D(x) {statistics.mean(real):.2f} vs D(G(z)) {statistics.mean(fake):.2f}"
    grads = _values(recent, "Grad/G")
    if len(grads) > WINDOW and grads[-1] < 0.1 * max(grads[:-WINDOW] or grads):
        detail += ", generator gradients vanishing"
    advice = (" The saturating loss gives the generator almost no gradient here: use --loss bce."
              if loss_name == "bce-saturating" else "")
    return Finding(
        "discriminator_wins",
        f"The discriminator is winning ({detail} for {_span(streak)} steps): try --lr-d "
        f"{lr_d / 2:.1e}, --d-skip-below 0.3 or --augment ada.{advice}",
        {"lr_d": lr_d / 2, "d_skip_below": 0.3} if probabilistic else {"lr_d": lr_d / 2})


def generator_wins(recent: list[dict[str, Any]], probabilistic: bool) -> Finding | None:
    if len(recent) < WINDOW:
        return None
    window = recent[-WINDOW:]
    accuracy = _values(window, "D/accuracy")
    if len(accuracy) < WINDOW:
        return None
    real, fake = _values(window, "D/real"), _values(window, "D/fake")
    fooled = (probabilistic and len(real) == len(fake) == WINDOW
              and all(f > r + 0.05 for r, f in zip(real, fake)))
    if not (max(accuracy) < 0.4 or fooled):
        return None
    lr_d, lr_g = _lr(window, "LR/D"), _lr(window, "LR/G")
    detail = f"D accuracy {statistics.mean(accuracy):.0%}"
    if probabilistic and real and fake:
        detail += f", D(x) {statistics.mean(real):.2f} vs D(G(z)) {statistics.mean(fake):.2f}"
    # A discriminator far slower than the generator is brought level; else it speeds up.
    new_lr_d = lr_g if lr_d < lr_g / 4 else lr_d * 2
    return Finding(
        "generator_wins",
        f"The generator is fooling a weak discriminator ({detail} for {_span(window)} steps): "
        f"try --lr-d {new_lr_d:.1e} or --n-critic 2.",
        {"lr_d": new_lr_d})


def oscillation(recent: list[dict[str, Any]]) -> Finding | None:
    window = recent[-OSCILLATION_WINDOW:]
    losses = _values(window, "Loss/G")
    if len(losses) < OSCILLATION_WINDOW:
        return None
    diffs = [b - a for a, b in zip(losses, losses[1:])]
    turns = sum(1 for a, b in zip(diffs, diffs[1:]) if a * b < 0)
    scale = statistics.mean(abs(x) for x in losses) or 1e-12
    if turns < 5 or statistics.pstdev(losses) / scale < 0.5:
        return None
    lr_g, lr_d = _lr(window, "LR/G"), _lr(window, "LR/D")
    return Finding(
        "oscillation",
        f"Training is oscillating (generator loss swings between {min(losses):.2f} and "
        f"{max(losses):.2f} over {_span(window)} steps): try lower learning rates "
        f"(--lr-g {lr_g / 2:.1e} --lr-d {lr_d / 2:.1e}) or --spectral-norm.",
        {"lr_g": lr_g / 2, "lr_d": lr_d / 2})


def mode_collapse(recent: list[dict[str, Any]]) -> Finding | None:
    """Samples that are near-copies of each other, or whose variety has shrunk.

    A young generator is not yet varied, so low diversity alone is no collapse: it must
    have fallen to half of what this run already reached, or below the floor with twins.
    """
    measured = [r for r in recent if "Health/diversity" in r]
    window = measured[-2:]
    if len(window) < 2:
        return None
    ratios = _values(window, "Health/diversity")
    duplicates = _values(window, "Health/duplicates")
    peak = max(_values(measured, "Health/diversity") or [0.0])
    low = (len(ratios) == 2 and max(ratios) < COLLAPSE_RATIO
           and max(ratios) < COLLAPSE_DROP * peak)
    twins = len(duplicates) == 2 and min(duplicates) > DUPLICATE_SHARE
    if not (low or twins):
        return None
    ratio = max(statistics.mean(ratios), 1e-3)
    share = statistics.mean(duplicates) if duplicates else 0.0
    lr_g = _lr(window, "LR/G")
    return Finding(
        "mode_collapse",
        f"Possible mode collapse: generated images are {1 / ratio:.1f}x less varied than the "
        f"real ones and {share:.0%} have a near-duplicate: try --loss hinge --spectral-norm, "
        f"--augment diffaugment or --lr-g {lr_g / 2:.1e}.",
        {"lr_g": lr_g / 2})


def diagnose(records: list[dict[str, Any]], *, probabilistic: bool = True,
             warmup: int = 0, loss_name: str = "") -> list[Finding]:
    """Every problem visible at the end of ``records`` (tick records, oldest first)."""
    ticks = [r for r in records if "event" not in r and r.get("step", 0) > warmup]
    findings = [
        discriminator_wins(ticks, probabilistic, loss_name),
        generator_wins(ticks, probabilistic),
        oscillation(ticks),
        mode_collapse(ticks),
    ]
    return [f for f in findings if f is not None]
