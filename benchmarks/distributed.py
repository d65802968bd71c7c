"""Training speed on one and several processes, and on a GPU at each precision with and
without ``--compile``: images per second, as ratios against the first configuration,
all measured in the same run.

Each configuration is a real ``ganvas train`` (through ``--nproc`` for several processes).
Its speed is read from the run's own metrics: training images over training seconds between
the first tick after the warm-up and the last, so start-up (importing torch, joining the
process group, decoding the data, compiling) is left out of images/s and reported apart as
the seconds before the first timed tick.

    python benchmarks/distributed.py                                # 1 and 2 CPU processes
    python benchmarks/distributed.py --nproc 1 --compile            # torch.compile on a CPU
    python benchmarks/distributed.py --model stylegan2 --resolution 32 --batch-size 16
    python benchmarks/distributed.py --gpu --model stylegan2 --resolution 128  # lent GPU:
        # 1 GPU at fp32 / bf16 / fp16, each without and with --compile

On a machine with C cores, N CPU processes get C / N threads each (the launcher's default),
so "2 processes" on 2 cores is one thread per process against two threads in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

COMMON = ["--no-health", "--sample-every", "1000000", "--checkpoint-every", "1000000",
          "--no-progress", "--workers", "1"]


def measure(name: str, argv: list[str], out: Path, warmup_ticks: int, env: dict) -> dict:
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ganvas", "train", *argv, *COMMON,
                           "--out", str(out)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"distributed.py: {name} failed:\n{done.stderr[-2000:]}")
    ticks = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    ticks = [t for t in ticks if "time" in t]
    if len(ticks) <= warmup_ticks + 1:
        raise SystemExit(f"distributed.py: {name}: too few ticks; give more --steps")
    first, last = ticks[warmup_ticks], ticks[-1]
    images = (last["kimg"] - first["kimg"]) * 1000
    seconds = last["time"] - first["time"]
    return {"name": name, "images_per_s": images / seconds, "wall": wall,
            "before": wall - seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits", help="built-in dataset or folder")
    parser.add_argument("--model", default="dcgan")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--warmup-ticks", type=int, default=2)
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2],
                        help="numbers of CPU processes to compare")
    parser.add_argument("--precision", default="fp32", help="of the CPU runs")
    parser.add_argument("--compile", action="store_true",
                        help="CPU runs: each number of processes also with --compile")
    parser.add_argument("--gpu", action="store_true",
                        help="instead: one GPU at fp32, bf16 and fp16, without and with "
                             "--compile")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="more ganvas train options, e.g. --extra --sync-bn")
    args = parser.parse_args()
    base = ["--data", args.data, "--model", args.model, "--resolution", str(args.resolution),
            "--batch-size", str(args.batch_size), "--steps", str(args.steps),
            "--log-every", str(args.log_every), *args.extra]
    env = dict(os.environ)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env.setdefault("GANVAS_CACHE", str(Path(tmp) / "cache"))
        if args.gpu:
            if not torch.cuda.is_available():
                raise SystemExit("distributed.py: --gpu needs a CUDA GPU")
            configs = [(f"1 GPU {p}{' + compile' if c else ''}",
                        ["--device", "cuda", "--precision", p, *(["--compile"] if c else [])])
                       for p in ("fp32", "bf16", "fp16") for c in (False, True)]
            where = torch.cuda.get_device_name()
        else:
            configs = [(f"{n} CPU process{'es' if n > 1 else ''}{' + compile' if c else ''}",
                        ["--device", "cpu", "--precision", args.precision,
                         *(["--nproc", str(n)] if n > 1 else []),
                         *(["--compile"] if c else [])])
                       for n in args.nproc for c in ((False, True) if args.compile else (False,))]
            where = f"{os.cpu_count()} CPU cores"
        for i, (name, flags) in enumerate(configs):
            rows.append(measure(name, [*base, *flags], Path(tmp) / f"run{i}",
                                args.warmup_ticks, env))
            print(f"{name}: {rows[-1]['images_per_s']:.1f} images/s", file=sys.stderr,
                  flush=True)
    print(f"\n{args.model} at {args.resolution} px, global batch {args.batch_size}, "
          f"{args.steps} steps on {where}, torch {torch.__version__}\n")
    print("| configuration | images/s | vs first | seconds before timing | wall seconds |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['name']} | {row['images_per_s']:.1f} | "
              f"{row['images_per_s'] / rows[0]['images_per_s']:.2f}x | {row['before']:.1f} | "
              f"{row['wall']:.1f} |")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
