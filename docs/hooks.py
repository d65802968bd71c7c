"""MkDocs hook for the Python API page: ``::: ganvas.NAME`` stands for a public name of
``import ganvas``, and is rewritten to the module that defines it.

ganvas imports its public names on first use (``ganvas._EXPORTS`` maps each to its module), and
mkdocstrings reads code without running it, so it cannot follow ``ganvas.train`` by itself.
Reading the map from ``src/ganvas/__init__.py`` keeps the page right when code moves between
modules. A name the map does not hold stops the build with one line.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from mkdocs.exceptions import PluginError

INIT = Path(__file__).resolve().parent.parent / "src" / "ganvas" / "__init__.py"
PUBLIC = re.compile(r"^(:::[ \t]+)ganvas\.(\w+)[ \t]*$", re.M)


def public_names() -> dict[str, str]:
    """ganvas._EXPORTS, read without importing ganvas."""
    for node in ast.parse(INIT.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == "_EXPORTS"
                for target in node.targets):
            return ast.literal_eval(node.value)
    raise PluginError(f"{INIT}: no _EXPORTS map of the public names")


def on_page_markdown(markdown: str, page, config, files) -> str:
    if not PUBLIC.search(markdown):
        return markdown
    names = public_names()

    def where(match: re.Match) -> str:
        name = match.group(2)
        if name not in names:
            raise PluginError(f"{page.file.src_path}: ganvas.{name} is not a public name of "
                              f"ganvas (ganvas._EXPORTS: {', '.join(sorted(names))})")
        return f"{match.group(1)}{names[name]}.{name}"

    return PUBLIC.sub(where, markdown)
