"""Host-side checks of feature and label arrays, before anything is traced.

The lowest layer of the data side: :mod:`jaxtune.data` (datasets, splits), the fold tables of
:mod:`jaxtune.rowtables` and :mod:`jaxtune.task` all check arrays here, so this module imports
nothing of jaxtune but :mod:`jaxtune.datatree` (data that is a dict of arrays). Every message
names the field (the leaf, ``x['mask']``), the value and the fix.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from jaxtune import datatree

__all__ = ["KINDS", "check_arrays", "check_finite_columns", "check_int", "check_numeric"]

KINDS = ("classification", "regression")


def check_numeric(array: np.ndarray, field: str) -> None:
    """Refuses an array whose dtype is not a real number type (strings, objects, complex).

    Args:
      array: the array.
      field: its name in the message (``"x"``, ``"y"``, ``"stratify_labels"``).

    Raises:
      TypeError: naming the field, the dtype and the conversion to apply.
    """
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise TypeError(
            f"{field} has dtype {array.dtype}, which is not a real number type; convert it "
            f"first, e.g. {field}.astype(np.float32)"
            + (" (labels: np.int32)" if field == "y" else "")
        )


def _check_finite(array: np.ndarray, field: str) -> None:
    finite = np.isfinite(array)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.reshape(array.shape[0], -1).all(axis=1))
        raise ValueError(
            f"{field} contains {int((~finite).sum())} NaN or inf value(s) in "
            f"{bad_rows.size} row(s) (first at row {int(bad_rows[0])}); remove or impute "
            f"those rows before tuning"
        )


def check_finite_columns(x: np.ndarray, field: str) -> None:
    """Refuses NaN or inf in the features, naming the columns (features) that hold them.

    Args:
      x: features ``[num_rows, ...]``; integer or empty arrays pass unchecked.
      field: its name in the message (``"split.x_train"``).

    Raises:
      ValueError: naming the count, the first columns and the first row.
    """
    if x.size == 0 or not np.issubdtype(x.dtype, np.inexact):
        return
    bad = ~np.isfinite(x.reshape(x.shape[0], -1))
    if bad.any():
        columns = np.flatnonzero(bad.any(axis=0))
        shown = ", ".join(map(str, columns[:10])) + (" ..." if columns.size > 10 else "")
        raise ValueError(
            f"{field} holds {int(bad.sum())} NaN or inf value(s) in column(s) {shown} (first "
            f"at row {int(np.flatnonzero(bad.any(axis=1))[0])}); standardizing would turn "
            "those columns into NaN. Remove or impute them first."
        )


def check_arrays(x: Any, y: Any, kind: str, num_classes: int | None = None) -> None:
    """Validates features and labels on the host, before anything is compiled.

    ``x`` and ``y`` may each be one array or a dict of arrays (:mod:`jaxtune.datatree`: nested
    dicts allowed) sharing one row count. Every message names the leaf (``x['mask']``), its
    shape or dtype, and the fix.

    Args:
        x: features: one array `[num_rows, ...]` (at least two dimensions), any real numeric
            dtype; or a dict whose leaves are `[num_rows, ...]` arrays of real numbers or bools
            (a leaf may be one-dimensional: lengths, weights).
        y: classification: labels `[num_rows]`, one array. Regression: targets `[num_rows]`,
            `[num_rows, num_outputs, ...]` or a dict of such arrays.
        kind: ``"classification"`` or ``"regression"``.
        num_classes: for classification, the number of classes; labels must lie in
            `[0, num_classes)`. ``None`` only requires non-negative integer labels. Must be
            ``None`` for regression.

    Raises:
        TypeError: a leaf of `x` or `y` has a non-numeric (or complex) dtype.
        ValueError: an unknown `kind`; empty data; an array `x` with fewer than two dimensions;
            labels that are not one `[num_rows]` array; leaves with different numbers of rows;
            NaN or inf in any leaf; classification labels that are not integers in
            `[0, num_classes)`; an invalid `num_classes`.

    Example:
        >>> check_arrays(np.zeros((4, 2)), np.array([0, 1, 1, 0]), "classification", 2)
        >>> check_arrays({"f": np.zeros((4, 2)), "mask": np.ones((4, 3), bool)},
        ...              np.zeros((4, 2)), "regression")
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    x, y = datatree.to_numpy(x, "x"), datatree.to_numpy(y, "y")
    _check_x(x)
    _check_y(y, kind)
    x_rows, y_rows = datatree.num_rows(x, "x"), datatree.num_rows(y, "y")
    if x_rows != y_rows:
        raise ValueError(
            f"x and y have different numbers of rows: x has {x_rows}, y has {y_rows}; "
            f"pass one label or target per row of x"
        )
    for root, tree in (("x", x), ("y", y)):
        for path, _, leaf in datatree.leaf_items(tree, root):
            _check_finite(leaf, path)
    if kind == "regression":
        if num_classes is not None:
            raise ValueError(
                f"num_classes must be None for regression, got {num_classes!r}; "
                f"use kind='classification' for labels"
            )
        return
    _check_labels(y, num_classes)


