"""A model family defined here alone (its networks, options and registration) trains,
resumes exactly, generates, is projected into and is chosen for the data it claims, with no
edit anywhere in ganvas: every
part of ganvas reaches a family through its declarations and the sampling contract."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import ganvas
from ganvas.auto_settings import choose_family
from ganvas.config import TrainConfig
from ganvas.generate import generate_to_folder
from ganvas.models import registry
from ganvas.models.networks import DiscriminatorNetwork, GeneratorNetwork
from ganvas.models.registry import Claim, DataProfile, ModelFamily, ModelSpec, register_model
from ganvas.project import project
from ganvas.style.backbones import tiny_backbone

NAME = "toy-test-family"


class ToyGenerator(GeneratorNetwork):
    """z -> a linear layer -> a 3x3 convolution -> tanh."""

    def __init__(self, spec: ModelSpec, width: int):
        super().__init__()
        self.declare(latent_dim=spec.latent_dim, resolution=spec.resolution,
                     channels=spec.channels)
        self.width = width
        self.linear = nn.Linear(spec.latent_dim, width * spec.resolution**2)
        self.conv = nn.Conv2d(width, spec.channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.linear(z).view(-1, self.width, self.resolution, self.resolution)
        return torch.tanh(self.conv(torch.relu(x)))


class ToyDiscriminator(DiscriminatorNetwork):
    def __init__(self, spec: ModelSpec, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(spec.channels, width, 3, 2, 1), nn.LeakyReLU(0.2),
                                 nn.Flatten(), nn.Linear(width * (spec.resolution // 2)**2, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).squeeze(1)


class Toy(ModelFamily):
    description = "a toy family defined in a test file"
    option_help = {"width": "channels of both networks"}

    @dataclass(frozen=True)
    class Options:
        width: int = 4

        def problem(self) -> str | None:
            return None if 1 <= self.width <= 64 else "width must be 1..64"

    @classmethod
    def resolution_problem(cls, resolution: int) -> str | None:
        return None if resolution in (8, 16) else "the toy family draws 8 or 16 px"

    @classmethod
    def claim(cls, data: DataProfile) -> Claim | None:  # a few pictures at 8 px are its own
        if data.num_images is not None and data.num_images < 100 and data.resolution == 8:
            return Claim(50, "a handful of 8 px pictures: the toy family")
        return None

    @classmethod
    def auto_settings(cls, resolution, num_images, loss):
        return {"loss": loss or "hinge", "batch_size": 8, "lr_g": 1e-3, "lr_d": 1e-3}

    @classmethod
    def build_generator(cls, spec: ModelSpec) -> nn.Module:
        return ToyGenerator(spec, spec.options.width)

    @classmethod
    def build_discriminator(cls, spec: ModelSpec) -> nn.Module:
        return ToyDiscriminator(spec, spec.options.width)


@pytest.fixture
def toy_family():
    register_model(NAME)(Toy)
    try:
        yield Toy
    finally:
        registry._REGISTRY.pop(NAME, None)


@pytest.fixture
def pictures(tmp_path, monkeypatch):
    monkeypatch.setenv("GANVAS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "pictures"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
            folder / f"{i:02d}.png")
    return folder


def _weights(run_dir):
    state = torch.load(sorted((run_dir / "checkpoints").glob("*.pt"))[-1], weights_only=True)
    return state["generator"], state["discriminator"]


def test_a_family_defined_in_a_test_file_trains_resumes_generates_and_projects(
        toy_family, pictures, tmp_path):
    common = dict(data=str(pictures), model=NAME, resolution=8, progress=False,
                  log=lambda message: None, log_every=2, health=False)
    whole = ganvas.train(steps=6, out=str(tmp_path / "whole"), **common)
    assert whole.step == 6 and (whole.run_dir / "samples" / "final.png").is_file()
    config = whole.run_dir.joinpath("config.yaml").read_text()
    assert f"model: {NAME}" in config and "loss: hinge" in config  # the family's choices
    # stopped at step 3, then resumed: the same weights as the run that never stopped
    ganvas.train(steps=3, out=str(tmp_path / "parts"), **common)
    resumed = ganvas.resume(tmp_path / "parts", steps=6, progress=False,
                            log=lambda message: None)
    assert resumed.step == 6
    for a, b in zip(_weights(whole.run_dir), _weights(resumed.run_dir)):
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    model = ganvas.load(whole.run_dir)
    images = model.sample_tensor(4, seed=1)
    assert images.shape == (4, 3, 8, 8) and images.abs().max() <= 1
    assert torch.equal(images, ganvas.load(whole.run_dir).sample_tensor(4, seed=1))
    written = generate_to_folder(whole.run_dir, tmp_path / "out", num=3, grid=True)
    assert len(written) == 4 and all(path.is_file() for path in written)
    photo = Image.fromarray(np.full((20, 20, 3), 200, dtype=np.uint8))
    found = project(model, photo, steps=20, backbone=tiny_backbone(), frames=0)
    assert found.kind == "z" and found.latent.shape == (1, model.latent_dim)
    assert found.distances[-1] <= found.distances[0]  # the search got closer


def test_a_bad_option_of_a_test_family_is_one_clear_line(toy_family, pictures, tmp_path):
    with pytest.raises(ganvas.GanvasError, match="width must be 1..64"):
        ganvas.train(data=str(pictures), model=NAME, resolution=8, steps=2,
                     model_options={"width": 0}, out=str(tmp_path / "bad"), progress=False)
    with pytest.raises(ganvas.GanvasError, match="8 or 16 px"):
        ganvas.train(data=str(pictures), model=NAME, resolution=32, steps=2,
                     out=str(tmp_path / "bad2"), progress=False)


def test_a_family_defined_in_a_test_file_is_chosen_for_the_data_it_claims(
        toy_family, pictures, tmp_path, monkeypatch):
    config = TrainConfig(data=str(pictures), resolution=8)
    assert choose_family(config, 24) == (NAME, "a handful of 8 px pictures: the toy family")
    assert choose_family(config.replace(resolution=64), 24)[0] != NAME
    monkeypatch.setattr(Toy, "unavailable", classmethod(lambda cls: "it needs a toy box"))
    name, reason = choose_family(config, 24)  # passed over, and the choice says so
    assert name != NAME and f"({NAME} would come first, but it needs a toy box)" in reason
