"""Loss curves as a PNG, redrawn from metrics.jsonl records."""

from __future__ import annotations

import io
import os
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display needed; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402

from ganvas.utils.files import atomic_write  # noqa: E402


def plot_training_curves(records: list[dict[str, Any]], path: str | os.PathLike) -> None:
    """Two panels: D and G losses, and the discriminator's mean outputs D(x), D(G(z))."""
    records = [r for r in records if "event" not in r]
    steps = [r["step"] for r in records]
    fig, (ax_loss, ax_d) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    for key, label in (("Loss/D", "discriminator"), ("Loss/G", "generator")):
        ax_loss.plot(steps, [r.get(key, float("nan")) for r in records], label=label)
    ax_loss.set(title="Losses", xlabel="step")
    ax_loss.legend()
    for key, label in (("D/real", "D(x) on real"), ("D/fake", "D(G(z)) on generated")):
        ax_d.plot(steps, [r.get(key, float("nan")) for r in records], label=label)
    ax_d.set(title="Discriminator output", xlabel="step", ylim=(-0.02, 1.02))
    ax_d.legend()
    for ax in (ax_loss, ax_d):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    with atomic_write(path) as handle:
        handle.write(buffer.getvalue())
