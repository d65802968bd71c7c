"""The projected discriminator: a frozen pretrained network, frozen random projections fixed
by the seed, light heads that learn, and the frozen network kept out of checkpoints but
checked when a run resumes. (The contract suite in test_families.py covers sampling, export,
every phase and the exact resume mid-run.)"""

import numpy as np
import pytest
import torch
from PIL import Image

from ganvas.errors import GanvasError
from ganvas.models.export import load_weights
from ganvas.models.projected import ProjectedDiscriminator
from ganvas.models.registry import make_spec
from ganvas.rng import INITIAL_WEIGHTS, stream_seed
from ganvas.style.backbones import build_backbone, tiny_backbone
from ganvas.training.callbacks import Callback

OPTIONS = {"base_channels": 2, "features": "tiny", "projection_channels": 4}
QUIET = dict(progress=False, log=lambda m: None)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANVAS_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def pictures(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(24):
        array = np.full((20, 20, 3), rng.integers(0, 255, 3), dtype=np.uint8)
        y, x = rng.integers(0, 10, 2)
        array[y:y + 10, x:x + 10] = rng.integers(0, 255, 3)
        Image.fromarray(array).save(folder / f"{i:02d}.png")
    return folder


def networks(seed=0, **options):
    torch.manual_seed(seed)
    family, spec = make_spec("projected", resolution=32, channels=3, latent_dim=8,
                             options={**OPTIONS, **options})
    return family.build_generator(spec), family.build_discriminator(spec)


def test_only_the_heads_learn_and_each_receives_gradients():
    G, D = networks()
    D(G(torch.randn(4, 8))).sum().backward()
    assert len(D.heads) == 4 and D.pixel_head is not None  # (on by default)
    for head in [*D.heads, D.pixel_head]:
        grads = [p.grad for p in head.parameters()]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    frozen = list(D.feature_network.parameters())
    assert frozen and all(not p.requires_grad and p.grad is None for p in frozen)
    assert not {id(p) for p in frozen} & {id(p) for p in D.parameters()}
    # the generator's image is judged through the frozen network: G gets gradients
    assert all(p.grad is not None for p in G.to_image.parameters())


def test_the_frozen_network_stays_out_of_the_state_dict_but_its_checksum_is_in():
    _, D = networks()
    keys = set(D.state_dict())
    assert "feature_checksum" in keys and {"channel_mix0", "scale_mix0"} <= keys
    assert not any(k.startswith("feature_network") for k in keys)


def test_random_projections_are_fixed_by_the_seed():
    _, a = networks(seed=0)
    _, b = networks(seed=0)
    _, c = networks(seed=1)
    for name in ("channel_mix0", "channel_mix3", "scale_mix1", "pixel_mix"):
        assert name in a.fixed_buffers
        assert torch.equal(getattr(a, name), getattr(b, name))
        assert not torch.equal(getattr(a, name), getattr(c, name))


def test_a_run_with_other_feature_weights_is_refused_in_one_line():
    _, D = networks()
    state = D.state_dict()
    state["feature_checksum"] = state["feature_checksum"].clone()
    state["feature_checksum"][0] ^= 1
    _, fresh = networks()
    with pytest.raises(GanvasError, match="trained on other tiny weights") as error:
        load_weights(fresh, state, "step-0000004.pt")
    assert "\n" not in str(error.value)
    load_weights(fresh, D.state_dict(), "step-0000004.pt")  # the same weights load


class KeepTrainer(Callback):
    def on_train_end(self, trainer, result):
        self.trainer = trainer


def test_training_moves_the_heads_and_leaves_the_feature_network_bit_identical(
        pictures, tmp_path):
    from ganvas.training.session import train

    keep = KeepTrainer()
    result = train(dict(data=str(pictures), model="projected", resolution=32, latent_dim=8,
                        batch_size=8, steps=4, model_options=OPTIONS, precision="fp32",
                        health=False, log_every=2), out=str(tmp_path / "run"),
                   callbacks=[keep], **QUIET)
    D = keep.trainer.discriminator
    reference = tiny_backbone(seed=0, deep=True)
    for (name, value), (_, before) in zip(D.feature_network.state_dict().items(),
                                          reference.state_dict().items()):
        assert torch.equal(value, before), name
    saved = torch.load(result.checkpoint, weights_only=True)
    assert not any(k.startswith("feature_network") for k in saved["discriminator"])
    _, initial = networks(seed=stream_seed(0, INITIAL_WEIGHTS))  # run seed 0: its weights' stream
    assert torch.equal(saved["discriminator"]["channel_mix0"], initial.channel_mix0)
    moved = [not torch.equal(saved["discriminator"][k], v)
             for k, v in initial.state_dict().items() if k.startswith("heads.")]
    assert sum(moved) > len(moved) // 2
    assert saved["config"]["augment"] == "diffaugment" and saved["config"]["loss"] == "hinge"


def test_stylegan2_generator_keeps_its_average_style_under_the_projected_discriminator(
        pictures, tmp_path):
    import ganvas
    from ganvas.project import project
    from ganvas.training.session import train

    keep = KeepTrainer()
    result = train(dict(data=str(pictures), model="projected", resolution=32, latent_dim=8,
                        batch_size=8, steps=3, precision="fp32", health=False, log_every=3,
                        model_options={**OPTIONS, "generator": "stylegan2",
                                       "base_channels": 8, "max_channels": 16}),
                   out=str(tmp_path / "run"), callbacks=[keep], **QUIET)
    G = keep.trainer.generator
    assert G.w_avg.abs().sum() > 0  # updated by training_images, used by truncation
    images = G.sample(torch.randn(2, 8), truncation=0.5)
    assert images.shape == (2, 3, 32, 32)
    # the run's generator projects into W like a stylegan2 run's
    found = project(ganvas.load(result.run_dir), next(pictures.iterdir()), steps=5,
                    backbone=tiny_backbone(), frames=0)
    assert found.kind == "w" and found.distance <= found.distances[0]


def test_each_head_gives_one_logit_or_with_the_papers_heads_one_per_patch_of_8x8():
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    _, D = networks()  # tiny features at 32 px: levels of 32, 16, 8 and 4 px
    logits = D.patch_logits(images)
    assert logits.shape == (3, 5)  # four levels and the pixel head, down to 4x4: one each
    torch.testing.assert_close(D(images), logits.mean(1))  # one score per image: the mean
    _, D = networks(head_end=8)
    per_head = [head(level).shape[1] for head, level in zip(D.heads, D.mixed_levels(images))]
    assert per_head == [25, 25, 25, 1]  # 5x5 patches of 8x8; a 4x4 level is one patch
    patches = D.patch_logits(images)
    assert patches.shape == (3, 4 * 25 + 1)
    torch.testing.assert_close(D(images), patches.mean(1))


def test_the_loss_takes_every_patch_and_the_monitor_one_score_per_image(pictures, tmp_path):
    from ganvas.training.session import train

    runs = {}
    for name, options in (("patches", {}), ("mean", {"patch_hinge": False})):
        keep = KeepTrainer()
        train(dict(data=str(pictures), model="projected", resolution=32, latent_dim=8,
                   batch_size=4, steps=1, model_options={**OPTIONS, **options},
                   precision="fp32", health=False), out=str(tmp_path / name),
              callbacks=[keep], **QUIET)
        runs[name] = keep.trainer
    assert runs["patches"].config.model_options["patch_hinge"] is True  # chosen for new runs
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    for name, trainer in runs.items():
        with torch.no_grad():
            seen = trainer.recipe.discriminate(images)
            per_image = trainer.discriminator(images)
        # the hinge is taken on what discriminate gives: every patch, or the mean per image
        if name == "patches":
            assert seen.shape == (3, 5)  # four levels and the pixel head
            torch.testing.assert_close(seen.mean(1), per_image)
        else:
            assert seen.shape == (3,)
        assert trainer.score(images).shape == (3,)  # the monitor: one score per image


def test_the_vgg_feature_networks_give_four_levels():
    """The architectures the pretrained weights load into (random weights here: no
    download in tests)."""
    _, spec = make_spec("projected", resolution=32, channels=1, latent_dim=8,
                        options=OPTIONS)
    D = ProjectedDiscriminator(spec, build_backbone("vgg16-hed"), 32, 4)
    assert D.layers == ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]
    assert D(torch.rand(2, 1, 32, 32) * 2 - 1).shape == (2,)  # grayscale: shown as RGB
    # feature_levels=3: the deepest block is never run, and one head fewer judges
    backbone = build_backbone("vgg16-hed")
    three = ProjectedDiscriminator(spec, backbone, 32, 4, levels=3)
    assert three.layers == ["relu1_2", "relu2_2", "relu3_3"] and len(three.heads) == 3
    ran = []
    hook = backbone.features[-1].register_forward_hook(lambda *a: ran.append(1))
    assert three(torch.rand(2, 1, 32, 32) * 2 - 1).shape == (2,) and not ran
    hook.remove()


