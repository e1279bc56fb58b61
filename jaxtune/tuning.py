"""The loop between a search strategy and the engine.

Each round, the strategy proposes a batch of configurations (``ask``); every configuration is
trained with every seed as one vectorized population (``engine.train``); the per-config score
(the mean of the metric over seeds, negated when the metric is maximized) goes back to the
strategy (``tell``). Diverged members score ``+inf``, so a failed configuration is never best.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxtune import checks, contracts, engine, jsonio, limits
from jaxtune import data as data_lib
from jaxtune.results import Results
from jaxtune.space import Space
from jaxtune.strategies import Strategy, random_search
from jaxtune.task import Task


def scores_from_results(
    results: Results, num_configs: int, num_seeds: int, metric: str, mode: str
) -> np.ndarray:
    """Per-config losses for ``tell``: mean over seeds, negated for ``max``, ``+inf`` if failed.

    Rows must be ordered config-major (all seeds of config 0, then config 1, ...).

    Returns:
      ``np.ndarray [num_configs]`` float64, lower is better.
    """
    values = np.full((num_configs, num_seeds), np.inf)
    for index, row in enumerate(results):
        value = row.metrics.get(metric, np.nan)
        if row.status == "completed" and np.isfinite(value):
            values[index // num_seeds, index % num_seeds] = -value if mode == "max" else value
    return values.mean(axis=1)


def round_counts(batches: Sequence[Results], space: Space) -> dict[str, int]:
    """The engine's counters over every round of a search.

    ``num_compilations``, ``num_segment_compilations`` and ``num_guarded_segments`` are summed
    over the rounds (each round is its own ``engine.train`` call); ``num_static_groups`` is the
    number of distinct static groups over all rounds (a group met in two rounds counts once).
    """
    counts = {
        name: sum(int(b.metadata.get(name, 0)) for b in batches)
        for name in ("num_compilations", "num_segment_compilations", "num_guarded_segments")
    }
    counts["num_static_groups"] = len({space.static_key(row.config) for b in batches for row in b})
    return counts


def _replayed_round(saved: Results, members: Sequence[Mapping[str, Any]],
                    round_index: int) -> Results:
    """A stored round's results, checked against the configurations the strategy asks now."""
    asked = [json.dumps(jsonio.plain(m), sort_keys=True) for m in members]
    stored = [json.dumps(jsonio.plain(row.config), sort_keys=True) for row in saved]
    if asked != stored:
        raise ValueError(
            f"checkpoint: round {round_index} stored results for other configurations than the "
            "strategy proposes now; resume with the same strategy and arguments, or use a new "
            "checkpoint directory"
        )
    return saved


