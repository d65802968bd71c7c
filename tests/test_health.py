"""Failures built on purpose, and the diagnosis, rollback and remedies they must trigger."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import ganvas
from ganvas.cli.main import main
from ganvas.training.health.rules import diagnose

QUIET = dict(progress=False, log=lambda m: None)
# The scenarios below were tuned on float32 trajectories; pinning the precision keeps them
# the same on machines with and without native bf16 (where "auto" would differ).
DIGITS = dict(data="digits", batch_size=32, sample_every=10_000, precision="fp32",
              model_options={"base_channels": 16}, **QUIET)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANVAS_CACHE", str(tmp_path / "cache"))


def records(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def events(run_dir, kind=None):
    return [r for r in records(run_dir) if "event" in r and (kind is None or r["event"] == kind)]


class OneImageGenerator(ganvas.Callback):
    """Makes the generator ignore z: every sample is the same picture."""

    def on_train_start(self, trainer):
        G = trainer.generator
        forward = G.forward
        G.forward = lambda z: forward(z[:1].expand_as(z).contiguous())


def test_a_generator_that_draws_one_image_is_diagnosed_as_mode_collapse(tmp_path):
    result = ganvas.train(steps=12, log_every=2, health_warmup=0, out=str(tmp_path / "run"),
                          callbacks=[OneImageGenerator()], **DIGITS)
    collapse = events(result.run_dir, "mode_collapse")
    assert collapse, events(result.run_dir)
    assert "mode collapse" in collapse[0]["message"] and "try" in collapse[0]["message"]
    ticks = [r for r in records(result.run_dir) if "Health/duplicates" in r]
    assert ticks[-1]["Health/duplicates"] == 1.0 and ticks[-1]["Health/diversity"] < 0.01


def test_a_learning_generator_is_not_called_collapsed(tmp_path):
    """A freshly initialised generator draws near-identical blobs; once past the warm-up
    of a normal run, nothing may be reported as collapse."""
    result = ganvas.train(steps=200, log_every=20, health_warmup=100, lr_d=1e-4,
                          out=str(tmp_path / "run"), **DIGITS)
    ticks = [r for r in records(result.run_dir) if "Health/diversity" in r]
    assert len(ticks) == 10 and ticks[-1]["Health/diversity"] > ticks[0]["Health/diversity"]
    assert not events(result.run_dir, "mode_collapse")


def test_a_far_too_high_discriminator_learning_rate_is_diagnosed(tmp_path):
    result = ganvas.train(steps=160, log_every=10, health_warmup=40, lr_d=0.05,
                          out=str(tmp_path / "run"), **DIGITS)
    found = events(result.run_dir, "discriminator_wins")
    assert found, events(result.run_dir)
    message = found[0]["message"]
    assert message.startswith("The discriminator is winning") and "--lr-d 2.5e-02" in message


def test_auto_balance_applies_the_remedy_and_says_so(tmp_path):
    # 240 steps: on this seed's trajectory the remedy comes at step 160; the run must go on
    # after it to show its effect.
    result = ganvas.train(steps=240, log_every=10, health_warmup=40, lr_d=0.05,
                          auto_balance=True, out=str(tmp_path / "run"), **DIGITS)
    applied = events(result.run_dir, "auto_balance")
    assert applied and "--lr-d 0.05 -> 0.025" in applied[0]["message"]
    after = [r for r in records(result.run_dir)
             if "LR/D" in r and r["step"] > applied[0]["step"]]
    assert after and all(r["LR/D"] <= 0.025 for r in after)


class PoisonOnce(ganvas.Callback):
    """Puts a NaN into the generator's weights once, at step 7."""

    def __init__(self):
        self.done = False

    def on_step_end(self, trainer):
        if trainer.step == 7 and not self.done:
            self.done = True
            with torch.no_grad():
                _poison(trainer)


def test_an_injected_nan_rolls_back_and_training_continues(tmp_path):
    result = ganvas.train(steps=16, log_every=2, checkpoint_every=4, lr_g=2e-4, lr_d=2e-4,
                          out=str(tmp_path / "run"), callbacks=[PoisonOnce()], **DIGITS)
    rollbacks = events(result.run_dir, "rollback")
    assert len(rollbacks) == 1, events(result.run_dir)
    assert "rolled back to step 4" in rollbacks[0]["message"]
    assert result.step == 16 and not result.interrupted
    state = torch.load(result.checkpoint, weights_only=True)
    assert all(torch.isfinite(t).all() for t in state["generator"].values())
    last = [r for r in records(result.run_dir) if "LR/G" in r][-1]
    assert last["LR/G"] == pytest.approx(1e-4) and last["LR/D"] == pytest.approx(1e-4)
    assert np.isfinite(last["Loss/D"]) and np.isfinite(last["Loss/G"])


def _folder(tmp_path, count):
    folder = tmp_path / f"set{count}"
    folder.mkdir()
    rng = np.random.default_rng(count)
    for i in range(count):
        image = np.zeros((28, 28), np.uint8)
        y, x = rng.integers(4, 20, 2)
        image[y:y + 8, x:x + 8] = 255
        Image.fromarray(image).save(folder / f"{i}.png")
    return folder


