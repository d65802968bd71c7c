"""`ganvas doctor` on long runs: metrics.jsonl read streaming in bounded memory, the
log truncated without loading it, and the report as JSON."""

import json
import math
import shlex
import tracemalloc

import pytest
from PIL import Image

from ganvas.cli import doctor as doctor_cli
from ganvas.cli.main import build_parser, main
from ganvas.cli.parsing import config_values
from ganvas.config import TrainConfig
from ganvas.health.report import (
    MAX_EVENTS,
    PLOT_POINTS,
    Thinned,
    build_report,
    plot_health,
    recommendations,
    train_flags,
)
from ganvas.health.rules import HISTORY, Finding
from ganvas.runs.metrics import MAX_LINE, MetricsLog, iter_metrics, read_metrics

CONFIG = "model: dcgan\nresolution: 32\ndata: digits\nloss: bce\nsteps: 500000\n" \
         "health_warmup: 0\nauto_balance: false\naugment: none\n"
EVENT_EVERY = 20  # lines
FIDELITY_EVERY = 7  # ticks: not a power of two, so thinning all curves alike would miss it


def tick(step, **extra):
    record = {"step": step, "epoch": step / 1000, "kimg": step * 0.064, "Loss/D": 1.2,
              "Loss/G": 0.9, "D/real": 0.6, "D/fake": 0.4, "D/accuracy": 0.7,
              "Health/diversity": 0.8, "Health/duplicates": 0.0, "LR/G": 2e-4,
              "LR/D": 2e-4}
    record.update(extra)
    return record


def write_run(folder, records, config=CONFIG):
    folder.mkdir(exist_ok=True)
    (folder / "config.yaml").write_text(config)
    lines = (json.dumps(r) + "\n" for r in records)
    (folder / "metrics.jsonl").write_text("".join(lines))
    return folder


