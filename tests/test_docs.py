"""Every code block of README.md and docs/*.md runs as written, so a broken doc fails CI.

The ```python and shell (```bash, ```sh, ```shell, ```console) blocks of one file run in order,
in a fresh Python process (a doc may change JAX's global configuration, e.g.
``jax_explain_cache_misses``) whose working directory is a temporary folder (docs may write
``runs/...``); the Python blocks share a namespace, and the shell blocks run in ``bash -e`` in the
same folder, so a shell block can use what a Python block above it saved. A failure names the
file and the line of the block.

Shell blocks run with the venv's ``bin`` first on ``PATH`` (so ``jaxtune`` and ``python`` are
this checkout's), ``experiments/`` and ``benchmarks/`` linked into the folder, a ``space.json``
there unless the page writes its own (:data:`SPACE_JSON`), and a compilation cache shared by the
pages. Budgets are cut before they run (:func:`tiny_budgets`: each flag of :data:`BUDGET_CAPS`
is lowered to its cap, ``JAXTUNE_CPU_DEVICES=N`` to at most 2, ``jaxtune sweep`` gets
``--no-plot`` (the pages' ``jaxtune plot`` blocks draw the figures), and ``/tmp/`` becomes a
folder inside the temporary one), so they test that the commands and flags work, not the
figures the pages quote.

A shell block that cannot run in CI (installs, ``make``, servers, SLURM or TPU pods, long
benchmarks) carries ``<!-- not-run: REASON -->`` on the line before its fence; an unmarked one
runs, so a new command in the docs is tested unless someone writes down why not. Data blocks are
fenced ```text, ```json, ...; the fence check below makes sure no Python hides behind ```py or an
unlabelled fence.

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
#: Fence languages of data and output, never executed.
NOT_RUN = {"text", "json", "yaml", "toml", "ini", "diff", "csv", "math", "mermaid"}
FENCE = re.compile(r"^```([^\n`]*)$")
#: Fence languages of shell blocks: each one runs, or is marked with :data:`NOT_RUN_MARKER`.
SHELL = {"bash", "sh", "shell", "console"}
#: ``<!-- not-run: REASON -->`` on the line before a shell block's fence: it is not executed.
NOT_RUN_MARKER = re.compile(r"^<!--\s*not-run:\s*(.*?)\s*-->$")
#: Budget flags of shell blocks, lowered to these caps before they run (``min(value, cap)``).
BUDGET_CAPS = {
    "--num-configs": 4,
    "--num-steps": 20,
    "--steps-per-segment": 10,
    "--population-size": 4,
    "--min-steps": 5,
    "--max-member-steps": 200,
}
#: The space file of pages that use ``space.json`` without writing one: README's, so that their
#: sweeps compile the programs README's sweep left in the shared cache.
SPACE_JSON = {
    "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
    "width": {"type": "choice", "values": [64, 128]},
    "optimizer": "adamw",
}
#: Seconds one shell block may take (tiny budgets take a few).
SHELL_TIMEOUT_S = 240

RUNNER = r"""
import json, subprocess, sys, traceback
blocks = json.load(sys.stdin)
namespace = {"__name__": "__doc__"}
for language, first_line, source in blocks:
    where = f"the {language} block of {sys.argv[1]} starting at line {first_line}"
    if language != "python":
        try:
            completed = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", source],
                                       capture_output=True, text=True,
                                       timeout=float(sys.argv[2]))
        except subprocess.TimeoutExpired:
            print(f"FAILED: {where} ran past {sys.argv[2]} s:\n{source}", file=sys.stderr)
            sys.exit(1)
        if completed.returncode != 0:
            print(completed.stdout[-3000:], completed.stderr[-5000:], file=sys.stderr)
            print(f"FAILED: {where} exited {completed.returncode}; as run:\n{source}",
                  file=sys.stderr)
            sys.exit(1)
        continue
    # Pad with newlines so tracebacks give the line number in the Markdown file.
    code = compile("\n" * (first_line - 1) + source, sys.argv[1], "exec")
    try:
        exec(code, namespace)
    except BaseException:
        traceback.print_exc()
        print(f"FAILED: {where}", file=sys.stderr)
        sys.exit(1)
"""


def tiny_budgets(code: str, tmp: Path) -> str:
    """A shell block as the test runs it: each :data:`BUDGET_CAPS` flag lowered to its cap,
    ``JAXTUNE_CPU_DEVICES`` to at most 2, ``--no-plot`` added to ``jaxtune sweep``, and ``/tmp/``
    replaced by ``tmp/`` inside the page's temporary folder ``tmp``."""

    def cap(match: re.Match) -> str:
        flag, value = match.group(1), int(match.group(2))
        return f"{flag} {min(value, BUDGET_CAPS[flag])}"

    flags = "|".join(re.escape(flag) for flag in BUDGET_CAPS)
    code = re.sub(rf"({flags})[ =](\d+)\b", cap, code)
    code = re.sub(r"\bJAXTUNE_CPU_DEVICES=(\d+)",
                  lambda match: f"JAXTUNE_CPU_DEVICES={min(int(match.group(1)), 2)}", code)
    code = re.sub(r"\bjaxtune sweep\b", "jaxtune sweep --no-plot", code)
    return re.sub(r"(?<![\w.])/tmp/", f"{tmp.as_posix()}/tmp/", code)


