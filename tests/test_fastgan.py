"""FastGAN: skip-layer excitation, the half-size image, the discriminator's reconstructions
and their loss, the noise modes, and the few-shot defaults (the contract every family meets
is in test_families.py)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import ganvas
from ganvas.errors import GanvasError
from ganvas.models.fastgan import (
    SkipLayerExcitation,
    crop_quarter,
    reconstruction_targets,
    small_resolution,
)
from ganvas.models.registry import make_spec
from ganvas.runs import checkpoint as ckpt

LATENT = 8
QUIET = dict(progress=False, log=lambda m: None)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANVAS_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def pictures(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(16):
        array = np.full((32, 32, 3), rng.integers(0, 255, 3), dtype=np.uint8)
        y, x = rng.integers(0, 16, 2)
        array[y:y + 16, x:x + 16] = rng.integers(0, 255, 3)
        Image.fromarray(array).save(folder / f"{i:02d}.png")
    return folder


def _networks(resolution=64, seed=0, **options):
    torch.manual_seed(seed)
    family, spec = make_spec("fastgan", resolution=resolution, channels=3, latent_dim=LATENT,
                             options={"base_channels": 2, **options})
    return family, spec, family.build_generator(spec), family.build_discriminator(spec)


def test_half_size_image_and_excitation_at_each_resolution():
    assert [small_resolution(r) for r in (32, 64, 128, 256, 1024)] == [16, 32, 64, 128, 128]
    family, spec, G, D = _networks(64)
    small, image = G(torch.randn(3, LATENT))
    assert small.shape == (3, 3, 32, 32) and image.shape == (3, 3, 64, 64)
    assert list(G.excite) == ["64"] and list(D.excite) == ["8"]  # 4 -> 64 px; 64 -> 8 px
    _, _, G128, D128 = _networks(128)
    assert list(G128.excite) == ["64", "128"] and list(D128.excite) == ["16", "8"]
    with pytest.raises(GanvasError, match="from 32 to 1024"):
        make_spec("fastgan", resolution=16, channels=3, latent_dim=LATENT)


def test_skip_layer_excitation_gates_each_channel_of_the_large_map():
    torch.manual_seed(0)
    sle = SkipLayerExcitation(6, 5)
    large, small = torch.randn(2, 5, 16, 16), torch.randn(2, 6, 4, 4)
    out = sle(large, small)
    gate = out / large  # one number per image and channel, from the small map alone
    assert torch.allclose(gate, gate[..., :1, :1].expand_as(gate), atol=1e-5)
    assert (gate > 0).all() and (gate < 1).all()
    other = sle(large, torch.randn(2, 6, 4, 4))
    assert not torch.allclose(out, other)


def test_quarters_and_reconstruction_targets():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert crop_quarter(x, 0).flatten().tolist() == [0, 1, 4, 5]
    assert crop_quarter(x, 3).flatten().tolist() == [10, 11, 14, 15]
    family, spec, _, D = _networks(64)
    real = family.real_input(spec, torch.rand(2, 3, 64, 64) * 2 - 1, None)
    targets = reconstruction_targets(real, part=1)
    assert [t.shape for t in targets] == [(2, 3, 32, 32)] * 3
    assert torch.allclose(targets[1], real[1][..., :32, 32:])  # top right, at full detail
    D.eval()  # no power iteration of spectral norm between the two calls
    logits, decoded = D.reconstruct(real, part=1)
    assert logits.shape == (2,) and torch.allclose(logits, D(real))
    assert [d.shape for d in decoded] == [(2, 3, 32, 32)] * 3


@pytest.mark.parametrize("resolution", [512, 1024])
def test_large_resolutions_build_and_score(resolution):
    """The discriminator halves 512 and 1024 px images before its 256 px branch."""
    family, spec, G, D = _networks(resolution, base_channels=1)
    assert list(G.excite) == ["64", "128", "256", "512"]
    with torch.no_grad():
        small, image = G(torch.randn(2, LATENT))
        assert small.shape[-1] == 128 and image.shape[-1] == resolution
        logits, decoded = D.reconstruct([small, image], part=2)
    assert logits.shape == (2,) and [d.shape[-1] for d in decoded] == [128] * 3


def test_the_reconstruction_loss_teaches_the_decoders(pictures, tmp_path):
    """Trained on the few pictures, D learns to redraw them: the loss falls, and the
    decoders only move when the loss is on."""
    records = {}
    for weight in (1.0, 0.0):
        result = ganvas.train(data=str(pictures), model="fastgan", resolution=32, steps=40,
                              batch_size=8, latent_dim=LATENT, log_every=5, precision="fp32",
                              sample_every=100, checkpoint_every=40, num_samples=4,
                              model_options={"base_channels": 2,
                                             "reconstruction_weight": weight},
                              lr_d=2e-3, out=str(tmp_path / f"w{weight}"), **QUIET)
        lines = (result.run_dir / "metrics.jsonl").read_text().splitlines()
        records[weight] = [json.loads(x) for x in lines if "Loss/D" in json.loads(x)]
        before = torch.load(ckpt.checkpoint_path(result.run_dir, 0), weights_only=True)
        after = torch.load(result.checkpoint, weights_only=True)
        weights = [k for k in before["discriminator"] if k.startswith("decode_")
                   and k.rsplit(".", 1)[-1] in ("original", "weight", "bias")]
        assert weights
        moved = any(not torch.equal(before["discriminator"][k], after["discriminator"][k])
                    for k in weights)
        assert moved == (weight > 0), weight
    losses = [r["Loss/D_reconstruction"] for r in records[1.0]]
    assert losses[-1] < 0.7 * losses[0], losses
    assert "Loss/D_reconstruction" not in records[0.0][-1]


def test_noise_modes():
    _, _, G, _ = _networks(64)
    with torch.no_grad():
        for module in G.modules():
            if hasattr(module, "noise_const"):
                module.strength.fill_(0.5)
        G.eval()
        z = torch.randn(2, LATENT)
        const = [G.sample(z, noise="const") for _ in range(2)]
        random = [G.sample(z, noise="random") for _ in range(2)]
        none = G.sample(z, noise="none")
    assert torch.equal(const[0], const[1]) and not torch.equal(random[0], random[1])
    assert not torch.equal(none, const[0])


def test_few_shot_defaults_are_the_papers(pictures, capsys):
    from ganvas.cli.main import main

    assert main(["train", "--data", str(pictures), "--model", "fastgan", "--resolution",
                 "128", "--dry-run"]) == 0
    out = capsys.readouterr().out
    for line in ("loss: hinge", "augment: diffaugment", "diffaugment_policy: color,translation",
                 "batch_size: 8", "ema_kimg: 5.0", "base_channels: 16"):
        assert line in out, line
    assert main(["train", "--data", str(pictures), "--model", "fastgan", "--augment", "ada",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "augment: ada" in out and "augment: diffaugment" not in out
    # other families: ADA on a small folder (24 pictures), none on the lesson's datasets
    assert main(["train", "--data", str(pictures), "--model", "dcgan", "--dry-run"]) == 0
    assert "augment: ada" in capsys.readouterr().out
    assert main(["train", "--data", "digits", "--dry-run"]) == 0
    assert "augment: none" in capsys.readouterr().out


def test_the_average_keeps_batchnorm_statistics_of_its_own(pictures, tmp_path):
    """The averaged weights are sampled with statistics measured on them, not the live
    network's; in mixed precision too."""
    result = ganvas.train(data=str(pictures), model="fastgan", resolution=32, steps=40,
                          batch_size=8, latent_dim=LATENT, log_every=4, precision="bf16",
                          sample_every=100, checkpoint_every=40, num_samples=4,
                          model_options={"base_channels": 2}, lr_g=2e-3, lr_d=2e-3,
                          out=str(tmp_path / "run"), **QUIET)
    state = torch.load(result.checkpoint, weights_only=True)
    live, average = state["generator"], state["generator_ema"]
    means = [k for k in live if k.endswith("running_mean")]
    assert means and any(not torch.equal(live[k], average[k]) for k in means)
    others = [k for k in live if k.endswith("noise_const")]
    assert others and all(torch.equal(live[k], average[k]) for k in others)
    records = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["Loss/D"]) for r in records if "Loss/D" in r)
    # The statistics describe the average's own activations: its first BatchNorm's running
    # mean is close to the mean it sees on fresh latents.
    model = ganvas.load(result.run_dir)
    G = model.generator
    seen = {}
    norm = G.start[1]
    hook = norm.register_forward_hook(lambda m, inputs, out: seen.update(x=inputs[0]))
    with torch.no_grad():
        G.sample(torch.randn(256, LATENT, generator=torch.Generator().manual_seed(9)))
    hook.remove()
    actual = seen["x"].mean(dim=(0, 2, 3))
    borrowed = live["start.1.running_mean"]
    assert (norm.running_mean - actual).abs().mean() < (borrowed - actual).abs().mean()
