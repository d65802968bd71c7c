"""Training health: what the monitor measures and how it reads the measurements.

The rules (:mod:`ganvas.health.rules`), the report ``ganvas doctor`` prints
(:mod:`ganvas.health.report`) and the settings check (:mod:`ganvas.health.settings_check`)
read numbers and configs only, so ``doctor`` runs without the trainer; the live monitor that
feeds them during training is a callback, :mod:`ganvas.training.callbacks.health`.
"""

from ganvas.health.rules import Finding, diagnose

__all__ = ["Finding", "diagnose"]
