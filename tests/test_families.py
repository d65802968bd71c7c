"""The contract every registered model family meets, checked on a tiny spec of each: the
sampling contract, save/load, determinism, one training step of each phase of its recipe,
and an exact resume from the middle of its schedule."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import ganvas
from ganvas.errors import GanvasError
from ganvas.models import available_models, get_model_family
from ganvas.models.export import load_generator, save_generator
from ganvas.models.registry import make_spec
from ganvas.models.schedule import steps_for_images
from ganvas.runs import checkpoint as ckpt
from ganvas.utils import nested

LATENT = 8
TINY = {
    "dense": {"resolution": 8, "model_options": {"generator_widths": [16, 32],
                                                 "discriminator_widths": [16]}},
    "dcgan": {"resolution": 16, "model_options": {"base_channels": 8}},
    # 16 px: a 4 px start and two doublings; each phase lasts 24 images (3 steps of 8)
    "progressive": {"resolution": 16, "model_options": {
        "base_channels": 8, "max_channels": 16, "fade_kimg": 0.024, "stable_kimg": 0.024,
        "batch_growth": 2}},
    "msg": {"resolution": 16, "model_options": {"base_channels": 8, "max_channels": 16}},
    # pl_every 2 and r1_every 4 (in _options): every phase runs within a few steps
    "stylegan2": {"resolution": 16, "r1_every": 4, "model_options": {
        "base_channels": 8, "max_channels": 16, "w_dim": 16, "pl_weight": 2.0, "pl_every": 2}},
    # 64 px: the smallest size with skip-layer excitation in both networks
    "fastgan": {"resolution": 64, "model_options": {"base_channels": 2}},
    # a random 4-level feature network stands in for the pretrained one
    "projected": {"resolution": 32, "model_options": {"base_channels": 2, "features": "tiny",
                                                      "projection_channels": 4}},
}
QUIET = dict(progress=False, log=lambda m: None)


def test_every_registered_family_joins_the_contract():
    assert set(available_models()) == set(TINY)


@pytest.fixture(params=sorted(TINY))
def family(request):
    return request.param


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANVAS_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def pictures(tmp_path):
    """24 small colour pictures: a square of one colour on a background of another."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(24):
        array = np.full((20, 20, 3), rng.integers(0, 255, 3), dtype=np.uint8)
        y, x = rng.integers(0, 10, 2)
        array[y:y + 10, x:x + 10] = rng.integers(0, 255, 3)
        Image.fromarray(array).save(folder / f"{i:02d}.png")
    return folder


def _networks(name, seed=0):
    torch.manual_seed(seed)
    family, spec = make_spec(name, resolution=TINY[name]["resolution"], channels=3,
                             latent_dim=LATENT, options=TINY[name]["model_options"])
    return family, spec, family.build_generator(spec), family.build_discriminator(spec)


def _options(name, **more):
    return dict(model=name, channels=3, latent_dim=LATENT, batch_size=8, log_every=2,
                sample_every=4, checkpoint_every=4, num_samples=4, workers=1,
                **{"precision": "fp32", **TINY[name], **more})


# ---- the sampling contract ----------------------------------------------------------------

def test_sample_shape_range_and_declared_attributes(family):
    _, spec, G, _ = _networks(family)
    z = torch.randn(5, LATENT)
    with torch.no_grad():
        images = G.eval().sample(z)
        preview = G.preview(z)
    res = spec.resolution
    assert images.shape == preview.shape == (5, 3, res, res)
    assert images.min() >= -1 and images.max() <= 1
    assert (G.latent_dim, G.c_dim, G.resolution, G.channels) == (LATENT, 0, res, 3)


def test_truncation_pulls_samples_towards_the_mean_image(family):
    _, _, G, _ = _networks(family)
    z = torch.randn(16, LATENT, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        # Biases start at zero, which makes an untrained ProGAN-style network blind to the
        # latent's length; trained ones are not.
        for name, parameter in G.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0, 0.5, generator=torch.Generator().manual_seed(2))
        G.eval()
        spreads = [G.sample(z, truncation=psi).std(dim=0).mean().item()
                   for psi in (1.0, 0.5, 0.0)]
        mean_images = G.sample(z, truncation=0.0)
    assert spreads[0] > spreads[1] > spreads[2]
    assert torch.allclose(mean_images, mean_images[:1].expand_as(mean_images), atol=1e-6)


