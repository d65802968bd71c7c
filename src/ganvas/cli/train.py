"""``ganvas train``: start a run from a folder or a built-in dataset, or resume one."""

from __future__ import annotations

import argparse
import sys

from ganvas.cli.parsing import HelpFormatter, add_config_options, config_values, print_stdout
from ganvas.config import TrainConfig, dump_yaml, load_yaml
from ganvas.errors import GanvasError

EXAMPLES = """\
examples:
  ganvas train --data digits --steps 2000                # offline demo, 28 px DCGAN
  ganvas train --data ~/pictures/cats --resolution 64   # your own folder of images
  ganvas train --data fashion-mnist --model dense --lr-d 1e-4
  ganvas train --config cats.yaml --batch-size 32       # flags override the file
  ganvas train --resume runs/00003-cats-dcgan-64px --steps 20000   # continue to 20000 steps
  ganvas train --nproc 2 --data cats --batch-size 64    # 2 processes, 32 images each a step
  torchrun --nproc-per-node 4 -m ganvas train --data cats   # the same with torchrun itself
"""

OPTION_GROUPS = {
    "data": ["data", "resolution", "fit", "channels", "mirror", "conditional", "workers",
             "max_image_pixels"],
    "model": ["model", "latent_dim", "model_options"],
    "optimisation": ["loss", "lr_g", "lr_d", "beta1", "beta2", "batch_size", "steps",
                     "epochs", "kimg", "time_budget", "seed", "device", "update", "precision"],
    "several processes and GPUs (see docs/distributed.md; with --nproc or torchrun)": [
        "grad_accum", "sync_bn", "compile"],
    "stabilisation (see docs/health.md)": [
        "label_smoothing", "gp_weight", "mode_seeking", "r1_gamma", "r1_every", "drift",
        "spectral_norm", "instance_noise", "instance_noise_steps", "n_critic",
        "d_skip_below", "d_accuracy_band"],
    "small data and sampling": ["augment", "diffaugment_policy", "ada_target", "ada_kimg",
                                "ema", "ema_kimg", "ema_rampup"],
    "health monitor": ["health", "auto_balance", "health_warmup", "max_rollbacks", "holdout",
                       "quiet_checks"],
    "quality during training": ["fid_every", "fid_num", "inception", "keep_best",
                                "stop_when_stale"],
    "run folder and monitoring": ["out", "runs_dir", "log_every", "sample_every",
                                  "checkpoint_every", "keep_checkpoints", "num_samples",
                                  "tensorboard"],
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a GAN on a folder of images or a built-in dataset",
        description="Train a GAN. Writes a run folder with config.yaml, metrics.jsonl, "
                    "loss.png, samples/, checkpoints/ and generator/.",
        epilog=EXAMPLES, formatter_class=HelpFormatter)
    parser.add_argument("--config", metavar="FILE.yaml",
                        help="read options from a YAML file; flags given here override it")
    parser.add_argument("--resume", metavar="RUN_DIR|CKPT",
                        help="continue a run from its newest checkpoint (or this checkpoint); "
                             "--steps then sets the new total")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved configuration and exit without training")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--nproc", type=int, metavar="N",
                        help="train in N processes on this machine (one per GPU, or several "
                             "sharing the CPU cores): torchrun's launcher, with --batch-size "
                             "the global batch; for several machines run torchrun yourself "
                             "(see docs/distributed.md)")
    add_config_options(parser, OPTION_GROUPS)
    parser.set_defaults(func=run)


def dry_run(config: TrainConfig) -> str:
    """The resolved configuration, with what was chosen automatically, without any work:
    the data is counted, not decoded."""
    from ganvas.auto_settings import describe_choices, resolve_settings
    from ganvas.data import count_images
    from ganvas.data.core import check_data_source
    from ganvas.losses import get_loss
    from ganvas.models.registry import make_spec

    check_data_source(config.data)
    num_images = count_images(config.data)
    resolved, chosen = resolve_settings(config, num_images)
    make_spec(resolved.model, resolution=resolved.resolution, channels=resolved.channels,
              latent_dim=resolved.latent_dim, options=resolved.model_options,
              aspect=resolved.aspect)
    get_loss(resolved.loss, resolved.label_smoothing)
    notes = describe_choices(resolved, chosen, num_images)
    if not resolved.quiet_checks:
        from ganvas.health.settings_check import check_settings

        warnings = [f"# warning: {f.message}" for f in check_settings(resolved)]
        notes = "\n".join(x for x in (notes, *warnings) if x)
    return (notes + "\n" if notes else "") + dump_yaml(resolved).rstrip()


