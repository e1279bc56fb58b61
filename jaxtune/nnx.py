"""Flax NNX models as a jaxtune task: ``nnx_task(factory, ...)``.

A user's ``nnx.Module`` plugs in through a factory ``factory(hp, rngs) -> module``. jaxtune
builds the module inside the traced step, splits it with ``nnx.split`` into plain pytrees and
never uses NNX's own transforms, so one compiled program trains the whole population
(``jax.vmap`` over members) and a dynamic hyperparameter the factory reads (a dropout rate) is
a traced ``float32`` value that never recompiles.

The task has ``model_state=True``: a member's parameters are the module's ``nnx.Param``
variables and its model state every other variable (``nnx.BatchNorm``'s running mean and
variance, the RNG streams' keys and counts, a user's own ``nnx.Variable``), both pure dicts of
arrays (``nnx.to_pure_dict``; RNG keys stored as their raw ``uint32`` data, so a carry holds only
ordinary arrays). The engine carries them with the optimizer's state (``optimizer=``: the
built-in names or any ``hp -> optax.GradientTransformation``), and ``return_params=True`` gives
``(params, state)``, which :func:`load_module` turns back into the module.

Training runs the module in train mode (``module.train()``: dropout on, batch statistics
used and the running ones updated); evaluation in eval mode (``module.eval()``: no dropout,
running statistics). The dropout masks come from the module's own RNG streams, carried and
advanced exactly as in a hand-written NNX loop (the factory receives ``nnx.Rngs(key)`` with
the member's init key), so one member reproduces such a loop.

``nnx.Dropout`` refuses a traced rate (it tests ``rate == 0`` in Python); use
:class:`Dropout` here, a drop-in subclass that accepts one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxtune.task import OptimizerFactory, Task

HParams = Mapping[str, Any]
Batch = Mapping[str, Any]
ModuleFactory = Callable[[HParams, nnx.Rngs], nnx.Module]
LossFn = Callable[[nnx.Module, Batch], tuple[jax.Array, Mapping[str, jax.Array]]]
EvaluateFn = Callable[[nnx.Module, Batch], Mapping[str, jax.Array]]

KINDS = ("classification", "regression")


class Dropout(nnx.Dropout):
    """``nnx.Dropout`` whose ``rate`` may be a traced value (a dynamic hyperparameter).

    Same arguments, RNG stream and masks as ``nnx.Dropout`` (a mask is drawn from the stream
    even at rate 0, where it keeps everything); the rate is cast to ``float32``.

    Example:
      >>> class Net(nnx.Module):
      ...     def __init__(self, hp, rngs):
      ...         self.dense = nnx.Linear(4, 2, rngs=rngs)
      ...         self.drop = Dropout(hp["dropout"], rngs=rngs)
      ...     def __call__(self, x):
      ...         return self.dense(self.drop(x))
    """

    def __call__(self, inputs: jax.Array, *, deterministic: bool | None = None,
                 rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None) -> jax.Array:
        deterministic = self.deterministic if deterministic is None else deterministic
        if deterministic:
            return inputs
        stream = self.rngs if rngs is None else rngs
        if stream is None:
            raise ValueError(
                "Dropout: deterministic is False but no rngs were given; build it with "
                "Dropout(rate, rngs=rngs) or pass rngs= to the call."
            )
        if isinstance(stream, nnx.Rngs):
            key = stream[self.rng_collection]()
        elif isinstance(stream, nnx.RngStream):
            key = stream()
        else:
            key = stream
        rate = jnp.asarray(self.rate, jnp.float32)
        keep_prob = 1.0 - rate
        shape = list(inputs.shape)
        for dim in self.broadcast_dims:
            shape[dim] = 1
        mask = jnp.broadcast_to(jax.random.bernoulli(key, p=keep_prob, shape=shape),
                                inputs.shape)
        # rate 1 keeps nothing (and divides by no zero): the same edge case as nnx.Dropout.
        scaled = inputs / jnp.where(keep_prob > 0, keep_prob, 1.0).astype(inputs.dtype)
        return jnp.where(mask & (keep_prob > 0), scaled, jnp.zeros_like(inputs))


def _is_key(x: Any) -> bool:
    return jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key)


def _plain(state: nnx.State) -> dict[str, Any]:
    """A state as a pure dict of ordinary arrays (typed keys as their ``uint32`` data)."""
    return jax.tree_util.tree_map(
        lambda x: jax.random.key_data(x) if _is_key(x) else x, nnx.to_pure_dict(state))


def _restore(template: nnx.State, plain: Mapping[str, Any]) -> nnx.State:
    """``template`` (from a freshly built module) with the values of ``plain`` put in."""
    impls = jax.tree_util.tree_map(
        lambda x: jax.random.key_impl(x) if _is_key(x) else None, nnx.to_pure_dict(template))
    values = jax.tree_util.tree_map(
        lambda impl, x: x if impl is None else jax.random.wrap_key_data(x, impl=impl),
        impls, dict(plain), is_leaf=lambda x: x is None)
    state = jax.tree_util.tree_map(lambda x: x, template)
    nnx.replace_by_pure_dict(state, values)
    return state


def _build(factory: ModuleFactory, hp: HParams, key: jax.Array, train: bool) -> nnx.Module:
    module = factory(hp, nnx.Rngs(key))
    if not isinstance(module, nnx.Module):
        raise TypeError(
            f"nnx_step: the factory returned {type(module).__name__}, not an nnx.Module; it "
            "must be (hp, rngs) -> nnx.Module."
        )
    for path, layer in nnx.iter_modules(module):
        if (isinstance(layer, nnx.Dropout) and not isinstance(layer, Dropout)
                and isinstance(layer.rate, jax.core.Tracer)):
            where = ".".join(str(p) for p in path) or "the module"
            raise TypeError(
                f"nnx_task: {where} is an nnx.Dropout with a traced rate (a dynamic "
                "hyperparameter), which nnx.Dropout refuses; use jaxtune.nnx.Dropout, a "
                "drop-in subclass that accepts one.")
    if train:
        module.train()
    else:
        module.eval()
    return module


def _split(module: nnx.Module) -> tuple[Any, nnx.State, nnx.State, nnx.State]:
    """``(graphdef, params, variables, others)``: the ``nnx.Param`` variables, every other
    ``nnx.Variable`` (what a member carries), and array attributes that are not variables (a
    dropout rate given as an array), which always come from the current ``hp``."""
    return nnx.split(module, nnx.Param, nnx.Variable, ...)


def _merge(template: nnx.Module, params: Mapping[str, Any],
           state: Mapping[str, Any]) -> nnx.Module:
    """``template`` (freshly built) with a member's parameters and state put in."""
    graphdef, params_template, state_template, others = _split(template)
    return nnx.merge(graphdef, _restore(params_template, params),
                     _restore(state_template, state), others)


