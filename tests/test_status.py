"""status.json: what a run is doing, for any tool that watches runs (the studio to come).
Written atomically by the trainer; a run whose process is gone reads as stopped, never as
running forever."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

import ganvas
from ganvas.errors import GanvasError
from ganvas.runs.status import (
    HEARTBEAT_SECONDS,
    STALE_SECONDS,
    STATUS_NAME,
    RunStatus,
    read_status,
    this_host,
    write_status,
)
from ganvas.training.callbacks.status import StatusFile


@pytest.fixture
def pictures(tmp_path, monkeypatch):
    monkeypatch.setenv("GANVAS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(12):
        Image.new("RGB", (16, 16), (20 * i, 100, 255 - 20 * i)).save(folder / f"{i}.png")
    return folder


TINY = dict(model="dcgan", resolution=16, batch_size=4, latent_dim=8,
            model_options={"base_channels": 8}, log_every=2, sample_every=2,
            progress=False, log=lambda m: None)


class _HealthNote(ganvas.Callback):
    def on_tick(self, trainer, record):
        if trainer.step == 2:
            trainer.log_event("diagnosis", "a made-up diagnosis, for the status file")


def test_a_finished_run_says_so_with_its_numbers(pictures, tmp_path):
    result = ganvas.train(data=str(pictures), steps=4, out=str(tmp_path / "run"),
                          callbacks=[_HealthNote()], **TINY)
    saved = json.loads((result.run_dir / STATUS_NAME).read_text())
    assert saved["format"] == "ganvas-run-status" and saved["state"] == "finished"
    status = read_status(result.run_dir)
    assert (status.state, status.step, status.steps, status.images_seen) == (
        "finished", 4, 4, 16)
    assert status.pid == os.getpid() and status.host == this_host()
    assert status.heartbeat >= status.started and status.images_per_second > 0
    assert status.samples == str((result.run_dir / "samples" / "final.png").resolve())
    assert status.last_event["message"] == "a made-up diagnosis, for the status file"
    assert status.last_event["step"] == 2


def test_a_run_stopped_early_says_why(pictures, tmp_path):
    class StopAtTwo(ganvas.Callback):
        def on_step_end(self, trainer):
            if trainer.step == 2:
                trainer.request_stop("enough for this test")

    result = ganvas.train(data=str(pictures), steps=8, out=str(tmp_path / "run"),
                          callbacks=[StopAtTwo()], **TINY)
    status = read_status(result.run_dir)
    assert status.state == "interrupted" and status.reason == "enough for this test"
    assert status.step == 2
    ganvas.resume(result.run_dir, progress=False, log=lambda m: None)
    assert read_status(result.run_dir).state == "finished"


def _running(tmp_path, **fields):
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    values = dict(state="running", pid=os.getpid(), host=this_host(), step=3, steps=10,
                  started=1000.0, heartbeat=1000.0)
    write_status(run, RunStatus(**{**values, **fields}))
    return run


def test_a_gone_process_or_a_silent_one_reads_as_stopped(tmp_path):
    run = _running(tmp_path)
    assert read_status(run, now=1000.0 + 10).state == "running"
    # the same process, silent for longer than a trainer ever is: stopped
    late = read_status(run, now=1000.0 + STALE_SECONDS + 1)
    assert late.state == "stopped" and "no sign of life" in late.reason
    # a process that no longer exists: stopped at once, with how to go on
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    run = _running(tmp_path, pid=int(gone.stdout))
    status = read_status(run, now=1000.0 + 1)
    assert status.state == "stopped" and "is gone" in status.reason
    assert f"ganvas train --resume {run}" in status.reason
    # on another machine only the heartbeat can tell
    run = _running(tmp_path, pid=int(gone.stdout), host="elsewhere")
    assert read_status(run, now=1000.0 + 1).state == "running"
    assert STALE_SECONDS >= 4 * HEARTBEAT_SECONDS


def test_the_heartbeat_beats_between_ticks():
    class Clock:
        now = 0.0

        def __call__(self):
            return self.now

    class Run:  # what the callback reads of a trainer
        def __init__(self, folder):
            self.run_dir, self.step, self.images_seen = folder, 0, 0
            self.config = type("C", (), {"steps": 100})()

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        clock, run = Clock(), Run(Path(tmp))
        callback = StatusFile(clock=clock)
        callback.on_train_start(run)
        run.step, clock.now = 5, HEARTBEAT_SECONDS - 1
        callback.on_step_end(run)
        assert read_status(tmp, now=clock.now).step == 0  # not yet
        clock.now = HEARTBEAT_SECONDS + 1
        callback.on_step_end(run)
        saved = read_status(tmp, now=clock.now)
        assert saved.step == 5 and saved.heartbeat == clock.now


def test_what_is_not_a_status_gets_one_line(tmp_path):
    with pytest.raises(GanvasError, match="no such run folder"):
        read_status(tmp_path / "missing")
    with pytest.raises(GanvasError, match=r"not a ganvas run folder \(no status.json\)"):
        read_status(tmp_path)
    (tmp_path / STATUS_NAME).write_text("{ torn")
    with pytest.raises(GanvasError, match="status.json: unreadable"):
        read_status(tmp_path)
    (tmp_path / STATUS_NAME).write_text(json.dumps({"format": "other", "state": "running"}))
    with pytest.raises(GanvasError, match="not a ganvas run status"):
        read_status(tmp_path)


def test_a_run_whose_length_is_its_time_budget_plans_no_steps(pictures, tmp_path):
    result = ganvas.train(data=str(pictures), out=str(tmp_path / "run"), time_budget="1s",
                          **TINY)
    status = read_status(result.run_dir)
    assert status.state == "interrupted" and status.step > 0
    assert status.steps is None  # not the billion steps that bound such a run
