"""Every ```python block of README.md and docs/*.md runs as written, so a broken doc fails CI.

The blocks of one file share a namespace and run in order, in a fresh Python process (a doc may
change JAX's global configuration, e.g. ``jax_explain_cache_misses``) whose working directory is
a temporary folder (docs may write ``runs/...``). A failure names the file and the line of the
block. Blocks that must not run are fenced as ```bash, ```text, ```json, ...; the fence check
below makes sure no Python hides behind ```py or an unlabelled fence.

docs/cli.md is also checked against the parser: every flag of every subcommand is documented
under that subcommand's heading, and every documented flag exists.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: Run by tests/test_cv.py::test_doc_examples_run already (with its own assertions).
RUN_ELSEWHERE = {"docs/cross_validation.md": "tests/test_cv.py"}
#: Fence languages that are never executed.
NOT_RUN = {"bash", "console", "sh", "shell", "text", "json", "yaml", "toml", "ini", "diff",
           "csv", "math", "mermaid"}
FENCE = re.compile(r"^```([^\n`]*)$")

RUNNER = r"""
import json, sys, traceback
blocks = json.load(sys.stdin)
namespace = {"__name__": "__doc__"}
for first_line, source in blocks:
    # Pad with newlines so tracebacks give the line number in the Markdown file.
    code = compile("\n" * (first_line - 1) + source, sys.argv[1], "exec")
    try:
        exec(code, namespace)
    except BaseException:
        traceback.print_exc()
        print(f"FAILED: the block of {sys.argv[1]} starting at line {first_line}", file=sys.stderr)
        sys.exit(1)
"""


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def fenced_blocks(path: Path) -> list[tuple[str, int, str]]:
    """``(language, first code line, code)`` of every fenced block of a Markdown file."""
    blocks, language, start, lines = [], None, 0, []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = FENCE.match(line.strip()) if line.startswith("```") else None
        if language is None:
            if match:
                language, start, lines = match.group(1).strip(), number + 1, []
        elif line.strip() == "```":
            blocks.append((language, start, "\n".join(lines) + "\n"))
            language = None
        else:
            lines.append(line)
    assert language is None, f"{path}: a fence opened at line {start - 1} is never closed"
    return blocks


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", doc_files(), ids=relative)
def test_fences_are_labelled(path):
    """Python is fenced ```python (and runs); everything else names a language that does not."""
    for language, line, _ in fenced_blocks(path):
        assert language == "python" or language in NOT_RUN, (
            f"{relative(path)}:{line - 1}: fence language {language!r}; use ```python for code "
            f"that must run, or one of {sorted(NOT_RUN)}"
        )


@pytest.mark.parametrize("path", doc_files(), ids=relative)
def test_python_blocks_run(path, tmp_path):
    name = relative(path)
    blocks = [(line, code) for language, line, code in fenced_blocks(path) if language == "python"]
    if name in RUN_ELSEWHERE:
        test_file = ROOT / RUN_ELSEWHERE[name]
        assert path.name in test_file.read_text(encoding="utf-8"), (
            f"{name} is said to run in {RUN_ELSEWHERE[name]}, which does not mention it"
        )
        return
    if not blocks:
        return  # nothing to run (architecture and benchmark pages hold no Python)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    env.pop("XLA_FLAGS", None)
    completed = subprocess.run(
        [sys.executable, "-c", RUNNER, str(path)],
        input=json.dumps(blocks),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert completed.returncode == 0, (
        f"{name}: a python block failed\n{completed.stdout[-3000:]}\n{completed.stderr[-6000:]}"
    )


def test_fence_parser(tmp_path):
    path = tmp_path / "page.md"
    path.write_text("a\n```python\nx = 1\n\ny = 2\n```\n```text\n$ ls\n```\n", encoding="utf-8")
    assert fenced_blocks(path) == [("python", 3, "x = 1\n\ny = 2\n"), ("text", 8, "$ ls\n")]
    path.write_text("```python\nx = 1\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="never closed"):
        fenced_blocks(path)


# --------------------------------------------------------------------------------------------
# docs/cli.md against the parser


def parser_flags() -> dict[str, set[str]]:
    """Subcommand -> its long flags (``--name``) and positional arguments."""
    import argparse

    from jaxtune import cli

    parser = cli._parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    flags = {}
    for name, sub in subparsers.choices.items():
        names = set()
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            long = [o for o in action.option_strings if o.startswith("--")]
            names.update(long or [action.dest.upper()])
        flags[name] = names
    return flags


def documented_flags() -> dict[str, set[str]]:
    """Subcommand -> flags named in backticks under its ``## jaxtune <command>`` heading."""
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    sections = re.split(r"^## `?jaxtune (\S+?)`?\s*$", text, flags=re.MULTILINE)
    flags = {}
    for name, body in zip(sections[1::2], sections[2::2], strict=True):
        documented = set(re.findall(r"`(--[a-z0-9][a-z0-9-]*)", body))
        documented |= set(re.findall(r"`([A-Z][A-Z_]+)`", body))  # positionals, e.g. `DIRECTORY`
        flags[name] = documented
    return flags


def test_cli_reference_documents_every_flag():
    in_parser, in_docs = parser_flags(), documented_flags()
    assert set(in_docs) == set(in_parser), "docs/cli.md needs one '## jaxtune <cmd>' per command"
    for command, flags in in_parser.items():
        missing = sorted(flags - in_docs[command])
        assert not missing, f"docs/cli.md, jaxtune {command}: undocumented {missing}"
        stale = sorted(f for f in in_docs[command] - flags if f.startswith("--"))
        assert not stale, f"docs/cli.md, jaxtune {command}: documents flags it lacks: {stale}"


# --------------------------------------------------------------------------------------------
# docs/api.md names every export


@pytest.mark.parametrize("module", ["jaxtune", "jaxtune.plot", "jaxtune.integrations"])
def test_api_reference_names_every_export(module):
    import importlib

    if module == "jaxtune.plot":
        pytest.importorskip("matplotlib")
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    exported = importlib.import_module(module).__all__
    missing = [name for name in exported if not re.search(rf"`(?:[\w.]*\.)?{name}\b", text)]
    assert not missing, f"docs/api.md does not mention these exports of {module}: {missing}"


def test_index_links_every_page():
    """docs/index.md is the guide's entry page: its table of contents links every page."""
    text = (DOCS / "index.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(([\w/.-]+\.md)(?:#[\w-]+)?\)", text))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.glob("*.md")} - {"index.md"}
    assert not pages - linked, f"docs/index.md does not link {sorted(pages - linked)}"
    assert not linked - pages - {"index.md"}, f"broken links: {sorted(linked - pages)}"


@pytest.mark.parametrize("path", doc_files(), ids=relative)
def test_relative_links_resolve(path):
    text = path.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s#]+\.md)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue
        assert (path.parent / target).is_file(), f"{relative(path)}: broken link to {target}"
