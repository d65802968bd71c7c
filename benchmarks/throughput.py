"""Training throughput: ganvas against a plain PyTorch port of the lesson's loop.

Both train the lesson's 28 px DCGAN (the same network, built by ganvas's registry) with BCE
at batch 256 on the same images, in the same process. The reference is ``lesson.py``: the
lesson notebook's loop as it is usually ported to PyTorch (a DataLoader over a float tensor,
then per step G(z) -> D step -> G step through a second forward of D). The variants run in
interleaved rounds (lesson, ganvas, ganvas, ... then again) so that other load on the machine
hits all of them alike; each figure is the median over rounds of images per second after a
warm-up, and the ratios are of those medians.

ganvas's default ``--precision auto`` runs the forward passes in mixed bf16 on CPUs that
compute bf16 natively (AVX512-BF16 or AMX) and in float32 elsewhere; the ``--precision fp32``
rows show what ganvas gains without it. Whether bf16 costs quality is what
``quality.py`` measures (it trains ganvas with the defaults).

Also measured: ganvas on the standard 64 px DCGAN from a folder of real JPEG photos (crops
of scikit-learn's and scikit-image's sample photos, written to a temporary folder), and the
data pipeline's share of a step: the time the loop waits on its batch stream divided by the
time of the whole step.

    python benchmarks/throughput.py                 # Fashion-MNIST if installed, else digits
    python benchmarks/throughput.py --steps 10 --rounds 1 --data digits
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lesson import train_lesson  # noqa: E402

import ganvas  # noqa: E402
from ganvas.data import load_images  # noqa: E402
from ganvas.utils.device import resolve_precision  # noqa: E402


class Timer(ganvas.Callback):
    """Times ganvas's own steps after the warm-up (not start-up or the final save), and the
    part of them spent waiting on the batch stream."""

    def __init__(self, warmup: int):
        self.warmup, self.started, self.ended, self.steps = warmup, None, None, 0
        self.cpu_started = self.cpu_ended = 0.0
        self.waiting = 0.0

    def on_train_start(self, trainer):
        stream_next = trainer.stream.next

        def timed_next(*args, **kwargs):
            started = time.perf_counter()
            try:
                return stream_next(*args, **kwargs)
            finally:
                if self.started is not None:
                    self.waiting += time.perf_counter() - started

        trainer.stream.next = timed_next

    def on_step_end(self, trainer):
        if trainer.step == self.warmup:
            self.started, self.cpu_started = time.perf_counter(), time.process_time()
        elif trainer.step > self.warmup:
            self.ended, self.steps = time.perf_counter(), trainer.step - self.warmup
            self.cpu_ended = time.process_time()

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def lesson_speed(images: np.ndarray, steps: int, warmup: int) -> tuple[float, float]:
    """Images per second and per CPU second (all threads of this process)."""
    marks: dict[int, tuple[float, float]] = {}
    train_lesson(images, keep_going=lambda done: done < steps + warmup,
                 on_step=lambda done: marks.__setitem__(
                     done, (time.perf_counter(), time.process_time())))
    (wall0, cpu0), (wall1, cpu1) = marks[warmup], marks[steps + warmup]
    return steps * 256 / (wall1 - wall0), steps * 256 / (cpu1 - cpu0)


def ganvas_run(data: str, steps: int, warmup: int, batch: int, resolution: int,
               channels: int, **options) -> Timer:
    timer = Timer(warmup)
    with tempfile.TemporaryDirectory() as tmp:
        ganvas.train(data=data, resolution=resolution, channels=channels, model="dcgan",
                     batch_size=batch, steps=steps + warmup, log_every=50,
                     sample_every=10**6, checkpoint_every=10**6,
                     out=os.path.join(tmp, "run"), progress=False, log=lambda message: None,
                     callbacks=[timer], **options)
    return timer


def jpeg_folder(folder: Path, crops: int = 240, seed: int = 0) -> int:
    """Random crops of the photos bundled with scikit-learn and scikit-image, as JPEGs."""
    from PIL import Image
    from skimage import data as skdata
    from sklearn.datasets import load_sample_images

    photos = list(load_sample_images().images)
    for name in ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
                 "immunohistochemistry", "colorwheel"):
        try:
            photo = getattr(skdata, name)()
        except Exception:  # some need a download in newer scikit-image; skip those
            continue
        if photo.ndim == 3 and photo.shape[2] == 3:
            photos.append(photo)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(crops):
        photo = photos[i % len(photos)]
        size = int(rng.integers(96, min(photo.shape[:2]) + 1))
        top = int(rng.integers(0, photo.shape[0] - size + 1))
        left = int(rng.integers(0, photo.shape[1] - size + 1))
        Image.fromarray(photo[top:top + size, left:left + size]).save(
            folder / f"crop-{i:04d}.jpg", quality=90)
    return crops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="default: fashion-mnist if present")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--steps-64", type=int, default=10, help="timed steps at 64 px")
    parser.add_argument("--crops", type=int, default=240,
                        help="JPEG crops in the 64 px folder (default 240)")
    args = parser.parse_args()
    if not 64 <= args.crops <= 100_000:
        parser.error("--crops must be 64..100000 (one batch of 64 at least)")
    wall, cpu = time.perf_counter(), time.process_time()
    data = args.data or ("fashion-mnist" if os.path.isdir("/usr/share/datasets/fashion-mnist")
                         else "digits")
    images = load_images(data, resolution=28, channels=1, progress=False,
                         log=lambda message: None).images
    precision = resolve_precision("auto", torch.device("cpu"))
    auto = "bf16 here" if precision is not None else "float32 here: no native bf16"
    variants = {
        "lesson loop (plain PyTorch port)": None,
        "ganvas --precision fp32 --update alternating": {"precision": "fp32",
                                                         "update": "alternating"},
        "ganvas --precision fp32": {"precision": "fp32"},
        f"ganvas, defaults (precision auto: {auto}; simultaneous update, EMA, health monitor)":
            {},
        "ganvas, defaults --no-ema --no-health": {"ema": False, "health": False},
    }
    speeds: dict[str, list[float]] = {name: [] for name in variants}
    per_cpu: dict[str, list[float]] = {name: [] for name in variants}
    waits: list[float] = []
    for _ in range(args.rounds):
        for name, options in variants.items():
            if options is None:
                speed, cpu_speed = lesson_speed(images, args.steps, args.warmup)
                speeds[name].append(speed)
                per_cpu[name].append(cpu_speed)
            else:
                timer = ganvas_run(data, args.steps, args.warmup, 256, 28, 1, **options)
                speeds[name].append(timer.steps * 256 / timer.seconds)
                per_cpu[name].append(timer.steps * 256 / (timer.cpu_ended - timer.cpu_started))
                waits.append(timer.waiting / timer.seconds)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        count = jpeg_folder(folder, args.crops)
        os.environ["GANVAS_CACHE"] = str(Path(tmp) / "cache")  # a cold first decode
        decode = time.perf_counter()
        load_images(str(folder), resolution=64, channels=3, progress=False,
                    log=lambda message: None)
        decode = time.perf_counter() - decode
        timer64 = ganvas_run(str(folder), args.steps_64, 2, 64, 64, 3)

    reference = statistics.median(speeds["lesson loop (plain PyTorch port)"])
    cpu_reference = statistics.median(per_cpu["lesson loop (plain PyTorch port)"])
    print(f"\nDCGAN 28 px (the lesson's network), batch 256, {args.steps} timed steps x "
          f"{args.rounds} interleaved rounds on {data}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}\n")
    # Images per CPU second hold steadier than per second when other work shares the cores.
    print("| loop | images/s (median) | per round | vs lesson loop | images per CPU s | "
          "vs lesson loop |")
    print("|---|---|---|---|---|---|")
    for name, values in speeds.items():
        speed, cpu_speed = statistics.median(values), statistics.median(per_cpu[name])
        rounds = " / ".join(f"{v:.0f}" for v in values)
        print(f"| {name} | {speed:.0f} | {rounds} | {speed / reference:.2f}x | "
              f"{cpu_speed:.0f} | {cpu_speed / cpu_reference:.2f}x |")
    speed64 = timer64.steps * 64 / timer64.seconds
    print(f"\n| other figure | value |\n|---|---|\n"
          f"| ganvas DCGAN 64 px RGB, batch 64, defaults, {count} JPEG crops | "
          f"{speed64:.0f} images/s |\n"
          f"| data pipeline, JPEG folder at 64 px: waiting on the batch stream / step time | "
          f"{100 * timer64.waiting / timer64.seconds:.2f} % |\n"
          f"| data pipeline, {data} at 28 px, batch 256 (median over runs) | "
          f"{100 * statistics.median(waits):.2f} % |\n"
          f"| first decode of the {count} JPEGs into the cache (one-off) | {decode:.1f} s |")
    print(f"\nwall {time.perf_counter() - wall:.0f} s, CPU {time.process_time() - cpu:.0f} s")


if __name__ == "__main__":
    try:
        main()
    except ganvas.GanvasError as exc:
        raise SystemExit(f"throughput.py: error: {exc}") from None
