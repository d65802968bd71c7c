"""Shipping a generator: ONNX for every family (checked against PyTorch with onnxruntime, the
batch size free, run in a process that cannot import torch), a safetensors folder that
ganvas.load reads, and a model card in every export folder."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import ganvas
from ganvas.cli.main import main
from ganvas.export.generator import export_generator

pytest.importorskip("onnxruntime")
QUIET = dict(progress=False, log=lambda m: None)
# the smallest size each family builds, tiny widths
FAMILIES = {
    "dense": dict(resolution=8),
    "dcgan": dict(resolution=16, model_options={"base_channels": 4}),
    "progressive": dict(resolution=8, model_options={"base_channels": 4, "max_channels": 8}),
    "msg": dict(resolution=8, model_options={"base_channels": 4, "max_channels": 8}),
    "stylegan2": dict(resolution=8, model_options={"base_channels": 4, "max_channels": 8,
                                                   "w_dim": 8}),
    "fastgan": dict(resolution=32, model_options={"base_channels": 2}),
    "projected": dict(resolution=32, model_options={"base_channels": 2, "features": "tiny",
                                                    "projection_channels": 4}),
}


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(0)
    for i in range(16):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
            folder / f"{i:02d}.png")
    return folder


def _train(pictures, tmp_path, model, **extra):
    options = {**FAMILIES[model], **extra}
    return ganvas.train(data=str(pictures), model=model, steps=2, batch_size=4, latent_dim=8,
                        health=False, out=str(tmp_path / model), **options, **QUIET).run_dir


@pytest.mark.parametrize("model", sorted(FAMILIES))
def test_every_family_exports_to_onnx_that_matches_pytorch(pictures, tmp_path, model,
                                                           monkeypatch):
    monkeypatch.setenv("GANVAS_CACHE", str(tmp_path / "cache"))
    run = _train(pictures, tmp_path, model)
    done = export_generator(run)
    assert done.folder == run / "export-onnx" and done.difference <= 1e-4
    import onnxruntime

    session = onnxruntime.InferenceSession(str(done.folder / "generator.onnx"))
    assert [i.name for i in session.get_inputs()] == ["z", "truncation"]
    generator = ganvas.load(run)
    for n, psi in ((1, 1.0), (5, 0.6)):  # any batch size; truncation as the family does it
        z = torch.randn(n, 8, generator=torch.Generator().manual_seed(n))
        images, = session.run(None, {"z": z.numpy(), "truncation": np.array(psi, dtype=np.float32)})
        expected = (generator.generator.sample(z, truncation=psi) + 1) / 2
        assert images.shape == tuple(expected.shape)
        np.testing.assert_allclose(images, expected.detach().numpy(), atol=1e-4, rtol=0)
    card = (done.folder / "README.md").read_text()
    assert f"# {model} generator" in card and "16 pictures" in card
    assert "ganvas train --data" in card and "onnxruntime.InferenceSession" in card


def test_the_onnx_file_runs_where_torch_cannot_be_imported(pictures, tmp_path, monkeypatch):
    monkeypatch.setenv("GANVAS_CACHE", str(tmp_path / "cache"))
    run = _train(pictures, tmp_path, "dcgan")
    done = export_generator(run)
    # the card's own snippet, with imports of torch and ganvas made to fail
    card = (done.folder / "README.md").read_text()
    snippet = card.split("```python\n")[1].split("```")[0]
    blocker = ("import sys\nclass Block:\n    def find_spec(self, name, *a):\n"
               "        if name.split('.')[0] in ('torch', 'ganvas'):\n"
               "            raise ImportError('blocked: ' + name)\n"
               "sys.meta_path.insert(0, Block())\n")
    check = "\nassert pictures.shape == (4, 16, 16, 3) and 'torch' not in sys.modules\n"
    done_run = subprocess.run([sys.executable, "-c", blocker + snippet + check],
                              cwd=done.folder, capture_output=True, text=True, timeout=120)
    assert done_run.returncode == 0, done_run.stderr[-1500:]


def test_a_safetensors_export_loads_with_ganvas_and_has_a_card(pictures, tmp_path, capsys,
                                                              monkeypatch):
    monkeypatch.setenv("GANVAS_CACHE", str(tmp_path / "cache"))
    run = _train(pictures, tmp_path, "stylegan2", fid_every=None)
    out = tmp_path / "shipped"
    assert main(["export", str(run), "--format", "safetensors", "-o", str(out)]) == 0
    assert "model.safetensors" in capsys.readouterr().err
    assert torch.equal(ganvas.load(out).sample_tensor(3, seed=4),
                       ganvas.load(run).sample_tensor(3, seed=4))
    card = (out / "README.md").read_text()
    assert "ganvas.load(" in card and "stylegan2" in card
    assert json.loads((out / "config.json").read_text())["step"] == 2


def test_bad_exports_are_one_line(pictures, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GANVAS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "not-a-run").mkdir()
    run = _train(pictures, tmp_path, "dcgan")
    for argv, needle in (([str(tmp_path / "not-a-run")], "no checkpoints"),
                         ([str(tmp_path / "missing")], "no such"),
                         ([str(run), "-o", str(tmp_path / "g.onnx")], "give a folder")):
        assert main(["export", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err
