"""ganvas studio without a browser: the Train form's arguments and checks, training processes
started, stopped, resumed and failing, what Watch and Explore read, and the command's one-line
errors. The browser tests are in test_studio_browser.py."""

import json
import os
import signal
import socket
import sys
import time

import pytest

from ganvas.cli.main import main
from ganvas.errors import GanvasError
from ganvas.runs.status import process_alive
from ganvas.studio import explore, watch
from ganvas.studio.runs import Studio, plan_run, split_flags, train_arguments

TINY = ["--data", "digits", "--model", "dcgan", "--batch-size", "16", "--log-every", "2",
        "--sample-every", "4", "--health-warmup", "0", "--model-option", "base_channels=8",
        "--precision", "fp32"]


@pytest.fixture
def no_stray_trainers(tmp_path):
    """A failed test leaves no training process behind."""
    yield
    for status in tmp_path.glob("runs/*/status.json"):
        pid = json.loads(status.read_text()).get("pid")
        if isinstance(pid, int) and process_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_the_form_becomes_train_arguments():
    assert train_arguments("digits", "auto", "", 200.0, None, "ada", " ", "--lr-d 1e-4") == [
        "--data", "digits", "--steps", "200", "--augment", "ada", "--lr-d", "1e-4"]
    assert train_arguments("my photos", "dcgan", "128x64", "50") == [
        "--data", "my photos", "--model", "dcgan", "--resolution", "128x64", "--steps", "50"]
    assert split_flags("--data 'a b'") == ["--data", "a b"]
    with pytest.raises(GanvasError, match="more options: .*quotes"):
        split_flags("--data 'a b")


