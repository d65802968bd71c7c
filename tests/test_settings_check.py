"""The settings check before training: risky settings are named with the usual value, the
families' own defaults pass, and the restart command rebuilds the run with the remedies."""

import dataclasses
import math
import shlex

import pytest
import torch
import yaml

from ganvas.auto_settings import resolve_settings
from ganvas.cli.main import build_parser
from ganvas.cli.parsing import config_values
from ganvas.config import TrainConfig, dump_yaml, flag_words
from ganvas.health.settings_check import (
    check_settings,
    restart_command,
    saved_config_findings,
)
from ganvas.losses.criteria import LOSSES
from ganvas.models import available_models, build_models, get_model_family

DIGITS_IMAGES = 1797
EMOJI_IMAGES = 3926
MID_RUN = {"lr_g", "lr_d", "beta1", "beta2", "r1_gamma", "n_critic"}
NEW_RUN = {"batch_size", "latent_dim", "model_options"}


def resolved(**settings):
    """A config as the trainer sees it: digits at 28 px unless told, every auto filled."""
    data = settings.pop("data", "digits")
    images = DIGITS_IMAGES if data == "digits" else EMOJI_IMAGES
    config = TrainConfig(data=data, **settings).validate()
    return resolve_settings(config, num_images=images)[0]


