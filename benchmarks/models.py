"""Architectures at equal CPU time: DCGAN, progressive growing, MSG-GAN, StyleGAN2, FastGAN and the
projected discriminator on emoji, a few-shot table (100 emoji at 128 px, FastGAN against DCGAN
with DiffAugment) and a small-folder table (200 emoji at 64 px: the projected discriminator,
FastGAN, DCGAN at its small-data defaults and at its old ones).

Each model trains for the same CPU minutes (process time: all threads of this process, so
other work on the machine does not shorten anyone's budget), one after the other in this
process, with its own defaults (``ganvas train --data emoji --model NAME --resolution R``)
plus the settings listed in ``SETTINGS`` below and any ``--set``. Every generator is then
scored with the code ``ganvas eval`` uses (offline Inception, real statistics cached by
content, the same latents for every model): FID and KID on ``--num`` samples against as
many real images, and the same distance in a fixed random-convolution feature space that no
discriminator sees (the projected one judges VGG features, and FID's Inception features
could flatter it). Prints a table per resolution and, with ``--pictures DIR``, writes a
sample grid per model and the growth picture of the progressive run.

    python benchmarks/models.py                    # 64 px at 20 min each, 128 px at 8 min
    python benchmarks/models.py --minutes 3 --num 500 --resolutions 64   # a quick look
    python benchmarks/models.py --only progressive --set progressive:loss=ns
    python benchmarks/models.py --resolutions --few-shot   # only the few-shot table
    python benchmarks/models.py --resolutions --small-folder   # only the small-folder table
    python benchmarks/models.py --resolutions --small-folder --only stylegan2 msg progressive \
        --small-folder-families stylegan2 msg progressive   # their new vs old defaults
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
from report import print_cost, run_script

import ganvas
from ganvas.auto_settings import resolve_settings
from ganvas.config import AUTO_DEFAULTS, TrainConfig
from ganvas.errors import GanvasError
from ganvas.metrics import real_statistics
from ganvas.metrics.evaluation import extract_features
from ganvas.metrics.fixed_features import FixedFeatures
from ganvas.metrics.inception import load_inception
from ganvas.metrics.statistics import (
    frechet_distance_to,
    kernel_inception_distance,
)
from ganvas.models.registry import SMALL_DATA, get_model_family, make_spec
from ganvas.runs import checkpoint as ckpt
from ganvas.utils.images import make_grid, save_image

MODELS = ("dcgan", "progressive", "msg", "stylegan2", "fastgan", "projected")
# Settings beyond each model's defaults, per resolution: why each is here is said beside it.
SETTINGS: dict[int, dict[str, dict]] = {
    64: {name: {} for name in MODELS},
    128: {name: {} for name in MODELS},
}
# The few-shot table: FastGAN (DiffAugment with colour and translation is its default)
# against DCGAN given the same cure for small data.
FEW_SHOT_PICTURES, FEW_SHOT_RESOLUTION = 100, 128
FEW_SHOT: dict[str, dict] = {"fastgan": {}, "dcgan": {
    "augment": "diffaugment", "diffaugment_policy": "color,translation"}}
# The small-folder table: the projected discriminator against FastGAN, and each family in
# --small-folder-families (default DCGAN) at its small-data defaults (ADA below
# ganvas.auto_settings.SMALL_DATA pictures) against its old ones: what the family chose
# for any folder before it had small-data defaults (its settings for a large folder, no
# augmentation).
SMALL_FOLDER_PICTURES, SMALL_FOLDER_RESOLUTION = 200, 64
SMALL_FOLDER: list[tuple[str, dict]] = [("projected", {}), ("fastgan", {})]


# Model options a family's small-data defaults changed: its old-defaults row keeps what it
# chose before (the other options stay those chosen for the small folder).
OLD_MODEL_OPTIONS: dict[str, dict] = {"stylegan2": {"per_pixel_noise": True}}


def old_defaults(name: str, resolution: int) -> dict:
    """The settings ``name`` chose for a small folder before its small-data defaults: the
    training settings it chooses for a folder of SMALL_DATA pictures, without augmentation,
    and the model options of OLD_MODEL_OPTIONS. Every automatic setting is given, so none
    is chosen again from the small folder's picture count."""
    family = get_model_family(name)
    settings = {**AUTO_DEFAULTS, **family.auto_settings(resolution, SMALL_DATA, None)}
    settings.pop("kimg", None)
    settings = {**settings, "augment": "none"}
    if name in OLD_MODEL_OPTIONS:
        settings["model_options"] = dict(OLD_MODEL_OPTIONS[name])
    return settings


