"""``jaxtune sweep --resume DIR``: the checkpointed sweep's own arguments, read back.

A first run with ``--checkpoint-dir`` keeps its arguments (paths made absolute), its space and
its CPU device count in the checkpoint's marker (:func:`jaxtune.commands.build.build_sweep`);
:func:`resume_argv` turns ``sweep --resume DIR`` back into that command line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jaxtune.checkpoint import read_marker
from jaxtune.commands.request import CliError

__all__ = ["PATH_FLAGS", "RESUME_FLAGS", "absolute_paths", "resume_argv", "wants_resume"]

#: Flags ``jaxtune sweep --resume DIR`` accepts besides DIR (the rest comes from the checkpoint),
#: and ``--time-budget SECONDS`` (a new budget for the resumed run; without it, the saved one).
RESUME_FLAGS = ("--quiet", "--no-plot")
#: ``jaxtune sweep`` flags whose value is a path (made absolute in a checkpoint's marker).
PATH_FLAGS = ("--out", "--space", "--data", "--tensorboard", "--checkpoint-dir",
              "--warm-start")


def absolute_paths(argv: list[str], cwd: str | os.PathLike[str]) -> list[str]:
    """``argv`` with the value of every :data:`PATH_FLAGS` flag (``--flag X`` or
    ``--flag=X``) taken relative to ``cwd``; absolute values are kept."""
    argv = list(argv)
    for i, arg in enumerate(argv):
        flag, equals, value = arg.partition("=")
        if flag not in PATH_FLAGS:
            continue
        if equals:
            argv[i] = f"{flag}={Path(cwd) / value}"
        elif i + 1 < len(argv):
            argv[i + 1] = str(Path(cwd) / argv[i + 1])
    return argv


def wants_resume(argv: list[str]) -> bool:
    """Whether ``argv`` is ``sweep ... --resume DIR`` (or ``--resume=DIR``)."""
    return bool(argv) and argv[0] == "sweep" and any(
        a == "--resume" or a.startswith("--resume=") for a in argv
    )


def resume_argv(argv: list[str]) -> tuple[list[str], dict[str, Any] | None]:
    """``sweep --resume DIR [--quiet] [--no-plot] [--time-budget S]`` -> the checkpointed
    sweep's own arguments plus ``--resume DIR`` (and the new ``--time-budget``, which wins
    over a saved one), and what its marker keeps for the resume (``space``, ``cpu_devices``);
    any other argument list is returned unchanged, with ``None``.

    Raises:
      CliError: no DIR, other flags than :data:`RESUME_FLAGS`, no checkpoint in DIR, or one not
        written by ``jaxtune sweep --checkpoint-dir``.
    """
    if not wants_resume(argv):
        return argv, None
    directory, rest = _split_resume(argv[1:])
    budget, rest = _split_time_budget(rest)
    extra = [a for a in rest if a not in RESUME_FLAGS]
    if extra:
        raise CliError(
            f"--resume takes the sweep's saved arguments; give only --resume DIR (and "
            f"{', '.join(RESUME_FLAGS)}, --time-budget SECONDS), not {' '.join(extra)}"
        )
    try:
        marker = read_marker(directory)
    except (FileNotFoundError, ValueError) as error:
        raise CliError(f"--resume: {error}") from error
    saved = marker.get("metadata", {}).get("cli")
    if not isinstance(saved, dict) or not isinstance(saved.get("argv"), list):
        raise CliError(
            f"--resume: {directory!r} was not written by `jaxtune sweep --checkpoint-dir`; "
            "resume it from Python with checkpoint=..., resume=True"
        )
    # Relative paths were relative to the first run's folder (older markers kept them so).
    saved_argv = absolute_paths([str(a) for a in saved["argv"]], saved.get("cwd", "."))
    return ([*saved_argv, *(a for a in rest if a not in saved_argv), *budget, "--resume",
             directory], saved)


def _split_time_budget(rest: list[str]) -> tuple[list[str], list[str]]:
    """``--time-budget S`` (or ``--time-budget=S``) taken out of ``rest``: ``(the flag and
    its value, or [], the others)``; argparse checks the value."""
    for i, arg in enumerate(rest):
        if arg.startswith("--time-budget="):
            return [arg], rest[:i] + rest[i + 1:]
        if arg == "--time-budget":
            return rest[i:i + 2], rest[:i] + rest[i + 2:]
    return [], rest


def _split_resume(rest: list[str]) -> tuple[str, list[str]]:
    """``--resume DIR`` (or ``--resume=DIR``) taken out of ``rest``: ``(DIR, the others)``."""
    for i, arg in enumerate(rest):
        if arg.startswith("--resume="):
            return arg.partition("=")[2], rest[:i] + rest[i + 1:]
        if arg == "--resume":
            if i + 1 >= len(rest):
                raise CliError("--resume needs the checkpoint directory: --resume DIR")
            return rest[i + 1], rest[:i] + rest[i + 2:]
    raise CliError("--resume needs the checkpoint directory: --resume DIR")
