"""Loss recipes and their parts: criteria (bce, hinge, ...), penalties, the balance gate.

A model family names its recipe; :func:`ganvas.losses.registry.get_recipe` finds it. See
:mod:`ganvas.losses.recipe` for the phase contract the training loop runs. Only the criteria
are imported here, so reading a run's loss name (``ganvas doctor``) stays light.
"""

from ganvas.losses.criteria import LOSSES, AdversarialLoss, get_loss

__all__ = ["LOSSES", "AdversarialLoss", "get_loss"]
