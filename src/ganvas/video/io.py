"""Reading and writing video with PyAV (FFmpeg), frame by frame, in bounded memory.

A stylised video is written in *segments*: short files closed every few seconds of work,
so that a Ctrl-C or a killed process loses at most the segment being written. The
finished (or, after an interruption, the partial) video is assembled from them by copying
their packets, without encoding again, together with the source's audio up to the same
time.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ganvas.errors import GanvasError
from ganvas.utils.files import stat_regular_file

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov")
CRF = "18"  # x264's quality: visually lossless for most footage


def _av():
    try:
        import av
    except ImportError:
        raise GanvasError("video needs PyAV: pip install av") from None
    return av


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int
    height: int
    fps: Fraction
    frames: int | None  # as the container says; None when it does not
    has_audio: bool


def probe(path: str | os.PathLike, option: str = "--video") -> VideoInfo:
    """What a video file holds, or one clear line saying why it is not a usable video."""
    av = _av()
    path = Path(path)
    where = f"{option} {path}"
    st = stat_regular_file(path, where, missing="no such file; check the path",
                           wanted="a video file")
    if st.st_size == 0:
        raise GanvasError(f"{where}: the file is empty")
    try:
        with av.open(str(path)) as container:
            if container.format.name == "image2" or container.format.name.endswith("_pipe"):
                raise GanvasError(f"{where}: a still picture, not a video; repaint it "
                                  "without --video")
            if not container.streams.video:
                kind = "audio only" if container.streams.audio else "no pictures"
                raise GanvasError(f"{where}: has no video stream ({kind}); give a video file")
            stream = container.streams.video[0]
            fps = stream.average_rate or stream.guessed_rate
            if not fps or fps <= 0:
                fps = Fraction(25)
            width, height = stream.codec_context.width, stream.codec_context.height
            frames = stream.frames or None
            has_audio = bool(container.streams.audio)
            first = next(container.decode(stream), None)
    except GanvasError:
        raise
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise GanvasError(f"{where}: not a video file FFmpeg can read "
                          f"({_first_line(exc)})") from None
    if first is None:
        raise GanvasError(f"{where}: the video has no frames")
    if not width or not height:
        width, height = first.width, first.height
    return VideoInfo(path, width, height, Fraction(fps), frames, has_audio)


def read_frames(path: Path, start: int = 0) -> Iterator[np.ndarray]:
    """The frames as RGB ``uint8 [H, W, 3]`` arrays, from frame ``start`` on."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                if index >= start:
                    yield frame.to_ndarray(format="rgb24")
    except av.FFmpegError as exc:  # a damaged tail: keep the frames that decoded
        raise GanvasError(f"--video {path}: unreadable after some frames "
                          f"({_first_line(exc)})") from None


class FrameWriter:
    """One segment: H.264 in an MP4 (MPEG-4 Part 2 where FFmpeg lacks x264), constant rate."""

    def __init__(self, path: Path, width: int, height: int, fps: Fraction):
        av = _av()
        self.path = path
        self.container = av.open(str(path), mode="w", format="mp4")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self.stream = self.container.add_stream(codec, rate=fps)
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            # no B-frames: decoding order is display order, so segments join end to end
            self.stream.options = {"crf": CRF, "preset": "medium", "bf": "0"}
        else:
            self.stream.bit_rate = 8_000_000
        self.frames = 0
        self._av = av

    def write(self, frame: np.ndarray) -> None:
        video_frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(frame),
                                                      format="rgb24")
        video_frame.pts = self.frames
        for packet in self.stream.encode(video_frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def count_frames(path: Path) -> int:
    """Frames in a segment, by decoding it (the container's count can be missing)."""
    av = _av()
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


def assemble(segments: Sequence[Path], output: Path, audio_from: Path | None) -> None:
    """Join ``segments`` into ``output`` (written beside it, then moved into place), with
    the audio of ``audio_from`` up to the end of the video, packets interleaved in time."""
    av = _av()
    temporary = output.with_name(f".{output.name}.tmp{output.suffix}")
    try:
        with ExitStack() as stack:
            out = stack.enter_context(av.open(str(temporary), mode="w"))
            with av.open(str(segments[0])) as first:  # every segment has the same stream
                video = out.add_stream_from_template(first.streams.video[0])
            end_time = sum(_duration(segment) for segment in segments)
            streams = [_video_packets(segments, video)]
            audio, copies = None, True
            if audio_from is not None:
                audio_in = stack.enter_context(av.open(str(audio_from)))
                if audio_in.streams.audio:
                    source = audio_in.streams.audio[0]
                    copies = source.codec_context.name in COPYABLE_AUDIO
                    audio = (out.add_stream_from_template(source) if copies else
                             out.add_stream("aac", rate=source.codec_context.sample_rate
                                            or 44100))
                    streams.append(_audio_packets(source, audio, copies, end_time))
            for _, packet in heapq.merge(*streams, key=lambda timed: timed[0]):
                out.mux(packet)
            if audio is not None and not copies:
                for packet in audio.encode():
                    out.mux(packet)
        os.replace(temporary, output)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


COPYABLE_AUDIO = ("aac", "mp3", "ac3", "opus", "alac", "flac")


def _duration(segment: Path) -> float:
    av = _av()
    last = 0
    with av.open(str(segment)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.pts is not None:
                last = max(last, packet.pts + (packet.duration or 0))
        return float(last * stream.time_base)


def _video_packets(segments: Sequence[Path], target):
    """Every segment's packets, timestamps shifted to follow the segment before; one
    segment open at a time (a long video has thousands)."""
    av = _av()
    offset = 0
    for segment in segments:
        with av.open(str(segment)) as part:
            source = part.streams.video[0]
            last = offset
            for packet in part.demux(source):
                if packet.dts is None:
                    continue
                packet.pts += offset
                packet.dts += offset
                last = max(last, packet.pts + (packet.duration or 0))
                time_ = float(packet.dts * source.time_base)
                packet.stream = target
                yield time_, packet
            offset = last


def _audio_packets(source, target, copies: bool, end_time: float):
    """The audio up to ``end_time``: its packets as they are when the codec is one the
    container takes, else encoded again as AAC."""
    container = source.container
    if copies:
        for packet in container.demux(source):
            if packet.dts is None:
                continue
            if packet.pts is not None and float(packet.pts * source.time_base) >= end_time:
                return
            time_ = float(packet.dts * source.time_base)
            packet.stream = target
            yield time_, packet
        return
    for frame in container.decode(source):
        if frame.time is not None and frame.time >= end_time:
            return
        time_ = frame.time or 0.0
        frame.pts = None
        for packet in target.encode(frame):
            yield time_, packet


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:120] if text else type(exc).__name__