def test_feature_levels_on_auto_three_for_the_vggs_four_otherwise_and_older_runs_keep_four(
        pictures):
    from ganvas.auto_settings import resolve_settings
    from ganvas.config import TrainConfig
    from ganvas.training.session import _resumed_config

    def resolved(**options):
        config = TrainConfig(data=str(pictures), model="projected", resolution=32,
                             model_options={**OPTIONS, **options})
        return resolve_settings(config.validate(), 24)[0]

    assert resolved(features="vgg16-hed").model_options["feature_levels"] == 3
    assert resolved().model_options["feature_levels"] == 4  # tiny: the paper's four
    # the user's choice stands, however the name is spelt
    given = resolved(**{"features": "vgg16-hed", "feature-levels": 4}).model_options
    assert given["feature_levels"] == 4 and "feature-levels" not in given
    # a run saved before the option was on auto read four levels: it resumes with four
    saved = resolved(features="vgg16-hed").to_dict()
    del saved["model_options"]["feature_levels"]
    resumed = _resumed_config({"config": saved}, pictures / "old.pt", {})
    assert resumed.model_options["feature_levels"] == 4
    # and the mean of its heads' logits took the hinge, one term per image
    assert resolved().model_options["patch_hinge"] is True
    del saved["model_options"]["patch_hinge"]
    resumed = _resumed_config({"config": saved}, pictures / "old.pt", {})
    assert resumed.model_options["patch_hinge"] is False


