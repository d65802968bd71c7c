"""Healthy and deliberately broken training configurations, diagnosed by ganvas.

For each configuration the script trains twice on scikit-learn's digits (the lesson's 28 px
DCGAN, narrowed for CPU): once as given, once with --auto-balance. It prints what the health
monitor reported, the state at the end of each run, and whether --auto-balance rescued it
(no problem visible at the end, and sample diversity at least as good as without).

    python benchmarks/health_matrix.py            # about 5 minutes on 2 CPU cores
    python benchmarks/health_matrix.py --steps 200 --only healthy
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import ganvas
from ganvas.training.health.report import build_report

CONFIGS = {
    "healthy": ("the lesson's settings", {}),
    "strong-d": ("--lr-d 0.01 (50x)", {"lr_d": 0.01}),
    "weak-d": ("--lr-d 1e-6", {"lr_d": 1e-6}),
    "saturating": ("--loss bce-saturating", {"loss": "bce-saturating"}),
    "tiny-data": ("32 images instead of 1,797", {"data": "TINY"}),
}


def tiny_folder(root: Path, count: int = 32) -> str:
    """The first ``count`` digits as PNG files: a dataset D can memorise."""
    from PIL import Image

    from ganvas.data import load_images

    digits = load_images("digits", resolution=28, channels=1, progress=False,
                         log=lambda message: None).images
    folder = root / "tiny-digits"
    folder.mkdir(exist_ok=True)
    for i in range(count):
        Image.fromarray(digits[i, 0]).save(folder / f"{i:03d}.png")
    return str(folder)


def run(name: str, options: dict, auto: bool, steps: int, root: Path) -> dict:
    started = time.perf_counter()
    if options.get("data") == "TINY":
        options = {**options, "data": tiny_folder(root), "resolution": 28, "channels": 1}
    options = {"data": "digits", **options}
    result = ganvas.train(
        steps=steps, batch_size=64, log_every=20, sample_every=10_000,
        checkpoint_every=100, health_warmup=steps // 4, auto_balance=auto,
        model_options={"base_channels": 32}, out=str(root / f"{name}-{int(auto)}"),
        progress=False, log=lambda message: None, **options)
    report = build_report(result.run_dir)
    kinds = [e["event"] for e in report.events]
    last = report.ticks[-1]
    return {
        "reported": ", ".join(dict.fromkeys(k for k in kinds if k != "auto_balance")) or "-",
        "changes": sum(k == "auto_balance" for k in kinds),
        "end": ", ".join(f.kind for f in report.current) or "healthy",
        "diversity": last.get("Health/diversity", float("nan")),
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="steps per run (default 400)")
    parser.add_argument("--only", nargs="*", choices=sorted(CONFIGS), help="configurations")
    args = parser.parse_args()
    names = args.only or list(CONFIGS)
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for name in names:
            label, options = CONFIGS[name]
            plain = run(name, options, False, args.steps, Path(tmp))
            auto = run(name, options, True, args.steps, Path(tmp))
            rescued = (plain["end"] != "healthy" and auto["end"] == "healthy"
                       and auto["diversity"] >= 0.9 * plain["diversity"])
            improved = auto["diversity"] >= 2 * plain["diversity"]
            verdict = ("not needed" if plain["end"] == "healthy" else "yes" if rescued
                       else f"partly (ends {auto['end']})" if improved else "no")
            rows.append((name, label, plain, auto, verdict))
            print(f"... {name}: {plain['seconds'] + auto['seconds']:.0f} s", flush=True)
    header = ("| configuration | settings | monitor reported | end state | diversity | "
              "with --auto-balance: changes, end state, diversity | rescued |")
    print(f"\nDigits, DCGAN 28 px (base_channels 32), batch 64, {args.steps} steps per run; "
          "diversity is the samples' spread relative to the real images' (1 = as varied)\n")
    print(header)
    print("|" + "---|" * 7)
    for name, label, plain, auto, verdict in rows:
        print(f"| {name} | {label} | {plain['reported']} | {plain['end']} | "
              f"{plain['diversity']:.2f} | {auto['changes']}, {auto['end']}, "
              f"{auto['diversity']:.2f} | {verdict} |")


if __name__ == "__main__":
    main()
