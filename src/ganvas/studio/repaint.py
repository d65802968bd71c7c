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
                          painting: str | None = None, size: int | None = None
                          ) -> tuple[Image.Image, Path]:
    """Repaint ``photo`` in one pass of a trained styliser folder: a per-style styliser
    paints its own style; an any-style one (``--arbitrary``) the ``painting``'s."""
    import torch

    from ganvas.stylisers.apply import ArbitraryStyle, make_painter, stylise_picture
    from ganvas.stylisers.arbitrary import ArbitraryStyliser
    from ganvas.stylisers.folder import load_styliser

    if not photo:
        raise GanvasError("repaint: upload a photo first")
    if not styliser:
        raise GanvasError("repaint: choose a styliser folder (made by `ganvas style-train`)")
    net, _ = load_styliser(styliser)
    style = None
    if isinstance(net, ArbitraryStyliser):
        if not painting:
            raise GanvasError(f"{styliser} paints any style: upload a painting too")
        style = ArbitraryStyle([painting])
    paint = make_painter(net, style=style, device=torch.device("cpu"))
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
    from ganvas.video.io import probe
    from ganvas.video.painters import network_painter, optimisation_painter
    from ganvas.video.stylise import stylise_video

    if not video:
        raise GanvasError("repaint: upload a video first")
    info = probe(video, "video")  # one line for what is not a usable video (or no PyAV)
    if styliser:
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
        painter = network_painter(make_painter(net, style=style, device=torch.device("cpu")))
        settings = {"model": str(Path(styliser).resolve()), "step": meta.get("step"),
                    "style": [str(painting)] if style else []}
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
    updates: queue.Queue = queue.Queue()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = stylise_video(
                video, output, painter, settings=settings, size=int(size) if size else None,
                progress=False, log=lambda message: None,
                on_frame=lambda frame: updates.put(frame))
        except BaseException as exc:  # reported on the page, never lost in a thread
            outcome["error"] = exc
        finally:
            updates.put(None)

    started = time.monotonic()
    worker = threading.Thread(target=work, name="ganvas-repaint-video", daemon=True)
    worker.start()
    done, frame, total = 0, None, f" of {info.frames}" if info.frames else ""
    last_sent = 0.0
    while (item := updates.get()) is not None:
        done, frame = done + 1, item
        if time.monotonic() - last_sent >= UPDATE_SECONDS:
            last_sent = time.monotonic()
            yield Image.fromarray(frame), (f"frame {done}{total}, "
                                           f"{time.monotonic() - started:.0f} s"), None
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    last = None if frame is None else Image.fromarray(frame)
    yield last, (f"done in {time.monotonic() - started:.0f} s: {outcome['result'].frames} "
                 "frames"), outcome["result"].output
