"""StyleGAN2's own parts: FIR resampling, modulated convolutions, the mapping network's
mean style, truncation in W, style mixing, the path length penalty and its saved mean, the
lazy-regularisation correction, and the generate options that go with style vectors.
(The contract every family meets is tests/test_families.py.)"""

import numpy as np
import pytest
import torch
from PIL import Image

import ganvas
from ganvas.cli.main import main
from ganvas.errors import GanvasError
from ganvas.losses.stylegan2 import lazy_correction
from ganvas.models.registry import make_spec
from ganvas.models.stylegan2 import (
    ModulatedConv2d,
    downsample2d,
    fir_kernel,
    upsample2d,
)
from ganvas.runs import checkpoint as ckpt

LATENT = 8
OPTIONS = {"base_channels": 8, "max_channels": 16, "w_dim": 16, "pl_weight": 2.0, "pl_every": 2}
QUIET = dict(progress=False, log=lambda m: None)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANVAS_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def pictures(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(16):
        array = np.full((16, 16, 3), rng.integers(0, 255, 3), dtype=np.uint8)
        array[4:12, 4:12] = rng.integers(0, 255, 3)
        Image.fromarray(array).save(folder / f"{i:02d}.png")
    return folder


def _generator(seed=0, **options):
    torch.manual_seed(seed)
    family, spec = make_spec("stylegan2", resolution=16, channels=3, latent_dim=LATENT,
                             options={**OPTIONS, **options})
    return family.build_generator(spec).eval()


def _train(pictures, out, steps, **more):
    return ganvas.train(data=str(pictures), model="stylegan2", resolution=16, latent_dim=LATENT,
                        batch_size=8, steps=steps, out=str(out), log_every=2, sample_every=100,
                        checkpoint_every=2, num_samples=4, workers=1, precision="fp32",
                        r1_every=4, **{"model_options": OPTIONS, **QUIET, **more})


def test_fir_resampling_keeps_the_level_and_halves_or_doubles_the_size():
    kernel = fir_kernel()
    assert kernel.sum().item() == pytest.approx(1.0)
    flat = torch.full((2, 3, 8, 8), 0.7)
    up, down = upsample2d(flat, kernel), downsample2d(flat, kernel)
    assert up.shape == (2, 3, 16, 16) and down.shape == (2, 3, 4, 4)
    # away from the zero-padded border the level is kept exactly
    assert torch.allclose(up[..., 2:-2, 2:-2], torch.full_like(up[..., 2:-2, 2:-2], 0.7))
    assert torch.allclose(down[..., 1:-1, 1:-1], torch.full_like(down[..., 1:-1, 1:-1], 0.7))
    # a low-pass filter: a checkerboard (the highest frequency) is removed, not aliased
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None]) % 2 * 2.0 - 1
    assert downsample2d(checker.view(1, 1, 8, 8), kernel)[..., 1:-1, 1:-1].abs().max() < 1e-6


def test_demodulation_gives_unit_variance_whatever_the_style():
    torch.manual_seed(0)
    conv = ModulatedConv2d(32, 16, 3, w_dim=8)
    x = torch.randn(64, 32, 12, 12)
    for scale in (0.1, 1.0, 10.0):
        with torch.no_grad():
            conv.affine.bias.fill_(scale)
            out = conv(x, torch.zeros(64, 8))
        assert out[..., 1:-1, 1:-1].std().item() == pytest.approx(1.0, rel=0.1), scale


def test_styles_and_truncation_in_w():
    G = _generator()
    assert G.num_ws == 6  # 16 px: the 4 px layer, two per doubling, the last RGB layer
    z = torch.randn(5, LATENT, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        G.mapping.w_avg.normal_(generator=torch.Generator().manual_seed(2))
        ws = G.map(z)
        assert ws.shape == (5, 6, 16) and torch.equal(ws[:, 0], ws[:, 5])  # one w per latent
        half = G.map(z, truncation=0.5)
        assert torch.allclose(half, G.w_avg.lerp(ws, 0.5))
        # a cutoff truncates the first layers only
        cut = G.map(z, truncation=0.0, truncation_cutoff=2)
        assert torch.allclose(cut[:, :2], G.w_avg.expand(5, 2, 16))
        assert torch.equal(cut[:, 2:], ws[:, 2:])
        # psi 0: every latent draws the image of the mean style
        mean = G.sample(z, truncation=0.0)
        assert torch.allclose(mean, mean[:1].expand_as(mean), atol=1e-6)


def test_noise_strengths_change_the_picture_only_where_noise_is_on():
    G = _generator()
    z = torch.randn(3, LATENT)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)
        const, none = G.sample(z, noise="const"), G.sample(z, noise="none")
        # constant noise repeats, random noise does not, none leaves it out
        assert torch.equal(const, G.sample(z, noise="const"))
        assert not torch.equal(G.sample(z, noise="random"), G.sample(z, noise="random"))
    assert not torch.allclose(const, none)


