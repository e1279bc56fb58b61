"""jaxtune: hyperparameter tuning where a whole population of training runs is one JAX program.

Every member of a sweep (config x seed x fold) is a slice along a leading population axis,
trained with ``jit(lax.scan(vmap(step)))`` and sharded over the devices. Changing a
hyperparameter *value* never recompiles; only static choices (shapes, code paths) do.

Quickstart::

    import jaxtune as jt

    split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("digits")))
    space = jt.Space({
        "learning_rate": jt.Float(1e-4, 1e-1, log=True),
        "dropout": jt.Float(0.0, 0.5),
        "width": jt.Choice([64, 128]),
        "optimizer": jt.Fixed("adam"),
    })
    task = jt.classification_task("mlp", num_classes=10, input_shape=(64,))
    results = jt.tune(task, split, space, jt.random_search(), num_configs=32, num_steps=300)
    print(results.table(k=5))
"""

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # static type checkers and IDEs see the names as if imported here
    from jaxtune.contracts import PopulationUpdate, Scheduler, SlotView
    from jaxtune.data import (
        DATASETS,
        Dataset,
        Split,
        load_dataset,
        make_linear,
        standardize,
        train_valid_test_split,
    )
    from jaxtune.engine import PopulationState, SegmentReport, train
    from jaxtune.engine.options import EngineOptions, Hooks
    from jaxtune.losses import (
        accuracy,
        binary_accuracy,
        l1_penalty,
        l2_penalty,
        mse,
        sigmoid_binary_cross_entropy,
        softmax_cross_entropy,
    )
    from jaxtune.models import CNN, MLP, Linear
    from jaxtune.optim import OPTIMIZERS, SCHEDULES, make_optimizer, make_schedule
    from jaxtune.progress import ProgressBar
    from jaxtune.results import MemberResult, Results
    from jaxtune.scheduled import (
        lineage,
        replay_pbt_member,
        run_early_stopping,
        run_halving,
        run_pbt,
    )
    from jaxtune.space import Choice, Fixed, Float, Int, Space
    from jaxtune.step import Step, training_function
    from jaxtune.strategies import (
        Strategy,
        bayes_search,
        grid_search,
        hyperband,
        pbt,
        random_search,
        sobol_search,
        successive_halving,
    )
    from jaxtune.task import Task, classification_task, regression_task
    from jaxtune.timebudget import TimeBudget
    from jaxtune.tuning import tune


#: Where each public name lives; imported on first use (PEP 562), so that ``import jaxtune``
#: (and ``jaxtune --help``) does not load JAX, Flax and Optax before they are needed.
_EXPORTS = {
    "CNN": "jaxtune.models",
    "Choice": "jaxtune.space",
    "DATASETS": "jaxtune.data",
    "Dataset": "jaxtune.data",
    "EngineOptions": "jaxtune.engine.options",
    "Fixed": "jaxtune.space",
    "Float": "jaxtune.space",
    "Hooks": "jaxtune.engine.options",
    "Int": "jaxtune.space",
    "Linear": "jaxtune.models",
    "MLP": "jaxtune.models",
    "MemberResult": "jaxtune.results",
    "OPTIMIZERS": "jaxtune.optim",
    "PopulationState": "jaxtune.engine",
    "PopulationUpdate": "jaxtune.contracts",
    "ProgressBar": "jaxtune.progress",
    "Results": "jaxtune.results",
    "SCHEDULES": "jaxtune.optim",
    "Scheduler": "jaxtune.contracts",
    "SegmentReport": "jaxtune.engine",
    "SlotView": "jaxtune.contracts",
    "Space": "jaxtune.space",
    "Split": "jaxtune.data",
    "Step": "jaxtune.step",
    "Strategy": "jaxtune.strategies",
    "Task": "jaxtune.task",
    "accuracy": "jaxtune.losses",
    "bayes_search": "jaxtune.strategies",
    "binary_accuracy": "jaxtune.losses",
    "classification_task": "jaxtune.task",
    "grid_search": "jaxtune.strategies",
    "hyperband": "jaxtune.strategies",
    "l1_penalty": "jaxtune.losses",
    "l2_penalty": "jaxtune.losses",
    "lineage": "jaxtune.scheduled",
    "load_dataset": "jaxtune.data",
    "make_linear": "jaxtune.data",
    "make_optimizer": "jaxtune.optim",
    "make_schedule": "jaxtune.optim",
    "mse": "jaxtune.losses",
    "pbt": "jaxtune.strategies",
    "random_search": "jaxtune.strategies",
    "regression_task": "jaxtune.task",
    "replay_pbt_member": "jaxtune.scheduled",
    "run_early_stopping": "jaxtune.scheduled",
    "run_halving": "jaxtune.scheduled",
    "run_pbt": "jaxtune.scheduled",
    "sigmoid_binary_cross_entropy": "jaxtune.losses",
    "sobol_search": "jaxtune.strategies",
    "softmax_cross_entropy": "jaxtune.losses",
    "standardize": "jaxtune.data",
    "successive_halving": "jaxtune.strategies",
    "train": "jaxtune.engine",
    "train_valid_test_split": "jaxtune.data",
    "training_function": "jaxtune.step",
    "tune": "jaxtune.tuning",
    "TimeBudget": "jaxtune.timebudget",
}


def __getattr__(name: str) -> Any:
    """Imports a public name, or a submodule (``jaxtune.cv``), the first time it is used."""
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module 'jaxtune' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__version__ = "0.1.0"

__all__ = [
    "CNN",
    "DATASETS",
    "MLP",
    "OPTIMIZERS",
    "SCHEDULES",
    "Choice",
    "Dataset",
    "EngineOptions",
    "Fixed",
    "Float",
    "Hooks",
    "Int",
    "Linear",
    "MemberResult",
    "PopulationState",
    "PopulationUpdate",
    "ProgressBar",
    "Results",
    "Scheduler",
    "SegmentReport",
    "SlotView",
    "Space",
    "Split",
    "Step",
    "Strategy",
    "Task",
    "accuracy",
    "bayes_search",
    "binary_accuracy",
    "classification_task",
    "grid_search",
    "hyperband",
    "l1_penalty",
    "l2_penalty",
    "lineage",
    "load_dataset",
    "make_linear",
    "make_optimizer",
    "make_schedule",
    "mse",
    "pbt",
    "random_search",
    "regression_task",
    "replay_pbt_member",
    "run_early_stopping",
    "run_halving",
    "run_pbt",
    "sigmoid_binary_cross_entropy",
    "sobol_search",
    "softmax_cross_entropy",
    "standardize",
    "successive_halving",
    "train",
    "train_valid_test_split",
    "training_function",
    "tune",
    "TimeBudget",
]
