"""Training a feed-forward styliser: for one style (Johnson et al. 2016), or a decoder
for any style (Huang & Belongie 2017).

The per-style network learns, on a folder of photos, to do in one forward pass what
``ganvas stylize`` does by optimisation: keep each photo's content features and match the
style picture's Gram matrices, with the same backbones, layers and loss definitions
(:mod:`ganvas.style`). The style picture is shown at ``style_size`` pixels (its longest
side): a smaller one gives finer strokes. With ``temporal_weight`` it also learns to
answer a photo moved by a few pixels with its result moved alike (the cause of flicker on
video is a network that does not), see :func:`temporal_term`.

The arbitrary decoder (:mod:`ganvas.stylisers.arbitrary`) learns to turn AdaIN-transformed
encoder features back into a picture whose features are those (content loss) and whose
per-layer feature statistics are the style's (style loss), over pairs of a photo and a
style picture from ``styles`` (without it, other photos of the folder).

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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganvas.errors import GanvasError
from ganvas.losses.recipe import complete_groups
from ganvas.losses.standard import check_optimizer
from ganvas.rng import numpy_stream
from ganvas.style.backbones import Backbone, load_backbone, tiny_backbone
from ganvas.style.images import fitted_size, open_picture, resized, to_tensor
from ganvas.style.losses import total_variation
from ganvas.stylisers.arbitrary import (
    ENCODER_LAYERS,
    ArbitraryStyliser,
    adain,
    measure,
    style_layers,
)
from ganvas.stylisers.folder import (
    CHECKPOINT_NAME,
    KIND_ARBITRARY,
    KIND_PER_STYLE,
    read_checkpoint,
    write_checkpoint,
    write_styliser,
)
from ganvas.stylisers.network import WIDTHS, Styliser
from ganvas.utils.checks import whole_number
from ganvas.utils.device import resolve_device
from ganvas.utils.images import make_grid, save_image
from ganvas.utils.progress import progress_bar
from ganvas.utils.signals import GracefulStop

DATA_STREAM = "styliser/data"
STYLES_STREAM = "styliser/styles"
MOTION_STREAM = "styliser/motion"
PREVIEWS = 4  # photos in each preview picture
MOTION = 8  # the largest shift, in pixels, of the temporal loss's moved photo
MOTION_NOISE = 2 / 255  # and the camera noise added to it
ADAIN_STYLE_WEIGHT = 10.0  # Huang & Belongie's lambda


@dataclass
class StyliserConfig:
    """Every setting of a styliser's training; saved in its checkpoint and its folder."""

    style: str | None
    content: str
    out: str
    arbitrary: bool = False  # a decoder for any style instead of a network for one
    styles: str | None = None  # arbitrary: a folder of style pictures; None: the photos
    temporal_weight: float = 0.0  # per-style: weight of the loss against flicker on video
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
        for name in ("content_weight", "style_weight", "tv_weight", "temporal_weight"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float))
                                          and math.isfinite(value) and value >= 0):
                raise GanvasError(f"--{name.replace('_', '-')} must be a finite number >= 0, "
                                  f"got {value!r:.40}")
        if self.arbitrary:
            if self.style is not None:
                raise GanvasError("--arbitrary learns any style from --styles FOLDER; drop "
                                  "--style (or drop --arbitrary to learn that one style)")
            if self.temporal_weight:
                raise GanvasError("--temporal-weight trains a per-style network; the "
                                  "arbitrary decoder is steadied at inference instead")
        elif self.style is None:
            raise GanvasError("style-train needs --style PICTURE (or --arbitrary)")
        elif self.styles is not None:
            raise GanvasError("--styles is for --arbitrary; one style is --style PICTURE")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Any, where: str) -> StyliserConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(values, dict) or not {"content", "out"} <= set(values):
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