def test_without_per_pixel_noise_the_generator_trains_resumes_and_projects(pictures,
                                                                          tmp_path):
    # A small folder's default: no noise layer, so no parameter that never gets a gradient
    # (several processes would refuse it) and every noise mode draws the same picture.
    G = _generator(per_pixel_noise=False)
    assert G.noise_inputs() == []
    assert not [n for n, _ in [*G.named_parameters(), *G.named_buffers()] if "noise" in n]
    z = torch.randn(3, LATENT)
    with torch.no_grad():
        none = G.sample(z, noise="none")
        assert torch.equal(G.sample(z, noise="const"), none)
        assert torch.equal(G.sample(z, noise="random"), none)
    # a model saved before the option existed (None) keeps its noise
    assert len(_generator(per_pixel_noise=None).noise_inputs()) == 5  # 4, 8 and 16 px
    options = {**OPTIONS, "per_pixel_noise": False}
    _train(pictures, tmp_path / "run", steps=4, model_options=options)
    result = ganvas.resume(tmp_path / "run", steps=6, **QUIET)
    state = torch.load(result.checkpoint, weights_only=True)
    assert state["step"] == 6 and state["config"]["model_options"]["per_pixel_noise"] is False
    assert not [key for key in state["generator"] if "noise" in key]
    model = ganvas.load(result.run_dir)
    from ganvas.project import project
    from ganvas.style.backbones import tiny_backbone

    picture = tmp_path / "picture.png"
    model.sample(1)[0].save(picture)
    found = project(model, picture, steps=3, backbone=tiny_backbone(), frames=0)
    assert found.noise == [] and found.latent.shape == (1, G.num_ws, 16)


def test_training_tracks_the_mean_style_and_saves_the_path_length_mean(pictures, tmp_path):
    result = _train(pictures, tmp_path / "run", steps=6)
    state = torch.load(result.checkpoint, weights_only=True)
    assert state["stylegan2"]["pl_mean"] > 0  # the running mean moved off its start
    w_avg = state["generator"]["mapping.w_avg"]
    assert w_avg.abs().sum() > 0
    assert torch.equal(state["generator_ema"]["mapping.w_avg"], w_avg)  # copied, not averaged
    # the lazy phases: G steps once more every pl_every, D every r1_every
    g_steps = state["opt_g"]["state"][0]["step"].item()
    d_steps = state["opt_d"]["state"][0]["step"].item()
    assert g_steps == 6 + 3 and d_steps == 6 + 2
    ratio_g, ratio_d = 2 / 3, 4 / 5
    group = state["opt_g"]["param_groups"][0]
    assert group["lr_scale"] == pytest.approx(ratio_g)
    assert group["betas"][1] == pytest.approx(0.99**ratio_g)
    assert state["opt_d"]["param_groups"][0]["lr_scale"] == pytest.approx(ratio_d)


def test_resume_restores_the_path_length_mean_exactly(pictures, tmp_path):
    straight = _train(pictures, tmp_path / "straight", steps=8)

    class StopAtThree(ganvas.Callback):
        def on_step_end(self, trainer):
            if trainer.step == 3:
                trainer.request_stop("test")

    part = _train(pictures, tmp_path / "split", steps=8, callbacks=[StopAtThree()])
    resumed = ganvas.resume(part.run_dir, **QUIET)
    a = torch.load(straight.checkpoint, weights_only=True)
    b = torch.load(resumed.checkpoint, weights_only=True)
    assert a["stylegan2"]["pl_mean"] == b["stylegan2"]["pl_mean"]
    for key in a["generator"]:
        assert torch.equal(a["generator"][key], b["generator"][key]), key


def test_a_damaged_path_length_mean_is_one_clear_line(pictures, tmp_path, capsys):
    result = _train(pictures, tmp_path / "run", steps=2)
    state = torch.load(result.checkpoint, weights_only=True)
    state["stylegan2"]["pl_mean"] = float("nan")
    ckpt.save_checkpoint(result.checkpoint, state)
    assert main(["train", "--resume", str(result.run_dir), "--steps", "4"]) != 0
    err = capsys.readouterr().err
    assert "path length mean" in err and "Traceback" not in err


