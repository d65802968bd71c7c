"""--tensorboard: every metric, the sample grids and the monitor's events as TensorBoard
event files, read back with TensorBoard's own reader; a resumed run logs no step twice."""

import pytest

import ganvas

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator")

TINY = dict(data="digits", resolution=16, batch_size=8, latent_dim=8, log_every=2,
            sample_every=2, model_options={"base_channels": 8}, health=False,
            tensorboard=True, progress=False, log=lambda m: None)


class SaysSomething(ganvas.Callback):
    def on_tick(self, trainer, record):
        if record["step"] == 2:
            trainer.log_event("note", "a plain-language event at step 2")


def _read(run):
    reader = event_accumulator.EventAccumulator(
        str(run / "tensorboard"), size_guidance={event_accumulator.SCALARS: 0,
                                                 event_accumulator.IMAGES: 0,
                                                 event_accumulator.TENSORS: 0})
    return reader.Reload()


def test_metrics_samples_and_events_read_back(tmp_path):
    result = ganvas.train(steps=6, out=str(tmp_path / "run"), callbacks=[SaysSomething()],
                          **TINY)
    logged = _read(result.run_dir)
    tags = logged.Tags()
    assert {"Loss/D", "Loss/G", "D/real", "LR/G"} <= set(tags["scalars"])
    assert [e.step for e in logged.Scalars("Loss/D")] == [2, 4, 6]
    assert "samples" in tags["images"] and "samples/final" in tags["images"]
    assert [e.step for e in logged.Images("samples")] == [2, 4, 6]
    texts = logged.Tensors("events/note/text_summary")
    assert texts and texts[0].step == 2
    assert b"plain-language event" in texts[0].tensor_proto.string_val[0]


def test_a_resumed_run_logs_no_step_twice(tmp_path):
    run = tmp_path / "run"
    ganvas.train(steps=6, checkpoint_every=4, keep_checkpoints=5, out=str(run), **TINY)
    # as if the run had been killed after step 6 and resumed from its step-4 checkpoint
    ganvas.resume(run / "checkpoints" / "step-0000004.pt", steps=8, progress=False,
                  log=lambda m: None)
    logged = _read(run)
    assert [e.step for e in logged.Scalars("Loss/D")] == [2, 4, 6, 8]


def test_without_tensorboard_installed_it_is_one_line(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith(("torch.utils.tensorboard", "tensorboard")):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(ganvas.GanvasError, match="pip install tensorboard"):
        ganvas.train(steps=2, out=str(tmp_path / "run"), **TINY)