def shell_blocks(path: Path) -> list[tuple[int, str, str | None]]:
    """``(first code line, code, reason not run or None)`` of every shell block of a page."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    for language, first_line, code in fenced_blocks(path):
        if language not in SHELL:
            continue
        before = [line.strip() for line in lines[: first_line - 2] if line.strip()]
        marker = NOT_RUN_MARKER.match(before[-1]) if before else None
        blocks.append((first_line, code, marker.group(1) if marker else None))
    return blocks


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


@pytest.fixture(scope="module")
def compilation_cache(tmp_path_factory) -> Path:
    """A JAX compilation cache shared by the pages' commands (most compile the same programs)."""
    return tmp_path_factory.mktemp("jax_cache")


@pytest.mark.parametrize("path", doc_files(), ids=relative)
def test_fences_are_labelled(path):
    """Code is fenced ```python or ```bash (and runs); data names a language that does not."""
    for language, line, _ in fenced_blocks(path):
        assert language == "python" or language in SHELL | NOT_RUN, (
            f"{relative(path)}:{line - 1}: fence language {language!r}; use ```python or "
            f"```bash for code that must run, or one of {sorted(NOT_RUN)} for data"
        )


@pytest.mark.parametrize("path", doc_files(), ids=relative)
def test_shell_blocks_run_or_say_why_not(path):
    """A shell block that is not run names its reason; an unmarked one runs (below)."""
    for line, code, reason in shell_blocks(path):
        assert reason is None or len(reason) >= 10, (
            f"{relative(path)}:{line - 1}: the not-run marker needs a reason "
            f"(<!-- not-run: why this block cannot run in CI -->), got {reason!r}"
        )
        if reason is None:
            assert "..." not in code, (
                f"{relative(path)}:{line - 1}: a shell block with '...' cannot run; write the "
                "command out, or mark it <!-- not-run: REASON --> on the line before the fence"
            )


@pytest.mark.parametrize("path", doc_files(), ids=relative)
def test_blocks_run(path, tmp_path, compilation_cache):
    name = relative(path)
    skipped = {line for line, _, reason in shell_blocks(path) if reason is not None}
    blocks = [
        (language, line, code if language == "python" else tiny_budgets(code, tmp_path))
        for language, line, code in fenced_blocks(path)
        if language == "python" or (language in SHELL and line not in skipped)
    ]
    if name in RUN_ELSEWHERE:
        assert not any(language != "python" for language, _, _ in blocks), (
            f"{name}: its shell blocks would not run; mark them not-run or run them here"
        )
        test_file = ROOT / RUN_ELSEWHERE[name]
        assert path.name in test_file.read_text(encoding="utf-8"), (
            f"{name} is said to run in {RUN_ELSEWHERE[name]}, which does not mention it"
        )
        return
    if not blocks:
        return  # nothing to run (e.g. the architecture page)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "JAX_COMPILATION_CACHE_DIR": str(compilation_cache),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    # As the suite (tests/conftest.py): LLVM's lowest optimization level, which compiles the
    # pages' small programs several times faster; nothing on a page compares programs built
    # with different flags. A block that sets XLA_FLAGS itself replaces this.
    env["XLA_FLAGS"] = "--xla_backend_optimization_level=0"
    if any(language != "python" for language, _, _ in blocks):
        for folder in ("experiments", "benchmarks"):
            (tmp_path / folder).symlink_to(ROOT / folder, target_is_directory=True)
        (tmp_path / "tmp").mkdir()
        (tmp_path / "space.json").write_text(json.dumps(SPACE_JSON), encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, "-c", RUNNER, str(path), str(SHELL_TIMEOUT_S)],
        input=json.dumps(blocks),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert completed.returncode == 0, (
        f"{name}: a block failed\n{completed.stdout[-3000:]}\n{completed.stderr[-6000:]}"
    )


def test_fence_parser(tmp_path):
    path = tmp_path / "page.md"
    path.write_text("a\n```python\nx = 1\n\ny = 2\n```\n```text\n$ ls\n```\n", encoding="utf-8")
    assert fenced_blocks(path) == [("python", 3, "x = 1\n\ny = 2\n"), ("text", 8, "$ ls\n")]
    path.write_text("```python\nx = 1\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="never closed"):
        fenced_blocks(path)


def test_shell_block_markers(tmp_path):
    path = tmp_path / "page.md"
    path.write_text(
        "<!-- not-run: needs a SLURM cluster -->\n```bash\nsrun x\n```\n\n"
        "text\n\n```bash\njaxtune show runs/a\n```\n<!-- not-run: a server -->\n\n"
        "```sh\ntensorboard\n```\n```python\nx = 1\n```\n",
        encoding="utf-8",
    )
    assert shell_blocks(path) == [
        (3, "srun x\n", "needs a SLURM cluster"),
        (9, "jaxtune show runs/a\n", None),
        (14, "tensorboard\n", "a server"),
    ]


def test_tiny_budgets(tmp_path):
    code = ("JAXTUNE_CPU_DEVICES=8 jaxtune sweep --num-configs 1024 --num-steps=500 \\\n"
            "    --steps-per-segment 5 --min-steps 10 --seeds 0 1 --num-steps-x 9 --out /tmp/s\n"
            "jaxtune show /tmp/s\n")
    assert tiny_budgets(code, tmp_path) == (
        "JAXTUNE_CPU_DEVICES=2 jaxtune sweep --no-plot --num-configs 4 --num-steps 20 \\\n"
        f"    --steps-per-segment 5 --min-steps 5 --seeds 0 1 --num-steps-x 9 --out "
        f"{tmp_path.as_posix()}/tmp/s\njaxtune show {tmp_path.as_posix()}/tmp/s\n"
    )


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
