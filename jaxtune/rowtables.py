"""Padded row-index tables: the k-fold deal of rows to folds, and the padding of index lists.

A fold is an index table over one array of rows, never a copy of the data. This module builds
the raw tables (numpy, on the host); :class:`jaxtune.folds.Folds` wraps them into the one fold
type. It sits below :mod:`jaxtune.data`, which re-exports :func:`kfold_rows` from here (the
engine imports ``data``, and :mod:`jaxtune.folds` imports the engine, so the tables cannot live
in ``folds`` without an import circle).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxtune import arraychecks

__all__ = ["kfold_rows", "pad_rows"]


def pad_rows(groups: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stacks index lists into one ``[len(groups), max_len]`` int32 table.

    Each row is padded with its own first entry, so padding is always a valid index of the
    group (and is never read: the counts say which entries are real).

    Args:
      groups: one non-empty 1-D index array per row of the table.

    Returns:
      ``(table, counts)``: int32 ``[len(groups), max_len]`` and int32 ``[len(groups)]``.

    Example:
      >>> table, counts = pad_rows([np.array([4, 7]), np.array([1])])
      >>> table.tolist(), counts.tolist()
      ([[4, 7], [1, 1]], [2, 1])
    """
    counts = np.array([g.size for g in groups], dtype=np.int32)
    table = np.empty((len(groups), int(counts.max())), dtype=np.int32)
    for index, rows in enumerate(groups):
        table[index, : rows.size] = rows
        table[index, rows.size :] = rows[0]
    return table, counts


def kfold_rows(
    num_rows: int,
    num_folds: int,
    seed: int = 0,
    stratify_labels: Any | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Builds k-fold cross-validation index tables that stack into arrays.

    Rows are shuffled (numpy `Generator` seeded with `seed`) and dealt to the folds in turn,
    so every row is in exactly one validation fold and fold sizes differ by at most one (the
    first `num_rows % num_folds` folds get the extra row, as scikit-learn's `KFold`). With
    `stratify_labels` the rows are shuffled within each class and the classes dealt one after
    the other (in order of first appearance), so each fold gets `floor` or `ceil` of
    `n_c / num_folds` rows of each class `c`: the same allocation as scikit-learn's
    `StratifiedKFold`. A class with fewer rows than folds is missing from some validation folds.

    Folds differ in size, so each table is padded to the largest fold with that fold's first
    row: padding is always a valid index, and
    `jaxtune.data.sample_rows(key, rows[f], counts[f], ...)` never reads it. Rows are sorted
    within each fold.

    Args:
        num_rows: number of rows of the data being cross-validated.
        num_folds: number of folds `F`, in `[2, num_rows]`.
        seed: seed of the shuffle; the same arguments give the same tables.
        stratify_labels: optional labels `[num_rows]` (any integer values) to stratify on.

    Returns:
        `(train_rows, train_counts, valid_rows, valid_counts)`: int32 arrays of shapes
        `[F, max_train]`, `[F]`, `[F, max_valid]`, `[F]`. Row `f` of `train_rows` holds the
        `train_counts[f]` training rows of fold `f` followed by padding; likewise for
        validation.

    Example:
        >>> train_rows, train_counts, valid_rows, valid_counts = kfold_rows(10, 3)
        >>> train_rows.shape, valid_counts.tolist()
        ((3, 7), [4, 3, 3])
    """
    num_rows = arraychecks.check_int(num_rows, "num_rows", 2)
    num_folds = arraychecks.check_int(num_folds, "num_folds", 2)
    seed = arraychecks.check_int(seed, "seed", 0)
    if num_folds > num_rows:
        raise ValueError(
            f"num_folds={num_folds} is more than num_rows={num_rows}; every fold needs a "
            f"validation row, lower num_folds"
        )
    rng = np.random.default_rng(seed)
    if stratify_labels is None:
        order = rng.permutation(num_rows)
    else:
        labels = np.asarray(stratify_labels)
        if labels.shape != (num_rows,):
            raise ValueError(
                f"stratify_labels must have shape [num_rows] = ({num_rows},), got {labels.shape}"
            )
        arraychecks.check_numeric(labels, "stratify_labels")
        _, first_index, codes = np.unique(labels, return_index=True, return_inverse=True)
        appearance = np.argsort(np.argsort(first_index))
        codes = appearance[codes.reshape(-1)]
        order = np.concatenate(
            [rng.permutation(np.flatnonzero(codes == c)) for c in range(first_index.size)]
        )
    fold_of_row = np.empty(num_rows, dtype=np.int64)
    fold_of_row[order] = np.arange(num_rows) % num_folds
    valid_groups = [np.flatnonzero(fold_of_row == f) for f in range(num_folds)]
    train_groups = [np.flatnonzero(fold_of_row != f) for f in range(num_folds)]
    train_rows, train_counts = pad_rows(train_groups)
    valid_rows, valid_counts = pad_rows(valid_groups)
    return train_rows, train_counts, valid_rows, valid_counts
