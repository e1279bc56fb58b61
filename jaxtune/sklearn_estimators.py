"""jaxtune's ready-made tasks as scikit-learn estimators (see :mod:`jaxtune.sklearn`).

:class:`JaxtuneClassifier` and :class:`JaxtuneRegressor` follow scikit-learn's estimator
conventions (constructor parameters only, ``get_params``/``set_params``, ``fit`` returns
``self``, fitted attributes end in ``_``, input checked by ``sklearn.utils.validation``). Each
``fit`` trains one member with :func:`jaxtune.train` (``return_params=True``) on all the rows it
is given, through the same row tables a cross-validation member uses (:func:`train_members`),
and predicts with the task's Flax model.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

try:
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as error:  # scikit-learn missing, or older than 1.6 (no validate_data)
    raise ImportError(
        "jaxtune.sklearn needs scikit-learn >= 1.6; install it with "
        "pip install 'jaxtune[sklearn]' (or pip install -U scikit-learn)."
    ) from error
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import check_classification_targets

from jaxtune import engine
from jaxtune import task as task_lib
from jaxtune.data import Split
from jaxtune.engine import MemberRows
from jaxtune.optim import OPTIMIZERS

__all__ = [
    "MODELS",
    "JaxtuneClassifier",
    "JaxtuneEstimator",
    "JaxtuneRegressor",
    "all_rows",
    "padded_size",
    "member_config",
    "train_members",
]

#: The models the estimators build (jaxtune's ready-made ones; ``"linear"`` is logistic
#: regression for the classifier).
MODELS = ("linear", "mlp")


def member_config(estimator: JaxtuneEstimator) -> dict[str, Any]:
    """The jaxtune config of one member trained the way ``estimator.fit`` trains it.

    Args:
      estimator: a :class:`JaxtuneClassifier` or :class:`JaxtuneRegressor` (fitted or not).

    Returns:
      ``{"optimizer", "learning_rate", "l1", "l2", "dropout"}`` plus ``"hidden_sizes"`` (a list)
      for ``model="mlp"``.

    Raises:
      ValueError, TypeError: a parameter out of range, naming it and its valid values.
    """
    estimator.check_params()
    config: dict[str, Any] = {
        "optimizer": estimator.optimizer,
        "learning_rate": float(estimator.learning_rate),
        "l1": float(estimator.l1),
        "l2": float(estimator.l2),
        "dropout": float(estimator.dropout),
    }
    if estimator.model == "mlp":
        config["hidden_sizes"] = [int(width) for width in estimator.hidden_sizes]
    return config


def all_rows(num_rows: int) -> MemberRows:
    """The row tables of one member that trains on every row (and reports on them)."""
    rows = np.arange(num_rows, dtype=np.int32)[None, :]
    return MemberRows(train_rows=rows, train_counts=np.array([num_rows], np.int32),
                      valid_rows=rows, valid_weight=np.ones((1, num_rows), np.float32))


def padded_size(num_rows: int) -> int:
    """The row count a table or data array of ``num_rows`` rows is padded to.

    Every distinct shape compiles a new program; padding to a few sizes (powers of two from 32,
    then multiples of 4096) lets fits on similar row counts (the folds of a cross-validation,
    its refit, scikit-learn's checks) share programs. Padding rows are never trained on or
    scored: full-batch means weight them 0 and minibatches draw only from the real rows.
    """
    if num_rows <= 4096:
        return max(32, 1 << (int(num_rows) - 1).bit_length())
    return -(-int(num_rows) // 4096) * 4096


def _pad_table(table: np.ndarray, width: int) -> np.ndarray:
    extra = np.repeat(table[:, :1], width - table.shape[1], axis=1)
    return np.concatenate([table, extra], axis=1).astype(np.int32)


def train_members(
    task: task_lib.Task,
    configs: Sequence[Mapping[str, Any]],
    data: tuple[np.ndarray, np.ndarray, str, int | None],
    member_rows: MemberRows,
    *,
    num_steps: int,
    batch_size: int | None,
    member_seeds: Sequence[int],
) -> tuple[Any, list[Any]]:
    """Trains ``configs`` as one population on the rows ``data = (x, y, kind, num_classes)``.

    Each member trains on its rows of ``member_rows`` and reports on its validation rows. The
    data and the tables are padded (:func:`padded_size`). The sweep seed is 0 and each member's
    ``random_state`` is its member seed, so a member's key depends only on its config and
    ``random_state`` (never on its fold or position): a member of :class:`JaxtuneSearchCV`
    trains exactly as ``fit`` of the same estimator on its fold's rows.

    Returns:
      ``(results, params)`` of :func:`jaxtune.train` with ``return_params=True``.
    """
    x, y, kind, num_classes = data
    size = padded_size(len(y))
    x = np.concatenate([x, np.zeros((size - len(y), *x.shape[1:]), x.dtype)])
    y = np.concatenate([y, np.zeros(size - len(y), y.dtype)])
    train_width = padded_size(member_rows.train_rows.shape[1])
    valid_width = padded_size(member_rows.valid_rows.shape[1])
    weight = member_rows.valid_weight
    member_rows = MemberRows(
        train_rows=_pad_table(member_rows.train_rows, train_width),
        train_counts=member_rows.train_counts,
        valid_rows=_pad_table(member_rows.valid_rows, valid_width),
        valid_weight=np.concatenate(
            [weight, np.zeros((len(weight), valid_width - weight.shape[1]), np.float32)], 1),
    )
    split = Split(x, y, x[:0], y[:0], x[:0], y[:0], kind, num_classes, "sklearn")
    return engine.train(
        task, list(configs), split, num_steps=num_steps, batch_size=batch_size,
        steps_per_segment=num_steps, seed=0, member_seeds=list(member_seeds),
        member_rows=member_rows, evaluate_test=False, return_params=True,
    )


def _check_int(name: str, value: Any, low: int, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        hint = " or None" if allow_none else ""
        raise ValueError(f"{name}={value!r}: must be an int >= {low}{hint}.")


def _check_float(name: str, value: Any, low: float, high: float, *,
                 open_low: bool = False) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value > low if open_low else value >= low)
    if not ok or value >= high:
        left = "(" if open_low else "["
        raise ValueError(f"{name}={value!r}: must be a number in {left}{low}, {high}).")


class JaxtuneEstimator(BaseEstimator):
    """What the classifier and the regressor share: parameters, training, the forward pass.

    Not used directly; see :class:`JaxtuneClassifier` and :class:`JaxtuneRegressor`.
    """

    _kind = "classification"

    def __init__(
        self,
        model: str = "linear",
        *,
        hidden_sizes: Sequence[int] = (32,),
        optimizer: str = "adam",
        learning_rate: float = 0.01,
        num_steps: int = 200,
        batch_size: int | None = None,
        l1: float = 0.0,
        l2: float = 0.0,
        dropout: float = 0.0,
        random_state: int | None = 0,
    ) -> None:
        self.model = model
        self.hidden_sizes = hidden_sizes
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.num_steps = num_steps
        self.batch_size = batch_size
        self.l1 = l1
        self.l2 = l2
        self.dropout = dropout
        self.random_state = random_state

    def check_params(self) -> None:
        """Checks every constructor parameter on the host.

        Raises:
          ValueError, TypeError: naming the parameter, its value and the valid values.
        """
        if self.model not in MODELS:
            raise ValueError(f"model={self.model!r}: must be one of {MODELS}.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r}: must be one of {OPTIMIZERS}.")
        if self.model == "mlp":
            sizes = self.hidden_sizes
            if isinstance(sizes, str | numbers.Number) or not len(sizes):
                raise TypeError(f"hidden_sizes={sizes!r}: give a non-empty sequence of ints, "
                                "e.g. (64, 32).")
            for i, width in enumerate(sizes):
                _check_int(f"hidden_sizes[{i}]", width, 1)
        _check_int("num_steps", self.num_steps, 1)
        _check_int("batch_size", self.batch_size, 1, allow_none=True)
        _check_int("random_state", self.random_state, 0, allow_none=True)
        _check_float("learning_rate", self.learning_rate, 0.0, math.inf, open_low=True)
        _check_float("l1", self.l1, 0.0, math.inf)
        _check_float("l2", self.l2, 0.0, math.inf)
        _check_float("dropout", self.dropout, 0.0, 1.0)

    @property
    def member_seed(self) -> int:
        """``random_state`` as the member seed (None is 0: fits are reproducible)."""
        return 0 if self.random_state is None else int(self.random_state)

    def make_task(self, num_features: int, num_classes: int | None) -> task_lib.Task:
        """The ready-made jaxtune task this estimator trains on ``num_features`` inputs."""
        if self._kind == "classification":
            return task_lib.classification_task(self.model, num_classes=num_classes,
                                                input_shape=(num_features,))
        return task_lib.regression_task(self.model, input_shape=(num_features,))

    def set_fitted(self, params: Any, status: str, diverged_step: int | None) -> None:
        """Records a trained member as this estimator's fitted state (``params_``...)."""
        self.params_ = params
        self.status_ = status
        self.diverged_step_ = diverged_step

    def fit_arrays(self, x: np.ndarray, y: np.ndarray, num_classes: int | None) -> None:
        """Trains one member on checked arrays (``y`` encoded) and records it."""
        config = member_config(self)
        task = self.make_task(x.shape[1], num_classes)
        results, params = train_members(
            task, [config], (x, y, self._kind, num_classes), all_rows(len(y)),
            num_steps=int(self.num_steps), batch_size=self.batch_size,
            member_seeds=[self.member_seed],
        )
        row = results[0]
        if row.status == "diverged":
            warnings.warn(
                f"{type(self).__name__}: training diverged at step {row.diverged_step} (a "
                "non-finite loss); the model keeps its last finite parameters. Lower "
                "learning_rate.", ConvergenceWarning, stacklevel=3)
        self.set_fitted(params[0], row.status, row.diverged_step)

    def forward(self, x: Any) -> np.ndarray:
        """The model's outputs ``[rows, outputs]`` (logits or predictions) as float64."""
        check_is_fitted(self, "params_")
        x = validate_data(self, x, reset=False, dtype=np.float32)
        num_outputs = jax.tree_util.tree_leaves(self.params_)[-1].shape[-1]
        factory = task_lib.model_factory(self.model, num_outputs, (x.shape[1],))
        config = member_config(self)
        out = factory(config).apply({"params": self.params_}, jnp.asarray(x),
                                    deterministic=True)
        return np.asarray(out, np.float64)


class JaxtuneClassifier(ClassifierMixin, JaxtuneEstimator):
    """A jaxtune classification task as a scikit-learn classifier.

    ``fit`` trains one member of jaxtune's ready-made classification task (softmax
    cross-entropy; sigmoid for two classes) with :func:`jaxtune.train` on every row it is given,
    full batch by default. Inputs are not standardized: put a ``StandardScaler`` before it in a
    ``Pipeline``.

    Args:
      model: ``"linear"`` (logistic regression) or ``"mlp"``.
      hidden_sizes: widths of the MLP's hidden layers (``model="mlp"`` only).
      optimizer: one of :data:`jaxtune.OPTIMIZERS` (``"adam"``, ``"sgd"``...).
      learning_rate: the optimizer's step size (> 0).
      num_steps: optimizer steps.
      batch_size: minibatch rows drawn with replacement per step, or None for full batch.
      l1, l2: penalty strengths on weight matrices (``l1 * sum|W| + l2 * 0.5 * sum W**2``).
      dropout: dropout rate of the MLP's hidden layers.
      random_state: the member seed (initialization, minibatches, dropout); None is 0.

    Attributes:
      classes_: the class labels, sorted.
      n_features_in_: number of features seen in ``fit``.
      params_: the trained Flax parameters (numpy arrays).
      status_: ``"completed"`` or ``"diverged"`` (then a ``ConvergenceWarning`` was issued).
      diverged_step_: the step the member diverged at, or None.

    Example:
      >>> clf = JaxtuneClassifier(learning_rate=0.1, num_steps=100)  # doctest: +SKIP
      >>> clf.fit(x, y).predict_proba(x[:2])  # doctest: +SKIP
    """

    _kind = "classification"

    def fit(self, X: Any, y: Any) -> JaxtuneClassifier:
        """Trains on ``X`` ``[rows, features]`` and labels ``y`` ``[rows]``; returns ``self``.

        Raises:
          ValueError, TypeError: bad parameters or data (one class only, NaN...), before
            compiling.
        """
        self.check_params()
        x, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        classes, encoded = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"y has 1 class ({classes[0]!r}); a classifier needs at "
                             "least 2 classes.")
        self.classes_ = classes
        self.fit_arrays(x, encoded.astype(np.int32), len(classes))
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """The logits: ``[rows]`` for two classes (positive means ``classes_[1]``), else
        ``[rows, classes]``."""
        logits = self.forward(X)
        return logits[:, 0] if len(self.classes_) == 2 else logits

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``[rows, classes]`` in the order of ``classes_``."""
        logits = self.forward(X)
        if len(self.classes_) == 2:
            positive = 1.0 / (1.0 + np.exp(-logits[:, 0]))
            return np.stack([1.0 - positive, positive], axis=1)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """The log of :meth:`predict_proba`."""
        return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row (a label of ``classes_``)."""
        logits = self.forward(X)
        if len(self.classes_) == 2:
            return self.classes_[(logits[:, 0] > 0).astype(np.int64)]
        return self.classes_[np.argmax(logits, axis=1)]


class JaxtuneRegressor(RegressorMixin, JaxtuneEstimator):
    """A jaxtune regression task (mean squared error) as a scikit-learn regressor.

    Parameters and fitted attributes as :class:`JaxtuneClassifier` (without ``classes_``);
    ``model="linear"`` is ridge-penalized linear regression trained by the optimizer. ``score``
    is scikit-learn's R^2. One target column.
    """

    _kind = "regression"

    def fit(self, X: Any, y: Any) -> JaxtuneRegressor:
        """Trains on ``X`` ``[rows, features]`` and targets ``y`` ``[rows]``; returns ``self``."""
        self.check_params()
        x, y = validate_data(self, X, y, dtype=np.float32, y_numeric=True)
        self.fit_arrays(x, np.asarray(y, np.float32), None)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets ``[rows]``."""
        return self.forward(X)[:, 0]