def load_module(factory: ModuleFactory, hp: HParams, params: Mapping[str, Any],
                state: Mapping[str, Any], *, train: bool = False) -> nnx.Module:
    """The module one member's parameters and state hold.

    Args:
      factory: the factory the task was built with.
      hp: the member's hyperparameters.
      params: the member's parameters (no population axis: slice ``[i]`` first), e.g. from
        ``return_params=True``, which gives ``(params, state)`` per member.
      state: the member's model state.
      train: put the module in train mode (default: eval mode, running statistics).

    Returns:
      A fresh ``nnx.Module`` holding ``params`` and ``state``.
    """
    module = _build(factory, hp, jax.random.key(0), train)
    return _merge(module, params, state)


def _mean(per_example: jax.Array, batch: Batch) -> jax.Array:
    """Mean over examples, weighted by ``batch["weight"]`` when present (padding rows: 0)."""
    if "weight" not in batch:
        return jnp.mean(per_example)
    weight = jnp.asarray(batch["weight"], jnp.float32)
    return jnp.sum(per_example * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def _classification_terms(logits: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-example cross-entropy and correctness; one logit column: sigmoid (two classes)."""
    if logits.shape[-1] == 1:
        logit = logits[..., 0]
        loss = optax.sigmoid_binary_cross_entropy(logit, y.astype(logit.dtype))
        correct = (logit > 0).astype(y.dtype) == y
    else:
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y.astype(jnp.int32))
        correct = jnp.argmax(logits, -1) == y
    return loss, correct.astype(jnp.float32)


def _regression_terms(predictions: jax.Array, y: jax.Array) -> jax.Array:
    """Per-example squared error (mean over outputs); ``[rows, 1]`` matches ``[rows]``."""
    if predictions.ndim == y.ndim + 1 and predictions.shape[-1] == 1:
        predictions = predictions[..., 0]
    if predictions.shape != y.shape:
        raise ValueError(
            f"nnx_step: the module's outputs have shape {predictions.shape} but the targets "
            f"{y.shape}; a regression module must return one value per target."
        )
    error = (predictions - y.astype(predictions.dtype)) ** 2
    return error.reshape(error.shape[0], -1).mean(axis=1)


def _builtin_loss(kind: str) -> LossFn:
    def loss(module: nnx.Module, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
        outputs = module(batch["x"])
        if kind == "classification":
            per_example, _ = _classification_terms(outputs, batch["y"])
        else:
            per_example = _regression_terms(outputs, batch["y"])
        return _mean(per_example, batch), {}

    return loss


def _builtin_evaluate(kind: str) -> EvaluateFn:
    def evaluate(module: nnx.Module, data: Batch) -> dict[str, jax.Array]:
        outputs = module(data["x"])
        if kind == "classification":
            loss, correct = _classification_terms(outputs, data["y"])
            return {"accuracy": _mean(correct, data), "loss": _mean(loss, data)}
        mse = _mean(_regression_terms(outputs, data["y"]), data)
        return {"mse": mse, "loss": mse}

    return evaluate


def _check(factory, kind, loss, evaluate, metric_modes) -> None:
    if isinstance(factory, nnx.Module):
        raise TypeError(
            f"nnx_task: factory is a {type(factory).__name__} instance, not a module already "
            "built: pass a function (hp, rngs) -> nnx.Module (or the class, when its "
            "constructor takes (hp, rngs)), so each member builds its own.")
    if not callable(factory):
        raise TypeError(f"nnx_task: factory must be a function (hp, rngs) -> nnx.Module, got "
                        f"{factory!r}.")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"nnx_task: kind={kind!r} must be one of {KINDS} or None (then give "
                         "loss= and evaluate=).")
    if kind is None and (loss is None or evaluate is None):
        raise ValueError("nnx_task: kind=None needs both loss=(module, batch) -> (scalar, aux) "
                         "and evaluate=(module, data) -> {metric: scalar}; or give "
                         "kind='classification'/'regression' for the built-in ones.")
    for name, fn in (("loss", loss), ("evaluate", evaluate)):
        if fn is not None and not callable(fn):
            raise TypeError(f"nnx_task: {name} must be a function or None, got {fn!r}.")
    if evaluate is not None and not metric_modes:
        raise ValueError("nnx_task: a custom evaluate needs metric_modes={metric: 'max' or "
                         "'min'} for the metrics it returns.")


def nnx_functions(
    factory: ModuleFactory,
    *,
    kind: str | None = "classification",
    loss: LossFn | None = None,
    evaluate: EvaluateFn | None = None,
) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
    """The task's three pure functions of one member, ``(init, loss, evaluate)``.

    ``init(key, hp) -> (params, state)``; ``loss(params, state, batch, key, hp) -> (scalar,
    (aux, new_state))``; ``evaluate(params, state, data, hp) -> {metric: scalar}``: the
    ``model_state=True`` signatures of :class:`jaxtune.Task`. ``key`` is not read: the
    dropout masks come from the module's own (carried) RNG streams. Arguments as
    :func:`nnx_task`.
    """
    _check(factory, kind, loss, evaluate, {"_": "min"})
    loss_fn = loss if loss is not None else _builtin_loss(kind)
    evaluate_fn = evaluate if evaluate is not None else _builtin_evaluate(kind)

    def init(key: jax.Array, hp: HParams) -> tuple[dict[str, Any], dict[str, Any]]:
        _, params, state, _ = _split(_build(factory, hp, key, True))
        return _plain(params), _plain(state)

    def task_loss(params, state, batch, key, hp):
        del key
        # A template module (traced; its initial values are unused and removed by XLA) gives
        # the graph, with a dropout rate that may be traced; the member's values go in.
        module = _merge(_build(factory, hp, jax.random.key(0), True), params, state)
        value, aux = loss_fn(module, batch)
        _, _, new_state, _ = _split(module)
        return value, (dict(aux), _plain(new_state))

    def task_evaluate(params, state, data, hp) -> dict[str, jax.Array]:
        return dict(evaluate_fn(load_module(factory, hp, params, state), data))

    return init, task_loss, task_evaluate


def nnx_task(
    factory: ModuleFactory,
    *,
    kind: str | None = "classification",
    loss: LossFn | None = None,
    evaluate: EvaluateFn | None = None,
    metric_modes: Mapping[str, str] | None = None,
    optimizer: OptimizerFactory | Mapping[str, OptimizerFactory] | None = None,
    name: str = "nnx",
    static_hparams: Sequence[str] = (),
    value_ranges: Mapping[str, tuple[float, bool, float, bool]] | None = None,
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
) -> Task:
    """A :class:`jaxtune.Task` that trains a Flax NNX module built by ``factory``.

    Args:
      factory: ``factory(hp, rngs) -> nnx.Module``: ``hp`` as in every jaxtune function
        (dynamic values traced ``float32``, static ones Python values), ``rngs`` an
        ``nnx.Rngs(key)`` with the member's init key (hand it to every layer that needs a
        stream: ``nnx.Linear``, ``nnx.BatchNorm``, :class:`Dropout`). Widths and other
        shapes must be static hyperparameters (name them in ``static_hparams``).
      kind: ``"classification"`` (the module returns logits ``[rows, classes]``, or
        ``[rows, 1]`` for two classes: sigmoid cross-entropy; labels ``batch["y"]``) or
        ``"regression"`` (squared error against ``batch["y"]``, ``[rows]`` or
        ``[rows, outputs]``), or ``None`` with your own ``loss`` and ``evaluate``.
      loss: ``loss(module, batch) -> (scalar, aux)`` (module in train mode; ``aux`` a dict of
        scalars), instead of the kind's mean cross-entropy or squared error. ``batch`` is the
        engine's minibatch (``{"x", "y"}``, maybe ``"weight"``).
      evaluate: ``evaluate(module, data) -> {metric: scalar}`` (module in eval mode: no
        dropout, running statistics), instead of the kind's ``accuracy``/``loss`` or
        ``mse``/``loss``; needs ``metric_modes``.
      metric_modes: ``{metric: "max" | "min"}`` of a custom ``evaluate``.
      optimizer: as ``Task.optimizer``: ``None`` (the built-in names, ``hp["optimizer"]``), a
        factory ``hp -> optax.GradientTransformation`` (every dynamic value it reads is a
        traced ``float32``: a sweep over them compiles once) or a mapping ``name -> factory``.
      name: the task's label in results.
      static_hparams: names the factory reads as Python values (layer sizes).
      value_ranges: valid intervals of names (``name -> (low, low_inclusive, high,
        high_inclusive)``); ``dropout`` defaults to ``[0, 1)``.
      input_shape: one example's shape, checked against the data when given.
      num_classes: the number of classes (classification), checked against the data.

    Returns:
      The task (``model_state=True``).

    Raises:
      ValueError, TypeError: a bad argument, before anything is traced.

    Example:
      >>> class MLP(nnx.Module):
      ...     def __init__(self, hp, rngs):
      ...         self.hidden = nnx.Linear(64, hp["width"], use_bias=False, rngs=rngs)
      ...         self.norm = nnx.BatchNorm(hp["width"], rngs=rngs)
      ...         self.drop = Dropout(hp["dropout"], rngs=rngs)
      ...         self.out = nnx.Linear(hp["width"], 10, rngs=rngs)
      ...     def __call__(self, x):
      ...         return self.out(self.drop(nnx.relu(self.norm(self.hidden(x)))))
      >>> task = nnx_task(MLP, static_hparams=("width",), num_classes=10)
    """
    _check(factory, kind, loss, evaluate, metric_modes)
    init, task_loss, task_evaluate = nnx_functions(factory, kind=kind, loss=loss,
                                                   evaluate=evaluate)
    if evaluate is None:
        modes = ({"accuracy": "max", "loss": "min"} if kind == "classification"
                 else {"mse": "min", "loss": "min"})
    else:
        modes = dict(metric_modes)
    return Task(
        init=init, loss=task_loss, evaluate=task_evaluate, name=name,
        identity=("nnx", factory, kind, loss, evaluate),
        metric_modes=modes, static_hparams=tuple(static_hparams),
        value_ranges={"dropout": (0.0, True, 1.0, False), **(value_ranges or {})},
        kind=kind, input_shape=None if input_shape is None else tuple(input_shape),
        num_classes=num_classes, optimizer=optimizer, model_state=True,
    )


__all__ = ["Dropout", "load_module", "nnx_functions", "nnx_task"]
