"""Transparent pictures (--channels 4): the alpha channel kept from the file to the samples,
the augmentations moving it with the colours and leaving it out of colour changes, measures
made for RGB seeing the pictures on white, and one-line refusals where it cannot go."""


import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import ganvas
from ganvas.data import load_images
from ganvas.errors import GanvasError


def _sprites(root, count=16):
    """Opaque coloured discs on a fully transparent background."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = Image.new("RGBA", (40, 40), (0, 255, 0, 0))  # invisible green
        draw = ImageDraw.Draw(image)
        x, y = 4 + i % 8, 4 + (i * 3) % 8
        draw.ellipse([x, y, x + 20, y + 20], fill=(200, 40 + 10 * i, 60, 255))
        image.save(root / f"{i:02d}.png")
    return root


def test_transparency_is_kept_and_resizing_never_bleeds_the_hidden_colour(tmp_path, cache):
    root = tmp_path / "half"
    root.mkdir()
    picture = Image.new("RGBA", (64, 64), (0, 255, 0, 0))  # invisible green on the right
    picture.paste((255, 0, 0, 255), (0, 0, 32, 64))  # opaque red on the left
    picture.save(root / "a.png")
    Image.new("RGB", (64, 64), (10, 20, 30)).save(root / "b.jpg")  # no alpha: opaque
    loaded = load_images(str(root), resolution=16, channels=4, progress=False,
                         log=lambda m: None)
    half, opaque = loaded.images  # sorted by name
    assert half.shape == (4, 16, 16)
    # opaque on the left, transparent on the right (Lanczos rings a little near the edge)
    assert (half[3, :, :5] >= 250).all() and (half[3, :, 11:] <= 5).all()
    edge = half[:, :, 5:11]  # the resampled border: partly transparent, never green
    assert ((edge[3] > 8) & (edge[3] < 250)).any()
    visible = edge[3] > 8
    assert (edge[1][visible] <= 5).all() and (edge[0][visible] >= 200).all(), edge[:, 0]
    assert (opaque[3] == 255).all() and tuple(opaque[:3, 5, 5]) == (10, 20, 30)
    # the same folder at 3 channels composites on white (the cache keeps them apart)
    flat = load_images(str(root), resolution=16, channels=3, progress=False,
                       log=lambda m: None).images[0]
    assert tuple(flat[:, 5, 14]) == (255, 255, 255)


def test_emoji_keep_their_transparency(cache):
    from ganvas.data.emoji import EMOJI_FONT_PATHS

    if not any(__import__("pathlib").Path(p).expanduser().is_file() for p in EMOJI_FONT_PATHS):
        pytest.skip("the emoji font is not installed (apt install fonts-noto-color-emoji)")
    images = load_images("emoji", resolution=16, channels=4, progress=False,
                         log=lambda m: None).images
    assert images.shape[1:] == (4, 16, 16)
    corners = images[:200, 3][:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners <= 5).mean() > 0.9  # the padding and the background are transparent
    assert (images[:200, 3] == 255).any()


def test_colour_augmentations_leave_alpha_alone_and_geometry_moves_it():
    from ganvas.augment.ada import AdaptiveAugment
    from ganvas.augment.diffaugment import adjust_color

    x = torch.rand(6, 4, 16, 16) * 2 - 1
    coloured = adjust_color(x, torch.Generator().manual_seed(0))
    assert torch.equal(coloured[:, 3], x[:, 3]) and not torch.equal(coloured[:, :3], x[:, :3])
    # ADA warps alpha with the colours, and its colour changes never reach alpha: two
    # batches with the same alpha and other colours come out with the same alpha
    other = torch.cat([torch.rand(6, 3, 16, 16) * 2 - 1, x[:, 3:]], dim=1)
    moved = []
    for batch in (x, other):
        ada = AdaptiveAugment(seed=0, p=1.0)
        moved.append(ada(batch))
    assert not torch.equal(moved[0][:, 3], x[:, 3])  # warped
    torch.testing.assert_close(moved[0][:, 3], moved[1][:, 3])


def test_rgb_measures_see_transparent_pictures_on_white():
    from ganvas.metrics.inception import preprocess
    from ganvas.utils.images import on_white

    x = torch.rand(2, 4, 8, 8) * 2 - 1
    composited = on_white(x)
    assert composited.shape == (2, 3, 8, 8)
    alpha = (x[:, 3:] + 1) / 2
    torch.testing.assert_close(composited, x[:, :3] * alpha + (1 - alpha))
    # Inception's input: the same within the rounding to pixel values
    torch.testing.assert_close(preprocess(x), preprocess(composited), atol=2 / 128, rtol=0)


def test_refusals_are_one_line(tmp_path, cache, capsys):
    from ganvas.cli.main import main

    with pytest.raises(GanvasError, match="--channels 4 keeps transparency, and digits has "
                                          "none"):
        ganvas.train(data="digits", channels=4, steps=1, progress=False, log=lambda m: None)
    data = _sprites(tmp_path / "sprites", 4)
    for argv, message in ((["--model", "projected", "--dry-run"],
                           "--channels 4: model projected"),
                          (["--channels", "2"], "--channels must be 1 (grayscale), 3 (RGB) or 4")):
        channels = [] if "--channels" in argv else ["--channels", "4"]
        code = main(["train", "--data", str(data), *channels, *argv])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, err


# One family through every step (the networks of all but projected take any number of
# channels: test_every_family_takes_four_channels).
@pytest.mark.parametrize("model", ["dcgan"])
def test_a_transparent_run_trains_samples_walks_and_exports_rgba(tmp_path, cache, model):
    from conftest import exported_onnx_images

    from ganvas.generate import generate_to_folder
    from ganvas.walk import write_walk

    data = _sprites(tmp_path / "sprites")
    options = ({"base_channels": 8} if model == "dcgan"
               else {"base_channels": 8, "max_channels": 16, "w_dim": 8})
    result = ganvas.train(data=str(data), channels=4, model=model, resolution=16, steps=3,
                          batch_size=4, latent_dim=8, model_options=options, augment="ada",
                          log_every=1, progress=False, out=str(tmp_path / "run"),
                          log=lambda m: None)
    grid = Image.open(result.run_dir / "samples" / "final.png")
    assert grid.mode == "RGB"  # tiles over a checkerboard
    loaded = ganvas.load(result.run_dir, device="cpu")
    picture = loaded.sample(1)[0]
    assert picture.mode == "RGBA" and picture.size == (16, 16)
    written = generate_to_folder(result.run_dir, tmp_path / "out", num=2, device="cpu")
    assert all(Image.open(p).mode == "RGBA" for p in written)
    walk = write_walk(result.run_dir, tmp_path / "walk.gif", seeds=[1, 2], frames=3,
                      scale=1, device="cpu", progress=False)
    assert walk.frames == 3
    done, images = exported_onnx_images(result.run_dir, tmp_path / "onnx", 8)
    assert images.shape == (2, 4, 16, 16)
    assert "RGBA (with transparency)" in (done.folder / "README.md").read_text()


def test_eval_says_transparent_pictures_are_scored_on_white(tmp_path, cache):
    import torch.nn.functional as F

    from ganvas.cli.evaluate import format_table
    from ganvas.metrics.evaluation import evaluate

    class Pool:  # a stand-in for Inception that sees what Inception would: RGB on white
        identity = "test-pool"

        def features(self, images):
            from ganvas.metrics.inception import preprocess

            return F.adaptive_avg_pool2d(preprocess(images), 2).flatten(1).double().numpy()

    data = _sprites(tmp_path / "sprites", 8)
    result = ganvas.train(data=str(data), channels=4, model="dcgan", resolution=16, steps=1,
                          batch_size=4, latent_dim=8, model_options={"base_channels": 8},
                          health=False, progress=False, out=str(tmp_path / "run"),
                          log=lambda m: None)
    lines = []
    scores = evaluate(result.run_dir, num=8, metrics=["fid"], inception=Pool(),
                      progress=False, log=lines.append)
    assert np.isfinite(scores["fid"]) and scores["composited_on"] == "white"
    assert any("composited on white" in line for line in lines)
    assert "(composited on white)" in format_table(scores)


def test_every_family_takes_four_channels_but_projected():
    from ganvas.models.registry import available_models, build_models

    for name, family in sorted(available_models().items()):
        if family.channels_problem(4) is not None:
            assert name == "projected"
            continue
        resolution = 32 if name == "fastgan" else 16
        G, D = build_models(name, resolution=resolution, channels=4, latent_dim=8)
        images = G.sample(torch.randn(2, 8))
        assert images.shape == (2, 4, resolution, resolution), name
        assert D(G(torch.randn(2, 8))).shape == (2,), name
