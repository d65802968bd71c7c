"""The diagnoses, as pure functions of the metrics history.

Both the live monitor and ``ganvas doctor`` call :func:`diagnose` on a list of tick records
(the dicts in metrics.jsonl), so a run is judged the same way during training and after.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

HISTORY = 32  # recent ticks the rules look at
WINDOW = 4  # ticks a condition must hold before it is reported
OSCILLATION_WINDOW = 8
COLLAPSE_RATIO = 0.3  # generated diversity below this fraction of the real diversity
COLLAPSE_DROP = 0.5  # ... and below this fraction of the best diversity the run has shown
DUPLICATE_SHARE = 0.5  # more than this share of samples have a near-twin
# Picture signals, as ratios to the real images (1 = alike); see health/pictures.py.
BLUR = 0.2  # samples with less than this share of the reals' fine detail are blurry
GRAIN = 8.0  # ... with more than this many times it are grainy
CHECKERBOARD = 8.0  # a 2- or 4-pixel grid this many times stronger than in the reals
# Held-out reals scored this far from the training ones (as a share of the margin between
# training reals and samples): the discriminator knows its pictures, not what they show.
MEMORISING = 0.5
# ADA's overfitting heuristic r_t = E[sign(D(x))] above ADA's target, with the held-out
# images already a quarter of the way towards the samples: a discriminator on its way to
# memorising a small folder from the first ticks, reported without waiting for the gap to
# reach MEMORISING (a run without ADA; with it, r_t above target is ADA's to handle).
ADA_TARGET = 0.6
EARLY_MEMORISING = 0.25
WORSE = 1.5  # the fidelity distance this many times its best: quality got worse
STALLED_TICKS = 16  # ticks without a better fidelity ...
STALLED_SHARE = 0.5  # ... spanning at least this share of the images seen when it was best
IMPROVEMENT = 0.9  # a new best must beat the old one by 10 %: noise is no progress
SATURATED_LOSS = 0.05  # a D loss this close to 0: D is certain of every picture ...
SATURATED_GAP = 0.95  # ... or D(x) - D(G(z)) at least this
LEARNING_TICKS = 2 * WINDOW  # a new best fidelity this recently: the run is still learning


@dataclass
class Finding:
    """One diagnosed problem: a plain sentence with a remedy, and the remedy in numbers.

    ``changes`` are settings --auto-balance may change mid-run (rates, betas, penalties,
    the balance gate); ``restart`` are those that need a new run (batch size, latent size,
    widths, augmentation), for ``ganvas doctor``'s ready command.
    """

    kind: str
    message: str
    changes: dict[str, Any] = field(default_factory=dict)  # what --auto-balance would set
    restart: dict[str, Any] = field(default_factory=dict)  # what only a new run can change
    evidence: dict[str, float] = field(default_factory=dict)  # the numbers behind it


@dataclass
class RunMemory:
    """What the rules need from the whole run beyond its recent ticks: the best sample
    quality and when it was reached, and the highest diversity. The live monitor keeps it in
    its checkpointed state; ``ganvas doctor`` rebuilds it while streaming metrics.jsonl."""

    best_fidelity: float | None = None
    best_step: int | None = None
    best_kimg: float | None = None
    peak_diversity: float = 0.0
    last_fidelity: float | None = None  # the previous tick's, after the warm-up

    def update(self, record: dict[str, Any], warmup: int = 0) -> None:
        if "event" in record:
            return
        diversity = record.get("Health/diversity")
        if _finite(diversity):
            self.peak_diversity = max(self.peak_diversity, float(diversity))
        fidelity = record.get("Health/fidelity")
        if not _finite(fidelity) or record.get("step", 0) <= warmup:
            return
        # The best is a quality held over two ticks in a row (the worse of the two), not
        # one lucky tick: a generator that swings from tick to tick (StyleGAN2 on a small
        # folder: 0.68, 2.38, 1.18 ...) otherwise sets a best its samples never hold, and
        # "got worse" fires on the swing.
        held = max(float(fidelity), self.last_fidelity if self.last_fidelity is not None
                   else math.inf)
        self.last_fidelity = float(fidelity)
        if math.isfinite(held) and (self.best_fidelity is None
                                    or held < IMPROVEMENT * self.best_fidelity):
            self.best_fidelity = held
            self.best_step = int(record.get("step", 0))
            kimg = record.get("kimg")
            self.best_kimg = float(kimg) if _finite(kimg) else None

    def state_dict(self) -> dict[str, Any]:
        return {"best_fidelity": self.best_fidelity, "best_step": self.best_step,
                "best_kimg": self.best_kimg, "peak_diversity": self.peak_diversity,
                "last_fidelity": self.last_fidelity}

    @classmethod
    def from_state(cls, state: Any) -> RunMemory:
        """A memory from a checkpoint's state; damaged values are forgotten, not trusted."""
        memory = cls()
        if not isinstance(state, dict):
            return memory
        for name in ("best_fidelity", "best_kimg", "last_fidelity"):
            if _finite(state.get(name)):
                setattr(memory, name, float(state[name]))
        step = state.get("best_step")
        if isinstance(step, int) and not isinstance(step, bool) and step >= 0:
            memory.best_step = step
        if _finite(state.get("peak_diversity")):
            memory.peak_diversity = float(state["peak_diversity"])
        if memory.best_fidelity is None or memory.best_step is None:
            memory.best_fidelity = memory.best_step = memory.best_kimg = None
        return memory


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


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
                       loss_name: str = "", memory: RunMemory | None = None
                       ) -> Finding | None:
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
    vanishing = len(grads) > WINDOW and grads[-1] < 0.1 * max(grads[:-WINDOW] or grads)
    # A saturated D (it tells every picture apart with certainty) gives the generator
    # nothing to learn from, whatever the samples did so far.
    saturated = 0 <= loss <= SATURATED_LOSS or (
        probabilistic and bool(real) and bool(fake)
        and statistics.mean(real) - statistics.mean(fake) >= SATURATED_GAP)
    if vanishing:
        detail += ", generator gradients vanishing"
    elif not saturated and still_improving(recent, memory):
        # A discriminator ahead is usual early on; while the samples keep getting better
        # the generator is learning from it, so that is no problem yet.
        return None
    advice = (" The saturating loss gives the generator almost no gradient here: use --loss bce."
              if loss_name == "bce-saturating" else "")
    return Finding(
        "discriminator_wins",
        f"The discriminator is winning ({detail} for {_span(streak)} steps): try --lr-d "
        f"{lr_d / 2:.1e}, --d-skip-below 0.3 or --augment ada.{advice}",
        {"lr_d": lr_d / 2, "d_skip_below": 0.3, **({"loss": "bce"} if advice else {})}
        if probabilistic else {"lr_d": lr_d / 2})