def test_style_mixing_in_training_mixes_two_latents_styles(pictures, tmp_path):
    seen = {}

    class Probe(ganvas.Callback):
        def on_train_start(self, trainer):
            G, z = trainer.generator, torch.randn(4, LATENT)
            with torch.no_grad():
                seen["mixed"] = trainer.recipe.run_generator(z)[1]
                seen["plain"] = G.broadcast(G.mapping(z))

    _train(pictures, tmp_path / "run", steps=1, callbacks=[Probe()],
           model_options={**OPTIONS, "style_mixing": 1.0})
    same = [torch.equal(seen["mixed"][:, i], seen["plain"][:, i])
            for i in range(seen["plain"].shape[1])]
    cutoff = same.index(False)
    assert cutoff >= 1 and all(same[:cutoff]) and not any(same[cutoff:])


def test_lazy_correction_of_rates_and_betas():
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=0.01,
                                 betas=(0.5, 0.99))
    lazy_correction(optimizer, 16, (0.5, 0.99))
    group = optimizer.param_groups[0]
    assert group["lr_scale"] == pytest.approx(16 / 17)
    assert group["betas"] == pytest.approx((0.5 ** (16 / 17), 0.99 ** (16 / 17)))
    lazy_correction(optimizer, None, (0.5, 0.99))  # the lazy phase turned off on resume
    assert group["lr_scale"] == 1.0 and group["betas"] == (0.5, 0.99)


def test_generate_style_mix_and_truncation_cutoff(pictures, tmp_path, capsys):
    result = _train(pictures, tmp_path / "run", steps=2)
    out = tmp_path / "mix"
    assert main(["generate", str(result.run_dir), "--style-mix", "1,2,3", "10-13",
                 "--out", str(out)]) == 0
    picture = Image.open(out / "style-mix.png")
    assert picture.size == (5 * 18 + 2, 4 * 18 + 2)  # 4 columns + the rows' own, 3 rows + top
    model = ganvas.load(result.run_dir)
    grid = np.asarray(picture)
    first_row_own = np.asarray(model.sample(1, seed=1)[0])
    assert np.abs(grid[20:36, 2:18].astype(int) - first_row_own).max() <= 1
    assert main(["generate", str(result.run_dir), "--num", "2", "--truncation", "0.5",
                 "--truncation-cutoff", "2", "--out", str(tmp_path / "cut")]) == 0
    capsys.readouterr()
    for bad, message in ((["--truncation-cutoff", "7"], "--truncation-cutoff must be"),
                         (["--style-mix", "1,x", "2"], "--style-mix"),
                         (["--style-mix", "1", "2", "--mix-layers", "9"], "--mix-layers"),
                         (["--mix-layers", "1"], "--mix-layers goes with --style-mix")):
        assert main(["generate", str(result.run_dir), "--out", str(tmp_path / "x")] + bad) != 0
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, bad


def test_style_options_on_a_model_without_styles_are_one_clear_line(pictures, tmp_path,
                                                                     capsys):
    result = ganvas.train(data=str(pictures), model="dcgan", resolution=16, steps=1,
                          batch_size=8, out=str(tmp_path / "run"), workers=1,
                          model_options={"base_channels": 8}, **QUIET)
    for extra in (["--style-mix", "1", "2"], ["--truncation-cutoff", "2"]):
        assert main(["generate", str(result.run_dir), "--out", str(tmp_path / "x")]
                    + extra) != 0
        err = capsys.readouterr().err
        assert "has no style vectors" in err and "Traceback" not in err



def test_a_bad_truncation_cutoff_through_the_api_is_a_clear_error():
    G = _generator()
    z = torch.randn(2, LATENT)
    for bad in (0, -2, 7, 2.5, True):
        with pytest.raises(GanvasError, match="--truncation-cutoff"):
            G.sample(z, truncation=0.5, truncation_cutoff=bad)


def test_resuming_with_r1_off_drops_the_lazy_correction(pictures, tmp_path):
    result = _train(pictures, tmp_path / "run", steps=2)
    state = torch.load(result.checkpoint, weights_only=True)
    assert state["opt_d"]["param_groups"][0]["lr_scale"] == pytest.approx(4 / 5)
    resumed = ganvas.resume(result.run_dir, steps=4, r1_gamma=0.0, **QUIET)
    group = torch.load(resumed.checkpoint, weights_only=True)["opt_d"]["param_groups"][0]
    assert group["lr_scale"] == 1.0 and tuple(group["betas"]) == (0.0, 0.99)


def test_a_discriminator_the_balance_gate_holds_back_is_not_moved_by_r1(pictures, tmp_path):
    start = {}

    class Keep(ganvas.Callback):
        def on_train_start(self, trainer):
            start.update({k: v.clone() for k, v in trainer.discriminator.state_dict().items()})

    result = _train(pictures, tmp_path / "run", steps=5, d_skip_below=1e6, r1_gamma=1.0,
                    callbacks=[Keep()])
    after = torch.load(result.checkpoint, weights_only=True)
    assert start and after["step"] == 5
    for key, value in start.items():
        assert torch.equal(value, after["discriminator"][key]), key