def parameter_counts(config):
    """The networks' sizes. Built on one thread: spectral norm's power iterations at
    construction are tiny matrix-vector products that a shared CPU's thread pool slows
    twentyfold."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        G, D = build_models(config.model, resolution=config.resolution,
                            channels=config.channels, latent_dim=config.latent_dim,
                            options=config.model_options)
    finally:
        torch.set_num_threads(threads)
    return (sum(p.numel() for p in G.parameters()), sum(p.numel() for p in D.parameters()))


def only(findings, kind):
    matching = [f for f in findings if f.kind == kind]
    assert len(matching) == 1, [f.message for f in findings]
    return matching[0]


def kinds(findings):
    return [f.kind for f in findings]


def with_remedies(config, finding):
    changes = {**finding.changes, **finding.restart}
    if "model_options" in changes:
        changes["model_options"] = {**config.model_options, **changes["model_options"]}
    return config.replace(**changes)


# ---- the families' own defaults are healthy ---------------------------------------------


def default_configs():
    """(family, config) for every family: digits at 28 px where the family builds it, and
    emoji-like pictures at 64 px."""
    for name, family in available_models().items():
        if family.resolution_problem(28) is None:
            yield pytest.param(name, "digits", id=f"{name}-digits")
        yield pytest.param(name, "emoji", id=f"{name}-emoji")


@pytest.mark.parametrize(("model", "data"), list(default_configs()))
def test_a_familys_default_settings_raise_no_warning(model, data):
    config = resolved(data=data, model=model)
    generator_params, discriminator_params = parameter_counts(config)
    assert check_settings(config, generator_params=generator_params,
                          discriminator_params=discriminator_params) == []


@pytest.mark.parametrize("model", list(available_models()))
def test_defaults_for_every_loss_and_resolution_raise_no_warning(model):
    family = get_model_family(model)
    for resolution in (8, 16, 28, 32, 64, 128, 256, 512, 1024):
        if family.resolution_problem(resolution) is not None:
            continue
        for loss in set(LOSSES) - {"bce-saturating"}:  # kept for teaching, and warned of
            config = resolved(data="emoji", model=model, resolution=resolution, loss=loss)
            assert check_settings(config) == [], (resolution, loss)


# ---- each risky setting is named, with its flag and the usual value ---------------------

RISKY = [
    # (settings, kind, flag in the message, usual value in the message, remedy)
    ({"lr_d": 0.01}, "settings_lr_high", "--lr-d", "0.0002", {"lr_d": 2e-4}),
    ({"lr_g": 0.004}, "settings_lr_high", "--lr-g", "0.0002", {"lr_g": 2e-4}),
    ({"lr_g": 1e-6}, "settings_lr_low", "--lr-g", "0.0002", {"lr_g": 2e-4}),
    ({"model": "stylegan2", "data": "emoji", "lr_d": 3e-5}, "settings_lr_low", "--lr-d",
     "0.0025", {"lr_d": 0.0025}),
    ({"lr_g": 1.5e-3, "lr_d": 1e-4}, "settings_lr_ratio", "--lr-g", "0.0002",
     {"lr_g": 2e-4}),
    ({"lr_g": 1e-4, "lr_d": 1.5e-3}, "settings_lr_ratio", "--lr-d", "0.0002",
     {"lr_d": 2e-4}),
    ({"beta1": 0.95}, "settings_betas", "--beta1", "0.5", {"beta1": 0.5}),
    ({"beta1": 0.9}, "settings_betas", "--beta1", "0.5", {"beta1": 0.5}),  # Adam's default
    ({"model": "stylegan2", "data": "emoji", "beta1": 0.95}, "settings_betas", "--beta1",
     "GANs use 0.5 (DCGAN) or 0.0", {"beta1": 0.0}),
    ({"beta2": 0.5}, "settings_betas", "--beta2", "0.999", {"beta2": 0.999}),
    ({"batch_size": 4}, "settings_batch_small", "--batch-size", "64", {"batch_size": 64}),
    ({"model": "progressive", "data": "emoji", "batch_size": 2}, "settings_batch_small",
     "--batch-size", "32", {"batch_size": 32}),
    # StyleGAN2-ADA's rule at 64 px and batch 64: 0.0002 x 64^2 / 64 = 0.0128
    ({"model": "dcgan", "data": "emoji", "r1_gamma": 100.0}, "settings_r1_gamma",
     "--r1-gamma", "0.013",
     {"r1_gamma": 0.013}),
    ({"model": "dcgan", "data": "emoji", "r1_gamma": 1e-5}, "settings_r1_gamma",
     "--r1-gamma", "0.013",
     {"r1_gamma": 0.013}),
    # (emoji is a small folder: StyleGAN2 trains it at a batch of 8, so the rule gives 1.6)
    ({"model": "stylegan2", "data": "emoji", "resolution": 256, "r1_gamma": 0.01},
     "settings_r1_gamma", "--r1-gamma", "1.6", {"r1_gamma": 1.6}),
    ({"n_critic": 5}, "settings_n_critic", "--n-critic", "1", {"n_critic": 1}),
    ({"loss": "hinge", "spectral_norm": True, "n_critic": 10}, "settings_n_critic",
     "--n-critic", "5", {"n_critic": 5}),
    ({"latent_dim": 8}, "settings_latent_small", "--latent-dim", "100", {"latent_dim": 100}),
]


@pytest.mark.parametrize(("settings", "kind", "flag", "usual", "remedy"), RISKY,
                         ids=[f"{r[1]}-{i}" for i, r in enumerate(RISKY)])
def test_a_risky_setting_is_named_with_the_usual_value(settings, kind, flag, usual, remedy):
    config = resolved(**settings)
    finding = only(check_settings(config), kind)
    assert flag in finding.message and usual in finding.message, finding.message
    assert {**finding.changes, **finding.restart} == pytest.approx(remedy)
    assert finding.evidence and all(isinstance(v, (int, float))
                                    for v in finding.evidence.values())
    # The remedy takes the warning away.
    assert kind not in kinds(check_settings(with_remedies(config, finding)))


def test_the_saturating_loss_is_named_with_its_non_saturating_form():
    finding = only(check_settings(resolved(loss="bce-saturating")), "settings_loss_saturating")
    assert "--loss bce" in finding.message and finding.changes == {"loss": "bce"}
    assert not finding.restart


def test_only_what_needs_a_new_run_is_a_restart():
    config = resolved(lr_d=0.01, beta1=0.95, beta2=0.5, r1_gamma=100.0, n_critic=5,
                      batch_size=4, latent_dim=8)
    findings = check_settings(config)
    assert len(findings) == 7
    for finding in findings:
        assert set(finding.changes) <= MID_RUN and set(finding.restart) <= NEW_RUN
        assert bool(finding.changes) != bool(finding.restart)
        assert finding.message.endswith(".")


def test_rates_are_judged_against_the_familys_own():
    # Equalised learning rates train at rates that wreck a DCGAN: 0.02 is 8x StyleGAN2's.
    assert check_settings(resolved(model="stylegan2", data="emoji", lr_g=0.02,
                                   lr_d=0.02)) == []
    assert kinds(check_settings(resolved(lr_g=0.02, lr_d=0.02))) == ["settings_lr_high"] * 2
    # The loss matters too: progressive prefers 1e-3 with wgan-gp and 5e-3 otherwise.
    assert check_settings(resolved(model="progressive", data="emoji", lr_d=5e-5)) != []
    assert check_settings(resolved(model="progressive", data="emoji", loss="wgan-gp",
                                   lr_g=1e-3, lr_d=1e-3)) == []


def test_plain_weights_are_warned_above_5e_3_whatever_the_family_prefers(monkeypatch):
    family = get_model_family("dcgan")
    monkeypatch.setattr(family, "auto_settings",
                        classmethod(lambda cls, resolution, num_images, loss:
                                    {"lr_g": 1e-3, "lr_d": 1e-3}))
    config = resolved(lr_d=6e-3)
    finding = only(check_settings(config), "settings_lr_high")
    assert "above 0.005" in finding.message and "0.001" in finding.message
    assert finding.changes == {"lr_d": 1e-3}
    assert check_settings(resolved(lr_d=4e-3)) == []


@pytest.mark.parametrize("settings", [
    {"lr_g": 1e-4, "lr_d": 4e-4},  # TTUR
    {"loss": "wgan-gp", "n_critic": 5, "beta1": 0.0, "beta2": 0.9},  # WGAN-GP's paper
    {"loss": "hinge", "spectral_norm": True, "n_critic": 5},  # SNGAN
    {"r1_gamma": 0.1},  # the --r1-gamma help's advice at 28-64 px
    {"data": "emoji", "resolution": 256, "r1_gamma": 10.0},  # ... and at 256 px
    {"r1_gamma": 0.0},  # R1 off
    {"batch_size": 8, "latent_dim": 16},
    {"model": "fastgan", "data": "emoji", "batch_size": 8},
], ids=str)
def test_known_good_settings_raise_no_warning(settings):
    assert check_settings(resolved(**settings)) == []


def test_a_small_generator_gets_wider_layers_where_the_family_has_them():
    config = resolved(model="dense", data="emoji",
                      model_options={"generator_widths": [32], "discriminator_widths": [2048,
                                                                                       2048]})
    generator_params, discriminator_params = parameter_counts(config)
    finding = only(check_settings(config, generator_params=generator_params,
                                  discriminator_params=discriminator_params),
                   "settings_generator_small")
    widths = finding.restart["model_options"]["generator_widths"]
    assert f"--model-option 'generator_widths={widths}'" in finding.message
    assert widths[0] > 32 and finding.evidence["ratio"] < 0.25
    wider = with_remedies(config, finding)
    assert check_settings(wider, **dict(zip(("generator_params", "discriminator_params"),
                                            parameter_counts(wider), strict=True))) == []


def test_a_small_generator_of_a_family_with_shared_widths_has_no_restart():
    finding = only(check_settings(resolved(), generator_params=1_000,
                                  discriminator_params=100_000), "settings_generator_small")
    assert finding.restart == {} and "1/100" in finding.message
    assert check_settings(resolved(), generator_params=25_000,
                          discriminator_params=100_000) == []


@pytest.mark.parametrize("settings", [
    {"lr_g": 10.0, "lr_d": 1e-12}, {"beta1": 0.0, "beta2": 0.0}, {"beta1": 0.999999},
    {"batch_size": 1}, {"batch_size": 16_384}, {"r1_gamma": 1e30}, {"r1_gamma": 1e-30},
    {"n_critic": 100}, {"latent_dim": 1}, {"latent_dim": 16_384},
    {"model": "dense", "resolution": 4}, {"resolution": 1024, "batch_size": 1},
    {"model": "dense", "model_options": {"generator_widths": [16_384] * 3}},
    {"loss": "wgan-gp", "n_critic": 100, "spectral_norm": True},
], ids=str)
def test_odd_but_valid_settings_never_raise(settings):
    config = resolved(**settings)
    for sizes in ((None, None), (1, 10**9), (0, 0), (10**9, 1), (None, 5)):
        findings = check_settings(config, generator_params=sizes[0],
                                  discriminator_params=sizes[1])
        assert all(f.message and f.kind.startswith("settings_") for f in findings)


def test_settings_left_on_auto_are_not_judged():
    config = TrainConfig(data="digits", latent_dim=100)
    assert config.lr_g is None and config.resolution is None
    assert check_settings(config) == []
    assert kinds(check_settings(TrainConfig(data="digits", lr_d=0.05))) == ["settings_lr_high"]
    # A model no family registers is judged against the general defaults.
    odd = dataclasses.replace(resolved(lr_d=0.05), model="not-a-family")
    assert kinds(check_settings(odd)) == ["settings_lr_high"]


# ---- the restart command ----------------------------------------------------------------


def saved(config):
    """The run's config.yaml, read back as ganvas doctor reads it."""
    return yaml.safe_load(dump_yaml(config))


