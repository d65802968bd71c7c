"""What the studio's Watch tab shows of a run: its state, sample grids, curves, the health
monitor's messages and the doctor's report, all read from the run folder as any tool could."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ganvas.errors import GanvasError
from ganvas.runs.metrics import parse_record
from ganvas.studio.runs import LOG_NAME, RunView, tail_lines

# The charts: title -> {metrics.jsonl key: the name in the legend}
CHARTS: dict[str, dict[str, str]] = {
    "Losses": {"Loss/D": "D loss", "Loss/G": "G loss"},
    "D(x) and D(G(z))": {"D/real": "D(x): real", "D/fake": "D(G(z)): generated"},
    "Diversity": {"Health/diversity": "diversity (1: as varied as the data)"},
    "Fidelity": {"Health/fidelity": "distance to the data"},
    "FID": {"Metric/FID": "FID"},
}
MAX_POINTS = 400  # per series: a chart of a long run stays quick to send and draw


@dataclass
class Curves:
    """Each chart's points as a long table: ``step``, ``value``, ``series``."""

    tables: dict[str, dict[str, list]]
    events: list[dict[str, Any]]

    def frame(self, title: str):
        import pandas as pd

        return pd.DataFrame(self.tables.get(title, {"step": [], "value": [], "series": []}))


class CurveReader:
    """The charts' points and the health events of ``folder/metrics.jsonl``, read as it
    grows: each :meth:`update` parses only the whole lines added since the last (a page
    watching a long run never re-reads its log), with memory bounded by thinning."""

    CHUNK = 8 << 20  # the most read in one update; a longer line is skipped, never held

    def __init__(self, folder: Path, max_events: int = 200):
        self.path = folder / "metrics.jsonl"
        self.max_events = max_events
        self._reset()

    def _reset(self) -> None:
        self.offset = 0
        self.points: dict[str, dict[str, list[tuple[int, float]]]] = {t: {} for t in CHARTS}
        self.events: list[dict[str, Any]] = []

    def update(self) -> None:
        try:
            size = self.path.stat().st_size if self.path.is_file() else 0
        except OSError:
            return
        if size < self.offset:  # rewritten (a resume drops the records after its checkpoint)
            self._reset()
        while size > self.offset:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read(min(size - self.offset, self.CHUNK))
            whole = data.rfind(b"\n") + 1
            if whole == 0:
                if len(data) < self.CHUNK:
                    return  # a line still being written: next time
                whole = len(data)  # one line longer than CHUNK: not a record of ours
            else:
                for line in data[:whole].splitlines():
                    record = parse_record(line)
                    if record is not None:
                        self._add(record)
            self.offset += whole

    def _add(self, record: dict[str, Any]) -> None:
        if "event" in record:
            self.events.append({"step": record["step"], "event": str(record.get("event")),
                                "message": str(record.get("message", ""))})
            del self.events[:-self.max_events]
            return
        for title, keys in CHARTS.items():
            for key, name in keys.items():
                value = record.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool) \
                        and math.isfinite(value):
                    series = self.points[title].setdefault(name, [])
                    series.append((record["step"], float(value)))
                    if len(series) > 4 * MAX_POINTS:  # keep every other older point
                        series[:] = series[:-1:2] + series[-1:]

    def curves(self) -> Curves:
        tables = {}
        for title, series in self.points.items():
            table: dict[str, list] = {"step": [], "value": [], "series": []}
            for name, values in series.items():
                stride = max(1, math.ceil(len(values) / MAX_POINTS))
                kept = values[::stride]
                if kept[-1] != values[-1]:  # the newest point is always shown
                    kept.append(values[-1])
                for step, value in kept:
                    table["step"].append(step)
                    table["value"].append(value)
                    table["series"].append(name)
            tables[title] = table
        return Curves(tables, list(self.events))


def read_curves(folder: Path, max_events: int = 200) -> Curves:
    """The charts' points and the health events of ``folder/metrics.jsonl``."""
    reader = CurveReader(folder, max_events)
    reader.update()
    return reader.curves()


def status_markdown(view: RunView) -> str:
    """The run's state in a few lines of Markdown."""
    lines = [f"**{view.name}**: **{view.state}**"]
    s = view.status
    if s is not None:
        total = f" of {s.steps:,}" if s.steps else ""
        lines.append(f"step {s.step:,}{total} · {s.images_seen:,} images seen")
        if s.images_per_second and view.state == "running":
            lines.append(f"{s.images_per_second:,.0f} images/s")
        if s.heartbeat:  # a clock time: the text changes only when the run writes
            heard = time.strftime("%H:%M:%S", time.localtime(s.heartbeat))
            lines.append(f"heartbeat at {heard}{f' on {s.host}' if s.host else ''}")
    config = view.config
    if config:
        size = config.get("resolution")
        aspect = config.get("aspect")
        shape = f"{size}px" + (f" ({aspect})" if aspect and aspect != "1:1" else "")
        lines.append(f"model {config.get('model')} · {shape} · data {config.get('data')}")
    if view.reason:
        lines.append(f"_{view.reason}_")
    return "  \n".join(lines)


def sample_grids(folder: Path) -> list[tuple[str, str]]:
    """The run's sample grids, oldest first, with captions (a progressive model's grids of
    each finished resolution among them)."""
    samples = folder / "samples"
    if not samples.is_dir():
        return []
    grids = sorted(samples.glob("*.png"), key=lambda p: (p.stat().st_mtime, p.name))
    return [(str(p), p.stem.replace("step-", "step ").replace("grown-", "grown to ")
             ) for p in grids if p.is_file()]


def newest_grid(view: RunView) -> str | None:
    """The newest sample grid: status.json's, else the newest file in samples/."""
    if view.status is not None and view.status.samples and Path(view.status.samples).is_file():
        return view.status.samples
    grids = sample_grids(view.folder)
    return grids[-1][0] if grids else None


def events_markdown(events: list[dict[str, Any]], newest_first: int = 20) -> str:
    """The health monitor's messages, newest first."""
    if not events:
        return "No messages from the health monitor yet: a healthy run stays quiet."
    shown = events[-newest_first:][::-1]
    return "\n\n".join(f"**step {e['step']:,}** · `{e['event']}`  \n{e['message']}"
                       for e in shown)


@dataclass
class Doctor:
    """``ganvas doctor``'s report of a run, as the studio uses it."""

    text: str
    resume_arguments: list[str]  # the suggested settings as `ganvas train` flags
    healthy: bool


def doctor(folder: Path) -> Doctor:
    """The doctor's report (the same as ``ganvas doctor --json``), and the flags of its
    suggested settings for a resume."""
    import shlex

    from ganvas.health.report import build_report, suggested_changes, train_flags

    report = build_report(folder)
    found = report.as_dict()
    lines = [("**Healthy**: nothing wrong now." if found["healthy"] else
              "**What is wrong now**")]
    for finding in [*found["findings"], *found["settings"]]:
        lines.append(f"- {finding['message']}")
    if found["recommendations"]:
        lines.append("\n**What to do**")
        lines += [f"- {x}" for x in found["recommendations"]]
    changes = suggested_changes(report)
    return Doctor("\n".join(lines), shlex.split(train_flags(changes)), bool(found["healthy"]))


def log_tail(folder: Path, lines: int = 40) -> str:
    """The last lines the studio's training process printed."""
    path = folder / LOG_NAME
    try:
        return "\n".join(tail_lines(path)[-lines:])
    except FileNotFoundError:
        return "(this run was not started from the studio: no train.log)"
    except OSError as exc:
        raise GanvasError(f"{path}: unreadable ({exc.strerror or exc})") from None
