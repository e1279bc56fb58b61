"""The Step contract: a member's own training step, the lowest level the engine runs.

A :class:`Step` is three pure functions of one member, written unbatched::

    init(key, hp) -> carry
    step(carry, batch, key, hp) -> (carry, metrics)
    evaluate(carry, data, hp) -> {metric: scalar}      # optional

``carry`` is any pytree (parameters and optimizer state, a Flax ``TrainState``, an agent and its
environment states...); ``metrics`` maps names to scalars, and ``metrics[loss_metric]`` is the
training-loss curve the engine watches: a member whose loss metric or carry is not finite is
marked diverged and frozen at its last finite carry. Every metric a step returns is recorded as
the learning curve ``train_<name>`` (its mean over the segment's steps); ``evaluate``'s metrics
as ``valid_<name>`` (and ``test_<name>``). Without ``evaluate`` the validation metrics are the
last step's metrics.

``hp`` is as for a :class:`~jaxtune.task.Task`: dynamic names are traced ``float32`` scalars,
static ones plain Python values, so a sweep over values compiles once per static group.

A :class:`~jaxtune.task.Task` is one way of building a Step (:func:`from_task`: the carry is its
parameters and optimizer state, and model state when it has one); the engine runs nothing else.
A Step with ``needs_data=False`` is a whole training function (reinforcement learning, a
simulation): ``batch`` is ``None``, ``evaluate`` gets a key instead of data, and the drivers take
``split=None`` (:func:`training_function` builds one).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import optax

from jaxtune import limits, optimizers
from jaxtune.task import Task, check_metadata

__all__ = ["Step", "as_step", "from_task", "training_function"]

Carry = Any
Batch = Mapping[str, Any]
HParams = Mapping[str, Any]
Metrics = Mapping[str, jax.Array]

_NAME_TUPLES = ("static_hparams", "extra_hparams", "integer_hparams")


@dataclasses.dataclass(frozen=True, eq=False)
class Step:
    """A member's own training step (see the module docstring for the contract).

    Attributes:
      init: ``init(key, hp) -> carry``, any pytree.
      step: ``step(carry, batch, key, hp) -> (carry, metrics)``: one training step on one
        minibatch (``batch`` is ``None`` when ``needs_data`` is False); ``metrics`` maps names
        to scalars and holds ``loss_metric``.
      evaluate: ``evaluate(carry, data, hp) -> {metric: scalar}``, or ``None`` (validation
        metrics are then the last step's metrics). For a Step with ``needs_data=False`` the
        second argument is a key (the member's own, new at every evaluation), not data.
      name: a label used in results and messages.
      identity: a hashable value identifying the step for compilation caching; ``None``: the
        functions themselves.
      metric_modes: ``"max"`` or ``"min"`` for each metric (``evaluate``'s, or the step's when
        there is no ``evaluate``).
      loss_metric: which of ``step``'s metrics is the training loss (non-finite: diverged).
      needs_data: False for a whole training function: no batch, no split.
      static_hparams, value_ranges, extra_hparams, integer_hparams, kind, input_shape,
        num_classes: as for :class:`~jaxtune.task.Task`.
      params: ``params(carry) -> what return_params returns`` for a member, or ``None`` (the
        whole carry).
      task: the :class:`~jaxtune.task.Task` this Step was built from (:func:`from_task`), else
        ``None``; the engine rebuilds it per static group with the schedule's horizon.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> def init(key, hp):
      ...     w = jnp.zeros(3)
      ...     return w, optax.sgd(hp["learning_rate"]).init(w)
      >>> def step(carry, batch, key, hp):
      ...     w, opt_state = carry
      ...     loss_fn = lambda w: jnp.mean((batch["x"] @ w - batch["y"]) ** 2)
      ...     loss, grads = jax.value_and_grad(loss_fn)(w)
      ...     updates, opt_state = optax.sgd(hp["learning_rate"]).update(grads, opt_state)
      ...     return (optax.apply_updates(w, updates), opt_state), {"loss": loss}
      >>> my_step = Step(init, step, None, name="linear", metric_modes={"loss": "min"})
    """

    init: Callable[[jax.Array, HParams], Carry]
    step: Callable[[Carry, Batch | None, jax.Array, HParams], tuple[Carry, Metrics]]
    evaluate: Callable[[Carry, Any, HParams], Metrics] | None = None
    name: str = "step"
    identity: Any = None
    metric_modes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    loss_metric: str = "loss"
    needs_data: bool = True
    static_hparams: tuple[str, ...] = ()
    value_ranges: Mapping[str, tuple[float, bool, float, bool]] = dataclasses.field(
        default_factory=dict)
    extra_hparams: tuple[str, ...] = ()
    integer_hparams: tuple[str, ...] = ()
    kind: str | None = None
    input_shape: tuple[int, ...] | None = None
    num_classes: int | None = None
    params: Callable[[Carry], Any] | None = None
    task: Task | None = None

    def __post_init__(self) -> None:
        for field in ("init", "step"):
            if not callable(getattr(self, field)):
                raise TypeError(f"Step.{field} must be a function, got "
                                f"{getattr(self, field)!r}; see the Step contract in jaxtune.step.")
        for field in ("evaluate", "params"):
            value = getattr(self, field)
            if value is not None and not callable(value):
                raise TypeError(f"Step.{field} must be a function or None, got {value!r}.")
        for field in ("name", "loss_metric"):
            if not isinstance(getattr(self, field), str) or not getattr(self, field):
                raise TypeError(f"Step.{field} must be a non-empty str, got "
                                f"{getattr(self, field)!r}.")
        if not isinstance(self.needs_data, bool):
            raise TypeError(f"Step.needs_data must be True or False, got {self.needs_data!r}.")
        if not isinstance(self.metric_modes, Mapping) or any(
                mode not in ("max", "min") for mode in self.metric_modes.values()):
            raise TypeError(f"Step.metric_modes must map metric names to 'max' or 'min', got "
                            f"{self.metric_modes!r}.")
        for field in _NAME_TUPLES:
            value = getattr(self, field)
            if isinstance(value, str) or not all(isinstance(n, str) for n in value):
                raise TypeError(f"Step.{field} must be a tuple of names (str), got {value!r}.")
            object.__setattr__(self, field, tuple(value))
        if self.task is not None and not isinstance(self.task, Task):
            raise TypeError(f"Step.task must be a jaxtune Task or None, got {self.task!r}.")
        if not self.needs_data and any(
                getattr(self, f) is not None for f in ("kind", "input_shape", "num_classes")):
            raise ValueError("Step.kind, input_shape and num_classes describe data; a Step with "
                             "needs_data=False has none: leave them None.")
        object.__setattr__(self, "input_shape",
                           check_metadata("Step", self.kind, self.input_shape, self.num_classes))

    def _key(self) -> Any:
        if self.identity is not None:
            return ("identity", self.identity)
        return ("functions", self.init, self.step, self.evaluate)

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Step) and self._key() == other._key()

    def exported(self, carry: Carry) -> Any:
        """What ``return_params`` returns for a member whose carry is ``carry``."""
        return carry if self.params is None else self.params(carry)


def _task_params(carry: Carry) -> Any:
    return carry[0]


def _task_params_and_state(carry: Carry) -> Any:
    return carry[0], carry[2]


def from_task(task: Task, *, num_steps: int | None = None) -> Step:
    """The Step a :class:`~jaxtune.task.Task` runs: a gradient step of its loss and optimizer.

    The carry is ``(params, opt_state)``, or ``(params, opt_state, state)`` for a task with
    ``model_state=True``; the step's one metric is ``loss`` (the training-loss curve
    ``train_loss``); ``return_params`` gives the parameters (``(params, state)`` with model
    state).

    Args:
      task: the task.
      num_steps: the horizon a schedule that reads it (``cosine``) is built with; ``None``:
        no horizon (the engine rebuilds the Step per static group with the right one).

    Returns:
      The :class:`Step`.
    """
    if not isinstance(task, Task):
        raise TypeError(f"from_task: expected a jaxtune Task, got {task!r}.")
    horizon = limits.INT32_MAX if num_steps is None else int(num_steps)
    stateful = task.model_state

    def optimizer(hp: HParams) -> optax.GradientTransformation:
        return optimizers.task_optimizer(task.optimizer, hp, horizon)

    def init(key: jax.Array, hp: HParams) -> Carry:
        if not stateful:
            params = task.init(key, hp)
            return params, optimizer(hp).init(params)
        params, state = task.init(key, hp)
        return params, optimizer(hp).init(params), state

    def step(carry: Carry, batch: Batch | None, key: jax.Array, hp: HParams):
        if not stateful:
            params, opt_state = carry
            (loss, _), grads = jax.value_and_grad(task.loss, has_aux=True)(
                params, batch, key, hp)
        else:
            params, opt_state, state = carry
            (loss, (_, state)), grads = jax.value_and_grad(task.loss, has_aux=True)(
                params, state, batch, key, hp)
        updates, opt_state = optimizer(hp).update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        new_carry = (params, opt_state) if not stateful else (params, opt_state, state)
        return new_carry, {"loss": loss}

    def evaluate(carry: Carry, data: Batch, hp: HParams) -> Metrics:
        if not stateful:
            return task.evaluate(carry[0], data, hp)
        return task.evaluate(carry[0], carry[2], data, hp)

    return Step(
        init=init, step=step, evaluate=evaluate, name=task.name,
        identity=("task", task, horizon), metric_modes=dict(task.metric_modes),
        loss_metric="loss", needs_data=True, static_hparams=task.static_hparams,
        value_ranges=dict(task.value_ranges), extra_hparams=task.extra_hparams,
        integer_hparams=task.integer_hparams, kind=task.kind, input_shape=task.input_shape,
        num_classes=task.num_classes,
        params=_task_params_and_state if stateful else _task_params, task=task,
    )


def as_step(task: Any) -> Step:
    """``task`` as a :class:`Step`: a Step as it is, a Task through :func:`from_task`.

    Raises:
      TypeError: anything else, naming what to pass.
    """
    if isinstance(task, Step):
        return task
    if isinstance(task, Task):
        return from_task(task)
    raise TypeError(
        f"task: expected a jaxtune Task (e.g. jt.classification_task('mlp', num_classes=10, "
        f"input_shape=(64,)) or jt.Task(init, loss, evaluate)) or a jaxtune Step (jt.Step("
        f"init, step, evaluate) or jt.training_function(init, segment)), got {task!r}."
    )


def training_function(
    init: Callable[[jax.Array, HParams], Carry],
    segment: Callable[[Carry, jax.Array, HParams], tuple[Carry, Metrics]],
    *,
    evaluate: Callable[[Carry, jax.Array, HParams], Metrics] | None = None,
    metric_modes: Mapping[str, str],
    name: str = "training_function",
    loss_metric: str = "loss",
    identity: Any = None,
    static_hparams: tuple[str, ...] = (),
    value_ranges: Mapping[str, tuple[float, bool, float, bool]] | None = None,
    extra_hparams: tuple[str, ...] = (),
    integer_hparams: tuple[str, ...] = (),
    params: Callable[[Carry], Any] | None = None,
) -> Step:
    """A data-free :class:`Step` from a whole training function (RL, simulation).

    ``segment(carry, key, hp) -> (carry, metrics)`` is one engine step: the user's own
    ``lax.scan`` of environment steps and updates goes inside it. The engine runs
    ``steps_per_segment`` calls of it per compiled segment (``num_steps`` calls in all), records
    its metrics as ``train_<name>`` curves (the mean over the segment's calls) and validates with
    ``evaluate(carry, key, hp)`` or, without one, with the last call's metrics
    (``valid_<name>``). The drivers take ``split=None``:
    ``jt.tune(training_function(...), None, space, ...)``.

    Args:
      init: ``init(key, hp) -> carry``.
      segment: ``segment(carry, key, hp) -> (carry, metrics)``; ``metrics[loss_metric]`` not
        finite marks the member diverged (as does a non-finite carry).
      evaluate: ``evaluate(carry, key, hp) -> metrics``, or ``None``.
      metric_modes: ``"max"``/``"min"`` for each validation metric.
      name, loss_metric, identity, static_hparams, value_ranges, extra_hparams,
        integer_hparams, params: as for :class:`Step`.

    Returns:
      The :class:`Step` (``needs_data=False``).
    """
    if not callable(segment):
        raise TypeError(f"training_function: segment must be a function "
                        f"segment(carry, key, hp) -> (carry, metrics), got {segment!r}.")

    def step(carry: Carry, batch: None, key: jax.Array, hp: HParams):
        return segment(carry, key, hp)

    return Step(
        init=init, step=step, evaluate=evaluate, name=name,
        identity=("training_function", init, segment, evaluate) if identity is None else identity,
        metric_modes=dict(metric_modes), loss_metric=loss_metric, needs_data=False,
        static_hparams=static_hparams, value_ranges=dict(value_ranges or {}),
        extra_hparams=extra_hparams, integer_hparams=integer_hparams, params=params,
    )
