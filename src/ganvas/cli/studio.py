"""``ganvas studio``: the local browser app (train, watch, explore, repaint)."""

from __future__ import annotations

import argparse
import errno
import socket
import sys

from ganvas.cli.parsing import HelpFormatter
from ganvas.errors import GanvasError

EXAMPLES = """\
examples:
  ganvas studio                          # http://127.0.0.1:7860, runs in ./runs
  ganvas studio --runs ~/gan-runs --port 7861
  ganvas studio --host 0.0.0.0           # reachable from other machines on your network

It needs the studio extra: pip install 'ganvas[studio]'. Training runs in processes of its
own: closing the page or stopping the studio (Ctrl-C) never stops a run.
"""

INSTALL_HINT = "the studio needs Gradio: pip install 'ganvas[studio]'"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "studio", help="a local browser app to train, watch, explore and repaint",
        description="Serve ganvas studio on this machine: start and watch training runs, "
                    "draw from trained models and repaint photos, in a browser.",
        epilog=EXAMPLES, formatter_class=HelpFormatter)
    parser.add_argument("--runs", default="runs", metavar="DIR",
                        help="the folder of run folders to show and start runs in")
    parser.add_argument("--host", default="127.0.0.1",
                        help="the address to serve on; 0.0.0.0 opens it to your network "
                             "(no public share link is ever made)")
    parser.add_argument("--port", type=int, default=7860, help="the port to serve on")
    parser.set_defaults(func=run)


def check_port(host: str, port: int) -> None:
    """One clear line when the port cannot be served on, before Gradio starts."""
    if not 1 <= port <= 65535:
        raise GanvasError(f"--port {port}: give a port from 1 to 65535")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise GanvasError(f"--port {port}: already in use (another studio?); choose "
                                  "another with --port") from None
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise GanvasError(f"--port {port}: not allowed for this user; use a port "
                                  "above 1023") from None
            raise GanvasError(f"--host {host}: cannot serve there ({exc.strerror or exc})"
                              ) from None
        except socket.gaierror:
            raise GanvasError(f"--host {host}: not an address of this machine") from None


def run(args: argparse.Namespace) -> int:
    from ganvas.runs.folders import ensure_writable_dir

    try:
        import gradio  # noqa: F401
    except ImportError:
        raise GanvasError(INSTALL_HINT) from None
    from pathlib import Path

    ensure_writable_dir(Path(args.runs), "--runs")
    check_port(args.host, args.port)
    from ganvas.studio.app import serve

    print(f"ganvas studio: http://{args.host}:{args.port} (runs in {Path(args.runs).resolve()}"
          "; Ctrl-C to close it: runs go on)", file=sys.stderr)
    serve(args.runs, args.host, args.port, quiet=True)
    return 0
