"""The lesson's exact DCGAN and dense networks, and the registry's errors. The contract
every family meets (shapes, range, save/load, determinism, training) is test_families.py."""

import pytest
import torch
from torch import nn

from ganvas.errors import GanvasError
from ganvas.models import build_models


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
