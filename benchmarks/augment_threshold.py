"""Where augmentation stops paying: DCGAN on subsets of Fashion-MNIST (or of the emoji) of
several sizes, with ADA and without, at equal CPU time; the measurement behind ganvas's
small-data threshold (``ganvas.models.registry.SMALL_DATA``: ADA on by default below it).

Each subset is N pictures spread evenly over the set (Fashion-MNIST's classes come in no
order, so every subset holds all ten; the emoji's kinds come in runs, faces, people,
animals, food and so on, so a subset samples each run), written as a folder of PNG files
(what a user has);
each run trains ``ganvas train --data FOLDER --model dcgan`` with ``--augment ada`` or
``--augment none`` for the same CPU minutes (process time), one after the other in this
process. Every generator is scored against the *whole* set
(``--num`` pictures spread over all of it), not against its subset: a discriminator that
memorised 1,000 pictures teaches its generator those 1,000, and the whole set is what the
subset stands for. FID and KID on Inception features and the Fréchet distance on the fixed
random-convolution features of the health monitor, as ``benchmarks/models.py`` scores.

    python benchmarks/augment_threshold.py                  # 1k, 3k, 10k, 30k; 3 CPU min each
    python benchmarks/augment_threshold.py --sizes 2000 20000 --minutes 5
    python benchmarks/augment_threshold.py --data emoji --sizes 200 1000 3000 --minutes 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import fixed_reference, score, subset_folder, train  # noqa: E402
from report import print_cost, run_script  # noqa: E402

from ganvas.data import load_images  # noqa: E402
from ganvas.errors import GanvasError  # noqa: E402
from ganvas.metrics import real_statistics  # noqa: E402
from ganvas.metrics.inception import load_inception  # noqa: E402
from ganvas.models.registry import SMALL_DATA  # noqa: E402

# the sets: resolution and channels (grayscale 28 px clothes; colour 64 px emoji)
SETS = {"fashion-mnist": (28, 1), "emoji": (64, 3)}
ARMS = ("ada", "none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(SETS), default="fashion-mnist",
                        help="the set the subsets are drawn from and scored against: "
                             "fashion-mnist (28 px, grayscale; default) or emoji (64 px)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 10000, 30000],
                        help="pictures in each subset (default 1000 3000 10000 30000)")
    parser.add_argument("--minutes", type=float, default=3.0,
                        help="CPU minutes of training per run (default 3)")
    parser.add_argument("--num", type=int, default=500,
                        help="generated images scored, against as many of the whole set "
                             "(default 500)")
    parser.add_argument("--keep", default=None, help="keep the run folders here")
    args = parser.parse_args()
    # Everything that can fail fails here, in one line, before the training.
    if any(size < 2 for size in args.sizes):
        raise GanvasError("--sizes must each be at least 2 pictures")
    if not args.minutes > 0 or args.num < 2:
        raise GanvasError("--minutes must be above 0 and --num at least 2")
    if args.keep and Path(args.keep).is_dir() and any(Path(args.keep).iterdir()):
        raise GanvasError(f"--keep {args.keep}: not empty; give a new or empty folder")
    data, (resolution, channels) = args.data, SETS[args.data]
    sizes = sorted(set(args.sizes))
    images = load_images(data, resolution=resolution, channels=channels, progress=False,
                         log=lambda message: None).images
    if sizes[-1] > len(images):
        raise GanvasError(f"--sizes must each be 2..{len(images):,} (the pictures of {data})")
    extractor = load_inception(device="cpu", log=lambda message: None)
    real = real_statistics(data, resolution, 3, extractor, num=args.num,
                           progress=sys.stderr.isatty(), log=lambda message: None)
    fixed_reals = fixed_reference(data, resolution, args.num)
    wall, cpu = time.perf_counter(), time.process_time()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        for size in sizes:
            folder = subset_folder(root, data, images, size)
            for augment in ARMS:
                row = train("dcgan", resolution, args.minutes * 60,
                            root / f"dcgan-{size}-{augment}", {"augment": augment},
                            data=str(folder))
                row.update(score(row["source"], real, extractor, args.num,
                                 fixed_reals=fixed_reals))
                row["size"] = size
                state = torch.load(sorted((row["source"] / "checkpoints").glob("step-*.pt"))[-1],
                                   weights_only=True)
                row["p"] = float(state.get("augment", {}).get("p", 0.0) or 0.0)
                rows.append(row)
                print(f"{size:,} pictures, augment {augment}: {row['images']:,} images, "
                      f"FID {row['fid']:.2f}, fixed-feature FD {row['fixed_fd']:.3f}",
                      flush=True)
    print(f"\nDCGAN on N pictures spread over {data} at {resolution} px, {args.minutes:g} "
          f"CPU minutes per run (process time, {torch.get_num_threads()} threads), FID/KID on "
          f"{args.num:,} samples against {real.num:,} pictures of the whole set, "
          f"torch {torch.__version__}; ganvas turns ADA on below {SMALL_DATA:,} pictures\n")
    print("| pictures | augment | batch | images seen | epochs | ADA p at the end | FID | KID "
          "| fixed-feature FD | FID ada / none | FD ada / none |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        other = next(r for r in rows if r["size"] == row["size"] and r is not row)
        ada, none = (row, other) if row["augment"] == "ada" else (other, row)
        ratios = (f"{ada['fid'] / none['fid']:.2f}x | {ada['fixed_fd'] / none['fixed_fd']:.2f}x"
                  if row is ada else " | ")
        print(f"| {row['size']:,} | {row['augment']} | {row['batch']} | {row['images']:,} | "
              f"{row['images'] / row['size']:.1f} | "
              f"{row['p']:.2f} | {row['fid']:.2f} | {row['kid_mean']:.4f} | "
              f"{row['fixed_fd']:.3f} | {ratios} |")
    print_cost(wall, cpu)


if __name__ == "__main__":
    run_script(main, __file__)
