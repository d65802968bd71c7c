"""The memorisation check: samples beside their nearest training images, copies flagged."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import ganvas
from ganvas.cli.main import main
from ganvas.metrics.nearest import nearest_training_images


class PixelExtractor:
    """A stand-in for Inception: 4x4 average pool of the pixels."""

    identity = "test-avgpool4"

    def features(self, images):
        x = torch.as_tensor(np.asarray(images)) if not torch.is_tensor(images) else images
        x = x.float() if x.dtype == torch.uint8 else (x.float().clamp(-1, 1) + 1) * 127.5
        return F.adaptive_avg_pool2d(x, 4).flatten(1).double().numpy() / 255.0 + 0.01


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANVAS_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def run(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(20):
        array = np.full((16, 16, 3), rng.integers(0, 255, 3), dtype=np.uint8)
        array[4:12, 4:12] = rng.integers(0, 255, 3)
        Image.fromarray(array).save(folder / f"{i:02d}.png")
    return ganvas.train(data=str(folder), model="dcgan", resolution=16, steps=2, batch_size=8,
                        out=str(tmp_path / "run"), workers=1,
                        model_options={"base_channels": 8}, progress=False, log=lambda m: None)


def test_samples_that_are_in_the_training_set_are_flagged(run, tmp_path):
    # A "training set" holding the model's own sample 0 among random pictures. This barely
    # trained model draws nearly the same picture for every latent, so every sample is a
    # copy of that one training image.
    copies = tmp_path / "copies"
    copies.mkdir()
    model = ganvas.load(run.run_dir)
    model.sample(1, seed=0)[0].save(copies / "copy.png")
    rng = np.random.default_rng(1)
    for i in range(16):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(
            copies / f"other{i:02d}.png")
    result = nearest_training_images(run.run_dir, data=str(copies), num=6, k=3,
                                     inception=PixelExtractor(), device="cpu",
                                     progress=False, log=lambda m: None)
    assert result.neighbours.shape == result.distances.shape == (6, 3)
    assert np.all(np.diff(result.distances, axis=1) >= 0)  # nearest first
    assert list(result.neighbours[:, 0]) == [0] * 6  # copy.png sorts first
    assert result.distances[:, 0].max() < 1e-3 < result.threshold
    assert result.likely_copies == list(range(6))
    assert "likely a copy" in result.summary()
    assert result.picture.size == (4 * 18 + 2, 6 * 18 + 2)


def test_nearest_command_and_its_guards(run, tmp_path, capsys, monkeypatch):
    import ganvas.metrics.nearest as nearest

    monkeypatch.setattr(nearest, "load_inception", lambda *a, **k: PixelExtractor())
    out = tmp_path / "check"
    assert main(["generate", str(run.run_dir), "--nearest", "2", "--num", "3",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sample 2: training image" in printed and (out / "nearest-seed0.png").is_file()
    assert "no sign of copying" in printed  # grey early samples, colourful squares
    for extra, message in ((["--data", "x"], "--data and --inception go with --nearest"),
                           (["--nearest", "0"], "--nearest must be"),
                           (["--nearest", "2", "--data", str(tmp_path / "none")], "--data")):
        assert main(["generate", str(run.run_dir), "--out", str(out)] + extra) != 0
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, extra


def test_nearest_other_in_blocks_equals_the_whole_matrix():
    from ganvas.metrics.nearest import cosine_distances, nearest_other

    features = np.random.default_rng(0).normal(size=(37, 5))
    whole = cosine_distances(features, features)
    np.fill_diagonal(whole, np.inf)
    assert np.allclose(nearest_other(features, block=8), whole.min(axis=1), atol=1e-5)