def still_improving(recent: list[dict[str, Any]], memory: RunMemory | None) -> bool:
    """The samples reached a new best fidelity within the last ``LEARNING_TICKS`` ticks:
    the run is still learning. The fidelity of 128 samples is noisy from tick to tick, so
    only a new best (10 % better) counts, not a single tick's dip."""
    if memory is None or memory.best_step is None or not recent:
        return False
    return memory.best_step >= recent[-LEARNING_TICKS:][0]["step"]


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


def picture_problems(recent: list[dict[str, Any]], memory: RunMemory | None = None
                     ) -> list[Finding]:
    """Blur, grain and checkerboard artefacts, each held for ``WINDOW`` ticks once the
    samples have stopped getting better (a young generator's pictures are noisy and soft
    on their way to sharp ones)."""
    findings = []
    if not recent or still_improving(recent, memory):
        return findings
    lr_g, lr_d = _lr(recent, "LR/G"), _lr(recent, "LR/D")
    blurry = _held(recent, "Health/sharpness", lambda v: v < BLUR)
    if blurry:
        steps, value = blurry
        findings.append(Finding(
            "blurry_samples",
            f"Samples are blurry: they hold {value:.0%} of the real images' fine detail (edge "
            f"energy) for {steps} steps. A generator whose updates are too large averages "
            f"its pictures: try --lr-g {lr_g / 2:.1e} --lr-d {lr_d / 2:.1e}, and train "
            "longer; --loss hinge or --r1-gamma 1 give sharper gradients.",
            {"lr_g": lr_g / 2, "lr_d": lr_d / 2}, evidence={"sharpness": value}))
    checkered = _held(recent, "Health/checkerboard", lambda v: v > CHECKERBOARD)
    grainy = _held(recent, "Health/sharpness", lambda v: v > GRAIN)
    if checkered:
        steps, value = checkered
        findings.append(Finding(
            "checkerboard",
            f"Samples show a grid pattern repeating every 2 or 4 pixels (checkerboard "
            f"artefacts, {value:.1f}x stronger than in the real images for {steps} steps). "
            f"Transposed convolutions leave it when training is rough: try --lr-g "
            f"{lr_g / 2:.1e}, --r1-gamma 1, or a model that upsamples before convolving "
            "(--model progressive, msg or stylegan2).",
            {"lr_g": lr_g / 2}, evidence={"checkerboard": value}))
    elif grainy:
        steps, value = grainy
        findings.append(Finding(
            "grainy_samples",
            f"Samples are grainy: they hold {value:.1f}x the real images' fine detail (edge "
            f"energy) for {steps} steps, high-frequency noise rather than detail. Try "
            f"--lr-g {lr_g / 2:.1e} --lr-d {lr_d / 2:.1e}, --r1-gamma 1 or --spectral-norm.",
            {"lr_g": lr_g / 2, "lr_d": lr_d / 2}, evidence={"sharpness": value}))
    return findings


