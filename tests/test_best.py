"""--keep-best and --stop-when-stale on a scripted FID sequence: the best checkpoint and
generator are kept (and survive a resume), a stale run ends naming its best step."""

import json

import pytest
import torch

import ganvas
from ganvas.training.callbacks.fid import FIDMonitor

TINY = dict(data="digits", resolution=16, batch_size=8, latent_dim=8, log_every=1,
            model_options={"base_channels": 8}, health=False, fid_every=1,
            progress=False, log=lambda m: None)


class ScriptedFID(FIDMonitor):
    """FID from a list, one value per tick (no Inception network in tests)."""

    def __init__(self, values):
        super().__init__(every=1, num=2)
        self.values = values

    def on_train_start(self, trainer):
        pass

    def on_tick(self, trainer, record):
        if trainer.step - 1 < len(self.values):
            record["Metric/FID"] = self.values[trainer.step - 1]


def test_the_lowest_fid_is_kept_and_a_stale_run_ends(tmp_path):
    messages = []
    result = ganvas.train(steps=20, keep_best=True, stop_when_stale=3,
                          out=str(tmp_path / "run"),
                          callbacks=[ScriptedFID([90, 80, 85, 70, 75, 72, 71, 60])],
                          **{**TINY, "log": messages.append})
    # best 70 at step 4; steps 5, 6 and 7 did not improve: the run ends at step 7
    assert result.interrupted and result.step == 7
    stop = next(m for m in messages if m.startswith("stopping:"))
    assert "not improved for 3 measurements" in stop and "best 70.00 at step 4" in stop
    best = torch.load(result.run_dir / "best" / "checkpoint.pt", weights_only=True)
    assert best["step"] == 4
    generator = json.loads((result.run_dir / "best" / "generator" / "config.json").read_text())
    assert generator["step"] == 4
    assert torch.equal(ganvas.load(result.run_dir / "best" / "generator").sample_tensor(2),
                       ganvas.load(result.run_dir / "best" / "checkpoint.pt").sample_tensor(2))


def test_the_best_survives_a_resume(tmp_path):
    run = tmp_path / "run"
    ganvas.train(steps=3, keep_best=True, out=str(run), callbacks=[ScriptedFID([50, 40, 45])],
                 **TINY)
    # resumed: a worse value keeps the old best, a better one replaces it
    ganvas.resume(run, steps=5, callbacks=[ScriptedFID([0, 0, 0, 42, 30])], progress=False,
                  log=lambda m: None)
    assert torch.load(run / "best" / "checkpoint.pt", weights_only=True)["step"] == 5
    state = torch.load(sorted((run / "checkpoints").glob("*.pt"))[-1], weights_only=True)
    assert state["callbacks"]["BestFID"]["best"] == 30


@pytest.mark.parametrize("flags", [{"keep_best": True}, {"stop_when_stale": 2}])
def test_without_fid_every_it_is_one_line(tmp_path, flags):
    with pytest.raises(ganvas.GanvasError, match="add --fid-every N"):
        ganvas.train(**{**TINY, "fid_every": None}, **flags, steps=2, out=str(tmp_path / "r"))
