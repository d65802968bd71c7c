"""Any style with one decoder: AdaIN gives the features the style's statistics, WCT its
covariance, the decoder trains (its loss falls) and resumes exactly, tiles join, and
`ganvas stylize --model DECODER --style ANY` repaints with any picture, one clear line for
each misuse."""

import numpy as np
import pytest
import torch
from PIL import Image

from ganvas.errors import GanvasError
from ganvas.style.backbones import tiny_backbone
from ganvas.stylisers.arbitrary import (
    ArbitraryStyliser,
    Decoder,
    adain,
    measure,
    stylise_arbitrary,
    wct,
)
from ganvas.stylisers.folder import load_styliser
from ganvas.stylisers.training import AdaINLoss, StyliserConfig, train_styliser


def _features(seed, n=1, c=6, h=9, w=11):
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(c, c, generator=g)
    flat = mixing @ torch.randn(n, c, h * w, generator=g) + torch.randn(c, 1, generator=g) * 3
    return flat.reshape(n, c, h, w).relu()


def test_adain_gives_every_channel_the_styles_mean_and_spread():
    content, style = _features(0), _features(1, h=5, w=7) * 4 + 1
    out = adain(content, measure(style))
    got, want = measure(out), measure(style)
    assert torch.allclose(got.mean, want.mean, atol=1e-4)
    assert torch.allclose(got.std, want.std, atol=1e-3)


def test_wct_colours_the_features_with_the_styles_covariance():
    content, style = _features(2), _features(3, h=8, w=8)
    out = wct(content, measure(style, covariance=True))
    got, want = measure(out, covariance=True), measure(style, covariance=True)
    assert torch.allclose(got.mean, want.mean, atol=1e-4)
    # scaled by n-1 / n apart, the covariances agree (eigenvalue floor WCT_EPS aside)
    assert torch.allclose(got.covariance, want.covariance, rtol=1e-2, atol=1e-3)
    off_diagonal = want.covariance[0] - torch.diag(torch.diag(want.covariance[0]))
    assert off_diagonal.abs().max() > 0.1  # a real correlation, which AdaIN would not copy


@pytest.mark.parametrize("name, layers", [("vgg19", 17), ("vgg16-hed", 10), ("tiny", 5)])
def test_the_decoder_mirrors_the_encoder_back_to_the_pictures_size(name, layers):
    decoder = Decoder(name, half=True)
    convs = [m for m in decoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[-1].out_channels == 3
    channels = {"vgg19": 512, "vgg16-hed": 256, "tiny": 16}[name]
    factor = {"vgg19": 8, "vgg16-hed": 4, "tiny": 2}[name]
    assert convs[0].in_channels == channels
    out = decoder(torch.rand(1, channels, 3, 4))
    assert out.shape == (1, 3, 3 * factor, 4 * factor)


@pytest.fixture
def net():
    torch.manual_seed(0)
    return ArbitraryStyliser(tiny_backbone(), half=False).eval()


def test_alpha_zero_keeps_the_photos_features_and_blends_mix(net):
    content = torch.rand(1, 3, 24, 30, generator=torch.Generator().manual_seed(0))
    style = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(1)) ** 3
    stats = net.style_statistics(style, "adain")
    features = net.encoder(content)[-1]
    kept = net.transform(features, [stats], [1.0], "adain", 0.0)
    assert torch.allclose(kept, features)
    own = net.style_statistics(content, "adain")
    half = net.transform(features, [stats, own], [1.0, 1.0], "adain", 1.0)
    assert torch.allclose(half, 0.5 * adain(features, stats) + 0.5 * adain(features, own),
                          atol=1e-5)


@pytest.mark.parametrize("method", ["adain", "wct"])
def test_tiles_with_the_whole_pictures_statistics_equal_the_whole_picture(net, method):
    image = torch.rand(1, 3, 90, 131, generator=torch.Generator().manual_seed(1))
    style = [net.style_statistics(torch.rand(1, 3, 32, 32), method)]
    whole = stylise_arbitrary(net, image, style, method=method, tile=None)
    tiled = stylise_arbitrary(net, image, style, method=method, tile=64,
                              statistics_side=10_000)
    assert whole.shape == image.shape
    assert torch.allclose(tiled, whole, atol=1e-4)


# ---- training and the command line ------------------------------------------------------------

