"""Adversarial criteria, selectable by ``--loss NAME``. All take raw discriminator logits.

The discriminator returns logits rather than probabilities so the sigmoid can be fused into
the loss (``softplus``/``binary_cross_entropy_with_logits``), which stays finite where
``log(sigmoid)`` underflows.
"""

from __future__ import annotations

import difflib

import torch
import torch.nn.functional as F

from ganvas.errors import GanvasError


class AdversarialLoss:
    """One loss: how D scores reals vs fakes, and what G optimises.

    Args:
        real_label: the target for real images in label-based losses; below 1 it is
            one-sided label smoothing (fakes keep target 0).
    """

    name: str = ""
    description: str = ""
    uses_labels = False  # whether label smoothing means anything for this loss
    needs_gradient_penalty = False
    # Logits are log-odds (so sigmoid(logit) is D's probability that an image is real).
    probabilistic = False
    # The score above which D calls an image real (for D's accuracy).
    decision_threshold = 0.0
    # Relativistic losses compare fakes with reals, so G's loss needs D's scores of reals too.
    relativistic = False
    # The loss stays the same when a constant is added to every score, so no fixed score is
    # a boundary: MSG's relativistic scores drifted to -4 for reals and -8 for fakes on a
    # small folder, where sign(D(real)) read -0.9 and held ADA's p at 0 while D kept the
    # reals 3 above the fakes.
    shift_invariant = False

    def margins(self, real_logits: torch.Tensor, fake_logits: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each real's and each fake's score measured from D's decision boundary, positive
        where D calls the image real: what D's accuracy, ADA's r_t and the balance gate read.
        A shift-invariant loss measures from half way between the batch's average real and
        average fake score: that reads like a fixed boundary between the two clouds, which
        ADA's 0.6 target and the monitor's thresholds assume (measured from the other side's
        average, r_t would read 0.91 where such a boundary reads 0.6)."""
        if self.shift_invariant:
            boundary = (real_logits.mean() + fake_logits.mean()) / 2
        else:
            boundary = self.decision_threshold
        return real_logits - boundary, fake_logits - boundary

    def __init__(self, real_label: float = 1.0):
        if real_label != 1.0 and not self.uses_labels:
            raise GanvasError(f"--label-smoothing does not apply to --loss {self.name} "
                              "(it has no labels); use it with bce, bce-saturating, ns or lsgan")
        self.real_label = real_label

    def discriminator_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor
                           ) -> torch.Tensor:
        raise NotImplementedError

    def generator_loss(self, fake_logits: torch.Tensor,
                       real_logits: torch.Tensor | None = None) -> torch.Tensor:
        """G's loss; ``real_logits`` is needed (and given) only when ``relativistic``."""
        raise NotImplementedError


class BCELoss(AdversarialLoss):
    """The lesson's loss: D labels reals 1 and fakes 0; G wants its fakes labelled 1."""

    name = "bce"
    description = "binary cross-entropy, as in the lesson; G maximises log D(G(z))"
    uses_labels = True
    probabilistic = True

    def discriminator_loss(self, real_logits, fake_logits):
        real = F.binary_cross_entropy_with_logits(
            real_logits, torch.full_like(real_logits, self.real_label))
        fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        return real + fake

    def generator_loss(self, fake_logits, real_logits=None):
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


class SaturatingBCELoss(BCELoss):
    """The original minimax form: G minimises log(1 - D(G(z))).

    Kept for teaching: when D confidently rejects fakes, this loss is flat and G barely
    learns, which is why everyone uses the non-saturating form.
    """

    name = "bce-saturating"
    description = ("the original minimax form (G minimises log(1 - D(G(z)))); saturates, "
                   "for teaching")

    def generator_loss(self, fake_logits, real_logits=None):
        # log(1 - sigmoid(x)) = -softplus(x)
        return -F.softplus(fake_logits).mean()


class NonSaturatingLoss(BCELoss):
    """The StyleGAN papers' spelling of the lesson's loss: softplus of the logits."""

    name = "ns"
    description = "non-saturating logistic loss (softplus form of bce, as in StyleGAN2)"

    def discriminator_loss(self, real_logits, fake_logits):
        if self.real_label != 1.0:  # smoothed labels need the cross-entropy form
            return super().discriminator_loss(real_logits, fake_logits)
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()

    def generator_loss(self, fake_logits, real_logits=None):
        return F.softplus(-fake_logits).mean()


class HingeLoss(AdversarialLoss):
    """D pushes real scores above +1 and fake scores below -1; G raises fake scores."""

    name = "hinge"
    description = "hinge loss (SAGAN, BigGAN); pairs well with --spectral-norm"

    def discriminator_loss(self, real_logits, fake_logits):
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()

    def generator_loss(self, fake_logits, real_logits=None):
        return -fake_logits.mean()


class WassersteinLoss(AdversarialLoss):
    """The critic estimates the Wasserstein distance; the gradient penalty keeps it 1-Lipschitz."""

    name = "wgan-gp"
    description = ("Wasserstein loss with gradient penalty (--gp-weight, default 10); "
                   "try --n-critic 5 --beta1 0 --beta2 0.9")
    needs_gradient_penalty = True
    shift_invariant = True  # the drift penalty barely anchors the scores

    def discriminator_loss(self, real_logits, fake_logits):
        return fake_logits.mean() - real_logits.mean()

    def generator_loss(self, fake_logits, real_logits=None):
        return -fake_logits.mean()


class LeastSquaresLoss(AdversarialLoss):
    """LSGAN: squared distance of the scores to the targets 1 (real) and 0 (fake)."""

    name = "lsgan"
    description = "least-squares GAN (targets 1 for real, 0 for fake)"
    uses_labels = True
    decision_threshold = 0.5

    def discriminator_loss(self, real_logits, fake_logits):
        return 0.5 * ((real_logits - self.real_label).pow(2).mean() + fake_logits.pow(2).mean())

    def generator_loss(self, fake_logits, real_logits=None):
        return 0.5 * (fake_logits - 1).pow(2).mean()


class RelativisticHingeLoss(AdversarialLoss):
    """Relativistic average hinge (Jolicoeur-Martineau 2018; MSG-GAN's loss): D asks whether
    a real image looks more real than the average fake, and the other way round; G plays
    the same game with the roles swapped, so it gets gradients from the reals' scores too."""

    name = "rahinge"
    description = ("relativistic average hinge (MSG-GAN): reals must score above the average "
                   "fake and fakes below the average real")
    relativistic = True
    shift_invariant = True

    def discriminator_loss(self, real_logits, fake_logits):
        real_vs_fake = real_logits - fake_logits.mean()
        fake_vs_real = fake_logits - real_logits.mean()
        return F.relu(1 - real_vs_fake).mean() + F.relu(1 + fake_vs_real).mean()

    def generator_loss(self, fake_logits, real_logits=None):
        if real_logits is None:
            raise ValueError("the relativistic hinge loss needs D's scores of real images")
        real_vs_fake = real_logits - fake_logits.mean()
        fake_vs_real = fake_logits - real_logits.mean()
        return F.relu(1 + real_vs_fake).mean() + F.relu(1 - fake_vs_real).mean()


LOSSES: dict[str, type[AdversarialLoss]] = {
    cls.name: cls for cls in (BCELoss, SaturatingBCELoss, NonSaturatingLoss, HingeLoss,
                              WassersteinLoss, LeastSquaresLoss, RelativisticHingeLoss)
}


def get_loss(name: str, label_smoothing: float = 0.0) -> AdversarialLoss:
    """The loss called ``name``; ``label_smoothing`` s trains D towards 1 - s on reals."""
    try:
        cls = LOSSES[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), LOSSES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise GanvasError(
            f"--loss {name!r} is not a known loss{hint}; choose one of: {', '.join(LOSSES)}"
        ) from None
    return cls(real_label=1.0 - label_smoothing)