def with_old_defaults(settings: dict, name: str, resolution: int) -> dict:
    """``settings`` (a row's --set changes) under ``name``'s old defaults; model options
    merge, the old ones winning."""
    old = old_defaults(name, resolution)
    options = {**settings.get("model_options", {}), **old.get("model_options", {})}
    merged = {**settings, **old}
    if options:
        merged["model_options"] = options
    return merged
GRID = 64  # images in each sample grid
GROWTH_SAMPLES = 8  # latents followed through the growth picture


class CPUBudget(ganvas.Callback):
    """Stops training once the process has used ``seconds`` of CPU time since the start."""

    def __init__(self, seconds: float):
        self.seconds, self.started, self.wall = seconds, None, None

    def on_train_start(self, trainer):
        self.started, self.wall = time.process_time(), time.perf_counter()

    def on_step_end(self, trainer):
        if time.process_time() - self.started >= self.seconds:
            trainer.request_stop("CPU budget reached")


class GrowthPictures(ganvas.Callback):
    """Keeps the preview of a few fixed latents at the end of each resolution a growing
    model completes (the step before its next block starts to fade in), and at the end."""

    def __init__(self):
        self.rows: list[tuple[str, torch.Tensor]] = []
        self.latents = None
        self.resolution = None

    def on_train_start(self, trainer):
        self.latents = trainer.fixed_latents[:GROWTH_SAMPLES]
        self.resolution = trainer.point.resolution

    def on_step_end(self, trainer):
        point = trainer.point
        if point.resolution != self.resolution:
            self.rows.append((f"{self.resolution} px", trainer.render(self.latents)))
            self.resolution = point.resolution

    def on_train_end(self, trainer, result):
        self.rows.append((trainer.point.phase or f"{self.resolution} px",
                          trainer.render(self.latents)))


def subset_folder(root: Path, data: str, images: np.ndarray, count: int) -> Path:
    """``count`` pictures spread evenly over ``images`` (N, C, H, W), as PNG files in
    ``root/DATA-COUNT``: a folder like a user's."""
    from PIL import Image

    folder = root / f"{data}-{count}"
    folder.mkdir(parents=True, exist_ok=True)
    for i, index in enumerate(np.linspace(0, len(images) - 1, count).round().astype(int)):
        picture = images[index]
        picture = picture[0] if picture.shape[0] == 1 else picture.transpose(1, 2, 0)
        Image.fromarray(picture).save(folder / f"{i:05d}.png")
    return folder


def few_shot_folder(root: Path, count: int, resolution: int) -> Path:
    """``count`` emoji spread evenly over the set (neighbours in the font are often skin-tone
    variants of one picture), written as PNG files: the few-shot training set."""
    from ganvas.data import load_images

    images = load_images("emoji", resolution=resolution, channels=3, progress=False,
                         log=lambda message: None).images
    return subset_folder(root, "emoji", images, count)


def parse_settings(pairs: list[str], resolution: int,
                   defaults: dict[str, dict] | None = None, flag: str = "--set"
                   ) -> dict[str, dict]:
    """Each model's settings with the ``--set MODEL:KEY=VALUE`` changes, checked first."""
    defaults = SETTINGS.get(resolution, {}) if defaults is None else defaults
    settings = {name: {k: dict(v) if isinstance(v, dict) else v
                       for k, v in defaults.get(name, {}).items()} for name in MODELS}
    for pair in pairs:
        target, sep, assignment = pair.partition(":")
        key, eq, value = assignment.partition("=")
        if not sep or not eq or target not in MODELS:
            raise GanvasError(f"{flag} needs MODEL:KEY=VALUE with MODEL one of "
                              f"{', '.join(MODELS)}, got {pair!r}")
        key = key.replace("-", "_")
        if key.startswith("model_options."):
            options = settings[target].setdefault("model_options", {})
            options[key.split(".", 1)[1]] = yaml.safe_load(value)
        else:
            settings[target][key] = yaml.safe_load(value)
    for name, options in settings.items():
        config = TrainConfig.from_dict({**options, "data": "emoji", "model": name,
                                        "resolution": resolution}, source=f"{flag} {name}")
        resolve_settings(config.validate())
        make_spec(name, resolution=resolution, channels=3, latent_dim=config.latent_dim,
                  options=config.model_options)  # checks the model options
    return settings


