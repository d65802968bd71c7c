"""The command line: help, a real train/generate/resume cycle, and one-line errors."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

import ganvas
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
    assert "--lr-d X" in out and "(default: 0.0002;" in out
    flat = " ".join(out.split())  # auto settings name the families that choose their own
    assert "(auto: from the data: the lesson's DCGAN for digits" in flat  # --model
    assert ("auto turns ada on below 10,000 pictures (except for the lesson's datasets) "
            "(default: none; fastgan, projected choose their own, see --dry-run)") in flat
    assert "(default: 0.0; progressive, stylegan2 choose their own, see --dry-run)" in flat


def test_models_lists_architectures(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and "dcgan:" in out and "dense:" in out and "base_channels" in out
    # what each family can draw: dcgan wide pictures, fastgan only squares
    dcgan = out[out.index("\ndcgan:"):out.index("\ndense:")]
    fastgan = out[out.index("\nfastgan:"):out.index("\nmsg:")]
    assert "non-square pictures: yes" in dcgan
    assert "non-square pictures: no (square only)" in fastgan


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
    (["train", "--data", "pictures", "--model", "dcgan", "--model-option", "widht=3"],
     ["widht", "dcgan"]),
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


# ---- regressions from the hostile-input audit ------------------------------------------------

@pytest.mark.parametrize("argv, needles", [
    (["train", "--data", "digits", "--batch-size", "99999999999"], ["--batch-size", "too large"]),
    (["train", "--data", "digits", "--seed", "-1"], ["--seed"]),
    (["train", "--data", "digits", "--latent-dim", "100000000"], ["--latent-dim"]),
    (["train", "--data", "digits", "--num-samples", "100000000"], ["--num-samples"]),
    (["train", "--data", "digits", "--workers", "100000"], ["--workers"]),
])
def test_absurd_sizes_are_refused_before_any_work(capsys, tmp_path, argv, needles):
    code, _, err = run_cli(capsys, *argv, "--no-progress")
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_failed_run_leaves_no_empty_folder(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "train", "--data", "empty", "--no-progress")
    assert code == 2
    assert not any((tmp_path / "runs").iterdir())


def test_config_file_guards(capsys, tmp_path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    code, _, err = run_cli(capsys, "train", "--config", fifo)
    assert_one_line_error(code, err, "not a regular file")
    twice = tmp_path / "twice.yaml"
    twice.write_text("data: digits\nsteps: 3\nsteps: 5\n")
    code, _, err = run_cli(capsys, "train", "--config", twice)
    assert_one_line_error(code, err, "'steps' is given twice")
    bomb = tmp_path / "bomb.yaml"
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"] + [
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    bomb.write_text("\n".join(levels).replace("a8: &a8", "steps: &a8") + "\n")
    code, _, err = run_cli(capsys, "train", "--config", bomb)
    assert code == 2 and len(err) < 400
    merged = tmp_path / "merged.yaml"
    merged.write_text("data: digits\nepochs: 1\nmodel_options: {base_channels: 8, slope: 0.1}\n")
    code, out, err = run_cli(capsys, "train", "--config", merged, "--steps", "20",
                             "--model-option", "max_channels=64", "--dry-run")
    assert code == 0, err
    assert "steps: 20" in out and "epochs: null" in out
    assert "base_channels: 8" in out and "max_channels: 64" in out and "slope: 0.1" in out
    numbers = tmp_path / "numbers.yaml"
    numbers.write_text("data: digits\nlr_d: 1e-4\n")
    code, out, err = run_cli(capsys, "train", "--config", numbers, "--dry-run")
    assert code == 0 and "lr_d: 0.0001" in out


def test_resuming_a_loose_checkpoint_needs_a_new_folder(capsys, pictures, tmp_path):
    run_cli(capsys, "train", "--data", pictures, "--steps", "2", "--out", tmp_path / "run", *TINY)
    loose = tmp_path / "elsewhere" / "my.pt"
    loose.parent.mkdir()
    loose.write_bytes((tmp_path / "run" / "checkpoints" / "step-0000002.pt").read_bytes())
    (tmp_path / "config.yaml").write_text("precious")
    code, _, err = run_cli(capsys, "train", "--resume", loose, "--steps", "3")
    assert_one_line_error(code, err, "--out")
    assert (tmp_path / "config.yaml").read_text() == "precious"
    code, _, err = run_cli(capsys, "train", "--resume", loose, "--steps", "3", "--out",
                           tmp_path / "continued", "--no-progress")
    assert code == 0, err
    assert (tmp_path / "continued" / "checkpoints" / "step-0000003.pt").is_file()


def test_outputs_follow_the_umask_so_they_can_be_shared(capsys, pictures, tmp_path):
    old = os.umask(0o022)
    try:
        run_cli(capsys, "train", "--data", pictures, "--steps", "2", "--out", tmp_path / "run",
                *TINY)
    finally:
        os.umask(old)
    for name in ("config.yaml", "checkpoints/step-0000002.pt", "generator",
                 "generator/model.safetensors", "generator/config.json", "samples/final.png"):
        mode = (tmp_path / "run" / name).stat().st_mode & 0o777
        assert mode in (0o644, 0o755), (name, oct(mode))


def test_generate_guards(capsys, pictures, tmp_path):
    run_cli(capsys, "train", "--data", pictures, "--steps", "2", "--out", tmp_path / "run", *TINY)
    for argv, needle in ((["--num", "100000000"], "--num"), (["--seed", "-1"], "--seed"),
                         (["--num", "5000", "--grid"], "--grid")):
        code, _, err = run_cli(capsys, "generate", tmp_path / "run", *argv)
        assert_one_line_error(code, err, needle)
    gen = tmp_path / "run" / "generator"
    meta = json.loads((gen / "config.json").read_text())
    (gen / "config.json").write_text(json.dumps({**meta, "step": "abc", "train_config": "x"}))
    code, out, err = run_cli(capsys, "generate", gen, "--num", "2", "--out", tmp_path / "g")
    assert code == 0, err
    (gen / "model.safetensors").unlink()
    os.mkfifo(gen / "model.safetensors")
    code, _, err = run_cli(capsys, "generate", gen, "--num", "2")
    assert_one_line_error(code, err, "not a regular file")


def test_generate_by_seeds_names_each_picture_by_its_seed(capsys, pictures, tmp_path):
    run_cli(capsys, "train", "--data", pictures, "--steps", "2", "--out", tmp_path / "run", *TINY)
    code, _, err = run_cli(capsys, "generate", tmp_path / "run", "--seeds", "1,5,9-11", "--grid",
                           "--out", tmp_path / "a")
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["grid-seeds.png", "seed0001.png", "seed0005.png", "seed0009.png",
                     "seed0010.png", "seed0011.png"]
    # a seed's picture is the first of --seed S --num 1, whatever seeds come with it
    run_cli(capsys, "generate", tmp_path / "run", "--seeds", "5", "--out", tmp_path / "b")
    run_cli(capsys, "generate", tmp_path / "run", "--seed", "5", "--num", "1", "--out",
            tmp_path / "c")
    pixels = [np.asarray(Image.open(path)) for path in (
        tmp_path / "a" / "seed0005.png", tmp_path / "b" / "seed0005.png",
        tmp_path / "c" / "seed5-00000.png")]
    assert all(np.array_equal(pixels[0], other) for other in pixels[1:])
    grid = Image.open(tmp_path / "a" / "grid-seeds.png")  # 3 x 2 tiles of 16 px, labels below
    assert grid.width == 3 * 18 + 2 and grid.height > 2 * 18 + 2
    for argv, needle in ((["--seeds", "1,x"], "--seeds"), (["--seeds", "-3"], "--seeds"),
                         (["--seeds", "2", "--num", "4"], "leave out --num"),
                         (["--seeds", "2", "--style-mix", "1", "2"], "give one")):
        code, _, err = run_cli(capsys, "generate", tmp_path / "run", *argv)
        assert_one_line_error(code, err, needle)


@pytest.mark.parametrize("model", ["dcgan", "stylegan2", "progressive"])
def test_a_grid_tile_is_drawn_again_exactly_as_in_the_snapshot(capsys, pictures, tmp_path,
                                                               model):
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data", pictures, "--steps", "4", "--out", run,
                           *TINY, "--model", model, "--num-samples", "6", "--sample-every", "2",
                           "--checkpoint-every", "2", "--keep-checkpoints", "10")
    assert code == 0, err
    for argv, grid, name in ((["--step", "2"], "step-0000002.png", "tile-step2-r2c3.png"),
                             ([], "final.png", "tile-step4-r2c3.png")):
        code, _, err = run_cli(capsys, "generate", run, "--grid-tile", "2,3", *argv,
                               "--out", tmp_path / "tiles")
        assert code == 0, err
        tile = np.asarray(Image.open(tmp_path / "tiles" / name))
        snapshot = np.asarray(Image.open(run / "samples" / grid))  # 3 columns, 2 px apart
        assert tile.shape == (16, 16, 3)
        assert np.array_equal(tile, snapshot[2 + 18:2 + 18 + 16, 2 + 2 * 18:2 + 2 * 18 + 16])
    for argv, needle in ((["--grid-tile", "3,1"], "6 tiles in 2 rows of 3"),
                         (["--grid-tile", "1"], "ROW,COL"),
                         (["--grid-tile", "1,1", "--step", "3"], "no checkpoint of that step"),
                         (["--step", "2"], "--step goes with --grid-tile"),
                         (["--grid-tile", "1,1", "--seeds", "4"], "leave out --seeds")):
        code, _, err = run_cli(capsys, "generate", run, *argv)
        assert_one_line_error(code, err, needle)


def test_python_api_type_errors_are_ganvas_errors(pictures, tmp_path):
    import ganvas

    for bad in (None, 5, b"x"):
        with pytest.raises(ganvas.GanvasError):
            ganvas.load(bad)
    with pytest.raises(ganvas.GanvasError):
        ganvas.train([1, 2])
    with pytest.raises(ganvas.GanvasError):
        ganvas.train(data="digits", callbacks=[5])
    run = ganvas.train(data=str(pictures), steps=2, out=str(tmp_path / "run"), progress=False,
                       log=lambda m: None, model_options={"base_channels": 8}, resolution=16,
                       batch_size=4, latent_dim=8)
    model = ganvas.load(run.run_dir)
    for kwargs in ({"n": "3"}, {"n": 2.5}, {"n": 2, "seed": "x"}, {"n": 2, "seed": None}):
        with pytest.raises(ganvas.GanvasError):
            model.sample(**kwargs)


class Explode(ganvas.Callback):
    def on_step_end(self, trainer):
        if trainer.step == 3:
            raise RuntimeError("a bug in a callback")


def test_a_crash_mid_training_still_leaves_a_checkpoint(pictures, tmp_path):
    import ganvas

    with pytest.raises(RuntimeError, match="a bug"):
        ganvas.train(data=str(pictures), steps=50, out=str(tmp_path / "run"), progress=False,
                     log=lambda m: None, callbacks=[Explode()], resolution=16, batch_size=4,
                     latent_dim=8, model_options={"base_channels": 8})
    assert (tmp_path / "run" / "checkpoints" / "step-0000003.pt").is_file()
    resumed = ganvas.resume(tmp_path / "run", steps=5, progress=False, log=lambda m: None)
    assert resumed.step == 5


# ---- regressions from the second audit -------------------------------------------------------

@pytest.mark.parametrize("argv, needle", [
    (["--epochs", "1e308"], "--epochs"),
    (["--lr-g", "1e308"], "--lr-g"),
    (["--augment", "diffaugment", "--diffaugment-policy", ""], "--diffaugment-policy"),
    (["--ema-rampup", "1.5"], "--ema-rampup"),
    (["--ema-rampup", "nan"], "--ema-rampup"),
    (["--ema-rampup", "-0.1"], "--ema-rampup"),
    (["--model", "progressive", "--resolution", "32", "--model-option",
      "fade_kimg=1" + "0" * 400], "fade_kimg"),
])
def test_more_absurd_values(capsys, argv, needle):
    code, _, err = run_cli(capsys, "train", "--data", "digits", *argv, "--no-progress")
    assert_one_line_error(code, err, needle)


def test_doctor_survives_a_hostile_metrics_file(capsys, pictures, tmp_path):
    run_cli(capsys, "train", "--data", pictures, "--steps", "2", "--out", tmp_path / "run", *TINY)
    metrics = tmp_path / "run" / "metrics.jsonl"
    with open(metrics, "ab") as handle:
        handle.write(b"\xff\xfe garbage\n")
        handle.write(b'{"step": 1' + b"0" * 5000 + b"}\n")
        handle.write(b"[" * 100000 + b"]" * 100000 + b"\n")
        handle.write(b'{"step": "5"}\n{"step": 5, "Loss/D": "x", "epoch": null}\n')
        handle.write(b'{"event": "x", "message": "no step"}\n{"step": true}\n')
        handle.write(b'{"step": 3, "Loss/D": 1e308, "LR/D": -1, "message": "a\\u001b[31m"}\n')
    code, out, err = run_cli(capsys, "doctor", tmp_path / "run")
    assert code == 0, err
    assert "Diagnosis:" in out and "Traceback" not in err
    code, _, err = run_cli(capsys, "train", "--resume", tmp_path / "run", "--steps", "3",
                           "--no-progress")
    assert code == 0, err
    (tmp_path / "run" / "config.yaml").unlink()
    os.mkfifo(tmp_path / "run" / "config.yaml")
    code, out, err = run_cli(capsys, "doctor", tmp_path / "run")  # must not hang
    assert code == 0, err


def _tamper(tmp_path, pictures, capsys, change):
    run_cli(capsys, "train", "--data", pictures, "--steps", "2", "--out", tmp_path / "run", *TINY)
    path = tmp_path / "run" / "checkpoints" / "step-0000002.pt"
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)
    return run_cli(capsys, "train", "--resume", tmp_path / "run", "--steps", "4",
                   "--no-progress")


@pytest.mark.parametrize("change, needle", [
    (lambda s: s["balance"].update(skip_below="x"), "damaged"),
    (lambda s: s["balance"].update(accuracy_band=[0.9]), "damaged"),
    (lambda s: s["data"].update(seed=-1), "damaged"),
    (lambda s: s["opt_d"]["param_groups"][0].update(betas=(5.0,)), "optimiser settings"),
    (lambda s: s["opt_g"]["param_groups"][0].update(lr="x"), "optimiser settings"),
    (lambda s: next(iter(s["generator_ema"].values())).fill_(float("nan")), "generator ema"),
])
def test_tampered_checkpoint_sections_are_refused(capsys, pictures, tmp_path, change, needle):
    code, _, err = _tamper(tmp_path, pictures, capsys, change)
    # progress lines (the data cache) may come first; the error itself is one line
    errors = [line for line in err.splitlines() if line.startswith("ganvas: error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert needle in errors[0]


def test_a_damaged_monitor_history_is_forgotten_not_fatal(capsys, pictures, tmp_path):
    code, _, err = _tamper(tmp_path, pictures, capsys,
                           lambda s: s["callbacks"]["HealthMonitor"].update(history=[1, 2, 3]))
    assert code == 0, err


def test_a_zip_bomb_checkpoint_is_refused(capsys, tmp_path):
    import zipfile

    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/version", "3\n")
        with archive.open("archive/data.pkl", "w", force_zip64=True) as member:
            for _ in range(8):
                member.write(b"\0" * (8 << 20))
    code, _, err = run_cli(capsys, "generate", bomb, "--num", "1")
    assert_one_line_error(code, err, "refusing to load")
