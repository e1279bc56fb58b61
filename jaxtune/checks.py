"""Host checks that run before anything compiles: names nothing reads, a Space's ranges, seeds.

**Names nothing reads.** Every hyperparameter name of a configuration must be read by someone:
the optimizer or the schedule (:data:`jaxtune.optim.OPTIMIZER_HPARAMS`), the engine
(``batch_size``, ``num_steps``) or the task. What a task reads is *observed*, not declared:
:func:`task_reads` traces the task's ``init``, ``loss`` and ``evaluate`` abstractly
(``jax.eval_shape``: shapes only, nothing compiles or runs) with an ``hp`` mapping that records
every key looked up, so a user's own task needs no declaration. A task may add names its trace
does not show (``Task.extra_hparams``). :func:`check_names_read` refuses a name nobody reads
(a typo like ``momentun`` would otherwise be tuned as a no-op), with a "did you mean"; with
``allow_unused=True`` it warns instead.

**Errors of a task's own code.** While tracing, an exception of the task's code (a
``NameError``, a wrong key, a ``TypeError`` unrelated to shapes) is re-raised as itself, with a
note naming the function that raised it; only shape and dtype errors get the "does not fit the
data" message (:func:`trace_error`).

**Ranges of a Space.** :func:`check_space_ranges` checks every value a Space parameter can take
(the whole ``[low, high]`` of a ``Float``/``Int``, every ``Choice``) against the valid ranges,
so a sweep whose later rounds would reach an invalid value fails before its first round trains.
"""

from __future__ import annotations

import difflib
import functools
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import flax.errors
import jax
import jax.numpy as jnp
import numpy as np

from jaxtune import limits, optim, optimizers
from jaxtune.step import Step
from jaxtune.stepchecks import TaskRaisedError, model_state_pair, step_reads
from jaxtune.task import Task

__all__ = [
    "ENGINE_HPARAMS",
    "TRACE_ERRORS",
    "ReadRecorder",
    "check_names_read",
    "check_space",
    "check_seed",
    "check_space_ranges",
    "builtin_optimizer",
    "check_task_and_data",
    "known_names",
    "optimizer_reads",
    "space_optimizer_reads",
    "space_value_ranges",
    "task_reads",
    "trace_error",
]

#: Names the engine itself reads from a configuration (a static group's step count and batch).
ENGINE_HPARAMS: frozenset[str] = frozenset({"batch_size", "num_steps"})

#: What tracing a task on data of the wrong shape raises (JAX's, NumPy's and Flax's errors).
TRACE_ERRORS = (TypeError, ValueError, IndexError, flax.errors.FlaxError)
#: Tracing errors of a task that reads a traced value as a concrete one (TypeError subclasses).
_CONCRETE_VALUE_ERRORS = (jax.errors.ConcretizationTypeError,
                          jax.errors.TracerIntegerConversionError,
                          jax.errors.TracerArrayConversionError)
#: Words of JAX's, NumPy's and Flax's messages about shapes and dtypes.
_SHAPE_WORDS = ("shape", "dtype", "dimension", "rank", "broadcast", "out of bounds", "axis")


class ReadRecorder(dict):
    """A dict of hyperparameters that records which names are looked up.

    ``hp[name]``, ``hp.get(name)`` and ``name in hp`` record ``name``; iterating over it
    (``keys``, ``items``, ``values``, ``dict(hp)``, ``{**hp}``) records every name, since the
    reader may use any of them.

    Args:
      values: the hyperparameters.
      read: the set the names read are added to.

    Example:
      >>> read = set()
      >>> hp = ReadRecorder({"width": 8, "momentun": 0.9}, read)
      >>> hp.get("width", 16), "dropout" in hp, sorted(read)
      (8, False, ['dropout', 'width'])
    """

    def __init__(self, values: Mapping[str, Any], read: set[str]) -> None:
        super().__init__(values)
        self.read = read

    def __getitem__(self, name: str) -> Any:
        self.read.add(name)
        return super().__getitem__(name)

    def get(self, name: str, default: Any = None) -> Any:
        self.read.add(name)
        return super().get(name, default)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self.read.add(name)
        return super().__contains__(name)

    def __iter__(self) -> Iterator[str]:
        self.read.update(super().keys())
        return super().__iter__()

    def keys(self) -> Any:
        self.read.update(super().keys())
        return super().keys()

    def items(self) -> Any:
        self.read.update(super().keys())
        return super().items()

    def values(self) -> Any:
        self.read.update(super().keys())
        return super().values()

    def copy(self) -> dict[str, Any]:
        self.read.update(super().keys())
        return dict(super().items())