def _held(recent: list[dict[str, Any]], key: str, holds) -> tuple[int, float] | None:
    """(steps, mean of its last ``WINDOW`` values) where ``key``'s value satisfied
    ``holds`` for at least ``WINDOW`` ticks at the end of ``recent``; else None."""
    streak = _streak(recent, lambda r: _finite(r.get(key)) and holds(r[key]))
    if len(streak) < WINDOW:
        return None
    return _span(streak), statistics.mean(_values(streak[-WINDOW:], key))


def _memorising(record: dict[str, Any]) -> bool:
    return _finite(record.get("Health/memorisation")) \
        and record["Health/memorisation"] > MEMORISING


def _starting_to_memorise(record: dict[str, Any]) -> bool:
    return (_finite(record.get("Health/memorisation"))
            and record["Health/memorisation"] > EARLY_MEMORISING
            and _finite(record.get("D/real_sign")) and record["D/real_sign"] > ADA_TARGET)


def memorisation(recent: list[dict[str, Any]], context: dict[str, Any]) -> Finding | None:
    """Held-out real images scored like generated ones while training images score high;
    or, without ADA, r_t above ADA's target while the held-out images drift that way."""
    streak = _streak(recent, _memorising)
    if len(streak) < WINDOW and context.get("augment") != "ada":
        streak = _streak(recent, _starting_to_memorise)
    if len(streak) < WINDOW:
        return None
    window = streak[-WINDOW:]
    gap = statistics.mean(_values(window, "Health/memorisation"))
    scores = {k: statistics.mean(_values(window, f"Health/d_{k}") or [float("nan")])
              for k in ("train", "heldout", "fake")}
    signs = _values(window, "D/real_sign")
    images, held = context.get("train_images"), context.get("held_out")
    pictures = f"your {images:,} training pictures" if isinstance(images, int) else \
        "your training pictures"
    detail = (f"it scores them {scores['train']:.2f} on average but {scores['heldout']:.2f} "
              f"for {held or 'the'} held-out ones, nearer the generated images' "
              f"{scores['fake']:.2f} ({gap:.0%} of the way)")
    if signs:
        detail += f"; r_t {statistics.mean(signs):.2f}"
    lr_d = _lr(window, "LR/D")
    evidence = {"gap": gap, **{f"score_{k}": v for k, v in scores.items()}}
    if signs:
        evidence["r_t"] = statistics.mean(signs)
    if context.get("augment") == "none":
        # ADA's strength starts at 0 and grows only as far as D needs: safe to turn on
        # mid-run (--auto-balance does), unlike a fixed augmentation.
        return Finding(
            "memorisation",
            f"The discriminator is memorising {pictures} ({detail}, for {_span(streak)} "
            f"steps): it stops teaching the generator what such pictures look like. Use "
            f"--augment ada (--auto-balance turns it on now; resuming with --augment ada "
            f"does too), or give it more pictures.",
            {"augment": "ada"}, restart={"augment": "ada"}, evidence=evidence)
    return Finding(
        "memorisation",
        f"The discriminator is memorising {pictures} ({detail}, for {_span(streak)} steps): "
        f"it stops teaching the generator what such pictures look like. Start again with "
        f"--augment ada (or --augment diffaugment), or give it more pictures; meanwhile "
        f"--lr-d {lr_d / 2:.1e} slows it.",
        {"lr_d": lr_d / 2}, restart={"augment": "ada"}, evidence=evidence)


