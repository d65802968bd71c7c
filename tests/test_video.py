"""Video stylisation: frames in = frames out at the same rate with the audio kept, a still
video stays still, stabilisation lowers flicker, Ctrl-C leaves a playable file that
--resume completes exactly, and one clear line for every file that is not a usable video."""

from fractions import Fraction

import numpy as np
import pytest
import torch

from ganvas.errors import GanvasError

av = pytest.importorskip("av")
pytest.importorskip("cv2")

from ganvas.video.flow import FlowEstimator, valid_mask, warp  # noqa: E402
from ganvas.video.io import count_frames, probe  # noqa: E402
from ganvas.video.stylise import parts_folder, stylise_video  # noqa: E402

FPS = Fraction(12)


def _photo(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:h + 40, :w + 40]
    base = np.stack([np.sin(x / 7) , np.cos(y / 9), np.sin((x + y) / 11)], -1) * 90 + 128
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


def make_video(path, frames, *, audio=True, fps=FPS):
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "yuv420p"
        video.options = {"crf": "10"}
        sound = out.add_stream("aac", rate=16000) if audio else None
        for i, frame in enumerate(frames):
            f = av.VideoFrame.from_ndarray(frame, format="rgb24")
            f.pts = i
            for packet in video.encode(f):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if sound is not None:
            seconds = len(frames) / float(fps)
            t = np.arange(int(16000 * seconds)) / 16000
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            chunk = 1024
            for start in range(0, samples.shape[1], chunk):
                a = av.AudioFrame.from_ndarray(samples[:, start:start + chunk], format="flt",
                                               layout="mono")
                a.sample_rate, a.pts = 16000, start
                for packet in sound.encode(a):
                    out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)
    return path


def panning(count=8, step=2):
    big = _photo()
    return [np.ascontiguousarray(big[10:58, 5 + step * i:69 + step * i]) for i in range(count)]


def painter(record=None, noise=0.0, start=0):
    """A deterministic 'style' (colour curve) plus, optionally, flicker: noise drawn anew
    for each frame (from frame ``start`` on)."""
    calls = [start]

    def paint(frame, warped, mask):
        out = 255 * (frame.astype(np.float32) / 255) ** 0.6
        if noise:
            rng = np.random.default_rng(calls[0])
            out = out + rng.normal(0, noise, frame.shape)
        calls[0] += 1
        result = np.clip(out, 0, 255).astype(np.uint8)
        if record is not None:
            record.append(result)
        return result

    return paint


QUIET = dict(progress=False, log=lambda m: None)


def test_frames_rate_and_audio_are_kept(tmp_path):
    source = make_video(tmp_path / "in.mp4", panning(10))
    result = stylise_video(source, tmp_path / "out.mp4", painter(), settings={}, **QUIET)
    assert result.frames == 10 and not result.interrupted
    info = probe(tmp_path / "out.mp4")
    assert info.fps == FPS and (info.width, info.height) == (64, 48) and info.has_audio
    assert count_frames(tmp_path / "out.mp4") == 10
    with av.open(str(tmp_path / "out.mp4")) as c:
        duration = float(c.duration) / av.time_base
    assert 10 / 12 - 0.15 < duration < 10 / 12 + 0.15
    assert not parts_folder(tmp_path / "out.mp4").exists()


def test_a_still_video_stays_still(tmp_path):
    still = [_photo()[:48, :64].copy()] * 6
    source = make_video(tmp_path / "still.mp4", still, audio=False)
    for weight in (0.0, 1.0):
        out = tmp_path / f"out{weight}.mp4"
        result = stylise_video(source, out, painter(), settings={}, temporal_weight=weight,
                               **QUIET)
        assert result.warping_error < 1e-5, result.warping_error


def test_flow_follows_a_pan_and_stabilisation_lowers_flicker(tmp_path):
    frames = panning(8, step=2)
    flow = FlowEstimator()
    backward = flow(frames[1], frames[0])
    mask = valid_mask(backward, flow(frames[0], frames[1]))
    inner = (slice(8, -8), slice(8, -8))
    # the window moves right, so what is at x now was at x + 2 before
    assert np.allclose(np.median(backward[inner][..., 0]), 2, atol=0.3)
    assert mask[inner].mean() > 0.9
    moved = warp(frames[0], backward).astype(float)
    assert np.abs(moved[inner] - frames[1][inner]).mean() < 6
    source = make_video(tmp_path / "pan.mp4", frames, audio=False)
    errors = {}
    for weight in (0.0, 1.0, 4.0):
        errors[weight] = stylise_video(source, tmp_path / f"o{weight}.mp4", painter(noise=12),
                                       settings={}, temporal_weight=weight,
                                       **QUIET).warping_error
    assert errors[4.0] < errors[1.0] < 0.6 * errors[0.0], errors


