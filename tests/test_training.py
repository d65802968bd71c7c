"""Short real training runs: outputs written, losses moving, exact resume, determinism."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import ganvas
from ganvas.errors import GanvasError
from ganvas.runs import checkpoint as ckpt

TINY = dict(model="dcgan", resolution=16, channels=3, latent_dim=8,
            model_options={"base_channels": 8}, batch_size=8, log_every=2, sample_every=4,
            checkpoint_every=4, num_samples=4, workers=1)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANVAS_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def image_folder(tmp_path):
    """20 small pictures: coloured squares on random backgrounds, two sizes, nested."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "pictures"
    (folder / "sub").mkdir(parents=True)
    for i in range(20):
        size = (40, 30) if i % 2 else (24, 24)
        array = np.full((size[1], size[0], 3), rng.integers(0, 255, 3), dtype=np.uint8)
        array[5:15, 5:15] = rng.integers(0, 255, 3)
        target = folder / ("sub" if i % 3 == 0 else "") / f"img{i:02d}.png"
        Image.fromarray(array).save(target)
    return folder


def _weights(run_dir):
    _, state = ckpt.latest_checkpoint(run_dir)
    return state


def test_short_run_writes_everything(image_folder, tmp_path):
    result = ganvas.train(data=str(image_folder), steps=8, out=str(tmp_path / "run"),
                          progress=False, log=lambda m: None, **TINY)
    run = result.run_dir
    assert result.step == 8 and not result.interrupted
    for name in ("config.yaml", "metrics.jsonl", "loss.png", "samples/final.png",
                 "samples/step-0000004.png", "generator/config.json",
                 "generator/model.safetensors"):
        assert (run / name).is_file(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6, 8]
    for r in records:
        for key in ("Loss/D", "Loss/G", "D/real", "D/fake", "LR/G", "LR/D", "Speed/img_per_s"):
            assert np.isfinite(r[key]), key
        assert 0 <= r["D/real"] <= 1 and 0 <= r["D/fake"] <= 1
    assert records[0]["Loss/D"] != records[-1]["Loss/D"]  # training moves
    # the starting point (kept for rollbacks), then every checkpoint_every steps
    assert [p.name for p in ckpt.list_checkpoints(run)] == [
        "step-0000000.pt", "step-0000004.pt", "step-0000008.pt"]
    grid = Image.open(run / "samples" / "final.png")
    assert grid.size == (2 * 16 + 3 * 2, 2 * 16 + 3 * 2)  # 4 images, 2x2 with padding


