"""The command line: help, a real train/generate/resume cycle, and one-line errors."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from ganvas.cli.main import main

TINY = ["--model-option", "base_channels=8", "--resolution", "16", "--batch-size", "8",
        "--latent-dim", "8", "--num-samples", "4", "--log-every", "2", "--workers", "1",
        "--no-progress"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANVAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def pictures(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(
            folder / f"{i}.jpg")
    return folder


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_help_lists_commands_and_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    for word in ("train", "generate", "models", "examples:"):
        assert word in out


def test_train_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--lr-d X" in out and "(default: 0.0002)" in out and "(default: dcgan)" in out


def test_models_lists_architectures(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and "dcgan:" in out and "dense:" in out and "base_channels" in out


def test_train_generate_resume_cycle(capsys, pictures, tmp_path):
    code, out, err = run_cli(capsys, "train", "--data", pictures, "--steps", "4",
                             "--out", tmp_path / "run", *TINY)
    assert code == 0, err
    assert "samples:" in out and (tmp_path / "run" / "samples" / "final.png").is_file()
    assert "Traceback" not in err

    code, out, err = run_cli(capsys, "generate", tmp_path / "run", "--num", "5", "--seed", "2",
                             "--grid")
    assert code == 0, err
    written = sorted(p.name for p in (tmp_path / "run" / "generated").iterdir())
    assert written == ["grid-seed2.png"] + [f"seed2-0000{i}.png" for i in range(5)]
    first = np.asarray(Image.open(tmp_path / "run" / "generated" / "seed2-00000.png"))
    code, *_ = run_cli(capsys, "generate", tmp_path / "run" / "generator", "--num", "5",
                       "--seed", "2", "--out", tmp_path / "again")
    assert code == 0
    assert np.array_equal(first, np.asarray(Image.open(tmp_path / "again" / "seed2-00000.png")))

    code, out, err = run_cli(capsys, "train", "--resume", tmp_path / "run", "--steps", "6",
                             "--no-progress")
    assert code == 0, err
    assert (tmp_path / "run" / "checkpoints" / "step-0000006.pt").is_file()


def test_config_file_with_flag_override(capsys, pictures, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {pictures}\nsteps: 3\nlr-d: 0.001\nbatch_size: 4\n")
    code, out, err = run_cli(capsys, "train", "--config", config, "--batch-size", "8",
                             "--dry-run")
    assert code == 0, err
    assert "lr_d: 0.001" in out and "batch_size: 8" in out and "steps: 3" in out


@pytest.mark.parametrize("argv, needles", [
    (["train", "--data", "no/such/folder"], ["no/such/folder"]),
    (["train", "--data", "pictures", "--resolution", "48"], ["--resolution 48", "power of two"]),
    (["train", "--data", "pictures", "--model", "stylegan9"], ["--model", "stylegan9"]),
    (["train", "--data", "pictures", "--steps", "-5"], ["--steps"]),
    (["train", "--data", "pictures", "--lr-d", "0"], ["--lr-d"]),
    (["train", "--data", "pictures", "--channels", "2"], ["--channels"]),
    (["train", "--data", "pictures", "--model-option", "widht=3"], ["widht", "dcgan"]),
    (["train", "--data", "pictures", "--device", "cuda:7"], ["--device"]),
    (["train", "--data", "pictures", "--out", "pictures/0.jpg/run"], ["--out"]),
    (["train", "--data", "pictures", "--steps", "2", "--epochs", "1"], ["--steps", "--epochs"]),
    (["train"], ["--data is required"]),
    (["train", "--data", "empty"], ["empty", "no images"]),
    (["train", "--config", "missing.yaml"], ["missing.yaml"]),
    (["train", "--resume", "nowhere"], ["nowhere"]),
    (["generate", "nowhere"], ["nowhere"]),
])
def test_bad_input_is_one_clear_line(capsys, pictures, tmp_path, argv, needles):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, *argv, "--no-progress" if argv[0] == "train" else "--num=1")
    assert_one_line_error(code, err, *needles)


def test_unknown_key_in_config_file(capsys, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("data: digits\nlearning_rate: 0.1\n")
    code, _, err = run_cli(capsys, "train", "--config", config)
    assert_one_line_error(code, err, "learning_rate")
    config.write_text("data: [unclosed\n")
    code, _, err = run_cli(capsys, "train", "--config", config)
    assert_one_line_error(code, err, "not valid YAML")


class Payload:
    """An object whose unpickling would run code: a checkpoint must never do that."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize("content", ["garbage", "truncated", "foreign", "pickle", "bad-shapes"])
def test_hostile_checkpoints_are_refused(capsys, pictures, tmp_path, content):
    code, *_ = run_cli(capsys, "train", "--data", pictures, "--steps", "2", "--out",
                       tmp_path / "run", *TINY)
    assert code == 0
    good = tmp_path / "run" / "checkpoints" / "step-0000002.pt"
    bad = tmp_path / "bad.pt"
    if content == "garbage":
        bad.write_bytes(os.urandom(3000))
    elif content == "truncated":
        bad.write_bytes(good.read_bytes()[:5000])
    elif content == "foreign":
        torch.save({"state_dict": {"w": torch.zeros(3)}}, bad)
    elif content == "pickle":
        torch.save({"format": "ganvas-checkpoint", "evil": Payload()}, bad)
    else:
        state = torch.load(good, weights_only=True)
        for key in ("generator", "generator_ema"):
            state[key] = {k: torch.zeros(1) for k in state[key]}
        torch.save(state, bad)
    for argv in (["generate", bad, "--num", "1"], ["train", "--resume", bad, "--steps", "9"]):
        code, _, err = run_cli(capsys, *argv)
        assert_one_line_error(code, err, str(bad))
    assert not (tmp_path / "pwned").exists()


def test_sigterm_writes_a_checkpoint_and_resume_continues(tmp_path, pictures):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "ganvas", "train", "--data", str(pictures), "--steps",
           "100000", "--out", str(tmp_path / "run"), *TINY]
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.exists() and metrics.stat().st_size) and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "resume" in out
    checkpoints = sorted((tmp_path / "run" / "checkpoints").glob("step-*.pt"))
    assert checkpoints[0].name == "step-0000000.pt" and len(checkpoints) == 2
    step = int(checkpoints[-1].stem.split("-")[1])
    assert 0 < step < 100000
    resumed = subprocess.run([sys.executable, "-m", "ganvas", "train", "--resume",
                              str(tmp_path / "run"), "--steps", str(step + 2), "--no-progress"],
                             env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "run" / "checkpoints" / f"step-{step + 2:07d}.pt").is_file()
