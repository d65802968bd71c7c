"""Quality at equal budget: the lesson's loop and ganvas's recommended configuration each train
on Fashion-MNIST for the same CPU minutes, then both are scored with FID and KID.

The budget is process CPU time (``time.process_time``: all threads of this process), not wall
time, so other work on the machine does not shorten either side's training. Both sides
train in this process, one after the other, with the same thread count; ganvas's budget
includes its own housekeeping (health monitor, sample grids, checkpoints). Both generators
are scored by the same code, the pieces ``ganvas eval`` uses (offline Inception, real-image
statistics cached by content, the same fixed subset of real images and the same latents);
``--real-num`` may use more real images than generated ones.

    python benchmarks/quality.py                         # 10k samples; about an hour
    python benchmarks/quality.py --minutes 1 --num 500   # smoke test
    python benchmarks/quality.py --set loss=hinge --only ganvas   # try another configuration
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lesson import BATCH_SIZE, BETAS, LATENT_DIM, LEARNING_RATE, train_lesson  # noqa: E402
from report import print_cost, run_script  # noqa: E402

import ganvas  # noqa: E402
from ganvas.config import TrainConfig  # noqa: E402
from ganvas.data import load_images  # noqa: E402
from ganvas.errors import GanvasError  # noqa: E402
from ganvas.metrics import real_statistics  # noqa: E402
from ganvas.metrics.evaluation import extract_features  # noqa: E402
from ganvas.metrics.inception import load_inception  # noqa: E402
from ganvas.metrics.statistics import (  # noqa: E402
    frechet_distance_to,
    kernel_inception_distance,
)
from ganvas.models.export import save_generator  # noqa: E402
from ganvas.utils.device import resolve_precision  # noqa: E402

# Chosen by experiment at equal CPU time. Session 2 (2 CPU minutes each, FID of 250 samples
# against 1,000 real images, float32, the lesson's loop then at lr 1e-4 and betas (0.9, 0.999)):
# the lesson's loop 425; ganvas at lr 2e-4 with batch 64 alternating 332, simultaneous 325,
# batch 128 336, batch 256 315; batch 256 at lr 1e-3 320; batch 128 at lr 5e-4 276. Session 3
# (5 CPU minutes each, 500 samples against 1,000 real images, precision auto = bf16, the
# lesson's loop at its own 2e-4 / (0.5, 0.999): 254): batch 128 at lr 5e-4 108, batch 256 at
# lr 5e-4 155, batch 128 at lr 1e-3 85. Larger batches use the CPU better per image, but on
# this budget more, larger steps learn faster.
RECOMMENDED = {"update": "simultaneous", "batch_size": 128, "lr_g": 1e-3, "lr_d": 1e-3,
               "beta1": 0.5, "beta2": 0.999, "loss": "bce", "ema": True, "ema_kimg": 10.0}


class CPUBudget(ganvas.Callback):
    """Stops training once the process has used ``seconds`` of CPU time since the start."""

    def __init__(self, seconds: float):
        self.seconds, self.started = seconds, None

    def on_train_start(self, trainer):
        self.started = time.process_time()

    def on_step_end(self, trainer):
        if time.process_time() - self.started >= self.seconds:
            trainer.request_stop("CPU budget reached")


def run_lesson(images, data: str, seconds: float, folder: Path) -> dict:
    started = time.process_time()
    generator, steps = train_lesson(
        images, keep_going=lambda done: time.process_time() - started < seconds)
    cpu = time.process_time() - started
    config = TrainConfig(data=data, resolution=28, channels=1, model="dcgan",
                         latent_dim=LATENT_DIM, batch_size=BATCH_SIZE, lr_g=LEARNING_RATE,
                         lr_d=LEARNING_RATE, beta1=BETAS[0], beta2=BETAS[1], ema=False,
                         steps=steps)
    save_generator(folder, generator, config.to_dict(), step=steps, ema=False,
                   ganvas_version=ganvas.__version__)
    return {"name": "lesson loop (plain PyTorch port)", "source": folder, "steps": steps,
            "images": steps * BATCH_SIZE, "cpu": cpu}


def run_ganvas(data: str, seconds: float, folder: Path, options: dict) -> dict:
    budget = CPUBudget(seconds)
    result = ganvas.train(data=data, resolution=28, channels=1, model="dcgan", steps=10**9,
                          out=str(folder), progress=False, log=lambda message: None,
                          callbacks=[budget], **options)
    cpu = time.process_time() - budget.started
    precision = options.get("precision", TrainConfig.precision)
    resolved = resolve_precision(precision, torch.device("cpu"))
    settings = " ".join(f"{k}={v}" for k, v in options.items())
    settings += f" (precision {precision}: {'bf16' if resolved is not None else 'fp32'})"
    batch = options.get("batch_size", TrainConfig.batch_size)
    return {"name": f"ganvas ({settings})", "source": result.run_dir, "steps": result.step,
            "images": result.step * batch, "cpu": cpu}


def score(source: Path, real, extractor, num: int, seed: int = 0) -> dict:
    """FID and KID of ``num`` samples (latents of ``seed``, the same for every generator),
    computed as ``ganvas eval`` computes them."""
    model = ganvas.load(source, device="cpu")
    fake = np.concatenate([extract_features(extractor, batch)
                           for batch in model.batches(num, seed, batch_size=50)])
    fid = frechet_distance_to(fake, real.mu, real.sigma)
    kid, _ = kernel_inception_distance(fake, real.features, seed=seed)
    return {"fid": fid, "kid_mean": kid}


def parse_settings(pairs: list[str], data: str) -> dict:
    """The recommended configuration with ``--set`` changes, checked before any training."""
    options = dict(RECOMMENDED)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise GanvasError(f"--set needs KEY=VALUE, got {pair!r}")
        options[key.replace("-", "_")] = yaml.safe_load(value)
    TrainConfig.from_dict({**options, "data": data, "resolution": 28, "channels": 1,
                           "model": "dcgan"}, source="--set").validate()
    return options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="CPU minutes of training for each side (default 10)")
    parser.add_argument("--num", type=int, default=10_000,
                        help="generated (and real) images for FID/KID (default 10000)")
    parser.add_argument("--real-num", type=int, default=None,
                        help="real images for the statistics (default: --num); a fixed "
                             "subset, cached by content")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--only", choices=("both", "lesson", "ganvas"), default="both")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change one setting of ganvas's configuration (repeatable)")
    parser.add_argument("--keep", default=None, help="keep the trained generators here")
    args = parser.parse_args()
    # Everything that can fail fails here, before the hour of training and scoring.
    options = parse_settings(args.set, args.data)
    wall, cpu = time.perf_counter(), time.process_time()
    images = load_images(args.data, resolution=28, channels=1, progress=False,
                         log=lambda message: None).images
    extractor = load_inception(device="cpu", log=lambda message: None)
    seconds = args.minutes * 60
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        if args.only in ("both", "lesson"):
            rows.append(run_lesson(images, args.data, seconds, root / "lesson"))
            print(f"trained: {rows[-1]['name']}, {rows[-1]['steps']} steps", flush=True)
        if args.only in ("both", "ganvas"):
            rows.append(run_ganvas(args.data, seconds, root / "ganvas", options))
            print(f"trained: {rows[-1]['name']}, {rows[-1]['steps']} steps", flush=True)
        real = real_statistics(args.data, 28, 1, extractor, num=args.real_num or args.num,
                               progress=sys.stderr.isatty(), log=lambda message: None)
        for row in rows:
            row.update(score(row["source"], real, extractor, args.num))
            print(f"scored: {row['name']}: FID {row['fid']:.2f}", flush=True)
    reference = rows[0]["fid"] if args.only == "both" else None
    print(f"\n{args.data}, DCGAN 28 px (the lesson's network), {args.minutes:g} CPU minutes "
          f"each (process time, {torch.get_num_threads()} threads), FID/KID on "
          f"{args.num:,} samples against {real.num:,} real images, torch "
          f"{torch.__version__}\n")
    print("| configuration | CPU minutes | steps | images seen | FID | KID | FID vs lesson |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        ratio = f"{row['fid'] / reference:.2f}x" if reference else "-"
        print(f"| {row['name']} | {row['cpu'] / 60:.2f} | {row['steps']:,} | "
              f"{row['images']:,} | {row['fid']:.2f} | {row['kid_mean']:.4f} | {ratio} |")
    print_cost(wall, cpu)


if __name__ == "__main__":
    run_script(main, __file__)