def parsed(command):
    words = shlex.split(command)
    assert words[:2] == ["ganvas", "train"]
    values = config_values(build_parser().parse_args(words[1:]))
    return TrainConfig.from_dict(values).validate(), values


def test_flag_words_parse_back_through_ganvas_train(tmp_path):
    folder = str(tmp_path / "it's $HOME; rm -rf ~")
    settings = {"data": folder, "model": "progressive", "resolution": 64, "lr_d": 2e-4,
                "lr_g": 1.23456789e-5, "mirror": True, "ema": False, "batch_size": 16,
                "d_accuracy_band": (0.6, 0.85), "steps": 100,
                "model_options": {"fade_kimg": 1e-5, "base_channels": [64, 32],
                                  "label": "yes"}}
    words = [word for name, value in settings.items() for word in flag_words(name, value)]
    assert shlex.quote(folder) in words and "--no-ema" in words and "--mirror" in words
    assert "fade_kimg=1.0e-05" in words  # YAML reads it back as a number
    again, given = parsed(" ".join(["ganvas", "train", *words]))
    assert again.data == folder and again.mirror is True and again.ema is False
    assert again.lr_g == pytest.approx(1.23457e-5, rel=1e-9)  # 6 significant digits
    assert (again.lr_d, again.batch_size, again.steps) == (2e-4, 16, 100)
    assert again.d_accuracy_band == (0.6, 0.85)
    assert again.model_options == {"fade_kimg": 1e-5, "base_channels": [64, 32],
                                   "label": "yes"}