@pytest.fixture
def photos(tmp_path, monkeypatch):
    monkeypatch.setenv("GANVAS_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for name in ("photos", "styles"):
        (tmp_path / name).mkdir()
    for i in range(8):
        array = np.full((40, 48, 3), rng.integers(0, 255, 3), dtype=np.uint8)
        y, x = rng.integers(0, 20, 2)
        array[y:y + 16, x:x + 20] = rng.integers(0, 255, 3)
        Image.fromarray(array).save(tmp_path / "photos" / f"{i}.png")
        stripes = np.zeros((32, 32, 3), dtype=np.uint8)
        stripes[:, :: 2 + i % 3] = rng.integers(0, 255, 3)
        Image.fromarray(stripes).save(tmp_path / "styles" / f"{i}.png")
    return tmp_path


def _options(root, **more):
    return {**dict(arbitrary=True, content=str(root / "photos"), styles=str(root / "styles"),
                   size=32, backbone="tiny", batch_size=2, steps=10, preview_every=5,
                   checkpoint_every=5, device="cpu", learning_rate=3e-3), **more}


def test_training_lowers_the_adain_loss_and_resumes_exactly(photos):
    quiet = dict(progress=False, log=lambda m: None)
    out = photos / "decoder"
    config = StyliserConfig(style=None, out=str(out), **_options(photos))
    def pictures(folder):
        return torch.stack([torch.from_numpy(np.asarray(
            Image.open(photos / folder / f"{i}.png").convert("RGB").resize((32, 32))).copy()
        ).permute(2, 0, 1).float() / 255 for i in range(4)])

    batch, styles = pictures("photos"), pictures("styles")
    torch.manual_seed(0)
    untrained = ArbitraryStyliser(tiny_backbone())
    with torch.no_grad():
        before, _ = AdaINLoss(untrained, config)(batch, styles)
    train_styliser(out=str(out), **quiet, **_options(photos, steps=60))
    trained, meta = load_styliser(out)
    assert meta["kind"] == "arbitrary" and meta["encoder_layer"] == "relu2_1"
    with torch.no_grad():
        after, _ = AdaINLoss(trained, config)(batch, styles)
    assert after < 0.7 * before, (float(before), float(after))
    assert (out / "previews" / "step-0000060.png").is_file()

    train_styliser(out=str(photos / "straight"), **quiet, **_options(photos))
    part = train_styliser(out=str(photos / "split"), stop_after=3, **quiet, **_options(photos))
    assert part.interrupted and part.step == 3
    assert train_styliser(resume=str(photos / "split"), **quiet).step == 10
    a, _ = load_styliser(photos / "straight")
    b, _ = load_styliser(photos / "split")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def test_stylize_with_any_style_and_its_options(photos, capsys):
    from ganvas.cli.main import main

    out = photos / "decoder"
    train_styliser(out=str(out), progress=False, log=lambda m: None, **_options(photos, steps=2))
    photo, style = str(photos / "photos" / "1.png"), str(photos / "styles" / "2.png")
    other = str(photos / "styles" / "3.png")
    written = {}
    for name, extra in [("adain", []), ("wct", ["--method", "wct"]),
                        ("half", ["--alpha", "0.5"]), ("none", ["--alpha", "0"]),
                        ("luma", ["--preserve-colors", "luminance"]),
                        ("hist", ["--preserve-colors", "histogram"]),
                        ("blend", [other, "--style-blend", "1", "3"])]:
        target = photos / f"{name}.png"
        assert main(["stylize", photo, "--model", str(out), "--style", style, *extra,
                     "-o", str(target)]) == 0, name
        written[name] = np.asarray(Image.open(target), dtype=float)
        assert written[name].shape == (40, 48, 3)
    assert np.abs(written["adain"] - written["wct"]).mean() > 0.5
    assert np.abs(written["adain"] - written["half"]).mean() > 0.5
    capsys.readouterr()
    cases = [
        (["stylize", photo, "--model", str(out), "-o", "x.png"], "give --style PICTURE"),
        (["stylize", photo, "--model", str(out), "--style", style, "--alpha", "2",
          "-o", "x.png"], "--alpha must be"),
        (["stylize", photo, "--model", str(out), "--style", style, "--style-blend", "1", "2",
          "-o", "x.png"], "--style-blend has 2"),
        (["stylize", photo, "--model", str(out), "--style", str(photos / "nope.png"),
          "-o", "x.png"], "style image"),
        (["style-train", "--arbitrary", "--style", style, "--content", str(photos / "photos"),
          "-o", str(photos / "x")], "drop --style"),
        (["style-train", "--styles", str(photos / "styles"), "--style", style, "--content",
          str(photos / "photos"), "-o", str(photos / "x")], "--styles is for --arbitrary"),
    ]
    for args, words in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_a_damaged_description_gets_one_line(photos):
    out = photos / "decoder"
    train_styliser(out=str(out), progress=False, log=lambda m: None, **_options(photos, steps=1))
    meta = (out / "styliser.json").read_text()
    (out / "styliser.json").write_text(meta.replace('"tiny"', '"resnet"'))
    with pytest.raises(GanvasError, match="unknown encoder"):
        load_styliser(out)
    (out / "styliser.json").write_text(meta.replace('"arbitrary"', '"other"'))
    with pytest.raises(GanvasError, match="unknown kind"):
        load_styliser(out)
