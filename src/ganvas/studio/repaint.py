"""The studio's Repaint tab: style transfer with live progress, through ``ganvas.stylize``
(a photo and a painting) or a trained styliser (``ganvas style-train``)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from ganvas.errors import GanvasError

UPDATE_SECONDS = 0.5  # the page is sent the picture in progress at most this often


def repaint_steps(photo: str | None, painting: str | None, out_dir: Path, *,
                  size: int = 512, iterations: int = 300,
                  style_weight: float | str | None = None,
                  preserve_colors: str | None = None, backbone: str = "vgg16-hed",
                  seed: int = 0) -> Iterator[tuple[Image.Image | None, str, Path | None]]:
    """Repaint ``photo`` in the style of ``painting``; yields ``(picture so far, progress
    text, None)`` while it works and ``(result, summary, saved file)`` at the end."""
    import torch

    import ganvas
    from ganvas.utils.images import to_pil

    if not photo:
        raise GanvasError("repaint: upload a photo first")
    if not painting:
        raise GanvasError("repaint: upload a painting (the style) first")
    options: dict[str, Any] = {"size": int(size), "iterations": int(iterations),
                               "backbone": backbone, "seed": int(seed), "device": "cpu"}
    if style_weight not in (None, ""):
        try:
            options["style_weight"] = float(style_weight)
        except ValueError:
            raise GanvasError(f"style weight {str(style_weight)[:20]!r}: give a number, or "
                              "leave it empty for the backbone's tuned weight") from None
    if preserve_colors and preserve_colors != "no":
        options["preserve_colors"] = preserve_colors
    updates: queue.Queue = queue.Queue()
    outcome: dict[str, Any] = {}

    def progress(state) -> None:
        updates.put((state.evaluation, state.total, state.scale, state.scales, state.picture))

    def work() -> None:
        try:
            outcome["picture"] = ganvas.stylize(photo, painting, callback=progress, **options)
        except BaseException as exc:  # reported on the page, never lost in a thread
            outcome["error"] = exc
        finally:
            updates.put(None)

    started = time.monotonic()
    worker = threading.Thread(target=work, name="ganvas-repaint", daemon=True)
    worker.start()
    last_sent = 0.0
    while True:
        item = updates.get()
        if item is None:
            break
        while not updates.empty():  # only the newest picture matters
            newer = updates.get()
            if newer is None:
                item = None
                break
            item = newer
        if item is None:
            break
        if time.monotonic() - last_sent < UPDATE_SECONDS:
            continue
        last_sent = time.monotonic()
        evaluation, total, scale, scales, picture = item
        with torch.no_grad():
            shown = to_pil(picture.detach().float().clamp(0, 1)[:1] * 2 - 1)[0]
        yield shown, (f"evaluation {evaluation} of {total} (scale {scale + 1} of {scales}), "
                      f"{time.monotonic() - started:.0f} s"), None
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    result: Image.Image = outcome["picture"]
    path = out_dir / f"repainted-{int(time.time() * 1000)}.png"
    result.save(path)
    yield result, (f"done in {time.monotonic() - started:.0f} s: {result.width}x"
                   f"{result.height}"), path


def repaint_with_styliser(photo: str | None, styliser: str | None, out_dir: Path, *,
                          size: int | None = None) -> tuple[Image.Image, Path]:
    """Repaint ``photo`` in one pass of a trained styliser folder."""
    from ganvas.stylisers.apply import stylise_with_model

    if not photo:
        raise GanvasError("repaint: upload a photo first")
    if not styliser:
        raise GanvasError("repaint: choose a styliser folder (made by `ganvas style-train`)")
    output = out_dir / f"repainted-{int(time.time() * 1000)}.png"
    stylise_with_model(styliser, photo, output, size=int(size) if size else None,
                       device="cpu", log=lambda message: None)
    with Image.open(output) as picture:
        return picture.copy(), output