def test_flag_words_leave_out_what_no_flag_accepts():
    assert flag_words("lr_d", float("nan")) == [] and flag_words("r1_gamma", math.inf) == []
    assert flag_words("d_accuracy_band", (float("nan"), 0.9)) == []
    assert flag_words("batch_size", None) == []
    assert flag_words("model_options", {"a": float("nan"), "b": [1, math.inf], "c": 2}) \
        == ["--model-option", "c=2"]
    assert flag_words("model_options", {}) == []
    assert flag_words("out", "runs/a b") == ["--out", "'runs/a b'"]
    with pytest.raises(ValueError, match="no_such_setting"):
        flag_words("no_such_setting", 1)


def test_restart_command_is_none_without_a_remedy_that_needs_a_new_run():
    config = resolved(lr_d=0.01)
    findings = check_settings(config)
    assert findings and restart_command(saved(config), findings) is None
    assert restart_command(saved(config), []) is None


def test_restart_command_rebuilds_the_run_with_the_remedies(tmp_path):
    folder = tmp_path / "my pictures; rm -rf ~"
    config = resolved(data=str(folder), model="dense", resolution=32, lr_d=0.01, batch_size=4,
                      latent_dim=8, model_options={"discriminator_widths": [1024, 1024]})
    findings = check_settings(config)
    assert set(kinds(findings)) == {"settings_lr_high", "settings_batch_small",
                                    "settings_latent_small"}
    run = tmp_path / "runs" / "00001 the old run"
    command = restart_command(saved(config), findings, run_dir=run)
    assert shlex.quote(str(folder)) in command
    again, given = parsed(command)
    assert again.data == str(folder) and again.model == "dense" and again.resolution == 32
    assert again.out == str(tmp_path / "runs" / "00001 the old run-restart")  # beside it
    assert (again.batch_size, again.latent_dim, again.lr_d) == (64, 100, 2e-4)
    assert (again.lr_g, again.beta1, again.beta2, again.loss) == (2e-4, 0.5, 0.999, "bce")
    assert again.model_options == {"discriminator_widths": [1024, 1024]}
    assert "steps" not in given and "r1_gamma" not in given
    assert check_settings(resolve_settings(again, num_images=100)[0]) == []


