"""``ganvas doctor``: a run's health report from its metrics.jsonl, and health.png.

metrics.jsonl grows by a line a tick and may reach hundreds of megabytes, so the report
reads it once, streaming, and keeps only bounded summaries: the recent ticks the rules
judge, what the whole run taught them (:class:`RunMemory`), the last events, and each
plotted curve thinned to a fixed number of points.
"""

from __future__ import annotations

import io
import math
import os
import shlex
from array import array
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganvas.errors import GanvasError
from ganvas.health.rules import HISTORY, Finding, RunMemory, diagnose
from ganvas.losses.criteria import LOSSES
from ganvas.runs.metrics import iter_metrics
from ganvas.utils.files import atomic_write

HEALTHY = "No problem is visible at the end of the run."
# With risky settings the verdict is theirs: the run is not called healthy above the advice
# to start it again with other settings.
ONLY_SETTINGS = ("The risky settings above are the diagnosis; the samples show no further "
                 "problem the monitor can measure.")
JSON_SCHEMA = 1  # bump when a key of HealthReport.as_dict() changes meaning or goes away
MAX_EVENTS = 1000  # the newest events kept for the timeline; older ones are only counted
MAX_EVENT_KINDS = 256  # distinct event names counted (a damaged file could invent millions)
PLOT_POINTS = 2000  # points kept per plotted curve, the last one included
CONFIG_ESSENTIALS = ("model", "resolution", "data", "loss", "steps")

# Every per-tick key health.png draws; only these are kept for the plot.
PLOTTED = ("Loss/D", "Loss/G", "D/real", "D/fake", "D/accuracy", "Health/diversity",
           "Health/duplicates", "Health/memorisation", "Health/fidelity", "Health/sharpness",
           "Health/checkerboard", "Augment/p", "LR/G", "LR/D")


class Thinned:
    """A curve of any length in bounded memory: every ``stride``-th point is kept, and when
    ``capacity`` are held every other one is dropped and the stride doubles, so the points
    stay evenly spaced over the whole run. The newest point is always shown."""

    def __init__(self, capacity: int = PLOT_POINTS):
        self.capacity = max(2, capacity - 1)  # one place stays for the newest point
        self.stride = 1
        self.seen = 0
        self.steps = array("q")
        self.values = array("d")
        self.newest: tuple[int, float] | None = None

    def add(self, step: int, value: float) -> None:
        self.newest = (step, value)
        if self.seen % self.stride == 0:
            if len(self.steps) >= self.capacity:
                self.steps, self.values = self.steps[::2], self.values[::2]
                self.stride *= 2
            if self.seen % self.stride == 0:
                self.steps.append(step)
                self.values.append(value)
        self.seen += 1

    def points(self) -> tuple[list[int], list[float]]:
        steps, values = list(self.steps), list(self.values)
        if self.newest is not None and self.seen - 1 != (len(steps) - 1) * self.stride:
            steps.append(self.newest[0])
            values.append(self.newest[1])
        return steps, values

    def __len__(self) -> int:
        return len(self.points()[0])