def check_task_and_data(task: Any, data: Any, data_field: str = "split") -> None:
    """Refuses a ``task`` that is not a :class:`~jaxtune.task.Task` and missing data.

    Args:
      task: the ``task`` argument.
      data: the data argument (a Split; for cross-validation also a Dataset).
      data_field: its name in messages: ``"split"`` (a Split is needed) or ``"data"``.

    Raises:
      TypeError: naming the argument, what it got and what to pass.
    """
    if not isinstance(task, Task | Step):
        raise TypeError(
            f"task: expected a jaxtune Task (e.g. jt.classification_task('mlp', num_classes=10, "
            f"input_shape=(64,)) or jt.Task(init, loss, evaluate)) or a jaxtune Step "
            f"(jt.Step(init, step, evaluate) or jt.training_function(init, segment)), got "
            f"{task!r}."
        )
    if isinstance(task, Step) and not task.needs_data:
        if data_field == "data":
            raise ValueError(
                f"task: Step {task.name!r} has needs_data=False (a whole training function): "
                "cross-validation splits data and has none to split; tune it with jt.tune, "
                "jt.run_halving or jt.run_pbt and split=None.")
        if data is not None:
            raise ValueError(
                f"{data_field}: Step {task.name!r} has needs_data=False (a whole training "
                f"function) and reads no data; pass {data_field}=None.")
        return
    # train and tune take a Split; cross-validation a Split or a whole Dataset.
    fields = ("x_train",) if data_field == "split" else ("x_train", "x")
    if data is None or not any(hasattr(data, field) for field in fields):
        kinds = "a jaxtune Split" if data_field == "split" else "a jaxtune Split or Dataset"
        raise TypeError(
            f"{data_field}: expected the data ({kinds}, e.g. jt.train_valid_test_split("
            f"jt.load_dataset('digits'))), got {type(data).__name__} {data!r:.80}; only a Step "
            "with needs_data=False (jt.training_function) takes None."
        )


