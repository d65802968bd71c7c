"""Contract every registered model must meet, plus the lesson's exact DCGAN shapes."""

import pytest
import torch
from torch import nn

from ganvas.errors import GanvasError
from ganvas.models import available_models, build_models
from ganvas.models.export import load_generator, save_generator

# A tiny, fast configuration for each registered family (every family must appear here).
TINY = {
    "dense": {"resolution": 8, "options": {"generator_widths": [16, 32],
                                           "discriminator_widths": [16]}},
    "dcgan": {"resolution": 16, "options": {"base_channels": 8}},
}


def test_every_registered_model_has_a_tiny_config():
    assert set(available_models()) == set(TINY)


@pytest.fixture(params=sorted(TINY))
def family(request):
    return request.param


def _build(name, channels=3, latent_dim=12, seed=0):
    torch.manual_seed(seed)
    cfg = TINY[name]
    return build_models(name, resolution=cfg["resolution"], channels=channels,
                        latent_dim=latent_dim, options=cfg["options"])


@pytest.mark.parametrize("channels", [1, 3])
def test_output_shapes_and_range(family, channels):
    G, D = _build(family, channels)
    res = TINY[family]["resolution"]
    images = G(torch.randn(5, 12))
    assert images.shape == (5, channels, res, res)
    assert images.min() >= -1 and images.max() <= 1
    logits = D(images)
    assert logits.shape == (5,)
    assert torch.isfinite(logits).all()
    # sampling and export read these from the network itself
    assert (G.latent_dim, G.channels, G.resolution) == (12, channels, res)


def test_gradients_reach_every_parameter(family):
    G, D = _build(family)
    D(G(torch.randn(4, 12))).sum().backward()
    for module in (G, D):
        for name, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_same_seed_same_weights_different_seed_different(family):
    a, b, c = _build(family, seed=1)[0], _build(family, seed=1)[0], _build(family, seed=2)[0]
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), k
    assert any(not torch.equal(x, z) for x, z in zip(a.state_dict().values(),
                                                     c.state_dict().values()))


def test_export_round_trip(family, tmp_path):
    G, _ = _build(family)
    G.eval()
    config = {"model": family, "resolution": TINY[family]["resolution"], "channels": 3,
              "latent_dim": 12, "model_options": TINY[family]["options"]}
    save_generator(tmp_path / "gen", G, config, step=7)
    loaded, meta = load_generator(tmp_path / "gen")
    loaded.eval()
    z = torch.randn(3, 12)
    assert torch.equal(G(z), loaded(z))
    assert meta["step"] == 7


def test_unknown_option_and_bad_resolution_are_clear(family):
    with pytest.raises(GanvasError, match="not a setting of model"):
        build_models(family, resolution=TINY[family]["resolution"], channels=3, latent_dim=8,
                     options={"no_such_option": 1})
    with pytest.raises(GanvasError, match="--resolution"):
        build_models(family, resolution=3000, channels=3, latent_dim=8)


def test_unknown_model_suggests_a_name():
    with pytest.raises(GanvasError, match="did you mean 'dcgan'"):
        build_models("dcgann", resolution=28, channels=1, latent_dim=100)


def test_option_of_wrong_type_is_rejected():
    with pytest.raises(GanvasError, match="expects int"):
        build_models("dcgan", resolution=32, channels=3, latent_dim=8,
                     options={"base_channels": "wide"})


def test_dcgan_28_is_the_lessons_network():
    G, D = build_models("dcgan", resolution=28, channels=1, latent_dim=100)
    convs = [m for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in convs] == [
        (100, 256, (3, 3), (2, 2)), (256, 128, (3, 3), (2, 2)),
        (128, 64, (3, 3), (2, 2)), (64, 1, (3, 3), (2, 2))]
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.in_channels, m.out_channels) for m in convs] == [
        (1, 64), (64, 128), (128, 256), (256, 1)]
    assert all(m.kernel_size == (4, 4) and m.stride == (2, 2) for m in convs[:3])
    assert sum(isinstance(m, nn.BatchNorm2d) for m in D.modules()) == 2
    # DCGAN init: N(0, 0.02)
    weights = torch.cat([m.weight.flatten() for m in convs])
    assert abs(weights.std().item() - 0.02) < 0.002


@pytest.mark.parametrize("resolution", [16, 28, 32, 64, 128])
def test_dcgan_resolutions(resolution):
    G, D = build_models("dcgan", resolution=resolution, channels=3, latent_dim=16,
                        options={"base_channels": 4, "max_channels": 16})
    images = G(torch.randn(2, 16))
    assert images.shape == (2, 3, resolution, resolution)
    assert D(images).shape == (2,)


def test_dense_is_the_lessons_network():
    G, D = build_models("dense", resolution=28, channels=1, latent_dim=100)
    g = [(m.in_features, m.out_features) for m in G.modules() if isinstance(m, nn.Linear)]
    d = [(m.in_features, m.out_features) for m in D.modules() if isinstance(m, nn.Linear)]
    assert g == [(100, 256), (256, 512), (512, 1024), (1024, 784)]
    assert d == [(784, 512), (512, 256), (256, 1)]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in G.modules()) == 3
