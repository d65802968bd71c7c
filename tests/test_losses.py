"""Every loss and regulariser: finite values and gradients pointing the right way."""

import pytest
import torch

from ganvas.errors import GanvasError
from ganvas.losses.criteria import LOSSES, get_loss
from ganvas.losses.regularizers import gradient_penalty, r1_penalty


@pytest.fixture(params=sorted(LOSSES))
def loss(request):
    return get_loss(request.param)


def _logits(*values):
    return torch.tensor(values, dtype=torch.float32, requires_grad=True)


def test_losses_are_finite_even_for_extreme_logits(loss):
    real, fake = _logits(-80.0, 0.0, 80.0), _logits(80.0, 0.0, -80.0)
    d = loss.discriminator_loss(real, fake)
    g = loss.generator_loss(fake, real)  # relativistic losses compare with the reals
    assert torch.isfinite(d) and torch.isfinite(g)
    d.backward()
    assert torch.isfinite(real.grad).all() and torch.isfinite(fake.grad).all()


def test_discriminator_gradients_push_reals_up_and_fakes_down(loss):
    # inside every loss's margin: reals below 1 (lsgan's target), fakes above 0
    real, fake = _logits(0.1, -0.3, 0.2), _logits(0.2, 0.1, 0.4)
    loss.discriminator_loss(real, fake).backward()
    # gradient descent moves logits against the gradient: reals up, fakes down
    assert (real.grad < 0).all(), loss.name
    assert (fake.grad > 0).all(), loss.name


def test_generator_gradient_pushes_fakes_up(loss):
    fake = _logits(-0.5, 0.1, 0.3)
    loss.generator_loss(fake, _logits(0.4, 0.2, 0.6)).backward()
    assert (fake.grad < 0).all(), loss.name


def test_margins_measure_from_the_boundary_the_loss_itself_uses(loss):
    # D's accuracy, ADA's r_t and the balance gate read these margins. Where the loss ignores
    # a constant added to every score, so must they: MSG's relativistic scores drifted to -4
    # (reals) and -8 (fakes), sign(D(real)) read -0.9 and ADA's p stayed at 0 while D kept
    # every real well above the average fake.
    rng = torch.Generator().manual_seed(0)
    real = loss.decision_threshold + 1.5 + 0.3 * torch.randn(64, generator=rng)
    fake = loss.decision_threshold - 1.5 + 0.3 * torch.randn(64, generator=rng)
    real_margin, fake_margin = loss.margins(real, fake)
    assert (real_margin > 0).all() and (fake_margin < 0).all(), loss.name
    shift = -6.0
    ignores_shift = torch.allclose(loss.discriminator_loss(real + shift, fake + shift),
                                   loss.discriminator_loss(real, fake), atol=1e-5)
    assert ignores_shift == (loss.name in ("rahinge", "wgan-gp")), loss.name
    if ignores_shift:
        shifted = loss.margins(real + shift, fake + shift)
        assert torch.allclose(shifted[0], real_margin, atol=1e-5)
        assert torch.allclose(shifted[1], fake_margin, atol=1e-5)


def test_saturating_loss_really_saturates():
    """Where D confidently rejects fakes, the minimax G loss has almost no gradient,
    the non-saturating one a strong one: the lesson's point."""
    confident = -8.0
    sat, ns = _logits(confident), _logits(confident)
    get_loss("bce-saturating").generator_loss(sat).backward()
    get_loss("bce").generator_loss(ns).backward()
    assert sat.grad.abs() < 1e-3 < ns.grad.abs()


def test_bce_and_ns_agree():
    real, fake = torch.randn(16), torch.randn(16)
    assert torch.allclose(get_loss("bce").discriminator_loss(real, fake),
                          get_loss("ns").discriminator_loss(real, fake), atol=1e-6)
    assert torch.allclose(get_loss("bce").generator_loss(fake),
                          get_loss("ns").generator_loss(fake), atol=1e-6)


def test_label_smoothing_moves_the_optimum_of_real_scores():
    smoothed = get_loss("bce", label_smoothing=0.1)
    grid = torch.linspace(-6, 6, 1201)
    losses = torch.stack([smoothed.discriminator_loss(x.view(1), torch.tensor([-10.0]))
                          for x in grid])
    best = torch.sigmoid(grid[losses.argmin()])
    assert abs(best.item() - 0.9) < 0.01
    with pytest.raises(GanvasError, match="label-smoothing"):
        get_loss("hinge", label_smoothing=0.1)


def test_unknown_loss_suggests():
    with pytest.raises(GanvasError, match="did you mean 'hinge'"):
        get_loss("hinje")


def _linear_critic(weight):
    return lambda x: (x * weight).flatten(1).sum(1)


def test_r1_penalty_matches_closed_form():
    weight = torch.randn(1, 1, 4, 4)
    x = torch.randn(3, 1, 4, 4, requires_grad=True)
    penalty = r1_penalty(_linear_critic(weight)(x), x)
    # D linear in x: grad is the weight for every sample
    assert torch.allclose(penalty, weight.pow(2).sum(), atol=1e-5)


def test_r1_penalty_is_differentiable_for_a_real_network():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Tanh(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 2 * 2, 1))
    x = torch.randn(3, 1, 4, 4, requires_grad=True)
    penalty = r1_penalty(net(x).squeeze(1), x)
    penalty.backward()
    conv = net[0].weight.grad
    assert conv is not None and torch.isfinite(conv).all() and conv.abs().sum() > 0


def test_gradient_penalty_zero_for_unit_norm_critic_and_positive_otherwise():
    weight = torch.randn(1, 1, 4, 4)
    unit = weight / weight.norm()
    real, fake = torch.randn(5, 1, 4, 4), torch.randn(5, 1, 4, 4)
    assert gradient_penalty(_linear_critic(unit), real, fake).item() < 1e-10
    steep = gradient_penalty(_linear_critic(3 * unit), real, fake)
    assert abs(steep.item() - 4.0) < 1e-4  # (3 - 1)^2
