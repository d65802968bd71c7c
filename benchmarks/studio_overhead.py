"""What an open studio costs a run: trainer images/s while a browser watches the run in
``ganvas studio``, against the same run while no page is open.

One ``ganvas train`` run (DCGAN on the digits, ganvas's default logging) trains while a
studio process serves and headless Chromium (Debian's, driven by Playwright) alternates, in
windows of ``--window`` seconds, between the run's Watch tab (which polls every 2 s: status,
curves, sample grids, messages, log) and a blank page. The run's speed in each window is
read from its ``status.json`` (images seen against the clock, the window's first seconds
left out while the page changes), and the figure is the median over the windows of each
kind. Alternating within one run, rather than comparing separate runs, keeps the machine's
own swings (tens of percent here from one minute to the next) out of the ratio.

    python benchmarks/studio_overhead.py                    # 8 minutes: 8 windows of each
    python benchmarks/studio_overhead.py --seconds 120 --window 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
SETTLE_SECONDS = 5.0  # left out at the start of each window, while the page changes
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"studio_overhead: {what} did not happen in {seconds:.0f} s")
        time.sleep(0.2)


def cpu_seconds(match) -> float:
    """CPU time used so far by the processes whose (pid, command name) ``match`` accepts."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                head, tail = handle.read().rsplit(")", 1)
            name = head.split("(", 1)[1]
            if match(int(entry), name):
                fields = tail.split()
                total += (int(fields[11]) + int(fields[12])) / TICKS
        except (OSError, IndexError, ValueError):
            continue
    return total


class Speedometer(threading.Thread):
    """Reads the run's status.json every 0.1 s: (clock, images seen) at each change."""

    def __init__(self, run: Path):
        super().__init__(daemon=True)
        self.path, self.samples, self.done = run / "status.json", [], False

    def run(self) -> None:
        last = None
        while not self.done:
            try:
                seen = json.loads(self.path.read_text())["images_seen"]
            except (OSError, ValueError, KeyError):
                seen = None
            if seen is not None and seen != last:
                self.samples.append((time.monotonic(), seen))
                last = seen
            time.sleep(0.1)

    def rate(self, start: float, end: float) -> float | None:
        inside = [(t, n) for t, n in self.samples if start <= t <= end]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] < 1:
            return None
        (t0, n0), (t1, n1) = inside[0], inside[-1]
        return (n1 - n0) / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=480, help="training time in all")
    parser.add_argument("--window", type=int, default=30, help="seconds of each window")
    parser.add_argument("--model", default="dcgan")
    args = parser.parse_args()
    if args.window <= SETTLE_SECONDS + 2:
        parser.exit(1, f"{parser.prog}: error: --window {args.window}: give more than "
                    f"{SETTLE_SECONDS + 2:.0f} seconds\n")
    if args.seconds < 4 * args.window:
        parser.exit(1, f"{parser.prog}: error: --seconds {args.seconds}: give at least 4 "
                    f"windows ({4 * args.window})\n")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(chromium):
        parser.exit(1, f"{parser.prog}: error: needs Debian's chromium (apt-get install "
                    "chromium)\n")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        run = runs / "00000-digits-watched"
        runs.mkdir()
        port = free_port()
        studio = subprocess.Popen(
            [sys.executable, "-m", "ganvas", "studio", "--runs", str(runs), "--port",
             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        trainer = None
        try:
            def serving() -> bool:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return True
                except OSError:
                    return False

            wait_for(serving, 60, "the studio starting")
            trainer = subprocess.Popen(
                [sys.executable, "-m", "ganvas", "train", "--data", "digits", "--model",
                 args.model, "--time", f"{args.seconds + 30}s", "--out", str(run),
                 "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_for(lambda: (run / "status.json").is_file(), 120, "the run starting")
            speed = Speedometer(run)
            speed.start()
            windows = []
            with sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                time.sleep(10)  # past the run's first ticks
                end = time.monotonic() + args.seconds
                watching = False
                while time.monotonic() + args.window <= end and trainer.poll() is None:
                    start = time.monotonic()
                    if watching:
                        page.goto(f"http://127.0.0.1:{port}/")
                        page.locator("#run-choice input").click()
                        page.get_by_role("option", name=run.name).first.click()
                        page.get_by_role("tab", name="Watch").click()
                    else:
                        page.goto("about:blank")
                    time.sleep(max(0.0, start + SETTLE_SECONDS - time.monotonic()))
                    used = (cpu_seconds(lambda pid, name: pid == studio.pid),
                            cpu_seconds(lambda pid, name: name.startswith("chrom")))
                    time.sleep(max(0.0, start + args.window - time.monotonic()))
                    settled = start + SETTLE_SECONDS
                    windows.append(("watching" if watching else "no page",
                                    speed.rate(settled, time.monotonic()),
                                    cpu_seconds(lambda pid, name: pid == studio.pid) - used[0],
                                    cpu_seconds(lambda pid, name: name.startswith("chrom"))
                                    - used[1], time.monotonic() - settled))
                    watching = not watching
                browser.close()
            speed.done = True
        finally:
            if trainer is not None and trainer.poll() is None:
                trainer.send_signal(signal.SIGINT)
                trainer.wait()
            os.killpg(studio.pid, signal.SIGKILL)
            studio.wait()

    print("| window | page | images/s | studio CPU | Chromium CPU |")
    print("|---|---|---|---|---|")
    for i, (kind, rate, studio_s, browser_s, seconds) in enumerate(windows):
        shown = "-" if rate is None else f"{rate:,.0f}"
        print(f"| {i + 1} | {kind} | {shown} | {100 * studio_s / seconds:.1f} % | "
              f"{100 * browser_s / seconds:.1f} % |")
    rates = {kind: [r for k, r, *_ in windows if k == kind and r is not None]
             for kind in ("no page", "watching")}
    if not all(rates.values()):
        raise SystemExit("studio_overhead: too few windows with a measurement; train longer")
    alone, watched = (statistics.median(rates[k]) for k in ("no page", "watching"))
    print(f"\n{args.model} on digits, {len(windows)} windows of {args.window} s, "
          f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}; CPU "
          "as a share of one core")
    print(f"trainer, no page open:           {alone:,.0f} img/s (median of "
          f"{len(rates['no page'])})")
    print(f"trainer, studio Watch tab open:  {watched:,.0f} img/s (median of "
          f"{len(rates['watching'])})")
    print(f"ratio:                           {watched / alone:.3f}x")


if __name__ == "__main__":
    main()
