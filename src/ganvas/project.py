"""Projecting a photo into a trained generator: the latent whose picture looks most like it.

For a model with style vectors (stylegan2) the search is in W, from the mean style, over
one w shared by every layer, together with the per-pixel noise maps (kept from carrying the
picture by a penalty on their autocorrelation at every scale, and renormalised after each
step), as in the StyleGAN2 paper. For the other families it is in z, from next to z = 0, the
mean latent (a family that normalises z first sees a random direction there).
Adam follows a learning-rate ramp up and down, and the latent is jittered early on so the
search does not stop at the first nearby optimum. The distance is perceptual: normalised
VGG features of both pictures at a few depths (ganvas's own backbones; the offline
``vgg16-hed`` by default), plus a small pixel term that keeps the colours.

Nothing here imports the trainer: a run folder, a checkpoint or an exported generator works.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ganvas.data.preprocess import fit_square, to_mode
from ganvas.generate import ImageGenerator
from ganvas.latents import save_latent
from ganvas.picture_size import picture_fit
from ganvas.utils.checks import whole_number
from ganvas.utils.images import make_grid, save_image, to_pil

# Layers of each backbone the distance compares (images are small: the deepest are left out).
DISTANCE_LAYERS = {"vgg16-hed": ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
                   "vgg16": ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
                   "vgg19": ("relu1_2", "relu2_2", "relu3_4", "relu4_4"),
                   "tiny": ("relu1_2", "relu2_2")}
FEATURE_SIDE = 128  # pictures are compared at least this large (VGG wants some pixels)
PIXEL_WEIGHT = 0.1
NOISE_WEIGHT = 1e5  # the paper's weight of the noise maps' autocorrelation penalty
LEARNING_RATE = 0.1
LATENT_JITTER = 0.05  # early jitter of the latent, in units of its spread
# A final distance above this fraction of the distance between two of the model's own
# samples means the model cannot draw anything like the photo. Set from few pictures: a
# 64 px StyleGAN2 trained on emoji (two samples 1.10 apart) projected two of its emoji to
# 0.07 and 0.32 and a cat photo to 0.45.
FAR_FRACTION = 0.35
MAX_STEPS = 100_000


@dataclass
class Projection:
    """The result of :func:`project`.

    Attributes:
        kind: ``"w"`` (a style vector for every layer, ``[1, num_ws, w_dim]``) or ``"z"``.
        latent: the latent found.
        image: its picture ``[1, C, H, W]`` in ``[-1, 1]``; ``target`` the photo, alike.
        distances: the distance to the photo at every step.
        typical: the distance between two of the model's own samples (the yardstick).
        noise: the optimised noise map of every noise input (stylegan2), in model order.
        frames: pictures of the search (target beside the current projection).
        label: for a conditional model, the index of the class searched in (a z latent
            draws its picture only with it; a w latent holds the class already).
    """

    kind: str
    latent: torch.Tensor
    image: torch.Tensor
    target: torch.Tensor
    distances: list[float]
    typical: float
    noise: list[torch.Tensor] = field(default_factory=list)
    frames: list[Image.Image] = field(default_factory=list)
    label: int | None = None

    @property
    def distance(self) -> float:
        return self.distances[-1]

    @property
    def far(self) -> bool:
        return self.distance > FAR_FRACTION * self.typical


class PerceptualDistance:
    """Mean squared difference of channel-normalised VGG features (and pixels) of two
    batches of pictures in ``[-1, 1]``."""

    def __init__(self, backbone, channels: int):
        self.backbone, self.channels = backbone, channels
        self.layers = DISTANCE_LAYERS.get(backbone.name, backbone.defaults.style_layers)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images.float() + 1) / 2
        if self.channels == 1:
            x = x.expand(-1, 3, -1, -1)
        height, width = x.shape[-2:]
        if min(height, width) < FEATURE_SIDE:  # (a non-square picture keeps its shape)
            scale = FEATURE_SIDE / min(height, width)
            x = F.interpolate(x, size=(round(height * scale), round(width * scale)),
                              mode="bilinear", align_corners=False)
        found = self.backbone(self.backbone.preprocess(x), self.layers)
        return [f / (f.square().sum(1, keepdim=True).sqrt() + 1e-10) for f in found.values()]

    def __call__(self, images: torch.Tensor, target: torch.Tensor,
                 target_features: list[torch.Tensor] | None = None) -> torch.Tensor:
        """One distance per image of ``images`` against ``target`` (``[1, ...]``)."""
        mine = self.features(images)
        theirs = target_features if target_features is not None else self.features(target)
        feature = sum((a - b).square().sum(1).mean((1, 2)) for a, b in zip(mine, theirs))
        pixel = (images.float() - target.float()).square().mean((1, 2, 3))
        return feature / len(mine) + PIXEL_WEIGHT * pixel


def load_photo(path: str | os.PathLike | Image.Image, resolution: int, channels: int,
               aspect: tuple[int, int] = (1, 1), fit: str = "crop") -> torch.Tensor:
    """A photo as ``[1, C, R, R]`` in ``[-1, 1]``: centre-cropped square, resized (a
    non-square model's ``aspect``: fitted to its shape as its training pictures were)."""
    from ganvas.style.images import open_picture

    picture = open_picture(path, "photo")
    if tuple(aspect) == (1, 1):
        picture = to_mode(fit_square(picture, resolution), channels)
        array = np.array(picture, dtype=np.float32).reshape(resolution, resolution, channels)
    else:
        from ganvas.data.preprocess import process_image

        array = process_image(picture, resolution, channels, aspect=aspect, fit=fit)
        array = array.transpose(1, 2, 0).astype(np.float32)
    return (torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1) / 127.5 - 1
            ).unsqueeze(0)


