"""The package's layering: no import circle inside ``src/ganvas``; inference (generate,
project, eval, doctor, the generator folder, stylize --model and --video, export) and the
studio never import training code; models never import losses or training; losses never import
training; no module grows past 600 lines and the training loop stays under 300."""

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

OLD_RUN = Path(__file__).parent / "data" / "run-0.1.0"

PROBE = f"""
import sys
import ganvas
from ganvas.cli import main as cli
import ganvas.generate, ganvas.metrics.evaluation, ganvas.health.report
import ganvas.project, ganvas.metrics.nearest, ganvas.stylisers.apply
import ganvas.video.painters, ganvas.stylisers.export, ganvas.latents, ganvas.models.export
import ganvas.cli.doctor, ganvas.cli.generate, ganvas.cli.evaluate, ganvas.cli.export
import ganvas.cli.project, ganvas.export.generator, ganvas.grid_tile, ganvas.walk, ganvas.cli.walk
model = ganvas.load({str(OLD_RUN)!r})
model.sample(2, seed=0)
ganvas.health.report.build_report({str(OLD_RUN)!r})
try:  # the studio (an optional extra) starts training in processes of their own
    import ganvas.studio.app
except ImportError:
    pass
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
    forbidden = {m for m in loaded if m.startswith("ganvas.training")}
    forbidden |= loaded & {"ganvas.losses.standard", "ganvas.losses.recipe", "ganvas.augment",
                           "ganvas.losses.stylegan2", "ganvas.losses.fastgan",
                           "ganvas.stylisers.training", "ganvas.losses.registry"}
    assert not forbidden, forbidden


def test_models_import_no_losses_or_training():
    loaded = _modules_after("import sys, ganvas.models; "
                            "print(' '.join(m for m in sys.modules if m.startswith('ganvas.')))")
    assert not {m for m in loaded if m.startswith(("ganvas.training", "ganvas.losses"))}


def test_losses_import_no_training():
    loaded = _modules_after("import sys, ganvas.losses.registry; "
                            "print(' '.join(m for m in sys.modules if m.startswith('ganvas.')))")
    assert "ganvas.losses.standard" in loaded
    assert not {m for m in loaded if m.startswith("ganvas.training")}


def _module_imports() -> dict[str, set[str]]:
    """Each module of the package -> the package's modules it imports (at any depth of its
    code, except under ``if TYPE_CHECKING:``, which never runs)."""
    files = {}
    for path in (SRC / "ganvas").rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        files[name.removesuffix(".__init__")] = path
    edges: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = {id(node) for branch in ast.walk(tree) if isinstance(branch, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(branch.test) for node in ast.walk(branch)}
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[:len(parts) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                while name and name not in files:
                    name = name.rpartition(".")[0]
                # a module importing its own package's __init__ is not a circle of files
                if name and name != module and not module.startswith(name + "."):
                    targets.add(name)
        edges[module] = targets
    return edges


def _circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles_inside_the_package():
    edges = _module_imports()
    assert "ganvas.training.session" in edges["ganvas.cli.train"] or any(
        "ganvas.training.session" in targets for targets in edges.values())
    assert _circles(edges) == []


def test_the_circle_finder_finds_circles():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_modules_stay_small():
    sizes = {path.relative_to(SRC).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
             for path in (SRC / "ganvas").rglob("*.py")}
    assert sizes["ganvas/training/loop.py"] < 300
    assert {name: n for name, n in sizes.items() if n > 600} == {}
