"""Make the style-transfer pictures in the README (offline: vgg16-hed, bundled photos).

    python docs/style_examples.py            # writes docs/images/style-*.png

Each picture is content | style | result, made by ``ganvas.stylize`` with the options
printed next to it, so any of them can be rerun from the command line.
"""

from __future__ import annotations

import time
from pathlib import Path

import skimage.data
from PIL import Image, ImageDraw
from sklearn.datasets import load_sample_image

import ganvas

OUT = Path(__file__).parent / "images"
HEIGHT = 256  # of each panel in the strip


def pictures() -> dict[str, Image.Image]:
    return {
        "astronaut": Image.fromarray(skimage.data.astronaut()),
        "chelsea": Image.fromarray(skimage.data.chelsea()),
        "coffee": Image.fromarray(skimage.data.coffee()),
        "flower": Image.fromarray(load_sample_image("flower.jpg")),
        "china": Image.fromarray(load_sample_image("china.jpg")),
        "hubble": Image.fromarray(skimage.data.hubble_deep_field()),
        "stain": Image.fromarray(skimage.data.immunohistochemistry()),
    }


EXAMPLES = [
    ("style-astronaut-flower", "astronaut", ["flower"], {}),
    ("style-chelsea-stain", "chelsea", ["stain"],
     {"style_layer_weights": (1, 1, 100, 1e4, 1e5), "style_weight": 1.0}),
    ("style-chelsea-stain-colors", "chelsea", ["stain"], {"preserve_colors": "luminance"}),
    ("style-coffee-blend", "coffee", ["flower", "hubble"], {"style_blend": (0.6, 0.4)}),
]


def strip(panels: list[Image.Image], labels: list[str]) -> Image.Image:
    scaled = [p.resize((round(p.width * HEIGHT / p.height), HEIGHT), Image.Resampling.LANCZOS)
              for p in panels]
    canvas = Image.new("RGB", (sum(p.width for p in scaled) + 4 * (len(scaled) - 1),
                               HEIGHT + 18), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for panel, label in zip(scaled, labels):
        canvas.paste(panel, (x, 18))
        draw.text((x + 4, 3), label, fill="black")
        x += panel.width + 4
    return canvas


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    images = pictures()
    for name, content, styles, options in EXAMPLES:
        start = time.perf_counter()
        result = ganvas.stylize(images[content], [images[s] for s in styles],
                                backbone="vgg16-hed", size=512, device="cpu", **options)
        seconds = time.perf_counter() - start
        shown = ", ".join(f"{k}={v}" for k, v in options.items()) or "defaults"
        labels = [f"content: {content}", *(f"style: {s}" for s in styles), f"result ({shown})"]
        strip([images[content], *(images[s] for s in styles), result], labels).save(
            OUT / f"{name}.png", optimize=True)
        print(f"{name}: {seconds:.0f} s ({shown})", flush=True)


if __name__ == "__main__":
    main()