def test_training_actually_learns_on_digits(tmp_path):
    """After 120 steps of the lesson's 28 px DCGAN (narrowed for speed), the average generated
    image already has the layout of the average digit; an untrained generator's has none."""
    from ganvas.data import load_images

    data = load_images("digits", resolution=28, channels=1, progress=False, log=lambda m: None)
    data_mean = torch.from_numpy(np.asarray(data.images, dtype=np.float32)).mean(0).flatten()

    def layout_correlation(run_dir):
        generated = ganvas.load(run_dir).sample_tensor(256, seed=0).mean(0).flatten()
        return torch.corrcoef(torch.stack([data_mean, generated]))[0, 1].item()

    options = dict(data="digits", batch_size=32, log_every=20, sample_every=1000,
                   progress=False, log=lambda m: None, model_options={"base_channels": 16})
    untrained = ganvas.train(steps=1, out=str(tmp_path / "untrained"), lr_g=1e-12, lr_d=1e-12,
                             **options)
    trained = ganvas.train(steps=120, out=str(tmp_path / "run"), **options)
    records = [json.loads(x) for x in (trained.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 6
    assert abs(layout_correlation(untrained.run_dir)) < 0.1
    assert layout_correlation(trained.run_dir) > 0.3


def test_same_seed_same_weights(image_folder, tmp_path):
    a = ganvas.train(data=str(image_folder), steps=4, out=str(tmp_path / "a"), progress=False,
                     log=lambda m: None, **TINY)
    b = ganvas.train(data=str(image_folder), steps=4, out=str(tmp_path / "b"), progress=False,
                     log=lambda m: None, **TINY)
    c = ganvas.train(data=str(image_folder), steps=4, out=str(tmp_path / "c"), progress=False,
                     log=lambda m: None, **{**TINY, "seed": 1})
    wa, wb, wc = (_weights(r.run_dir)["generator"] for r in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


STABILISERS = {
    "plain": {},
    "everything": dict(augment="ada", ada_kimg=0.05, r1_gamma=0.1, r1_every=3,
                       instance_noise=0.1, n_critic=2, d_accuracy_band=(0.3, 0.9),
                       label_smoothing=0.1, spectral_norm=True, auto_balance=True,
                       health_warmup=0),
    "wgan-gp": dict(loss="wgan-gp", augment="diffaugment", ema=False,
                    model_options={"base_channels": 8, "discriminator_norm": "instance"}),
    "alternating": dict(update="alternating", augment="ada", ada_kimg=0.05, r1_gamma=0.1,
                         r1_every=3, n_critic=2, d_accuracy_band=(0.3, 0.9),
                         auto_balance=True, health_warmup=0),
    "alternating-gp": dict(update="alternating", loss="wgan-gp", ema=False,
                            model_options={"base_channels": 8,
                                           "discriminator_norm": "instance"}),
}


@pytest.mark.parametrize("stabilisers", sorted(STABILISERS))
def test_interrupted_and_resumed_equals_uninterrupted(image_folder, tmp_path, stabilisers):
    options = {**TINY, "mirror": True, **STABILISERS[stabilisers]}
    straight = ganvas.train(data=str(image_folder), steps=10, out=str(tmp_path / "straight"),
                            progress=False, log=lambda m: None, **options)

    class StopAtSix(ganvas.Callback):
        def on_step_end(self, trainer):
            if trainer.step == 6:
                trainer.request_stop("test interruption")

    part = ganvas.train(data=str(image_folder), steps=10, out=str(tmp_path / "split"),
                        progress=False, log=lambda m: None, callbacks=[StopAtSix()], **options)
    assert part.interrupted and part.step == 6
    resumed = ganvas.resume(part.run_dir, progress=False, log=lambda m: None)
    assert resumed.step == 10 and not resumed.interrupted
    a, b = _weights(straight.run_dir), _weights(resumed.run_dir)
    nets = ("generator", "discriminator") + (("generator_ema",) if "generator_ema" in a else ())
    for net in nets:
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), (net, key)
    assert a["data"] == b["data"]
    assert a["augment"].get("p") == b["augment"].get("p")
    lines = (resumed.run_dir / "metrics.jsonl").read_text().splitlines()
    steps = [r["step"] for r in map(json.loads, lines) if "event" not in r]
    assert steps == sorted(set(steps)) and steps[-1] == 10


def test_resume_extends_to_new_total_and_refuses_fixed_settings(image_folder, tmp_path):
    run = ganvas.train(data=str(image_folder), steps=4, out=str(tmp_path / "run"),
                       progress=False, log=lambda m: None, **TINY)
    with pytest.raises(GanvasError, match="already trained 4 steps"):
        ganvas.resume(run.run_dir, progress=False, log=lambda m: None)
    with pytest.raises(GanvasError, match="--model cannot change"):
        ganvas.resume(run.run_dir, steps=6, model="dense", progress=False, log=lambda m: None)
    longer = ganvas.resume(run.run_dir, steps=6, progress=False, log=lambda m: None)
    assert longer.step == 6


def test_epochs_sets_the_number_of_steps(image_folder, tmp_path):
    result = ganvas.train(data=str(image_folder), epochs=2, out=str(tmp_path / "run"),
                          progress=False, log=lambda m: None, **TINY)
    assert result.step == 5  # ceil(2 epochs * 20 images / batch 8)


def test_generate_is_deterministic_and_matches_across_sources(image_folder, tmp_path):
    run = ganvas.train(data=str(image_folder), steps=4, out=str(tmp_path / "run"),
                       progress=False, log=lambda m: None, **TINY).run_dir
    from_run = ganvas.load(run).sample_tensor(6, seed=3)
    again = ganvas.load(run).sample_tensor(6, seed=3)
    from_export = ganvas.load(run / "generator").sample_tensor(6, seed=3)
    ckpt_file = ckpt.list_checkpoints(run)[-1]
    from_file = ganvas.load(ckpt_file).sample_tensor(6, seed=3)
    assert torch.equal(from_run, again)
    assert torch.equal(from_run, from_export) and torch.equal(from_run, from_file)
    assert not torch.equal(from_run, ganvas.load(run).sample_tensor(6, seed=4))
    # batch size must not change which image a seed gives
    model = ganvas.load(run)
    assert torch.allclose(model.sample_tensor(6, seed=3, batch_size=2), from_run, atol=1e-6)
    images = model.sample(3, seed=0)
    assert len(images) == 3 and images[0].size == (16, 16) and images[0].mode == "RGB"


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(image_folder, tmp_path):
    run = ganvas.train(data=str(image_folder), steps=8, out=str(tmp_path / "run"),
                       progress=False, log=lambda m: None, **TINY).run_dir
    newest = ckpt.list_checkpoints(run)[-1]
    newest.write_bytes(newest.read_bytes()[:1000])
    warnings = []
    path, state = ckpt.latest_checkpoint(run, warn=warnings.append)
    assert path.name == "step-0000004.pt" and state["step"] == 4
    assert warnings and "step-0000008.pt" in warnings[0]


class BreakInStep(ganvas.Callback):
    """Step 11 fails half-way, after the discriminator's update."""

    def on_step_end(self, trainer):
        if trainer.step == 10:
            step_discriminator = trainer.opt_d.step

            def update_then_fail(*args, **kwargs):
                step_discriminator(*args, **kwargs)
                raise RuntimeError("failure inside a step")

            trainer.opt_d.step = update_then_fail


def test_a_crash_inside_a_step_never_overwrites_a_good_checkpoint(image_folder, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="inside a step"):
        ganvas.train(data=str(image_folder), steps=30, out=str(run), progress=False,
                     log=lambda m: None, callbacks=[BreakInStep()],
                     **{**TINY, "checkpoint_every": 10, "log_every": 5})
    state = torch.load(run / "checkpoints" / "step-0000010.pt", weights_only=True)
    assert state["step"] == 10 and state["data"]["position"] == 10 * 8
    assert not (run / "checkpoints" / "step-0000011.pt").exists()


def test_auto_balance_runs_resume_exactly_when_stopped_between_ticks(image_folder, tmp_path):
    options = {**TINY, **STABILISERS["everything"], "log_every": 4}

    class StopAtSeven(ganvas.Callback):
        def on_step_end(self, trainer):
            if trainer.step == 7:
                trainer.request_stop("test")

    quiet = dict(progress=False, log=lambda m: None)
    straight = ganvas.train(data=str(image_folder), steps=12, out=str(tmp_path / "a"),
                            **quiet, **options)
    part = ganvas.train(data=str(image_folder), steps=12, out=str(tmp_path / "b"),
                        callbacks=[StopAtSeven()], **quiet, **options)
    assert part.step == 7
    resumed = ganvas.resume(part.run_dir, **quiet)
    a, b = _weights(straight.run_dir), _weights(resumed.run_dir)
    for net in ("generator", "discriminator", "generator_ema"):
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net]), net