def check_seed(field: str, value: Any, maximum: int = limits.MAX_SEED) -> int:
    """Checks one seed and returns it as an int.

    Args:
      field: the name in messages (``"seed"``, ``"seeds[2]"``).
      value: the seed.
      maximum: :data:`jaxtune.limits.MAX_SEED` for a sweep seed,
        :data:`jaxtune.limits.MAX_MEMBER_SEED` for a member seed.

    Raises:
      TypeError: ``value`` is not an integer (a float such as 0.5, a string, a bool).
      ValueError: ``value`` is outside ``[0, maximum]``.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise TypeError(f"{field}: got {value!r} ({type(value).__name__}); a seed must be an "
                        "int, e.g. 0.")
    if not 0 <= int(value) <= maximum:
        raise ValueError(f"{field}: got {value!r}; a seed must be an int in [0, {maximum}] (the "
                         "seeds JAX keys distinguish here: a larger one would repeat a smaller "
                         "one's random numbers).")
    return int(value)


#: Other spellings of names jaxtune reads, for "did you mean".
_ALIASES: Mapping[str, str] = {
    "learning_rate_decay": "lr_decay", "lr": "learning_rate", "wd": "weight_decay",
    "beta1": "b1", "beta2": "b2", "epsilon": "eps", "dropout_rate": "dropout",
}


def _hint(name: str, read: set[str], known: set[str]) -> str:
    """``" (did you mean 'x'?)"``, or a word on a name other groups read, or nothing."""
    if name in known:
        return " (other optimizers, schedules or models read it, not this group's)"
    if name in _ALIASES:
        return f" (did you mean {_ALIASES[name]!r}?)"
    candidates = sorted((read | known | set(_ALIASES)) - {name})
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if not close:
        return ""
    return f" (did you mean {_ALIASES.get(close[0], close[0])!r}?)"


def known_names(task: Task) -> frozenset[str]:
    """Every name some optimizer, schedule, the engine or ``task`` is known to read."""
    names = set(ENGINE_HPARAMS) | set(optim.STATIC_HPARAMS) | set(optim.HPARAM_DEFAULTS)
    for read in optim.OPTIMIZER_HPARAMS.values():
        names.update(read)
    return frozenset(names | set(task.static_hparams) | set(task.value_ranges)
                     | set(task.extra_hparams))


def check_names_read(
    names: Iterable[str],
    readers: Mapping[str, Iterable[str]],
    *,
    where: str,
    suggestions: Iterable[str] = (),
    allow_unused: bool = False,
) -> tuple[str, ...]:
    """Refuses (or warns about) hyperparameter names that no reader reads.

    Args:
      names: the names a configuration gives.
      readers: who reads what, e.g. ``{"optimizer 'sgd'": ("momentum", ...), "the engine":
        ("batch_size", "num_steps"), "task 'mlp'": (...)}``.
      where: how to name the configurations in messages, e.g. ``"configs[0]"``.
      suggestions: names known to be read elsewhere (other optimizers, other models), to
        suggest from ("did you mean") besides those read.
      allow_unused: warn (``UserWarning``) instead of raising.

    Returns:
      The names nobody reads, sorted (empty when every name is read).

    Raises:
      ValueError: naming the unread name, the readers and what they read, a close name
        ("did you mean") and the fix.
    """
    readers = {who: tuple(sorted(set(read))) for who, read in readers.items()}
    read = set().union(*readers.values()) if readers else set()
    unread = tuple(sorted(set(names) - read))
    if not unread:
        return ()
    who = "; ".join(f"{reader} reads {', '.join(r) or 'nothing'}" for reader, r in readers.items())
    known = set(suggestions)
    lines = [f"{where}[{name!r}]: nothing reads this hyperparameter{_hint(name, read, known)}"
             for name in unread]
    message = (
        f"{'; '.join(lines)}. Readers: {who}. It would be tuned without any effect. Fix: rename or "
        "remove it, or pass allow_unused_hparams=True (CLI: --allow-unused-hparams) to train "
        "with it anyway."
    )
    if not allow_unused:
        raise ValueError(message)
    warnings.warn(message, UserWarning, stacklevel=3)
    return unread


def _is_shape_error(error: BaseException) -> bool:
    if isinstance(error, _CONCRETE_VALUE_ERRORS) or not isinstance(error, TRACE_ERRORS):
        return False
    text = str(error).lower()
    return any(word in text for word in _SHAPE_WORDS)


def trace_error(error: BaseException, task: Task, function: str, group: str,
                x: Any, y: Any, given: Iterable[str] = (),
                dynamic: Iterable[str] = ()) -> BaseException:
    """What to raise for an exception met while tracing ``task.<function>`` abstractly.

    * A dynamic value read as a Python value (``if hp["x"] > 0``): a ``TypeError`` saying to
      declare the name static.
    * A shape or dtype error of JAX, NumPy or Flax: a ``ValueError`` saying the task does not
      fit the data, with the data's shapes.
    * Anything else (a ``NameError``, a ``KeyError``, a ``TypeError`` of the task's own code):
      the task's own exception, with a note naming the function that raised it.

    Args:
      error: the exception.
      task: the task traced.
      function: ``"init"``, ``"loss"``, ``"evaluate"`` (or several, joined by ``/``).
      group: the static group's label.
      x: the features' abstract value (``shape``, ``dtype``).
      y: the labels' abstract value.
      given: the hyperparameter names of the group (a ``KeyError`` for another name says so).
      dynamic: the group's dynamic names (named when one is read as a Python value).

    Returns:
      The exception to raise ``from error`` (``error`` itself for the task's own errors).
    """
    if isinstance(error, _CONCRETE_VALUE_ERRORS):
        return TypeError(
            f"task {task.name!r} reads a dynamic hyperparameter of static group {group} (one of "
            f"{sorted(dynamic)}) as a Python value (an `if`, an int() or a shape) in "
            f"task.{function} while being traced: "
            f"{type(error).__name__}. Declare that name static in the Space "
            "(Choice/Int/Fixed) or in static_names, or write the task with array operations "
            "(jnp.where) on it."
        )
    if _is_shape_error(error) and x is not None:
        return ValueError(
            f"task {task.name!r} does not fit the data of static group {group}: tracing "
            f"task.{function} on x of shape [rows, {', '.join(map(str, x.shape[1:]))}] "
            f"({x.dtype}) and y [rows] ({y.dtype}) failed with {type(error).__name__}: "
            f"{error}\nFix: make task.init build parameters for one example of that shape and "
            "task.loss/task.evaluate accept such batches (for the ready-made tasks, pass the "
            "data's input_shape and num_classes)."
        )
    given = sorted(given)
    if isinstance(error, KeyError) and error.args and isinstance(error.args[0], str) and given \
            and error.args[0] not in given:
        name = error.args[0]
        error.add_note(
            f"jaxtune: hp[{name!r}] is not a hyperparameter of the configs (they give "
            f"{', '.join(given)}){_hint(name, set(given), set())}; add it to the space or read "
            f"it with hp.get({name!r}, default)."
        )
    error.add_note(
        f"jaxtune: raised by task {task.name!r}'s own {function} function, traced abstractly "
        f"(before compiling) for static group {group}: an error of the task's code, not of "
        "the data."
    )
    return error


def task_reads(task: Task | Step, static_hp: Sequence[tuple[str, Any]],
               dynamic_names: Sequence[str], x: jax.ShapeDtypeStruct | None,
               y: jax.ShapeDtypeStruct | None, batch_rows: int, eval_rows: int,
               group: str = "default") -> frozenset[str]:
    """The hyperparameter names ``task`` reads, observed by tracing it abstractly.

    Traces ``task.init``, ``task.loss`` (on ``batch_rows`` rows) and ``task.evaluate`` (on
    ``eval_rows`` rows), and a task's own ``optimizer`` factory (a Step: ``init``, ``step``
    and ``evaluate``; a data-free Step without data, ``evaluate`` with a key) with
    ``jax.eval_shape``, each with a :class:`ReadRecorder` as ``hp``
    (static values as given, dynamic ones as float32 scalars). Nothing compiles or runs. The
    result is cached per signature. ``task.extra_hparams`` are added.

    Args:
      task: the task.
      static_hp: ``(name, value)`` pairs of the static group (hashable values).
      dynamic_names: the traced names.
      x: one abstract feature array ``[rows, ...]`` (its shape after the first axis and dtype
        are used).
      y: one abstract label array (its dtype is used).
      batch_rows: rows of a training batch.
      eval_rows: rows of an evaluation.
      group: the static group's label, for messages.

    Returns:
      The names read.

    Raises:
      As :func:`trace_error` says, for an exception of the task while tracing.
    """
    if isinstance(task, Step) and task.task is not None:
        task = task.task  # a Task's Step: trace the Task's own functions (errors name them)
    data = None if x is None else (tuple(x.shape[1:]), np.dtype(x.dtype), np.dtype(y.dtype))
    try:
        return _task_reads(task, tuple(static_hp), tuple(sorted(dynamic_names)), data,
                           int(batch_rows), int(eval_rows))
    except TaskRaisedError as raised:
        raise trace_error(raised.error, task, raised.function, group, x, y,
                          [n for n, _ in static_hp] + list(dynamic_names),
                          dynamic_names) from raised.error


@functools.lru_cache(maxsize=64)
def _task_reads(task, static_hp, dynamic_names, data_spec, batch_rows,
                eval_rows) -> frozenset[str]:
    read: set[str] = set()
    dyn = {name: jax.ShapeDtypeStruct((), jnp.float32) for name in dynamic_names}
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)

    def hp(d):
        return ReadRecorder({**dict(static_hp), **d}, read)

    def data(rows):
        if data_spec is None:
            return None
        example_shape, x_dtype, y_dtype = data_spec
        return {"x": jax.ShapeDtypeStruct((rows, *example_shape), x_dtype),
                "y": jax.ShapeDtypeStruct((rows,), y_dtype)}

    def run(function, fn, *args):
        try:
            return jax.eval_shape(fn, *args)
        except Exception as error:  # classified by trace_error
            raise TaskRaisedError(function, error) from None

    if isinstance(task, Step):
        step_reads(task, run, hp, data, key, dyn, batch_rows, eval_rows)
        return frozenset(read | set(task.extra_hparams))
    params = run("init", lambda k, d: task.init(k, hp(d)), key, dyn)
    state = ()
    if task.model_state:
        params, state = model_state_pair("init", params)
    loss_args = (params, state) if task.model_state else (params,)
    run("loss", lambda a, b, k, d: task.loss(*a, b, k, hp(d)), loss_args, data(batch_rows),
        key, dyn)
    if eval_rows > 0:
        run("evaluate", lambda a, v, d: task.evaluate(*a, v, hp(d)), loss_args,
            data(eval_rows), dyn)
    if task.optimizer is not None:
        run("optimizer", lambda p, d: optimizers.task_optimizer(task.optimizer, hp(d), 1).init(p),
            params, dyn)
    return frozenset(read | set(task.extra_hparams))


def _param_values(param: Any) -> list[Any]:
    """The values that bound what a Space parameter can take: a range's ends, every choice."""
    if hasattr(param, "low") and hasattr(param, "high"):
        return [param.low, param.high]
    if hasattr(param, "values"):
        return list(param.values)
    return [getattr(param, "value", None)]


def space_value_ranges(space: Mapping[str, Any], task: Task) -> dict[str, tuple]:
    """The valid ranges that apply to ``space``: ``optim.VALUE_RANGES`` for the names some
    optimizer or schedule the space can pick reads, and ``task.value_ranges``."""
    read = space_optimizer_reads(space) if builtin_optimizer(task) else ()
    return {**{n: r for n, r in optim.VALUE_RANGES.items() if n in read}, **task.value_ranges}


def builtin_optimizer(task: Task | Step) -> bool:
    """Whether ``task`` trains with the built-in optimizers and schedules (a Task, or a Task's
    Step, without an ``optimizer`` of its own): only then do their names and ranges apply."""
    if isinstance(task, Step):
        task = task.task
    return task is not None and task.optimizer is None


def check_space_ranges(space: Mapping[str, Any], task: Task) -> None:
    """Checks that no value a Space can give lies outside its valid range, before training.

    Every sweep driver calls it first, so a range reaching an invalid value (``dropout:
    Float(0, 1.05)``, a negative learning rate, ``b1`` up to 1) fails before any round trains
    rather than when a later round samples it.

    Args:
      space: the :class:`~jaxtune.space.Space` (name -> parameter).
      task: the task (its ``value_ranges``).

    Raises:
      ValueError: naming the parameter, the value it reaches, the valid interval and the fix.
    """
    ranges = space_value_ranges(space, task)
    for name, param in space.items():
        if name not in ranges:
            continue
        for value in _param_values(param):
            try:
                optim.check_value_ranges({name: value}, {name: ranges[name]}, where="space")
            except ValueError as error:
                low, low_in, high, high_in = ranges[name]
                interval = f"{'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"
                raise ValueError(
                    f"space[{name!r}] = {param!r} can take {value!r}, outside {interval}, the "
                    f"values {name} can take; bound it inside {interval} (checked before any "
                    "training)."
                ) from error



def optimizer_reads(configs: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The names the optimizers and schedules that ``configs`` pick read (their union)."""
    read: set[str] = set()
    for config in configs:
        for name, default in (("optimizer", "sgd"), ("schedule", "constant")):
            value = config.get(name, default)
            if isinstance(value, str):
                read.update(optim.OPTIMIZER_HPARAMS.get(value, ()))
    return frozenset(read)


def space_optimizer_reads(space: Mapping[str, Any]) -> frozenset[str]:
    """The names read by the optimizers and schedules a Space can pick (all of its choices).

    A sweep may mix them (``schedule: Choice(["constant", "exponential"])`` with a searched
    ``decay_rate``): a name one static group's optimizer or schedule reads is not refused as
    unread in another group of the same sweep.
    """
    values = {}
    for name, default in (("optimizer", "sgd"), ("schedule", "constant")):
        values[name] = _param_values(space[name]) if name in space else [default]
    return optimizer_reads(
        [{"optimizer": o, "schedule": s} for o in values["optimizer"] for s in values["schedule"]]
    )


def _representatives(space: Mapping[str, Any], static_names: Iterable[str]) -> list[dict]:
    """Configurations that show every static value of a Space once: a base (each parameter's
    first value) and, per static parameter, the base with each of its other values."""
    base = {name: _param_values(param)[0] for name, param in space.items()}
    configs = [base]
    for name in static_names:
        for value in _param_values(space[name])[1:]:
            configs.append({**base, name: value})
    return configs


def check_space(task: Task | Step, split: Any, space: Any, *, batch_size: int | None = None,
                allow_unused: bool = False) -> frozenset[str]:
    """What every sweep driver checks first, before anything compiles: ranges and names.

    Checks the Space's ranges (:func:`check_space_ranges`), then refuses (or, with
    ``allow_unused``, warns about) a name of the Space that nothing reads: no optimizer or
    schedule the Space can pick, not the engine, and not the task, whose reads are observed
    by tracing it abstractly for the Space's static values (a base configuration and each
    static parameter's every value in turn).

    Args:
      task: the task.
      split: the data (its shapes and dtypes only).
      space: the :class:`~jaxtune.space.Space`.
      batch_size: rows of a training batch (None: all training rows).
      allow_unused: warn instead of raising.

    Returns:
      The names the sweep reads, for :func:`jaxtune.engine.train`'s ``sweep_reads`` (so a
      round whose static groups happen not to read a name of the Space does not refuse it).

    Raises:
      ValueError: a range reaching invalid values; a name nothing reads.
      Exception: a task's own error while traced (see :func:`trace_error`).
    """
    check_space_ranges(space, task)
    optimizers = (space_optimizer_reads(space) | {"optimizer", "schedule"}
                  if builtin_optimizer(task) else set())
    source = task.task if isinstance(task, Step) and task.task is not None else task
    if isinstance(getattr(source, "optimizer", None), Mapping):
        optimizers = {"optimizer"}
    x, y = (None, None) if split is None else (split.x_train, split.y_train)
    num_valid = 0 if split is None else len(split.y_valid)
    static = set(space.static_names)
    task_read: set[str] = set()
    for config in _representatives(space, sorted(static)):
        static_hp = tuple(sorted((n, _frozen(v)) for n, v in config.items() if n in static))
        dynamic = [n for n in config if n not in static]
        label = ",".join(f"{k}={v}" for k, v in static_hp) or "default"
        rows = config.get("batch_size", batch_size) or (0 if y is None else len(y))
        task_read |= task_reads(task, static_hp, dynamic, x, y, rows, num_valid, label)
    readers = {"the optimizers and schedules of this space": optimizers,
               "the engine": ENGINE_HPARAMS, f"task {task.name!r}": task_read}
    check_names_read(space, readers, where="space", suggestions=known_names(task),
                     allow_unused=allow_unused)
    return frozenset(optimizers | task_read)


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, list | tuple) else value
