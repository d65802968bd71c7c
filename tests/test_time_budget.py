"""``--time 20m``: a wall-clock budget that ends the run cleanly with a checkpoint,
counts afresh on resume, and keeps resume exact (a fake clock here: tests do not wait)."""

import json

import pytest
import torch

import ganvas
from ganvas.cli.main import main
from ganvas.training.callbacks import time_budget

TINY = dict(data="digits", resolution=16, batch_size=8, latent_dim=8, log_every=2,
            model_options={"base_channels": 8}, health=False, progress=False,
            log=lambda m: None)


class FakeClock:
    """Every reading is ``tick`` seconds after the last."""

    def __init__(self, tick: float):
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def _weights(run):
    state = torch.load(sorted((run / "checkpoints").glob("*.pt"))[-1], weights_only=True)
    return state["step"], state["generator"]


def test_a_time_budget_ends_at_a_tick_with_a_checkpoint_and_resume_stays_exact(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(time_budget.time, "monotonic", FakeClock(7.0))
    first = ganvas.train(time_budget="60s", out=str(tmp_path / "run"), **TINY)
    assert first.interrupted and 4 <= first.step <= 12
    records = [json.loads(x) for x in (first.run_dir / "metrics.jsonl").read_text().splitlines()]
    left = [r["Time/left"] for r in records if "Time/left" in r]
    assert left == sorted(left, reverse=True) and left[-1] == 0
    assert "time_budget: 60s" in (first.run_dir / "config.yaml").read_text()
    assert _weights(first.run_dir)[0] == first.step
    # the doctor says how far it got without the step ceiling a budget stands on
    assert main(["doctor", str(first.run_dir)]) == 0
    out = capsys.readouterr().out
    assert " steps in a 60s time budget (" in out and "1000000000" not in out
    # resumed, it gets the budget afresh and ends at a tick again
    second = ganvas.resume(first.run_dir, progress=False, log=lambda m: None)
    assert second.interrupted and second.step > first.step
    # the same weights as one uninterrupted run of that many steps
    straight = ganvas.train(steps=second.step, out=str(tmp_path / "straight"), **TINY)
    step_a, a = _weights(second.run_dir)
    step_b, b = _weights(straight.run_dir)
    assert step_a == step_b
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_a_time_budget_and_a_length_end_at_whichever_comes_first(tmp_path, monkeypatch):
    monkeypatch.setattr(time_budget.time, "monotonic", FakeClock(0.001))
    result = ganvas.train(time_budget="1h", steps=4, out=str(tmp_path / "run"), **TINY)
    assert result.step == 4 and not result.interrupted


@pytest.mark.parametrize("value", ["5x", "0s", "20", "m", "1h30", "3 days"])
def test_a_bad_time_is_one_line(capsys, tmp_path, value):
    assert main(["train", "--data", "digits", "--time", value, "--out",
                 str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--time" in err and "90s, 20m, 2h" in err and len(err.splitlines()) == 1


def test_a_spent_budget_is_a_success_for_the_command_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(time_budget.time, "monotonic", FakeClock(30.0))
    code = main(["train", "--data", "digits", "--resolution", "16", "--batch-size", "8",
                 "--latent-dim", "8", "--model-option", "base_channels=8", "--no-health",
                 "--time", "1m", "--no-progress", "--out", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert code == 0 and "resume:    ganvas train --resume" in out
    assert "time budget (1m) is spent" in err and "of 1000000000" not in err
