"""Training on several processes (torchrun's process group, gloo on this CPU): the result does
not depend on the number of processes, a run resumes on another number of them, and Ctrl-C
or a killed process leave a consistent run folder."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ganvas.data.loader import BatchStream
from ganvas.rng import batch_slice, per_sample
from ganvas.training.callbacks import Callback
from ganvas.training.launch import without_nproc

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or sys.platform != "linux",
                                reason="needs torch.distributed (gloo) on Linux")

LR = 2e-3
# DCGAN with BatchNorm over the global batch and the balance gate deciding from every process
TINY = ["--data", "digits", "--model", "dcgan", "--resolution", "16", "--batch-size", "8",
        "--model-option", "base_channels=8", "--loss", "bce", "--precision", "fp32",
        "--sync-bn", "--d-accuracy-band", "0.5", "0.7",
        "--lr-g", str(LR), "--lr-d", str(LR), "--augment", "diffaugment",
        "--log-every", "2", "--checkpoint-every", "3", "--sample-every", "1000",
        "--no-progress"]


def ganvas(*args, env, timeout=240, check=True):
    return together([args], env=env, timeout=timeout, check=check)[0]


def together(commands, *, env, timeout=240, check=True):
    """Several ``ganvas`` commands at once (their start-ups overlap); their results."""
    # each in a process group of its own: a failure stops its --nproc workers too
    started = [subprocess.Popen([sys.executable, "-m", "ganvas", *args], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
               for args in commands]
    done = []
    try:
        for process, args in zip(started, commands):
            out, err = process.communicate(timeout=timeout)
            result = subprocess.CompletedProcess(args, process.returncode, out, err)
            if check:
                assert result.returncode == 0, err[-3000:]
            done.append(result)
    finally:
        for process in started:  # none left training when one failed or outlived its time
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
    return done


def weights(path: Path) -> dict:
    state = torch.load(path, weights_only=True)
    return {f"{net}.{k}": v.float() for net in ("generator", "discriminator", "generator_ema")
            for k, v in state[net].items()}


def assert_same_run(a: Path, b: Path, tight: bool, flips: float = 1e-3,
                    moments: float = 1e-2) -> None:
    """Weights equal up to float rounding. Adam's very first update moves every weight by
    the learning rate times the sign of its gradient, so a gradient that is zero up to
    rounding (a bias the loss barely sees) can move by up to 2 x lr between two runs whose
    sums were added in another order: at most ``flips`` of the weights, never more than
    2 x lr. A missing reduction flips a large share of them; a wrongly scaled one (summed,
    not averaged) flips none, as Adam's step hardly depends on the gradient's scale, but
    moves Adam's first moment by 100 % and its second by 300 %: so the moments are compared
    too, each tensor's change relative to its size (floored at a thousandth of its
    optimiser's largest, so a tensor the loss barely sees does not count as changed)."""
    wa, wb = weights(a), weights(b)
    diff = torch.cat([(wa[k] - wb[k]).abs().flatten() for k in wa])
    loose = (diff > 1e-5).float().mean().item()
    if tight:
        assert diff.max() < 1e-5, diff.max()
    else:
        assert loose < flips, f"{loose:.2%} of the weights differ"
        assert diff.max() <= 2 * LR * 1.01, diff.max()
    sa, sb = (torch.load(p, weights_only=True) for p in (a, b))
    for opt in ("opt_g", "opt_d"):
        states_a, states_b = sa[opt]["state"], sb[opt]["state"]
        assert states_a.keys() == states_b.keys(), opt
        for moment in ("exp_avg", "exp_avg_sq"):
            floor = 1e-3 * max(s[moment].double().norm().item() for s in states_a.values())
            for index, state in states_a.items():
                x, y = state[moment].double(), states_b[index][moment].double()
                change = ((x - y).norm() / max(x.norm().item(), floor)).item()
                assert change < moments, f"{opt} {index} {moment} differs by {change:.1%}"
    assert sa["images_seen"] == sb["images_seen"] and sa["data"] == sb["data"]
    if "rng" in sa["augment"]:
        assert sa["augment"]["rng"].equal(sb["augment"]["rng"])


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return {**os.environ, "GANVAS_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}


# StyleGAN2: four phases, lazy R1 and path length (its running mean over processes), w_avg,
# ADA's p from the signal of every process.
STYLEGAN2 = [*TINY, "--model", "stylegan2", "--model-option", "max_channels=16",
             "--model-option", "w_dim=16", "--model-option", "pl_every=2", "--r1-every", "2",
             "--loss", "ns", "--augment", "ada", "--ada-kimg", "0.1", "--steps", "4",
             "--checkpoint-every", "4"]
# The projected discriminator: the frozen network outside the module tree, frozen
# projections never averaged, BatchNorm heads over the global batch, the generator's noise
# from the recipe's stream. One step: the frozen network's features and the heads' scores
# are sums of many small terms that two processes add in another order, and from there on
# Adam's sign-like first steps turn that rounding into whole-step differences (seen at step
# 4 with another seed): the step compares what the code promises, equal up to rounding.
# The accuracy band is opened wide: the gate would hold G back at the one step whenever D's
# first accuracy (over every head's logit) came out below a half, leaving no G step to compare.
PROJECTED = [*TINY, "--model", "projected", "--resolution", "32", "--model-option",
             "features=tiny", "--model-option", "projection_channels=4", "--model-option",
             "base_channels=2", "--steps", "1", "--checkpoint-every", "1",
             "--d-accuracy-band", "0", "1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, env):
    """The same 6 steps of DCGAN in one process and in two; beside them (their start-ups
    overlap), StyleGAN2's and the projected discriminator's runs in one process and two."""
    root = tmp_path_factory.mktemp("runs")
    commands = [("train", *TINY, "--steps", "6", "--out", str(root / "one")),
                ("train", "--nproc", "2", *TINY, "--steps", "6", "--out", str(root / "two"))]
    for name, common in (("stylegan2", STYLEGAN2), ("projected", PROJECTED)):
        commands += [("train", *common, "--out", str(root / f"{name}-one")),
                     ("train", "--nproc", "2", *common, "--out", str(root / f"{name}-two"))]
    one, two, *_ = together(commands, env=env)
    return root, one, two


def test_two_processes_train_one_run_like_one_process(runs):
    root, one, two = runs
    assert "4 per process x 2 processes (gloo)" in two.stderr
    assert two.stderr.count("run folder:") == 1, two.stderr  # rank 0 alone speaks
    assert "Traceback" not in two.stderr
    names = sorted(p.name for p in (root / "two" / "checkpoints").glob("step-*.pt"))
    assert names == ["step-0000000.pt", "step-0000003.pt", "step-0000006.pt"]
    lines = (root / "two" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [2, 4, 6]
    assert (root / "two" / "generator").is_dir()
    assert (root / "two" / "samples" / "final.png").is_file()
    assert_same_run(root / "one" / "checkpoints" / "step-0000006.pt",
                    root / "two" / "checkpoints" / "step-0000006.pt", tight=False)


def test_resume_on_another_number_of_processes_continues_the_same_run(runs, env):
    root, _, _ = runs
    # 1 -> 2 processes, from the one-process run's checkpoint at step 3: past Adam's first
    # update rounding no longer tips any weight, so the weights agree tightly.
    # 2 -> 1 alongside.
    together([("train", "--nproc", "2", "--resume",
               str(root / "one" / "checkpoints" / "step-0000003.pt"),
               "--out", str(root / "up"), "--steps", "6", "--no-progress"),
              ("train", "--resume", str(root / "two" / "checkpoints" / "step-0000003.pt"),
               "--out", str(root / "down"), "--steps", "6", "--no-progress")], env=env)
    assert_same_run(root / "one" / "checkpoints" / "step-0000006.pt",
                    root / "up" / "checkpoints" / "step-0000006.pt", tight=True)
    assert_same_run(root / "two" / "checkpoints" / "step-0000006.pt",
                    root / "down" / "checkpoints" / "step-0000006.pt", tight=True)


def test_stylegan2_trains_alike_on_two_processes(runs):
    root, _, _ = runs
    assert_same_run(root / "stylegan2-one" / "checkpoints" / "step-0000004.pt",
                    root / "stylegan2-two" / "checkpoints" / "step-0000004.pt", tight=False)


def test_projected_discriminator_trains_alike_on_two_processes(runs):
    root, _, _ = runs
    one, two = (root / f"projected-{n}" / "checkpoints" / "step-0000001.pt"
                for n in ("one", "two"))
    # Here a kink (a ReLU, or the nearest-pixel translation of DiffAugment) turns rounding
    # into a visible change of the generator's gradient: measured at seed 0, one process
    # against two (one thread each, as under `make test`) flip 0.18 % of the weights and
    # move the generator's first moment by 1.5 %; one process on one thread against the
    # same on two threads does the same (1.5 %). The discriminator's moments agree to 4e-6.
    assert_same_run(one, two, tight=False, flips=1e-2, moments=0.1)
    d1, d2 = (torch.load(p, weights_only=True)["discriminator"] for p in (one, two))
    assert torch.equal(d1["channel_mix0"], d2["channel_mix0"])


def _start(tmp_path, env, resume=False):
    """A long two-process run (or its continuation), once it has written a tick."""
    run = tmp_path / "run"
    metrics = run / "metrics.jsonl"
    ticks = len(metrics.read_text().splitlines()) if resume else 0
    what = (["--resume", str(run), "--steps", "100000", "--no-progress"] if resume else
            [*TINY, "--steps", "100000", "--checkpoint-every", "40", "--out", str(run)])
    process = subprocess.Popen(
        [sys.executable, "-m", "ganvas", "train", "--nproc", "2", *what],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)  # its own process group, like a job in a terminal
    deadline = time.monotonic() + 180
    while not (metrics.exists() and len(metrics.read_text().splitlines()) > ticks) \
            and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.1)
    return run, process


def _workers(launcher: int) -> dict[int, int]:
    """rank -> pid of the training processes the launcher started."""
    found = {}
    for child in Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split():
        environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        for item in environ:
            if item.startswith(b"RANK="):
                found[int(item[5:])] = int(child)
    return found


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")
def test_a_killed_process_ends_the_run_and_ctrl_c_stops_it_consistently(tmp_path, env):
    # kill -9 of one process: the whole run ends at once, in one line, nobody left waiting
    run, process = _start(tmp_path, env)
    workers = _workers(process.pid)
    assert sorted(workers) == [0, 1], workers
    os.kill(workers[1], signal.SIGKILL)
    out, err = process.communicate(timeout=180)
    assert process.returncode != 0
    assert "Traceback" not in err, err[-3000:]
    assert "stopped unexpectedly" in err or "killed by SIGKILL" in err, err[-3000:]
    for worker in workers.values():
        assert not Path(f"/proc/{worker}").exists() or \
            "zombie" in Path(f"/proc/{worker}/status").read_text()
    killed_at = int(sorted((run / "checkpoints").glob("step-*.pt"))[-1].stem.split("-")[1])

    # its last checkpoint resumes; then Ctrl-C of the launcher (what a terminal sends: every
    # process) stops all processes at one step with one consistent checkpoint
    run, process = _start(tmp_path, env, resume=True)
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=180)
    assert process.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "resume" in out
    newest = sorted((run / "checkpoints").glob("step-*.pt"))[-1]
    step = int(newest.stem.split("-")[1])
    assert step > killed_at
    state = torch.load(newest, weights_only=True)
    assert state["images_seen"] == 8 * step and state["data"]["position"] == 8 * step


# ---- the pieces, in one process ------------------------------------------------------------

LEAVES_AT_EXIT = """
import torch, torch.distributed as dist
from ganvas.distributed import ProcessGroupStrategy
destroy = dist.destroy_process_group
def watched():
    print("left the group", flush=True)
    destroy()
dist.destroy_process_group = watched
strategy = ProcessGroupStrategy(torch.device("cpu"))
assert strategy.sum(torch.ones(2)).tolist() == [1.0, 1.0]
if FINISHED:  # as a run ends: every process meets at a barrier
    strategy.barrier()
"""


def test_a_process_leaves_its_group_before_the_interpreter_ends():
    # Left to the interpreter's teardown, gloo's threads aborted a process that had finished
    # its run well (1 in 45 two-process runs on 2 busy cores: "terminate called without an
    # active exception", and the launcher reported a failed run). Here: the group is left
    # at exit, without the run calling anything; but not after a collective no barrier
    # followed (a failed run: a peer may still wait, and nccl's leaving would wait for it).
    def run(finished: bool) -> list[str]:
        for _ in range(3):  # another test may take the free port first
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            env = {**os.environ, "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
            done = subprocess.run([sys.executable, "-c", f"FINISHED = {finished}\n"
                                   + LEAVES_AT_EXIT], env=env, capture_output=True, text=True,
                                  timeout=120)
            if "could not join" not in done.stderr:
                break
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.splitlines()

    assert run(finished=True) == ["left the group"]
    assert run(finished=False) == []


def test_per_sample_draws_the_global_batch_and_keeps_a_slice():
    def draw(m):
        return torch.randn(m, 3, generator=torch.Generator().manual_seed(5))

    whole = per_sample(draw, 8)
    with batch_slice(1, 2):
        second = per_sample(draw, 4)
    assert torch.equal(second, whole[4:])


def test_batch_stream_parts_cover_the_global_order():
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1).repeat(2, 2).repeat(2, 3)
    whole = BatchStream(images, 4, seed=3, mirror=True)
    parts = [BatchStream(images, 4, seed=3, mirror=True) for _ in range(2)]
    for _ in range(4):  # across epoch boundaries too
        expected = whole.next(4)
        got = torch.cat([s.next(2, part=(i, 2)) for i, s in enumerate(parts)])
        assert torch.equal(expected, got)
    assert parts[0].position == parts[1].position == whole.position


class _GradientProbe(Callback):
    """Records the gradients each optimiser is about to step with. Given the gradients of a
    reference run, it steps with those instead, so that both runs keep identical weights and
    every later gradient is computed from the same weights in both (Adam's sign-like first
    steps would otherwise turn rounding into whole-step differences)."""

    def __init__(self, follow: list | None = None):
        super().__init__()
        self.seen: list[tuple[str, list]] = []
        self.follow = follow

    def on_train_start(self, trainer):
        recipe = trainer.recipe
        real_step = recipe.step_optimizer

        def step_optimizer(name):
            params = [p for g in recipe.optimizers[name].param_groups for p in g["params"]]
            grads = [None if p.grad is None else p.grad.detach().clone() for p in params]
            if self.follow is not None:
                _, reference = self.follow[len(self.seen)]
                for p, g in zip(params, reference):
                    if g is not None:
                        p.grad.copy_(g)
            self.seen.append((name, grads))
            real_step(name)

        recipe.step_optimizer = step_optimizer


def test_gradient_accumulation_matches_one_round(tmp_path):
    """Two rounds of 4 images add up to the gradient of 8: at every phase of every step, the
    accumulated gradient equals the whole batch's, computed from the same weights, up to the
    rounding of adding the same terms in another order. (Augmentation parameters are drawn
    per round, so with --augment the rounds see other, equally likely, augmentations;
    BatchNorm layers see each round's statistics, so this uses MSG, which has none; and the
    mode-seeking term, MSG's on a small set, is a mean over each round's own pairs.)"""
    from ganvas.training.session import train

    common = dict(data="digits", model="msg", resolution=16, batch_size=8, steps=3,
                  model_options={"base_channels": 8}, loss="hinge", precision="fp32",
                  augment="none", mode_seeking=0.0, health=False, log_every=1, lr_g=LR,
                  lr_d=LR)
    one, two = _GradientProbe(), None
    a = train(common, out=str(tmp_path / "a"), callbacks=[one], progress=False,
              log=lambda m: None)
    two = _GradientProbe(follow=one.seen)
    b = train(common, out=str(tmp_path / "b"), grad_accum=2, callbacks=[two], progress=False,
              log=lambda m: None)
    assert [name for name, _ in one.seen] == [name for name, _ in two.seen]
    assert len(one.seen) >= 6  # D and G in each of the 3 steps
    for (name, whole), (_, rounds) in zip(one.seen, two.seen):
        assert [g is None for g in whole] == [g is None for g in rounds], name
        for g1, g2 in zip(whole, rounds):
            if g1 is None:
                continue
            # float32 sums of the same terms in another order: relative rounding ~1e-6 of
            # the largest term; 1e-4 of the tensor's largest gradient leaves a wide margin
            # and still catches a missing division by the number of rounds (a 2x error).
            scale = g1.abs().max().item()
            assert (g1 - g2).abs().max().item() <= 1e-4 * scale + 1e-9, name
    # Stepped with the same gradients, the two runs end with the same weights and progress.
    assert_same_run(a.checkpoint, b.checkpoint, tight=True)


def test_without_nproc_keeps_every_other_argument():
    assert without_nproc(["train", "--nproc", "2", "--data", "x", "--nproc=3", "-o"]) == [
        "train", "--data", "x", "-o"]


@pytest.mark.parametrize("argv, needle", [
    (["--nproc", "2", "--batch-size", "9"], "--batch-size 9 cannot be split evenly over 2"),
    (["--nproc", "0"], "--nproc must be at least 1"),
    (["--nproc", "2", "--batch-size", "8", "--grad-accum", "3"], "use a multiple of 6"),
    (["--nproc", "2", "--resume", "nowhere"], "--resume nowhere"),
])
def test_bad_launches_are_refused_in_one_line_before_any_process_starts(capsys, argv, needle):
    from ganvas.cli.main import main

    code = main(["train", "--data", "digits", "--no-progress", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and len(err.splitlines()) == 1, err