def test_interrupted_then_resumed_paints_the_same_frames(tmp_path):
    source = make_video(tmp_path / "in.mp4", panning(9))
    straight = []
    stylise_video(source, tmp_path / "a.mp4", painter(straight, noise=5), settings={},
                  **QUIET)
    split = []
    out = tmp_path / "b.mp4"
    first = stylise_video(source, out, painter(split, noise=5), settings={}, stop_after=4,
                          segment_seconds=0, **QUIET)
    assert first.interrupted and first.frames == 4
    assert count_frames(out) == 4 and probe(out).has_audio  # playable already
    with pytest.raises(GanvasError, match="continue it with --resume"):
        stylise_video(source, out, painter(), settings={}, **QUIET)
    with pytest.raises(GanvasError, match="other settings"):
        stylise_video(source, out, painter(), settings={"alpha": 0.5}, resume=True, **QUIET)
    (parts_folder(out) / "part-0000004.mp4").write_bytes(b"half-written by a killed run")
    done = stylise_video(source, out, painter(split, noise=5, start=4), settings={},
                         resume=True, **QUIET)
    assert done.frames == 9 and not done.interrupted and count_frames(out) == 9
    assert len(split) == len(straight) == 9
    for a, b in zip(straight, split):
        assert np.array_equal(a, b)
    assert not parts_folder(out).exists()
    with pytest.raises(GanvasError, match="nothing to resume"):
        stylise_video(source, out, painter(), settings={}, resume=True, **QUIET)


def test_bad_videos_and_options_get_one_line(tmp_path, capsys):
    from ganvas.cli.main import main

    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    sound = tmp_path / "sound.m4a"
    with av.open(str(sound), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000)
        a = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.float32), format="flt",
                                       layout="mono")
        a.sample_rate, a.pts = 16000, 0
        for packet in [*stream.encode(a), *stream.encode()]:
            out.mux(packet)
    good = make_video(tmp_path / "in.mp4", panning(3), audio=False)
    style = tmp_path / "style.png"
    from PIL import Image

    Image.fromarray(_photo()).save(style)
    cases = [
        (["stylize", "--video", str(text), "--style", str(style), "-o", str(tmp_path / "o.mp4")],
         "not a video file"),
        (["stylize", "--video", str(empty), "--style", str(style)], "the file is empty"),
        (["stylize", "--video", str(style), "--style", str(style), "-o",
          str(tmp_path / "o.mp4")], "a still picture, not a video"),
        (["stylize", "--video", str(sound), "--style", str(style), "-o",
          str(tmp_path / "o.mp4")], "no video stream (audio only)"),
        (["stylize", "--video", str(tmp_path / "none.mp4"), "--style", str(style)],
         "no such file"),
        (["stylize", "--video", str(good), "--style", str(style), "-o", str(tmp_path / "o.gif")],
         "write a video as"),
        (["stylize", "--video", str(good), "--style", str(style), "-o", str(tmp_path / "o.mp4"),
          "--resume"], "nothing to resume"),
        (["stylize", "--video", str(good), "--style", str(style), "--temporal-weight", "-1"],
         "--temporal-weight must be"),
        (["stylize", str(style), "--video", str(good), "--style", str(style)], "not both"),
        (["stylize", str(style), "--style", str(style), "--resume"], "--resume is for --video"),
        (["stylize", "--video", str(good)], "give --style PICTURE"),
    ]
    for args, words in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err

    def refuses(frame, warped, mask):
        raise GanvasError("this painter cannot paint it")

    with pytest.raises(GanvasError, match="cannot paint"):
        stylise_video(good, tmp_path / "o.mp4", refuses, settings={}, **QUIET)
    assert not parts_folder(tmp_path / "o.mp4").exists()  # a failed start leaves nothing


def test_stylize_video_with_a_styliser_and_by_optimisation(tmp_path, monkeypatch, capsys):
    from ganvas.cli.main import main
    from ganvas.style import backbones
    from ganvas.style.backbones import tiny_backbone
    from ganvas.stylisers.folder import write_styliser
    from ganvas.stylisers.network import Styliser

    source = make_video(tmp_path / "in.mp4", panning(4))
    torch.manual_seed(0)
    write_styliser(tmp_path / "styler", Styliser(16), {"kind": "per-style", "width": 16})
    out = tmp_path / "net.mp4"
    assert main(["stylize", "--video", str(source), "--model", str(tmp_path / "styler"),
                 "-o", str(out), "--no-progress"]) == 0
    assert count_frames(out) == 4 and probe(out).has_audio
    assert "warping error" in capsys.readouterr().err

    monkeypatch.setattr(backbones, "_SPECS", {**backbones._SPECS, "tiny": backbones._TINY})
    monkeypatch.setattr("ganvas.video.painters.load_backbone",
                        lambda *a, **k: tiny_backbone())
    from PIL import Image

    Image.fromarray(_photo()).save(tmp_path / "style.png")
    out = tmp_path / "opt.mp4"
    assert main(["stylize", "--video", str(source), "--style", str(tmp_path / "style.png"),
                 "--backbone", "tiny", "--iterations", "5", "--size", "32", "-o", str(out),
                 "--no-progress"]) == 0
    info = probe(out)
    assert (info.width, info.height) == (32, 24) and count_frames(out) == 4