def photos_for_step(step: int, batch: int, count: int, seed: int,
                    stream: str = DATA_STREAM) -> np.ndarray:
    """Indices of the photos of ``step``: a fresh shuffle per pass over the folder."""
    positions = np.arange(step * batch, step * batch + batch)
    out = np.empty(batch, dtype=np.int64)
    for epoch in np.unique(positions // count):
        order = numpy_stream(seed, stream, int(epoch)).permutation(count)
        here = positions // count == epoch
        out[here] = order[positions[here] % count]
    return out


def temporal_term(net: torch.nn.Module, batch: torch.Tensor, output: torch.Tensor,
                  step: int, seed: int) -> torch.Tensor:
    """How differently the network paints a photo moved by a few pixels (with a little
    camera noise): the mean squared difference, away from the borders, between the result
    for the moved photo and the first result moved alike. Video frames differ by motion
    and noise like this, and a network that does not follow them flickers (Gupta et al.
    2017 and ReCoNet train on real optical flow; a shift's flow is known exactly)."""
    rng = numpy_stream(seed, MOTION_STREAM, step)
    h, w = batch.shape[-2:]
    m = min(MOTION, min(h, w) // 8)  # small training crops move less
    dy, dx = (int(v) for v in rng.integers(-m, m + 1, 2))
    moved = batch[..., m + dy:h - m + dy, m + dx:w - m + dx]
    noise = torch.from_numpy(rng.standard_normal(moved.shape, dtype=np.float32)).to(batch)
    painted = net((moved + MOTION_NOISE * noise).clamp(0, 1))
    edge = 2 * m  # both results see their own borders there
    expected = output[..., m + dy + edge:h - m + dy - edge, m + dx + edge:w - m + dx - edge]
    return torch.nn.functional.mse_loss(painted[..., edge:-edge, edge:-edge], expected)


class AdaINLoss:
    """Huang & Belongie's objective for the decoder: the features of its picture must be the
    AdaIN target (content), and their mean and deviation at ``relu1_1`` .. the encoder's
    layer must be the style picture's (style)."""

    def __init__(self, net: ArbitraryStyliser, config: StyliserConfig):
        self.net = net
        self.layers = style_layers(net.backbone_name)
        self.weights = (1.0 if config.content_weight is None else config.content_weight,
                        ADAIN_STYLE_WEIGHT if config.style_weight is None
                        else config.style_weight)

    def __call__(self, content: torch.Tensor, style: torch.Tensor
                 ) -> tuple[torch.Tensor, dict[str, float]]:
        encoder = self.net.encoder
        with torch.no_grad():
            style_stats = [measure(f) for f in encoder(style, self.layers)]  # last: encoder's
            target = adain(encoder(content)[-1], style_stats[-1])
        output = self.net.decoder(target)
        features = encoder(output, self.layers)
        content_term = torch.nn.functional.mse_loss(features[-1], target)
        style_term = sum(torch.nn.functional.mse_loss(got.mean, want.mean)
                         + torch.nn.functional.mse_loss(got.std, want.std)
                         for got, want in zip((measure(f) for f in features), style_stats))
        cw, sw = self.weights
        loss = cw * content_term + sw * style_term
        return loss, {"loss": float(loss.detach()), "content": float(content_term.detach()),
                      "style": float(style_term.detach())}


def _backbone(config: StyliserConfig, device: torch.device) -> Backbone:
    if config.backbone == "tiny":  # a small random network, for tests
        return tiny_backbone().to(device)
    return load_backbone(config.backbone, config.weights, device=device)


class _PerStyle:
    """The network for one style, its loss and what its folder says about it."""

    def __init__(self, config: StyliserConfig, device: torch.device, log: Callable[[str], None]):
        style_side = config.style_size or config.size
        style_img = open_picture(config.style, "style image", longest=style_side)
        style = to_tensor(resized(style_img, fitted_size(style_img.size, style_side)))
        self.objective = PerceptualLoss(_backbone(config, device), style.to(device), config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.net = Styliser(config.width).to(device)
        self.trained = self.net
        self.config = config
        self.meta = {"kind": KIND_PER_STYLE, "width": config.width, "size": config.size,
                     "style": Path(config.style).name, "style_size": style_side,
                     "backbone": config.backbone}

    def loss(self, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        output = self.net(batch)
        loss, losses = self.objective(output, batch)
        if self.config.temporal_weight:
            term = temporal_term(self.net, batch, output, step, self.config.seed)
            loss = loss + self.config.temporal_weight * term
            losses = {**losses, "loss": float(loss.detach()), "temporal": float(term.detach())}
        return loss, losses

    def paint(self, photos: torch.Tensor) -> torch.Tensor:
        return self.net(photos)


class _Arbitrary:
    """The decoder for any style, its loss over photo and style pairs."""

    def __init__(self, config: StyliserConfig, device: torch.device, log: Callable[[str], None]):
        from ganvas.data import load_images

        if config.backbone not in ENCODER_LAYERS:
            raise GanvasError(f"--backbone {config.backbone}: no arbitrary decoder for it")
        backbone = _backbone(config, device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.net = ArbitraryStyliser(backbone, half=config.width == 16).to(device)
        del backbone
        self.trained = self.net.decoder
        self.objective = AdaINLoss(self.net, config)
        self.styles = None
        if config.styles is not None:
            self.styles = load_images(config.styles, resolution=config.style_size or config.size,
                                      channels=3, progress=False, log=log).images
        self.config = config
        self.meta = {"kind": KIND_ARBITRARY, "width": config.width, "size": config.size,
                     "backbone": config.backbone, "encoder_layer": self.net.encoder.layer}

    def style_batch(self, step: int, photos: np.ndarray) -> torch.Tensor:
        pictures = photos if self.styles is None else self.styles
        index = photos_for_step(step, self.config.batch_size, len(pictures), self.config.seed,
                                STYLES_STREAM)
        return torch.from_numpy(pictures[index]).float().div(255)

    def loss(self, batch: torch.Tensor, step: int, style: torch.Tensor
             ) -> tuple[torch.Tensor, dict[str, float]]:
        return self.objective(batch, style.to(batch.device))

    def paint(self, photos: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        stats = measure(self.net.encoder(style.to(photos.device))[-1])
        return self.net(photos, [stats])


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
        config = StyliserConfig(**{"style": None, **options}).check()
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
    task = (_Arbitrary if config.arbitrary else _PerStyle)(config, device, log)
    optimizer = torch.optim.Adam(task.trained.parameters(), lr=config.learning_rate)
    step = 0
    if state is not None:
        where = str(folder / CHECKPOINT_NAME)
        try:
            task.trained.load_state_dict(state["network"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise GanvasError(f"{where}: the weights do not fit the network "
                              f"({str(exc)[:100]})") from None
        complete_groups(optimizer)
        check_optimizer(optimizer, where)
        step = state["step"]
    folder.mkdir(parents=True, exist_ok=True)
    shown = photos_for_step(0, min(PREVIEWS, len(photos)), len(photos), config.seed)
    preview_photos = torch.from_numpy(photos[shown]).float().div(255)
    preview_style = task.style_batch(0, photos)[:1] if config.arbitrary else None

    def save(losses: dict[str, float]) -> None:
        write_checkpoint(folder / CHECKPOINT_NAME, {
            "config": config.to_dict(), "step": step, "network": task.trained.state_dict(),
            "optimizer": optimizer.state_dict(), "losses": losses})
        write_styliser(folder, task.net, {**task.meta, "step": step})

    def preview() -> None:
        task.trained.eval()
        with torch.no_grad():
            photos_here = preview_photos.to(device)
            out = (task.paint(photos_here) if preview_style is None
                   else task.paint(photos_here, preview_style)).cpu()
        task.trained.train()
        rows = [preview_photos, out]
        if preview_style is not None:  # the style, shrunk into the first column's corner
            rows.insert(0, _thumbnail(preview_style, out.shape[-2:], len(out)))
        grid = make_grid(torch.cat(rows) * 2 - 1, columns=len(out))
        save_image(grid, folder / "previews" / f"step-{step:07d}.png")

    losses: dict[str, float] = {}
    bar = progress_bar(total=config.steps, initial=step, unit="step", desc="style-train",
                       enabled=progress)
    started, session_steps, interrupted = time.perf_counter(), 0, False
    with GracefulStop(log) as signals, bar:
        try:
            while step < config.steps:
                index = photos_for_step(step, config.batch_size, len(photos), config.seed)
                batch = torch.from_numpy(photos[index]).to(device).float().div(255)
                loss, losses = (task.loss(batch, step, task.style_batch(step, photos))
                                if config.arbitrary else task.loss(batch, step))
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
                bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()}, refresh=False)
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


def _thumbnail(style: torch.Tensor, size: tuple[int, int], columns: int) -> torch.Tensor:
    """A row of the grid: the style picture first, blank after it."""
    row = torch.ones(columns, 3, *size)
    row[0] = torch.nn.functional.interpolate(style, size=tuple(size), mode="bilinear",
                                             antialias=True, align_corners=False)[0]
    return row
