"""Fixtures shared by several test modules."""

import os

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs the files on two workers (pytest-xdist): each gets its share of the
    # cores, for its own tests and for the processes they start, or the workers' threads
    # fight over the cores (two 2-thread torch processes on 2 cores run 3-10x slower).
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    # (A plain `pytest` run leaves the thread counts alone; the suite passes either way.)
    os.environ["OMP_NUM_THREADS"] = str(max(1, (cores or 1) // workers))
    os.environ["MKL_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"]
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


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