@dataclass
class HealthReport:
    """What ``ganvas doctor`` knows of a run after one pass over its metrics.jsonl.

    ``last`` is the newest tick record and ``recent`` the newest ``HISTORY`` (oldest first),
    cleaned to finite numbers; ``last_nonfinite`` names the keys of the last tick that held
    NaN or infinity. ``count`` is the number of tick records. ``series`` maps each plotted
    key to its thinned curve. ``events`` are the newest ``MAX_EVENTS`` events,
    ``events_dropped`` how many older ones there were, ``event_counts`` every event name's
    count over the whole run. ``current`` are the findings at the end of the run;
    ``settings`` the risky settings of its config.yaml (what ``ganvas train`` warned about
    before training), with their remedies.
    """

    run_dir: Path
    config: dict[str, Any]
    last: dict[str, Any]
    recent: list[dict[str, Any]]
    count: int
    series: dict[str, Thinned]
    events: list[dict[str, Any]]
    events_dropped: int = 0
    event_counts: dict[str, int] = field(default_factory=dict)
    current: list[Finding] = field(default_factory=list)
    memory: RunMemory = field(default_factory=RunMemory)
    last_nonfinite: list[str] = field(default_factory=list)
    settings: list[Finding] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.current and not self.settings

    def text(self) -> str:
        c, last = self.config, self.last
        # A run given a --time budget has no step count of its own (steps hold the ceiling).
        length = (f"{last['step']} steps in a {c['time_budget']} time budget"
                  if c.get("time_budget") else f"{last['step']} of {c.get('steps')} steps")
        lines = [f"Run: {self.run_dir}",
                 f"  {c.get('model')} {c.get('resolution')}px on {c.get('data')}, loss "
                 f"{c.get('loss')}, {length} ({last.get('epoch', 0):.1f} epochs)",
                 f"  last record: D loss {last.get('Loss/D', float('nan')):.3f}, G loss "
                 f"{last.get('Loss/G', float('nan')):.3f}, D accuracy "
                 f"{last.get('D/accuracy', float('nan')):.0%}, sample diversity "
                 f"{last.get('Health/diversity', float('nan')):.0%} of the real images'",
                 "", "Timeline:"]
        if self.events_dropped:
            lines.append(f"  ({self.events_dropped} earlier events not shown)")
        if self.events:
            lines += [f"  step {e['step']:>7}: {e.get('message', e.get('event'))}"
                      for e in self.events]
        else:
            lines.append("  no events")
        if self.settings:
            lines += ["", "Settings check (config.yaml):"]
            lines += [f"  - {f.message}" for f in self.settings]
        lines += ["", "Diagnosis:"]
        lines += [f"  - {f.message}" for f in self.current] or [
            f"  {ONLY_SETTINGS if self.settings else HEALTHY}"]
        advice = recommendations(self)
        if advice:
            lines += ["", "Recommendations:"] + [f"  - {a}" for a in advice]
        return "\n".join(lines)

    def as_dict(self, plot: str | os.PathLike | None = None) -> dict[str, Any]:
        """The report for ``ganvas doctor --json``: only JSON types, non-finite numbers as
        null (so ``json.dumps(..., allow_nan=False)`` always succeeds)."""
        last = {**self.last, **{key: None for key in self.last_nonfinite}}
        return _json_safe({
            "schema": JSON_SCHEMA,
            "run_dir": str(self.run_dir),
            "config": {key: self.config.get(key) for key in CONFIG_ESSENTIALS},
            "records": self.count,
            "last": last,
            "events": [{"step": e["step"], "event": e.get("event"),
                        "message": e.get("message")} for e in self.events],
            "events_dropped": self.events_dropped,
            "event_counts": self.event_counts,
            "findings": [_finding(f) for f in self.current],
            "settings": [_finding(f) for f in self.settings],
            "recommendations": recommendations(self),
            "memory": self.memory.state_dict(),
            "healthy": self.healthy,
            "plot": None if plot is None else str(plot),
        })


def _finding(finding: Finding) -> dict[str, Any]:
    return {"kind": finding.kind, "message": finding.message, "changes": finding.changes,
            "restart": finding.restart, "evidence": finding.evidence}


def suggested_changes(report: HealthReport) -> dict[str, Any]:
    """The settings a resume should change (TrainConfig names and values), from what is
    wrong now and the risky settings; more steps when the run has done its planned ones."""
    changes: dict[str, Any] = {}
    # The settings check's remedies last: it knows the usual value, where a finding of the
    # run only halves or doubles what is set (a rate 250x too high halved is still 125x).
    for finding in [*report.current, *report.settings]:
        changes.update(finding.changes)
    if changes:
        planned, done = report.config.get("steps"), report.last["step"]
        if isinstance(planned, int) and done >= planned:
            changes["steps"] = 2 * planned
    return changes


def recommendations(report: HealthReport) -> list[str]:
    """Concrete next commands, from what is wrong now and what went wrong before."""
    from ganvas.health.settings_check import restart_command

    advice = []
    changes = suggested_changes(report)
    if changes:
        advice.append(f"continue with the suggested settings: ganvas train --resume "
                      f"{shlex.quote(str(report.run_dir))} {train_flags(changes)}".rstrip())
    # A new run takes the mid-run remedies of those findings too (restart_command).
    restart = restart_command(report.config,
                              [f for f in report.current if f.restart] + report.settings,
                              run_dir=report.run_dir)
    if restart:
        advice.append("some remedies need a new run: " + restart)
    kinds = set(report.event_counts)
    if "rollback" in kinds or "divergence" in kinds:
        advice.append("the run diverged at least once: start again with lower --lr-g/--lr-d, "
                      "or add --spectral-norm or --r1-gamma 0.1")
    if kinds & {"discriminator_wins", "mode_collapse"} and report.config.get("augment") == "none":
        advice.append("with a small dataset, --augment ada keeps the discriminator from "
                      "memorising it")
    if kinds - {"auto_balance"} and not report.config.get("auto_balance"):
        advice.append("--auto-balance lets ganvas apply these remedies by itself")
    return advice


