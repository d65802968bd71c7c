"""``ganvas walk``: a latent walk through a trained generator, as an MP4, a GIF or a folder of
PNG frames.

Through chosen seeds (``--seeds 3,8,21``: each keyframe is that seed's own picture, the one
``generate --seeds`` draws) or a smooth random walk (``--random``: keyframes from ``--seed``
every two seconds). Between keyframes a generator with styles (StyleGAN2) moves in a
straight line in W, after truncation, where its pictures change evenly; the others move
along the great circle between the two latents in z (spherical interpolation), which keeps
every frame's latent as long as a drawn one. Frames are drawn one at a time and written as
they come (MP4 and folders); a GIF keeps each frame as an 8-bit palette picture until it is
written.
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganvas.errors import GanvasError
from ganvas.generate import ImageGenerator, load
from ganvas.utils.images import on_checkerboard, to_uint8

MAX_FRAMES = 100_000
MAX_GIF_FRAMES = 1_500  # a GIF is held until written: longer walks go to MP4 or a folder
MAX_GIF_FPS = 50  # GIF delays are hundredths of a second; viewers slow shorter ones down
KEYFRAME_SECONDS = 2.0  # a random walk's keyframes are this far apart
MIN_SIDE = 256  # frames are enlarged (nearest neighbour) to at least this side by default


@dataclass
class WalkResult:
    path: Path
    frames: int
    size: tuple[int, int]  # width, height of each frame


def slerp(a: torch.Tensor, b: torch.Tensor, u: float) -> torch.Tensor:
    """The point ``u`` of the way along the great circle from ``a`` to ``b`` (rows), with
    ``a`` and ``b`` themselves at 0 and 1 exactly."""
    if u == 0:
        return a
    if u == 1:
        return b
    cos = (a * b).sum(-1, keepdim=True) / (a.norm(dim=-1, keepdim=True)
                                           * b.norm(dim=-1, keepdim=True)).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
    sin = torch.sin(omega)
    return (torch.sin((1 - u) * omega) * a + torch.sin(u * omega) * b) / sin


def positions(frames: int, keyframes: int, loop: bool) -> list[tuple[int, float]]:
    """For each frame, the keyframe it leaves and how far towards the next one it is. The
    keyframes fall on frames (``round(k * span / transitions)``), so each is drawn exactly;
    a loop ends one step before its first keyframe comes round again."""
    transitions = keyframes if loop else keyframes - 1
    span = frames if loop else frames - 1
    marks = [round(k * span / transitions) for k in range(transitions + 1)]
    found = []
    for i in range(frames):
        k = min(bisect.bisect_right(marks, i) - 1, transitions - 1)
        width = marks[k + 1] - marks[k]
        found.append((k, (i - marks[k]) / width if width else 0.0))
    return found


def walk_frames(model: ImageGenerator, latents: torch.Tensor, frames: int, loop: bool,
                label: str | int | None = None) -> Iterator[torch.Tensor]:
    """The walk's frames, ``[1, C, H, W]`` in [-1, 1], one at a time; a conditional model
    walks within class ``label`` (default: its first class)."""
    g, psi = model.generator, model.truncation
    count = len(latents)
    c = model.labels_for(1, 0 if label is None and model.classes else label)
    c = None if c is None else c.to(model.device)
    with torch.inference_mode():
        if g.has_styles:  # straight lines in W, after truncation
            ws = [g.map(z[None].to(model.device), c, truncation=psi,
                        truncation_cutoff=model.truncation_cutoff) for z in latents]
            for k, u in positions(frames, count, loop):
                a, b = ws[k], ws[(k + 1) % count]
                w = a if u == 0 else b if u == 1 else torch.lerp(a, b, u)
                yield g.synthesize(w, model.noise_mode).float().cpu()
        else:
            for k, u in positions(frames, count, loop):
                z = slerp(latents[k], latents[(k + 1) % count], u)[None]
                yield model.draw(z.to(model.device), c).float().cpu()


def random_keyframes(latent_dim: int, seconds: float, seed: int) -> torch.Tensor:
    """Keyframes every KEYFRAME_SECONDS of a ``seconds`` walk, from ``seed``."""
    count = max(2, math.ceil(seconds / KEYFRAME_SECONDS) + 1)
    return torch.randn(count, latent_dim, generator=torch.Generator().manual_seed(seed))


class _Frames:
    """Where frames go: ``.mp4`` (streamed through PyAV), ``.gif`` (Pillow) or a folder."""

    def __init__(self, path: Path, width: int, height: int, fps: int):
        self.path, self.fps, self.count = path, fps, 0
        suffix = path.suffix.lower()
        self.kind = {".mp4": "mp4", ".gif": "gif", "": "folder"}.get(suffix)
        if self.kind is None:
            raise GanvasError(f"-o {path}: write a .mp4, a .gif or a folder (no extension)")
        if self.kind == "folder":
            from ganvas.runs.folders import ensure_writable_dir

            ensure_writable_dir(path, "-o")
            if next(path.glob("frame*.png"), None) is not None:
                raise GanvasError(f"-o {path}: already holds frames of another walk; give an "
                                  "empty or new folder")
        else:
            if path.is_dir():
                raise GanvasError(f"-o {path}: a folder is in the way of the {self.kind} file")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise GanvasError(f"-o {path}: cannot write there "
                                  f"({exc.strerror or exc})") from None
        self.gif: list[Image.Image] = []
        self.mp4 = None
        if self.kind == "mp4":
            from ganvas.video.io import FrameWriter

            self.temporary = path.with_name(f".{path.name}.tmp.mp4")
            self.mp4 = FrameWriter(self.temporary, width, height, Fraction(fps))

    def write(self, frame: np.ndarray) -> None:
        if self.kind == "mp4":
            self.mp4.write(frame)
        elif self.kind == "gif":
            self.gif.append(Image.fromarray(frame).quantize(colors=256, dither=Image.Dither.NONE))
        else:
            from ganvas.utils.images import save_image

            save_image(Image.fromarray(frame), self.path / f"frame{self.count:05d}.png")
        self.count += 1

    def close(self) -> None:
        if self.kind == "mp4":
            self.mp4.close()
            os.replace(self.temporary, self.path)
        elif self.kind == "gif":
            from ganvas.utils.files import atomic_write

            with atomic_write(self.path) as handle:
                self.gif[0].save(handle, format="GIF", save_all=True,
                                 append_images=self.gif[1:], duration=round(1000 / self.fps),
                                 loop=0, disposal=1)

    def abandon(self) -> None:
        if self.kind == "mp4":
            try:
                self.mp4.container.close()
            except Exception:  # noqa: BLE001 -- cleaning up after another error
                pass
            Path(self.temporary).unlink(missing_ok=True)


def write_walk(source: str | os.PathLike, output: str | os.PathLike, *,
               seeds: list[int] | None = None, frames: int | None = None,
               loop: bool = False, random: bool = False, seconds: float = 10.0,
               fps: int = 30, seed: int = 0, truncation: float = 1.0,
               scale: int | None = None, device: str = "auto",
               progress: bool = True, label: str | int | None = None) -> WalkResult:
    """Draw a latent walk of ``source`` (a run, checkpoint or generator folder) into
    ``output`` (``.mp4``, ``.gif`` or a folder of PNG frames); a conditional model walks
    within class ``label`` (default: its first)."""
    from ganvas.utils.progress import progress_bar

    if not 1 <= fps <= 240:
        raise GanvasError(f"--fps {fps}: give 1 to 240 frames per second")
    if random == (seeds is not None):
        raise GanvasError("give --seeds (at least two) for a walk through chosen pictures, or "
                          "--random for a random walk")
    if random:
        if not 0 < seconds <= 3600:
            raise GanvasError(f"--seconds {seconds}: give a length up to 3600 seconds")
        frames = frames or max(2, round(seconds * fps))
    elif len(seeds) < 2:
        raise GanvasError("--seeds: a walk needs at least two seeds (e.g. 3,8,21)")
    frames = 60 if frames is None else frames
    if not 2 <= frames <= MAX_FRAMES:
        raise GanvasError(f"--frames {frames}: give 2 to {MAX_FRAMES:,} frames")
    if Path(output).suffix.lower() == ".gif" and (frames > MAX_GIF_FRAMES
                                                  or fps > MAX_GIF_FPS):
        raise GanvasError(f"-o {output}: a GIF holds at most {MAX_GIF_FRAMES:,} frames at up to "
                          f"{MAX_GIF_FPS} frames/s ({frames} at {fps} asked); write a .mp4 or a "
                          "folder of frames instead")
    model = load(source, device=device, truncation=truncation)
    model.labels_for(1, label)  # an unknown class fails before anything is written
    latents = (random_keyframes(model.latent_dim, seconds, seed) if random else
               torch.cat([model.latents(1, s) for s in seeds]))
    if frames < len(latents):
        raise GanvasError(f"--frames {frames}: fewer frames than keyframes; give at least "
                          f"{len(latents)}")
    rows, columns = model.generator.shape  # (a non-square model's frames keep its shape)
    scale = scale or max(1, math.ceil(MIN_SIDE / min(rows, columns)))
    if not 1 <= scale <= 64:
        raise GanvasError(f"--scale {scale}: give 1 to 64")
    width = columns * scale + (columns * scale) % 2  # video wants even sides
    height = rows * scale + (rows * scale) % 2
    out = _Frames(Path(output), width, height, fps)
    try:
        bar = progress_bar(total=frames, enabled=progress, unit="frame", desc="walk")
        with bar:
            for image in walk_frames(model, latents, frames, loop, label):
                out.write(_enlarged(image, scale, width, height))
                bar.update(1)
        out.close()
    except BaseException:
        out.abandon()
        raise
    return WalkResult(Path(output), out.count, (width, height))


def _enlarged(image: torch.Tensor, scale: int, width: int, height: int) -> np.ndarray:
    """One frame as uint8 RGB ``[height, width, 3]``, enlarged by nearest neighbour (a
    transparent model's frames over a checkerboard: videos have no transparency)."""
    array = to_uint8(on_checkerboard(image))[0]
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    array = array.repeat(scale, axis=0).repeat(scale, axis=1)
    if array.shape[0] != height or array.shape[1] != width:  # an odd side: pad to even
        array = np.pad(array, ((0, height - array.shape[0]), (0, width - array.shape[1]),
                               (0, 0)), mode="edge")
    return np.ascontiguousarray(array)
