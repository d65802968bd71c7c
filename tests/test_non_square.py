"""Non-square pictures (--resolution WIDTHxHEIGHT, --fit crop|pad): sizes parsed with one-line
errors, pictures fitted to the shape, DCGAN and StyleGAN2 networks that start from a 4x8
(8x4, ...) map, ADA turning pictures without shearing them, and a run that trains, samples,
walks, redraws a tile, projects and exports in its own shape."""

import math
import re

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, ImageDraw

import ganvas
from ganvas.data import load_images
from ganvas.data.preprocess import process_image
from ganvas.errors import GanvasError
from ganvas.models.registry import available_models, build_models
from ganvas.picture_size import parse_size, size_label


def _landscapes(root, count=12):
    """2:1 pictures: blue sky over green ground, a yellow sun at a varying place."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = Image.new("RGB", (80, 40), (40, 90, 220))
        draw = ImageDraw.Draw(image)
        draw.rectangle([0, 26, 80, 40], fill=(30, 160, 40))
        x = 6 + 5 * i
        draw.ellipse([x, 6, x + 12, 18], fill=(250, 220, 20))
        image.save(root / f"{i:02d}.png")
    return root


def test_sizes_are_parsed_and_bad_ones_get_one_line():
    assert parse_size("128x64") == (64, "2:1")
    assert parse_size("64X256") == (64, "1:4")
    assert parse_size("64") == (64, None) and parse_size("32x32") == (32, None)
    assert size_label(64, "2:1") == "128x64 px" and size_label(64, None) == "64 px"
    # a YAML config says it the same way, and the size wins over a saved aspect beside it
    from ganvas.config import TrainConfig

    config = TrainConfig.from_dict({"aspect": None, "resolution": "128x64", "data": "x"})
    assert (config.resolution, config.aspect) == (64, "2:1")
    with pytest.raises(GanvasError, match="one side must be 1 and the other a power of two"):
        TrainConfig.from_dict({"data": "x", "resolution": 64, "aspect": "3:2"}).validate()
    for text, message in (("100x64", "each side of a non-square size must be a power of two"),
                          ("64x512", "at most 4 times as wide as tall"),
                          ("wide", "give a size in pixels (64) or width x height (128x64)")):
        with pytest.raises(GanvasError, match=re.escape(message)):
            parse_size(text)


def test_pictures_are_cropped_or_padded_to_the_shape():
    picture = Image.new("RGB", (300, 100), (200, 10, 10))  # red, its left half green
    picture.paste((10, 200, 10), (0, 0, 150, 100))
    wide = process_image(picture, 16, 3, aspect=(2, 1), fit="crop")
    assert wide.shape == (3, 16, 32)
    # the centre 200x100 of the 300x100 picture: green on the left, red on the right
    assert wide[1, 8, 2] > 150 and wide[0, 8, -3] > 150
    tall = process_image(picture, 16, 3, aspect=(1, 2), fit="pad")
    assert tall.shape == (3, 32, 16)
    # the whole picture, 16x5 in the middle; above and below its border's average colour
    middle = tall[:, 14:18]
    assert (middle[1, :, 1] > 150).all() and (middle[0, :, -2] > 150).all()
    border = np.concatenate([np.asarray(picture)[0], np.asarray(picture)[-1],
                             np.asarray(picture)[:, 0], np.asarray(picture)[:, -1]]).mean(0)
    assert np.abs(tall[:, 0, 8] - border).max() <= 1 and np.abs(tall[:, -1, 3] - border).max() <= 1
    # square runs keep their own preprocessing
    assert process_image(picture, 16, 3).shape == (3, 16, 16)


def test_a_turned_photo_is_cropped_as_it_is_seen():
    # stored 100 wide x 40 tall, EXIF orientation 6: seen 40 wide x 100 tall
    picture = Image.new("RGB", (100, 40), (250, 0, 0))
    picture.paste((0, 0, 250), (0, 0, 50, 40))  # blue on the stored left: seen at the top
    tall = process_image(picture, 16, 3, orientation=6, aspect=(1, 2), fit="crop")
    assert tall.shape == (3, 32, 16)
    assert tall[2, 2, 8] > 200 and tall[0, -3, 8] > 200  # blue above, red below


def test_folders_load_in_the_shape_and_keep_separate_caches(tmp_path, cache):
    data = _landscapes(tmp_path / "wide", 3)
    crop = load_images(str(data), resolution=8, channels=3, aspect="2:1", progress=False,
                       log=lambda m: None).images
    pad = load_images(str(data), resolution=8, channels=3, aspect="1:2", fit="pad",
                      progress=False, log=lambda m: None).images
    square = load_images(str(data), resolution=8, channels=3, progress=False,
                         log=lambda m: None).images
    assert crop.shape == (3, 3, 8, 16) and pad.shape == (3, 3, 16, 8)
    assert square.shape == (3, 3, 8, 8)
    with pytest.raises(GanvasError, match="digits's pictures are square; non-square training "
                                          "reads a folder"):
        load_images("digits", resolution=16, channels=1, aspect="2:1", progress=False,
                    log=lambda m: None)


@pytest.mark.parametrize("aspect", [(2, 1), (1, 4)])
@pytest.mark.parametrize("model", ["dcgan", "stylegan2"])
def test_networks_draw_and_judge_the_shape(model, aspect):
    options = ({"base_channels": 8} if model == "dcgan"
               else {"base_channels": 8, "max_channels": 16, "w_dim": 8})
    text = f"{aspect[0]}:{aspect[1]}"
    for classes in (0, 3):
        G, D = build_models(model, resolution=16, channels=3, latent_dim=8, options=options,
                            c_dim=classes, aspect=text)
        c = None if not classes else torch.eye(classes)[[0, 1, 2, 0]]
        z = torch.randn(4, 8)
        images = G(z) if c is None else G(z, c)
        assert images.shape == (4, 3, 16 * aspect[1], 16 * aspect[0]) == (4, 3, *G.shape)
        scores = D(images) if c is None else D(images, c)
        assert scores.shape == (4,)
        assert G.sample(z, c).shape == images.shape


def test_families_that_draw_squares_refuse_with_the_ones_that_do_not():
    able = sorted(name for name, family in available_models().items()
                  if family.can_be_non_square)
    assert able == ["dcgan", "stylegan2"]
    for name in ("fastgan", "progressive", "msg", "dense"):
        with pytest.raises(GanvasError, match=f"--resolution 64x32: model {name} draws square "
                                              "pictures only; non-square ones train with "
                                              "dcgan or stylegan2"):
            build_models(name, resolution=32, channels=3, latent_dim=8, aspect="2:1")


def test_ada_turns_a_wide_picture_without_shearing_it():
    from ganvas.augment.ada import _rotation

    for ratio in (2.0, 0.25):
        for angle in (math.pi / 2, 0.7):
            grid = _rotation(torch.tensor([angle]), ratio)[0, :2, :2]
            stretch = torch.diag(torch.tensor([ratio, 1.0]))
            pixels = stretch @ grid @ torch.linalg.inv(stretch)  # the turn in pixel units
            # a pure rotation: orthonormal, determinant 1 (float32 rounding: 1e-6)
            assert torch.allclose(pixels @ pixels.T, torch.eye(2), atol=1e-6)
            assert abs(torch.linalg.det(pixels).item() - 1) < 1e-6
    assert torch.equal(_rotation(torch.tensor([0.3]))[0], _rotation(torch.tensor([0.3]), 1.0)[0])


@pytest.mark.parametrize("model", ["dcgan", "stylegan2"])
def test_a_wide_run_trains_samples_walks_redraws_projects_and_exports(tmp_path, cache, model):
    from conftest import exported_onnx_images

    from ganvas.generate import generate_to_folder
    from ganvas.grid_tile import draw_grid_tile
    from ganvas.project import project
    from ganvas.style.backbones import tiny_backbone
    from ganvas.walk import write_walk

    data = _landscapes(tmp_path / "wide")
    options = ({"base_channels": 8} if model == "dcgan"
               else {"base_channels": 8, "max_channels": 16, "w_dim": 8})
    result = ganvas.train(data=str(data), resolution="32x16", model=model, steps=3,
                          batch_size=4, latent_dim=8, model_options=options,
                          augment="ada", log_every=1, sample_every=3, checkpoint_every=3,
                          progress=False, out=str(tmp_path / "run"), log=lambda m: None)
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert (saved["resolution"], saved["aspect"], saved["fit"]) == (16, "2:1", "crop")
    grid = Image.open(result.run_dir / "samples" / "final.png")
    assert grid.width > grid.height  # tiles twice as wide as tall
    loaded = ganvas.load(result.run_dir, device="cpu")
    assert loaded.sample(1)[0].size == (32, 16)
    written = generate_to_folder(result.run_dir, tmp_path / "out", num=2, device="cpu")
    assert all(Image.open(p).size == (32, 16) for p in written)
    walk = write_walk(result.run_dir, tmp_path / "walk.gif", seeds=[1, 2], frames=3,
                      scale=3, device="cpu", progress=False)
    assert Image.open(tmp_path / "walk.gif").size == (96, 48) and walk.frames == 3
    tile, _ = draw_grid_tile(result.run_dir, 1, 2)
    assert tile.shape == (1, 3, 16, 32)
    found = project(loaded, data / "03.png", steps=2, backbone=tiny_backbone(), frames=0)
    assert found.image.shape == found.target.shape == (1, 3, 16, 32)
    done, images = exported_onnx_images(result.run_dir, tmp_path / "onnx", 8)
    assert images.shape == (2, 3, 16, 32)
    card = (done.folder / "README.md").read_text()
    assert "32 x 16 px (width x height)" in card and "--resolution 32x16" in card
    # the shape defines the networks: a resumed run cannot change it
    with pytest.raises(GanvasError, match="--resolution, --aspect cannot change|cannot change"):
        ganvas.resume(result.run_dir, resolution="16x32", steps=4, progress=False,
                      log=lambda m: None)


def test_command_line_refusals_are_one_line(tmp_path, cache, capsys):
    from ganvas.cli.main import main

    data = _landscapes(tmp_path / "wide", 2)
    for argv, message in (
            (["--resolution", "100x64"], "--resolution 100x64: each side of a non-square size "
                                         "must be a power of two"),
            (["--resolution", "128x64", "--model", "fastgan"],
             "--resolution 128x64: model fastgan draws square pictures only"),
            (["--resolution", "128x64", "--fit", "stretch"], "--fit must be one of crop, pad"),
    ):
        code = main(["train", "--data", str(data), "--dry-run", *argv])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, err
    assert main(["train", "--data", str(data), "--resolution", "64x128", "--fit", "pad",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "at 64x128 px" in out and "aspect: '1:2'" in out and "fit: pad" in out