def test_sampling_arguments_are_checked(family):
    _, _, G, _ = _networks(family)
    z = torch.randn(2, LATENT)
    with pytest.raises(GanvasError, match="unconditional"):
        G.sample(z, c=torch.zeros(2, 3))
    with pytest.raises(GanvasError, match="--truncation"):
        G.sample(z, truncation=1.5)
    with pytest.raises(GanvasError, match="--noise-mode"):
        G.sample(z, noise="loud")
    with pytest.raises(GanvasError, match=f"latents of shape \\[N, {LATENT}\\]"):
        G.sample(torch.randn(2, LATENT + 1))
    for mode in ("const", "random", "none"):  # families without noise inputs accept all
        assert G.sample(z, noise=mode).shape[0] == 2


@pytest.mark.parametrize("channels", [1, 3])
def test_grayscale_and_colour(family, channels):
    torch.manual_seed(0)
    cls, spec = make_spec(family, resolution=TINY[family]["resolution"], channels=channels,
                          latent_dim=LATENT, options=TINY[family]["model_options"])
    G, D = cls.build_generator(spec), cls.build_discriminator(spec)
    images = G.eval().sample(torch.randn(5, LATENT))
    assert images.shape == (5, channels, spec.resolution, spec.resolution)
    assert G.channels == channels and D(G(torch.randn(4, LATENT))).shape == (4,)


def test_gradients_reach_every_parameter_in_use(family):
    """A fully grown progressive model no longer uses its lower resolutions' RGB layers."""
    _, _, G, D = _networks(family)
    D(G(torch.randn(4, LATENT))).sum().backward()
    for module in (G, D):
        for name, p in module.named_parameters():
            unused = family == "progressive" and name.split(".")[0] in ("to_rgb", "from_rgb") \
                and int(name.split(".")[1]) < len(module.to_rgb if module is G
                                                  else module.from_rgb) - 1
            # FastGAN's decoders only serve the reconstruction loss (tested apart)
            unused = unused or (family == "fastgan" and name.startswith("decode_"))
            if not unused:
                assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_unknown_option_and_bad_resolution_are_clear(family):
    with pytest.raises(GanvasError, match="not a setting of model"):
        make_spec(family, resolution=TINY[family]["resolution"], channels=3, latent_dim=8,
                  options={"no_such_option": 1})
    with pytest.raises(GanvasError, match="--resolution"):
        make_spec(family, resolution=3000, channels=3, latent_dim=8)


def test_discriminator_takes_what_the_generator_gives_and_the_reals_come_alike(family):
    cls, spec, G, D = _networks(family)
    for images_seen in (0, 10**9):  # the schedule's start and its end
        point = cls.schedule(spec, 4)(images_seen)
        G.set_schedule(point)
        D.set_schedule(point)
        fake = G(torch.randn(4, LATENT))
        real = cls.real_input(spec, torch.rand(4, 3, spec.resolution, spec.resolution) * 2 - 1,
                              point)
        assert [t.shape for t in nested.tensors(real)] == [
            t.shape for t in nested.tensors(fake)]
        logits = D(fake)
        assert logits.shape == (4,) and torch.isfinite(logits).all()


def test_export_round_trip_and_determinism(family, tmp_path):
    _, spec, G, _ = _networks(family, seed=3)
    _, _, again, _ = _networks(family, seed=3)
    _, _, other, _ = _networks(family, seed=4)
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(),
                                                 again.state_dict().values()))
    assert any(not torch.equal(a, b) for a, b in zip(G.state_dict().values(),
                                                     other.state_dict().values()))
    config = {"model": family, "resolution": spec.resolution, "channels": 3,
              "latent_dim": LATENT, "model_options": TINY[family]["model_options"]}
    save_generator(tmp_path / "gen", G, config, step=3)
    loaded, meta = load_generator(tmp_path / "gen")
    z = torch.randn(3, LATENT)
    with torch.no_grad():
        assert torch.equal(G.eval().sample(z), loaded.eval().sample(z))
    assert meta["step"] == 3


def test_models_documents_every_option(family, capsys):
    from ganvas.cli.main import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for field in get_model_family(family).Options.__dataclass_fields__:
        assert f"{field}=" in out, field


