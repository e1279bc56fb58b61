"""Optax optimizers and learning-rate schedules built from *traced* hyperparameter values.

`make_optimizer(hp, num_steps)` is called inside the traced training step of one member, with
`hp` mapping names to values. Two kinds of names are read (see `docs/architecture.md`):

* **Static** (`STATIC_HPARAMS`, plain Python values fixed for a static group, because they pick
  the code path or a loop boundary): `optimizer` (one of `OPTIMIZERS`, default `"sgd"`),
  `schedule` (one of `SCHEDULES`, default `"constant"`), `warmup_steps`, `step_size`,
  `transition_steps`, `nesterov` (a bool, read by `sgd`).
* **Dynamic** (traced float32 scalars under `jit`/`vmap`; a new value never recompiles):
  `learning_rate` (required), and with defaults when absent (`HPARAM_DEFAULTS`):
  `weight_decay` (0), `momentum` (0.9), `b1` (0.9), `b2` (0.999), `eps` (1e-8), `alpha` (0);
  `lr_decay` and `decay_rate` have no default and are required by the schedules that read them.

Every dynamic value is cast to float32 whatever the model's dtype: a bf16 model must not get a
bf16 learning rate or decay rate (optax issue #1414; in bf16, 0.999 rounds to 1, so Adam's
`1 - b2` would be 0). The update is computed in float32: gradients are upcast first, so Optax
never rounds the learning rate to the gradients' dtype. The updates and the state are stored back
in the dtypes of the gradients and of Optax's `init` (those of the parameters), so a bf16 model's
optimizer state does not drift to float32 between steps and can be a `lax.scan` carry.

Each optimizer is the Optax chain `preconditioner -> [add_decayed_weights] -> scale_by_schedule`,
the same primitives as `optax.sgd`, `optax.adam`, `optax.adamw`, `optax.rmsprop` and
`optax.adagrad` (`weight_decay` is read by all of them, see below):

| optimizer  | preconditioner                                             | also reads         |
| ---------- | ---------------------------------------------------------- | ------------------ |
| `sgd`      | none; with `momentum`: `optax.trace(momentum, nesterov)`   | `momentum`, `nesterov` |
| `momentum` | `optax.trace(decay=momentum)`                              | `momentum`         |
| `nesterov` | `optax.trace(decay=momentum, nesterov=True)`               | `momentum`         |
| `adam`     | `optax.scale_by_adam(b1, b2, eps)` (*)                     | `b1`, `b2`, `eps`  |
| `adamw`    | `optax.scale_by_adam(b1, b2, eps)` (*), always decayed     | `b1`, `b2`, `eps`  |
| `rmsprop`  | `optax.scale_by_rms(decay=b2, eps=eps)`                    | `b2`, `eps`        |
| `adagrad`  | `optax.scale_by_rss(initial_accumulator_value=0.1, eps)`   | `eps`              |

`sgd` is `optax.sgd(learning_rate, momentum, nesterov)`: without a `momentum` name it is plain
SGD (Optax's `momentum=None`); with one, its traced value is the trace's decay (0 gives plain
SGD's updates), and the static `nesterov` (a bool, default False) picks Nesterov's form.
`nesterov` without `momentum` is refused (Optax would ignore it). The `momentum` and `nesterov`
optimizers always use a trace, with `momentum` defaulting to 0.9.

(*) The same state, moments and update as Optax's, with the bias corrections applied as
multipliers `1 / (1 - b ** t)` rather than divisors, so that every device layout compiles the
same arithmetic (see `_scale_by_adam`); it agrees with `optax.scale_by_adam` to float32
rounding.

Where the contract's defaults differ from the Optax aliases' own, the contract wins: `rmsprop`'s
decay is `b2` (default 0.999; `optax.rmsprop` uses 0.9), `adagrad`'s `eps` defaults to 1e-8
(Optax: 1e-7) and `adamw`'s `weight_decay` to 0 (Optax: 1e-4). Set them in the space to match.

Weight decay is *decoupled* (Loshchilov & Hutter, 2019) for every optimizer: when `weight_decay`
is a key of `hp` (always, for `adamw`), `optax.add_decayed_weights(weight_decay)` adds
`weight_decay * w` to the preconditioned update, before the learning-rate scaling, exactly as
`optax.adamw` does. Presence of the key is what is static; a traced value of 0 is a no-op. As in
Optax, the decay applies to every parameter, biases included (unlike `losses.l2_penalty`).

Schedules are written with array operations only: Optax's `exponential_decay` and
`warmup_cosine_decay_schedule` test their arguments in Python (`decay_rate == 0`,
`peak_value == 0.0`), which fails on a tracer. `cosine` uses `optax.cosine_decay_schedule`
directly, which accepts traced values. Each schedule is tested against its Optax counterpart.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
    "HPARAM_DEFAULTS",
    "OPTIMIZERS",
    "OPTIMIZER_HPARAMS",
    "SCHEDULES",
    "STATIC_HPARAMS",
    "VALUE_RANGES",
    "check_value_ranges",
    "make_optimizer",
    "make_schedule",
    "validate_optimizer",
]

OPTIMIZERS: tuple[str, ...] = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad")
SCHEDULES: tuple[str, ...] = (
    "constant",
    "inverse_time",
    "exponential",
    "cosine",
    "warmup_cosine",
    "step",
)

#: Names that pick the code path or a loop boundary: plain Python values, one static group each.
STATIC_HPARAMS: tuple[str, ...] = (
    "optimizer",
    "schedule",
    "warmup_steps",
    "step_size",
    "transition_steps",
    "nesterov",
)

#: Defaults of the dynamic names that have one (`learning_rate`, `lr_decay`, `decay_rate` do not).
HPARAM_DEFAULTS: Mapping[str, float] = MappingProxyType(
    {"weight_decay": 0.0, "momentum": 0.9, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "alpha": 0.0}
)

#: The hyperparameter names each optimizer and each schedule reads.
OPTIMIZER_HPARAMS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "sgd": ("momentum", "nesterov", "weight_decay"),
        "momentum": ("momentum", "weight_decay"),
        "nesterov": ("momentum", "weight_decay"),
        "adam": ("b1", "b2", "eps", "weight_decay"),
        "adamw": ("b1", "b2", "eps", "weight_decay"),
        "rmsprop": ("b2", "eps", "weight_decay"),
        "adagrad": ("eps", "weight_decay"),
        "constant": ("learning_rate",),
        "inverse_time": ("learning_rate", "lr_decay"),
        "exponential": ("learning_rate", "decay_rate", "transition_steps"),
        "cosine": ("learning_rate", "alpha"),
        "warmup_cosine": ("learning_rate", "warmup_steps", "alpha"),
        "step": ("learning_rate", "decay_rate", "step_size"),
    }
)

#: Valid values of the dynamic names: ``name -> (low, low_inclusive, high, high_inclusive)``.
#: A value outside makes no sense for the optimizer (a negative learning rate ascends, Adam's
#: bias correction divides by ``1 - b2 ** t``, which is 0 for ``b2 = 1``); the engine rejects
#: it on the host with :func:`check_value_ranges`. A learning rate of 0 is allowed: it keeps a
#: member at its initialization (a baseline, or a probe in tests).
VALUE_RANGES: Mapping[str, tuple[float, bool, float, bool]] = MappingProxyType(
    {
        "learning_rate": (0.0, True, math.inf, False),
        "weight_decay": (0.0, True, math.inf, False),
        "momentum": (0.0, True, 1.0, False),
        "b1": (0.0, True, 1.0, False),
        "b2": (0.0, True, 1.0, False),
        "eps": (0.0, False, math.inf, False),
        "lr_decay": (0.0, True, math.inf, False),
        "decay_rate": (0.0, False, 1.0, True),
        "alpha": (0.0, True, 1.0, True),
    }
)


def _interval(low: float, low_inclusive: bool, high: float, high_inclusive: bool) -> str:
    return f"{'[' if low_inclusive else '('}{low:g}, {high:g}{']' if high_inclusive else ')'}"


def check_value_ranges(
    config: Mapping[str, Any],
    ranges: Mapping[str, tuple[float, bool, float, bool]] = VALUE_RANGES,
    where: str = "config",
) -> None:
    """Checks that the known numeric hyperparameters of ``config`` lie in their valid ranges.

    Names not in ``ranges`` and non-numeric values are left alone (their type is checked
    elsewhere); every number of a list or tuple value (``hidden_sizes``) is checked.

    Args:
        config: name -> value (one configuration).
        ranges: ``name -> (low, low_inclusive, high, high_inclusive)``; default
            :data:`VALUE_RANGES`.
        where: how to name ``config`` in messages, e.g. ``"configs[3]"``.

    Raises:
        ValueError: naming the field, the value, the valid interval and the fix.

    Example:
        >>> check_value_ranges({"learning_rate": 0.1, "momentum": 0.9})
    """
    for name, (low, low_inclusive, high, high_inclusive) in ranges.items():
        given = config.get(name)
        values = list(given) if isinstance(given, list | tuple) else [given]
        for value in values:
            if not _is_real(value):
                continue
            value = float(value)
            above = value >= low if low_inclusive else value > low
            below = value <= high if high_inclusive else value < high
            if not (above and below):
                interval = _interval(low, low_inclusive, high, high_inclusive)
                shown = f"{given!r} holds {value!r}, which" if values != [given] else f"{value!r}"
                raise ValueError(
                    f"{where}[{name!r}] = {shown} is outside {interval}, the values {name} "
                    f"can take; give a value in {interval} (in a Space, bound the range to it)."
                )


_DEFAULT_OPTIMIZER = "sgd"
_DEFAULT_SCHEDULE = "constant"
_DYNAMIC_HPARAMS = (
    "learning_rate",
    "weight_decay",
    "momentum",
    "b1",
    "b2",
    "eps",
    "lr_decay",
    "decay_rate",
    "alpha",
)
# Names a schedule cannot do without (the others in OPTIMIZER_HPARAMS have defaults).
_REQUIRED = {
    "constant": ("learning_rate",),
    "inverse_time": ("learning_rate", "lr_decay"),
    "exponential": ("learning_rate", "decay_rate", "transition_steps"),
    "cosine": ("learning_rate",),
    "warmup_cosine": ("learning_rate", "warmup_steps"),
    "step": ("learning_rate", "decay_rate", "step_size"),
}
_HOW_TO_ADD = {
    "learning_rate": "add e.g. 'learning_rate': Float(1e-4, 1e-1, log=True) to the space",
    "lr_decay": "add e.g. 'lr_decay': Float(1e-4, 1e-1, log=True) to the space",
    "decay_rate": "add e.g. 'decay_rate': Float(0.1, 0.99) to the space",
    "transition_steps": "add e.g. 'transition_steps': Fixed(100) to the space",
    "step_size": "add e.g. 'step_size': Fixed(100) to the space",
    "warmup_steps": "add e.g. 'warmup_steps': Int(0, 100) (static) to the space",
}

Schedule = Callable[[jax.typing.ArrayLike], jax.Array]


# --------------------------------------------------------------------------- host validation


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _choices(values: Iterable[str]) -> str:
    return ", ".join(repr(v) for v in values)


def _missing(name: str, reader: str, provided: Iterable[str]) -> ValueError:
    message = f"{name}: missing; {reader} reads it. Fix: {_HOW_TO_ADD[name]}."
    close = difflib.get_close_matches(name, list(provided), n=1, cutoff=0.6)
    if name == "learning_rate" and "lr" in provided:
        close = ["lr"]
    if close:
        message += f" (Did you mean to name {close[0]!r} {name!r}?)"
    return ValueError(message)


def validate_optimizer(
    static_values: Mapping[str, Any],
    dynamic_names: Iterable[str],
    num_steps: int,
) -> tuple[str, ...]:
    """Checks the optimizer and schedule hyperparameters of a static group on the host.

    Runs before any tracing, on plain Python values. Names that are not optimizer names (e.g.
    `width`, `dropout`, `l2`) belong to the model and are left alone; names the chosen optimizer
    or schedule does not read (e.g. `decay_rate` with a constant schedule) are left alone too:
    whether *anything* in the sweep reads a name is decided by `jaxtune.engine.train` (one
    space can mix schedules; see `jaxtune.checks`).

    Args:
        static_values: the static hyperparameters of the group, name -> Python value (e.g.
            `{"optimizer": "adam", "schedule": "warmup_cosine", "warmup_steps": 10}`); a `Fixed`
            value of a dynamic name (e.g. `"learning_rate": 0.1`) may be here as well.
        dynamic_names: the names whose values are traced (e.g. `["learning_rate", "b1"]`).
        num_steps: the number of training steps of the group.

    Returns:
        The names the chosen optimizer and schedule read, in a stable order.

    Raises:
        ValueError: naming the field, the value and the fix, for: an unknown `optimizer` or
            `schedule` (listing the valid choices); a static name given as dynamic; a missing
            `learning_rate` or missing schedule parameter (`lr_decay` for inverse_time,
            `decay_rate` and `transition_steps` for exponential, `decay_rate` and `step_size`
            for step, `warmup_steps` for warmup_cosine); `warmup_steps` not an int in
            `[0, num_steps)`; `step_size` or `transition_steps` not a positive int; a static
            value of a dynamic name that is not a finite number; `num_steps` not a positive int.
    """
    dynamic_names = tuple(dynamic_names)
    provided = set(static_values) | set(dynamic_names)
    if not _is_int(num_steps) or num_steps <= 0:
        raise ValueError(f"num_steps: got {num_steps!r}; it must be a positive int.")
    optimizer, schedule = _check_choices(static_values, dynamic_names)
    for name in _REQUIRED[schedule]:
        if name not in provided:
            raise _missing(name, f"schedule {schedule!r}", provided)
    _check_step_counts(static_values, num_steps)
    _check_static_values(static_values, provided, optimizer)
    return OPTIMIZER_HPARAMS[schedule] + OPTIMIZER_HPARAMS[optimizer]


def _check_choices(static_values: Mapping[str, Any],
                   dynamic_names: tuple[str, ...]) -> tuple[str, str]:
    """The static names are static; ``optimizer`` and ``schedule`` are known: returns both."""
    for name in STATIC_HPARAMS:
        if name in dynamic_names:
            raise ValueError(
                f"{name}: must be static (it picks the code path or a loop boundary, so it cannot "
                f"be a traced value); declare it with Choice(...), Int(...) or Fixed(...), "
                f"never static=False."
            )
    optimizer = static_values.get("optimizer", _DEFAULT_OPTIMIZER)
    if not isinstance(optimizer, str) or optimizer not in OPTIMIZERS:
        raise ValueError(
            f"optimizer: unknown value {optimizer!r}. Valid choices: {_choices(OPTIMIZERS)}."
        )
    schedule = static_values.get("schedule", _DEFAULT_SCHEDULE)
    if not isinstance(schedule, str) or schedule not in SCHEDULES:
        raise ValueError(
            f"schedule: unknown value {schedule!r}. Valid choices: {_choices(SCHEDULES)}."
        )
    return optimizer, schedule


def _check_step_counts(static_values: Mapping[str, Any], num_steps: int) -> None:
    """``warmup_steps`` in ``[0, num_steps)``; ``step_size``, ``transition_steps`` positive."""
    if "warmup_steps" in static_values:
        warmup_steps = static_values["warmup_steps"]
        if not _is_int(warmup_steps) or not 0 <= warmup_steps < num_steps:
            raise ValueError(
                f"warmup_steps: got {warmup_steps!r}; it must be an int in [0, num_steps) = "
                f"[0, {num_steps})."
            )
    for name in ("step_size", "transition_steps"):
        if name in static_values:
            value = static_values[name]
            if not _is_int(value) or value <= 0:
                raise ValueError(f"{name}: got {value!r}; it must be a positive int.")


def _check_static_values(static_values: Mapping[str, Any], provided: set[str],
                         optimizer: str) -> None:
    """``nesterov`` a bool (with sgd: with momentum); a static value of a dynamic name finite."""
    if "nesterov" in static_values:
        nesterov = static_values["nesterov"]
        if not isinstance(nesterov, bool | np.bool_):
            raise ValueError(f"nesterov: got {nesterov!r}; it must be True or False.")
        if optimizer == "sgd" and "momentum" not in provided:
            raise ValueError(
                "nesterov: given with optimizer 'sgd' but without momentum; Nesterov's form "
                "applies to the momentum trace, so add 'momentum' (e.g. Float(0.5, 0.99)) or "
                "remove 'nesterov'."
            )
    for name in _DYNAMIC_HPARAMS:
        if name in static_values:
            value = static_values[name]
            if not _is_real(value) or not math.isfinite(value):
                raise ValueError(f"{name}: got {value!r}; it must be a finite number.")


def _validate_hp(hp: Mapping[str, Any], num_steps: int) -> tuple[str, str]:
    """Validates `hp` at trace time (static names only are inspected) and returns the choices."""
    for name in STATIC_HPARAMS:
        if isinstance(hp.get(name), jax.core.Tracer):
            raise ValueError(
                f"{name}: got a traced value; it must be a static Python value (it picks the "
                f"code path or a loop boundary). Declare it with Choice/Int/Fixed, never "
                f"static=False."
            )
    static_values = {name: hp[name] for name in STATIC_HPARAMS if name in hp}
    validate_optimizer(static_values, [name for name in hp if name not in static_values], num_steps)
    return (
        hp.get("optimizer", _DEFAULT_OPTIMIZER),
        hp.get("schedule", _DEFAULT_SCHEDULE),
    )


# --------------------------------------------------------------------------- schedules


def _value(hp: Mapping[str, Any], name: str) -> jax.Array:
    """Reads a dynamic hyperparameter (or its default) as a float32 scalar, whatever its dtype."""
    value = hp[name] if name in hp else HPARAM_DEFAULTS[name]
    return jnp.asarray(value, jnp.float32)


def _steps(count: jax.typing.ArrayLike) -> jax.Array:
    return jnp.asarray(count).astype(jnp.float32)


def make_schedule(hp: Mapping[str, Any], num_steps: int) -> Schedule:
    """Builds the learning-rate schedule named by `hp["schedule"]` (default `"constant"`).

    With `lr = learning_rate`, `t` the step count (0 for the first update) and `T = num_steps`:

    * `constant`: `lr`.
    * `inverse_time`: `lr / (1 + lr_decay * t)`.
    * `exponential`: `lr * decay_rate ** (t / transition_steps)` (as
      `optax.exponential_decay(lr, transition_steps, decay_rate)`).
    * `step`: `lr * decay_rate ** floor(t / step_size)` (as `optax.exponential_decay(...,
      staircase=True)`).
    * `cosine`: `lr * (alpha + (1 - alpha) * 0.5 * (1 + cos(pi * min(t, T) / T)))`, from `lr`
      to `alpha * lr` at `T` (`optax.cosine_decay_schedule(lr, T, alpha)`).
    * `warmup_cosine`: with `W = warmup_steps`, `lr * t / W` for `t < W`, then cosine from `lr`
      at `W` to `alpha * lr` at `T`: `lr * (alpha + (1 - alpha) * 0.5 * (1 + cos(pi *
      min(t - W, T - W) / (T - W))))` (as `optax.warmup_cosine_decay_schedule(0, lr, W, T,
      end_value=alpha * lr)`).

    Dynamic values may be traced; they are cast to float32.

    Args:
        hp: hyperparameters, name -> value (static names are Python values).
        num_steps: the number of training steps (static).

    Returns:
        A function from the step count (int, or an int array of any shape) to the float32
        learning rate (same shape as the count).

    Raises:
        ValueError: as `validate_optimizer`.

    Example:
        >>> schedule = make_schedule({"schedule": "cosine", "learning_rate": lr}, num_steps=100)
        >>> schedule(jnp.arange(100))  # [100] float32
    """
    _, name = _validate_hp(hp, num_steps)
    lr = _value(hp, "learning_rate")

    if name == "constant":
        return lambda count: lr * jnp.ones_like(_steps(count))
    if name == "inverse_time":
        lr_decay = _value(hp, "lr_decay")
        return lambda count: lr / (1.0 + lr_decay * _steps(count))
    if name == "exponential":
        decay_rate = _value(hp, "decay_rate")
        transition_steps = float(hp["transition_steps"])
        return lambda count: lr * decay_rate ** (_steps(count) / transition_steps)
    if name == "step":
        decay_rate = _value(hp, "decay_rate")
        step_size = float(hp["step_size"])
        return lambda count: lr * decay_rate ** jnp.floor(_steps(count) / step_size)

    alpha = _value(hp, "alpha")
    warmup_steps = int(hp.get("warmup_steps", 0)) if name == "warmup_cosine" else 0
    # optax.cosine_decay_schedule only does arithmetic on init_value and alpha: traced is fine.
    cosine = optax.cosine_decay_schedule(lr, decay_steps=num_steps - warmup_steps, alpha=alpha)
    if warmup_steps == 0:
        return lambda count: cosine(_steps(count))

    def warmup_cosine(count: jax.typing.ArrayLike) -> jax.Array:
        t = _steps(count)
        warmup = lr * jnp.minimum(t, warmup_steps) / warmup_steps
        return jnp.where(t < warmup_steps, warmup, cosine(t - warmup_steps))

    return warmup_cosine


# --------------------------------------------------------------------------- optimizers


def _upcast(x: jax.Array) -> jax.Array:
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.floating):
        return x.astype(jnp.promote_types(x.dtype, jnp.float32))
    return x


def _in_float32(
    inner: optax.GradientTransformation,
) -> optax.GradientTransformationExtraArgs:
    """Runs `inner` in (at least) float32 and stores its results back in their own dtypes.

    Gradients are upcast before the update, so a bf16 model's update is computed with float32
    hyperparameters throughout (Optax's `scale_by_learning_rate` would otherwise round the
    learning rate to the gradients' bf16). The updates are cast back to the gradients' dtypes
    and the new state to the dtypes `init` gave it: a state whose dtype drifted from bf16 to
    float32 after one step could not be a `lax.scan` carry. For float32 models this is a no-op.
    """
    inner = optax.with_extra_args_support(inner)

    def update_fn(updates, state, params=None, **extra_args):
        new_updates, new_state = inner.update(
            jax.tree.map(_upcast, updates), state, params, **extra_args
        )
        new_updates = jax.tree.map(lambda new, old: new.astype(old.dtype), new_updates, updates)
        new_state = jax.tree.map(
            lambda new, old: jnp.asarray(new).astype(jnp.asarray(old).dtype), new_state, state
        )
        return new_updates, new_state

    return optax.GradientTransformationExtraArgs(inner.init, update_fn)


def _scale_by_adam(b1: Any, b2: Any, eps: Any) -> optax.GradientTransformation:
    """`optax.scale_by_adam` with its bias corrections applied as multipliers.

    Same state (`optax.ScaleByAdamState`), moments and update rule as Optax: with
    `c_k = 1 / (1 - b_k ** t)`, the update is `mu * c_1 / (sqrt(nu * c_2) + eps)`. Optax
    writes `mu / (1 - b1 ** t)`; under `vmap` that divides a parameter-shaped array by a
    broadcast per-member scalar, which XLA rewrites into a reciprocal and a product in an
    unpartitioned program but leaves alone in a program partitioned over several devices, so a
    member's updates differed by one rounding between one device and several. Written as the
    product, every device layout compiles the same arithmetic, and results are bit-identical
    on 1, 2, 4 and 8 devices (tests/test_devices.py). Checked against `optax.scale_by_adam`
    to float32 rounding (tests/test_optim.py).
    """

    def init_fn(params):
        return optax.scale_by_adam().init(params)

    def update_fn(updates, state, params=None):
        del params
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = optax.safe_increment(state.count)
        step = count.astype(jnp.result_type(b1, b2, jnp.float32))
        mu_scale = 1.0 / (1.0 - jnp.power(b1, step))
        nu_scale = 1.0 / (1.0 - jnp.power(b2, step))
        new_updates = jax.tree.map(
            lambda m, v: (m * mu_scale.astype(m.dtype))
            / (jnp.sqrt(v * nu_scale.astype(v.dtype)) + eps),
            mu, nu,
        )
        return new_updates, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def _preconditioner(name: str, hp: Mapping[str, Any]) -> optax.GradientTransformation:
    if name == "sgd":
        # optax.sgd(learning_rate, momentum, nesterov): a trace only when momentum is given.
        if "momentum" not in hp:
            return optax.identity()
        return optax.trace(decay=_value(hp, "momentum"), nesterov=bool(hp.get("nesterov")))
    if name in ("momentum", "nesterov"):
        return optax.trace(decay=_value(hp, "momentum"), nesterov=name == "nesterov")
    if name in ("adam", "adamw"):
        return _scale_by_adam(_value(hp, "b1"), _value(hp, "b2"), _value(hp, "eps"))
    if name == "rmsprop":
        return optax.scale_by_rms(decay=_value(hp, "b2"), eps=_value(hp, "eps"))
    # adagrad: optax.adagrad's initial accumulator (0.1) is kept, not a hyperparameter.
    return optax.scale_by_rss(initial_accumulator_value=0.1, eps=_value(hp, "eps"))


def make_optimizer(hp: Mapping[str, Any], num_steps: int) -> optax.GradientTransformation:
    """Builds the Optax optimizer named by `hp["optimizer"]` (default `"sgd"`).

    Call it inside the traced step (or pass traced values): every dynamic value in `hp` may be a
    tracer, and a new value never recompiles. The learning rate follows `make_schedule(hp,
    num_steps)`. See the module docstring for the chain each optimizer is and the names it reads.

    Args:
        hp: hyperparameters, name -> value: static names are Python values, dynamic ones are
            Python floats or (traced) scalars of any float dtype, cast to float32.
        num_steps: the number of training steps (static).

    Returns:
        An `optax.GradientTransformation`. The update is computed in (at least) float32; its
        updates have the gradients' dtypes and its state keeps the dtypes of `init` (those of
        the parameters) from step to step.

    Raises:
        ValueError: as `validate_optimizer`.

    Example:
        >>> def step(params, opt_state, grads, learning_rate):
        ...     optimizer = make_optimizer({"optimizer": "adam", "learning_rate": learning_rate},
        ...                                num_steps=1000)
        ...     updates, opt_state = optimizer.update(grads, opt_state, params)
        ...     return optax.apply_updates(params, updates), opt_state
    """
    name, _ = _validate_hp(hp, num_steps)
    parts = [_preconditioner(name, hp)]
    if name == "adamw" or "weight_decay" in hp:
        parts.append(optax.add_decayed_weights(_value(hp, "weight_decay")))
    parts.append(optax.scale_by_learning_rate(make_schedule(hp, num_steps)))
    return _in_float32(optax.chain(*parts))