def train(name: str, resolution: int, seconds: float, folder: Path, options: dict,
          data: str = "emoji") -> dict:
    budget, growth = CPUBudget(seconds), GrowthPictures()
    result = ganvas.train(data=data, model=name, resolution=resolution, steps=10**9,
                          out=str(folder), progress=False, log=lambda message: None,
                          sample_every=10**9, callbacks=[budget, growth], **options)
    cpu, wall = time.process_time() - budget.started, time.perf_counter() - budget.wall
    _, state = ckpt.latest_checkpoint(result.run_dir)
    config = state["config"]
    changed = " ".join(f"{k}={v}" for k, v in options.items()) or "defaults"
    return {"name": name, "settings": changed, "source": result.run_dir, "steps": result.step,
            "images": state["images_seen"], "cpu": cpu, "wall": wall,
            "batch": config["batch_size"], "loss": config["loss"],
            "augment": config["augment"], "growth": growth.rows}


def fixed_reference(data: str, resolution: int, num: int | None) -> np.ndarray:
    """The real pictures (``num`` of them, spread over the set; None: all) in the fixed
    random-convolution space: a second measure on features no discriminator ever saw
    (the projected one sees VGG's, FID Inception's)."""
    from ganvas.data import load_images

    images = load_images(data, resolution=resolution, channels=3, progress=False,
                         log=lambda message: None).images
    if num is not None and num < len(images):
        images = images[np.linspace(0, len(images) - 1, num).round().astype(int)]
    extractor = FixedFeatures()
    return np.concatenate([extractor.features(np.array(images[i:i + 256]))
                           for i in range(0, len(images), 256)])


def score(source: Path, real, extractor, num: int, seed: int = 0,
          fixed_reals: np.ndarray | None = None) -> dict:
    model = ganvas.load(source, device="cpu")
    batches = list(model.batches(num, seed, batch_size=50))
    fake = np.concatenate([extract_features(extractor, batch) for batch in batches])
    fid = frechet_distance_to(fake, real.mu, real.sigma)
    kid, _ = kernel_inception_distance(fake, real.features, seed=seed)
    result = {"fid": fid, "kid_mean": kid, "grid": model.sample_tensor(GRID, seed=seed)}
    if fixed_reals is not None:
        fixed = FixedFeatures()
        fake_fixed = np.concatenate([fixed.features(batch) for batch in batches])
        # centred on the reals' mean, as the monitor compares them (every feature is positive)
        result["fixed_fd"] = frechet_distance_to(
            fake_fixed, fixed_reals.mean(0), np.cov(fixed_reals, rowvar=False))
    return result