def _one_step(folder, out, **options):
    result = ganvas.train(data=str(folder), steps=1, out=str(out), progress=False,
                          log=lambda m: None, **{**TINY, **options})
    return _weights(result.run_dir)


def _same(a, b, **tolerance):
    """Weights alike; BatchNorm's running statistics count forwards, not updates."""
    return all(torch.allclose(a[k].float(), b[k].float(), **tolerance) for k in a
               if "running_" not in k and "num_batches" not in k)


def test_simultaneous_update_takes_both_gradients_at_the_same_position(image_folder,
                                                                       tmp_path):
    """D's update is the same in both modes; G's differs only because the alternating mode
    scores the fakes with the already updated D. With D (almost) frozen the two coincide."""
    alt = _one_step(image_folder, tmp_path / "alt", update="alternating")
    sim = _one_step(image_folder, tmp_path / "sim", update="simultaneous")
    assert _same(alt["discriminator"], sim["discriminator"], rtol=1e-5, atol=1e-7)
    assert not _same(alt["generator"], sim["generator"], rtol=1e-5, atol=1e-7)
    frozen = dict(lr_d=1e-12)
    alt = _one_step(image_folder, tmp_path / "alt-frozen", update="alternating", **frozen)
    sim = _one_step(image_folder, tmp_path / "sim-frozen", update="simultaneous", **frozen)
    assert _same(alt["generator"], sim["generator"], rtol=1e-5, atol=1e-7)


def test_simultaneous_update_trains_deterministically(image_folder, tmp_path):
    options = dict(TINY, steps=8, progress=False, log=lambda m: None)  # the default update
    a = ganvas.train(data=str(image_folder), out=str(tmp_path / "a"), **options)
    b = ganvas.train(data=str(image_folder), out=str(tmp_path / "b"), **options)
    wa, wb = _weights(a.run_dir), _weights(b.run_dir)
    for net in ("generator", "discriminator"):
        assert all(torch.equal(wa[net][k], wb[net][k]) for k in wa[net])
    records = [json.loads(x) for x in (a.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["Loss/D"]) and np.isfinite(r["Loss/G"]) for r in records)
    assert records[0]["Loss/G"] != records[-1]["Loss/G"]  # both players move
    assert records[0]["Loss/D"] != records[-1]["Loss/D"]


