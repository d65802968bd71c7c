"""ganvas studio end to end, in a real browser: Debian's Chromium driven by Playwright.

One session does what a user does: start a tiny run on generated pictures, watch samples
and a health message arrive, stop it, draw pictures by seed, repaint a tiny photo, resume the
run with the doctor's settings from a second tab, then kill the browser and the studio
(SIGKILL) while it trains: the run trains on, a new studio finds it and stops it, and its
folder is whole. (That a run the studio stopped resumes is the doctor's resume above, which
runs ``ganvas train --resume``.) Each tab is photographed (GANVAS_SCREENSHOTS=DIR keeps the
pictures: the README's come from here).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ganvas.runs.status import process_alive, read_status
from ganvas.studio.runs import Studio

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api", reason="the studio extra is not "
                                 "installed: pip install 'ganvas[studio]'")
pytest.importorskip("gradio", reason="the studio extra is not installed")
pytestmark = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not "
                       "installed (apt-get install chromium)"),
    pytest.mark.slow,  # a browser, a studio and two training processes: about 40 s
]
# As a root process on a machine with no network: no sandbox, nothing fetched at start.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
WAIT_MS = 60_000
LEFT_RUNNING: list[subprocess.Popen] = []  # killed after the test, whatever happened


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL a process and everything it started in its session (a browser's renderers)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


@pytest.fixture
def cleanup(tmp_path):
    yield
    for process in LEFT_RUNNING:
        kill_group(process)
    LEFT_RUNNING.clear()
    for status in (tmp_path / "runs").glob("*/status.json"):  # a trainer a failure left
        pid = json.loads(status.read_text()).get("pid")
        if isinstance(pid, int) and process_alive(pid):
            os.kill(pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def picture_folder(folder: Path, count: int = 40, size: int = 32) -> Path:
    """Coloured discs on a plain ground: pictures a tiny GAN can start to learn."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(count):
        image = Image.new("RGB", (size, size), tuple(int(x) for x in rng.integers(0, 80, 3)))
        draw = ImageDraw.Draw(image)
        x, y, r = (int(v) for v in rng.integers((6, 6, 4), (26, 26, 10)))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(v) for v in
                                                              rng.integers(120, 256, 3)))
        image.save(folder / f"disc-{i:03d}.png")
    return folder


class Server:
    """``ganvas studio`` as a user starts it: its own process."""

    def __init__(self, runs: Path, log: Path):
        self.port = free_port()
        self.log = open(log, "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ganvas", "studio", "--runs", str(runs), "--port",
             str(self.port)], stdout=self.log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)
        LEFT_RUNNING.append(self.process)
        self.url = f"http://127.0.0.1:{self.port}/"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, log.read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"the studio did not start: {log.read_text()}")

    def kill(self) -> None:
        kill_group(self.process)
        self.log.close()


class Browser:
    """Chromium in its own process (so the test can SIGKILL it), driven over CDP."""

    def __init__(self, driver, profile: Path):
        port = free_port()
        self.process = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_ARGS, f"--remote-debugging-port={port}",
             f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        LEFT_RUNNING.append(self.process)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.browser = driver.chromium.connect_over_cdp(f"http://127.0.0.1:{port}")
                break
            except Exception:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.3)
        context = self.browser.contexts[0] if self.browser.contexts else \
            self.browser.new_context()
        self.page = context.new_page()
        self.page.set_viewport_size({"width": 1280, "height": 900})

    def kill(self) -> None:
        kill_group(self.process)


def choose(page, field: str, option: str) -> None:
    page.locator(f"#{field} input").click()
    page.get_by_role("option", name=option).first.click()


def type_into(page, field: str, text: str) -> None:
    box = page.locator(f"#{field} input, #{field} textarea").first
    box.fill(text)
    box.press("Tab")


