"""Choosing the compute device from a user's --device value."""

from __future__ import annotations

import torch

from ganvas.errors import GanvasError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; anything else must be usable here."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise GanvasError(
            f"--device {name!r} is not a device name; use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise GanvasError(f"--device {name}: CUDA is not available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise GanvasError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) here")
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise GanvasError(f"--device {name}: Apple MPS is not available here; "
                              "use --device cpu")
    elif device.type != "cpu":
        raise GanvasError(f"--device {name!r} is not supported; use auto, cpu, cuda or mps")
    return device