# ---- training: each phase, the clock, exact resume ------------------------------------------

@pytest.mark.parametrize("update", ["simultaneous", "alternating"])
def test_one_step_of_each_phase_moves_both_networks(family, pictures, tmp_path, update):
    result = ganvas.train(data=str(pictures), steps=2, out=str(tmp_path / "run"),
                          update=update, **_options(family), **QUIET)
    before = torch.load(ckpt.checkpoint_path(result.run_dir, 0), weights_only=True)
    after = torch.load(result.checkpoint, weights_only=True)
    for net in ("generator", "discriminator"):
        assert any(not torch.equal(before[net][k], after[net][k]) for k in before[net]), net
    cls, spec = make_spec(family, resolution=TINY[family]["resolution"], channels=3,
                          latent_dim=LATENT, options=TINY[family]["model_options"])
    schedule = cls.schedule(spec, 8)
    first = schedule(0).batch_size
    assert after["images_seen"] == first + schedule(first).batch_size  # the clock
    record = json.loads((result.run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    for key in ("Loss/D", "Loss/G", "Grad/G", "D/real", "D/fake"):
        assert math.isfinite(record[key]), key


def test_penalties_and_augmentations_work_with_every_family(family, pictures, tmp_path):
    for i, extra in enumerate([dict(loss="wgan-gp", augment="diffaugment", drift=0.001),
                               dict(loss="ns", r1_gamma=0.1, r1_every=1, augment="ada",
                                    ada_kimg=0.01, instance_noise=0.1),
                               dict(loss="rahinge", update="alternating")]):
        if family == "dcgan" and extra["loss"] == "wgan-gp":  # BatchNorm: per-image penalty
            extra["model_options"] = {"base_channels": 8, "discriminator_norm": "instance"}
        result = ganvas.train(data=str(pictures), steps=3, out=str(tmp_path / f"run{i}"),
                              **{**_options(family), **extra}, **QUIET)
        records = [json.loads(x) for x in
                   (result.run_dir / "metrics.jsonl").read_text().splitlines()]
        ticks = [r for r in records if "event" not in r]
        assert ticks and all(math.isfinite(r["Loss/D"]) for r in ticks), (family, extra)
        assert not any(r.get("event") in ("rollback", "divergence") for r in records)


def test_bf16_mixed_precision_with_ada_at_work_trains(family, pictures, tmp_path):
    # CPUs with native bf16 train in it by default, and small folders get ADA: every pass
    # that augments (StyleGAN2's lazy R1 included) must work inside the autocast.
    class AugmentFromTheStart(ganvas.Callback):  # ADA's p starts at 0, which augments nothing
        def on_train_start(self, trainer):
            trainer.recipe.augment.p = 0.5

    result = ganvas.train(data=str(pictures), steps=8, out=str(tmp_path / "run"),
                          callbacks=[AugmentFromTheStart()],
                          **_options(family, precision="bf16", augment="ada", ada_kimg=10.0),
                          **QUIET)
    state = torch.load(result.checkpoint, weights_only=True)
    # p moves by the images seen / 10 kimg: 0.0064 at most in 8 steps (on auto, the tiny
    # progressive model's 0.024-kimg fade-in would move it by 1 every 32 images)
    assert result.step == 8 and state["augment"]["p"] > 0.4
    for name, tensor in state["generator"].items():
        assert tensor.dtype != torch.bfloat16, name  # float32 weights, bf16 compute
        assert torch.isfinite(tensor).all(), name


def test_interrupted_mid_schedule_and_resumed_equals_uninterrupted(family, pictures, tmp_path):
    from test_kill import MODELS as KILLED

    if family in KILLED:  # (keeps the suite under 10 minutes)
        pytest.skip("tests/test_kill.py resumes this family exactly after a SIGKILL, in "
                    "fresh processes: the stronger form of this test")
    options = {**_options(family), "augment": "ada", "ada_kimg": 0.05, "mirror": True}
    straight = ganvas.train(data=str(pictures), steps=12, out=str(tmp_path / "straight"),
                            **options, **QUIET)

    class StopAtFive(ganvas.Callback):  # progressive: step 5 is in the middle of a fade
        def on_step_end(self, trainer):
            if trainer.step == 5:
                trainer.request_stop("test")

    part = ganvas.train(data=str(pictures), steps=12, out=str(tmp_path / "split"),
                        callbacks=[StopAtFive()], **options, **QUIET)
    assert part.interrupted and part.step == 5
    resumed = ganvas.resume(part.run_dir, **QUIET)
    a = torch.load(straight.checkpoint, weights_only=True)
    b = torch.load(resumed.checkpoint, weights_only=True)
    assert a["images_seen"] == b["images_seen"] and a["step"] == b["step"] == 12
    for net in ("generator", "discriminator", "generator_ema"):
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), (net, key)


# ---- progressive growing -----------------------------------------------------------------

def _growth(**options):
    family, spec = make_spec("progressive", resolution=16, channels=3, latent_dim=LATENT,
                             options={**TINY["progressive"]["model_options"], **options})
    return family, spec, family.schedule(spec, 8)


def test_the_growth_schedule_is_a_pure_function_of_images_seen():
    _, _, schedule = _growth()
    # 4 px stable [0, 24); 8 px fades in over [24, 48), stable [48, 72); 16 px fades from 72
    assert schedule(0).level == 0 and schedule(0).resolution == 4
    assert schedule(0).batch_size == 16  # twice --batch-size (batch_growth 2) at 4 px
    point = schedule(36)
    assert point.resolution == 8 and point.level == pytest.approx(0.5)
    assert point.alpha == pytest.approx(0.5) and point.phase == "8 px, fading in 50 %"
    assert schedule(60).level == 1 and schedule(60).phase == "8 px, stable"
    assert schedule(84).resolution == 16 and schedule(84).batch_size == 8
    assert schedule(10**6).level == 2 and schedule(10**6).phase == "16 px, full size"
    assert schedule(36) == schedule(36)
    assert steps_for_images(schedule, 72) == 5  # 16 + 16 (4 px), 16 + 16 + 16 (8 px)


def test_reals_follow_the_fade_of_the_generator():
    family, spec, schedule = _growth()
    images = torch.rand(2, 3, 16, 16)
    fading = family.real_input(spec, images, schedule(36))  # 8 px at 50 %
    sharp = torch.nn.functional.avg_pool2d(images, 2)
    blurred = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(sharp, 2),
                                              scale_factor=2, mode="nearest")
    assert fading.shape == (2, 3, 8, 8)
    assert torch.allclose(fading, 0.5 * sharp + 0.5 * blurred)
    assert family.real_input(spec, images, schedule(0)).shape == (2, 3, 4, 4)


