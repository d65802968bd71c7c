"""Fixtures shared by several test modules."""

import pytest


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A dataset and metrics cache of the test's own (GANVAS_CACHE), never the user's."""
    monkeypatch.setenv("GANVAS_CACHE", str(tmp_path / "cache"))


def exported_onnx_images(run_dir, folder, latent_dim: int):
    """Export ``run_dir``'s generator to ONNX in ``folder`` (checked against PyTorch there)
    and run it with onnxruntime on two zero latents: ``(export result, images)``."""
    import numpy as np
    import onnxruntime

    from ganvas.export.generator import export_generator

    done = export_generator(run_dir, "onnx", folder)
    assert done.difference <= 1e-4
    session = onnxruntime.InferenceSession(str(done.folder / "generator.onnx"))
    images, = session.run(None, {"z": np.zeros((2, latent_dim), np.float32),
                                 "truncation": np.array(1.0, np.float32)})
    return done, images
