"""The pictures the fast-style benchmark and the documentation's examples are made from, all from
packages that work offline: training photos cut from the photos that scikit-image and
scikit-learn ship, and style pictures (their textures, a photo of flowers, and two
patterns drawn here).

    python benchmarks/style_pictures.py photos DIR [--count 144]
    python benchmarks/style_pictures.py styles DIR
    python benchmarks/style_pictures.py docs DIR --styliser STYLER --decoder ANYSTYLE \
        --style STYLE.png      # the documentation's pictures: results, an any-style grid, a GIF
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field",
          "motorcycle_left", "cat")
TEXTURES = ("brick", "grass", "gravel")
HELD_OUT = ("chelsea", "coffee", "astronaut")  # shown in the documentation, so not trained on


def source_photos(*, held_out: bool = False) -> dict[str, Image.Image]:
    """The colour photos of the two packages (``held_out``: only those kept out of
    training)."""
    import skimage.data
    from sklearn.datasets import load_sample_image

    found = {}
    for name in PHOTOS:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            continue
        try:
            array = loader()
        except Exception:  # noqa: BLE001 -- some loaders fetch over the network
            continue
        if isinstance(array, tuple):
            array = array[0]
        if array.ndim == 3 and array.shape[2] >= 3:
            found[name] = Image.fromarray(np.ascontiguousarray(array[..., :3]))
    found["china"] = Image.fromarray(load_sample_image("china.jpg"))
    if held_out:
        return {k: v for k, v in found.items() if k in HELD_OUT}
    return {k: v for k, v in found.items() if k not in HELD_OUT}


def make_photos(folder: Path, count: int = 144, size: int = 256, seed: int = 0) -> list[Path]:
    """``count`` square crops of random position and scale (and mirrored half the time)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = list(source_photos().values())
    written = []
    for i in range(count):
        photo = photos[i % len(photos)]
        w, h = photo.size
        side = int(rng.uniform(0.3, 1.0) * min(w, h))
        left, top = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        crop = photo.crop((left, top, left + side, top + side)).resize(
            (size, size), Image.Resampling.LANCZOS)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        path = folder / f"photo-{i:04d}.jpg"
        crop.save(path, quality=92)
        written.append(path)
    return written