def train_flags(settings: dict[str, Any]) -> str:
    """``settings`` (TrainConfig field names and values) as `ganvas train` flags; a
    non-finite number (from a damaged record) or a name that is no setting is left out
    rather than suggested."""
    from ganvas.config import TrainConfig, flag_words

    names = set(TrainConfig.field_names())
    return " ".join(word for name, value in settings.items() if name in names
                    for word in flag_words(name, value))


def build_report(run_dir: str | os.PathLike) -> HealthReport:
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    if not run_dir.is_dir():
        raise GanvasError(f"{run_dir}: no such run folder")
    if not metrics.exists():
        if (run_dir / "config.yaml").is_file():  # a run before its first record
            raise GanvasError(_no_record_yet(run_dir))
        raise GanvasError(f"{run_dir}: no metrics.jsonl; is this a ganvas run folder?")
    if not metrics.is_file():
        raise GanvasError(f"{metrics}: not a regular file")
    saved = _read_config(run_dir)
    config = _summary(saved)
    loss = LOSSES.get(str(config.get("loss", "bce")), LOSSES["bce"])
    warmup = config.get("health_warmup", 0)
    warmup = warmup if isinstance(warmup, int) and not isinstance(warmup, bool) else 0

    recent: deque[dict[str, Any]] = deque(maxlen=HISTORY)
    events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
    event_counts: Counter[str] = Counter()
    series = {key: Thinned() for key in PLOTTED}
    memory = RunMemory()
    count = events_seen = 0
    last_raw: dict[str, Any] = {}
    try:
        for raw in iter_metrics(metrics):
            record = _clean(raw)
            if "event" in record:
                events.append(record)
                events_seen += 1
                if record["event"] in event_counts or len(event_counts) < MAX_EVENT_KINDS:
                    event_counts[record["event"]] += 1
                continue
            count += 1
            last_raw = raw
            recent.append(record)
            memory.update(record, warmup)
            for key, curve in series.items():
                if key in record:
                    curve.add(record["step"], record[key])
    except OSError as exc:
        raise GanvasError(f"{metrics}: cannot read it ({exc.strerror or exc})") from None
    if not count:
        raise GanvasError(f"{metrics}: no training records yet; let the run log a few ticks")
    current = diagnose(list(recent), probabilistic=loss.probabilistic, warmup=warmup,
                       loss_name=loss.name, memory=memory)
    from ganvas.health.settings_check import saved_config_findings

    settings = saved_config_findings(saved)
    return HealthReport(
        run_dir, config, last=recent[-1], recent=list(recent), count=count, series=series,
        events=list(events), events_dropped=events_seen - len(events),
        event_counts=dict(event_counts), current=current, memory=memory,
        last_nonfinite=[k for k, v in last_raw.items() if isinstance(k, str)
                        and isinstance(v, float) and not math.isfinite(v)],
        settings=settings)


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    """Keep what a report can show: finite numbers, short texts (metrics.jsonl may be
    hand-edited or damaged; the step was already checked by iter_metrics)."""
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


def _json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as None, tuples as lists, other odd types as text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    try:  # numpy and torch scalars
        return _json_safe(value.item())
    except (AttributeError, TypeError, ValueError):
        return str(value)


def _no_record_yet(run_dir: Path) -> str:
    """What to say of a run folder with no record yet: a run still in its first
    --log-every steps, or one that ended before them."""
    from ganvas.runs.status import read_status

    every = _read_config(run_dir).get("log_every")
    every = (f"every {every} steps" if isinstance(every, int) and not isinstance(every, bool)
             and every > 0 else "every --log-every steps")
    try:
        running = read_status(run_dir).state == "running"
    except GanvasError:
        running = False
    if running:
        return (f"{run_dir}: the run has not written its first record yet (it writes one "
                f"{every}); ask again in a while")
    if any((run_dir / "checkpoints").glob("*.pt")):
        how = f"carry it on with: ganvas train --resume {run_dir}"
    else:
        how = "start it again (a smaller --log-every records sooner)"
    return f"{run_dir}: the run ended before its first record (it writes one {every}); {how}"


def _read_config(run_dir: Path) -> dict[str, Any]:
    """The run's saved options as written; an unreadable file just means fewer details."""
    from ganvas.config import load_yaml

    try:
        return load_yaml(run_dir / "config.yaml")
    except GanvasError:
        return {}