@pytest.mark.parametrize("options, needle", [
    ({"features": "inception"}, "features must be one of vgg16-hed, efficientnet-lite0, "
                                "resnet18, vgg16, vgg19, tiny"),
    ({"generator": "dcgan"}, "generator must be one of fastgan, stylegan2"),
    ({"feature_resolution": 48}, "feature_resolution must be a multiple of 32"),
    ({"projection_channels": 0}, "projection_channels must be 1..1024"),
    ({"feature_levels": 5}, "feature_levels must be 2..4"),
    ({"head_end": 6}, "head_end must be 4, 8 or 16"),
    ({"patch_hinge": "yes"}, "patch_hinge=.yes.: model projected expects bool"),
])
def test_bad_options_are_one_line(options, needle):
    with pytest.raises(GanvasError, match=needle):
        make_spec("projected", resolution=32, channels=3, latent_dim=8,
                  options={**OPTIONS, **options})


def test_a_missing_weights_file_names_the_model_options_to_use(tmp_path):
    family, spec = make_spec("projected", resolution=32, channels=3, latent_dim=8,
                             options={"features": "vgg16",
                                      "features_file": str(tmp_path / "missing.pth")})
    with pytest.raises(GanvasError) as error:
        family.build_discriminator(spec)
    message = str(error.value)
    assert "missing.pth: no such weights file" in message and "\n" not in message
    assert "--model-option features_file=FILE" in message
    assert "--model-option features=vgg16-hed" in message and "--backbone" not in message
