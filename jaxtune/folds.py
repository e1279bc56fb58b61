"""Cross-validation folds: the one fold type, :class:`Folds`, and the splitters that build it.

A *fold* is an index table over one array of rows, never a copy of the data: row ``f`` of
``Folds.train_rows`` lists the training rows of fold ``f``, row ``f`` of ``valid_rows`` its
held-out rows. :meth:`Folds.member_rows` gathers those tables per member into the engine's
:class:`~jaxtune.engine.MemberRows`, which is what the engine trains on: there is no second
representation. The raw tables come from :mod:`jaxtune.rowtables` (``kfold_rows``,
``pad_rows``).

Splitters: :func:`kfold`, :func:`stratified_kfold`, :func:`repeated_kfold`, :func:`holdout`,
:func:`make_folds` (what :func:`jaxtune.cv.cross_validate` uses), :func:`nested_folds` (outer
and inner folds over the same rows) and :func:`folds_from_indices` (any explicit pairs, e.g.
scikit-learn's). All shuffles are host numpy generators seeded explicitly, so the same
arguments give the same folds.

This module imports the engine (for ``MemberRows``); the engine never imports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxtune.engine.population import MemberRows
from jaxtune.rowtables import kfold_rows, pad_rows

__all__ = [
    "Folds",
    "folds_from_indices",
    "holdout",
    "kfold",
    "kfold_rows",
    "make_folds",
    "nested_folds",
    "repeat_seed",
    "repeated_kfold",
    "stratified_kfold",
]


class Folds(NamedTuple):
    """Cross-validation folds as padded index tables over ``num_rows`` rows.

    Row ``f`` of ``train_rows`` holds the ``train_counts[f]`` training rows of fold ``f``
    (sorted) followed by padding (a repeat of a real row of the fold, never read); likewise
    for the validation rows. Nothing is copied: members read the one data array through
    these tables.

    Attributes:
      train_rows: ``[F, R]`` int32 training row indices.
      train_counts: ``[F]`` int32, real entries of each row of ``train_rows``.
      valid_rows: ``[F, V]`` int32 held-out row indices.
      valid_counts: ``[F]`` int32, real entries of each row of ``valid_rows``.
      repeat: ``[F]`` int32, the repetition each fold belongs to (0 without repeats).
      num_rows: number of rows the indices refer to.
    """

    train_rows: np.ndarray
    train_counts: np.ndarray
    valid_rows: np.ndarray
    valid_counts: np.ndarray
    repeat: np.ndarray
    num_rows: int

    @property
    def num_folds(self) -> int:
        """Number of folds ``F`` (all repetitions together)."""
        return int(self.train_counts.shape[0])

    @property
    def valid_weight(self) -> np.ndarray:
        """``[F, V]`` float32: 1 for real validation entries, 0 for padding."""
        width = self.valid_rows.shape[1]
        return (np.arange(width)[None, :] < self.valid_counts[:, None]).astype(np.float32)

    def train_indices(self, fold: int) -> np.ndarray:
        """The training rows of ``fold`` (without padding)."""
        return self.train_rows[fold, : self.train_counts[fold]]

    def valid_indices(self, fold: int) -> np.ndarray:
        """The held-out rows of ``fold`` (without padding)."""
        return self.valid_rows[fold, : self.valid_counts[fold]]

    def member_rows(self, member_folds: Sequence[int]) -> MemberRows:
        """The engine's per-member row tables for members on folds ``member_folds``.

        Args:
          member_folds: the fold of each member, ``[num_members]``.

        Returns:
          :class:`~jaxtune.engine.MemberRows` with ``[num_members, ...]`` tables (gathers of
          the small index tables, not of the data).
        """
        index = np.asarray(member_folds, np.int64)
        return MemberRows(
            train_rows=self.train_rows[index],
            train_counts=self.train_counts[index],
            valid_rows=self.valid_rows[index],
            valid_weight=self.valid_weight[index],
        )




def folds_from_indices(
    pairs: Iterable[tuple[Sequence[int], Sequence[int]]],
    num_rows: int,
    repeat: Sequence[int] | None = None,
) -> Folds:
    """Folds from explicit ``(train_indices, valid_indices)`` pairs, e.g. scikit-learn's.

    Args:
      pairs: one ``(train_indices, valid_indices)`` pair per fold, as yielded by
        ``sklearn.model_selection.KFold(...).split(x)``.
      num_rows: number of rows the indices refer to.
      repeat: the repetition of each fold (default all 0).

    Returns:
      :class:`Folds`; indices are sorted within each fold.

    Raises:
      ValueError: an empty training or validation set, an index outside ``[0, num_rows)``,
        a repeated index, or a row that is both a training and a validation row of a fold
        (that would leak the held-out rows into training).

    Example:
      >>> folds = folds_from_indices([([0, 1], [2]), ([1, 2], [0]), ([0, 2], [1])], 3)
      >>> folds.num_folds, folds.valid_indices(1).tolist()
      (3, [0])
    """
    num_rows = int(num_rows)
    train_groups, valid_groups = [], []
    for f, (train, valid) in enumerate(pairs):
        train = np.sort(np.asarray(train, np.int64).reshape(-1))
        valid = np.sort(np.asarray(valid, np.int64).reshape(-1))
        for name, rows in (("training", train), ("validation", valid)):
            if rows.size == 0:
                raise ValueError(f"fold {f} has no {name} rows; every fold needs both.")
            if rows[0] < 0 or rows[-1] >= num_rows:
                raise ValueError(
                    f"fold {f} has {name} rows outside [0, {num_rows}); indices must refer to "
                    "the rows being cross-validated."
                )
            if np.any(np.diff(rows) == 0):
                raise ValueError(f"fold {f} repeats {name} rows; give each row once.")
        overlap = np.intersect1d(train, valid)
        if overlap.size:
            raise ValueError(
                f"fold {f}: rows {overlap[:5].tolist()} are both training and validation rows; "
                "held-out rows must not be trained on."
            )
        train_groups.append(train)
        valid_groups.append(valid)
    if not train_groups:
        raise ValueError("pairs is empty: give at least one (train, valid) pair.")
    train_rows, train_counts = pad_rows(train_groups)
    valid_rows, valid_counts = pad_rows(valid_groups)
    repeat = np.zeros(len(train_groups), np.int32) if repeat is None else np.asarray(
        repeat, np.int32
    )
    if repeat.shape != (len(train_groups),):
        raise ValueError(f"repeat has shape {repeat.shape}; give one entry per fold.")
    return Folds(train_rows, train_counts, valid_rows, valid_counts, repeat, num_rows)


def kfold(num_rows: int, num_folds: int = 5, *, seed: int = 0) -> Folds:
    """Shuffled k-fold: every row is held out exactly once; sizes differ by at most one.

    Args:
      num_rows: number of rows.
      num_folds: number of folds, in ``[2, num_rows]``.
      seed: seed of the shuffle (host numpy; the same arguments give the same folds).

    Returns:
      :class:`Folds` with ``num_folds`` folds.

    Example:
      >>> kfold(10, 3).valid_counts.tolist()
      [4, 3, 3]
    """
    tables = kfold_rows(num_rows, num_folds, seed)
    return Folds(*tables, np.zeros(num_folds, np.int32), int(num_rows))


def stratified_kfold(labels: Any, num_folds: int = 5, *, seed: int = 0) -> Folds:
    """Stratified k-fold: each fold holds every class in its share (as ``StratifiedKFold``).

    Args:
      labels: ``[num_rows]`` class labels.
      num_folds: number of folds.
      seed: seed of the shuffle.

    Returns:
      :class:`Folds`.
    """
    labels = np.asarray(labels)
    tables = kfold_rows(labels.shape[0], num_folds, seed, stratify_labels=labels)
    return Folds(*tables, np.zeros(num_folds, np.int32), int(labels.shape[0]))


def repeat_seed(seed: int, repeat: int) -> int:
    """The shuffle seed of repetition ``repeat`` (or of the inner folds of outer fold
    ``repeat - 1``): ``seed`` itself for repetition 0, else one derived from ``(seed, repeat)``.

    Args:
      seed: the seed of the first shuffle.
      repeat: the repetition, >= 0.

    Returns:
      A non-negative int below ``2**31``.
    """
    if repeat == 0:  # repeats=1 is plain k-fold with the same seed
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(repeat)]).generate_state(1)[0] >> 1)


def repeated_kfold(
    num_rows: int | None = None,
    num_folds: int = 5,
    repeats: int = 2,
    *,
    seed: int = 0,
    labels: Any | None = None,
) -> Folds:
    """k-fold repeated with new shuffles: ``repeats * num_folds`` folds in one table.

    Fold ``r * num_folds + k`` is fold ``k`` of repetition ``r``. Repetition 0 is
    :func:`kfold` (or :func:`stratified_kfold`) with ``seed``; the others use seeds derived
    from ``(seed, r)``. Repeats average out the luck of one partition; the folds of all
    repetitions train together as one population.

    Args:
      num_rows: number of rows (omit when ``labels`` is given).
      num_folds: folds per repetition.
      repeats: number of repetitions, >= 1.
      seed: seed of the first shuffle.
      labels: ``[num_rows]`` labels to stratify on, or None.

    Returns:
      :class:`Folds` with ``repeats * num_folds`` folds; ``repeat`` says which repetition.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int | np.integer) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}.")
    if labels is None and num_rows is None:
        raise ValueError("give num_rows or labels.")
    parts = []
    for r in range(int(repeats)):
        s = repeat_seed(seed, r)
        parts.append(
            kfold(int(num_rows), num_folds, seed=s) if labels is None
            else stratified_kfold(labels, num_folds, seed=s)
        )
    pairs = [(p.train_indices(f), p.valid_indices(f)) for p in parts for f in range(p.num_folds)]
    repeat = np.repeat(np.arange(len(parts), dtype=np.int32), num_folds)
    return folds_from_indices(pairs, parts[0].num_rows, repeat)