@pytest.mark.parametrize("arguments, message", [
    (["--steps", "5"], "choose the pictures"),
    (["--data", "digits", "--out", "x"], "--out is not for the Train form"),
    (["--data", "digits", "--resume", "x"], "--resume is not for the Train form"),
    (["--data", "digits", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["--data", "digits", "--lr-d", "fast"], "--lr-d"),
    (["--data", "digits", "--model", "nosuch"], "nosuch"),
    (["--data", "/no/such/folder"], "/no/such/folder"),
])
def test_the_form_is_checked_as_the_command_line_checks(cache, arguments, message):
    with pytest.raises(GanvasError, match=message) as caught:
        plan_run(arguments)
    assert "\n" not in str(caught.value)


def test_a_check_shows_the_dry_run_and_the_settings_warnings(cache):
    planned = plan_run([*TINY, "--lr-d", "0.05"])
    assert "model: dcgan" in planned.text and "# warning: --lr-d 0.05" in planned.text
    assert planned.resolved.model == "dcgan" and planned.resolved.resolution == 28


def _wait(studio, name, states, seconds=90):
    deadline = time.monotonic() + seconds
    while (view := studio.view(studio.find(name))).state not in states:
        assert time.monotonic() < deadline, (view.state, view.reason)
        time.sleep(0.2)
    return view


def test_runs_start_finish_resume_and_fail_in_processes_of_their_own(tmp_path, cache,
                                                                    no_stray_trainers):
    pytest.importorskip("pandas", reason="the studio extra is not installed")
    studio = Studio(tmp_path / "runs")
    assert studio.runs() == []
    folder = studio.start([*TINY, "--steps", "8"])
    other = studio.start([*TINY, "--steps", "4", "--seed", "1"])  # two runs at once
    assert folder.parent == tmp_path / "runs" and folder.name.endswith("digits-dcgan-28px")
    assert other.name.startswith("00001-") and other.name.endswith("digits-dcgan-28px")
    assert studio.view(folder).state in ("starting", "running", "finished")
    assert studio.wait(folder.name, timeout=120) == 0 == studio.wait(other.name, timeout=120)
    view = _wait(studio, folder.name, ("finished",))
    assert view.status.step == 8 and view.label() == f"{folder.name} (finished)"
    assert _wait(studio, other.name, ("finished",)).status.step == 4
    assert [v.name for v in studio.runs()] == [other.name, folder.name]
    assert "ganvas train --data digits" in (folder / "train.log").read_text()

    # What Watch shows: state, curves, samples, the monitor's messages, the doctor's advice.
    text = watch.status_markdown(view)
    assert "**finished**" in text and "step 8 of 8" in text and "model dcgan" in text
    curves = watch.read_curves(folder)
    losses = curves.frame("Losses")
    assert set(losses["series"]) == {"D loss", "G loss"} and losses["step"].max() == 8
    assert curves.frame("FID").empty
    assert watch.newest_grid(view).endswith("final.png")
    assert [c for _, c in watch.sample_grids(folder)][-1] == "final"
    assert any(e["event"] == "mode_collapse" for e in curves.events)
    assert "mode collapse" in watch.events_markdown(curves.events).lower()
    assert "What is wrong now" in watch.doctor(folder).text

    with pytest.raises(GanvasError, match="is not running"):
        studio.stop(folder.name)
    # A resume the process refuses: the page shows the command line's one line.
    studio.resume(folder.name, ["--steps", "4"])
    studio.wait(folder.name, timeout=120)
    view = studio.view(folder)
    assert view.state == "failed" and view.reason.startswith("ganvas: error: ")
    assert "has already trained 8 steps; give a larger --steps" in view.reason

    # Explore draws from the newest checkpoint.
    models = explore.Models()
    model = models.get(folder, truncation=0.7)
    drawn = explore.draw_seeds(model, explore.seeds_from("0-2"))
    assert [c for _, c in drawn] == ["seed 0", "seed 1", "seed 2"]
    assert drawn[0][0].size == (280, 280)  # 28 px enlarged ten times for the eye
    picture, path = explore.full_size(model, 1, tmp_path)
    assert path.is_file() and picture.size == (532, 532)
    with pytest.raises(GanvasError, match="at most 64"):
        explore.seeds_from("0-100")
    with pytest.raises(GanvasError, match="--truncation must be a number from 0 to 1, got 2"):
        explore.draw_seeds(models.get(folder, truncation=2), [0])
    assert model.truncation == 0.7  # another tab's truncation never reaches this one
    with pytest.raises(GanvasError, match="no style vectors"):
        explore.style_mixing(model, [1], [2])
    walk = explore.walk(folder, [1, 2], 4, tmp_path)
    assert walk.suffix == ".gif" and walk.stat().st_size > 0
    with pytest.raises(GanvasError, match="at least two seeds"):
        explore.walk(folder, [1], 4, tmp_path)
    near, summary = explore.nearest(folder)
    assert near.width > 28 and "nearest" in summary.lower()
    archive = explore.export(folder, "safetensors", tmp_path)
    import zipfile

    names = zipfile.ZipFile(archive).namelist()
    assert "README.md" in names and any(n.endswith(".safetensors") for n in names)
    with pytest.raises(GanvasError, match="upload a photo first"):
        explore.project_photo(model, None, 2, tmp_path)


def test_folders_that_are_not_runs_get_one_line(tmp_path):
    studio = Studio(tmp_path)
    (tmp_path / "holiday-photos").mkdir()
    with pytest.raises(GanvasError, match="holiday-photos: not a ganvas run folder"):
        studio.find("holiday-photos")
    with pytest.raises(GanvasError, match="no such run folder"):
        studio.find("00007-gone")
    with pytest.raises(GanvasError, match="choose a run first"):
        studio.find(None)
    assert studio.runs() == []


def test_the_command_names_a_port_in_use_and_a_missing_extra(capsys, monkeypatch, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["studio", "--runs", str(tmp_path), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"ganvas: error: --port {port}: already in use (another "
                           "studio?); choose another with --port")
    assert main(["studio", "--runs", str(tmp_path), "--port", "70000"]) == 2
    assert "--port 70000: give a port from 1 to 65535" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "gradio", None)
    assert main(["studio", "--runs", str(tmp_path)]) == 2
    assert "pip install 'ganvas[studio]'" in capsys.readouterr().err


def test_repaint_shows_progress_for_photos_and_videos(tmp_path, monkeypatch):
    pytest.importorskip("av")
    pytest.importorskip("cv2")
    import numpy as np
    import torch
    from PIL import Image
    from test_video import make_video, panning

    from ganvas.studio import repaint
    from ganvas.style import backbones
    from ganvas.style.backbones import tiny_backbone
    from ganvas.stylisers.folder import write_styliser
    from ganvas.stylisers.network import Styliser
    from ganvas.video.io import count_frames

    monkeypatch.setattr(backbones, "_SPECS", {**backbones._SPECS, "tiny": backbones._TINY})
    for where in ("ganvas.style.transfer.load_backbone", "ganvas.video.painters.load_backbone"):
        monkeypatch.setattr(where, lambda *a, **k: tiny_backbone())
    rng = np.random.default_rng(0)
    photo, painting = tmp_path / "photo.png", tmp_path / "painting.png"
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(photo)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(painting)

    steps = list(repaint.repaint_steps(str(photo), str(painting), tmp_path, size=48,
                                       iterations=6, backbone="tiny"))
    picture, summary, saved = steps[-1]
    assert summary.startswith("done") and saved.is_file() and picture.size == (48, 34)
    assert all(path is None for _, _, path in steps[:-1])
    with pytest.raises(GanvasError, match="style weight 'strong': give a number"):
        next(repaint.repaint_steps(str(photo), str(painting), tmp_path, style_weight="strong"))
    with pytest.raises(GanvasError, match="upload a painting"):
        next(repaint.repaint_steps(str(photo), None, tmp_path))

    torch.manual_seed(0)
    write_styliser(tmp_path / "styler", Styliser(16), {"kind": "per-style", "width": 16})
    picture, saved = repaint.repaint_with_styliser(str(photo), str(tmp_path / "styler"),
                                                   tmp_path)
    assert picture.size == (56, 40) and saved.is_file()

    clip = make_video(tmp_path / "clip.mp4", panning(4))
    for options in ({"styliser": str(tmp_path / "styler")},
                    {"painting": str(painting), "iterations": 3, "backbone": "tiny",
                     "size": 32}):
        steps = list(repaint.repaint_video_steps(str(clip), tmp_path, **options))
        frame, summary, video = steps[-1]
        assert summary.endswith("4 frames") and count_frames(video) == 4, options
    with pytest.raises(GanvasError, match="upload a painting or choose a styliser"):
        next(repaint.repaint_video_steps(str(clip), tmp_path))
    with pytest.raises(GanvasError, match="video .*photo.png"):
        next(repaint.repaint_video_steps(str(photo), tmp_path, painting=str(painting)))


def test_the_curves_are_read_as_the_log_grows(tmp_path):
    pytest.importorskip("pandas", reason="the studio extra is not installed")
    log = tmp_path / "metrics.jsonl"
    reader = watch.CurveReader(tmp_path)
    reader.update()  # no file yet
    assert reader.curves().frame("Losses").empty
    with open(log, "w") as handle:
        handle.write('{"step": 1, "Loss/D": 1.5, "Loss/G": 0.5}\n{"step": 2, "Loss/D": 1.4')
    reader.update()  # the torn last line waits for its end
    assert list(reader.curves().frame("Losses")["step"]) == [1, 1]
    with open(log, "a") as handle:
        handle.write(', "Loss/G": NaN}\nnot json\n{"step": 3, "event": "mode_collapse", '
                     '"message": "Possible mode collapse"}\n')
    reader.update()
    frame = reader.curves().frame("Losses")
    assert list(zip(frame["step"], frame["series"])) == [(1, "D loss"), (2, "D loss"),
                                                         (1, "G loss")]  # NaN not drawn
    assert reader.curves().events == [{"step": 3, "event": "mode_collapse",
                                        "message": "Possible mode collapse"}]
    log.write_text('{"step": 1, "Loss/D": 9.0}\n')  # rewritten shorter (a resume): read anew
    reader.update()
    assert list(reader.curves().frame("Losses")["value"]) == [9.0]
    with open(log, "a") as handle:  # a long run: the points are thinned, the newest kept
        for step in range(2, 5000):
            handle.write(f'{{"step": {step}, "Loss/D": {step}}}\n')
    reader.update()
    steps = list(reader.curves().frame("Losses")["step"])
    assert len(steps) <= watch.MAX_POINTS + 1 and steps[-1] == 4999 and steps[0] == 1
