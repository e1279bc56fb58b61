"""The Task contract: the pure functions one member runs, and ready-made tasks.

A :class:`Task` is three pure functions of explicit parameters, keys and hyperparameters::

    init(key, hp) -> params
    loss(params, batch, key, hp) -> (scalar, aux)
    evaluate(params, data, hp) -> {metric_name: scalar}

``batch`` and ``data`` are ``{"x": ..., "y": ...}`` dictionaries; they may also carry
``"weight"`` ``[rows]`` (1 for real rows, 0 for padding of cross-validation folds), and a task's
means should be weighted by it (the ready-made tasks do). ``hp`` maps hyperparameter
names to scalars: *dynamic* ones are traced ``float32`` arrays (one member's slice of a
``[num_members]`` array), *static* ones are plain Python values fixed for the static group.
The functions are written for one member; the engine lifts them with ``jax.vmap``.

A user's own model plugs in by writing these three functions (or by handing a Flax module
factory to :func:`classification_task` / :func:`regression_task`). Two tasks compare equal when
their ``identity`` is equal, which is what lets the engine reuse a compiled program across calls:
ready-made tasks get an identity from their arguments, a hand-written task from its functions.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxtune import data as data_lib
from jaxtune import losses, models

Params = Any
Batch = Mapping[str, jax.Array]
HParams = Mapping[str, Any]
ModelFactory = Callable[[HParams], nn.Module]
OptimizerFactory = Callable[[HParams], optax.GradientTransformation]

MODELS = ("mlp", "cnn", "linear")
KINDS = data_lib.KINDS

#: Names the ready-made models read as plain Python values (layer sizes): static only.
MODEL_STATIC_HPARAMS: tuple[str, ...] = ("width", "depth", "hidden_sizes", "channels")
#: Names the ready-made models build as integers (``hidden_sizes``: a list of them).
MODEL_INTEGER_HPARAMS: tuple[str, ...] = MODEL_STATIC_HPARAMS

#: Valid values of the names the ready-made tasks read, in the format of
#: :data:`jaxtune.optim.VALUE_RANGES`: a dropout rate is a probability below 1, a negative
#: penalty would reward large weights, and a layer has at least one unit (``depth`` 0 is a
#: linear model; every entry of ``hidden_sizes`` is checked).
VALUE_RANGES: Mapping[str, tuple[float, bool, float, bool]] = MappingProxyType(
    {
        "dropout": (0.0, True, 1.0, False),
        "l1": (0.0, True, math.inf, False),
        "l2": (0.0, True, math.inf, False),
        "width": (1.0, True, math.inf, False),
        "channels": (1.0, True, math.inf, False),
        "hidden_sizes": (1.0, True, math.inf, False),
        "depth": (0.0, True, math.inf, False),
    }
)


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """The pure functions a member runs.

    Attributes:
      init: ``init(key, hp) -> params``.
      loss: ``loss(params, batch, key, hp) -> (scalar, aux)``; ``aux`` is a dict of scalars.
      evaluate: ``evaluate(params, data, hp) -> {metric: scalar}``; metric names are unprefixed
        (``"accuracy"``), the engine records them as ``"valid_accuracy"``, ``"test_accuracy"``.
      name: a label used in results and messages.
      identity: a hashable value that identifies the task for compilation caching. ``None``
        means "the three functions themselves".
      metric_modes: for each metric ``evaluate`` returns, ``"max"`` or ``"min"``.
      input_shape: shape of one example without the batch axis, e.g. ``(64,)``, or ``None``
        (not declared). When given, :func:`jaxtune.train` checks the data's feature shape
        against it before compiling.
      num_classes: for a classification task, the number of classes (>= 2), or ``None``. When
        given, :func:`jaxtune.train` checks that labels are whole numbers in
        ``[0, num_classes)`` (of an integer dtype for more than two classes) and that the split
        agrees.
      kind: ``"classification"``, ``"regression"`` or ``None`` (not declared). When given,
        :func:`jaxtune.train` checks it against the split's ``kind``.
      static_hparams: names the task reads as plain Python values (they set a shape or the
        code path, like the ready-made models' ``width``); :func:`jaxtune.train` refuses them
        when declared dynamic. Default: none.
      value_ranges: valid intervals of names the task reads,
        ``name -> (low, low_inclusive, high, high_inclusive)`` (the ready-made tasks:
        :data:`VALUE_RANGES`); :func:`jaxtune.train` checks configs against them (every number
        of a list value), and the sweep drivers check a Space's whole ranges against them
        before training. Default: none.
      extra_hparams: names the task reads that tracing it may not show (e.g. read only on a
        code path the abstract trace does not take). :func:`jaxtune.train` refuses a name
        that nothing reads; the names a task reads are found by recording which keys of
        ``hp`` its init/loss/evaluate look up while traced, plus these. Default: none.
      integer_hparams: names the task builds as integers (layer sizes; a list value must hold
        integers; the ready-made models: :data:`MODEL_INTEGER_HPARAMS`): :func:`jaxtune.train`
        refuses any other value, which would be recorded as given (``8.5``) but built
        truncated (``8``). Default: none.
      optimizer: ``None`` (the built-in optimizers and schedules, named by ``hp["optimizer"]``
        and ``hp["schedule"]``: :func:`jaxtune.optim.make_optimizer`), a factory
        ``hp -> optax.GradientTransformation`` (e.g. ``lambda hp: optax.chain(
        optax.clip_by_global_norm(hp["clip"]), optax.adamw(hp["learning_rate"]))``: every
        dynamic value it reads is a traced float32, so a sweep over them compiles once), or a
        mapping ``name -> factory`` from which the static config value ``optimizer`` picks.
      model_state: ``False``: the signatures above. ``True``: the model carries state that is
        not trained by gradients (BatchNorm's running statistics) and the functions are
        ``init(key, hp) -> (params, state)``,
        ``loss(params, state, batch, key, hp) -> (scalar, (aux, new_state))`` and
        ``evaluate(params, state, data, hp) -> {metric: scalar}``; each member carries its own
        ``state`` from step to step and evaluates with it.

    The ready-made tasks set ``input_shape``, ``num_classes`` and ``kind``; a hand-written task
    may leave them ``None``, and a mismatch with the data is then caught while the engine
    traces the task's functions abstractly (still before compiling).

    Example:
      >>> def init(key, hp):
      ...     return {"w": jnp.zeros(())}
      >>> def loss(params, batch, key, hp):
      ...     err = params["w"] * batch["x"][:, 0] - batch["y"]
      ...     return jnp.mean(err**2), {}
      >>> def evaluate(params, data, hp):
      ...     return {"mse": loss(params, data, None, hp)[0]}
      >>> task = Task(init, loss, evaluate, name="slope", metric_modes={"mse": "min"})
    """

    init: Callable[[jax.Array, HParams], Params]
    loss: Callable[[Params, Batch, jax.Array, HParams], tuple[jax.Array, Mapping[str, Any]]]
    evaluate: Callable[[Params, Batch, HParams], Mapping[str, jax.Array]]
    name: str = "task"
    identity: Any = None
    metric_modes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    input_shape: tuple[int, ...] | None = None
    num_classes: int | None = None
    kind: str | None = None
    static_hparams: tuple[str, ...] = ()
    value_ranges: Mapping[str, tuple[float, bool, float, bool]] = dataclasses.field(
        default_factory=dict
    )
    extra_hparams: tuple[str, ...] = ()
    integer_hparams: tuple[str, ...] = ()
    optimizer: OptimizerFactory | Mapping[str, OptimizerFactory] | None = None
    model_state: bool = False

    def __post_init__(self) -> None:
        for field in ("init", "loss", "evaluate"):
            if not callable(getattr(self, field)):
                raise TypeError(
                    f"Task.{field} must be a function, got {getattr(self, field)!r}; see the "
                    "Task contract in jaxtune.task."
                )
        if not isinstance(self.model_state, bool):
            raise TypeError(f"Task.model_state must be True or False, got {self.model_state!r}.")
        optimizer = self.optimizer
        if isinstance(optimizer, Mapping):
            if not optimizer or not all(isinstance(k, str) and callable(v)
                                        for k, v in optimizer.items()):
                raise TypeError(
                    "Task.optimizer: a mapping must take optimizer names (str) to factories "
                    f"hp -> optax.GradientTransformation, got {dict(optimizer)!r}.")
            object.__setattr__(self, "optimizer", MappingProxyType(dict(optimizer)))
        elif optimizer is not None and not callable(optimizer):
            raise TypeError(
                f"Task.optimizer must be None (the built-in names, hp['optimizer']), a function "
                f"hp -> optax.GradientTransformation, or a mapping name -> such a function; got "
                f"{optimizer!r}.")
        object.__setattr__(self, "input_shape", check_metadata(
            "Task", self.kind, self.input_shape, self.num_classes))

    def _key(self) -> Any:
        optimizer = self.optimizer
        if isinstance(optimizer, Mapping):
            optimizer = tuple(sorted(optimizer.items()))
        if self.identity is not None:
            return ("identity", self.identity, optimizer, self.model_state)
        return ("functions", self.init, self.loss, self.evaluate, optimizer, self.model_state)

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Task) and self._key() == other._key()


def check_metadata(owner: str, kind: str | None, input_shape: Any,
                   num_classes: Any) -> tuple[int, ...] | None:
    """Checks the data a Task or Step declares; returns ``input_shape`` as a tuple (or None).

    Raises:
      TypeError, ValueError: naming ``<owner>.<field>`` and the fix.
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"{owner}.kind={kind!r} must be one of {KINDS} or None (not declared).")
    if input_shape is not None:
        message = (f"{owner}.input_shape={input_shape!r} must be a tuple of positive ints (one "
                   "example's shape without the batch axis, e.g. (64,)) or None.")
        if isinstance(input_shape, int | str) or not all(
            isinstance(d, int) and not isinstance(d, bool) for d in input_shape
        ):
            raise TypeError(message)
        if not all(d > 0 for d in input_shape):
            raise ValueError(message)
        input_shape = tuple(int(d) for d in input_shape)
    if num_classes is not None:
        if kind == "regression":
            raise ValueError(
                f"{owner}.num_classes must be None for kind='regression'; "
                "use kind='classification' for labels."
            )
        message = f"{owner}.num_classes={num_classes!r} must be an int >= 2 or None."
        if isinstance(num_classes, bool) or not isinstance(num_classes, int):
            raise TypeError(message)
        if num_classes < 2:
            raise ValueError(message)
    return input_shape


def check_task_data(task: Task, split: data_lib.Split, *, include_test: bool = True,
                    include_valid: bool = True) -> None:
    """Checks on the host that ``split`` is valid data and matches what ``task`` declares.

    Runs :func:`jaxtune.data.check_arrays` on the training, validation and (with
    ``include_test``) test rows, with the task's ``num_classes`` (or else the split's), then
    compares the task's declared ``kind``, ``num_classes`` and ``input_shape`` with the data.
    Fields a task leaves ``None`` are not compared.

    Args:
      task: the task.
      split: the data.
      include_test: also check ``split.x_test``/``split.y_test``.
      include_valid: also check ``split.x_valid``/``split.y_valid`` (not when members validate
        on row tables of ``x_train``: the validation part is then never read).

    Raises:
      ValueError, TypeError: naming the field (``split.x_valid``, ``task.input_shape``...)
        and the fix: invalid arrays, a kind or class count that differs between task and
        split, labels outside ``[0, num_classes)``, non-integer labels for a classification
        task of more than two classes (whole-number floats are fine for two), or features
        whose shape differs from ``task.input_shape``.
    """
    if task.kind is not None and task.kind != split.kind:
        raise ValueError(
            f"task {task.name!r} is a {task.kind} task but split {split.name!r} holds "
            f"{split.kind} data; use a {split.kind} task for this split (e.g. "
            f"jaxtune.{split.kind}_task) or a {task.kind} dataset."
        )
    num_classes = None
    if split.kind == "classification":
        if (task.num_classes is not None and split.num_classes is not None
                and task.num_classes != split.num_classes):
            raise ValueError(
                f"task.num_classes={task.num_classes} but split {split.name!r} has "
                f"num_classes={split.num_classes}; build the task with "
                f"num_classes={split.num_classes}."
            )
        num_classes = task.num_classes or split.num_classes
    # Binary tasks read labels as floats (sigmoid loss, threshold 0.5); a softmax over more
    # classes indexes with them, so they must be integers.
    needs_integer_labels = task.kind == "classification" and (num_classes or 0) > 2
    parts = ["train"] + (["valid"] if include_valid else []) + (["test"] if include_test else [])
    for part in parts:
        x, y = getattr(split, f"x_{part}"), getattr(split, f"y_{part}")
        try:
            data_lib.check_arrays(x, y, split.kind, num_classes)
        except (TypeError, ValueError) as error:
            raise type(error)(f"split.x_{part}/y_{part}: {error}") from error
        x, y = np.asarray(x), np.asarray(y)
        if task.input_shape is not None and tuple(x.shape[1:]) != task.input_shape:
            raise ValueError(
                f"split.x_{part} has examples of shape {tuple(x.shape[1:])} but "
                f"task.input_shape={task.input_shape}; build the task with "
                f"input_shape={tuple(x.shape[1:])} (or reshape the data)."
            )
        if needs_integer_labels and not np.issubdtype(y.dtype, np.integer):
            raise TypeError(
                f"split.y_{part} has dtype {y.dtype} but task {task.name!r} classifies more "
                f"than two classes and needs integer labels; convert them with "
                f"y.astype(np.int32)."
            )


def _hidden_sizes(hp: HParams, default_width: int, default_depth: int) -> tuple[int, ...]:
    if "hidden_sizes" in hp:
        return tuple(int(w) for w in hp["hidden_sizes"])
    width = int(hp.get("width", default_width))
    depth = int(hp.get("depth", default_depth))
    return (width,) * depth


def model_factory(
    model: str | ModelFactory, num_outputs: int, input_shape: Sequence[int]
) -> ModelFactory:
    """Returns ``hp -> nn.Module`` for a model name or passes a user's factory through.

    Args:
      model: ``"linear"`` (or ``"logistic"``), ``"mlp"``, ``"cnn"`` or a factory
        ``hp -> flax.linen.Module`` (returned unchanged).
      num_outputs: outputs of the model.
      input_shape: shape of one example (a ``"cnn"`` needs square images).

    Returns:
      The factory ``hp -> flax.linen.Module``.

    Raises:
      ValueError: an unknown model name, or non-square inputs for ``"cnn"``.
    """
    if callable(model):
        return model
    if model == "mlp":
        return lambda hp: models.MLP(_hidden_sizes(hp, 128, 2), num_outputs)
    if model == "cnn":
        if len(input_shape) == 1:
            side = round(input_shape[0] ** 0.5)
            if side * side != input_shape[0]:
                raise ValueError(
                    f"model='cnn' needs square images; got {input_shape[0]} features. "
                    "Pass a custom model factory for non-square inputs."
                )
            image_shape: tuple[int, ...] = (side, side)
        else:
            image_shape = tuple(input_shape[:2])
        return lambda hp: models.CNN(
            features=(int(hp.get("channels", 16)), 2 * int(hp.get("channels", 16))),
            num_outputs=num_outputs,
            image_shape=image_shape,
            dense_size=int(hp.get("width", 64)),
        )
    if model in ("linear", "logistic"):
        return lambda hp: models.Linear(num_outputs)
    raise ValueError(
        f"model={model!r} is not a known model; use one of {MODELS} or pass a function "
        "hp -> flax.linen.Module."
    )


_model_factory = model_factory  # the old private name, kept for existing callers


def _penalty(params: Params, hp: HParams) -> jax.Array:
    """L1 and L2 penalties on weight matrices, strengths read from ``hp['l1']``, ``hp['l2']``."""
    total = jnp.zeros((), jnp.float32)
    if "l1" in hp:
        total = total + jnp.asarray(hp["l1"], jnp.float32) * losses.l1_penalty(params)
    if "l2" in hp:
        total = total + jnp.asarray(hp["l2"], jnp.float32) * losses.l2_penalty(params)
    return total


def _apply(
    factory: ModelFactory, params: Params, x: jax.Array, key: jax.Array | None, hp: HParams
) -> jax.Array:
    module = factory(hp)
    if key is None or "dropout" not in hp:
        return module.apply({"params": params}, x, deterministic=True)
    return module.apply(
        {"params": params},
        x,
        dropout_rate=jnp.asarray(hp["dropout"], jnp.float32),
        deterministic=False,
        rngs={"dropout": key},
    )


def _mean(per_example: jax.Array, data: Mapping[str, jax.Array]) -> jax.Array:
    """Mean over examples, weighted by ``data["weight"]`` when present (fold padding is 0)."""
    if "weight" not in data:
        return jnp.mean(per_example)
    weight = jnp.asarray(data["weight"], jnp.float32)
    return jnp.sum(per_example * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def _init_fn(factory: ModelFactory, input_shape: Sequence[int], model_state: bool):
    def init(key: jax.Array, hp: HParams) -> Params:
        dummy = jnp.zeros((1, *input_shape), jnp.float32)
        variables = dict(factory(hp).init({"params": key}, dummy, deterministic=True))
        params = variables.pop("params")
        if model_state:
            return params, variables
        if variables:
            raise ValueError(
                f"the model has variable collections {sorted(variables)} besides 'params' "
                "(BatchNorm's 'batch_stats'); build the task with model_state=True so that "
                "each member carries and updates them.")
        return params

    return init


def _apply_with_state(factory: ModelFactory, params: Params, state: Any, x: jax.Array,
                      key: jax.Array | None, hp: HParams) -> tuple[jax.Array, Any]:
    """The model with its state (``batch_stats``...): in training (``key`` given) it runs with
    ``deterministic=False`` and returns the updated state; in evaluation with
    ``deterministic=True`` (BatchNorm: running averages) and returns the state unchanged."""
    module = factory(hp)
    variables = {"params": params, **state}
    if key is None:
        return module.apply(variables, x, deterministic=True), state
    extra = {"dropout_rate": jnp.asarray(hp["dropout"], jnp.float32)} if "dropout" in hp else {}
    out, updated = module.apply(variables, x, deterministic=False, rngs={"dropout": key},
                                mutable=list(state), **extra)
    return out, {**state, **updated}


def _model_functions(factory: ModelFactory, model_state: bool,
                     per_example_loss: Callable[..., jax.Array],
                     metrics: Callable[..., dict[str, jax.Array]]):
    """``(loss, evaluate)`` of a ready-made task: the mean loss plus penalties, and the
    metrics, with or without model state (see :class:`Task`'s ``model_state``)."""
    if not model_state:
        def loss(params, batch, key, hp):
            out = _apply(factory, params, batch["x"], key, hp)
            data = _mean(per_example_loss(out, batch["y"]), batch)
            return data + _penalty(params, hp), {"data_loss": data}

        def evaluate(params, data, hp):
            return metrics(_apply(factory, params, data["x"], None, hp), data)

        return loss, evaluate

    def stateful_loss(params, state, batch, key, hp):
        out, state = _apply_with_state(factory, params, state, batch["x"], key, hp)
        data = _mean(per_example_loss(out, batch["y"]), batch)
        return data + _penalty(params, hp), ({"data_loss": data}, state)

    def stateful_evaluate(params, state, data, hp):
        return metrics(_apply_with_state(factory, params, state, data["x"], None, hp)[0], data)

    return stateful_loss, stateful_evaluate


def classification_task(
    model: str | ModelFactory = "mlp",
    *,
    num_classes: int,
    input_shape: Sequence[int],
    optimizer: OptimizerFactory | Mapping[str, OptimizerFactory] | None = None,
    model_state: bool = False,
) -> Task:
    """A classification task: cross-entropy plus optional L1/L2 penalties.

    With ``num_classes == 2`` the model has one output and the loss is the sigmoid binary
    cross-entropy, so that logistic regression here is the same objective as scikit-learn's
    ``LogisticRegression`` (with ``l2 = 1 / (C * num_train_rows)``).

    The training loss is ``mean cross-entropy + l1 * sum|W| + l2 * 0.5 * sum W**2`` over weight
    matrices; hyperparameters read from ``hp``: ``dropout``, ``l1``, ``l2`` (dynamic) and, for
    the built-in models, ``width``, ``depth``, ``hidden_sizes``, ``channels`` (static).

    Args:
      model: ``"mlp"``, ``"cnn"``, ``"linear"`` (logistic regression), or a function
        ``hp -> flax.linen.Module`` whose ``__call__(x, *, dropout_rate, deterministic)``
        returns logits ``[batch, num_outputs]``.
      num_classes: number of classes (>= 2).
      input_shape: shape of one example, without the batch axis.
      optimizer: the task's optimizer (:class:`Task`'s ``optimizer``; default: the built-in
        names).
      model_state: the model has state besides its parameters (a BatchNorm's
        ``batch_stats``): each member carries its own, updated in training (the module is
        called with ``deterministic=False`` and those collections mutable) and used in
        evaluation (``deterministic=True``: BatchNorm's running averages, with
        ``use_running_average=deterministic`` in the module).

    Returns:
      A :class:`Task` whose ``evaluate`` reports ``accuracy`` and ``loss`` (unpenalized).
    """
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}.")
    input_shape = tuple(int(d) for d in input_shape)
    binary = num_classes == 2
    factory = _model_factory(model, 1 if binary else num_classes, input_shape)

    def per_example_loss(logits: jax.Array, y: jax.Array) -> jax.Array:
        if binary:
            return optax.sigmoid_binary_cross_entropy(logits[..., 0], y.astype(logits.dtype))
        return optax.softmax_cross_entropy_with_integer_labels(logits, y)

    def per_example_correct(logits: jax.Array, y: jax.Array) -> jax.Array:
        predicted = (logits[..., 0] > 0).astype(y.dtype) if binary else jnp.argmax(logits, -1)
        return (predicted == y).astype(jnp.float32)

    def metrics(logits, data):
        return {
            "accuracy": _mean(per_example_correct(logits, data["y"]), data),
            "loss": _mean(per_example_loss(logits, data["y"]), data),
        }

    loss, evaluate = _model_functions(factory, model_state, per_example_loss, metrics)

    return Task(
        init=_init_fn(factory, input_shape, model_state),
        loss=loss,
        evaluate=evaluate,
        optimizer=optimizer,
        model_state=model_state,
        name=f"classification[{model if isinstance(model, str) else 'custom'}]",
        identity=("classification", model, num_classes, input_shape),
        metric_modes={"accuracy": "max", "loss": "min"},
        input_shape=input_shape,
        num_classes=num_classes,
        kind="classification",
        static_hparams=MODEL_STATIC_HPARAMS,
        integer_hparams=MODEL_INTEGER_HPARAMS if isinstance(model, str) else (),
        value_ranges=VALUE_RANGES,
    )


def regression_task(
    model: str | ModelFactory = "linear",
    *,
    input_shape: Sequence[int],
    optimizer: OptimizerFactory | Mapping[str, OptimizerFactory] | None = None,
    model_state: bool = False,
) -> Task:
    """A regression task: mean squared error plus optional L1/L2 penalties.

    Args:
      model: ``"linear"``, ``"mlp"``, or a function ``hp -> flax.linen.Module`` returning
        predictions ``[batch, 1]``.
      input_shape: shape of one example, without the batch axis.
      optimizer, model_state: as for :func:`classification_task`.

    Returns:
      A :class:`Task` whose ``evaluate`` reports ``mse`` and ``loss`` (both the unpenalized
      mean squared error).
    """
    input_shape = tuple(int(d) for d in input_shape)
    factory = _model_factory(model, 1, input_shape)

    def per_example_loss(out, y):
        return (out[..., 0] - y) ** 2

    def metrics(out, data):
        err = _mean(per_example_loss(out, data["y"]), data)
        return {"mse": err, "loss": err}

    loss, evaluate = _model_functions(factory, model_state, per_example_loss, metrics)

    return Task(
        init=_init_fn(factory, input_shape, model_state),
        loss=loss,
        evaluate=evaluate,
        optimizer=optimizer,
        model_state=model_state,
        name=f"regression[{model if isinstance(model, str) else 'custom'}]",
        identity=("regression", model, input_shape),
        metric_modes={"mse": "min", "loss": "min"},
        input_shape=input_shape,
        kind="regression",
        static_hparams=MODEL_STATIC_HPARAMS,
        integer_hparams=MODEL_INTEGER_HPARAMS if isinstance(model, str) else (),
        value_ranges=VALUE_RANGES,
    )