def holdout(
    num_rows: int | None = None,
    valid_fraction: float = 0.2,
    *,
    seed: int = 0,
    labels: Any | None = None,
) -> Folds:
    """One training/validation split as a single fold (stratified when ``labels`` is given).

    Args:
      num_rows: number of rows (omit when ``labels`` is given).
      valid_fraction: share of rows held out, in ``(0, 1)``; at least one row each side.
      seed: seed of the shuffle.
      labels: ``[num_rows]`` labels to stratify on, or None. Each class gives
        ``round(valid_fraction * n_c)`` rows.

    Returns:
      :class:`Folds` with one fold.
    """
    if not 0 < valid_fraction < 1:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction!r}.")
    rng = np.random.default_rng(seed)
    if labels is None:
        if num_rows is None:
            raise ValueError("give num_rows or labels.")
        num_rows = int(num_rows)
        order = rng.permutation(num_rows)
        num_valid = min(max(1, round(valid_fraction * num_rows)), num_rows - 1)
        valid = order[:num_valid]
    else:
        labels = np.asarray(labels)
        num_rows = int(labels.shape[0])
        valid = np.concatenate([
            rng.permutation(np.flatnonzero(labels == c))[
                : round(valid_fraction * np.sum(labels == c))
            ]
            for c in np.unique(labels)
        ])
        if valid.size == 0 or valid.size == num_rows:
            raise ValueError(
                f"valid_fraction={valid_fraction} leaves an empty side with these labels."
            )
    train = np.setdiff1d(np.arange(num_rows), valid)
    return folds_from_indices([(train, valid)], num_rows)


