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
from jaxtune.space import Choice, Fixed, Float, Int, Space
from jaxtune.strategies import Strategy, grid_search, random_search
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
    "Fixed",
    "Float",
    "Int",
    "Linear",
    "MemberResult",
    "PopulationState",
    "ProgressBar",
    "Results",
    "SegmentReport",
    "Space",
    "Split",
    "Strategy",
    "Task",
    "accuracy",
    "binary_accuracy",
    "classification_task",
    "grid_search",
    "l1_penalty",
    "l2_penalty",
    "load_dataset",
    "make_linear",
    "make_optimizer",
    "make_schedule",
    "mse",
    "random_search",
    "regression_task",
    "sigmoid_binary_cross_entropy",
    "softmax_cross_entropy",
    "standardize",
    "train",
    "train_valid_test_split",
    "tune",
]
