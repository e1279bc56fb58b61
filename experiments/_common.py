"""Shared plumbing of the experiment scripts: arguments, output files, markdown tables.

Only bookkeeping lives here; every experiment trains through jaxtune's public API.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "experiments"


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every experiment has: --out, --smoke, --seed."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="folder for the markdown table and the PNG figure "
                        "(default: docs/experiments)")
    p.add_argument("--smoke", action="store_true",
                   help="a tiny budget that runs in seconds (for tests)")
    p.add_argument("--seed", type=int, default=0, help="sweep seed")
    return p


def setup_jax() -> None:
    """Uses every CPU core as a device (no effect on GPUs); call before any JAX computation."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    from jaxtune.cli import use_cpu_cores

    use_cpu_cores()


def fmt(value: Any, digits: int = 4) -> str:
    """A table cell: floats to ``digits`` significant digits, NaN as ``-``."""
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table with ``header`` and one line per row (cells formatted by :func:`fmt`)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(c) for c in row) + " |")
    return "\n".join(lines)


def write_report(out: Path, name: str, title: str, command: str, sections: Sequence[str],
                 wall_s: float) -> Path:
    """Writes ``out/name.md``: title, the command that produced it, the sections, the time."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.md"
    body = [f"# {title}", "", f"Produced by `{command}` in {wall_s:.0f} s.", ""]
    for section in sections:
        body += [section, ""]
    body.append(f"![{name}]({name}.png)")
    path.write_text("\n".join(body) + "\n")
    return path


def save_figure(figure: Any, out: Path, name: str) -> Path:
    """Saves ``figure`` as ``out/name.png`` and closes it."""
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The command that reproduces a run, for the report."""
    args = [a for a in (argv or []) if a]
    return " ".join(["python", f"experiments/{script}", *args])


class Timer:
    """Wall-clock seconds since construction."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._start = clock()

    @property
    def seconds(self) -> float:
        return self._clock() - self._start
