"""Augmentations with fixed random parameters: shapes, gradients, determinism, ADA's p."""

import pytest
import torch

from ganvas.augment import AdaptiveAugment, DiffAugment, build_augment
from ganvas.augment.diffaugment import cutout, translate
from ganvas.errors import GanvasError


def _images(channels=3, n=6, size=16):
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_diffaugment_keeps_shape_and_is_differentiable(channels, policy):
    x = _images(channels).requires_grad_(True)
    y = DiffAugment(policy, seed=1)(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_diffaugment_is_reproducible_and_changes_images():
    x = _images()
    a, b = DiffAugment(seed=3)(x), DiffAugment(seed=3)(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, x)
    assert not torch.equal(a, DiffAugment(seed=4)(x))


def test_translation_moves_content_by_whole_pixels():
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 4, 4] = 1
    y = translate(x, torch.Generator().manual_seed(0))
    # every image still holds its single bright pixel, or lost it over the edge; never blurred
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    assert (y.flatten(1).sum(1) <= 1).all()
    assert (y[:, :, 4, 4] == 0).any()  # some moved


def test_cutout_zeroes_a_square_of_half_the_size():
    y = cutout(torch.ones(32, 1, 16, 16), torch.Generator().manual_seed(0))
    zeros = (y == 0).flatten(1).sum(1)
    assert (zeros > 0).all() and (zeros <= 8 * 8).all() and (zeros == 8 * 8).any()


def test_unknown_policy_is_a_clear_error():
    with pytest.raises(GanvasError, match="diffaugment-policy"):
        DiffAugment("color,blur")
    with pytest.raises(GanvasError, match="--augment"):
        build_augment("mixup", seed=0)


def test_ada_identity_at_p0_and_differentiable_when_on():
    ada = AdaptiveAugment(seed=0)
    x = _images().requires_grad_(True)
    assert ada(x) is x
    ada.p = 0.8
    y = ada(x)
    assert y.shape == x.shape and not torch.equal(y, x)
    y.sum().backward()
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("sign, direction", [(1.0, 1), (-1.0, -1)])
def test_ada_p_follows_overfitting_signal(sign, direction):
    ada = AdaptiveAugment(seed=0, target=0.6, speed_kimg=0.1, interval=2, p=0.5)
    for _ in range(10):
        ada.observe(torch.full((10,), sign))
    assert (ada.p - 0.5) * direction > 0.2
    assert 0 <= ada.p <= 1


def test_ada_state_round_trip_reproduces_the_next_augmentation():
    ada = AdaptiveAugment(seed=5, p=0.6)
    ada(_images())
    state = ada.state_dict()
    expected = ada(_images())
    other = AdaptiveAugment(seed=99)
    other.load_state_dict(state)
    assert torch.equal(other(_images()), expected)


def test_ada_under_bf16_autocast_draws_the_float32_geometry():
    # StyleGAN2's R1 pass augments the reals inside the training autocast: composing the
    # affine matrices there multiplied them in bfloat16 and crashed (CPUs with native bf16
    # train in it by default), and a bfloat16 sampling grid would misplace pixels. Matrices,
    # grid and warp are float32 whatever the context.
    images = _images()
    expected = AdaptiveAugment(seed=3, p=1.0)(images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = AdaptiveAugment(seed=3, p=1.0)(images)
        half = AdaptiveAugment(seed=3, p=1.0)(images.bfloat16())
    assert got.dtype == torch.float32 and half.dtype == torch.bfloat16
    # the same float32 operations in the same order: equal up to float32 rounding
    assert torch.allclose(got, expected, atol=1e-6)
    # bfloat16 images keep their type and get the same geometry: their 8-bit mantissa,
    # rounded again by each colour step and scaled by contrast and saturation gains of up to
    # a few times, moves values by a few hundredths; another geometry would move them by
    # about the images' whole range of 2
    assert (half.float() - expected).abs().max() < 0.1


def test_ada_at_a_small_p_changes_only_the_images_it_drew_a_transform_for():
    # At a small p most images get no transform: they pass through exactly (not resampled,
    # which rounds, and not paid for), the others are augmented, and gradients reach both;
    # a pyramid's scales (MSG-GAN) are changed for the same images.
    torch.manual_seed(0)
    x = torch.rand(64, 3, 16, 16).mul(2).sub(1).requires_grad_(True)
    ada = AdaptiveAugment(seed=4, p=0.03)
    y = ada(x)
    same = (y == x).flatten(1).all(dim=1)
    assert 0 < int((~same).sum()) < 32, "p 0.03 over 10 transforms: a few images of 64"
    (y * torch.arange(1.0, 65).view(64, 1, 1, 1)).sum().backward()
    # an unchanged image's gradient is its weight exactly
    assert torch.equal(x.grad[same], torch.arange(1.0, 65)[same].view(-1, 1, 1, 1)
                       .expand(-1, 3, 16, 16))
    assert x.grad[~same].abs().sum() > 0
    pyramid = [torch.nn.functional.avg_pool2d(x.detach(), 4), x.detach()]
    coarse, fine = AdaptiveAugment(seed=4, p=0.03)(pyramid)
    assert torch.equal(fine, y.detach())
    assert torch.equal((coarse == pyramid[0]).flatten(1).all(dim=1), same)