def growth_picture(rows: list[tuple[str, torch.Tensor]], path: Path) -> Path:
    """One row per completed resolution (the same latents in every row), labelled."""
    from PIL import Image, ImageDraw

    strips = [make_grid(images, columns=len(images)) for _, images in rows]
    label_width = 150
    width = label_width + strips[0].width
    canvas = Image.new("RGB", (width, sum(s.height for s in strips)), "white")
    draw = ImageDraw.Draw(canvas)
    y = 0
    for (label, _), strip in zip(rows, strips):
        canvas.paste(strip.convert("RGB"), (label_width, y))
        draw.text((8, y + strip.height // 2 - 6), label, fill="black")
        y += strip.height
    return save_image(canvas, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0,
                        help="CPU minutes of training per model at 64 px (default 20)")
    parser.add_argument("--minutes-128", type=float, default=8.0,
                        help="CPU minutes per model at 128 px (default 8)")
    parser.add_argument("--resolutions", type=int, nargs="*", default=[64, 128],
                        choices=(32, 64, 128), help="none: only the few-shot table")
    parser.add_argument("--num", type=int, default=2000,
                        help="generated (and real) images for FID/KID (default 2000)")
    parser.add_argument("--num-128", type=int, default=1000,
                        help="the same at 128 px (default 1000: Inception at about 9 images/s "
                             "on 2 cores makes scoring the longest part)")
    parser.add_argument("--only", nargs="+", choices=MODELS, default=list(MODELS),
                        help="the models of every table to run (default: all)")
    parser.add_argument("--few-shot", action="store_true",
                        help=f"also the few-shot table: {FEW_SHOT_PICTURES} emoji at "
                             f"{FEW_SHOT_RESOLUTION} px, " + " vs ".join(FEW_SHOT))
    parser.add_argument("--few-shot-minutes", type=float, default=20.0,
                        help="CPU minutes per model in the few-shot table (default 20)")
    parser.add_argument("--few-shot-resolution", type=int, default=FEW_SHOT_RESOLUTION,
                        choices=(32, 64, 128, 256))
    parser.add_argument("--few-shot-num", type=int, default=1000,
                        help="generated images scored against the few pictures (default 1000)")
    parser.add_argument("--few-shot-pictures", type=int, default=FEW_SHOT_PICTURES,
                        help=f"pictures in the few-shot set (default {FEW_SHOT_PICTURES})")
    parser.add_argument("--small-folder", action="store_true",
                        help=f"also the small-folder table: {SMALL_FOLDER_PICTURES} emoji at "
                             f"{SMALL_FOLDER_RESOLUTION} px, projected vs fastgan vs dcgan "
                             "(new and old defaults)")
    parser.add_argument("--small-folder-families", nargs="+", default=["dcgan"],
                        choices=[m for m in MODELS if m not in dict(SMALL_FOLDER)],
                        help="families run at their new and their old defaults in the "
                             "small-folder table (default: dcgan)")
    parser.add_argument("--small-folder-resolution", type=int, default=SMALL_FOLDER_RESOLUTION,
                        choices=(32, 64, 128))
    parser.add_argument("--small-folder-minutes", type=float, default=10.0,
                        help="CPU minutes per model in the small-folder table (default 10)")
    parser.add_argument("--small-folder-num", type=int, default=1000,
                        help="generated images scored against the small folder (default 1000)")
    parser.add_argument("--small-folder-pictures", type=int, default=SMALL_FOLDER_PICTURES,
                        help=f"pictures in the small folder (default {SMALL_FOLDER_PICTURES}; "
                             "every one is scored against, so fewer is quicker)")
    parser.add_argument("--set", action="append", default=[], metavar="MODEL:KEY=VALUE",
                        help="change one setting of one model (repeatable; in every table, "
                             "but not the settings the small-folder table's old-defaults row "
                             "is defined by), e.g. progressive:model_options.fade_kimg=10")
    parser.add_argument("--set-new", action="append", default=[], metavar="MODEL:KEY=VALUE",
                        help="like --set, but only for the small-folder table's new-defaults "
                             "row (a candidate default measured against the old ones)")
    parser.add_argument("--new-only", action="store_true",
                        help="the small-folder table's families at their new defaults only "
                             "(no old-defaults row beside them)")
    parser.add_argument("--pictures", default=None, metavar="DIR",
                        help="write models-<name>-<res>px.png grids and growth-<res>px.png")
    parser.add_argument("--keep", default=None, help="keep the run folders here")
    args = parser.parse_args()
    for flag in ("few_shot_pictures", "small_folder_pictures"):
        if not 2 <= getattr(args, flag) <= 3000:
            parser.error(f"--{flag.replace('_', '-')} must be 2..3000")
    # Everything that can fail fails here, before the hours of training and scoring.
    sections = []  # (title, data, resolution, minutes, num, models, settings)
    for r in args.resolutions:
        sections.append((f"emoji at {r} px", "emoji", r,
                         args.minutes if r <= 64 else args.minutes_128,
                         args.num if r <= 64 else args.num_128, args.only,
                         parse_settings(args.set, r)))
    if args.few_shot:
        r = args.few_shot_resolution
        sections.append((f"{args.few_shot_pictures} emoji at {r} px (few-shot)", None, r,
                         args.few_shot_minutes, args.few_shot_num, list(FEW_SHOT),
                         parse_settings(args.set, r, FEW_SHOT)))
    if args.small_folder:
        r = args.small_folder_resolution
        changed = parse_settings(args.set, r, {})
        candidate = parse_settings(args.set_new, r, changed, flag="--set-new")
        unused = {pair.partition(":")[0] for pair in args.set_new} - set(
            args.small_folder_families)
        if unused:
            raise GanvasError(f"--set-new {', '.join(sorted(unused))}: not in "
                              "--small-folder-families")
        # --set changes every row but the old defaults' own settings (they are the old
        # ones); --set-new only the new defaults' row
        pairs = [(family, settings) for family in args.small_folder_families
                 for settings in ([candidate[family]] if args.new_only else
                                  [candidate[family],
                                   with_old_defaults(changed[family], family, r)])]
        rows = [(name, settings) for name, settings in
                [*[(name, {**changed[name], **s}) for name, s in SMALL_FOLDER], *pairs]
                if name in args.only]
        sections.append((f"{args.small_folder_pictures} emoji at {r} px (small folder)", None, r,
                         args.small_folder_minutes, args.small_folder_num, rows, None))
    extractor = load_inception(device="cpu", log=lambda message: None)
    wall, cpu = time.perf_counter(), time.process_time()
    tables = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        for title, data, resolution, minutes, num, names, settings in sections:
            few_shot = data is None
            small = few_shot and settings is None
            if few_shot:
                count = args.small_folder_pictures if small else args.few_shot_pictures
                data = str(few_shot_folder(root, count, resolution))
            rows = []
            runs = names if small else [(name, settings[name]) for name in names]
            for index, (name, options) in enumerate(runs):
                tag = (f"{name}-{resolution}px-small-{index}" if small else
                       f"{name}-{resolution}px" + ("-few-shot" if few_shot else ""))
                rows.append(train(name, resolution, minutes * 60, root / tag, options,
                                  data=data))
                rows[-1]["tag"] = tag
                print(f"trained {name} on {title}: {rows[-1]['steps']:,} steps, "
                      f"{rows[-1]['images']:,} images", flush=True)
            # few-shot: the samples are scored against every one of the training pictures
            real = real_statistics(data, resolution, 3, extractor,
                                   num=None if few_shot else num,
                                   progress=sys.stderr.isatty(), log=lambda message: None)
            fixed_reals = fixed_reference(data, resolution, None if few_shot else num)
            for row in rows:
                row.update(score(row["source"], real, extractor, num, fixed_reals=fixed_reals))
                print(f"scored {row['name']} on {title}: FID {row['fid']:.2f}, fixed-feature "
                      f"FD {row['fixed_fd']:.3f}", flush=True)
                if args.pictures:
                    pictures = Path(args.pictures)
                    save_image(make_grid(row["grid"]), pictures / f"models-{row['tag']}.png")
                    if len(row["growth"]) > 1:
                        growth_picture(row["growth"], pictures / f"growth-{resolution}px.png")
            tables.append((title, minutes, num, real.num, rows))
    for title, minutes, num, real_num, rows in tables:
        reference = next((r["fid"] for r in rows if r["name"] == "dcgan"), None)
        print(f"\n{title}, {minutes:g} CPU minutes per model (process time, "
              f"{torch.get_num_threads()} threads), FID/KID on {num:,} samples against "
              f"{real_num:,} real images, torch {torch.__version__}\n")
        print("| model | settings | loss | augment | batch | steps | images seen | images/s | "
              "FID | KID | fixed-feature FD | FID vs dcgan |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for row in rows:
            ratio = f"{row['fid'] / reference:.2f}x" if reference else "-"
            speed = row["images"] / max(row["wall"], 1e-9)
            print(f"| {row['name']} | {row['settings']} | {row['loss']} | {row['augment']} | "
                  f"{row['batch']} | "
                  f"{row['steps']:,} | {row['images']:,} | {speed:.0f} | {row['fid']:.2f} | "
                  f"{row['kid_mean']:.4f} | {row['fixed_fd']:.3f} | {ratio} |")
    print_cost(wall, cpu)


if __name__ == "__main__":
    run_script(main, __file__)
