"""The README and the documentation pages in docs/ stay true to the project: every relative
link and picture resolves (anchors included), every `ganvas ...` command shown in a code block
parses with the real command line, and the site builds with `mkdocs build --strict`."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shlex
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = [README, *sorted(DOCS.glob("*.md"))]

FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
INLINE_CODE = re.compile(r"(`+)(?!`).+?(?<!`)\1", re.S)
MD_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"<(?:img|a|source)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.I)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto:, ...
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console", "text"}


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if ROOT in path.parents else path.name


def _split(path: Path) -> tuple[list[tuple[int, str]], list[tuple[int, str, str]]]:
    """(prose lines, code lines) of a Markdown file, each with its 1-based line number;
    code lines carry their block's language."""
    prose, code = [], []
    fence, language = None, ""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = FENCE.match(line)
        if fence is None and match:
            fence, language = match.group(1), match.group(2).lower()
        elif fence is not None and line.strip().startswith(fence[0] * len(fence)) \
                and not line.strip().strip(fence[0]):
            fence = None
        elif fence is not None:
            code.append((number, line, language))
        else:
            prose.append((number, line))
    assert fence is None, f"{_rel(path)}: a code block is never closed"
    return prose, code


def _mkdocs_slug(text: str) -> str:
    """Python-Markdown's toc slugify, the one MkDocs uses for heading ids."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _github_slug(text: str) -> str:
    """GitHub's heading anchors, for the same files read on GitHub."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def _heading_text(raw: str) -> str:
    text = re.sub(r"`([^`]*)`", r"\1", raw)               # code spans keep their text
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links keep their text
    return re.sub(r"[*_]{1,2}([^*_]+)[*_]{1,2}", r"\1", text)


def anchors(path: Path) -> set[str]:
    """The anchors a link may name: valid both in the MkDocs site and on GitHub."""
    found: dict[str, set[str]] = {"mkdocs": set(), "github": set()}
    for _, line in _split(path)[0]:
        match = HEADING.match(line)
        if not match:
            continue
        text = _heading_text(match.group(2))
        for kind, slug in (("mkdocs", _mkdocs_slug(text)), ("github", _github_slug(text))):
            base, n = slug, 0
            while slug in found[kind]:  # repeated headings: -1, -2 (GitHub) / _1 (MkDocs)
                n += 1
                slug = f"{base}{'-' if kind == 'github' else '_'}{n}"
            found[kind].add(slug)
    return found["mkdocs"] & found["github"]


def links(path: Path) -> list[tuple[int, str]]:
    """Every link and picture target in the prose of a Markdown file, with its line."""
    prose = "\n".join(line for _, line in _split(path)[0])
    numbers = [number for number, _ in _split(path)[0]]
    # Blank out inline code, keeping the line breaks, so `[0, 1](x)` in code is no link.
    prose = INLINE_CODE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), prose)
    found = []
    for pattern in (MD_LINK, HTML_LINK):
        for match in pattern.finditer(prose):
            found.append((numbers[prose.count("\n", 0, match.start())], match.group(1)))
    return sorted(found)


def broken_links(path: Path) -> list[str]:
    problems = []
    for line, target in links(path):
        if EXTERNAL.match(target) or target.startswith("//"):
            continue
        file_part, _, anchor = target.partition("#")
        if file_part.startswith("/"):
            problems.append(f"{_rel(path)}:{line}: {target}: absolute link (make it relative)")
            continue
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.is_file():
            problems.append(f"{_rel(path)}:{line}: {target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            problems.append(f"{_rel(path)}:{line}: {target}: no heading with anchor "
                            f"#{anchor} in {_rel(linked)}")
        elif file_part and DOCS in path.parents and DOCS not in linked.parents:
            problems.append(f"{_rel(path)}:{line}: {target}: outside docs/, which the site "
                            "does not hold")
    return problems


def shown_commands(path: Path) -> list[tuple[int, list[str]]]:
    """The `ganvas ...` command lines of a file's shell and text code blocks, as argument
    lists after `ganvas` (line continuations joined, comments and prompts dropped); output
    lines that merely mention a command are not commands and are skipped."""
    commands = []
    pending, start = "", 0
    for number, line, language in _split(path)[1]:
        if language not in SHELL_LANGUAGES:
            continue
        if not pending:
            start = number
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        text, pending = pending.strip(), ""
        if text.startswith("$ "):
            text = text[2:]
        try:
            tokens = shlex.split(text, comments=True)
        except ValueError:
            continue  # output with an odd quote, not a command line
        while tokens and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", tokens[0]):
            tokens = tokens[1:]  # VAR=value before the command
        for i, token in enumerate(tokens):
            if token in ("|", "||", "&&", ";", ">", ">>", "2>&1"):
                tokens = tokens[:i]
                break
        if tokens[:1] == ["ganvas"]:
            commands.append((start, tokens[1:]))
        elif "-m" in tokens and tokens[tokens.index("-m") + 1:][:1] == ["ganvas"] and \
                (Path(tokens[0]).name in ("torchrun", "python", "python3")
                 or tokens[0].endswith("/python")):
            commands.append((start, tokens[tokens.index("-m") + 2:]))
    return commands