def test_ada_strength_rises_on_a_16_image_set(tmp_path):
    result = ganvas.train(steps=60, log_every=10, augment="ada", ada_kimg=1.0,
                          out=str(tmp_path / "run"), resolution=28, channels=1,
                          **{**DIGITS, "data": str(_folder(tmp_path, 16)), "batch_size": 16})
    p = [r["Augment/p"] for r in records(result.run_dir) if "Augment/p" in r]
    assert len(p) == 6 and p[-1] > 0.2 and p[-1] >= p[0]


def test_doctor_reports_and_plots(tmp_path, capsys):
    run = ganvas.train(steps=160, log_every=10, health_warmup=40, lr_d=0.05,
                       out=str(tmp_path / "run"), **DIGITS).run_dir
    assert main(["doctor", str(run)]) == 0
    out = capsys.readouterr().out
    for heading in ("Timeline:", "Diagnosis:", "Recommendations:"):
        assert heading in out
    assert "The discriminator is winning" in out and "ganvas train --resume" in out
    picture = Image.open(run / "health.png")
    assert picture.size[0] > 500
    assert main(["doctor", str(tmp_path)]) == 2
    assert "metrics.jsonl" in capsys.readouterr().err


def test_rules_on_a_synthetic_healthy_history():
    healthy = [{"step": s, "Loss/D": 1.2, "Loss/G": 0.9 + 0.01 * (s % 3), "D/real": 0.6,
                "D/fake": 0.4, "D/accuracy": 0.7, "Health/diversity": 0.8,
                "Health/duplicates": 0.0, "LR/G": 2e-4, "LR/D": 2e-4}
               for s in range(10, 400, 10)]
    assert diagnose(healthy) == []
    oscillating = [dict(r, **{"Loss/G": 0.5 if i % 2 else 4.0}) for i, r in enumerate(healthy)]
    assert [f.kind for f in diagnose(oscillating)] == ["oscillation"]
    weak_d = [dict(r, **{"D/accuracy": 0.2, "D/real": 0.3, "D/fake": 0.7}) for r in healthy]
    assert [f.kind for f in diagnose(weak_d)] == ["generator_wins"]


# ---- regressions from the code review ----------------------------------------------------

def test_resume_with_new_rates_then_rollback_halves_the_new_rates(tmp_path):
    class PoisonAt(PoisonOnce):
        def on_step_end(self, trainer):
            if trainer.step == 11 and not self.done:
                self.done = True
                with torch.no_grad():
                    _poison(trainer)

    run = ganvas.train(steps=8, log_every=2, checkpoint_every=4, out=str(tmp_path / "run"),
                       **DIGITS).run_dir
    ganvas.resume(run, steps=16, lr_g=1e-5, lr_d=1e-5, callbacks=[PoisonAt()], **QUIET)
    rollback = events(run, "rollback")
    assert len(rollback) == 1 and "lr-g 5e-06, lr-d 5e-06" in rollback[0]["message"]


class PoisonAlways(ganvas.Callback):
    def on_step_end(self, trainer):
        if trainer.step >= 5:
            with torch.no_grad():
                _poison(trainer)


def test_after_the_last_rollback_training_stops_at_the_last_good_state(tmp_path):
    result = ganvas.train(steps=30, log_every=2, checkpoint_every=4, max_rollbacks=1,
                          out=str(tmp_path / "run"), callbacks=[PoisonAlways()], **DIGITS)
    assert result.diverged and result.step == 4
    kinds = [e["event"] for e in events(result.run_dir)]
    assert kinds == ["rollback", "divergence"]
    ticks = [r for r in records(result.run_dir) if "event" not in r]
    assert ticks[-1]["step"] <= 4 and all(np.isfinite(r["Loss/G"]) for r in ticks)
    state = torch.load(result.checkpoint, weights_only=True)
    assert state["step"] == 4
    assert all(torch.isfinite(t).all() for t in state["generator"].values())


def test_instance_noise_schedule_is_fixed_when_a_run_is_extended(tmp_path):
    run = ganvas.train(steps=4, log_every=2, instance_noise=0.1, out=str(tmp_path / "run"),
                       **DIGITS).run_dir
    assert "instance_noise_steps: 4" in (run / "config.yaml").read_text()
    ganvas.resume(run, steps=8, **QUIET)
    sigmas = [r["Noise/sigma"] for r in records(run) if "Noise/sigma" in r]
    assert sigmas[-1] == 0.0 and sigmas == sorted(sigmas, reverse=True)


def test_resuming_an_older_checkpoint_sets_newer_ones_aside(tmp_path):
    run = ganvas.train(steps=8, log_every=2, checkpoint_every=4, out=str(tmp_path / "run"),
                       **DIGITS).run_dir
    older = run / "checkpoints" / "step-0000004.pt"
    ganvas.resume(older, steps=6, **QUIET)
    names = sorted(p.name for p in (run / "checkpoints").glob("step-*.pt"))
    assert names == ["step-0000000.pt", "step-0000004.pt", "step-0000006.pt"]
    # a second abandonment must not overwrite the first one's files
    ganvas.resume(older, steps=8, **QUIET)
    aside = sorted(p.relative_to(run / "checkpoints" / "abandoned").parts[-1]
                   for p in (run / "checkpoints" / "abandoned").rglob("step-*.pt"))
    assert aside == ["step-0000006.pt", "step-0000008.pt"]


def _poison(trainer):
    """Put one NaN into the generator's first weight tensor (whatever its memory layout)."""
    weight = next(trainer.generator.parameters())
    weight[(0,) * weight.dim()] = float("nan")
