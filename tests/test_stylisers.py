"""The feed-forward styliser: shapes at odd sizes, tiled inference that equals the whole
picture's, training that lowers the perceptual loss, exact resume, `ganvas stylize --model`
on a picture and a folder, and one clear line for every bad styliser or option."""

import numpy as np
import pytest
import torch
from PIL import Image

from ganvas.errors import GanvasError
from ganvas.style.backbones import tiny_backbone
from ganvas.stylisers.folder import load_styliser
from ganvas.stylisers.inference import shrink, stylise_tensor
from ganvas.stylisers.network import Styliser
from ganvas.stylisers.training import (
    PerceptualLoss,
    StyliserConfig,
    photos_for_step,
    train_styliser,
)


@pytest.fixture
def net():
    torch.manual_seed(0)
    model = Styliser(width=16).eval()
    with torch.no_grad():  # untrained affine norms are 1 / 0: give them some character
        for module in model.modules():
            if isinstance(module, torch.nn.InstanceNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model


@pytest.mark.parametrize("size", [(1, 3, 17, 23), (2, 3, 32, 32), (1, 3, 9, 40)])
def test_any_size_in_any_size_out_in_range(net, size):
    with torch.no_grad():
        out = net(torch.rand(size))
    assert out.shape == size and out.min() >= 0 and out.max() <= 1


def test_half_width_is_smaller_and_widths_are_checked():
    full, half = Styliser(32), Styliser(16)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(half) < count(full) / 3
    with pytest.raises(ValueError, match="width"):
        Styliser(24)


def test_tiles_with_the_whole_pictures_statistics_equal_the_whole_picture(net):
    image = torch.rand(1, 3, 150, 203, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = net(image)
    tiled = stylise_tensor(net, image, tile=64, statistics_side=10_000)
    assert torch.allclose(tiled, whole, atol=1e-4)


def test_tiles_with_shrunk_statistics_have_no_seams(net):
    """Statistics from a half-size copy, shared by every tile: the tiles join into the
    picture a whole pass with those statistics gives, with no step at the tile borders."""
    y, x = torch.meshgrid(torch.linspace(0, 1, 160), torch.linspace(0, 1, 160), indexing="ij")
    image = torch.stack([y, x, (x + y) / 2])[None]
    tiled = stylise_tensor(net, image, tile=64, statistics_side=80)
    stats = net.measure_statistics(shrink(image, 80))
    with torch.no_grad():
        whole = net(image, stats.replay())
    assert torch.allclose(tiled, whole, atol=1e-4)
    steps = (tiled[..., :, 1:] - tiled[..., :, :-1]).abs().mean(dim=(0, 1, 2))
    assert steps[63] < 3 * steps.median() + 1e-3 and steps[127] < 3 * steps.median() + 1e-3


# ---- training -------------------------------------------------------------------------------

@pytest.fixture
def photos(tmp_path, monkeypatch):
    monkeypatch.setenv("GANVAS_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(10):
        array = np.full((40, 48, 3), rng.integers(0, 255, 3), dtype=np.uint8)
        y, x = rng.integers(0, 20, 2)
        array[y:y + 16, x:x + 20] = rng.integers(0, 255, 3)
        Image.fromarray(array).save(folder / f"{i}.png")
    stripes = np.zeros((64, 64, 3), dtype=np.uint8)
    stripes[:, ::8] = (230, 60, 20)
    stripes[::8, :] = (20, 60, 230)
    Image.fromarray(stripes).save(tmp_path / "style.png")
    return folder


def _options(tmp_path, photos, **more):
    return {**dict(style=str(tmp_path / "style.png"), content=str(photos), size=32, width=16,
                   backbone="tiny", batch_size=2, steps=12, preview_every=4,
                   checkpoint_every=4, device="cpu", learning_rate=1e-2), **more}


def test_every_photo_once_per_pass_in_a_new_order_each_pass():
    first = np.concatenate([photos_for_step(s, 3, 9, seed=0) for s in range(3)])
    second = np.concatenate([photos_for_step(s, 3, 9, seed=0) for s in range(3, 6)])
    assert sorted(first) == sorted(second) == list(range(9))
    assert list(first) != list(second)
    assert list(photos_for_step(7, 4, 9, seed=0)) == list(photos_for_step(7, 4, 9, seed=0))


def test_training_lowers_the_perceptual_loss_and_writes_the_styliser(tmp_path, photos):
    out = tmp_path / "styler"
    result = train_styliser(out=str(out), progress=False, log=lambda m: None,
                            **_options(tmp_path, photos, steps=40))
    assert result.step == 40 and not result.interrupted
    trained, meta = load_styliser(out)
    assert meta["width"] == 16 and meta["step"] == 40
    assert sorted(p.name for p in (out / "previews").iterdir())[-1] == "step-0000040.png"
    config = StyliserConfig(**_options(tmp_path, photos), out=str(out))
    style = torch.from_numpy(np.array(Image.open(tmp_path / "style.png"))).permute(2, 0, 1)
    objective = PerceptualLoss(tiny_backbone(), style[None].float() / 255, config)
    batch = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    untrained = Styliser(16).eval()
    with torch.no_grad():
        before, _ = objective(untrained(batch), batch)
        after, _ = objective(trained(batch), batch)
    assert after < 0.8 * before, (float(before), float(after))


def test_interrupted_and_resumed_equals_an_uninterrupted_run(tmp_path, photos):
    quiet = dict(progress=False, log=lambda m: None)
    train_styliser(out=str(tmp_path / "straight"), **quiet, **_options(tmp_path, photos))
    part = train_styliser(out=str(tmp_path / "split"), stop_after=5, **quiet,
                          **_options(tmp_path, photos))
    assert part.interrupted and part.step == 5
    with pytest.raises(GanvasError, match="already holds a styliser"):
        train_styliser(out=str(tmp_path / "split"), **quiet, **_options(tmp_path, photos))
    with pytest.raises(GanvasError, match="only --steps and --device"):
        train_styliser(resume=str(tmp_path / "split"), size=64, **quiet)
    done = train_styliser(resume=str(tmp_path / "split"), **quiet)
    assert done.step == 12
    a, _ = load_styliser(tmp_path / "straight")
    b, _ = load_styliser(tmp_path / "split")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def test_stylize_with_a_model_one_picture_and_a_folder(tmp_path, photos, capsys):
    from ganvas.cli.main import main

    out = tmp_path / "styler"
    train_styliser(out=str(out), progress=False, log=lambda m: None,
                   **_options(tmp_path, photos, steps=2))
    assert main(["stylize", str(photos / "3.png"), "--model", str(out), "-o",
                 str(tmp_path / "one.png")]) == 0
    assert Image.open(tmp_path / "one.png").size == (48, 40)  # the photo's own size
    assert main(["stylize", str(photos / "3.png"), "--model", str(out), "--size", "96",
                 "-o", str(tmp_path / "big.jpg")]) == 0
    assert Image.open(tmp_path / "big.jpg").size == (96, 80)
    assert main(["stylize", str(photos / "3.png"), "--model", str(out), "--size", "96",
                 "--stroke-scale", "2", "-o", str(tmp_path / "strokes.png")]) == 0
    strokes = np.asarray(Image.open(tmp_path / "strokes.png"), dtype=float)
    assert strokes.shape == (80, 96, 3)  # painted at half size, then enlarged
    (photos / "broken.png").write_bytes(b"not a picture")
    assert main(["stylize", str(photos), "--model", str(out), "-o",
                 str(tmp_path / "painted")]) == 0
    assert len(list((tmp_path / "painted").iterdir())) == 10
    assert "skipped 1 of 11" in capsys.readouterr().err


def test_bad_stylisers_and_options_get_one_line(tmp_path, photos, capsys):
    from ganvas.cli.main import main

    out = tmp_path / "styler"
    train_styliser(out=str(out), progress=False, log=lambda m: None,
                   **_options(tmp_path, photos, steps=2))
    photo = str(photos / "1.png")
    cases = [
        (["stylize", photo, "-o", "x.png"], "give --style PICTURE"),
        (["stylize", photo, "--model", str(tmp_path / "none"), "-o", "x.png"],
         "no such styliser folder"),
        (["stylize", photo, "--model", str(photos), "-o", "x.png"], "not a styliser folder"),
        (["stylize", photo, "--model", str(out), "--style", photo, "-o", "x.png"],
         "drop --style"),
        (["stylize", photo, "--model", str(out), "--size", "0", "-o", "x.png"], "--size"),
        (["stylize", photo, "--model", str(out), "--stroke-scale", "0", "-o", "x.png"],
         "--stroke-scale must be"),
        (["style-train", "--style", photo], "needs --content, --out"),
        (["style-train", "--resume", str(out), "--size", "64"], "only --steps and --device"),
    ]
    for args, words in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    (out / "styliser.safetensors").write_bytes(b"\0" * 64)
    assert main(["stylize", photo, "--model", str(out), "-o", str(tmp_path / "y.png")]) == 2
    assert "not the weights of this styliser" in capsys.readouterr().err
    (out / "checkpoint.pt").write_bytes(b"garbage")
    assert main(["style-train", "--resume", str(out)]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err


def test_the_temporal_loss_measures_how_a_network_follows_a_moved_photo():
    from ganvas.stylisers.training import MOTION_NOISE, temporal_term

    batch = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    steady = lambda x: x.clamp(0, 1)  # noqa: E731 -- moves with its input exactly
    pattern = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    fixed = lambda x: (x + pattern[..., :x.shape[-2], :x.shape[-1]]) / 2  # noqa: E731
    for step in range(3):
        follows = temporal_term(steady, batch, steady(batch), step, seed=0)
        assert float(follows) < 2 * MOTION_NOISE ** 2
        assert float(temporal_term(fixed, batch, fixed(batch), step, seed=0)) > 50 * float(follows)


def test_training_with_the_temporal_loss_reports_it(tmp_path, photos):
    result = train_styliser(out=str(tmp_path / "steady"), progress=False, log=lambda m: None,
                            **_options(tmp_path, photos, steps=3, temporal_weight=5.0))
    assert result.losses["temporal"] > 0


@pytest.mark.parametrize("kind", ["per-style", "arbitrary"])
def test_onnx_export_equals_pytorch_at_another_size(tmp_path, kind, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnxruntime

    from ganvas.cli.main import main
    from ganvas.stylisers.arbitrary import ArbitraryStyliser
    from ganvas.stylisers.export import AdaINGraph
    from ganvas.stylisers.folder import write_styliser

    torch.manual_seed(0)
    if kind == "per-style":
        net, meta = Styliser(16), {"kind": kind, "width": 16}
    else:
        net = ArbitraryStyliser(tiny_backbone())
        meta = {"kind": kind, "width": 32, "backbone": "tiny"}
    write_styliser(tmp_path / "s", net, meta)
    assert main(["export", str(tmp_path / "s"), "--format", "onnx"]) == 0
    assert "matches PyTorch" in capsys.readouterr().err
    session = onnxruntime.InferenceSession(str(tmp_path / "s" / "styliser.onnx"))
    picture = torch.rand(1, 3, 50, 34, generator=torch.Generator().manual_seed(5))
    net.eval()
    with torch.no_grad():
        if kind == "per-style":
            expected = net(picture)
            got = session.run(None, {"image": picture.numpy()})[0]
        else:
            style = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(6))
            expected = AdaINGraph(net)(picture, style, torch.tensor(0.5))
            from ganvas.stylisers.arbitrary import stylise_arbitrary

            same = stylise_arbitrary(net, picture, [net.style_statistics(style, "adain")],
                                     alpha=0.5, tile=None)
            assert torch.allclose(same, expected, atol=1e-5)  # the graph is the method
            got = session.run(None, {"content": picture.numpy(), "style": style.numpy(),
                                     "alpha": np.array(0.5, dtype=np.float32)})[0]
    assert got.shape == expected.shape and np.abs(got - expected.numpy()).max() < 1e-4
    assert main(["export", str(tmp_path / "s"), "-o", str(tmp_path / "x.pt")]) == 2
    assert "name the file .onnx" in capsys.readouterr().err
