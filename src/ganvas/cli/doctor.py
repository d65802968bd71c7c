"""``ganvas doctor``: what happened in a run, what is wrong now, and what to do."""

from __future__ import annotations

import argparse
import json

from ganvas.cli.parsing import HelpFormatter, print_stdout
from ganvas.data import count_images
from ganvas.errors import GanvasError
from ganvas.health.report import JSON_SCHEMA, MAX_EVENTS, build_report, plot_health
from ganvas.metrics.fixed_features import FixedFeatures
from ganvas.metrics.nearest import NearestResult, nearest_training_images
from ganvas.utils.images import save_image

NEAREST_MAX_IMAGES = 2000  # beyond, copying is rare; `ganvas generate --nearest` checks any set
NEAREST_SAMPLES = 4

EXAMPLES = f"""\
examples:
  ganvas doctor runs/00003-cats-dcgan-64px
  ganvas doctor --json --no-plot runs/00003-cats-dcgan-64px | jq .findings

--json prints one JSON object (schema {JSON_SCHEMA}) instead of the text:
  schema            {JSON_SCHEMA}; raised when a key changes meaning or goes away
  run_dir           the run folder
  config            model, resolution, data, loss, steps (null where unknown)
  records           how many training records metrics.jsonl holds
  last              the last training record ({{"step": ..., "Loss/D": ..., ...}})
  events            the newest {MAX_EVENTS} events: [{{"step", "event", "message"}}]
  events_dropped    how many older events are not listed
  event_counts      {{event name: how many times}} over the whole run
  findings          what is wrong now: [{{"kind", "message", "changes", "restart",
                    "evidence"}}]; changes can be applied by --resume, restart needs a new run
  settings          risky settings in config.yaml, in the same form as findings
  recommendations   the advice of the text report, as a list of sentences
  memory            what the rules kept of the whole run (best fidelity and its step, ...)
  healthy           true when there are no findings
  plot              the path of health.png, or null with --no-plot
  nearest           for a small training set: {{"picture", "likely_copies", "distances",
                    "threshold"}} (each sample's distance to its nearest training image), or
                    null
Numbers that are NaN or infinite are written as null, so any JSON parser reads it.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor", help="health report of a run: events, diagnosis, recommendations, health.png",
        description="Read a run's metrics.jsonl and report its health; writes "
                    "RUN_DIR/health.png.",
        epilog=EXAMPLES, formatter_class=HelpFormatter)
    parser.add_argument("run", metavar="RUN_DIR", help="a run folder written by `ganvas train`")
    parser.add_argument("--json", action="store_true",
                        help="print the report as one JSON object (described below) instead "
                             "of the text; health.png is still written unless --no-plot, and "
                             "its path is the object's \"plot\" rather than a line of its own")
    parser.add_argument("--no-plot", action="store_true",
                        help="do not write health.png or nearest.png (for a run folder you "
                             "cannot write to)")
    parser.add_argument("--no-nearest", action="store_true",
                        help=f"skip the nearest training images (shown when the set has at "
                             f"most {NEAREST_MAX_IMAGES:,} pictures)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = build_report(args.run)
    nearest, note = (None, None) if args.no_nearest else _nearest(report)
    picture = near_picture = None
    if not args.no_plot:
        picture = plot_health(report, report.run_dir / "health.png")
        if nearest is not None:
            near_picture = save_image(nearest.picture, report.run_dir / "nearest.png")
    if args.json:
        found = report.as_dict(plot=picture)
        found["nearest"] = None if nearest is None else {
            "picture": None if near_picture is None else str(near_picture),
            "likely_copies": nearest.likely_copies,
            "distances": [round(float(d), 6) for d in nearest.distances[:, 0]],
            "threshold": round(float(nearest.threshold), 6)}
        print_stdout(json.dumps(found, allow_nan=False))
        return 0
    print_stdout(report.text())
    if nearest is not None:
        print_stdout("\n" + nearest.summary())
        if near_picture is not None:
            print_stdout(f"each sample beside its nearest training images: {near_picture}")
    elif note:
        print_stdout(f"\n{note}")
    if picture is not None:
        print_stdout(f"\nPlots: {picture}")
    return 0


def _nearest(report) -> tuple[NearestResult | None, str | None]:
    """A few samples beside their nearest training images, when the set is small enough
    for a generator to copy it and for the comparison to be quick (cheap fixed features,
    no download); else a note saying why not."""
    data = report.config.get("data")
    count = count_images(str(data)) if data else None
    if count is None or count > NEAREST_MAX_IMAGES:
        return None, None
    try:
        return nearest_training_images(report.run_dir, num=NEAREST_SAMPLES, k=3,
                                       inception=FixedFeatures(), progress=False,
                                       log=lambda message: None), None
    except GanvasError as exc:
        return None, f"nearest training images: not shown ({exc})"