def test_update_mode_is_checked():
    from ganvas.config import TrainConfig

    with pytest.raises(GanvasError, match="--update"):
        TrainConfig(data="digits", update="sideways").validate()


class ConvDtypes(ganvas.Callback):
    """Records the dtype of every convolution's output during training steps."""

    def __init__(self):
        self.dtypes = set()

    def on_train_start(self, trainer):
        for net in (trainer.generator, trainer.discriminator):
            for module in net.modules():
                if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                    module.register_forward_hook(
                        lambda m, i, out: self.dtypes.add(out.dtype) if torch.is_grad_enabled()
                        else None)


@pytest.mark.parametrize("options", [{}, dict(update="alternating", loss="wgan-gp",
                                              r1_gamma=0.1, r1_every=2, augment="ada",
                                              model_options={"base_channels": 8,
                                                             "discriminator_norm": "instance"})])
def test_bf16_mixed_precision_trains_in_bf16_with_float32_weights(image_folder, tmp_path,
                                                                  options):
    quiet = dict(TINY, steps=6, progress=False, log=lambda m: None, **options)
    watch = ConvDtypes()
    mixed = ganvas.train(data=str(image_folder), out=str(tmp_path / "bf16"), precision="bf16",
                         callbacks=[watch], **quiet)
    # The gradient penalty's own forward of D stays in float32 on purpose.
    assert watch.dtypes == ({torch.bfloat16, torch.float32} if "loss" in options
                            else {torch.bfloat16})
    again = ganvas.train(data=str(image_folder), out=str(tmp_path / "bf16-again"),
                         precision="bf16", **quiet)
    watch = ConvDtypes()
    plain = ganvas.train(data=str(image_folder), out=str(tmp_path / "fp32"), precision="fp32",
                         callbacks=[watch], **quiet)
    assert watch.dtypes == {torch.float32}
    a, b, c = (_weights(r.run_dir) for r in (mixed, again, plain))
    for net in ("generator", "discriminator"):
        assert all(a[net][k].dtype == c[net][k].dtype for k in a[net])  # float32 weights
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net])  # deterministic
        assert all(torch.isfinite(a[net][k].float()).all() for k in a[net])
    assert not _same(a["generator"], c["generator"], rtol=1e-6, atol=0)  # bf16 was in use
    # ...but it computes nearly the same step: a few bf16 roundings apart, not another run.
    assert _same(a["generator"], c["generator"], rtol=0.05, atol=2e-3)
    records = [json.loads(x) for x in (mixed.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["Loss/D"]) for r in records)
    assert "precision: bf16" in (mixed.run_dir / "config.yaml").read_text()


def test_fp16_trains_with_a_gradient_scaler_and_float32_penalties(image_folder, tmp_path):
    """float16 needs its losses scaled; R1 and the gradient penalty take their own float32
    passes of D. The scaler's state is part of the checkpoint, so a resumed run goes on with it."""
    watch = ConvDtypes()
    result = ganvas.train(data=str(image_folder), out=str(tmp_path / "fp16"), precision="fp16",
                          r1_gamma=0.1, r1_every=2, callbacks=[watch],
                          **dict(TINY, steps=4, progress=False, log=lambda m: None))
    assert watch.dtypes == {torch.float16, torch.float32}  # float32: the R1 passes
    state = _weights(result.run_dir)
    assert state["scaler"]["scale"] > 0
    assert all(torch.isfinite(v.float()).all() for v in state["generator"].values())
    resumed = ganvas.resume(result.run_dir, steps=6, progress=False, log=lambda m: None)
    assert resumed.step == 6 and "scaler" in _weights(result.run_dir)


def test_precision_is_resolved_per_device(monkeypatch):
    from ganvas.config import TrainConfig
    from ganvas.utils import device as devices

    cpu = torch.device("cpu")
    assert devices.resolve_precision("fp32", cpu) is None
    assert devices.resolve_precision("bf16", cpu) is torch.bfloat16
    monkeypatch.setattr(devices, "native_bf16", lambda device: False)
    assert devices.resolve_precision("auto", cpu) is None  # no bf16 hardware: float32
    monkeypatch.setattr(devices, "native_bf16", lambda device: True)
    assert devices.resolve_precision("auto", cpu) is torch.bfloat16
    with pytest.raises(GanvasError, match="--precision bf16 is not supported on Apple MPS"):
        devices.resolve_precision("bf16", torch.device("mps"))
    assert devices.resolve_precision("fp16", cpu) is torch.float16
    with pytest.raises(GanvasError, match="--precision must be one of auto, fp32, bf16, fp16"):
        TrainConfig(data="digits", precision="fp8").validate()