def quality_trend(recent: list[dict[str, Any]], memory: RunMemory | None) -> Finding | None:
    """Sample quality (the fidelity distance) worse than its best, or not better for long."""
    if memory is None or memory.best_fidelity is None or memory.best_step is None:
        return None
    measured = [r for r in recent if _finite(r.get("Health/fidelity"))]
    if len(measured) < WINDOW:
        return None
    best, best_step = memory.best_fidelity, memory.best_step
    lr_g, lr_d = _lr(measured, "LR/G"), _lr(measured, "LR/D")
    window = measured[-WINDOW:]
    now = statistics.median(_values(window, "Health/fidelity"))
    since = [r for r in measured if r["step"] > best_step]
    if len(since) >= WINDOW and all(r["Health/fidelity"] > WORSE * best for r in window):
        return Finding(
            "quality_worse",
            f"Sample quality got worse since step {best_step}: the fidelity distance to the "
            f"real images is {now:.3g} now, {now / best:.1f}x its best of {best:.3g} there. "
            f"Rates that suited the start are too large now: try --lr-g {lr_g / 2:.1e} "
            f"--lr-d {lr_d / 2:.1e}, resuming from the checkpoint nearest step {best_step}.",
            {"lr_g": lr_g / 2, "lr_d": lr_d / 2},
            evidence={"fidelity": now, "best": best, "best_step": float(best_step)})
    kimg, best_kimg = measured[-1].get("kimg"), memory.best_kimg
    if len(since) >= STALLED_TICKS and _finite(kimg) and best_kimg is not None \
            and kimg - best_kimg >= STALLED_SHARE * best_kimg:
        return Finding(
            "quality_stalled",
            f"Sample quality has stopped improving for {kimg - best_kimg:.0f} kimg (the "
            f"fidelity distance is {now:.3g}; its best, {best:.3g}, was at step "
            f"{best_step}). Lower rates usually "
            f"let it settle further: try --lr-g {lr_g / 2:.1e} --lr-d {lr_d / 2:.1e}; if the "
            "samples look right, the run has done what it can with these settings.",
            {"lr_g": lr_g / 2, "lr_d": lr_d / 2},
            evidence={"fidelity": now, "best": best, "kimg_since_best": kimg - best_kimg})
    return None


def diagnose(records: list[dict[str, Any]], *, probabilistic: bool = True,
             warmup: int = 0, loss_name: str = "", memory: RunMemory | None = None,
             context: dict[str, Any] | None = None) -> list[Finding]:
    """Every problem visible at the end of ``records`` (recent tick records, oldest first;
    at least the last ``HISTORY``), knowing what ``memory`` kept of the whole run.
    ``context`` may name ``train_images`` and ``held_out`` (counts) for the messages."""
    ticks = [r for r in records if "event" not in r and r.get("step", 0) > warmup]
    findings = [
        discriminator_wins(ticks, probabilistic, loss_name, memory),
        generator_wins(ticks, probabilistic),
        oscillation(ticks),
        mode_collapse(ticks),
        memorisation(ticks, context or {}),
        quality_trend(ticks, memory),
        *picture_problems(ticks, memory),
    ]
    return [f for f in findings if f is not None]