def test_restart_command_carries_widened_layers_as_model_options():
    config = resolved(model="dense", data="emoji", r1_gamma=100.0,
                      model_options={"generator_widths": [32]})
    findings = check_settings(config, generator_params=10_000, discriminator_params=10**7)
    widths = only(findings, "settings_generator_small").restart["model_options"][
        "generator_widths"]
    again, given = parsed(restart_command(saved(config), findings))
    assert list(again.model_options["generator_widths"]) == widths
    assert again.r1_gamma == pytest.approx(0.013)  # the mid-run remedy comes along
    assert "latent_dim" not in given  # the default is not repeated


def test_restart_command_keeps_the_runs_auto_widths_and_spells_floats_for_yaml():
    config = resolved(model="progressive", data="emoji", batch_size=2,
                      model_options={"fade_kimg": 1e-5})
    command = restart_command(saved(config), check_settings(config))
    assert "--batch-size 32" in command
    again, _ = parsed(command)
    assert again.model_options["base_channels"] == config.model_options["base_channels"]
    assert again.model_options["fade_kimg"] == pytest.approx(1e-5)  # a number, not text


def test_restart_command_goes_beside_the_runs_own_out_folder(tmp_path, monkeypatch):
    config = saved(resolved(batch_size=4, out="runs/cats/"))
    findings = check_settings(resolved(batch_size=4))
    again, _ = parsed(restart_command(config, findings))
    assert again.out == "runs/cats-restart"
    monkeypatch.chdir(tmp_path)
    again, _ = parsed(restart_command(config, findings, run_dir="."))
    assert again.out == str(tmp_path.resolve()) + "-restart"
    # No folder known, and no data: a placeholder to fill in rather than a wrong guess.
    again, given = parsed(restart_command({}, findings))
    assert again.data == "DATA" and "out" not in given and again.batch_size == 64


def test_the_saved_config_is_checked_again_for_doctor():
    config = saved(resolved(model="dense", data="emoji", batch_size=4,
                            model_options={"generator_widths": [32],
                                           "discriminator_widths": [2048, 2048]}))
    findings = saved_config_findings(config)
    assert kinds(findings) == ["settings_batch_small", "settings_generator_small"]
    assert findings[1].restart["model_options"]["generator_widths"][0] > 32
    # Nothing from a config that no longer loads, or from none.
    assert saved_config_findings({**config, "no_such_option": 1}) == []
    assert saved_config_findings({**config, "model": "not-a-family"}) == []
    assert saved_config_findings({}) == []
