"""Training health: diagnoses in plain words, the live monitor, and the doctor's report."""

from ganvas.training.health.monitor import HealthMonitor
from ganvas.training.health.rules import Finding, diagnose

__all__ = ["Finding", "HealthMonitor", "diagnose"]
