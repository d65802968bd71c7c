"""Training a feed-forward styliser for one style (Johnson et al. 2016).

The network learns, on a folder of photos, to do in one forward pass what ``ganvas
stylize`` does by optimisation: keep each photo's content features and match the style
picture's Gram matrices, with the same backbones, layers and loss definitions
(:mod:`ganvas.style`). The style picture is shown at ``style_size`` pixels (its longest
side): a smaller one gives finer strokes.

Everything is a function of the step: the photos of step ``s`` are positions
``s * batch .. s * batch + batch - 1`` of a shuffled order drawn anew for each pass over
the folder from a named random stream, so a resumed run continues exactly. A checkpoint
(weights, optimiser, step, config) is written atomically every ``checkpoint_every`` steps,
on Ctrl-C and at the end, together with the styliser itself (``styliser.safetensors`` +
``styliser.json``), which ``ganvas stylize --model`` reads.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ganvas.errors import GanvasError
from ganvas.losses.recipe import complete_groups
from ganvas.losses.standard import check_optimizer
from ganvas.rng import numpy_stream
from ganvas.style.backbones import Backbone, load_backbone, tiny_backbone
from ganvas.style.images import open_picture, to_tensor
from ganvas.style.losses import total_variation
from ganvas.stylisers.folder import (
    CHECKPOINT_NAME,
    read_checkpoint,
    write_checkpoint,
    write_styliser,
)
from ganvas.stylisers.network import WIDTHS, Styliser
from ganvas.training.signals import GracefulStop
from ganvas.utils.checks import whole_number
from ganvas.utils.device import resolve_device
from ganvas.utils.images import make_grid, save_image

DATA_STREAM = "styliser/data"
PREVIEWS = 4  # photos in each preview picture


@dataclass
class StyliserConfig:
    """Every setting of a styliser's training; saved in its checkpoint and its folder."""

    style: str
    content: str
    out: str
    steps: int = 2000
    batch_size: int = 4
    size: int = 256  # side of the (centre-cropped, square) training photos
    style_size: int | None = None  # longest side of the style picture; None: ``size``
    width: int = 32  # 32: the paper's network; 16: half width, about 3x faster on a CPU
    backbone: str = "vgg19"
    weights: str | None = None
    content_weight: float | None = None  # None: the backbone's tuned default
    style_weight: float | None = None
    tv_weight: float | None = None
    learning_rate: float = 1e-3
    seed: int = 0
    preview_every: int = 100
    checkpoint_every: int = 200
    device: str = "auto"

    def check(self) -> StyliserConfig:
        whole_number(self.steps, "--steps", 1, 10_000_000)
        whole_number(self.batch_size, "--batch-size", 1, 1024)
        whole_number(self.size, "--size", 32, 4096)
        if self.style_size is not None:
            whole_number(self.style_size, "--style-size", 32, 8192)
        whole_number(self.seed, "--seed", 0, 2**63 - 1)
        whole_number(self.preview_every, "--preview-every", 1, 10_000_000)
        whole_number(self.checkpoint_every, "--checkpoint-every", 1, 10_000_000)
        if self.width not in WIDTHS:
            raise GanvasError(f"--width must be 32 (the paper's network) or 16 (half width), "
                              f"got {self.width}")
        if not (isinstance(self.learning_rate, (int, float)) and
                math.isfinite(self.learning_rate) and 0 < self.learning_rate <= 1):
            raise GanvasError(f"--lr must be a positive number up to 1, got "
                              f"{self.learning_rate!r:.40}")
        for name in ("content_weight", "style_weight", "tv_weight"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise GanvasError(f"--{name.replace('_', '-')} must be a finite number >= 0, "
                                  f"got {value}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Any, where: str) -> StyliserConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(values, dict) or not {"style", "content", "out"} <= set(values):
            raise GanvasError(f"{where}: the saved training settings are not readable")
        try:
            return cls(**{k: v for k, v in values.items() if k in names}).check()
        except (TypeError, GanvasError) as exc:
            raise GanvasError(f"{where}: the saved training settings are damaged "
                              f"({str(exc)[:100]})") from None


@dataclass
class StyliserResult:
    folder: Path
    step: int
    losses: dict[str, float]
    interrupted: bool


class PerceptualLoss:
    """``ganvas stylize``'s objective for a batch: content features, style Gram matrices
    (of one style picture, against each image of the batch) and total variation."""

    def __init__(self, backbone: Backbone, style: torch.Tensor, config: StyliserConfig):
        d = backbone.defaults
        self.backbone = backbone
        self.content_layers = list(d.content_layers)
        self.style_layers = list(d.style_layers)
        self.layer_weights = dict(zip(self.style_layers, d.style_layer_weights))
        self.weights = (
            d.content_weight if config.content_weight is None else config.content_weight,
            d.style_weight if config.style_weight is None else config.style_weight,
            d.tv_weight if config.tv_weight is None else config.tv_weight)
        with torch.no_grad():
            features = backbone(backbone.preprocess(style), self.style_layers)
        self.style_grams = {name: batch_gram(f) for name, f in features.items()}

    def __call__(self, output: torch.Tensor, content: torch.Tensor
                 ) -> tuple[torch.Tensor, dict[str, float]]:
        b = self.backbone
        with torch.no_grad():
            targets = b(b.preprocess(content), self.content_layers)
        features = b(b.preprocess(output), self.content_layers + self.style_layers)
        content_term = sum(torch.nn.functional.mse_loss(features[n], targets[n])
                           for n in self.content_layers)
        style_term = sum(self.layer_weights[n] * torch.nn.functional.mse_loss(
            batch_gram(features[n]), self.style_grams[n].expand(len(output), -1, -1))
            for n in self.style_layers)
        tv_term = total_variation(output)
        cw, sw, tw = self.weights
        loss = cw * content_term + sw * style_term + tw * tv_term
        return loss, {"loss": float(loss.detach()), "content": float(content_term.detach()),
                      "style": float(style_term.detach())}


def batch_gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrices ``[N, C, C]`` of ``[N, C, H, W]`` features, normalised by C*H*W (as
    :func:`ganvas.style.losses.gram_matrix`)."""
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def photos_for_step(step: int, batch: int, count: int, seed: int) -> np.ndarray:
    """Indices of the photos of ``step``: a fresh shuffle per pass over the folder."""
    positions = np.arange(step * batch, step * batch + batch)
    out = np.empty(batch, dtype=np.int64)
    for epoch in np.unique(positions // count):
        order = numpy_stream(seed, DATA_STREAM, int(epoch)).permutation(count)
        here = positions // count == epoch
        out[here] = order[positions[here] % count]
    return out


def _backbone(config: StyliserConfig, device: torch.device) -> Backbone:
    if config.backbone == "tiny":  # a small random network, for tests
        return tiny_backbone().to(device)
    return load_backbone(config.backbone, config.weights, device=device)


def train_styliser(*, resume: str | None = None, progress: bool = True,
                   log: Callable[[str], None] = print,
                   stop_after: int | None = None, **options: Any) -> StyliserResult:
    """Train (or, with ``resume=FOLDER``, continue) a styliser; options are the fields of
    :class:`StyliserConfig`. ``resume`` takes a new ``steps`` to train longer.
    ``stop_after`` ends this session after that many steps (as Ctrl-C would)."""
    state = None
    if resume is not None:
        folder = Path(resume)
        state = read_checkpoint(folder / CHECKPOINT_NAME)
        saved = StyliserConfig.from_dict(state["config"], str(folder / CHECKPOINT_NAME))
        unknown = set(options) - {"steps", "device"}
        if unknown:
            raise GanvasError(f"--resume continues the saved settings; only --steps and "
                              f"--device can change (not {', '.join(sorted(unknown))})")
        config = dataclasses.replace(saved, out=str(folder), **options).check()
    else:
        config = StyliserConfig(**options).check()
        folder = Path(config.out)
        if (folder / CHECKPOINT_NAME).exists():
            raise GanvasError(f"-o {folder} already holds a styliser in training; continue it "
                              f"with --resume {folder}, or choose another -o")
        if folder.exists() and not folder.is_dir():
            raise GanvasError(f"-o {folder}: a file is in the way; choose another -o")
    device = resolve_device(config.device)

    from ganvas.data import load_images

    photos = load_images(config.content, resolution=config.size, channels=3,
                         progress=progress, log=log).images
    if len(photos) < 1:
        raise GanvasError(f"--content {config.content}: no usable photos")
    style_img = open_picture(config.style, "style image", longest=config.style_size
                             or config.size)
    style_side = config.style_size or config.size
    from ganvas.style.images import fitted_size, resized

    style = to_tensor(resized(style_img, fitted_size(style_img.size, style_side))).to(device)
    backbone = _backbone(config, device)
    objective = PerceptualLoss(backbone, style, config)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = Styliser(config.width)
    net = net.to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    step = 0
    if state is not None:
        where = str(folder / CHECKPOINT_NAME)
        try:
            net.load_state_dict(state["network"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise GanvasError(f"{where}: the weights do not fit the network "
                              f"({str(exc)[:100]})") from None
        complete_groups(optimizer)
        check_optimizer(optimizer, where)
        step = state["step"]
    folder.mkdir(parents=True, exist_ok=True)
    preview_photos = torch.from_numpy(
        photos[photos_for_step(0, min(PREVIEWS, len(photos)), len(photos), config.seed)]
    ).float().div(255)

    def save(losses: dict[str, float]) -> None:
        write_checkpoint(folder / CHECKPOINT_NAME, {
            "config": config.to_dict(), "step": step, "network": net.state_dict(),
            "optimizer": optimizer.state_dict(), "losses": losses})
        write_styliser(folder, net, {"width": config.width, "size": config.size,
                                     "style": Path(config.style).name, "step": step,
                                     "style_size": style_side, "backbone": config.backbone})

    def preview() -> None:
        net.eval()
        with torch.no_grad():
            out = net(preview_photos.to(device)).cpu()
        net.train()
        grid = make_grid(torch.cat([preview_photos, out]) * 2 - 1, columns=len(out))
        save_image(grid, folder / "previews" / f"step-{step:07d}.png")

    losses: dict[str, float] = {}
    interval = 0.5 if sys.stderr.isatty() else 30.0
    bar = tqdm(total=config.steps, initial=step, unit="step", desc="style-train",
               disable=not progress, dynamic_ncols=True, file=sys.stderr, mininterval=interval)
    started, session_steps, interrupted = time.perf_counter(), 0, False
    with GracefulStop(log) as signals, bar:
        try:
            while step < config.steps:
                index = photos_for_step(step, config.batch_size, len(photos), config.seed)
                batch = torch.from_numpy(photos[index]).to(device).float().div(255)
                output = net(batch)
                loss, losses = objective(output, batch)
                if not math.isfinite(losses["loss"]):
                    raise GanvasError(
                        f"the loss became {losses['loss']} at step {step}; try a lower --lr "
                        f"(now {config.learning_rate}) or --style-weight, and --resume "
                        f"{folder} from the last checkpoint")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                session_steps += 1
                bar.update(1)
                bar.set_postfix(loss=f"{losses['loss']:.4g}", content=f"{losses['content']:.3g}",
                                style=f"{losses['style']:.3g}", refresh=False)
                if step % config.preview_every == 0 or step == config.steps:
                    preview()
                if step % config.checkpoint_every == 0 or step == config.steps:
                    save(losses)
                if signals.received is not None or (stop_after is not None
                                                    and session_steps >= stop_after):
                    interrupted = step < config.steps
                    break
        except KeyboardInterrupt:
            interrupted = True
        if interrupted or step % config.checkpoint_every:
            save(losses)
    rate = session_steps / max(time.perf_counter() - started, 1e-9)
    log(f"styliser in {folder} after step {step:,} of {config.steps:,} "
        f"({rate * config.batch_size:.1f} photos/s)" + (": stopped early; continue with "
                                                        f"--resume {folder}" if interrupted
                                                        else ""))
    return StyliserResult(folder, step, losses, interrupted)