def write_long_run(folder, lines, note=0):
    """``lines`` lines: a tick every 10 steps, an event every EVENT_EVERY lines, fidelity
    every FIDELITY_EVERY ticks, and a last tick with D loss 0.123; each tick carries a text
    of ``note`` characters the report has no use for. Returns the last step."""
    folder.mkdir()
    (folder / "config.yaml").write_text(CONFIG)
    base = json.dumps(tick(0, **({"note": "n" * note} if note else {})))[len('{"step": 0'):-1]
    text, step = [], 0
    for index in range(lines - 1):
        if index % EVENT_EVERY == EVENT_EVERY - 1:
            text.append(f'{{"step": {step}, "event": "oscillation", '
                        f'"message": "swing at {step}"}}\n')
            continue
        step += 10
        fidelity = (f', "Health/fidelity": {100 - step / 10_000:.4f}'
                    if (step // 10) % FIDELITY_EVERY == 3 else "")
        text.append(f'{{"step": {step}{base}{fidelity}}}\n')
    text.append(json.dumps(tick(step + 10, **{"Loss/D": 0.123})) + "\n")
    (folder / "metrics.jsonl").write_text("".join(text))
    return step + 10


LINES = 50_000
EVENTS = (LINES - 1) // EVENT_EVERY
TICKS = LINES - EVENTS


@pytest.fixture(scope="module")
def long_report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("long") / "run"
    assert write_long_run(folder, LINES) == 10 * TICKS
    return build_report(folder)


def test_a_long_run_is_summarised_right(long_report):
    report, last_step = long_report, 10 * TICKS
    assert report.count == TICKS
    assert report.last["step"] == last_step and report.last["Loss/D"] == 0.123
    assert [r["step"] for r in report.recent] == list(range(last_step - 10 * HISTORY + 10,
                                                            last_step + 1, 10))
    assert len(report.events) == MAX_EVENTS and report.events_dropped == EVENTS - MAX_EVENTS
    event_step = last_step - 10 * ((LINES - 1) % EVENT_EVERY + 1)  # ticks after it
    assert report.events[-1] == {"step": event_step, "event": "oscillation",
                                 "message": f"swing at {event_step}"}
    assert report.event_counts == {"oscillation": EVENTS}
    steps, _ = report.series["Loss/D"].points()
    assert len(steps) <= PLOT_POINTS and steps[0] == 10 and steps[-1] == last_step
    fidelity_steps, fidelity = report.series["Health/fidelity"].points()
    assert 500 < len(fidelity_steps) <= PLOT_POINTS  # a sparse curve is thinned on its own
    assert report.memory.best_fidelity is not None  # the whole run fed the rules' memory
    assert min(fidelity) <= report.memory.best_fidelity < 100 - 10 * TICKS / 20_000


def test_a_long_run_text_says_how_many_events_are_not_shown(long_report):
    text = long_report.text()
    assert f"({EVENTS - MAX_EVENTS} earlier events not shown)" in text
    assert text.count("swing at") == MAX_EVENTS
    assert "--auto-balance lets ganvas" in text


def test_reading_a_run_takes_far_less_memory_than_its_file(tmp_path):
    write_long_run(tmp_path / "run", 4_000, note=2_000)
    size = (tmp_path / "run" / "metrics.jsonl").stat().st_size
    tracemalloc.start()
    try:
        report = build_report(tmp_path / "run")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.count == 4_000 - (4_000 - 1) // EVENT_EVERY
    assert peak < size / 10, (peak, size)  # ~0.6 MB: its curves, recent ticks and events


def test_thinned_curve_keeps_even_points_and_the_newest():
    curve = Thinned(capacity=100)
    for i in range(10_001):
        curve.add(i, float(i))
    steps, values = curve.points()
    assert len(steps) == len(curve) <= 100 and steps == values
    assert steps[0] == 0 and steps[-1] == 10_000
    gaps = {b - a for a, b in zip(steps[:-2], steps[1:-1])}
    assert gaps == {curve.stride}
    few = Thinned(capacity=100)
    for i in range(3):
        few.add(i, 0.0)
    assert few.points()[0] == [0, 1, 2]


def test_iter_metrics_streams_and_skips_what_is_not_a_record(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n' + "x" * (3 * MAX_LINE) + "\n" + '{"step": 2}\n'
                    + '[1]\n{"step": -1}\n{"step": 3, "Loss/D": NaN}\n{"step": 4, "Lo')
    records = iter_metrics(path)
    assert next(records) == {"step": 1}  # a generator: nothing else read yet
    rest = list(records)
    assert [r["step"] for r in rest] == [2, 3] and math.isnan(rest[1]["Loss/D"])
    assert read_metrics(path) == [{"step": 1}] + rest
    assert list(iter_metrics(tmp_path / "missing.jsonl")) == []
    assert list(iter_metrics(tmp_path)) == []


def test_truncate_after_keeps_older_lines_and_drops_a_torn_one(tmp_path):
    path = tmp_path / "metrics.jsonl"
    kept = ['{"step": 1, "Loss/D": 1.5}\n', '{"step": 2, "event": "rollback", "message": "m"}\n',
            '{"step": 3, "Loss/D": NaN}\n']
    path.write_text("".join(kept) + "garbage\n" + '{"step": 4}\n{"step": 9}\n{"step": 10, "L')
    log = MetricsLog(path)
    log.truncate_after(3)
    assert path.read_text() == "".join(kept)  # the lines themselves, not re-encoded
    log.truncate_after(3)
    assert path.read_text() == "".join(kept)
    log.append({"step": 4, "Loss/D": 1.0})
    assert [r["step"] for r in log.read()] == [1, 2, 3, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]  # no temp file

    path.write_text('{"step": 1}\n{"step": 2}')  # a whole last record, its newline unwritten
    log.truncate_after(5)
    assert path.read_text() == '{"step": 1}\n{"step": 2}\n'
    MetricsLog(path, writable=False).truncate_after(0)
    assert path.read_text() == '{"step": 1}\n{"step": 2}\n'
    MetricsLog(tmp_path / "absent.jsonl").truncate_after(0)
    assert not (tmp_path / "absent.jsonl").exists()


def dominated_run(tmp_path):
    """A discriminator that wins at every tick, and a last tick whose losses are NaN."""
    records = [tick(s, **{"D/accuracy": 0.99, "D/real": 0.95, "D/fake": 0.05,
                          "Health/fidelity": 50 - s / 100, "Health/sharpness": 0.8,
                          "Health/checkerboard": 1.4, "Health/memorisation": 0.1})
               for s in range(10, 400, 10)]
    records.insert(5, {"step": 50, "event": "discriminator_wins", "message": "D wins"})
    records[-1].update({"Loss/D": float("nan"), "Loss/G": float("inf")})
    return write_run(tmp_path / "run", records)


def run_doctor(capsys, *argv):
    code = main(["doctor", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def reject_constants(name):
    raise AssertionError(f"{name} is not JSON")


def test_json_report_parses_and_has_every_key(tmp_path, capsys, monkeypatch):
    plotted = []
    monkeypatch.setattr(doctor_cli, "plot_health",  # drawn for real in the test below
                        lambda report, path: plotted.append(path) or path)
    run = dominated_run(tmp_path)
    code, out, err = run_doctor(capsys, "--json", run)
    assert code == 0, err
    report = json.loads(out, parse_constant=reject_constants)
    assert set(report) >= {"schema", "run_dir", "config", "last", "events", "findings",
                           "recommendations", "healthy", "memory", "plot"}
    assert report["memory"]["best_step"] is not None
    assert report["schema"] == 1 and report["run_dir"] == str(run)
    assert report["config"] == {"model": "dcgan", "resolution": 32, "data": "digits",
                                "loss": "bce", "steps": 500000}
    assert report["last"]["step"] == 390
    assert report["last"]["Loss/D"] is None and report["last"]["Loss/G"] is None
    assert report["events"] == [{"step": 50, "event": "discriminator_wins",
                                 "message": "D wins"}]
    assert report["healthy"] is False
    kinds = [f["kind"] for f in report["findings"]]
    assert "discriminator_wins" in kinds
    for finding in report["findings"]:
        assert set(finding) == {"kind", "message", "changes", "restart", "evidence"}
    assert any("ganvas train --resume" in a for a in report["recommendations"])
    assert "Plots:" not in out and len(out.strip().splitlines()) == 1
    assert report["plot"] == str(run / "health.png") and plotted == [run / "health.png"]


def test_json_without_plot_writes_no_picture(tmp_path, capsys):
    run = write_run(tmp_path / "run", [tick(s) for s in range(10, 200, 10)])
    code, out, err = run_doctor(capsys, "--json", "--no-plot", run)
    assert code == 0, err
    report = json.loads(out)
    assert report["healthy"] is True and report["findings"] == []
    assert report["plot"] is None and not (run / "health.png").exists()
    code, out, _ = run_doctor(capsys, "--no-plot", run)
    assert code == 0 and "Diagnosis:" in out and "Plots:" not in out


def test_json_turns_every_non_finite_number_into_null(tmp_path):
    report = build_report(dominated_run(tmp_path))
    report.current = [Finding("made_up", "a new kind of finding", {"lr_d": float("nan")},
                              {"batch_size": 64, "augment": "ada"},
                              {"ratio": float("inf"), "share": 0.5})]
    as_json = json.dumps(report.as_dict(), allow_nan=False)
    finding = json.loads(as_json)["findings"][0]
    assert finding["changes"] == {"lr_d": None} and finding["evidence"]["ratio"] is None
    assert finding["restart"] == {"batch_size": 64, "augment": "ada"}
    restart = [a for a in recommendations(report) if "new run" in a]
    assert len(restart) == 1
    prefix = "some remedies need a new run: "
    assert restart[0].startswith(prefix + "ganvas train --data digits --model dcgan ")
    again, given = parsed(restart[0].removeprefix(prefix))
    assert given == {"data": "digits", "model": "dcgan", "resolution": 32, "loss": "bce",
                     "out": f"{report.run_dir}-restart", "batch_size": 64,
                     "augment": "ada"}  # no --lr-d nan


def parsed(command):
    """A command line read back by `ganvas train`'s own parser and checked."""
    words = shlex.split(command)
    assert words[:2] == ["ganvas", "train"]
    values = config_values(build_parser().parse_args(words[1:]))
    return TrainConfig.from_dict(values).validate(), values


def test_restart_takes_the_settings_warnings_of_the_saved_config(tmp_path):
    """ganvas train only prints its settings warnings; doctor checks config.yaml again and
    finds their remedies, and the new run keeps the old one's model options, in a folder
    beside it (the old one's name may need quoting)."""
    config = ("model: dense\nresolution: 32\nchannels: 1\ndata: digits\nloss: bce\n"
              "batch_size: 4\nsteps: 500\nmodel_options:\n  generator_widths: [32]\n"
              "  discriminator_widths: [2048, 2048]\n")
    records = [tick(s) for s in range(10, 200, 10)]
    run = write_run(tmp_path / "run 1; rm -rf ~", records, config=config)
    report = build_report(run)
    # The samples show nothing, but the risky settings are the diagnosis: the run is not
    # called healthy above the advice to start it again (issue 26).
    assert not report.current and not report.healthy
    assert [f.kind for f in report.settings] == [
        "settings_batch_small", "settings_generator_small"]
    assert "The risky settings above are the diagnosis" in report.text()
    assert "No problem is visible" not in report.text()
    assert report.as_dict()["healthy"] is False
    assert [f["kind"] for f in report.as_dict()["settings"]] == [
        "settings_batch_small", "settings_generator_small"]
    assert "Settings check (config.yaml):\n  - --batch-size 4" in report.text()
    restart = [a for a in recommendations(report) if "new run" in a]
    assert len(restart) == 1 and shlex.quote(f"{run}-restart") in restart[0]
    again, given = parsed(restart[0].removeprefix("some remedies need a new run: "))
    assert (again.model, again.resolution, again.channels, again.batch_size) == \
        ("dense", 32, 1, 64)
    assert again.out == f"{run}-restart" and "steps" not in given
    assert again.model_options["discriminator_widths"] == [2048, 2048]
    assert again.model_options["generator_widths"][0] > 32
    # Usual settings ask for nothing.
    usual = ("model: dense\nresolution: 32\nchannels: 1\ndata: digits\nloss: bce\n"
             "batch_size: 64\nsteps: 500\n")
    quiet = write_run(tmp_path / "quiet", records, config=usual)
    assert build_report(quiet).settings == [] and build_report(quiet).healthy
    assert "No problem is visible at the end of the run." in build_report(quiet).text()
    assert not any("new run" in a for a in recommendations(build_report(quiet)))


def test_resume_advice_spells_flags_as_ganvas_train_reads_them():
    assert train_flags({"lr_d": 1e-4, "spectral_norm": True, "ema": False,
                        "d_accuracy_band": (0.6, 0.85), "lr_g": float("nan"),
                        "not_a_setting": 1}) == \
        "--lr-d 0.0001 --spectral-norm --no-ema --d-accuracy-band 0.6 0.85"


def test_json_errors_are_one_line(tmp_path, capsys):
    code, out, err = run_doctor(capsys, "--json", tmp_path)
    assert code == 2 and out == "" and "metrics.jsonl" in err
    assert len(err.strip().splitlines()) == 1
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "event": "x"}\n')
    code, _, err = run_doctor(capsys, "--json", tmp_path)
    assert code == 2 and "no training records yet" in err


def test_plot_draws_the_new_health_curves(tmp_path):
    report = build_report(dominated_run(tmp_path))
    for key in ("Health/fidelity", "Health/sharpness", "Health/checkerboard",
                "Health/memorisation"):
        assert len(report.series[key]) == 39
    assert report.memory.best_step is not None  # the star on the fidelity panel
    assert Image.open(plot_health(report, tmp_path / "health.png")).size[0] > 500


def test_a_run_before_its_first_record_is_told_what_to_do(tmp_path, capsys):
    import os
    import time

    from ganvas.runs.status import RunStatus, this_host, write_status

    (tmp_path / "config.yaml").write_text("log_every: 50\n")
    code, out, err = run_doctor(capsys, tmp_path)  # ended, nothing saved
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "ended before its first record (it writes one every 50 steps)" in err
    assert "start it again" in err and "--resume" not in err
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "step-0000000.pt").write_bytes(b"")
    code, _, err = run_doctor(capsys, tmp_path)  # ended with a checkpoint
    assert code == 2 and err.strip().endswith(f"carry it on with: ganvas train --resume {tmp_path}")
    write_status(tmp_path, RunStatus(state="running", pid=os.getpid(), host=this_host(),
                                     heartbeat=time.time()))
    code, _, err = run_doctor(capsys, tmp_path)  # still in its first 50 steps
    assert code == 2 and "has not written its first record yet" in err and "ended" not in err