def test_the_pages_exist():
    names = {page.name for page in PAGES}
    assert {"README.md", "index.md", "training.md", "models.md", "health.md", "explore.md",
            "style-transfer.md", "distributed.md", "benchmarks.md", "api.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_link_and_picture_resolves(page):
    assert broken_links(page) == []


def test_the_link_check_finds_broken_links(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "here.png").write_bytes(b"")
    (tmp_path / "other.md").write_text("# Other page\n\n## A section: with `code`\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n![ok](images/here.png) [ok](other.md#a-section-with-code) [ok](#title)\n"
        "<img src=\"images/gone.png\" width=\"10\">\n"
        "[gone](missing.md) [bad anchor](other.md#nowhere) [web](https://example.org)\n"
        "`[in code](nowhere.md)`\n\n```bash\n[in a block](nowhere.md)\n```\n")
    problems = broken_links(page)
    assert len(problems) == 3, problems
    assert "page.md:4: images/gone.png: no such file" in problems[0]
    assert "missing.md: no such file" in problems[1]
    assert "no heading with anchor #nowhere" in problems[2]


@pytest.fixture(scope="module")
def parser():
    from ganvas.cli.main import build_parser

    return build_parser()


def _parse_error(parser, args: list[str]) -> str | None:
    """None if the real ganvas parser accepts ``args``, else its message."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(args)
    except SystemExit as exc:
        if exc.code not in (0, None):
            return stderr.getvalue().strip() or f"exit status {exc.code}"
    return None


def test_every_command_shown_parses(parser):
    problems, checked = [], 0
    for page in PAGES:
        for line, args in shown_commands(page):
            checked += 1
            error = _parse_error(parser, args)
            if error:
                problems.append(f"{_rel(page)}:{line}: ganvas {shlex.join(args)}\n    {error}")
    assert checked >= 50  # the README and docs show many: a broken extractor finds none
    assert problems == [], "\n".join(problems)


def test_the_command_check_finds_bad_commands(parser, tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\n"
        "ganvas train --data digits --steps 10   # fine\n"
        "ganvas train --data digits --no-such-flag\n"
        "ganvas generate runs/demo \\\n    --num many\n"
        "$ ganvas doctor RUN_DIR --json\n"
        "GANVAS_DEBUG=1 ganvas models | less\n"
        "torchrun --standalone --nproc-per-node 2 -m ganvas train --data cats\n"
        "make demo\n"
        "```\n\n```text\nganvas: error: shown output, not a command\n```\n\n"
        "```python\nganvas.train(data='digits')\n```\n")
    commands = shown_commands(page)
    assert [line for line, _ in commands] == [2, 3, 4, 6, 7, 8]
    assert commands[2][1] == ["generate", "runs/demo", "--num", "many"]
    assert commands[5][1] == ["train", "--data", "cats"]
    errors = [_parse_error(parser, args) for _, args in commands]
    assert [error is None for error in errors] == [True, False, False, True, True, True]
    assert "--no-such-flag" in errors[1] and "--num" in errors[2]


def test_the_api_page_documents_every_public_name():
    import ganvas

    shown = set(re.findall(r"^:::[ \t]+ganvas\.(\w+)[ \t]*$",
                           (DOCS / "api.md").read_text(encoding="utf-8"), re.M))
    assert sorted(set(ganvas.__all__) - {"__version__"} - shown) == []


def test_the_site_lists_every_page():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["docs_dir"] == "docs"
    assert config["theme"]["font"] is False  # no web fonts: the site reads offline

    def pages(nav):
        for item in nav:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            yield from pages(value) if isinstance(value, list) else [value]

    listed = list(pages(config["nav"]))
    assert sorted(listed) == sorted(p.name for p in DOCS.glob("*.md"))
    assert len(listed) == len(set(listed))


def test_the_site_builds_without_warnings(tmp_path):
    missing = [name for name in ("mkdocs", "material", "mkdocstrings_handlers.python")
               if importlib.util.find_spec(name.split(".")[0]) is None
               or importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"the docs tools are not installed ({', '.join(missing)}): "
                    "pip install -e '.[docs]'")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "WARNING" not in output, output[-4000:]
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "images" / "demo-digits.png").is_file()
