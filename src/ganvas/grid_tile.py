"""``ganvas generate RUN --grid-tile ROW,COL [--step N]``: one tile of a training sample grid
drawn again, alone and at full size, the same pixels as in the snapshot.

A run's sample grids draw fixed latents (from the run's seed, its own random stream) through
the sampling generator (the moving average when the run keeps one), in one batch, in eval
mode. Every input of that picture is in a checkpoint of the same step: its config (seed,
number of samples, latent size) and weights. So a tile is redrawn by drawing the grid's
batch again from that checkpoint and keeping the one tile; on the device the run trained on
it is the same to the bit (another device may round differently).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from ganvas.data.classes import grid_labels, one_hot
from ganvas.errors import GanvasError
from ganvas.rng import SAMPLES, stream
from ganvas.runs import checkpoint as ckpt
from ganvas.runs.sources import read_generator
from ganvas.utils.images import save_image, to_pil


def parse_tile(text: str) -> tuple[int, int]:
    """``"2,3"`` -> (2, 3): a row and a column counted from 1."""
    row, comma, column = str(text).partition(",")
    try:
        if not comma:
            raise ValueError
        return int(row), int(column)
    except ValueError:
        raise GanvasError(f"--grid-tile: {text!r:.40} is not ROW,COL (e.g. 2,3; the top left "
                          "tile is 1,1)") from None


def grid_shape(num_samples: int) -> tuple[int, int]:
    """Rows and columns of a sample grid of ``num_samples`` tiles (as :func:`make_grid`)."""
    columns = math.ceil(math.sqrt(num_samples))
    return math.ceil(num_samples / columns), columns


def draw_grid_tile(run: str | os.PathLike, row: int, column: int, step: int | None = None,
                   device: str = "cpu") -> tuple[torch.Tensor, int]:
    """Tile (``row``, ``column``), counted from 1, of the sample grid at ``step`` (default:
    the newest checkpoint) as ``[1, C, H, W]`` in [-1, 1], and the step it shows; drawn on
    ``device`` (the run's own device gives the snapshot's pixels exactly)."""
    from ganvas.utils.device import resolve_device

    run = Path(run)
    if run.is_file():
        if step is not None:
            raise GanvasError("--step goes with a run folder; a checkpoint file is one step")
        path = run
    elif (run / ckpt.CHECKPOINT_DIR).is_dir():
        path = _checkpoint_at(run, step)
    else:
        raise GanvasError(f"{run}: not a run folder or a checkpoint file; --grid-tile redraws "
                          "a tile of a training run's sample grid")
    source = read_generator(path)
    config = source.config
    try:
        num, latent_dim, seed = (int(config[k]) for k in ("num_samples", "latent_dim", "seed"))
    except (KeyError, TypeError, ValueError):
        raise GanvasError(f"{path}: its config does not say how its sample grids were drawn"
                          ) from None
    latents = torch.randn(num, latent_dim, generator=stream(seed, SAMPLES))
    labels = None
    if source.generator.c_dim:  # a conditional run's grids: a row per class
        tiles, columns = grid_labels(num, source.generator.c_dim)
        num, rows = len(tiles), len(tiles) // columns
        latents, labels = latents[:num], one_hot(tiles, source.generator.c_dim)
    else:
        rows, columns = grid_shape(num)
    if not (1 <= row <= rows and 1 <= column <= columns
            and (row - 1) * columns + column <= num):
        raise GanvasError(f"--grid-tile {row},{column}: the grids of this run have {num} tiles "
                          f"in {rows} rows of {columns} (the top left is 1,1)")
    target = resolve_device(device)
    generator = source.generator.eval().to(target)
    with torch.inference_mode():  # the whole batch, as the grid was drawn
        images = generator.preview(latents.to(target),
                                   None if labels is None else labels.to(target)).float().cpu()
    index = (row - 1) * columns + (column - 1)
    return images[index:index + 1], source.step


def _checkpoint_at(run: Path, step: int | None) -> Path:
    found = ckpt.list_checkpoints(run)
    if not found:
        raise GanvasError(f"{run}: no checkpoints to draw a tile from")
    if step is None:
        return found[-1]
    path = ckpt.checkpoint_path(run, step)
    if not path.is_file():
        kept = ", ".join(p.stem.split("-")[1].lstrip("0") or "0" for p in found[-8:])
        raise GanvasError(f"--step {step}: {run} kept no checkpoint of that step (it keeps "
                          f"{kept}); a grid's tiles can be drawn again where its step's "
                          "checkpoint is kept (--keep-checkpoints)")
    return path


def save_grid_tile(run: str | os.PathLike, out: str | os.PathLike, row: int, column: int,
                   step: int | None = None, device: str = "cpu") -> Path:
    """Draw a tile again and write it as ``tile-stepN-rRcC.png`` in ``out``."""
    from ganvas.runs.folders import ensure_writable_dir

    image, shown = draw_grid_tile(run, row, column, step, device)
    out = Path(out)
    ensure_writable_dir(out, "--out")
    return save_image(to_pil(image)[0], out / f"tile-step{shown}-r{row}c{column}.png")
