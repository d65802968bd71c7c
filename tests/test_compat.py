"""Runs written by ganvas 0.1.0 (checkpoint format 1) still load, sample and resume.

``tests/data/run-0.1.0`` was written by ganvas 0.1.0: the lesson's DCGAN at 16 px on
digits, ADA on, 6 steps of 8 images, a checkpoint at step 6 and its generator folder.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch

import ganvas
from ganvas.cli.main import main
from ganvas.config import TrainConfig
from ganvas.runs import checkpoint as ckpt

OLD_RUN = Path(__file__).parent / "data" / "run-0.1.0"


@pytest.fixture
def old_run(tmp_path, monkeypatch):
    monkeypatch.setenv("GANVAS_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    return run


def test_a_version_1_checkpoint_is_read_in_todays_layout(old_run):
    path, state = ckpt.latest_checkpoint(old_run)
    assert path.name == "step-0000006.pt" and state["version"] == 1
    assert state["images_seen"] == 6 * 8  # its clock: steps of a fixed batch
    assert isinstance(state["noise_rng"], torch.Tensor)


def test_an_old_run_generates_from_its_checkpoint_and_its_generator_folder(old_run):
    from_run = ganvas.load(old_run).sample_tensor(4, seed=1)
    from_export = ganvas.load(old_run / "generator").sample_tensor(4, seed=1)
    assert from_run.shape == (4, 1, 16, 16) and torch.equal(from_run, from_export)
    assert from_run.min() >= -1 and from_run.max() <= 1


def test_an_old_run_resumes_on_todays_clock(old_run):
    result = ganvas.resume(old_run, steps=8, progress=False, log=lambda m: None)
    assert result.step == 8 and not result.interrupted
    state = torch.load(result.checkpoint, weights_only=True)
    assert state["version"] == ckpt.VERSION and state["images_seen"] == 8 * 8
    assert state["augment"]["p"] > 0  # ADA went on adapting from its saved state
    assert state["config"]["ema_rampup"] == 0.05  # the ramp-up it trained with, not today's
    records = [json.loads(x) for x in (old_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "event" not in r] == [2, 4, 6, 8]
    assert records[-1]["kimg"] == 0.064


def test_doctor_reads_an_old_run(old_run, capsys):
    assert main(["doctor", str(old_run)]) == 0
    assert "Diagnosis:" in capsys.readouterr().out


def test_a_run_saved_before_the_ema_ramp_up_was_a_setting_keeps_the_one_it_had(tmp_path):
    from ganvas.training.session import _resumed_config

    saved = TrainConfig(data="emoji", model="stylegan2", resolution=64).to_dict()
    saved.pop("ema_rampup")
    assert _resumed_config({"config": saved}, tmp_path, {}).ema_rampup == 0.05
    today = _resumed_config({"config": {**saved, "ema_rampup": 0.3}}, tmp_path, {})
    assert today.ema_rampup == 0.3


def test_a_run_saved_before_mode_seeking_was_chosen_automatically_keeps_what_it_had(tmp_path):
    # Its config saved None, which meant on for a conditional run and off otherwise; MSG on
    # a small folder chooses 1 today, and resuming must not switch it on mid-run.
    from ganvas.training.session import _resumed_config

    saved = TrainConfig(data="emoji", model="msg", resolution=64).to_dict()
    assert saved["mode_seeking"] is None
    assert _resumed_config({"config": saved}, tmp_path, {}).mode_seeking == 0.0
    labelled = {**saved, "model": "dcgan", "conditional": True}
    assert _resumed_config({"config": labelled}, tmp_path, {}).mode_seeking == 1.0
    given = _resumed_config({"config": saved}, tmp_path, {"mode_seeking": 0.5})
    assert given.mode_seeking == 0.5