def test_a_half_grown_generator_samples_its_last_completed_resolution(pictures, tmp_path):
    class StopMidFade(ganvas.Callback):
        def on_step_end(self, trainer):
            if trainer.step == 2:  # 32 images: 8 px fading in, 4 px the last completed
                trainer.request_stop("test")

    result = ganvas.train(data=str(pictures), steps=12, out=str(tmp_path / "run"),
                          callbacks=[StopMidFade()], **_options("progressive"), **QUIET)
    model = ganvas.load(result.run_dir)
    assert model.generator.completed_resolution == 4
    images = model.sample_tensor(3, seed=0)
    assert images.shape == (3, 3, 16, 16)
    blocks = images.unfold(2, 4, 4).unfold(3, 4, 4)  # 4x4 blocks of one colour each
    assert torch.allclose(blocks, blocks[..., :1, :1].expand_as(blocks))
    records = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    phases = [r["phase"] for r in records if "phase" in r]
    assert phases[0] == "4 px, stable" and phases[-1].startswith("8 px, fading in")
    grid = Image.open(result.samples)
    assert grid.size == (2 * 16 + 3 * 2, 2 * 16 + 3 * 2)  # shown at the final size


# ---- MSG-GAN --------------------------------------------------------------------------------

def test_msg_generator_draws_every_scale_and_its_discriminator_needs_them_all():
    _, spec, G, D = _networks("msg")
    pyramid = G(torch.randn(2, LATENT))
    assert [t.shape[-1] for t in pyramid] == [4, 8, 16]
    with pytest.raises(ValueError, match="3 scales"):
        D(pyramid[-1])
    D(pyramid).sum().backward()
    assert all(p.grad is not None for p in G.parameters())  # gradients reach every block