def _check_x(x: Any) -> None:
    if not datatree.is_tree(x):
        check_numeric(x, "x")
        if x.ndim < 2:
            raise ValueError(
                f"x must have shape [num_rows, num_features, ...], got shape {x.shape}; "
                f"for a single feature use x[:, None]"
            )
        if x.shape[0] == 0 or x.size == 0:
            raise ValueError(f"x is empty (shape {x.shape}); provide at least one row and "
                             "feature")
        return
    for path, _, leaf in datatree.leaf_items(x, "x"):
        if leaf.dtype != np.bool_:
            check_numeric(leaf, path)
        if leaf.ndim == 0 or leaf.shape[0] == 0:
            raise ValueError(f"{path} has shape {leaf.shape}; every leaf of x needs a first "
                             "axis of rows and at least one row")


def _check_y(y: Any, kind: str) -> None:
    if datatree.is_tree(y):
        if kind == "classification":
            raise ValueError(
                f"y is a dict ({datatree.describe(y)}) but classification labels are one "
                "array [num_rows] of ints; put per-row extras (weights, masks) in x, or use "
                "kind='regression' for a user's own task")
        for path, _, leaf in datatree.leaf_items(y, "y"):
            check_numeric(leaf, path)
            if leaf.ndim == 0 or leaf.shape[0] == 0:
                raise ValueError(f"{path} has shape {leaf.shape}; every leaf of y needs a "
                                 "first axis of rows and at least one row")
        return
    check_numeric(y, "y")
    if kind == "classification" and y.ndim != 1:
        raise ValueError(
            f"y holds classification labels and must have shape [num_rows], got shape "
            f"{y.shape}; for one-hot labels pass y.argmax(axis=-1), for several outputs use "
            "kind='regression'"
        )
    if y.ndim == 0:
        raise ValueError(f"y must have a first axis of rows, got a scalar {y!r}; pass one "
                         "target per row")


def _check_labels(y: np.ndarray, num_classes: int | None) -> None:
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
            raise TypeError(f"num_classes must be an int, got {num_classes!r}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if not np.issubdtype(y.dtype, np.integer) and not np.all(y == np.round(y)):
        first = int(np.flatnonzero(y != np.round(y))[0])
        raise ValueError(
            f"y holds classification labels, which must be integers; "
            f"y[{first}] = {y[first].item()!r}; encode classes as 0..num_classes-1 "
            f"(or use kind='regression')"
        )
    low, high = y.min(), y.max()
    if low < 0:
        raise ValueError(
            f"y holds classification labels, which must be >= 0; got {low.item()!r}; "
            f"encode classes as 0..num_classes-1"
        )
    if num_classes is not None and high >= num_classes:
        raise ValueError(
            f"y holds classification labels, which must be < num_classes={num_classes}; got "
            f"{high.item()!r}; raise num_classes or encode classes as 0..num_classes-1"
        )


def check_int(value: Any, field: str, minimum: int) -> int:
    """Checks that ``value`` is an integer (not a bool) of at least ``minimum``.

    Args:
      value: the value (any type with ``__index__``).
      field: its name in messages.
      minimum: the smallest value allowed.

    Returns:
      ``value`` as an int.

    Raises:
      TypeError: not an integer.
      ValueError: below ``minimum``.
    """
    if isinstance(value, bool):
        raise TypeError(f"{field} must be an int, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{field} must be an int, got {value!r}") from None
    if value < minimum:
        raise ValueError(f"{field} must be at least {minimum}, got {value}")
    return value
