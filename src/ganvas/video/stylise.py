"""Stylising a video frame by frame, steadily, resumably.

Each frame is repainted by a *frame painter* (any method: optimisation, a per-style network,
an arbitrary one), which also gets the previous result warped along the optical flow to
where things are now, and where that warp is valid. With ``temporal_weight`` W > 0 the
result is pulled towards that warped previous result, ``(new + W * previous) / (1 + W)``
on the valid pixels: what stays still stays still, what moves carries its strokes along,
and what is newly visible is painted fresh. The warping error of the result (the change
between consecutive results that the motion does not explain) is measured on the way.

The result is written in segments (:mod:`ganvas.video.io`) under ``OUTPUT.parts/`` with a
small state file, each closed after ``segment_seconds`` of work: a Ctrl-C (or SIGTERM)
finishes the current frame, and leaves a playable OUTPUT with every frame done so far
(the source's audio up to there) and the parts to ``--resume`` from; a killed process
loses only the segment it was writing. The frame rate and the audio are kept.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ganvas.errors import GanvasError
from ganvas.style.images import fitted_size
from ganvas.utils.files import atomic_write, atomic_write_text
from ganvas.utils.progress import progress_bar
from ganvas.utils.signals import GracefulStop
from ganvas.video import DEFAULT_TEMPORAL_WEIGHT
from ganvas.video.flow import FlowEstimator, stabilised, valid_mask, warp, warping_error
from ganvas.video.io import (
    VIDEO_EXTENSIONS,
    FrameWriter,
    VideoInfo,
    assemble,
    probe,
    read_frames,
)

STATE_NAME = "state.json"
STATE_FORMAT, STATE_VERSION = "ganvas-video-parts", 1
SEGMENT_SECONDS = 5.0  # of work: what a killed process can lose
# (frame, previous result warped to it or None, where that warp is valid or None) -> result
FramePainter = Callable[[np.ndarray, np.ndarray | None, np.ndarray | None], np.ndarray]


@dataclass
class VideoResult:
    output: Path
    frames: int  # done in all
    interrupted: bool
    warping_error: float | None  # mean over the valid pixels of all consecutive pairs


def parts_folder(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def output_size(info: VideoInfo, size: int | None) -> tuple[int, int]:
    """``(width, height)``: the video's own, or its longest side ``size``; even, as the
    H.264 colour format needs."""
    width, height = (info.width, info.height) if size is None else fitted_size(
        (info.width, info.height), size)
    return max(2, width // 2 * 2), max(2, height // 2 * 2)


def check_video_output(output: str | Path) -> Path:
    output = Path(output)
    if output.suffix.lower() not in VIDEO_EXTENSIONS:
        raise GanvasError(f"-o {output}: write a video as {', '.join(VIDEO_EXTENSIONS)}")
    if output.exists() and not output.is_file():
        raise GanvasError(f"-o {output}: not a file; choose another -o")
    if not output.parent.is_dir():
        raise GanvasError(f"-o {output}: the folder {output.parent} does not exist")
    return output


def preflight(source: str | Path, output: str | Path, resume: bool) -> tuple[VideoInfo, Path]:
    """Everything about the files that can be wrong, checked before any model is loaded."""
    output = check_video_output(output)
    info = probe(source)
    parts = parts_folder(output)
    if resume and not (parts / STATE_NAME).is_file():
        raise GanvasError(f"--resume: nothing to resume for {output} (no {parts / STATE_NAME})"
                          + ("; it is finished" if output.exists() else ""))
    if not resume and parts.exists():
        raise GanvasError(f"{parts} holds an unfinished stylisation of {output.name}; "
                          "continue it with --resume, or delete it to start again")
    return info, output


def stylise_video(source: str | Path, output: str | Path, paint: FramePainter, *,
                  settings: dict[str, Any], size: int | None = None,
                  temporal_weight: float = DEFAULT_TEMPORAL_WEIGHT, resume: bool = False,
                  progress: bool = True,
                  log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
                  segment_seconds: float = SEGMENT_SECONDS, stop_after: int | None = None,
                  on_frame: Callable[[np.ndarray], None] | None = None) -> VideoResult:
    """Repaint every frame of ``source`` into ``output``. ``settings`` describe the method
    (they must match to ``resume``); ``stop_after`` ends this session after that many frames,
    as Ctrl-C would; ``on_frame`` sees each result as it is written."""
    info, output = preflight(source, output, resume)
    width, height = output_size(info, size)
    parts = parts_folder(output)
    identity = {"source": str(Path(source).resolve()), "source_bytes": info.path.stat().st_size,
                "size": [width, height], "temporal_weight": temporal_weight,
                "settings": settings}
    state = _start(parts, output, identity, resume)
    done = state["frames"]
    flow = FlowEstimator()
    previous_in: np.ndarray | None = None
    previous_out: np.ndarray | None = None
    frames = read_frames(info.path, start=max(0, done - 1))
    if done:
        previous_in = _fit(next(frames, None), width, height)
        previous_out = np.asarray(Image.open(parts / state["last"]).convert("RGB"))
        if previous_in is None or previous_out.shape != (height, width, 3):
            raise GanvasError(f"--resume: {parts} does not match {source}; delete it to "
                              "start again")

    bar = progress_bar(total=info.frames, initial=done, unit="frame", desc="video",
                       enabled=progress)
    writer: FrameWriter | None = None
    segment_started = 0.0
    session, interrupted = 0, False

    def close_segment() -> None:
        nonlocal writer
        if writer is None:
            return
        writer.close()
        if writer.frames:
            # the last result, lossless, for the next frame's warp after a resume
            last, earlier = f"last-{done:07d}.png", state.get("last")
            with atomic_write(parts / last) as handle:
                Image.fromarray(previous_out).save(handle, format="PNG")
            state.update(segments=[*state["segments"], writer.path.name], frames=done,
                         last=last)
            atomic_write_text(parts / STATE_NAME, json.dumps(state, indent=1) + "\n")
            if earlier and earlier != last:
                (parts / earlier).unlink(missing_ok=True)
        else:
            writer.path.unlink(missing_ok=True)
        writer = None

    with GracefulStop(log) as signals, bar:
        try:
            pending = next(frames, None)
            while pending is not None:
                frame = _fit(pending, width, height)
                warped = mask = None
                if previous_in is not None:
                    backward = flow(frame, previous_in)
                    mask = valid_mask(backward, flow(previous_in, frame))
                    warped = warp(previous_out, backward)
                painted = paint(frame, warped, mask)
                if painted.shape != frame.shape or painted.dtype != np.uint8:
                    raise GanvasError(f"the painter returned {painted.shape} {painted.dtype} "
                                      f"for a {frame.shape} frame")
                if warped is not None:
                    if temporal_weight:
                        painted = stabilised(painted, warped, mask, temporal_weight)
                    error, count = warping_error(painted, warped, mask)
                    state["error_sum"] += error
                    state["error_count"] += count
                if writer is None:
                    writer = FrameWriter(parts / f"part-{done:07d}.mp4", width, height, info.fps)
                    segment_started = time.perf_counter()
                writer.write(painted)
                if on_frame is not None:
                    on_frame(painted)
                done += 1
                session += 1
                previous_in, previous_out = frame, painted
                bar.update(1)
                if state["error_count"]:
                    bar.set_postfix_str(f"warping error {_mean_error(state):.5f}", refresh=False)
                if time.perf_counter() - segment_started >= segment_seconds:
                    close_segment()
                pending = next(frames, None)  # read ahead: a stop after the last frame
                if signals.received is not None or (stop_after is not None   # is no stop
                                                    and session >= stop_after):
                    interrupted = pending is not None
                    break
        except KeyboardInterrupt:
            interrupted = True
        except BaseException:
            close_segment()
            if not state["segments"]:  # failed before any frame was kept: nothing to resume
                shutil.rmtree(parts, ignore_errors=True)
            raise
        finally:
            close_segment()
    segments = [parts / name for name in state["segments"]]
    if not segments:
        raise GanvasError("stopped before the first frame was done; nothing written")
    assemble(segments, output, info.path if info.has_audio else None)
    error = _mean_error(state) if state["error_count"] else None
    said = f"; warping error {error:.5f}" if error is not None else ""
    if interrupted:
        log(f"interrupted after {done:,} frames; {output} plays them{said}; continue with "
            f"--resume (the parts are in {parts})")
    else:
        shutil.rmtree(parts, ignore_errors=True)
        log(f"wrote {output}: {done:,} frames at {float(info.fps):.3g} fps{said}")
    return VideoResult(output, done, interrupted, error)


def _mean_error(state: dict[str, Any]) -> float:
    return state["error_sum"] / max(state["error_count"], 1.0)


def _fit(frame: np.ndarray | None, width: int, height: int) -> np.ndarray | None:
    if frame is None or frame.shape[:2] == (height, width):
        return frame
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.LANCZOS))


def _start(parts: Path, output: Path, identity: dict[str, Any], resume: bool) -> dict[str, Any]:
    """The state of the parts folder: new, or read back (and checked) to resume."""
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    if not resume:
        parts.mkdir()
        state = {"format": STATE_FORMAT, "version": STATE_VERSION, "key": key,
                 "identity": identity, "frames": 0, "segments": [], "error_sum": 0.0,
                 "error_count": 0.0}
        atomic_write_text(parts / STATE_NAME, json.dumps(state, indent=1) + "\n")
        return state
    path = parts / STATE_NAME
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        assert state["format"] == STATE_FORMAT and isinstance(state["frames"], int)
        assert all(isinstance(n, str) and (parts / n).is_file() for n in state["segments"])
        float(state["error_sum"]), float(state["error_count"])
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        raise GanvasError(f"--resume: {path} is damaged; delete {parts} to start again") \
            from None
    if state.get("key") != key:
        raise GanvasError(f"--resume: {output} was started from another video or with other "
                          f"settings; give the same ones, or delete {parts} to start again")
    kept = set(state["segments"]) | {STATE_NAME, state.get("last")}
    for stray in parts.iterdir():  # a segment that a killed process was writing
        if stray.name not in kept:
            stray.unlink()
    if state["frames"] and not (isinstance(state.get("last"), str)
                                and (parts / state["last"]).is_file()):
        raise GanvasError(f"--resume: the last frame done is missing from {parts}; delete "
                          "it to start again")
    return state