@pytest.mark.parametrize("combine", ["simple", "lin_cat", "cat_lin"])
def test_msg_combine_functions(combine):
    family, spec = make_spec("msg", resolution=16, channels=3, latent_dim=LATENT,
                             options={"base_channels": 8, "max_channels": 16,
                                      "combine": combine})
    G, D = family.build_generator(spec), family.build_discriminator(spec)
    assert D(G(torch.randn(4, LATENT))).shape == (4,)


def test_augmentation_is_the_same_transform_at_every_scale():
    from ganvas.augment import AdaptiveAugment, DiffAugment

    image = torch.rand(6, 3, 16, 16) * 2 - 1
    pyramid = [torch.nn.functional.avg_pool2d(image, f) for f in (4, 2, 1)]
    colour = DiffAugment("color", seed=5)(pyramid)
    alone = DiffAugment("color", seed=5)(image)
    assert torch.allclose(colour[-1], alone)  # the finest scale: as without a pyramid
    for scale, factor in zip(colour, (4, 2, 1)):  # coarser ones: the same colour change
        assert torch.allclose(scale, torch.nn.functional.avg_pool2d(alone, factor), atol=1e-5)
    ada = AdaptiveAugment(seed=2, p=1.0)
    warped = ada(pyramid)
    shrunk = torch.nn.functional.avg_pool2d(warped[-1], 4)
    unrelated = torch.nn.functional.avg_pool2d(AdaptiveAugment(seed=3, p=1.0)(image), 4)
    assert (warped[0] - shrunk).abs().mean() < 0.5 * (unrelated - shrunk).abs().mean()


# ---- defaults chosen from the resolution and the data -------------------------------------

def test_dry_run_prints_what_the_defaults_chose(pictures, tmp_path, capsys):
    from ganvas.cli.main import main

    runs = tmp_path / "runs"
    assert main(["train", "--data", str(pictures), "--model", "progressive", "--resolution",
                 "32", "--runs-dir", str(runs), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "# chosen automatically for progressive at 32 px and 24 images:" in out
    for line in ("loss: ns", "r1_gamma: 0.0064", "beta1: 0.0", "batch_size: 32",
                 "fade_kimg: 10.0", "base_channels: 32"):  # R1: 0.0002 * 32^2 / 32
        assert line in out, line
    assert not runs.exists()  # a dry run does no work
    assert main(["train", "--data", str(pictures), "--model", "progressive", "--loss",
                 "wgan-gp", "--batch-size", "8", "--dry-run"]) == 0
    out = capsys.readouterr().out  # the paper's loss brings the paper's drift term
    assert "batch_size: 8" in out and "drift: 0.001" in out and "r1_gamma: 0.0" in out
    assert main(["train", "--data", str(pictures), "--model", "dcgan", "--dry-run"]) == 0
    out = capsys.readouterr().out  # dcgan: the lesson's
    assert "chosen automatically for dcgan" in out and "lr_g: 0.0002" in out


def test_a_given_setting_is_never_overridden(pictures):
    from ganvas.auto_settings import resolve_settings
    from ganvas.config import TrainConfig

    config = TrainConfig(data=str(pictures), model="msg", lr_g=5e-4, batch_size=12,
                         model_options={"combine": "lin_cat"})
    resolved, chosen = resolve_settings(config.validate())
    assert resolved.lr_g == 5e-4 and resolved.batch_size == 12 and resolved.loss == "rahinge"
    assert resolved.model_options["combine"] == "lin_cat" and "lr_g" not in chosen
    assert resolved.model_options["base_channels"] == 16  # 64 px: chosen for a CPU


def test_generate_says_when_a_model_stopped_growing_early(pictures, tmp_path, capsys):
    from ganvas.cli.main import main

    class StopEarly(ganvas.Callback):
        def on_step_end(self, trainer):
            if trainer.step == 4:
                trainer.request_stop("test")

    run = ganvas.train(data=str(pictures), steps=12, out=str(tmp_path / "run"),
                       callbacks=[StopEarly()], **_options("progressive"), **QUIET).run_dir
    assert main(["generate", str(run), "--num", "2", "--truncation", "0.5"]) == 0
    err = capsys.readouterr().err
    assert "grew to 8 px of 16 px" in err
    assert len(list((run / "generated").glob("*.png"))) == 2
    assert main(["generate", str(run), "--truncation", "2"]) == 2
    assert "--truncation must be a number from 0 to 1" in capsys.readouterr().err
