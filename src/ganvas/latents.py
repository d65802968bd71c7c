"""Latent files: what ``ganvas project`` finds, saved so ``ganvas generate --latent`` draws it
again (a safetensors file: the latent, any noise maps, and what they were projected into).

Here rather than in :mod:`ganvas.project` so that ``generate`` reads them without importing
the projection search.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ganvas.errors import GanvasError

if TYPE_CHECKING:
    from ganvas.generate import ImageGenerator
    from ganvas.project import Projection

LATENT_FORMAT = "ganvas-latent"
MAX_LATENT_BYTES = 100_000_000


def save_latent(path: str | os.PathLike, projection: Projection, config: dict) -> Path:
    """The latent (and its noise maps) as a safetensors file that ``ganvas generate
    --latent`` renders again."""
    from safetensors.torch import save

    from ganvas.utils.files import atomic_write

    tensors = {"latent": projection.latent.contiguous()}
    tensors.update({f"noise.{i}": n.contiguous() for i, n in enumerate(projection.noise)})
    metadata = {"format": LATENT_FORMAT, "kind": projection.kind,
                "model": str(config.get("model")), "resolution": str(config.get("resolution")),
                "distance": f"{projection.distance:.6f}",
                **({"class": str(projection.label)} if projection.label is not None else {})}
    path = Path(path)
    with atomic_write(path) as handle:
        handle.write(save(tensors, metadata=metadata))
    return path


@dataclass
class Latent:
    """A latent file: ``kind`` w or z, ``latent [N, ...]``, and any noise maps."""

    kind: str
    latent: torch.Tensor
    noise: list[torch.Tensor]
    label: int | None = None  # a conditional model's class (a z latent needs it to draw)


def load_latent(path: str | os.PathLike) -> Latent:
    """What :func:`save_latent` wrote, or a one-line error naming the file."""
    from safetensors import SafetensorError, safe_open

    from ganvas.utils.files import stat_regular_file

    path = Path(path)
    where = f"--latent {path}"
    st = stat_regular_file(path, where, missing="no such file; check the path",
                           wanted="a latent file written by ganvas project")
    if st.st_size > MAX_LATENT_BYTES:
        raise GanvasError(f"{where}: too large for a latent file ({st.st_size:,} bytes)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            keys = set(handle.keys())
            if metadata.get("format") != LATENT_FORMAT or "latent" not in keys:
                raise GanvasError(f"{where}: not a latent file written by `ganvas project`")
            latent = handle.get_tensor("latent")
            noise = [handle.get_tensor(f"noise.{i}") for i in range(len(keys) - 1)
                     if f"noise.{i}" in keys]
    except GanvasError:
        raise
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise GanvasError(f"{where}: not a readable latent file ({str(exc)[:80]})") from None
    kind = metadata.get("kind")
    tensors = [latent, *noise]
    if kind not in ("w", "z") or latent.dim() != (3 if kind == "w" else 2) \
            or not all(t.is_floating_point() and torch.isfinite(t).all() for t in tensors):
        raise GanvasError(f"{where}: the latent in it is damaged")
    label = metadata.get("class")
    if label is not None and not (label.isdigit() and len(label) <= 6):
        raise GanvasError(f"{where}: the class in it is damaged")
    return Latent(kind, latent.float(), [n.float() for n in noise],
                  None if label is None else int(label))


def render_latent(model: ImageGenerator, saved: Latent, where: str) -> torch.Tensor:
    """The pictures of a latent file, checked against ``model``: ``[N, C, R, R]``."""
    G = model.generator
    if saved.kind == "w":
        if not model.has_styles:
            raise GanvasError(f"{where}: a style-vector (W) latent needs a model with styles, "
                              "such as the stylegan2 run it was projected into")
        expected = (G.num_ws, G.w_dim)
    else:
        expected = (G.latent_dim,)
    if tuple(saved.latent.shape[1:]) != expected or len(saved.latent) < 1:
        raise GanvasError(f"{where}: the latent has shape {tuple(saved.latent.shape)}, this "
                          f"model takes [N, {', '.join(map(str, expected))}]; was it projected "
                          "into another model?")
    noise_mode = model.noise_mode
    if saved.noise and noise_mode == "const":
        # the projection's own noise maps in place of the model's constant ones (random or
        # none, when asked for, are honoured)
        G = copy.deepcopy(G)
        slots = G.noise_inputs()
        if [tuple(m.noise_const.shape) for m in slots] != [tuple(n.shape) for n in saved.noise]:
            raise GanvasError(f"{where}: its noise maps do not fit this model; was it "
                              "projected into another model?")
        for module, noise in zip(slots, saved.noise):
            module.noise_const = noise.to(model.device)
    c = None
    if saved.kind == "z" and (saved.label is not None or model.classes):
        if saved.label is None or not model.classes or saved.label >= len(model.classes):
            raise GanvasError(f"{where}: its class does not fit this model; was it projected "
                              "into another model?")
        c = model.labels_for(len(saved.latent), saved.label).to(model.device)
    with torch.inference_mode():
        latent = saved.latent.to(model.device)
        images = (G.synthesize(latent, noise_mode) if saved.kind == "w"
                  else G.sample(latent, c, noise=noise_mode))
    return images.float().cpu()