def project(model: ImageGenerator, photo: str | os.PathLike | Image.Image, *,
            steps: int = 1000, seed: int = 0, backbone=None, frames: int = 40,
            progress=None, label: str | int | None = None) -> Projection:
    """Find the latent of ``model`` whose picture is closest to ``photo``.

    Args:
        model: a loaded generator (:func:`ganvas.load`).
        photo: a picture file or a PIL image (any size: centre-cropped to a square).
        steps: optimisation steps.
        seed: seeds the jitter, so the same call gives the same result.
        backbone: the feature network (default: the offline ``vgg16-hed``).
        frames: how many pictures of the search to keep (for the GIF).
        progress: called as ``progress(step, distance)`` after every step, or None.
        label: a conditional model's class to search in (name or index; default its first).
    """
    whole_number(steps, "--steps", 1, MAX_STEPS)
    whole_number(seed, "--seed", 0, 2**63 - 1)
    index = (model.class_index(label if label is not None else 0) if model.classes
             else model.class_index(label) if label is not None else None)
    c = None if index is None else model.labels_for(1, index).to(model.device)
    if backbone is None:
        from ganvas.style.backbones import load_backbone

        backbone = load_backbone("vgg16-hed", device=model.device)
    G = copy.deepcopy(model.generator).eval().requires_grad_(False)
    device = model.device
    fit = picture_fit(model.config)["fit"]
    target = load_photo(photo, G.resolution, G.channels, G.aspect, fit).to(device)
    distance = PerceptualDistance(backbone, G.channels)
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        target_features = distance.features(target)
        typical = _typical_distance(G, distance, rng, device, c)

    styled = model.has_styles
    if styled:
        with torch.no_grad():  # the spread of w around its mean, for the jitter
            spread_z = torch.randn(1000, G.latent_dim, generator=rng).to(device)
            ws = G.map(spread_z, None if c is None else c.expand(len(spread_z), -1))[:, 0]
            # a conditional model starts from its class's average style (the global one
            # mixes the classes)
            start = G.w_avg if c is None else ws.mean(0)
            spread = float((ws - start).square().sum(1).mean().sqrt())
        latent = start.detach().clone().view(1, -1).requires_grad_(True)
        noise_maps = _free_noise_maps(G, rng)
    else:
        spread = 1.0
        # z = 0 is the mean latent; a pinch of noise gives it a direction where a generator
        # normalises its latent first.
        latent = (torch.randn(1, G.latent_dim, generator=rng) * 1e-3).to(device)
        latent.requires_grad_(True)
        noise_maps = []
    optimizer = torch.optim.Adam([latent, *noise_maps], lr=LEARNING_RATE, betas=(0.9, 0.999))
    every = max(1, steps // max(frames, 1))
    distances, kept = [], []
    for step in range(steps):
        t = step / steps
        for group in optimizer.param_groups:
            group["lr"] = LEARNING_RATE * _learning_rate_ramp(t)
        jitter = spread * LATENT_JITTER * max(0.0, 1 - t / 0.75) ** 2
        noisy = latent + torch.randn(latent.shape, generator=rng).to(device) * jitter
        images = _draw(G, noisy, styled, c)
        loss_per_image = distance(images, target, target_features)
        loss = loss_per_image.sum() + NOISE_WEIGHT * _noise_penalty(noise_maps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for noise in noise_maps:  # zero mean, unit variance: noise, not a picture
                noise.sub_(noise.mean()).div_(noise.square().mean().sqrt() + 1e-8)
        distances.append(float(loss_per_image.detach()))
        if frames and (step % every == 0 or step == steps - 1):
            with torch.no_grad():
                kept.append(_frame(target, _draw(G, latent, styled, c)))
        if progress is not None:
            progress(step + 1, distances[-1])
    with torch.no_grad():
        final = _draw(G, latent, styled, c).clamp(-1, 1)
        distances[-1] = float(distance(final, target, target_features))
        result = G.broadcast(latent) if styled else latent
    return Projection("w" if styled else "z", result.detach().cpu(), final.cpu(), target.cpu(),
                      distances, typical, [n.detach().cpu() for n in noise_maps], kept, index)


def _draw(G, latent: torch.Tensor, styled: bool, c: torch.Tensor | None) -> torch.Tensor:
    if styled:
        return G.synthesize(G.broadcast(latent), "const", clamp=False)
    return G.sample(latent, c)


def _typical_distance(G, distance: PerceptualDistance, rng: torch.Generator,
                      device: torch.device, c: torch.Tensor | None) -> float:
    """Mean distance between two of the model's samples (of the class ``c``), over 8
    pairs."""
    z = torch.randn(16, G.latent_dim, generator=rng).to(device)
    images = G.sample(z, None if c is None else c.expand(len(z), -1))
    a, b = images[:8], images[8:]
    features = distance.features(b)
    return float(sum(distance(a[i:i + 1], b[i:i + 1], [f[i:i + 1] for f in features])
                     for i in range(8)) / 8)


def _free_noise_maps(G, rng: torch.Generator) -> list[torch.Tensor]:
    """Make the constant noise maps of (a copy of) G free to optimise, from fresh noise."""
    maps = []
    for module in G.noise_inputs():
        fresh = torch.randn(module.noise_const.shape, generator=rng)
        module.noise_const = fresh.to(module.noise_const.device).requires_grad_(True)
        maps.append(module.noise_const)
    return maps


def _noise_penalty(maps: list[torch.Tensor]) -> torch.Tensor:
    """Squared autocorrelation of each noise map with its neighbours, at every scale down
    to 8 px: large when the maps carry structure instead of noise."""
    total = maps[0].new_zeros(()) if maps else torch.zeros(())
    for noise in maps:
        x = noise[None, None]
        while True:
            total = total + (x * torch.roll(x, 1, dims=3)).mean().square() \
                + (x * torch.roll(x, 1, dims=2)).mean().square()
            if x.shape[-1] <= 8:
                break
            x = F.avg_pool2d(x, 2)
    return total


def _learning_rate_ramp(t: float) -> float:
    """Up over the first 5 %, a cosine down over the last 25 %."""
    down = min(1.0, (1 - t) / 0.25)
    return (0.5 - 0.5 * math.cos(down * math.pi)) * min(1.0, t / 0.05 + 1e-3)


def _frame(target: torch.Tensor, image: torch.Tensor) -> Image.Image:
    return make_grid(torch.cat([target.cpu(), image.clamp(-1, 1).cpu()]), columns=2)


def project_to_folder(source: str | os.PathLike, photo: str | os.PathLike,
                      out: str | os.PathLike, *, steps: int = 1000, seed: int = 0,
                      device: str = "auto", backbone: str = "vgg16-hed",
                      backbone_weights: str | None = None, progress: bool = True,
                      log=print, label: str | int | None = None) -> Projection:
    """``ganvas project``: write ``projection.png`` (photo | projection), ``latent.safetensors``
    and ``search.gif`` into ``out``; warn when the model cannot draw anything like the
    photo."""
    from ganvas.generate import load
    from ganvas.runs.folders import ensure_writable_dir
    from ganvas.style.backbones import load_backbone

    whole_number(steps, "--steps", 1, MAX_STEPS)
    model = load(source, device=device)
    model.labels_for(1, label)  # an unknown class fails before any work
    out = Path(out)
    ensure_writable_dir(out, "--out")
    network = load_backbone(backbone, backbone_weights, device=model.device)
    bar = None
    if progress:
        from ganvas.utils.progress import progress_bar

        bar = progress_bar(total=steps, desc="projecting", unit="step")

    def report(step: int, value: float) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix(distance=f"{value:.4f}", refresh=False)

    try:
        result = project(model, photo, steps=steps, seed=seed, backbone=network,
                         progress=report, label=label)
    finally:
        if bar is not None:
            bar.close()
    save_image(_frame(result.target, result.image), out / "projection.png")
    save_image(to_pil(result.image)[0], out / "projected.png")
    save_latent(out / "latent.safetensors", result, model.config)
    if result.frames:
        _save_gif(result.frames, out / "search.gif")
    log(f"distance {result.distance:.4f} (two of the model's own samples: "
        f"{result.typical:.4f}); wrote projection.png, projected.png, latent.safetensors and "
        f"search.gif to {out}")
    if result.far:
        log(f"warning: {photo} stays far from anything this model draws (distance "
            f"{result.distance:.4f}, more than {FAR_FRACTION:g} x {result.typical:.4f}): the "
            "projection is a rough likeness at best; a model trained on pictures like this "
            "one projects it better")
    return result


def _save_gif(frames: list[Image.Image], path: Path) -> Path:
    from ganvas.utils.files import atomic_write

    with atomic_write(path) as handle:
        frames[0].save(handle, format="GIF", save_all=True, append_images=frames[1:],
                       duration=80, loop=0)
    return path