def _launch(args: argparse.Namespace, values: dict) -> int:
    """Check what can be checked here, once, then start the processes."""
    from pathlib import Path

    from ganvas.training.launch import launch, without_nproc

    if args.nproc < 1:
        raise GanvasError(f"--nproc must be at least 1, got {args.nproc}")
    if args.dry_run:
        raise GanvasError("--dry-run and --nproc do not go together; drop --nproc to see the "
                          "resolved configuration")
    if args.resume:
        if not Path(args.resume).exists():
            raise GanvasError(f"--resume {args.resume}: no such run folder or checkpoint file")
        _check_gpus(values.get("device") or "auto", args.nproc)
    else:
        from ganvas.auto_settings import resolve_settings
        from ganvas.data import count_images

        config = TrainConfig.from_dict(values, source="options").validate()
        dry_run(config)  # the data, model and loss exist; nothing is decoded
        _check_gpus(config.device, args.nproc)
        batch = resolve_settings(config, count_images(config.data))[0].batch_size
        parts = args.nproc * config.grad_accum
        if batch % parts:
            rounds = f" x {config.grad_accum} rounds" if config.grad_accum > 1 else ""
            raise GanvasError(f"--batch-size {batch} cannot be split evenly over {args.nproc} "
                              f"processes{rounds}; use a multiple of {parts}")
    return launch(args.nproc, without_nproc(args.argv),
                  log=lambda message: print(message, file=sys.stderr))


def _check_gpus(device: str, nproc: int) -> None:
    import torch

    from ganvas.utils.device import resolve_device

    if resolve_device(device).type == "cuda" and nproc > torch.cuda.device_count():
        raise GanvasError(f"--nproc {nproc}: this machine has {torch.cuda.device_count()} "
                          "GPU(s), one per process; give at most that many, or --device cpu")


def run(args: argparse.Namespace) -> int:
    from ganvas.distributed import launched_by_torchrun, process_rank
    from ganvas.training.session import resume, train

    from_file: dict = {}
    if args.config:
        from_file = load_yaml(args.config)
        TrainConfig.from_dict(from_file, source=f"--config {args.config}")  # fail early
        from_file = {k.replace("-", "_"): v for k, v in from_file.items()}
    flags = config_values(args)
    # A flag overrides the file: the other half of steps/epochs goes, option dicts merge.
    if "steps" in flags:
        from_file.pop("epochs", None)
    if "epochs" in flags:
        from_file.pop("steps", None)
    if "model_options" in flags and isinstance(from_file.get("model_options"), dict):
        flags["model_options"] = {**from_file["model_options"], **flags["model_options"]}
    values = {**from_file, **flags}
    if args.nproc is not None and not launched_by_torchrun():
        return _launch(args, values)
    if args.resume:
        if args.dry_run:
            print_stdout(f"would resume {args.resume} with: {values or 'no changes'}")
            return 0
        result = resume(args.resume, progress=not args.no_progress, **values)
    else:
        config = TrainConfig.from_dict(values, source="options").validate()
        if args.dry_run:
            print_stdout(dry_run(config))
            return 0
        result = train(config, progress=not args.no_progress)
    if process_rank() != 0:  # rank 0 says where the results are
        return 1 if result.diverged else 130 if _by_signal(result) else 0
    print_stdout(f"samples:   {result.samples}")
    print_stdout(f"curves:    {result.run_dir / 'loss.png'}")
    print_stdout(f"generator: {result.generator_dir}")
    if result.diverged:
        print_stdout(f"diverged:  see `ganvas doctor {result.run_dir}`; the checkpoint holds "
                     "the last good state")
        return 1
    if result.interrupted:
        print_stdout(f"resume:    ganvas train --resume {result.run_dir}")
        # a stop the run planned (--time, --stop-when-stale) is a success; Ctrl-C is not
        return 130 if _by_signal(result) else 0
    return 0


def _by_signal(result) -> bool:
    return result.interrupted and result.stop_reason is None