def tune(
    task: Task,
    split: data_lib.Split,
    space: Space,
    strategy: Strategy | None = None,
    *,
    num_configs: int,
    num_steps: int,
    population_size: int | None = None,
    seeds: Sequence[int] = (0,),
    batch_size: int | None = 128,
    steps_per_segment: int = 50,
    metric: str | None = None,
    mode: str | None = None,
    seed: int = 0,
    devices: Sequence[jax.Device] | None = None,
    on_segment: Callable[[engine.SegmentReport], None] | None = None,
    on_round: Callable[[Results], None] | None = None,
    engine_options: Mapping[str, Any] | None = None,
    checkpoint: Any = None,
    resume: bool = False,
    allow_unused_hparams: bool = False,
) -> Results:
    """Runs a search: ask a batch, train it as one population, tell the scores, repeat.

    Args:
      task: what each member trains.
      split: the data (train / validation / test).
      space: the search space; its static parameters define static groups.
      strategy: a :class:`~jaxtune.strategies.Strategy` (default: random search).
      num_configs: total configurations to evaluate (the budget).
      num_steps: training steps per member.
      population_size: configurations per round (default: all at once, which is right for
        grid and random search; model-based strategies want several rounds).
      seeds: member seeds; every configuration is trained once per seed.
      batch_size: minibatch rows (``None``: full batch). A static ``batch_size`` in the space
        overrides it per static group.
      steps_per_segment: steps per compiled segment (learning-curve resolution).
      metric: the selection metric, e.g. ``"valid_accuracy"`` or ``"valid_mse"``; default
        from the task (:func:`jaxtune.contracts.default_metric`: ``valid_mse`` for a
        regression task, ``valid_accuracy`` for classification). A ``test_`` metric is refused.
      mode: ``"max"`` or ``"min"``; default from the task's ``metric_modes``, else the name
        (:func:`jaxtune.contracts.resolve_mode`).
      seed: the sweep seed (strategy key and member keys derive from it).
      devices: devices of the population mesh (default: ``jax.devices()``, every process's).
      on_segment: progress callback, see :class:`~jaxtune.engine.SegmentReport`. On a resume,
        its ``restored(member_steps)`` method, when it has one (as
        :class:`~jaxtune.ProgressBar` does), is called with the member-steps restored from
        the checkpoint, which no segment report covers (once for the replayed rounds, and by
        :func:`~jaxtune.engine.train` for the interrupted round's restored chunks).
      on_round: called with the Results of each round as soon as it finishes.
      engine_options: extra keyword arguments for :func:`jaxtune.engine.train`.
      checkpoint: a directory (or a :class:`jaxtune.checkpoint.Checkpointer`) to checkpoint
        into: after every round and at segment boundaries within a round
        (docs/checkpointing.md).
      resume: continue the search checkpointed in ``checkpoint``: finished rounds are replayed
        to the strategy from the stored results (it must propose the same configurations), the
        interrupted round continues from its last saved segment. ``on_round`` is called only
        for rounds run by this call.
      allow_unused_hparams: warn about a hyperparameter of the space that nothing reads (not
        the optimizer, the schedule, the engine nor the task) instead of refusing it.

    Raises:
      TypeError, ValueError: before anything trains: a ``task`` that is not a Task, no data,
        a ``seed``/``seeds`` entry that is not a non-negative int, a Space range reaching
        values outside the valid ranges (:func:`jaxtune.checks.check_space_ranges`), and all
        that :func:`jaxtune.engine.train` refuses before compiling (names nothing reads...).

    Returns:
      :class:`~jaxtune.results.Results` of every member, ids in evaluation order.

    Example:
      >>> import jaxtune as jt
      >>> split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("digits")))
      >>> space = jt.Space({"learning_rate": jt.Float(1e-4, 1e-1, log=True),
      ...                   "optimizer": jt.Fixed("adam")})
      >>> task = jt.classification_task("mlp", num_classes=10, input_shape=(64,))
      >>> results = jt.tune(task, split, space, num_configs=8, num_steps=100)  # doctest: +SKIP
      >>> results.best("valid_accuracy").config  # doctest: +SKIP
    """
    checks.check_task_and_data(task, split)
    seed = checks.check_seed("seed", seed)
    limits.check_positive_int("num_configs", num_configs)
    if population_size is not None:
        limits.check_positive_int("population_size", population_size)
    if isinstance(seeds, str | int) or not isinstance(seeds, Sequence | np.ndarray):
        raise TypeError(f"seeds: got {seeds!r}; give a sequence of ints, e.g. seeds=(0, 1).")
    seeds = [checks.check_seed(f"seeds[{i}]", s, limits.MAX_MEMBER_SEED)
             for i, s in enumerate(seeds)]
    if not seeds:
        raise ValueError("seeds is empty: give at least one member seed, e.g. seeds=(0,).")
    # Before a single config is drawn: a population the host cannot hold aborts XLA.
    limits.check_population("num_configs", num_configs * len(seeds), len(space))
    allow_unused_hparams = bool(
        (engine_options or {}).get("allow_unused_hparams", allow_unused_hparams))
    sweep_reads = checks.check_space(task, split, space, batch_size=batch_size,
                                     allow_unused=allow_unused_hparams)
    metric, mode = contracts.selection(metric, mode, metric_modes=task.metric_modes,
                                       kind=task.kind)
    strategy = strategy if strategy is not None else random_search()
    round_size = population_size or num_configs

    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=<the directory the sweep saved into>.")
    store, saved_batches = None, []
    if checkpoint is not None:
        from jaxtune import checkpoint as checkpoint_lib

        store = checkpoint_lib.Store(
            checkpoint_lib.Checkpointer.of(checkpoint), "tune",
            {
                "task": task.name, "data": checkpoint_lib.split_digest(split),
                "space": space.to_dict(), "num_configs": num_configs, "num_steps": num_steps,
                "population_size": population_size, "seeds": seeds, "batch_size": batch_size,
                "steps_per_segment": steps_per_segment, "metric": metric, "mode": mode,
                "seed": seed, "num_devices": len(devices) if devices is not None else None,
                "engine_options": {
                    name: value if isinstance(value, int | float | str | bool | None)
                    else type(value).__name__
                    for name, value in dict(engine_options or {}).items()
                },
            },
            resume,
        )
        latest = store.latest() if resume else None
        if latest is not None:
            saved_batches = checkpoint_lib.unpack_rounds(*latest)
            # Replayed rounds never reach on_segment: a progress bar is told them apart, so it
            # ends at 100% and its rate counts only the work of this run (engine.train tells
            # it the restored part of the interrupted round the same way).
            restored = num_steps * sum(len(batch) for batch in saved_batches)
            report_restored = getattr(on_segment, "restored", None)
            if callable(report_restored) and restored > 0:
                report_restored(restored)

    state = strategy.init(space, jax.random.PRNGKey(seed))
    batches: list[Results] = []
    evaluated = 0
    while evaluated < num_configs:
        configs, state = strategy.ask(state, min(round_size, num_configs - evaluated))
        if not configs:
            break
        for config in configs:
            space.validate_config(config)
        members = [dict(c) for c in configs for _ in seeds]
        member_seeds = [s for _ in configs for s in seeds]
        ids = list(range(evaluated * len(seeds), (evaluated + len(configs)) * len(seeds)))
        round_index = len(batches)
        if round_index < len(saved_batches):
            # A round finished before the resume: the strategy is told its stored results.
            results = _replayed_round(saved_batches[round_index], members, round_index)
            scores = scores_from_results(results, len(configs), len(seeds), metric, mode)
            state = strategy.tell(state, configs, scores)
            batches.append(results)
            evaluated += len(configs)
            continue
        options = {"allow_unused_hparams": allow_unused_hparams,
                   "sweep_reads": sweep_reads, **(engine_options or {})}
        if store is not None:
            outer, outer_arrays = checkpoint_lib.pack_rounds(batches)
            options["checkpoint"] = checkpoint_lib.TrainScope(
                store, outer, {"round": round_index},
                restore=resume and round_index == len(saved_batches), outer_arrays=outer_arrays,
            )
        results = engine.train(
            task,
            members,
            split,
            num_steps=num_steps,
            batch_size=batch_size,
            steps_per_segment=steps_per_segment,
            seed=seed,
            member_seeds=member_seeds,
            member_ids=ids,
            static_names=space.static_names,
            devices=devices,
            on_segment=on_segment,
            **options,
        )
        scores = scores_from_results(results, len(configs), len(seeds), metric, mode)
        state = strategy.tell(state, configs, scores)
        batches.append(results)
        if store is not None:
            outer, outer_arrays = checkpoint_lib.pack_rounds(batches)
            store.save({**outer, "train": None}, outer_arrays)
        if on_round is not None:
            on_round(results)
        evaluated += len(configs)
    combined = Results.concat(batches)
    metadata = dict(combined.metadata)
    metadata.update(
        metric=metric,
        mode=mode,
        seeds=seeds,
        space=space.to_dict(),
        **round_counts(batches, space),
    )
    return Results(list(combined), metadata)
