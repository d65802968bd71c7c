"""The studio's Repaint tab: style transfer with live progress, through ``ganvas.stylize``
(a photo and a painting) or a trained styliser (``ganvas style-train``)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator
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
    started = time.monotonic()

    def show(count: int, state) -> tuple[Image.Image, str, None]:
        with torch.no_grad():
            shown = to_pil(state.picture.detach().float().clamp(0, 1)[:1] * 2 - 1)[0]
        return shown, (f"evaluation {state.evaluation} of {state.total} (scale "
                       f"{state.scale + 1} of {state.scales}), "
                       f"{time.monotonic() - started:.0f} s"), None

    result: Image.Image = yield from _in_background(
        lambda report: ganvas.stylize(photo, painting, callback=report, **options), show,
        "ganvas-repaint")
    path = out_dir / f"repainted-{int(time.time() * 1000)}.png"
    result.save(path)
    yield result, (f"done in {time.monotonic() - started:.0f} s: {result.width}x"
                   f"{result.height}"), path


def styliser_painter(styliser: str, painting: str | None):
    """A trained styliser folder's painter (on the CPU) and its metadata: a per-style one
    paints its own style, an any-style one ``painting``'s."""
    import torch

    from ganvas.stylisers.apply import ArbitraryStyle, make_painter
    from ganvas.stylisers.arbitrary import ArbitraryStyliser
    from ganvas.stylisers.folder import load_styliser

    net, meta = load_styliser(styliser)
    style = None
    if isinstance(net, ArbitraryStyliser):
        if not painting:
            raise GanvasError(f"{styliser} paints any style: upload a painting too")
        style = ArbitraryStyle([painting])
    return make_painter(net, style=style, device=torch.device("cpu")), meta


def repaint_with_styliser(photo: str | None, styliser: str | None, out_dir: Path, *,
                          painting: str | None = None, size: int | None = None
                          ) -> tuple[Image.Image, Path]:
    """Repaint ``photo`` in one pass of a trained styliser folder: a per-style styliser
    paints its own style; an any-style one (``--arbitrary``) the ``painting``'s."""
    from ganvas.stylisers.apply import stylise_picture

    if not photo:
        raise GanvasError("repaint: upload a photo first")
    if not styliser:
        raise GanvasError("repaint: choose a styliser folder (made by `ganvas style-train`)")
    paint, _ = styliser_painter(styliser, painting)
    picture = stylise_picture(paint, photo, size=int(size) if size else None)
    output = out_dir / f"repainted-{int(time.time() * 1000)}.png"
    picture.save(output)
    return picture, output


def repaint_video_steps(video: str | None, out_dir: Path, *, styliser: str | None = None,
                        painting: str | None = None, size: int | None = None,
                        iterations: int = 100, backbone: str = "vgg16-hed"
                        ) -> Iterator[tuple[Image.Image | None, str, Path | None]]:
    """Repaint every frame of ``video`` as ``ganvas stylize --video`` does (steadied along
    the optical flow, audio kept): with a trained styliser, or by optimisation towards
    ``painting``. Yields ``(newest frame, "frame i of n", None)`` as it goes and
    ``(last frame, summary, the video file)`` at the end."""
    from ganvas.stylisers.folder import KIND_ARBITRARY
    from ganvas.video.io import probe
    from ganvas.video.painters import network_painter, optimisation_painter
    from ganvas.video.stylise import stylise_video

    if not video:
        raise GanvasError("repaint: upload a video first")
    info = probe(video, "video")  # one line for what is not a usable video (or no PyAV)
    if styliser:
        paint, meta = styliser_painter(styliser, painting)
        painter = network_painter(paint)
        settings = {"model": str(Path(styliser).resolve()), "step": meta.get("step"),
                    "style": [str(painting)] if meta.get("kind") == KIND_ARBITRARY else []}
    elif painting:
        options = {"iterations": int(iterations), "backbone": backbone, "device": "cpu",
                   "size": int(size) if size else None}
        painter = optimisation_painter([painting], options)
        settings = {"style": [str(painting)], "iterations": int(iterations),
                    "backbone": backbone}
    else:
        raise GanvasError("repaint: upload a painting or choose a styliser folder for the "
                          "video")
    output = out_dir / f"repainted-{int(time.time() * 1000)}.mp4"
    started, total = time.monotonic(), f" of {info.frames}" if info.frames else ""
    newest: list[Image.Image] = []

    def show(count: int, frame) -> tuple[Image.Image, str, None]:
        newest[:] = [Image.fromarray(frame)]
        return newest[0], f"frame {count}{total}, {time.monotonic() - started:.0f} s", None

    result = yield from _in_background(
        lambda report: stylise_video(video, output, painter, settings=settings,
                                     size=int(size) if size else None, progress=False,
                                     log=lambda message: None, on_frame=report),
        show, "ganvas-repaint-video")
    yield (newest[0] if newest else None), (f"done in {time.monotonic() - started:.0f} s: "
                                            f"{result.frames} frames"), result.output


def _in_background(task: Callable[[Callable[[Any], None]], Any],
                   show: Callable[[int, Any], Any], name: str) -> Generator[Any, None, Any]:
    """Run ``task(report)`` in a thread of its own; yield ``show(count, update)`` for what it
    reports, at most every UPDATE_SECONDS (the page wants the newest, not every one), and
    return its result; its error is raised here, never lost in the thread."""
    updates: queue.Queue = queue.Queue()
    outcome: dict[str, Any] = {}
    finished = object()

    def work() -> None:
        try:
            outcome["result"] = task(updates.put)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            updates.put(finished)

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    count, last_sent = 0, 0.0
    while (item := updates.get()) is not finished:
        count += 1
        if time.monotonic() - last_sent >= UPDATE_SECONDS:
            last_sent = time.monotonic()
            yield show(count, item)
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
