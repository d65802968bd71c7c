"""Class-conditional training (--conditional): classes from subfolders or a built-in's
labels, every family that takes labels learning to draw the class it is asked for, and the
one-line refusals."""

import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import ganvas
from ganvas.data import data_classes, load_images
from ganvas.data.classes import grid_labels
from ganvas.errors import GanvasError

RED, BLUE = (220, 30, 30), (30, 30, 220)


def _shapes(root, per_class=40, loose=0):
    """Red discs and blue squares on white, in two class folders (and loose files)."""
    for name, colour in (("discs", RED), ("squares", BLUE)):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = Image.new("RGB", (32, 32), "white")
            draw = ImageDraw.Draw(image)
            r = random.Random(i)
            x, y, s = r.randint(4, 12), r.randint(4, 12), r.randint(10, 16)
            (draw.ellipse if name == "discs" else draw.rectangle)([x, y, x + s, y + s],
                                                                  fill=colour)
            image.save(root / name / f"{i}.png")
    for i in range(loose):
        Image.new("RGB", (32, 32), "green").save(root / f"loose{i}.png")
    return root


def _redness(model, label):
    """Mean red minus blue of 32 samples of a class: red discs > 0 > blue squares."""
    images = model.sample_tensor(32, label=label)
    return float((images[:, 0] - images[:, 2]).mean())


# ---- the data ------------------------------------------------------------------------------

def test_subfolders_are_the_classes_and_loose_files_are_left_out(tmp_path, cache):
    data = _shapes(tmp_path / "shapes", per_class=6, loose=2)
    lines = []
    classes = data_classes(str(data))
    assert classes == ("discs", "squares")
    loaded = load_images(str(data), resolution=16, channels=3, classes=classes,
                         progress=False, log=lines.append)
    assert sorted(loaded.labels.tolist()) == [-1, -1] + [0] * 6 + [1] * 6
    text = "\n".join(lines)
    assert "classes of" in text and "discs 6, squares 6" in text
    assert "fewer than 10 pictures" in text  # both classes are thin
    assert "2 picture(s)" in text and "left out" in text
    # a red picture is a disc, a blue one a square, wherever the loader put them
    red, green, blue = (loaded.images[:, i].mean((1, 2)) for i in range(3))
    loose = red < 100  # the green pictures
    assert (loaded.labels[loose] == -1).all()
    assert (loaded.labels[~loose & (red > blue)] == 0).all()
    assert (loaded.labels[~loose & (red < blue)] == 1).all()
    # the cache gives the same labels
    again = load_images(str(data), resolution=16, channels=3, classes=classes,
                        progress=False, log=lambda m: None)
    assert np.array_equal(again.labels, loaded.labels)


def test_builtin_labels_are_the_datasets_own():
    from sklearn.datasets import load_digits

    classes = data_classes("digits")
    assert classes == tuple("0123456789")
    loaded = load_images("digits", resolution=8, channels=1, classes=classes, progress=False,
                         log=lambda m: None)
    assert np.array_equal(loaded.labels, load_digits().target)


@pytest.mark.parametrize("make, message", [
    (lambda root: Image.new("RGB", (8, 8)).save(root / "a.png"), "has no subfolders"),
    (lambda root: ((root / "cats").mkdir(), Image.new("RGB", (8, 8)).save(root / "cats/a.png")),
     r"single class \('cats'\)"),
])
def test_a_folder_without_two_classes_is_refused_in_one_line(tmp_path, make, message):
    root = tmp_path / "pictures"
    root.mkdir()
    make(root)
    with pytest.raises(GanvasError, match=message):
        ganvas.train(data=str(root), conditional=True, model="dcgan", steps=1)


