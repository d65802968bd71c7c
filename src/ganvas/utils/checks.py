"""Validation of numbers that arrive from users, files or the Python API."""

from __future__ import annotations

from typing import Any

from ganvas.errors import GanvasError


def whole_number(value: Any, name: str, minimum: int, maximum: int) -> int:
    """``value`` if it is an int (not a bool) in ``[minimum, maximum]``, else a GanvasError."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise GanvasError(f"{name} must be a whole number, got {str(value)[:40]!r}")
    if not minimum <= value <= maximum:
        raise GanvasError(f"{name} must be between {minimum} and {maximum:,}, got {value}")
    return value
