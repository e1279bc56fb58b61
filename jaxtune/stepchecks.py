"""What tracing a Step checks besides the names it reads: its outputs' structure.

:func:`jaxtune.checks.task_reads` traces a Task's or a Step's functions abstractly before
anything compiles; for a Step it calls :func:`step_reads` here, which also checks that ``step``
returns ``(carry, metrics)`` with a carry of ``init``'s structure and the loss metric among
scalar metrics, and that ``evaluate`` returns scalar metrics. Errors are raised as
:class:`TaskRaisedError` and reported as the Step's own (naming the function).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

from jaxtune.step import Step

__all__ = ["TaskRaisedError", "check_metrics", "model_state_pair", "step_reads"]


class TaskRaisedError(Exception):
    """An exception of a task's or step's own code met while tracing it (``function``: which
    one), for :func:`jaxtune.checks.trace_error` to classify."""

    def __init__(self, function: str, error: BaseException) -> None:
        super().__init__(function)
        self.function, self.error = function, error


def model_state_pair(function: str, value: Any) -> tuple[Any, Any]:
    """``(params, state)`` from a model-state task's ``init``, or the task's error."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise TaskRaisedError(function, TypeError(
            "a Task with model_state=True must return (params, state) from init, got "
            f"{type(value).__name__}"))
    return value[0], value[1]


def step_reads(step, run, hp, data, key, dyn, batch_rows, eval_rows) -> None:
    """Traces a Step's functions (what :func:`_task_reads` does for a Task) and checks that
    ``step`` returns ``(carry, metrics)`` with the loss metric among scalar metrics."""
    carry = run("init", lambda k, d: step.init(k, hp(d)), key, dyn)
    batch = data(batch_rows) if step.needs_data else None
    out = run("step", lambda c, b, k, d: step.step(c, b, k, hp(d)), carry, batch, key, dyn)
    if not isinstance(out, tuple | list) or len(out) != 2 or not isinstance(out[1], Mapping):
        raise TaskRaisedError("step", TypeError(
            f"Step {step.name!r}: step must return (carry, metrics) with metrics a dict of "
            f"scalars, got {type(out).__name__}"))
    check_metrics(step, "step", out[1])
    if jax.tree_util.tree_structure(out[0]) != jax.tree_util.tree_structure(carry):
        raise TaskRaisedError("step", TypeError(
            f"Step {step.name!r}: step returned a carry of another structure than init's "
            f"({jax.tree_util.tree_structure(out[0])} vs {jax.tree_util.tree_structure(carry)})"))
    if step.evaluate is None:
        return
    if step.needs_data and eval_rows > 0:
        metrics = run("evaluate", lambda c, v, d: step.evaluate(c, v, hp(d)), carry,
                      data(eval_rows), dyn)
    elif not step.needs_data:
        metrics = run("evaluate", lambda c, k, d: step.evaluate(c, k, hp(d)), carry, key, dyn)
    else:
        return
    check_metrics(step, "evaluate", metrics)


def check_metrics(step: Step, function: str, metrics: Any) -> None:
    """A Step's metrics: a dict of scalars, holding ``loss_metric`` for ``step``."""
    if not isinstance(metrics, Mapping) or not all(
            hasattr(v, "shape") and v.shape == () for v in metrics.values()):
        raise TaskRaisedError(function, TypeError(
            f"Step {step.name!r}: {function} must return a dict of scalar metrics, got "
            f"{metrics!r:.200}"))
    if function == "step" and step.loss_metric not in metrics:
        raise TaskRaisedError(function, ValueError(
            f"Step {step.name!r}: step's metrics {sorted(metrics)} lack loss_metric="
            f"{step.loss_metric!r}; return it or set Step.loss_metric to one of them"))
