"""Healthy and deliberately broken training runs, judged by FID, and what ganvas said of them.

Each configuration trains the lesson's 28 px DCGAN (narrowed for CPU) for the same number of
steps on digits and/or Fashion-MNIST. Whether a run is really broken is decided by FID and
KID on Inception features against the healthy run of the same dataset and budget (broken:
FID at least ``--broken`` times the healthy run's), never by the monitor's own signals. Then
the table shows what the settings check said before training, what the health monitor
diagnosed during training, whether that fits the known cause, and, for causes that can be
changed mid-run, whether a second run with --auto-balance was rescued (its FID no longer
broken). For causes that need a new run, it shows the ready command `ganvas doctor` prints.

    python benchmarks/health_matrix.py                 # about 50 minutes on 2 CPU cores
    python benchmarks/health_matrix.py --steps 300 --only digits:healthy digits:lr-high
    python benchmarks/health_matrix.py --keep runs/matrix   # keep the run folders
    python benchmarks/health_matrix.py --keep runs/matrix --reuse  # judge them again

With --reuse, finished runs kept in the --keep folder are scored again instead of trained,
and the diagnoses of the plain runs are replayed through today's rules from metrics.jsonl
(exactly what the live monitor would say: it does not change a plain run), so thresholds
can be tried in minutes; delete the -auto folders to train those again.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import ganvas
from ganvas.health.report import build_report, recommendations
from ganvas.metrics import real_statistics
from ganvas.metrics.evaluation import extract_features
from ganvas.metrics.inception import load_inception
from ganvas.metrics.statistics import frechet_distance_to, kernel_inception_distance

# What the lesson's DCGAN trains with here; each configuration changes some of it.
BASE = {"model": "dcgan", "batch_size": 64, "model_options": {"base_channels": 32}}
# Kinds of diagnosis that fit each cause (a broken run must get one of them).
RATES = {"oscillation", "quality_worse", "quality_stalled", "grainy_samples", "checkerboard",
         "blurry_samples", "mode_collapse", "settings_lr_high", "settings_lr_ratio"}
STRONG_D = {"discriminator_wins", "settings_lr_ratio", "settings_lr_high"}
WEAK_D = {"generator_wins", "settings_lr_ratio", "settings_lr_low"}


@dataclass
class Case:
    label: str
    options: dict
    fits: set[str] = field(default_factory=set)  # diagnoses that name the cause
    changeable: bool = True  # the cause is a setting --auto-balance may change mid-run
    datasets: tuple[str, ...] = ("digits", "fashion-mnist")
    healthy: bool = False  # settings known to work: any alarm is a false one


CASES = {
    "healthy": Case("the lesson's settings", {}, healthy=True),
    "healthy-hinge": Case("--loss hinge --spectral-norm", {"loss": "hinge",
                                                           "spectral_norm": True}, healthy=True),
    "healthy-ttur": Case("--lr-d 4e-4 (two time-scale)", {"lr_d": 4e-4}, datasets=("digits",),
                         healthy=True),
    "lr-high": Case("--lr-g 5e-3 --lr-d 5e-3 (25x)", {"lr_g": 5e-3, "lr_d": 5e-3}, RATES),
    "lr-g-high": Case("--lr-g 5e-3 (25x the D's)", {"lr_g": 5e-3}, RATES),
    "strong-d": Case("--lr-d 1e-2 (50x)", {"lr_d": 1e-2}, STRONG_D),
    "weak-d": Case("--lr-d 1e-6", {"lr_d": 1e-6}, WEAK_D, datasets=("digits",)),
    "momentum": Case("--beta1 0.99 --beta2 0.9", {"beta1": 0.99, "beta2": 0.9},
                     RATES | {"settings_betas"}),
    "saturating": Case("--loss bce-saturating --lr-g 1e-3 --lr-d 1e-3",
                       {"loss": "bce-saturating", "lr_g": 1e-3, "lr_d": 1e-3},
                       RATES | STRONG_D, datasets=("digits",)),
    "r1-heavy": Case("--r1-gamma 100", {"r1_gamma": 100.0},
                     WEAK_D | {"blurry_samples", "settings_r1_gamma", "quality_stalled"},
                     datasets=("digits",)),
    "n-critic": Case("--n-critic 5 with --loss bce", {"n_critic": 5},
                     STRONG_D | {"settings_n_critic"}, changeable=False, datasets=("digits",)),
    "tiny-batch": Case("--batch-size 4", {"batch_size": 4},
                       RATES | {"settings_batch_small"}, changeable=False),
    "tiny-latent": Case("--latent-dim 2", {"latent_dim": 2},
                        {"mode_collapse", "settings_latent_small"}, changeable=False,
                        datasets=("digits",)),
    # without the ADA a folder this small now gets by default: the broken case it was
    "tiny-data": Case("32 pictures instead of 1,797", {"data": "TINY", "augment": "none"},
                      {"memorisation", "discriminator_wins", "mode_collapse"},
                      changeable=False, datasets=("digits",)),
}


# Healthy runs of the other families, at their own defaults on the colour emoji: the monitor
# must stay quiet on them too (no FID here: each family is its own reference).
FAMILIES = ("progressive", "msg", "stylegan2", "fastgan")


def tiny_folder(root: Path, count: int = 32) -> str:
    """The first ``count`` digits as PNG files: a dataset D can memorise."""
    from PIL import Image

    from ganvas.data import load_images

    folder = root / "tiny-digits"
    if not folder.is_dir():
        digits = load_images("digits", resolution=28, channels=1, progress=False,
                             log=lambda message: None).images
        folder.mkdir()
        for i in range(count):
            Image.fromarray(digits[i, 0]).save(folder / f"{i:03d}.png")
    return str(folder)


def finished(folder: Path, steps: int) -> bool:
    """A kept run of ``steps`` steps that completed (for --reuse)."""
    try:
        return ganvas.load(folder).step >= steps
    except Exception:  # no run there, or a broken one: train it again
        return False


def train(data: str, case: Case, auto: bool, steps: int, folder: Path, root: Path,
          reuse: bool = False) -> Path:
    if reuse and finished(folder, steps):
        return folder
    options = {**BASE, "data": data, **case.options}
    if options["data"] == "TINY":
        options.update(data=tiny_folder(root), resolution=28, channels=1)
    result = ganvas.train(
        steps=steps, log_every=20, sample_every=10**9, checkpoint_every=10**9,
        auto_balance=auto, out=str(folder), progress=False, log=lambda message: None,
        **options)
    return result.run_dir


def score(run: Path, real, extractor, num: int) -> tuple[float, float]:
    model = ganvas.load(run, device="cpu")
    fake = np.concatenate([extract_features(extractor, batch)
                           for batch in model.batches(num, 0, batch_size=64)])
    fid = frechet_distance_to(fake, real.mu, real.sigma)
    kid, _ = kernel_inception_distance(fake, real.features, seed=0)
    return fid, kid


def said(run: Path, replay: bool = False) -> dict:
    """What ganvas said of a run: settings warnings, monitor diagnoses, doctor's command.
    With ``replay``, the diagnoses are those the current rules give on the run's recorded
    ticks (to judge new thresholds on kept runs without training them again)."""
    report = build_report(run)
    settings = list(dict.fromkeys(f.kind for f in report.settings))
    if replay:
        monitor = replayed(run, report)
    else:
        kinds = list(dict.fromkeys(e["event"] for e in report.events))
        monitor = [k for k in kinds if k != "auto_balance"]
        monitor += [f.kind for f in report.current if f.kind not in monitor]
    commands = [a for a in recommendations(report) if "ganvas train --data" in a]
    return {"settings": settings, "monitor": monitor, "command": commands[0] if commands else "",
            "changes": [e["step"] for e in report.events if e["event"] == "auto_balance"]}


def replayed(run: Path, report) -> list[str]:
    """The finding kinds the live monitor would report with today's rules, tick by tick
    through metrics.jsonl (its history, run memory and cooldown; no auto-balance)."""
    from ganvas.health.rules import HISTORY, RunMemory, diagnose
    from ganvas.losses.criteria import LOSSES
    from ganvas.training.callbacks.health import COOLDOWN

    config = report.config
    loss = LOSSES.get(str(config.get("loss", "bce")), LOSSES["bce"])
    warmup = int(config.get("health_warmup") or 0)
    held = int(config.get("holdout") or 0)
    context = {"held_out": held}
    history, memory, last, kinds = [], RunMemory(), {}, []
    ticks = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for tick, record in enumerate(r for r in ticks if "event" not in r):
        history = (history + [record])[-HISTORY:]
        memory.update(record, warmup)
        for finding in diagnose(history, probabilistic=loss.probabilistic, warmup=warmup,
                                loss_name=loss.name, memory=memory, context=context):
            if finding.kind in last and tick - last[finding.kind] < COOLDOWN:
                continue
            last[finding.kind] = tick
            if finding.kind not in kinds:
                kinds.append(finding.kind)
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500, help="steps per run (default 500)")
    parser.add_argument("--num", type=int, default=500,
                        help="samples per run for FID/KID (default 500)")
    parser.add_argument("--real-num", type=int, default=2000,
                        help="real images per dataset for FID/KID (default 2000)")
    parser.add_argument("--broken", type=float, default=1.4,
                        help="a run is broken when its FID is this many times the healthy "
                        "run's (default 1.4)")
    parser.add_argument("--only", nargs="*", metavar="DATASET:CASE",
                        help="configurations, e.g. digits:lr-high (default all)")
    parser.add_argument("--keep", metavar="DIR", help="keep the run folders here")
    parser.add_argument("--reuse", action="store_true",
                        help="with --keep: score the finished runs kept there instead of "
                        "training them again, and judge them with today's rules")
    parser.add_argument("--no-auto", action="store_true",
                        help="skip the --auto-balance runs (to look at the diagnoses alone)")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    parser.add_argument("--families", type=int, default=400, metavar="STEPS",
                        help="also train each other family at its defaults on emoji at 32 px "
                        "for STEPS steps and report any alarm (default 400; 0: skip)")
    parser.add_argument("--families-only", action="store_true",
                        help="only the other families' healthy runs")
    args = parser.parse_args()
    plan = [(d, name) for name, case in CASES.items() for d in case.datasets]
    plan.sort(key=lambda p: (p[0] != "digits", p[1] != "healthy"))
    if args.only:
        unknown = sorted(set(args.only) - {f"{d}:{n}" for d, n in plan})
        if unknown:
            parser.error(f"unknown configuration {unknown[0]}; known: "
                         + ", ".join(f"{d}:{n}" for d, n in plan))
        wanted = set(args.only) | {f"{d}:healthy" for d, _ in
                                   (o.split(":", 1) for o in args.only)}
        plan = [p for p in plan if f"{p[0]}:{p[1]}" in wanted]
    if args.families_only:
        plan = []
    extractor = load_inception(device="cpu", log=lambda message: None) if plan else None
    started = time.perf_counter()
    rows, reals, healthy_fid = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        for data, name in plan:
            case = CASES[name]
            if data not in reals:
                reals[data] = real_statistics(data, 28, 1, extractor, num=args.real_num,
                                              progress=False, log=lambda message: None)
            run = train(data, case, False, args.steps, root / f"{data}-{name}", root,
                        args.reuse)
            fid, kid = score(run, reals[data], extractor, args.num)
            if name == "healthy":
                healthy_fid[data] = fid
            ratio = fid / healthy_fid[data]
            broken = ratio >= args.broken
            row = {"data": data, "case": name, "label": case.label, "fid": fid, "kid": kid,
                   "ratio": ratio, "broken": broken, **said(run, replay=args.reuse)}
            reported = set(row["settings"]) | set(row["monitor"])
            row["alarm"] = bool(reported)
            row["fits"] = bool(reported & case.fits) if broken else None
            row["rescued"] = None
            if broken and case.changeable and not args.no_auto:
                auto = train(data, case, True, args.steps, root / f"{data}-{name}-auto", root,
                             args.reuse)
                auto_fid, auto_kid = score(auto, reals[data], extractor, args.num)
                row.update(auto_fid=auto_fid, auto_kid=auto_kid,
                           auto_changes=said(auto)["changes"],
                           rescued=auto_fid / healthy_fid[data] < args.broken)
            rows.append(row)
            print(f"... {data}:{name} FID {fid:.1f} ({ratio:.2f}x) "
                  f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        if rows:  # before the families: their runs must not cost this table
            report(rows, args)
            if args.json:
                Path(args.json).write_text(json.dumps({"rows": rows}, indent=1, default=str))
        families = [family_run(name, args.families, root / f"emoji-{name}", args.reuse)
                    for name in (FAMILIES if args.families else ())]
    if families:
        print(f"\nOther families at their own defaults, emoji at 32 px, {args.families} steps "
              "each; the last tick's diversity and sharpness (1 = like the real images) for "
              "judging an alarm\n")
        print("| model | batch | settings check | monitor diagnosed | diversity | sharpness |")
        print("|---|---|---|---|---|---|")
        for f in families:
            print(f"| {f['model']} | {f['batch']} | {', '.join(f['settings']) or '-'} | "
                  f"{', '.join(f['monitor']) or '-'} | {_number(f['diversity'])} | "
                  f"{_number(f['sharpness'])} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "families": families}, indent=1,
                                              default=str))


def family_run(name: str, steps: int, folder: Path, reuse: bool = False) -> dict:
    kept = reuse and finished(folder, steps)
    if not kept:
        ganvas.train(data="emoji", model=name, resolution=32, steps=steps, log_every=20,
                     sample_every=10**9, checkpoint_every=10**9, out=str(folder),
                     progress=False, log=lambda message: None)
    batch = ganvas.load(folder).config.get("batch_size")
    print(f"... emoji:{name}", file=sys.stderr, flush=True)
    last = build_report(folder).last
    return {"model": name, "batch": batch, "diversity": last.get("Health/diversity"),
            "sharpness": last.get("Health/sharpness"), **said(folder, replay=kept)}


def report(rows: list[dict], args: argparse.Namespace) -> None:
    print(f"\nDCGAN 28 px (base_channels 32), batch 64 unless changed, {args.steps} steps per "
          f"run; FID/KID on {args.num} samples against {args.real_num} real images; broken = "
          f"FID at least {args.broken}x the healthy run's of the same dataset\n")
    print("| data | configuration | FID (x healthy) | KID | broken | settings check | "
          "monitor diagnosed | fits the cause | --auto-balance: changed, FID, rescued |")
    print("|" + "---|" * 9)
    for r in rows:
        auto = (f"{_steps(r['auto_changes'])}, {r['auto_fid']:.1f}, "
                f"{'yes' if r['rescued'] else 'no'}" if r["rescued"] is not None else
                "restart: see below" if r["broken"] and r["command"] else "-")
        fits = "-" if r["fits"] is None else "yes" if r["fits"] else "no"
        print(f"| {r['data']} | {r['label']} | {r['fid']:.1f} ({r['ratio']:.2f}x) | "
              f"{r['kid']:.3f} | {'yes' if r['broken'] else 'no'} | "
              f"{', '.join(r['settings']) or '-'} | {', '.join(r['monitor']) or '-'} | "
              f"{fits} | {auto} |")
    broken = [r for r in rows if r["broken"]]
    healthy = [r for r in rows if CASES[r["case"]].healthy]
    spared = [r for r in rows if not r["broken"] and not CASES[r["case"]].healthy]
    changeable = [r for r in broken if r["rescued"] is not None]
    by_monitor = [r for r in broken if set(r["monitor"]) & CASES[r["case"]].fits]
    fitting = sum(bool(r["fits"]) for r in broken)
    print(f"\nbroken or degraded runs (by FID): {len(broken)} of {len(rows)}; diagnosed with a "
          f"fitting cause: {fitting} of {len(broken)} ({_share(fitting, len(broken))}), by the "
          f"monitor during training alone: {len(by_monitor)}")
    print(f"healthy configurations with an alarm: {sum(r['alarm'] for r in healthy)} of "
          f"{len(healthy)}" + (f" (broken by FID: {sum(r['broken'] for r in healthy)})"
                               if any(r["broken"] for r in healthy) else ""))
    if spared:
        print(f"risky configurations FID finds no worse at this budget: {len(spared)} ("
              + ", ".join(f"{r['data']}:{r['case']}" for r in spared) + f"); warned before "
              f"training: {sum(bool(r['settings']) for r in spared)}, a monitor alarm: "
              f"{sum(bool(r['monitor']) for r in spared)}")
    print(f"rescued by --auto-balance (causes changeable mid-run): "
          f"{sum(bool(r['rescued']) for r in changeable)} of {len(changeable)} "
          f"({_share(sum(bool(r['rescued']) for r in changeable), len(changeable))})")
    restarts = [r for r in rows if r["command"] and not CASES[r["case"]].changeable]
    if restarts:
        print("\ncauses that need a new run: the command `ganvas doctor` prints")
    for r in restarts:
        print(f"{r['data']}:{r['case']}: "
              + r["command"].removeprefix("some remedies need a new run: "))


def _steps(changes: list[int]) -> str:
    """When auto-balance changed settings: "at steps 0, 260" (0: before training)."""
    if not changes:
        return "none"
    return "at step" + ("s " if len(changes) > 1 else " ") + ", ".join(map(str, changes))


def _number(value) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "n/a"


if __name__ == "__main__":
    main()
