"""No work is lost to a SIGKILL: a run killed mid-fade (progressive), between its lazy
phases (stylegan2), between reconstruction draws (fastgan) or mid-run under a projected
discriminator, with no chance to save
anything, and resumed from its last checkpoint ends with exactly the weights of an
uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from ganvas.runs.status import read_status

COMMON = ["train", "--data", "PICTURES", "--resolution", "16", "--steps", "18",
          "--batch-size", "8", "--latent-dim", "8", "--precision", "fp32",
          "--checkpoint-every", "3", "--log-every", "6", "--sample-every", "100",
          "--augment", "ada", "--ada-kimg", "0.2", "--mirror", "--no-progress",
          "--keep-checkpoints", "100"]  # every step's checkpoint, to compare before the kill
SMALL = ["--model-option", "base_channels=8", "--model-option", "max_channels=16"]
MODELS = {
    "progressive": ["--model", "progressive", *SMALL, "--model-option", "fade_kimg=0.04",
                    "--model-option", "stable_kimg=0.04"],
    # path length every 2nd step, R1 every 4th: the kill falls between lazy phases
    "stylegan2": ["--model", "stylegan2", *SMALL, "--model-option", "w_dim=16",
                  "--model-option", "pl_weight=2", "--model-option", "pl_every=2",
                  "--r1-every", "4"],
    # its smallest size; the later --resolution wins
    "fastgan": ["--model", "fastgan", "--resolution", "32", "--model-option", "base_channels=2"],
    # the generator's noise stream and the frozen projections (a random 4-level network)
    "projected": ["--model", "projected", "--resolution", "32", "--model-option",
                  "base_channels=2", "--model-option", "features=tiny", "--model-option",
                  "projection_channels=4"],
}


def _ganvas(*args, env):
    return [sys.executable, "-m", "ganvas.cli.main", *args]


@pytest.fixture
def env(tmp_path):
    # One thread each: the uninterrupted run trains beside the killed one (their start-ups
    # overlap) without the two fighting over the cores; every run of a test has the same.
    return {**os.environ, "GANVAS_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}


# slow (10-15 s each on 2 cores): three fresh processes (the straight run beside the killed
# one, then its resumption), each paying Python's and torch's start-up; a kill can only be
# tested so.
@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.parametrize("model", sorted(MODELS))
def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(tmp_path, env, model):
    from PIL import Image

    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for i in range(24):
        Image.new("RGB", (20, 20), (10 * i, 255 - 10 * i, 128)).save(pictures / f"{i}.png")
    args = [str(pictures) if a == "PICTURES" else a for a in COMMON + MODELS[model]]
    # About one fresh process in twenty used to compute the very first steps a rounding apart
    # from the others (seen here with no kill at all: the checkpoints differed from step 3).
    # The cause found, MKL's first vector-math call split between threads, is settled before
    # any work now (tests/test_cpu_math.py); the guard below stays for any other. Resume can
    # only promise to continue *its own* run exactly, so the
    # killed run is compared with an uninterrupted one that matched it at the checkpoint it
    # resumed from: a killed run that had drifted is run once more, and an uninterrupted
    # run that drifted (both killed runs then differ from it) is replaced by a second one.
    first = _start_straight(args, tmp_path / "straight0", env)
    straights = []
    match = None
    try:
        for attempt in range(2):
            killed = tmp_path / f"killed{attempt}"
            resumed_from = _kill_and_resume(args, killed, env)
            if not straights:
                straights.append(_finish_straight(*first))
            match = next((s for s in straights if _same_weights(s, killed, resumed_from)),
                         None)
            if match is None and attempt == 1:
                straights.append(_run_straight(args, tmp_path / "straight1", env))
                match = (straights[-1] if _same_weights(straights[-1], killed, resumed_from)
                         else None)
            if match is not None:
                break
    finally:
        first[0].kill()  # no stray trainer when the killed run failed first
        first[0].communicate()
    if match is None:
        pytest.fail(f"no killed run matched an uninterrupted one before the kill "
                    f"(at step {resumed_from})")
    straight = match
    a = torch.load(straight / "checkpoints" / "step-0000018.pt", weights_only=True)
    b = torch.load(killed / "checkpoints" / "step-0000018.pt", weights_only=True)
    assert a["images_seen"] == b["images_seen"]
    for net in ("generator", "discriminator", "generator_ema"):
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), (net, key, resumed_from)


def _start_straight(args, out, env):
    process = subprocess.Popen(_ganvas(*args, "--out", str(out), env=env), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return process, out


def _finish_straight(process, out):
    try:
        _, stderr = process.communicate(timeout=300)
    finally:
        process.kill()  # no stray trainer when it outlived its time
        process.wait()
    assert process.returncode == 0, stderr[-2000:]
    return out


def _run_straight(args, out, env):
    return _finish_straight(*_start_straight(args, out, env))


def _kill_and_resume(args, killed, env) -> int:
    """Start a run, SIGKILL it once its step-9 checkpoint exists, resume it to the end;
    the step it resumed from."""
    process = subprocess.Popen(_ganvas(*args, "--out", str(killed), env=env), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = killed / "checkpoints" / "step-0000009.pt"  # progressive: 8 px fades in then
    deadline = time.monotonic() + 240
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert read_status(killed).state == "stopped"  # its status.json still says running
    newest = sorted((killed / "checkpoints").glob("step-*.pt"))[-1]
    done = subprocess.run(_ganvas("train", "--resume", str(killed), "--no-progress", env=env),
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_status(killed).state == "finished"
    return int(newest.stem.split("-")[1])


def _same_weights(straight, killed, step) -> bool:
    name = f"step-{step:07d}.pt"
    a, b = (torch.load(run / "checkpoints" / name, weights_only=True) for run in (straight, killed))
    return all(torch.equal(a[net][key], b[net][key]) for net in ("generator", "discriminator")
               for key in a[net])
