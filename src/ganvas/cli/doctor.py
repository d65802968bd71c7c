"""``ganvas doctor``: what happened in a run, what is wrong now, and what to do."""

from __future__ import annotations

import argparse

from ganvas.cli.parsing import HelpFormatter, print_stdout
from ganvas.training.health.report import build_report, plot_health

EXAMPLES = """\
examples:
  ganvas doctor runs/00003-cats-dcgan-64px
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor", help="health report of a run: events, diagnosis, recommendations, health.png",
        description="Read a run's metrics.jsonl and report its health; writes RUN_DIR/health.png.",
        epilog=EXAMPLES, formatter_class=HelpFormatter)
    parser.add_argument("run", metavar="RUN_DIR", help="a run folder written by `ganvas train`")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = build_report(args.run)
    print_stdout(report.text())
    picture = plot_health(report, report.run_dir / "health.png")
    print_stdout(f"\nPlots: {picture}")
    return 0
