"""How the engine runs a population: one typed options value shared by every driver.

:func:`jaxtune.engine.run` takes the task, the members and an :class:`EngineOptions`; the
drivers (:func:`~jaxtune.tune`, :func:`~jaxtune.run_halving`, :func:`~jaxtune.run_pbt`,
:mod:`jaxtune.cv`) build one and pass it unchanged, so every engine feature works on every
path. What the caller wants to hear while it runs (progress, a scheduler) is a
:class:`Hooks` value.

This module imports nothing else from jaxtune but the contracts and the time budget's
deadline.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from jaxtune.contracts import Scheduler, SegmentReport
from jaxtune.timebudget import Deadline

__all__ = ["BATCH_MODES", "MEMBER_LOOPS", "EngineOptions", "Hooks"]

#: How members draw minibatches: each its own rows, or every member the same rows.
BATCH_MODES = ("independent", "shared")
#: How a device runs its members: batched (``vmap``) or one after another (``map``).
MEMBER_LOOPS = ("vmap", "map")


@dataclasses.dataclass(frozen=True)
class EngineOptions:
    """Every setting of how a population trains (not *which* members: those are arguments).

    Attributes:
      num_steps: optimizer steps per member. A config's static ``num_steps`` overrides it.
      batch_size: rows per minibatch (sampled per member, with replacement, inside the
        compiled step), or ``None`` for full-batch gradient descent. A config's static
        ``batch_size`` overrides it.
      steps_per_segment: steps per compiled segment; metrics are recorded once a segment.
      static_names: which names are static. Default (``None``): a
        :class:`~jaxtune.space.Space` has already said so for configs it made; for hand-written
        configs every non-float value is static and every float is dynamic (see
        :func:`jaxtune.engine.infer_static_names`).
      devices: devices of the population mesh (default: ``jax.devices()``, every device of
        every process; with one process, its local devices).
      pad_to: pad every population chunk to this many members (inert copies that never reach
        Results). Replaying one member with ``pad_to`` equal to the original population size
        and the same devices reproduces it bit for bit.
      max_members_per_chunk: cap on members trained at once; larger groups run in chunks of
        this size (the same compiled program). Rounded down to a multiple of the device count
        (so padding never takes a chunk past the cap); must be at least the device count.
        Default: as many as fit in memory.
      members_per_device: pin the per-device layout: every chunk holds exactly
        ``members_per_device * num_devices`` slots (the last one padded with inert copies), so
        each device always trains a ``[members_per_device, ...]`` slice. Every member then runs
        the same per-device program whatever the device count, and its parameters, metrics and
        curves are bit-identical on 1, 2, 4 or 8 devices (docs/distributed.md). Exclusive with
        ``pad_to`` and ``max_members_per_chunk``; must fit the memory budget.
      memory_budget_bytes: device memory jaxtune may use (default: the device's limit, or host
        memory on CPU).
      evaluate_test: also evaluate final parameters on ``split.test``.
      standardize: members standardize their inputs with the mean and standard deviation of
        their own training rows (fitted on device, per fold: nothing leaks from held-out rows).
      batch_mode: one of :data:`BATCH_MODES`: ``"independent"`` (default: each member samples
        its own minibatches) or ``"shared"`` (one minibatch per step for all members: common
        random numbers, less variance between members, and with ``member_loop="vmap"`` the
        first layer becomes one wide product).
      member_loop: how a device runs its members in a segment: ``"vmap"`` batches them into
        one program (``[P, ...]`` products: what fills a GPU or TPU), ``"map"`` loops over
        them one after another, each member's whole segment at a time (its own products, its
        state in cache: about 1.25x faster than ``"vmap"`` on XLA:CPU). Default (None):
        ``"map"`` on CPU devices, ``"vmap"`` on others. Either way it is one compiled program,
        and with ``"map"`` a member's arithmetic does not depend on the population at all.
      allow_unused_hparams: warn (``UserWarning``) about a hyperparameter nothing reads
        instead of refusing it.
      sweep_reads: names the rest of the sweep reads (a driver passes what
        :func:`jaxtune.checks.check_space` found for its Space): never refused as unread,
        like the names read by any static group of this call (a sweep may mix schedules or
        models, and one round may draw only some of its static groups).
    """

    num_steps: int
    batch_size: int | None = 128
    steps_per_segment: int = 50
    static_names: tuple[str, ...] | None = None
    devices: tuple[Any, ...] | None = None
    pad_to: int | None = None
    max_members_per_chunk: int | None = None
    members_per_device: int | None = None
    memory_budget_bytes: int | None = None
    evaluate_test: bool = True
    standardize: bool = False
    batch_mode: str = "independent"
    member_loop: str | None = None
    allow_unused_hparams: bool = False
    sweep_reads: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.static_names is not None and not isinstance(self.static_names, tuple):
            object.__setattr__(self, "static_names", tuple(self.static_names))
        if self.devices is not None and not isinstance(self.devices, tuple):
            object.__setattr__(self, "devices", tuple(self.devices))
        if not isinstance(self.sweep_reads, frozenset):
            object.__setattr__(self, "sweep_reads", frozenset(self.sweep_reads))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, in declaration order."""
        return tuple(field.name for field in dataclasses.fields(cls))

    def replace(self, **changes: Any) -> EngineOptions:
        """A copy with ``changes``; an unknown name is a ``TypeError`` listing the known ones."""
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            raise TypeError(
                f"engine options: unknown option(s) {unknown}; the options are "
                f"{', '.join(self.names())}"
            )
        return dataclasses.replace(self, **changes)

    def merged(self, engine_options: Mapping[str, Any] | None) -> EngineOptions:
        """This value updated from an old-style ``engine_options`` mapping (same names)."""
        return self.replace(**dict(engine_options or {}))

    @classmethod
    def resolve(
        cls,
        options: EngineOptions | None,
        engine_options: Mapping[str, Any] | None = None,
        **given: Any,
    ) -> EngineOptions:
        """The options of a driver call that takes both an ``options`` value and the older
        keyword arguments (``num_steps=...``, ``engine_options={...}``).

        Without ``options``, ``given`` builds the value (``num_steps`` required). With it,
        ``given`` may only repeat it: a ``num_steps`` that differs is refused, so one call
        never says two things.

        Raises:
          TypeError: an unknown option name.
          ValueError: ``num_steps`` missing, or given twice with different values.
        """
        if options is None:
            if given.get("num_steps") is None:
                raise ValueError(
                    "num_steps: missing; pass num_steps=... or options=EngineOptions(num_steps=...)"
                )
            return cls(**given).merged(engine_options)
        if not isinstance(options, EngineOptions):
            raise TypeError(
                f"options must be a jaxtune.engine.EngineOptions, got {type(options).__name__}"
            )
        steps = given.get("num_steps")
        if steps is not None and steps != options.num_steps:
            raise ValueError(
                f"num_steps: {steps} given and options.num_steps={options.num_steps}; "
                "give it once"
            )
        return options.merged(engine_options)

    def to_json(self) -> dict[str, Any]:
        """The settings a replay needs, as JSON data (``devices`` left out)."""
        out = dataclasses.asdict(self)
        out.pop("devices")
        out["sweep_reads"] = sorted(self.sweep_reads)
        if self.static_names is not None:
            out["static_names"] = list(self.static_names)
        return out


