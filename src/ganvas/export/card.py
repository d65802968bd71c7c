"""The model card every export folder carries (README.md): what the generator is, what it
was trained on and how, how good it got, and how to run it."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from ganvas.config import TrainConfig
from ganvas.health.report import train_flags
from ganvas.picture_size import picture_shape
from ganvas.runs import checkpoint as ckpt
from ganvas.runs.metrics import iter_metrics
from ganvas.runs.sources import GeneratorSource
from ganvas.utils.files import atomic_write_text

HOUSEKEEPING = ("out", "runs_dir", "progress")  # where a run was written, not how it trained


def training_command(config: dict[str, Any]) -> str:
    """The `ganvas train` command that gives ``config``: every setting that differs from the
    defaults (auto settings were filled in when the run started, so they are written out)."""
    defaults = TrainConfig().to_dict()
    changed = {name: value for name, value in config.items()
               if name not in HOUSEKEEPING and value is not None
               and value != defaults.get(name, value)}
    if changed.get("augment", config.get("augment")) != "diffaugment":
        changed.pop("diffaugment_policy", None)  # read only with --augment diffaugment
    aspect = config.get("aspect")
    if isinstance(aspect, str) and isinstance(config.get("resolution"), int):
        height, width = picture_shape(config["resolution"], aspect)
        changed["resolution"] = f"{width}x{height}"  # (the aspect has no flag of its own)
    return f"ganvas train {train_flags(changed)}"


def write_model_card(folder: Path, fmt: str, generator: Any, read: GeneratorSource,
                     source: Path, difference: float | None) -> Path:
    config = read.config if isinstance(read.config, dict) else {}
    classes = [str(name) for name in config.get("classes") or []] if generator.c_dim else []
    facts = _run_facts(source, read.step)
    data = config.get("data", "unknown")
    pictures = facts.get("num_images")
    height, width = generator.shape
    size = f"{width}x{height} px" if width != height else f"{width} px"
    lines = [
        f"# {config.get('model', 'ganvas')} generator, {size}",
        "",
        f"A {config.get('model', '?')} generator trained with ganvas and exported as {fmt}.",
        "",
        "| | |", "|---|---|",
        f"| family | {config.get('model', '?')} |",
        f"| pictures | {width} x {height} px (width x height), "
        f"{ {1: 'grayscale', 3: 'RGB'}.get(generator.channels, 'RGBA (with transparency)')} |",
        f"| latent | z, {generator.latent_dim} numbers from a standard normal distribution |",
        *([f"| classes | {', '.join(f'{i} {name}' for i, name in enumerate(classes))} "
           "(conditional: c, one-hot) |"] if classes else []),
        f"| trained on | {data}" + (f" ({pictures:,} pictures)" if pictures else "") + " |",
        f"| training | {read.step:,} steps" + (f", {facts['images_seen']:,} images seen"
                                               if facts.get("images_seen") else "") + " |",
        f"| FID | {facts['fid']} (at step {facts['fid_step']:,}, during training) |"
        if facts.get("fid") is not None else "| FID | not measured during training |",
        f"| source | {source} |",
        "",
        "Trained with:",
        "",
        "```bash",
        training_command(config),
        "```",
        "",
    ]
    if fmt == "onnx":
        lines += [
            "## Running it",
            "",
            "`generator.onnx` needs only onnxruntime and numpy (no ganvas, no PyTorch):",
            "",
            "```python",
            "import numpy as np",
            "import onnxruntime",
            "",
            "session = onnxruntime.InferenceSession(\"generator.onnx\")",
            f"z = np.random.default_rng(0).standard_normal((4, {generator.latent_dim}))"
            ".astype(np.float32)",
            "truncation = np.array(1.0, dtype=np.float32)  # below 1: more typical pictures",
            *([f"c = np.eye({len(classes)}, dtype=np.float32)[[0, 0, 1, 1]]  # classes "
               f"{classes[0]!r}, {classes[0]!r}, {classes[1]!r}, {classes[1]!r}",
               "images, = session.run(None, {\"z\": z, \"c\": c, \"truncation\": "
               "truncation})"] if classes else
              ["images, = session.run(None, {\"z\": z, \"truncation\": truncation})"]),
            "pictures = (images.transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)"
            "  # N x H x W x C",
            "```",
            "",
            f"Inputs: `z` (float32, N x {generator.latent_dim}, any N), "
            + (f"`c` (float32, N x {len(classes)}: one-hot rows, the classes in the order "
               "above) " if classes else "")
            + "and `truncation` (a float32 scalar, 1 for none); output: `images` (float32, N x "
            f"{generator.channels} x {height} x {width}, in "
            "[0, 1]). Per-pixel noise, where the family has it, is the fixed one. Checked "
            f"against PyTorch with onnxruntime when exported: at most {difference:.1e} apart.",
            "",
        ]
    else:
        lines += [
            "## Loading it",
            "",
            "```python",
            "import ganvas",
            "",
            f"model = ganvas.load({str(folder)!r})",
            "model.sample(16, seed=0)  # PIL images",
            "```",
            "",
            f"or `ganvas generate {shlex.quote(str(folder))} --num 64 --grid`.",
            "",
        ]
    atomic_write_text(folder / "README.md", "\n".join(lines))
    return folder / "README.md"


def run_folder(source: Path) -> Path:
    """The run a source belongs to: the folder itself, the run of a checkpoint file or of a
    generator folder (``RUN/generator``, ``RUN/best/generator``), where exports go."""
    if source.is_file():
        return source.parent.parent
    for candidate in (source, source.parent, source.parent.parent):
        if (candidate / ckpt.CHECKPOINT_DIR).is_dir():
            return candidate
    return source.parent if (source / "config.json").is_file() else source


def _run_facts(source: Path, step: int) -> dict[str, Any]:
    """Pictures, images seen and the last FID measured up to ``step``, from the run's
    checkpoints and metrics (what is unknown is left out)."""
    facts: dict[str, Any] = {}
    run = run_folder(source)
    if (run / ckpt.CHECKPOINT_DIR).is_dir():
        try:
            path = source if source.is_file() else ckpt.list_checkpoints(run)[-1]
            state = ckpt.load_checkpoint(path)
            facts["images_seen"] = int(state.get("images_seen", 0)) or None
            facts["num_images"] = int(state.get("dataset", {}).get("num_images", 0)) or None
        except Exception:  # noqa: BLE001 -- a card says less rather than failing an export
            pass
    metrics = run / "metrics.jsonl"
    if metrics.is_file():
        for record in iter_metrics(metrics):
            if isinstance(record.get("Metric/FID"), (int, float)) and record["step"] <= step:
                facts["fid"], facts["fid_step"] = record["Metric/FID"], record["step"]
    return facts
