"""ganvas studio without a browser: the Train form's arguments and checks, training processes
started, stopped, resumed and failing, what Watch and Explore read, and the command's one-line
errors. The browser tests are in test_studio_browser.py."""

import socket
import subprocess
import sys
import time

import pytest

from ganvas.cli.main import main
from ganvas.errors import GanvasError
from ganvas.studio import explore, watch
from ganvas.studio.runs import Studio, plan_run, split_flags, train_arguments

TINY = ["--data", "digits", "--model", "dcgan", "--batch-size", "16", "--log-every", "2",
        "--sample-every", "4", "--health-warmup", "0", "--model-option", "base_channels=8",
        "--precision", "fp32"]


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


def test_runs_start_finish_resume_and_fail_in_processes_of_their_own(tmp_path, cache):
    pytest.importorskip("pandas", reason="the studio extra is not installed")
    studio = Studio(tmp_path / "runs")
    assert studio.runs() == []
    folder = studio.start([*TINY, "--steps", "8"])
    assert folder.parent == tmp_path / "runs" and folder.name.endswith("digits-dcgan-28px")
    assert studio.view(folder).state in ("starting", "running", "finished")
    assert studio.wait(folder.name, timeout=120) == 0
    view = _wait(studio, folder.name, ("finished",))
    assert view.status.step == 8 and view.label() == f"{folder.name} (finished, step 8/8)"
    assert [v.name for v in studio.runs()] == [folder.name]
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
    # Extending: the same run goes on to 12 steps.
    studio.resume(folder.name, ["--steps", "12"])
    assert studio.wait(folder.name, timeout=120) == 0
    assert _wait(studio, folder.name, ("finished",)).status.step == 12

    # Explore draws from the newest checkpoint.
    model = explore.Models().get(folder, truncation=0.7)
    drawn = explore.draw_seeds(model, explore.seeds_from("0-2"))
    assert [c for _, c in drawn] == ["seed 0", "seed 1", "seed 2"]
    assert drawn[0][0].size == (280, 280)  # 28 px enlarged ten times for the eye
    picture, path = explore.full_size(model, 1, tmp_path)
    assert path.is_file() and picture.size == (532, 532)
    with pytest.raises(GanvasError, match="at most 64"):
        explore.seeds_from("0-100")
    with pytest.raises(GanvasError, match="truncation 2: give a number from 0 to 1"):
        explore.Models().get(folder, truncation=2)
    with pytest.raises(GanvasError, match="no style vectors"):
        explore.style_mixing(model, [1], [2])


def test_stopping_a_run_writes_a_checkpoint_first(tmp_path, cache):
    studio = Studio(tmp_path / "runs")
    folder = studio.start([*TINY, "--steps", "100000", "--checkpoint-every", "100000"])
    view = _wait(studio, folder.name, ("running",))
    while studio.view(folder).status.step < 4:
        time.sleep(0.1)
    assert "asked" in studio.stop(folder.name)
    assert studio.wait(folder.name, timeout=120) == 130  # as after Ctrl-C
    view = studio.view(folder)
    assert view.state == "interrupted"
    assert (folder / "checkpoints" / f"step-{view.status.step:07d}.pt").is_file()
    with pytest.raises(GanvasError, match="not running"):
        studio.stop(folder.name)


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


def test_the_studio_loads_no_training_code():
    done = subprocess.run(
        [sys.executable, "-c", "import sys, ganvas.studio.app; print(' '.join(m for m in "
         "sys.modules if m.startswith('ganvas.')))"], capture_output=True, text=True)
    if "No module named 'gradio'" in done.stderr:
        pytest.skip("the studio extra is not installed")
    assert done.returncode == 0, done.stderr
    assert not {m for m in done.stdout.split() if m.startswith("ganvas.training")}