def _summary(config: dict[str, Any]) -> dict[str, Any]:
    """What the report shows and rebuilds a run from: the scalar options, short texts, and
    the model options (a mapping by name, for the restart command)."""
    summary = {k: v for k, v in config.items() if isinstance(k, str) and (
        isinstance(v, (int, float, bool)) or (isinstance(v, str) and len(v) <= 300))}
    options = config.get("model_options")
    if isinstance(options, dict) and all(isinstance(k, str) for k in options):
        summary["model_options"] = options
    return summary


def plot_health(report: HealthReport, path: str | os.PathLike) -> Path:
    """Six panels: losses, D's view, variety and memorisation, sample quality (fidelity),
    sharpness and checkerboard against the reals, and ADA p with the learning rates. A
    curve the run did not log is not drawn; a panel with none says so."""
    from ganvas.runs.plots import plt  # Agg backend is set there

    def draw(ax, key: str, label: str, *, positive: bool = False, **style) -> bool:
        steps, values = report.series[key].points() if key in report.series else ([], [])
        if positive:
            steps, values = zip(*[(s, v) for s, v in zip(steps, values) if v > 0]) \
                if any(v > 0 for v in values) else ([], [])
        if not steps:
            return False
        # A lone measurement would be an invisible line: give every point a marker then.
        ax.plot(steps, values, label=label, marker="." if len(steps) == 1 else None, **style)
        return True

    fig, axes = plt.subplots(3, 2, figsize=(11, 10), dpi=100)
    (losses, scores), (variety, quality), (likeness, control) = axes
    drawn = {}

    drawn[losses] = (draw(losses, "Loss/D", "discriminator")
                     | draw(losses, "Loss/G", "generator"))
    losses.set_title("Losses")

    drawn[scores] = (draw(scores, "D/real", "D(x) real")
                     | draw(scores, "D/fake", "D(G(z)) generated")
                     | draw(scores, "D/accuracy", "D accuracy", linestyle="--"))
    scores.set_title("Discriminator")

    drawn[variety] = (draw(variety, "Health/diversity", "diversity / real")
                      | draw(variety, "Health/duplicates", "near-duplicate share")
                      | draw(variety, "Health/memorisation", "memorisation (copies of reals)"))
    variety.set_title("Sample diversity and memorisation")
    if drawn[variety]:
        variety.set_ylim(bottom=0)

    drawn[quality] = draw(quality, "Health/fidelity", "fidelity (lower is better)",
                          positive=True, color="tab:purple")
    if drawn[quality]:
        quality.set_yscale("log")
        best = report.memory
        if best.best_step is not None and best.best_fidelity and best.best_fidelity > 0:
            quality.plot([best.best_step], [best.best_fidelity], marker="*", markersize=12,
                         linestyle="none", color="tab:orange",
                         label=f"best {best.best_fidelity:.3g} at step {best.best_step}")
    quality.set_title("Sample quality")

    drawn[likeness] = (draw(likeness, "Health/sharpness", "sharpness / real")
                       | draw(likeness, "Health/checkerboard", "checkerboard / real"))
    if drawn[likeness]:
        likeness.axhline(1.0, color="black", alpha=0.5, linewidth=1, linestyle="--")
    likeness.set_title("Details, relative to the real images (1 = alike)")

    drawn[control] = draw(control, "Augment/p", "augment p")
    lr_axis = control.twinx()
    rates = (draw(lr_axis, "LR/G", "lr G", positive=True, color="tab:green", linestyle=":")
             | draw(lr_axis, "LR/D", "lr D", positive=True, color="tab:red", linestyle=":"))
    if rates:
        lr_axis.set_yscale("log")
        lr_axis.legend(loc="upper right", fontsize=8)
    drawn[control] |= rates
    control.set_title("Augmentation p and learning rates")
    control.set_ylim(0, 1)

    event_steps = [e["step"] for e in report.events]
    for ax in axes.flat:
        if event_steps:
            ax.vlines(event_steps, 0, 1, transform=ax.get_xaxis_transform(), color="grey",
                      alpha=0.4, linewidth=1)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if not drawn[ax]:
            ax.text(0.5, 0.5, "not logged by this run", transform=ax.transAxes,
                    ha="center", va="center", color="grey")
        handles, _ = ax.get_legend_handles_labels()
        if handles:
            ax.legend(loc="upper left", fontsize=8)
    fig.suptitle("grey lines: health events (see `ganvas doctor`)", fontsize=9)
    # Fixed margins, not tight_layout: measuring every label doubles the drawing time.
    fig.subplots_adjust(left=0.07, right=0.92, bottom=0.05, top=0.94, hspace=0.38,
                        wspace=0.22)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    path = Path(path)
    with atomic_write(path) as handle:
        handle.write(buffer.getvalue())
    return path
