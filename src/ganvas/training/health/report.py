"""``ganvas doctor``: a run's health report from its metrics.jsonl, and health.png."""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganvas.errors import GanvasError
from ganvas.losses.criteria import LOSSES
from ganvas.runs.metrics import read_metrics
from ganvas.training.health.rules import Finding, diagnose
from ganvas.utils.files import atomic_write

HEALTHY = "No problem is visible at the end of the run."


@dataclass
class HealthReport:
    run_dir: Path
    config: dict[str, Any]
    ticks: list[dict[str, Any]]
    events: list[dict[str, Any]]
    current: list[Finding] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.current

    def text(self) -> str:
        c, last = self.config, self.ticks[-1]
        lines = [f"Run: {self.run_dir}",
                 f"  {c.get('model')} {c.get('resolution')}px on {c.get('data')}, loss "
                 f"{c.get('loss')}, {last['step']} of {c.get('steps')} steps "
                 f"({last.get('epoch', 0):.1f} epochs)",
                 f"  last record: D loss {last.get('Loss/D', float('nan')):.3f}, G loss "
                 f"{last.get('Loss/G', float('nan')):.3f}, D accuracy "
                 f"{last.get('D/accuracy', float('nan')):.0%}, sample diversity "
                 f"{last.get('Health/diversity', float('nan')):.0%} of the real images'",
                 "", "Timeline:"]
        if self.events:
            lines += [f"  step {e['step']:>7}: {e.get('message', e.get('event'))}"
                      for e in self.events]
        else:
            lines.append("  no events")
        lines += ["", "Diagnosis:"]
        lines += [f"  - {f.message}" for f in self.current] or [f"  {HEALTHY}"]
        advice = recommendations(self)
        if advice:
            lines += ["", "Recommendations:"] + [f"  - {a}" for a in advice]
        return "\n".join(lines)


def recommendations(report: HealthReport) -> list[str]:
    """Concrete next commands, from what is wrong now and what went wrong before."""
    advice = []
    changes: dict[str, Any] = {}
    for finding in report.current:
        changes.update(finding.changes)
    if changes:
        flags = " ".join(f"--{k.replace('_', '-')} {v:.2g}" for k, v in changes.items())
        planned, done = report.config.get("steps"), report.ticks[-1]["step"]
        if isinstance(planned, int) and done >= planned:
            flags += f" --steps {2 * planned}"
        advice.append(f"continue with the suggested settings: ganvas train --resume "
                      f"{report.run_dir} {flags}")
    kinds = {e.get("event") for e in report.events}
    if "rollback" in kinds or "divergence" in kinds:
        advice.append("the run diverged at least once: start again with lower --lr-g/--lr-d, "
                      "or add --spectral-norm or --r1-gamma 0.1")
    if kinds & {"discriminator_wins", "mode_collapse"} and report.config.get("augment") == "none":
        advice.append("with a small dataset, --augment ada keeps the discriminator from "
                      "memorising it")
    if kinds - {"auto_balance"} and not report.config.get("auto_balance"):
        advice.append("--auto-balance lets ganvas apply these remedies by itself")
    return advice


def build_report(run_dir: str | os.PathLike) -> HealthReport:
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    if not run_dir.is_dir():
        raise GanvasError(f"{run_dir}: no such run folder")
    if not metrics.is_file():
        raise GanvasError(f"{run_dir}: no metrics.jsonl; is this a ganvas run folder?")
    if not metrics.is_file():
        raise GanvasError(f"{metrics}: not a regular file")
    records = [_clean(r) for r in read_metrics(metrics)]
    ticks = [r for r in records if "event" not in r]
    if not ticks:
        raise GanvasError(f"{metrics}: no training records yet; let the run log a few ticks")
    config = _read_config(run_dir)
    loss = LOSSES.get(str(config.get("loss", "bce")), LOSSES["bce"])
    warmup = config.get("health_warmup", 0)
    current = diagnose(ticks, probabilistic=loss.probabilistic,
                       warmup=warmup if isinstance(warmup, int) else 0, loss_name=loss.name)
    events = [r for r in records if "event" in r]
    return HealthReport(run_dir, config, ticks, events, current)


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    """Keep what a report can show: finite numbers, short texts (metrics.jsonl may be
    hand-edited or damaged; the step was already checked by read_metrics)."""
    clean: dict[str, Any] = {}
    for key, value in record.items():
        if not isinstance(key, str):
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isfinite(value) and abs(value) < 1e15:
                clean[key] = value
        elif isinstance(value, str) and key in ("event", "message"):
            clean[key] = value[:500] if value.isprintable() else repr(value[:500])
    return clean


def _read_config(run_dir: Path) -> dict[str, Any]:
    """The run's saved options, scalars only; an unreadable file just means fewer details."""
    from ganvas.config import load_yaml

    try:
        config = load_yaml(run_dir / "config.yaml")
    except GanvasError:
        return {}
    return {k: v for k, v in config.items() if isinstance(k, str) and (
        isinstance(v, (int, float, bool)) or (isinstance(v, str) and len(v) <= 300))}


def plot_health(report: HealthReport, path: str | os.PathLike) -> Path:
    """Four panels: losses, D's view (scores and accuracy), diversity, and ADA p / lr."""
    from ganvas.training.plots import plt  # Agg backend is set there

    ticks, steps = report.ticks, [r["step"] for r in report.ticks]

    def series(key: str) -> list[float]:
        return [r.get(key, float("nan")) for r in ticks]

    fig, axes = plt.subplots(2, 2, figsize=(11, 7), dpi=100)
    (losses, scores), (variety, control) = axes
    losses.plot(steps, series("Loss/D"), label="discriminator")
    losses.plot(steps, series("Loss/G"), label="generator")
    losses.set_title("Losses")
    scores.plot(steps, series("D/real"), label="D(x) real")
    scores.plot(steps, series("D/fake"), label="D(G(z)) generated")
    scores.plot(steps, series("D/accuracy"), label="D accuracy", linestyle="--")
    scores.set_title("Discriminator")
    variety.plot(steps, series("Health/diversity"), label="diversity / real")
    variety.plot(steps, series("Health/duplicates"), label="near-duplicate share")
    variety.set_title("Sample diversity")
    variety.set_ylim(bottom=0)
    if any(k in r for r in ticks for k in ("Augment/p",)):
        control.plot(steps, series("Augment/p"), label="augment p")
    lr_axis = control.twinx()
    def positive(key: str) -> list[float]:
        return [v if v > 0 else float("nan") for v in series(key)]

    lr_axis.plot(steps, positive("LR/G"), color="tab:green", linestyle=":", label="lr G")
    lr_axis.plot(steps, positive("LR/D"), color="tab:red", linestyle=":", label="lr D")
    lr_axis.set_yscale("log")
    lr_axis.legend(loc="upper right", fontsize=8)
    control.set_title("Augmentation p and learning rates")
    control.set_ylim(0, 1)
    for ax in (losses, scores, variety, control):
        for event in report.events:
            ax.axvline(event["step"], color="grey", alpha=0.4, linewidth=1)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        handles, _ = ax.get_legend_handles_labels()
        if handles:
            ax.legend(loc="upper left", fontsize=8)
    fig.suptitle("grey lines: health events (see `ganvas doctor`)", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    path = Path(path)
    with atomic_write(path) as handle:
        handle.write(buffer.getvalue())
    return path
