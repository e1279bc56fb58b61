"""``jaxtune sweep --task MODULE:ATTR``: a user's own :class:`~jaxtune.task.Task` or
:class:`~jaxtune.step.Step` (their own training step on ``--data``), imported.

:func:`find_task` imports ``MODULE`` (with a directory, the current one, first on ``sys.path``,
as ``python -m`` does) and gets ``ATTR`` (dotted names reach inside it: ``mod:Tasks.mlp``).
:func:`make_task` turns what it found into a Task or Step: one is used as it is; a callable is a
factory, called with the keyword arguments of the data's description it names among
``input_shape``, ``num_classes`` and ``kind`` (all three when it takes ``**kwargs``; none when it
takes no arguments), and must return one. A data-free Step (``jt.training_function``) has no
data to sweep on here and is refused (run it from Python: ``jt.tune(step, None, space)``).
Every failure is one
:class:`~jaxtune.commands.request.CliError` line that says which module or attribute and why.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import sys
from collections.abc import Mapping
from typing import Any

from jaxtune.commands.request import CliError
from jaxtune.step import Step
from jaxtune.task import Task

__all__ = ["FACTORY_ARGUMENTS", "find_task", "make_task"]

#: What a factory may take, by name: the data's description.
FACTORY_ARGUMENTS = ("input_shape", "num_classes", "kind")


def find_task(spec: str, directory: str) -> Any:
    """Imports ``MODULE`` of ``spec`` (``"MODULE:ATTR"``) and returns its ``ATTR``.

    Args:
      spec: ``--task``'s value.
      directory: put first on ``sys.path`` for the import (the current directory, or a resumed
        sweep's first directory).

    Returns:
      The attribute: a Task or a factory (checked by :func:`make_task`).

    Raises:
      CliError: ``spec`` is not ``MODULE:ATTR``, the module is not found or fails to import
        (its exception's first line), or it has no such attribute (similar names listed).
    """
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise CliError(f"--task {spec!r} must be MODULE:ATTR, e.g. mytask:make_task (a module "
                       "importable from the current directory and a Task or factory in it)")
    if directory not in sys.path:
        sys.path.insert(0, directory)
    module = _import(module_name, directory)
    found: Any = module
    where = module_name
    for part in attribute.split("."):
        if not hasattr(found, part):
            names = [name for name in dir(found) if not name.startswith("_")
                     for value in [getattr(found, name, None)]
                     if (isinstance(value, Task | Step) or callable(value))
                     and not inspect.ismodule(value)]
            close = difflib.get_close_matches(part, names, n=3)
            hint = (f"; did you mean {', '.join(close)}?" if close else
                    f"; it has {', '.join(names[:12]) or 'no Task or function'}")
            raise CliError(f"--task: {where} has no attribute {part!r}{hint}")
        found = getattr(found, part)
        where = f"{where}.{part}"
    return found


def make_task(found: Any, spec: str, description: Mapping[str, Any]) -> Task | Step:
    """The Task ``found`` is or makes: a factory is called with the ``description`` it names.

    Args:
      found: what :func:`find_task` returned.
      spec: ``--task``'s value (for messages).
      description: ``input_shape``, ``num_classes`` and ``kind`` of the loaded data.

    Returns:
      The Task or Step.

    Raises:
      CliError: ``found`` is neither a Task nor callable, a factory needs an argument the CLI
        cannot give, the factory raises (its exception's first line), or it returns no Task.
    """
    if isinstance(found, Task | Step):
        return _with_data(found, spec)
    if not callable(found):
        raise CliError(f"--task: {spec} is of type {type(found).__name__}, not a jaxtune Task "
                       "or Step or a function returning one")
    kwargs = _factory_arguments(found, spec, description)
    shown = ", ".join(f"{name}={value!r}" for name, value in kwargs.items())
    try:
        made = found(**kwargs)
    except Exception as error:  # the user's code: any failure is reported in one line
        raise CliError(f"--task: {spec}({shown}) raised {_first_line(error)}") from error
    if not isinstance(made, Task | Step):
        raise CliError(f"--task: {spec}({shown}) returned an object of type "
                       f"{type(made).__name__}, not a jaxtune Task or Step")
    return _with_data(made, spec)


def _with_data(task: Task | Step, spec: str) -> Task | Step:
    """``task``, unless it is a data-free Step (nothing here for it to train on)."""
    if isinstance(task, Step) and not task.needs_data:
        raise CliError(f"--task: {spec} is a training function (a Step with needs_data=False); "
                       "the CLI sweeps tasks and steps that train on --data or --dataset. Run "
                       "it from Python: jt.tune(step, None, space)")
    return task


def _import(module_name: str, directory: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and (module_name == error.name
                                       or module_name.startswith(f"{error.name}.")):
            raise CliError(f"--task: no module named {module_name!r} (looked in {directory} and "
                           "on sys.path)") from error
        raise CliError(f"--task: importing module {module_name!r} failed: "
                       f"{_first_line(error)}") from error
    except Exception as error:  # the user's module: any failure is reported in one line
        raise CliError(f"--task: importing module {module_name!r} failed: "
                       f"{_first_line(error)}") from error


def _factory_arguments(factory: Any, spec: str,
                       description: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``description`` that ``factory``'s signature names."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: call it bare
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return dict(description)
    kwargs = {}
    for parameter in parameters:
        if parameter.name in description and parameter.kind in (
                inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            kwargs[parameter.name] = description[parameter.name]
        elif (parameter.default is inspect.Parameter.empty
              and parameter.kind is not inspect.Parameter.VAR_POSITIONAL):
            raise CliError(
                f"--task: {spec} needs the argument {parameter.name!r}, which the command line "
                f"cannot give; a factory may take only {', '.join(FACTORY_ARGUMENTS)} (or none)")
    return kwargs


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
