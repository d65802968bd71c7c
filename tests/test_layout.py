"""The package's layering: inference (generate, project, eval, doctor, the generator folder,
stylize --model and --video, export) never imports training code, and models never import
losses or training."""

import subprocess
import sys
from pathlib import Path

OLD_RUN = Path(__file__).parent / "data" / "run-0.1.0"

PROBE = f"""
import sys
import ganvas
from ganvas.cli import main as cli
import ganvas.generate, ganvas.metrics.evaluation, ganvas.training.health.report
import ganvas.project, ganvas.metrics.nearest, ganvas.stylisers.apply
import ganvas.video.painters, ganvas.stylisers.export
model = ganvas.load({str(OLD_RUN)!r})
model.sample(2, seed=0)
ganvas.training.health.report.build_report({str(OLD_RUN)!r})
loaded = sorted(m for m in sys.modules if m.startswith("ganvas."))
print(" ".join(loaded))
"""


def _modules_after(code: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    return set(done.stdout.split())


def test_generating_and_reading_a_run_loads_no_training_code():
    loaded = _modules_after(PROBE)
    assert "ganvas.generate" in loaded and "ganvas.runs.sources" in loaded
    assert "ganvas.project" in loaded and "ganvas.metrics.nearest" in loaded
    assert "ganvas.stylisers.apply" in loaded and "ganvas.video.stylise" in loaded
    forbidden = {"ganvas.training.trainer", "ganvas.losses.standard", "ganvas.losses.recipe",
                 "ganvas.training.ema", "ganvas.augment", "ganvas.losses.stylegan2",
                 "ganvas.losses.fastgan", "ganvas.stylisers.training"}
    assert not loaded & forbidden, loaded & forbidden


def test_models_import_no_losses_or_training():
    loaded = _modules_after("import sys, ganvas.models; "
                            "print(' '.join(m for m in sys.modules if m.startswith('ganvas.')))")
    assert not {m for m in loaded if m.startswith(("ganvas.training", "ganvas.losses"))}
