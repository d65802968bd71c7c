"""The projected discriminator's ImageNet feature networks, EfficientNet-lite0 (the paper's)
and ResNet-18: built with random weights here (their download cannot run offline), in the
layout of the files users download (timm's and torchvision's keys), read at four scales,
loaded from a file or through torch's hub with every bad file refused in one line."""

import urllib.error

import pytest
import torch
import torch.nn.functional as F

from ganvas.errors import GanvasError
from ganvas.models import feature_networks
from ganvas.models.feature_networks import (
    PRETRAINED,
    SameConv,
    build_feature_network,
    load_feature_network,
)
from ganvas.models.projected import ProjectedDiscriminator, auto_feature_resolution
from ganvas.models.registry import make_spec

# name: (levels' channels, parameters up to the last level, keys of the original file)
EXPECTED = {
    # timm's tf_efficientnet_lite0 without conv_head, bn2 and the classifier
    "efficientnet-lite0": ((24, 40, 112, 320), 2_958_848,
                           ("conv_stem.weight", "bn1.running_var", "blocks.0.0.conv_dw.weight",
                            "blocks.0.0.conv_pw.weight", "blocks.1.0.conv_pwl.weight",
                            "blocks.5.3.bn3.running_mean", "blocks.6.0.conv_dw.weight")),
    # torchvision's resnet18 without fc: 11,689,512 - 513,000 parameters
    "resnet18": ((64, 128, 256, 512), 11_176_512,
                 ("conv1.weight", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
                  "layer2.0.downsample.1.running_var", "layer4.1.bn2.weight")),
}


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def network(request):
    torch.manual_seed(0)
    return build_feature_network(request.param)


def test_the_architectures_have_the_original_layout_and_four_levels(network):
    channels, parameters, keys = EXPECTED[network.name]
    state = network.state_dict()
    assert all(key in state for key in keys)
    assert sum(p.numel() for p in network.parameters()) == parameters
    assert not any(p.requires_grad for p in network.parameters()) and not network.training
    x = network.preprocess(torch.rand(2, 3, 224, 224))
    levels = network(x, network.level_names)
    assert [t.shape[1] for t in levels.values()] == list(channels)
    assert [t.shape[-1] for t in levels.values()] == [56, 28, 14, 7]  # 1/4 to 1/32
    first = network(x, network.level_names[:1])  # stops as deep as asked
    assert torch.equal(first[network.level_names[0]], levels[network.level_names[0]])


def test_same_padding_is_tensorflows():
    conv = SameConv(1, 1, 3, stride=2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    for size in (7, 8, 224):
        x = torch.ones(1, 1, size, size)
        out = conv(x)
        assert out.shape[-1] == -(-size // 2)  # ceil(size / stride), as TensorFlow's SAME
    # even input: nothing before, one row and column after
    expected = F.conv2d(F.pad(torch.ones(1, 1, 8, 8), (0, 1, 0, 1)), conv.weight, stride=2)
    assert torch.equal(conv(torch.ones(1, 1, 8, 8)), expected)


def test_a_file_in_the_original_layout_loads_and_bad_ones_are_one_line(network, tmp_path):
    name = network.name
    torch.manual_seed(1)
    original = build_feature_network(name).state_dict()
    # as training scripts save them: nested, DataParallel's prefix, the classifier too
    wrapped = {"state_dict": {f"module.{k}": v for k, v in original.items()}}
    wrapped["state_dict"]["module.classifier.weight"] = torch.zeros(10, 4)
    path = tmp_path / "weights.pth"
    torch.save(wrapped, path)
    loaded = load_feature_network(name, path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in original.items())
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())

    key = EXPECTED[name][2][0]
    broken = {**original, key: original[key][:1]}
    torch.save(broken, tmp_path / "shape.pth")
    missing = {k: v for k, v in original.items() if k != key}
    torch.save(missing, tmp_path / "missing.pth")
    (tmp_path / "text.pth").write_text("not weights")
    for file, needle in (("shape.pth", f"{key} has shape"), ("missing.pth", f"missing {key}"),
                         ("text.pth", "not a weights file"), ("absent.pth", "no such")):
        with pytest.raises(GanvasError) as error:
            load_feature_network(name, tmp_path / file)
        message = str(error.value)
        assert needle in message and file in message and "\n" not in message


def test_the_download_goes_through_torch_hub_with_its_hash_and_fails_in_one_line(
        monkeypatch, tmp_path):
    torch.hub.set_dir(str(tmp_path / "hub"))
    asked = []

    def offline(url, **kwargs):
        asked.append((url, kwargs.get("check_hash"), kwargs.get("weights_only")))
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(GanvasError) as error:
        load_feature_network("efficientnet-lite0")
    message = str(error.value)
    assert asked == [(PRETRAINED["efficientnet-lite0"].url, True, True)]
    assert "tf_efficientnet_lite0-0aa007d2.pth" in message and "no network" in message
    assert "features_file=FILE" in message and "features=vgg16-hed" in message
    weights = build_feature_network("resnet18").state_dict()
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda url, **kw: weights)
    assert torch.equal(load_feature_network("resnet18").conv1.weight, weights["conv1.weight"])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_projected_discriminator_reads_them_at_their_own_input_size(name, monkeypatch):
    monkeypatch.setattr(feature_networks, "load_feature_network",
                        lambda features, file=None: build_feature_network(features))
    assert auto_feature_resolution(name, 64) == 224  # the paper: 224 below 256 px
    assert auto_feature_resolution(name, 512) == 512
    torch.manual_seed(0)
    family, spec = make_spec("projected", resolution=32, channels=3, latent_dim=8,
                             options={"base_channels": 2, "features": name,
                                      "projection_channels": 4, "feature_resolution": 64})
    D = family.build_discriminator(spec)
    assert isinstance(D, ProjectedDiscriminator) and D.layers == list(D.feature_network.level_names)
    before = {k: v.clone() for k, v in D.feature_network.state_dict().items()}
    images = torch.rand(3, 3, 32, 32, requires_grad=True)
    D(images * 2 - 1).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0  # G would learn through it
    for head in [*D.heads, D.pixel_head]:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    assert all(torch.equal(v, before[k]) for k, v in D.feature_network.state_dict().items())