class Hooks(NamedTuple):
    """What the caller hears, and who acts, while a population runs.

    Attributes:
      on_segment: called with a :class:`~jaxtune.contracts.SegmentReport` after every segment.
      on_restore: called once with the member-steps a resume skipped (they count as done).
      scheduler: a :class:`~jaxtune.contracts.Scheduler` that stops, refills, copies or
        perturbs members between segments.
      deadline: a :class:`~jaxtune.timebudget.Deadline`: once it has passed, the run stops
        after the running segment (and its scheduler decision), saves, and starts no other
        chunk (:mod:`jaxtune.timebudget`).
    """

    on_segment: Callable[[SegmentReport], None] | None = None
    on_restore: Callable[[int], None] | None = None
    scheduler: Scheduler | None = None
    deadline: Deadline | None = None

    @classmethod
    def of(
        cls,
        on_segment: Callable[[SegmentReport], None] | None,
        on_restore: Callable[[int], None] | None = None,
        scheduler: Scheduler | None = None,
    ) -> Hooks:
        """The hooks of a call that takes a progress callback.

        Without ``on_restore``, the callback's own ``restored(member_steps)`` method is it (as
        :class:`~jaxtune.ProgressBar` has, or any ``on_segment`` function given that
        attribute): the one place where jaxtune looks for it.
        """
        if on_restore is None:
            restored = getattr(on_segment, "restored", None)
            on_restore = restored if callable(restored) else None
        return cls(on_segment=on_segment, on_restore=on_restore, scheduler=scheduler)
