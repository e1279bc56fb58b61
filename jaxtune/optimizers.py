"""A task's optimizer: the built-in names, a factory of the user's, or a mapping of both.

``Task.optimizer`` is ``None`` (the built-in optimizers and schedules named by ``hp``:
:func:`jaxtune.optim.make_optimizer`), a factory ``hp -> optax.GradientTransformation`` whose
every dynamic value is a traced float32 (so a sweep over a clip threshold, a learning rate and
a weight decay compiles once), or a mapping ``name -> factory`` that the static config value
``optimizer`` picks from. :data:`BUILTIN_OPTIMIZERS` are the seven built-in names as factories
of that kind (the same numerics as ``make_optimizer``), to mix with a user's own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import optax

from jaxtune import optim

__all__ = ["BUILTIN_OPTIMIZERS", "optimizer_factory", "task_optimizer"]

Factory = Callable[[Mapping[str, Any]], optax.GradientTransformation]


def _choices(names: Any) -> str:
    return ", ".join(repr(name) for name in names)


def task_optimizer(
    optimizer: Factory | Mapping[str, Factory] | None,
    hp: Mapping[str, Any],
    num_steps: int,
) -> optax.GradientTransformation:
    """The optimizer a task's ``optimizer`` field builds for one member's ``hp``.

    Args:
      optimizer: ``None`` (:func:`jaxtune.optim.make_optimizer`: the built-in names), a factory
        ``hp -> optax.GradientTransformation``, or a mapping ``name -> factory`` picked by the
        static ``hp["optimizer"]``.
      hp: the member's hyperparameters (dynamic values traced float32 scalars).
      num_steps: the horizon of a built-in schedule that reads it.

    Returns:
      The ``optax.GradientTransformation``.

    Raises:
      ValueError: a mapping without ``hp["optimizer"]``'s name, or as
        :func:`jaxtune.optim.make_optimizer`.
      TypeError: a factory that does not return a ``GradientTransformation``.
    """
    if optimizer is None:
        return optim.make_optimizer(hp, num_steps)
    if isinstance(optimizer, Mapping):
        name = hp.get("optimizer")
        if name not in optimizer:
            raise ValueError(
                f"optimizer: got {name!r}; this task's optimizers are {_choices(optimizer)} "
                "(Task.optimizer): give one of them as the static config value 'optimizer'.")
        optimizer = optimizer[name]
    transformation = optimizer(hp)
    if not isinstance(transformation, optax.GradientTransformation):
        raise TypeError(
            f"Task.optimizer returned {transformation!r}; a factory must return an "
            "optax.GradientTransformation (e.g. optax.adam(hp['learning_rate'])).")
    return transformation


class _Named(Mapping):
    """``hp`` seen with ``optimizer`` set to one name (every other lookup passes through, so a
    recording ``hp`` still records what the optimizer reads)."""

    def __init__(self, hp: Mapping[str, Any], name: str) -> None:
        self._hp, self._name = hp, name

    def __getitem__(self, key: str) -> Any:
        return self._name if key == "optimizer" else self._hp[key]

    def __contains__(self, key: object) -> bool:
        return key == "optimizer" or key in self._hp

    def get(self, key: str, default: Any = None) -> Any:
        return self._name if key == "optimizer" else self._hp.get(key, default)

    def _names(self) -> set[str]:
        # dict.keys: a recording hp (jaxtune.checks.ReadRecorder) would count a listing of the
        # names as reading every one of them.
        names = dict.keys(self._hp) if isinstance(self._hp, dict) else self._hp.keys()
        return {*names, "optimizer"}

    def __iter__(self) -> Any:
        return iter(sorted(self._names()))

    def __len__(self) -> int:
        return len(self._names())


def optimizer_factory(name: str, num_steps: int | None = None) -> Factory:
    """The built-in optimizer ``name`` as a factory ``hp -> optax.GradientTransformation``.

    The factory is :func:`jaxtune.optim.make_optimizer` with ``hp["optimizer"]`` set to
    ``name`` (the same numerics, the learning rate following ``hp``'s schedule; a schedule that
    reads the horizon, ``cosine``, needs ``num_steps``), so it mixes with a user's own in a
    task's ``optimizer`` mapping::

        Task(..., optimizer={**optim.BUILTIN_OPTIMIZERS,
                             "lion": lambda hp: optax.lion(hp["learning_rate"])})

    Args:
      name: one of :data:`jaxtune.optim.OPTIMIZERS`.
      num_steps: the horizon of a schedule that reads it (``cosine``); ``None``: none.

    Returns:
      The factory.

    Raises:
      ValueError: an unknown name.
    """
    if name not in optim.OPTIMIZERS:
        raise ValueError(f"optimizer: got {name!r}; the built-in optimizers are "
                         f"{_choices(optim.OPTIMIZERS)}.")
    horizon = 2**31 - 1 if num_steps is None else int(num_steps)

    def factory(hp: Mapping[str, Any]) -> optax.GradientTransformation:
        return optim.make_optimizer(_Named(hp, name), horizon)

    factory.__name__ = f"builtin_{name}"
    return factory


#: The seven built-in optimizers as factories ``hp -> optax.GradientTransformation``.
BUILTIN_OPTIMIZERS: Mapping[str, Factory] = MappingProxyType(
    {name: optimizer_factory(name) for name in optim.OPTIMIZERS})