def shoot(page, name: str, folder: Path) -> None:
    page.wait_for_timeout(500)
    page.screenshot(path=str(folder / f"studio-{name}.png"), full_page=True)
    keep = os.environ.get("GANVAS_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / f"studio-{name}.png", Path(keep) / f"studio-{name}.png")


def wait_for_state(run: Path, states: tuple[str, ...], seconds: float = 60) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = read_status(run).state
            if state in states:
                return state
        except Exception:
            pass
        time.sleep(0.25)
    raise AssertionError(f"{run.name} never became {states}: {(run / 'train.log').read_text()}")


def test_the_studio_in_a_browser(tmp_path, monkeypatch, cleanup):
    from playwright.sync_api import expect

    monkeypatch.setenv("GANVAS_CACHE", str(tmp_path / "cache"))
    data = picture_folder(tmp_path / "discs")
    runs, shots = tmp_path / "runs", tmp_path / "screenshots"
    shots.mkdir()
    server = Server(runs, tmp_path / "studio.log")
    with playwright.sync_playwright() as driver:
        browser = Browser(driver, tmp_path / "profile-1")
        page = browser.page
        page.goto(server.url)

        # Train: a tiny DCGAN whose D learns far too fast, so the monitor speaks at once.
        type_into(page, "train-data", str(data))
        choose(page, "train-model", "dcgan")
        type_into(page, "train-resolution", "32")
        type_into(page, "train-steps", "100000")
        type_into(page, "train-batch", "16")
        type_into(page, "train-extra", "--lr-d 0.05 --health-warmup 0 --log-every 4 "
                  "--sample-every 8 --checkpoint-every 40 --model-option base_channels=8")
        page.locator("#train-check").click()
        expect(page.locator("#train-plan")).to_contain_text("model: dcgan", timeout=WAIT_MS)
        expect(page.locator("#train-plan")).to_contain_text("250 times", timeout=WAIT_MS)
        shoot(page, "train", shots)
        page.locator("#train-start").click()
        expect(page.locator("#train-message")).to_contain_text("Started", timeout=WAIT_MS)
        run = next(runs.iterdir())
        assert run.name.endswith("discs-dcgan-32px")

        # Watch: samples and the health monitor's message arrive while it runs.
        page.get_by_role("tab", name="Watch").click()
        expect(page.locator("#watch-status")).to_contain_text("running", timeout=WAIT_MS)
        expect(page.locator("#watch-events")).to_contain_text("discriminator",
                                                             timeout=WAIT_MS)
        expect(page.locator("#watch-samples img")).to_be_visible(timeout=WAIT_MS)
        page.locator("#watch-doctor").click()
        expect(page.locator("#watch-report")).to_contain_text("try", timeout=WAIT_MS)
        shoot(page, "watch", shots)

        # Stop: the run finishes its step, writes a checkpoint and says interrupted.
        page.get_by_role("tab", name="Train").click()
        page.locator("#run-stop").click()
        expect(page.locator("#run-message")).to_contain_text("asked", timeout=WAIT_MS)
        assert wait_for_state(run, ("interrupted",)) == "interrupted"
        stopped_at = read_status(run).step
        assert (run / "checkpoints" / f"step-{stopped_at:07d}.pt").is_file()
        row = page.locator("#runs-table tr", has_text=run.name)
        expect(row).to_contain_text("interrupted", timeout=WAIT_MS)

        # Explore: pictures by seed from the newest checkpoint.
        page.get_by_role("tab", name="Explore").click()
        type_into(page, "explore-seeds", "0-5")
        page.locator("#explore-generate").click()
        expect(page.locator("#explore-message")).to_contain_text("6 pictures",
                                                                timeout=WAIT_MS)
        expect(page.locator("#explore-pictures img")).to_have_count(6, timeout=WAIT_MS)
        type_into(page, "explore-seeds", "0-999")
        page.locator("#explore-generate").click()
        expect(page.locator("#explore-message")).to_contain_text("at most 64",
                                                                timeout=WAIT_MS)
        type_into(page, "explore-seeds", "0-5")
        page.locator("#explore-generate").click()
        expect(page.locator("#explore-message")).to_contain_text("6 pictures",
                                                                timeout=WAIT_MS)
        shoot(page, "explore", shots)

        # Repaint: a tiny photo in the style of a tiny painting, with the offline network.
        page.get_by_role("tab", name="Repaint").click()
        photo, painting = tmp_path / "photo.png", tmp_path / "painting.png"
        Image.open(next(data.iterdir())).resize((48, 48)).save(photo)
        rng = np.random.default_rng(1)
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(painting)
        page.locator("#repaint-photo input[type=file]").set_input_files(str(photo))
        page.locator("#repaint-painting input[type=file]").set_input_files(str(painting))
        type_into(page, "repaint-size", "48")
        type_into(page, "repaint-iterations", "10")
        page.locator("#repaint-start").click()
        expect(page.locator("#repaint-progress")).to_contain_text("done", timeout=WAIT_MS)
        expect(page.locator("#repaint-result img")).to_be_visible(timeout=WAIT_MS)
        shoot(page, "repaint", shots)

        # A second tab on the same run resumes it with the doctor's suggested settings.
        second = browser.page.context.new_page()
        second.goto(server.url)
        choose(second, "run-choice", run.name)
        second.get_by_role("tab", name="Watch").click()
        expect(second.locator("#watch-status")).to_contain_text("interrupted",
                                                                timeout=WAIT_MS)
        second.locator("#watch-remedy").click()
        expect(second.locator("#watch-report")).to_contain_text("Resumed", timeout=WAIT_MS)
        expect(second.locator("#watch-report")).to_contain_text("--lr-d 0.0002")
        assert any(line.startswith(f"$ ganvas train --resume {run}") and "--lr-d 0.0002" in line
                   for line in (run / "train.log").read_text().splitlines())
        second.close()
        wait_for_state(run, ("running",))
        deadline = time.monotonic() + 60
        while read_status(run).step <= stopped_at + 8 and time.monotonic() < deadline:
            time.sleep(0.25)
        assert read_status(run).step > stopped_at

        # SIGKILL the browser and the studio mid-run: the run trains on, untouched, and a
        # new studio finds it training, and stops it.
        trainer = read_status(run).pid
        browser.kill()
        server.kill()
        step = read_status(run).step
        deadline = time.monotonic() + 30
        while read_status(run).step <= step and time.monotonic() < deadline:
            time.sleep(0.1)
        assert process_alive(trainer) and read_status(run).step > step
        studio = Studio(runs)
        assert [v.label() for v in studio.runs()] == [f"{run.name} (running)"]
        studio.stop(run.name)
        assert wait_for_state(run, ("interrupted",)) == "interrupted"
        assert wait_gone(trainer)

    # The run folder is whole: every record readable, the newest checkpoint at its step.
    for line in (run / "metrics.jsonl").read_text().splitlines():
        json.loads(line)
    newest = sorted((run / "checkpoints").glob("step-*.pt"))[-1]
    assert int(newest.stem.split("-")[1]) == read_status(run).step
    assert {p.name for p in shots.iterdir()} == {f"studio-{t}.png" for t in
                                                 ("train", "watch", "explore", "repaint")}


def wait_gone(pid: int, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not process_alive(pid)
