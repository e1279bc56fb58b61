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
from jaxtune.scheduled import lineage, replay_pbt_member, run_halving, run_pbt
from jaxtune.space import Choice, Fixed, Float, Int, Space
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
from jaxtune.tuning import tune

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
    "run_halving",
    "run_pbt",
    "sigmoid_binary_cross_entropy",
    "sobol_search",
    "softmax_cross_entropy",
    "standardize",
    "successive_halving",
    "train",
    "train_valid_test_split",
    "tune",
]
