"""The driver calls behind ``--strategy``: ``tune`` for the ask/tell strategies, ``run_halving``
for halving/hyperband, ``run_pbt`` for pbt.

Each function has the signature of :attr:`jaxtune.commands.request.StrategyEntry.run`:
``(request, plan, on_segment) -> Results``. All three pass the plan's one
:class:`~jaxtune.engine.EngineOptions` the same way (its steps, batch and segment as the
drivers' own keywords, the rest as ``engine_options``), so every engine option works with every
strategy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jaxtune import tuning, warmstart
from jaxtune.commands.build import SweepPlan, engine_options_mapping
from jaxtune.commands.request import DEFAULT_ETA, SweepRequest
from jaxtune.results import Results
from jaxtune.scheduled import run_halving, run_pbt
from jaxtune.strategies.warm import warm_started

__all__ = ["run_ask_tell", "run_halving_sweep", "run_pbt_sweep", "seeded_strategy"]

OnSegment = Callable[[Any], None]


def run_ask_tell(request: SweepRequest, plan: SweepPlan, on_segment: OnSegment) -> Results:
    """``grid``, ``random``, ``sobol``, ``bayes``, ``optuna-*``: rounds of
    :func:`jaxtune.tuning.tune`."""
    options = plan.options
    return tuning.tune(
        plan.task, plan.split, plan.space, plan.strategy,
        num_configs=plan.num_configs,
        num_steps=options.num_steps,
        population_size=plan.population_size,
        seeds=list(request.seeds),
        batch_size=options.batch_size,
        steps_per_segment=options.steps_per_segment,
        **_objectives(plan),
        seed=request.seed,
        on_segment=on_segment,
        checkpoint=plan.checkpointer,
        resume=request.resume,
        engine_options=engine_options_mapping(options),
        history=plan.history,
        time_budget=request.time_budget,
    )


def run_halving_sweep(request: SweepRequest, plan: SweepPlan, on_segment: OnSegment) -> Results:
    """``halving`` (one bracket) and ``hyperband`` (every bracket): one
    :func:`~jaxtune.strategies.run_halving` call over ``--population-size`` slots."""
    options = plan.options
    return run_halving(
        plan.task, plan.split, plan.space, seeded_strategy(plan),
        population_size=plan.population_size,
        num_steps=options.num_steps,
        min_steps=request.rung_steps,
        eta=request.eta or DEFAULT_ETA,
        max_member_steps=request.member_step_budget,
        num_brackets=1 if request.strategy == "halving" else None,
        **_objectives(plan), seed=request.seed,
        batch_size=options.batch_size,
        steps_per_segment=options.steps_per_segment,
        engine_options=_scheduled_options(request, plan, on_segment),
        time_budget=request.time_budget,
    )


def run_pbt_sweep(request: SweepRequest, plan: SweepPlan, on_segment: OnSegment) -> Results:
    """``pbt``: one :func:`~jaxtune.strategies.run_pbt` call over every member."""
    options = plan.options
    return run_pbt(
        plan.task, plan.split, plan.space, seeded_strategy(plan),
        population_size=plan.population_size,
        num_steps=options.num_steps,
        interval_segments=request.pbt_interval or 1,
        **_objectives(plan), seed=request.seed,
        batch_size=options.batch_size,
        steps_per_segment=options.steps_per_segment,
        engine_options=_scheduled_options(request, plan, on_segment),
        time_budget=request.time_budget,
    )


def _objectives(plan: SweepPlan) -> dict[str, Any]:
    """A driver's ``metric``, ``mode`` (one, or lists for several) and ``constraints``."""
    several = len(plan.metrics) > 1
    return {"metric": list(plan.metrics) if several else plan.metric,
            "mode": list(plan.modes) if several else plan.mode,
            "constraints": plan.constraints}


def seeded_strategy(plan: SweepPlan) -> Any:
    """A scheduler's strategy; with ``--warm-start``, its first configs are the history's
    best half of ``--population-size`` (trained again), then configs not yet evaluated."""
    if plan.history is None:
        return plan.strategy
    configs, losses = warmstart.history_losses(plan.history, plan.space, plan.metric, plan.mode)
    return warm_started(plan.strategy, configs, losses,
                        reuse_best=(plan.population_size or 0) // 2)


def _scheduled_options(request: SweepRequest, plan: SweepPlan,
                       on_segment: OnSegment) -> dict[str, Any]:
    """A scheduler driver's ``engine_options``: the engine options every path gets, plus the
    run's member seeds, progress and checkpoint (``tune`` takes those as its own keywords)."""
    return {
        **engine_options_mapping(plan.options),
        "member_seeds": [request.seeds[0]] * plan.population_size,
        "on_segment": on_segment,
        "checkpoint": plan.checkpointer,
        "resume": request.resume,
    }