def make_folds(
    num_rows: int,
    *,
    num_folds: int = 5,
    labels: Any | None = None,
    stratified: bool = True,
    repeats: int = 1,
    seed: int = 0,
) -> Folds:
    """The folds :func:`~jaxtune.cv.cross_validate` uses: (stratified, repeated) k-fold.

    Args:
      num_rows: number of rows.
      num_folds: folds per repetition.
      labels: class labels ``[num_rows]`` (classification) or None.
      stratified: stratify on ``labels`` when given.
      repeats: repetitions of the k-fold partition.
      seed: seed of the shuffles.

    Returns:
      :class:`Folds`.
    """
    strata = labels if (stratified and labels is not None) else None
    if repeats == 1:
        if strata is not None:
            return stratified_kfold(strata, num_folds, seed=seed)
        return kfold(num_rows, num_folds, seed=seed)
    return repeated_kfold(num_rows, num_folds, repeats, seed=seed, labels=strata)



def nested_folds(
    num_rows: int,
    num_outer_folds: int = 5,
    num_inner_folds: int = 3,
    *,
    labels: Any | None = None,
    seed: int = 0,
) -> tuple[Folds, Folds]:
    """Outer folds and, for each, inner folds of its training rows, all over the same rows.

    Inner fold ``i`` of outer fold ``o`` is fold ``o * num_inner_folds + i`` of the inner
    table; its training and validation rows are a partition of outer fold ``o``'s training
    rows (indices into the same ``num_rows`` rows), so no outer held-out row ever enters an
    inner fold.

    Args:
      num_rows: number of rows.
      num_outer_folds: outer folds.
      num_inner_folds: inner folds per outer fold.
      labels: ``[num_rows]`` labels to stratify both levels on, or None.
      seed: seed of the outer shuffle (inner shuffles derive from it).

    Returns:
      ``(outer, inner)`` :class:`Folds`; ``inner`` has ``num_outer_folds * num_inner_folds``
      folds, its ``repeat`` is the outer fold.
    """
    outer = make_folds(num_rows, num_folds=num_outer_folds, labels=labels, seed=seed)
    pairs = []
    for o in range(outer.num_folds):
        outer_train = outer.train_indices(o)
        inner = make_folds(
            outer_train.size, num_folds=num_inner_folds,
            labels=None if labels is None else np.asarray(labels)[outer_train],
            seed=repeat_seed(seed, o + 1),
        )
        pairs += [(outer_train[inner.train_indices(i)], outer_train[inner.valid_indices(i)])
                  for i in range(inner.num_folds)]
    repeat = np.repeat(np.arange(outer.num_folds, dtype=np.int32), num_inner_folds)
    return outer, folds_from_indices(pairs, num_rows, repeat)