def test_data_or_families_without_labels_are_refused_in_one_line(tmp_path, cache, capsys):
    with pytest.raises(GanvasError, match="emoji has no classes"):
        ganvas.train(data="emoji", conditional=True, steps=1)
    data = _shapes(tmp_path / "shapes", per_class=2)
    with pytest.raises(GanvasError, match="model fastgan cannot take class labels.*"
                                          "dcgan, msg, progressive, stylegan2"):
        ganvas.train(data=str(data), conditional=True, model="fastgan", steps=1)
    from ganvas.cli.main import main

    code = main(["train", "--data", str(data), "--conditional", "--model", "projected",
                 "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "projected cannot take class labels" in err


def test_grid_layout_is_one_row_per_class():
    assert grid_labels(64, 2) == ([0] * 16 + [1] * 16, 16)
    labels, columns = grid_labels(64, 10)
    assert columns == 6 and labels == [i // 6 for i in range(60)]
    assert grid_labels(4, 10) == ([0, 1, 2, 3], 1)


# ---- learning the classes ------------------------------------------------------------------

SMALL = {"dcgan": {"base_channels": 16},
         "stylegan2": {"base_channels": 16, "max_channels": 32, "w_dim": 16},
         "progressive": {"base_channels": 16, "max_channels": 32, "fade_kimg": 0.1,
                         "stable_kimg": 0.1},
         "msg": {"base_channels": 16, "max_channels": 32}}


# DCGAN (16 px, 500 steps) and StyleGAN2 (8 px, 250 steps) are trained until they draw each
# class in its colour, a few seconds each. The pictures' own redness is +0.23 for the discs
# and -0.29 for the squares, and a model that ignores the labels draws both alike; in stop
# 28's runs (mode-seeking term on) the classes ended 0.35-0.55 (DCGAN) and 0.36-0.39
# (StyleGAN2) apart over seeds 0 to 3.
@pytest.mark.parametrize("model, resolution, steps", [("dcgan", 16, 500),
                                                       ("stylegan2", 8, 250)])
@pytest.mark.parametrize("seed", [0])
def test_a_conditional_run_draws_the_class_it_is_asked_for(tmp_path, cache, model, resolution,
                                                           steps, seed):
    data = _shapes(tmp_path / "shapes")
    result = ganvas.train(data=str(data), conditional=True, model=model, resolution=resolution,
                          steps=steps, batch_size=16, latent_dim=16, lr_g=2e-3, lr_d=2e-3,
                          seed=seed,
                          model_options=SMALL[model], augment="none", ema=False, health=False,
                          log_every=100, sample_every=10_000, progress=False,
                          out=str(tmp_path / "run"), log=lambda m: None)
    loaded = ganvas.load(result.run_dir, device="cpu")
    assert loaded.classes == ["discs", "squares"]
    discs, squares = _redness(loaded, "discs"), _redness(loaded, 1)
    assert discs - squares > 0.1, (discs, squares)
    # the same latents, told another class, change colour
    assert _redness(loaded, 0) == pytest.approx(discs, abs=1e-6)


@pytest.mark.parametrize("model", ["progressive", "msg"])
def test_growing_and_multi_scale_families_train_on_classes(tmp_path, cache, model):
    data = _shapes(tmp_path / "shapes", per_class=8)
    result = ganvas.train(data=str(data), conditional=True, model=model, resolution=16,
                          steps=6, batch_size=8, latent_dim=8, model_options=SMALL[model],
                          health=False, log_every=3, sample_every=3, progress=False,
                          out=str(tmp_path / "run"), log=lambda m: None)
    loaded = ganvas.load(result.run_dir, device="cpu")
    for label in ("discs", "squares"):
        images = loaded.sample_tensor(3, label=label)
        assert images.shape == (3, 3, 16, 16) and torch.isfinite(images).all()
    grid = Image.open(result.run_dir / "samples" / "final.png")
    # one row per class: 2 rows of 16 tiles (of the 64 samples asked for by default)
    assert grid.size[0] > grid.size[1] * 4


def test_conditional_runs_resume_exactly_and_keep_their_classes(tmp_path, cache):
    data = _shapes(tmp_path / "shapes", per_class=8)
    common = dict(data=str(data), conditional=True, model="dcgan", resolution=16,
                  batch_size=8, latent_dim=8, model_options={"base_channels": 8},
                  log_every=2, sample_every=100, checkpoint_every=3, progress=False,
                  log=lambda m: None)
    straight = ganvas.train(steps=6, out=str(tmp_path / "straight"), **common)
    first = ganvas.train(steps=3, out=str(tmp_path / "resumed"), **common)
    from ganvas.training.session import resume

    resumed = resume(first.run_dir, steps=6, progress=False, log=lambda m: None)
    a, b = (torch.load(r.run_dir / "checkpoints" / "step-0000006.pt", weights_only=True)
            for r in (straight, resumed))
    assert a["config"]["classes"] == ["discs", "squares"] == b["config"]["classes"]
    for net in ("generator", "discriminator"):
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), (net, key)
    assert "labels" in a["rng"]


def test_generate_by_class_and_a_class_by_seed_grid(tmp_path, cache, capsys):
    from ganvas.cli.main import main

    data = _shapes(tmp_path / "shapes", per_class=4)
    result = ganvas.train(data=str(data), conditional=True, model="dcgan", resolution=16,
                          steps=2, batch_size=4, latent_dim=8, health=False,
                          model_options={"base_channels": 8}, progress=False,
                          out=str(tmp_path / "run"), log=lambda m: None)

    def cli(*args):  # the command in this process (its start-up is tested elsewhere)
        code = main(["generate", str(result.run_dir), "--out", str(tmp_path / "out"), *args])
        return code, capsys.readouterr().err

    assert cli("--class", "squares", "--seeds", "3,4")[0] == 0
    assert (tmp_path / "out" / "squares-seed0003.png").is_file()
    model = ganvas.load(result.run_dir, device="cpu")
    assert torch.equal(model.seed_images([3], "squares"), model.seed_images([3], 1))
    assert cli("--seeds", "1-3", "--grid", "--classes", "all")[0] == 0
    grid = Image.open(tmp_path / "out" / "grid-classes.png")
    assert grid.size[0] == 3 * 16 + 4 * 2  # a column per seed (and a row per class)
    for args, message in [(("--class", "cats"), "not one of this model's classes "
                                                "(discs, squares"),
                          (("--class", "7"), "not one of this model's classes"),
                          (("--classes", "all"), "--classes draws a class-by-seed grid")]:
        code, err = cli(*args)
        assert code == 2 and message in err, err
        assert err.count("\n") == 1 and "Traceback" not in err


def test_an_unconditional_model_refuses_a_class(tmp_path, cache):
    result = ganvas.train(data="digits", model="dcgan", steps=1, batch_size=4,
                          model_options={"base_channels": 8}, health=False, progress=False,
                          out=str(tmp_path / "run"), log=lambda m: None)
    with pytest.raises(GanvasError, match="no classes .*without --conditional"):
        ganvas.load(result.run_dir, device="cpu").sample(1, label="3")


# ---- exploring and shipping a conditional model -------------------------------------------

@pytest.fixture(scope="module")
def conditional_runs(tmp_path_factory):
    """Tiny conditional DCGAN and StyleGAN2 runs (2 steps) on the shapes folder."""
    root = tmp_path_factory.mktemp("conditional")
    data = _shapes(root / "shapes", per_class=6)
    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GANVAS_CACHE", str(root / "cache"))
        for model in ("dcgan", "stylegan2"):
            runs[model] = ganvas.train(
                data=str(data), conditional=True, model=model, resolution=16, steps=2,
                batch_size=4, latent_dim=8, model_options=SMALL[model], health=False,
                num_samples=8, checkpoint_every=1, keep_checkpoints=5, progress=False,
                out=str(root / model), log=lambda m: None).run_dir
    return runs, data


@pytest.mark.parametrize("model", ["dcgan", "stylegan2"])
def test_a_conditional_generator_exports_to_onnx_with_a_class_input(conditional_runs, model,
                                                                    tmp_path):
    import onnxruntime

    from ganvas.export.generator import export_generator

    runs, _ = conditional_runs
    done = export_generator(runs[model], "onnx", tmp_path / "onnx")
    assert done.difference <= 1e-4
    session = onnxruntime.InferenceSession(str(done.folder / "generator.onnx"))
    assert [i.name for i in session.get_inputs()] == ["z", "c", "truncation"]
    loaded = ganvas.load(runs[model], device="cpu")
    z = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    c = torch.eye(2)[[0, 1, 1, 0]]
    images, = session.run(None, {"z": z.numpy(), "c": c.numpy(),
                                 "truncation": np.array(0.8, dtype=np.float32)})
    expected = (loaded.generator.sample(z, c, truncation=0.8) + 1) / 2
    np.testing.assert_allclose(images, expected.detach().numpy(), atol=1e-4, rtol=0)
    card = (done.folder / "README.md").read_text()
    assert "| classes | 0 discs, 1 squares" in card and '"c": c' in card
    # the safetensors folder keeps the class names
    folder = export_generator(runs[model], "safetensors", tmp_path / "st").folder
    assert ganvas.load(folder, device="cpu").classes == ["discs", "squares"]


def test_a_walk_stays_in_its_class_and_a_grid_tile_is_redrawn(conditional_runs, tmp_path):
    from ganvas.grid_tile import draw_grid_tile
    from ganvas.walk import write_walk

    runs, _ = conditional_runs
    loaded = ganvas.load(runs["stylegan2"], device="cpu")
    result = write_walk(runs["stylegan2"], tmp_path / "frames", seeds=[3, 8], frames=5,
                        label="squares", scale=1, device="cpu", progress=False)
    assert result.frames == 5
    first = np.asarray(Image.open(tmp_path / "frames" / "frame00000.png"))
    expected = (loaded.seed_images([3], "squares")[0].permute(1, 2, 0) + 1) * 127.5
    assert np.abs(first.astype(float) - expected.round().numpy()).max() <= 1
    with pytest.raises(GanvasError, match="not one of this model's classes"):
        write_walk(runs["stylegan2"], tmp_path / "x.gif", seeds=[1, 2], label="cats",
                   device="cpu", progress=False)
    # The grid of 8 samples has a row per class, 4 tiles each: tile (2, 3) is a square.
    grid = np.asarray(Image.open(runs["dcgan"] / "samples" / "final.png"))
    tile, step = draw_grid_tile(runs["dcgan"], 2, 3)
    assert step == 2
    pixels = ((tile[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
    top, left = 2 + 1 * (16 + 2), 2 + 2 * (16 + 2)
    assert np.array_equal(grid[top:top + 16, left:left + 16], pixels)
    with pytest.raises(GanvasError, match="8 tiles in 2 rows of 4"):
        draw_grid_tile(runs["dcgan"], 3, 1)


def test_eval_scores_each_class_against_its_own_pictures(conditional_runs, tmp_path,
                                                         monkeypatch):
    import torch.nn.functional as F

    from ganvas.metrics.evaluation import evaluate

    class Pool:
        identity = "test-avgpool4"

        def features(self, images):
            x = torch.as_tensor(np.asarray(images)) if not torch.is_tensor(images) else images
            x = x.float() / 255 if x.dtype == torch.uint8 else (x.float() + 1) / 2
            return F.adaptive_avg_pool2d(x, 2).flatten(1).double().numpy()

    runs, data = conditional_runs
    monkeypatch.setenv("GANVAS_CACHE", str(tmp_path / "cache"))
    result = evaluate(runs["dcgan"], num=12, metrics=["fid"], inception=Pool(),
                      progress=False, log=lambda m: None)
    assert set(result["fid_per_class"]) == {"discs", "squares"}
    assert all(np.isfinite(v) and v >= 0 for v in result["fid_per_class"].values())
    from ganvas.cli.evaluate import format_table

    assert "    discs" in format_table(result)


@pytest.mark.parametrize("model", ["dcgan", "stylegan2"])
def test_a_photo_is_projected_into_a_class_and_drawn_again(conditional_runs, model, tmp_path):
    from ganvas.latents import load_latent, render_latent, save_latent
    from ganvas.project import project
    from ganvas.style.backbones import tiny_backbone

    runs, data = conditional_runs
    loaded = ganvas.load(runs[model], device="cpu")
    result = project(loaded, data / "squares" / "0.png", steps=3, backbone=tiny_backbone(),
                     frames=0, label="squares")
    assert result.label == 1
    path = save_latent(tmp_path / "latent.safetensors", result, loaded.config)
    saved = load_latent(path)
    assert saved.label == 1
    again = render_latent(loaded, saved, "test")
    np.testing.assert_allclose(again, result.image, atol=1e-5)
    with pytest.raises(GanvasError, match="not one of this model's classes"):
        project(loaded, data / "squares" / "0.png", steps=1, backbone=tiny_backbone(),
                label="cats")


def test_the_monitor_measures_diversity_within_each_class():
    """Ten classes of varied pictures; a generator that draws one picture per class is as
    varied as the real set overall, but collapsed within every class."""
    from ganvas.training.callbacks.health import HealthMonitor

    rng = torch.Generator().manual_seed(0)
    classes = torch.arange(200) % 10
    base = torch.rand(10, 3, 16, 16, generator=rng) * 2 - 1  # each class's own look
    real = (base[classes] + 0.5 * torch.randn(200, 3, 16, 16, generator=rng)).clamp(-1, 1)
    monitor = HealthMonitor()
    monitor.real, monitor.real_classes = real, classes
    probe = torch.arange(60) % 10
    monitor.probe_c = torch.nn.functional.one_hot(probe, 10).float()
    varied = (base[probe] + 0.5 * torch.randn(60, 3, 16, 16, generator=rng)).clamp(-1, 1)
    ratio, twins = monitor._diversity_per_class(varied, 16)
    assert 0.8 < ratio < 1.2 and twins == 0
    prototypes = real[:10][probe]  # one picture per class, whatever the latent
    ratio, twins = monitor._diversity_per_class(prototypes, 16)
    assert ratio < 0.05 and twins == 1
    # the whole set's measure cannot tell: one picture per class still spans the classes
    from ganvas.health import diversity

    overall, _ = diversity.compare(prototypes, *monitor.spread_of_reals(16), 16)
    assert overall > 0.5


def test_the_mode_seeking_term_pairs_neighbours_and_punishes_a_generator_that_ignores_z():
    from types import SimpleNamespace

    from ganvas.distributed import Strategy
    from ganvas.losses.standard import StandardRecipe
    from ganvas.training.stats import StatsCollector

    recipe = SimpleNamespace(mode_seeking=1.0, stats=StatsCollector(), strategy=Strategy())
    c = torch.eye(3)[[0, 2, 1, 1, 2, 0, 1]]
    paired = StandardRecipe.paired(recipe, c)
    assert paired.argmax(1).tolist() == [0, 0, 1, 1, 2, 2, 1]  # the odd one keeps its own
    z = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    varied = torch.tanh(z @ torch.randn(4, 3 * 4 * 4)).view(8, 3, 4, 4)
    ignored = varied[:1].expand(8, -1, -1, -1) + 1e-3 * varied  # z barely matters
    assert (StandardRecipe.mode_seeking_loss(recipe, varied, z)
            < 0.01 * StandardRecipe.mode_seeking_loss(recipe, ignored, z))
    # a pyramid (MSG) is judged on its finest scale; off, the term is None
    assert StandardRecipe.mode_seeking_loss(recipe, [varied[:, :, :2, :2], varied], z) \
        == StandardRecipe.mode_seeking_loss(recipe, varied, z)
    recipe.mode_seeking = 0.0
    assert StandardRecipe.mode_seeking_loss(recipe, varied, z) is None
    assert StandardRecipe.paired(recipe, c) is c


def test_the_mode_seeking_term_on_two_processes_is_the_whole_batchs():
    # Each process holds half the pairs and gradients are averaged over the processes: the
    # term's value and averaged gradient must be those of 1 / (mean ratio over all pairs),
    # not the average of each half's own 1 / mean (MSG trains with it on small folders).
    from types import SimpleNamespace

    from ganvas.losses.standard import StandardRecipe
    from ganvas.training.stats import StatsCollector

    z = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    images = torch.tanh(z @ torch.randn(4, 48, generator=torch.Generator().manual_seed(2))
                        ).view(8, 3, 4, 4)

    def term(part, z_part, strategy):
        recipe = SimpleNamespace(mode_seeking=1.0, stats=StatsCollector(), strategy=strategy)
        x = part.clone().requires_grad_(True)
        loss = StandardRecipe.mode_seeking_loss(recipe, x, z_part)
        loss.backward()
        return loss.detach(), x.grad

    from ganvas.distributed import Strategy

    whole, whole_grad = term(images, z, Strategy())
    ratio = ((images[0::2] - images[1::2]).abs().flatten(1).mean(1)
             / (z[0::2] - z[1::2]).abs().mean(1))
    assert torch.allclose(whole, 1 / (ratio.mean() + 1e-5))  # the term as it always was
    halves = [(images[:4], z[:4]), (images[4:], z[4:])]
    sums = [torch.stack([((p[0::2] - p[1::2]).abs().flatten(1).mean(1)
                          / (q[0::2] - q[1::2]).abs().mean(1)).sum().double(),
                         torch.tensor(2.0, dtype=torch.float64)]) for p, q in halves]

    class TwoProcesses(Strategy):  # the other process's share of the all-reduce
        def __init__(self, other):
            super().__init__()
            self.other = other

        def sum(self, values):
            return values + self.other

    grads = []
    for mine, (p, q) in enumerate(halves):
        value, grad = term(p, q, TwoProcesses(sums[1 - mine]))
        assert torch.allclose(value, whole)
        grads.append(grad / 2)  # averaged over the two processes
    # float32 sums in another order: 1e-5 of the largest gradient is far below a wrong
    # formula's error (each half's own 1 / mean differs by about 10 %)
    assert torch.allclose(torch.cat(grads), whole_grad, atol=1e-5 * whole_grad.abs().max())