def stripes(size: int = 512) -> Image.Image:
    """Bold diagonal bands of colour, like a poster."""
    y, x = np.mgrid[:size, :size]
    band = ((x + y) // 40) % 4
    palette = np.array([(231, 76, 60), (241, 196, 15), (39, 60, 117), (245, 245, 235)])
    return Image.fromarray(palette[band].astype(np.uint8))


def strokes(size: int = 512, seed: int = 0) -> Image.Image:
    """Many short thick strokes of a blue-orange palette, like a painting's brushwork."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), (30, 40, 70))
    draw = ImageDraw.Draw(image)
    palette = [(242, 140, 40), (250, 210, 90), (70, 110, 190), (20, 30, 60), (230, 230, 220)]
    for _ in range(1500):
        x, y = rng.uniform(0, size, 2)
        angle = rng.uniform(0, np.pi)
        length = rng.uniform(10, 40)
        dx, dy = np.cos(angle) * length, np.sin(angle) * length
        draw.line((x - dx, y - dy, x + dx, y + dy), width=int(rng.integers(4, 10)),
                  fill=palette[int(rng.integers(len(palette)))])
    return image


def style_pictures() -> dict[str, Image.Image]:
    import skimage.data
    from sklearn.datasets import load_sample_image

    found = {"flower": Image.fromarray(load_sample_image("flower.jpg")),
             "strokes": strokes(), "stripes": stripes()}
    for name in TEXTURES:
        array = getattr(skimage.data, name)()
        found[name] = Image.fromarray(array).convert("RGB")
    return found


ANY_STYLES = ("strokes", "gravel", "stripes", "flower")


def _tile(images: list[list[Image.Image | None]], side: int, gap: int = 4) -> Image.Image:
    """Rows of pictures, each fitted into a ``side`` square cell, on white."""
    columns = max(len(r) for r in images)
    sheet = Image.new("RGB", (columns * (side + gap) - gap, len(images) * (side + gap) - gap),
                      "white")
    for r, row in enumerate(images):
        for c, picture in enumerate(row):
            if picture is None:
                continue
            fitted = picture.copy()
            fitted.thumbnail((side, side), Image.Resampling.LANCZOS)
            x = c * (side + gap) + (side - fitted.width) // 2
            y = r * (side + gap) + (side - fitted.height) // 2
            sheet.paste(fitted, (x, y))
    return sheet


def make_docs(folder: Path, styliser: Path, decoder: Path, style: Path) -> list[Path]:
    """The documentation's pictures, every one made here from the held-out photos."""
    import tempfile

    import torch

    from ganvas.style.images import fitted_size, resized, to_image, to_tensor
    from ganvas.stylisers.apply import ArbitraryStyle, make_painter
    from ganvas.stylisers.folder import load_styliser
    from ganvas.video.painters import network_painter
    from ganvas.video.stylise import stylise_video

    folder.mkdir(parents=True, exist_ok=True)
    photos = [resized(p, fitted_size(p.size, 512)) for p in source_photos(held_out=True).values()]
    per_style = make_painter(load_styliser(styliser)[0])
    with torch.no_grad():
        painted = [to_image(per_style(to_tensor(p))) for p in photos]
    written = [folder / "styliser-photos.jpg"]
    _tile([[Image.open(style).convert("RGB"), *photos], [None, *painted]], 300).save(
        written[-1], quality=90)

    styles = style_pictures()
    decoder_net = load_styliser(decoder)[0]
    rows: list[list[Image.Image | None]] = [[None, *(styles[n] for n in ANY_STYLES)]]
    for photo in photos:
        row: list[Image.Image | None] = [photo]
        for name in ANY_STYLES:
            paint = make_painter(decoder_net, style=ArbitraryStyle([styles[name]]))
            with torch.no_grad():
                row.append(to_image(paint(to_tensor(photo))))
        rows.append(row)
    written.append(folder / "anystyle-grid.jpg")
    _tile(rows, 220).save(written[-1], quality=90)

    from fractions import Fraction

    from ganvas.video.io import FrameWriter

    with tempfile.TemporaryDirectory() as tmp:
        clip, frames_in = Path(tmp) / "clip.mp4", []
        big = np.asarray(photos[0].resize((640, 480), Image.Resampling.LANCZOS))
        writer = FrameWriter(clip, 320, 240, Fraction(12))
        for i in range(24):  # a slow drift across the photo
            frame = np.ascontiguousarray(big[60 + i * 2:300 + i * 2, 40 + i * 6:360 + i * 6])
            writer.write(frame)
            frames_in.append(Image.fromarray(frame))
        writer.close()
        frames_out: list[np.ndarray] = []
        stylise_video(clip, Path(tmp) / "out.mp4", network_painter(per_style), settings={},
                      progress=False, log=lambda m: None, on_frame=frames_out.append)
    pairs = [_tile([[a, Image.fromarray(b)]], 256) for a, b in zip(frames_in, frames_out)]
    written.append(folder / "styliser-video.gif")
    pairs[0].save(written[-1], save_all=True, append_images=pairs[1:], duration=83, loop=0,
                  optimize=True)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("photos", "styles", "docs"))
    parser.add_argument("folder", type=Path)
    parser.add_argument("--styliser", type=Path)
    parser.add_argument("--decoder", type=Path)
    parser.add_argument("--style", type=Path)
    parser.add_argument("--count", type=int, default=144)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    if args.what == "photos":
        written = make_photos(args.folder, args.count, args.size)
    elif args.what == "docs":
        if not (args.styliser and args.decoder and args.style):
            parser.error("docs needs --styliser, --decoder and --style")
        written = make_docs(args.folder, args.styliser, args.decoder, args.style)
    else:
        args.folder.mkdir(parents=True, exist_ok=True)
        written = []
        for name, picture in style_pictures().items():
            written.append(args.folder / f"{name}.png")
            picture.save(written[-1])
    print(f"wrote {len(written)} pictures to {args.folder}")


if __name__ == "__main__":
    main()
