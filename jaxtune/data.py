"""Datasets, splits and per-member minibatch sampling.

Host side (numpy, before anything is traced): the embedded datasets, a synthetic linear
regression problem, train/validation/test splits and standardization fitted on the training
rows. Input validation (`check_arrays`) lives in :mod:`jaxtune.arraychecks` and the k-fold
index tables (`kfold_rows`) in :mod:`jaxtune.rowtables` (the fold type in
:mod:`jaxtune.folds`); both are re-exported here.

Device side (inside the compiled training step, once per member under `vmap`):
`sample_batch_indices` and `sample_rows`, which draw minibatch row indices from a member's key.

The embedded files in `jaxtune/datasets` are copies of the data bundled with scikit-learn
(BSD-3-Clause licence, https://scikit-learn.org), read here with numpy only. Original sources:

- ``digits``: Optical Recognition of Handwritten Digits, UCI Machine Learning Repository
  (Alpaydin and Kaynak, 1998); 1797 images of 8x8 pixels with values 0..16, flattened
  row-major to 64 features, 10 classes.
- ``breast_cancer``: Breast Cancer Wisconsin (Diagnostic), UCI Machine Learning Repository
  (Wolberg, Street and Mangasarian, 1995); 569 rows, 30 features, classes malignant (0) and
  benign (1).
- ``wine``: Wine recognition data, UCI Machine Learning Repository (Forina et al., 1991);
  178 rows, 13 features, 3 classes.
- ``diabetes``: B. Efron, T. Hastie, I. Johnstone and R. Tibshirani, "Least Angle Regression",
  Annals of Statistics 32(2), 2004; 442 rows, 10 raw (unscaled) features, a disease
  progression target.
"""

from __future__ import annotations

import gzip
import io
import math
import operator
from importlib import resources
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune import datatree
from jaxtune.arraychecks import KINDS, check_arrays, check_finite_columns, check_int
from jaxtune.rowtables import kfold_rows

__all__ = [
    "DATASETS",
    "KINDS",
    "Dataset",
    "Split",
    "check_arrays",
    "kfold_rows",
    "load_dataset",
    "make_linear",
    "sample_batch_indices",
    "sample_rows",
    "standardize",
    "train_valid_test_split",
]

DATASETS = ("digits", "breast_cancer", "wine", "diabetes", "linear")


def _describe(array: Any) -> str:
    return datatree.describe(array)


def _num_features(x: Any) -> int:
    return sum(math.prod(np.shape(leaf)[1:]) for _, _, leaf in datatree.leaf_items(x))


class Dataset(NamedTuple):
    """A whole dataset held on the host.

    `x` and `y` may each be one array or a dict of arrays sharing the row count (features,
    masks, lengths, per-row weights; :mod:`jaxtune.datatree`), e.g.
    ``Dataset({"features": f, "mask": m}, y, "regression", None, "mine")``.

    Attributes:
        x: float32 features `[num_rows, ...]` (`[num_rows, num_features]` for tabular data), or
            a dict of arrays `[num_rows, ...]` (any real or bool dtypes).
        y: int32 labels `[num_rows]` in `[0, num_classes)` for classification; float32 targets
            `[num_rows]`, `[num_rows, num_outputs]` or a dict of such arrays for regression.
        kind: ``"classification"`` or ``"regression"``.
        num_classes: number of classes for classification, ``None`` for regression.
        name: the dataset's name, e.g. ``"digits"``.
    """

    x: Any
    y: Any
    kind: str
    num_classes: int | None
    name: str

    @property
    def num_rows(self) -> int:
        """Number of rows (examples)."""
        return datatree.num_rows(self.x)

    @property
    def num_features(self) -> int:
        """Number of features per row (the product of the trailing dimensions of `x`; for a
        dict, summed over its leaves)."""
        return _num_features(self.x)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, kind={self.kind!r}, x={_describe(self.x)}, "
            f"y={_describe(self.y)}, num_classes={self.num_classes})"
        )


class Split(NamedTuple):
    """Training, validation and test rows of a dataset, as numpy arrays on the host.

    Each `x_*` and `y_*` is one array or a dict of arrays (the same keys in every part), as in
    :class:`Dataset`.

    Attributes:
        x_train: training features `[num_train, ...]`.
        y_train: training labels or targets `[num_train]`.
        x_valid: validation features `[num_valid, ...]` (model selection).
        y_valid: validation labels or targets `[num_valid]`.
        x_test: test features `[num_test, ...]` (held out until the end).
        y_test: test labels or targets `[num_test]`.
        kind: ``"classification"`` or ``"regression"``.
        num_classes: number of classes for classification, ``None`` for regression.
        name: the dataset's name.
    """

    x_train: Any
    y_train: Any
    x_valid: Any
    y_valid: Any
    x_test: Any
    y_test: Any
    kind: str
    num_classes: int | None
    name: str

    @property
    def train(self) -> dict[str, np.ndarray]:
        """The training rows as ``{"x": x_train, "y": y_train}``."""
        return {"x": self.x_train, "y": self.y_train}

    @property
    def valid(self) -> dict[str, np.ndarray]:
        """The validation rows as ``{"x": x_valid, "y": y_valid}``."""
        return {"x": self.x_valid, "y": self.y_valid}

    @property
    def test(self) -> dict[str, np.ndarray]:
        """The test rows as ``{"x": x_test, "y": y_test}``."""
        return {"x": self.x_test, "y": self.y_test}

    @property
    def num_features(self) -> int:
        """Number of features per row (the product of the trailing dimensions of `x`; for a
        dict, summed over its leaves)."""
        return _num_features(self.x_train)

    def __repr__(self) -> str:
        return (
            f"Split(name={self.name!r}, kind={self.kind!r}, "
            f"x_train={_describe(self.x_train)}, x_valid={_describe(self.x_valid)}, "
            f"x_test={_describe(self.x_test)}, num_classes={self.num_classes})"
        )


def _check_dataset(ds: Dataset) -> int | None:
    """Validates a Dataset and returns its number of classes (inferred when missing)."""
    check_arrays(ds.x, ds.y, ds.kind, ds.num_classes)
    if ds.kind == "classification" and ds.num_classes is None:
        return max(int(np.max(ds.y)) + 1, 2)
    return ds.num_classes


# ---------------------------------------------------------------------------------------------
# Embedded datasets


def _read_text(filename: str) -> str:
    raw = resources.files("jaxtune.datasets").joinpath(filename).read_bytes()
    if filename.endswith(".gz"):
        raw = gzip.decompress(raw)
    return raw.decode("utf-8")


def _load_headed_csv(filename: str, name: str) -> Dataset:
    """Reads scikit-learn's csv layout: a header `num_rows,num_features,class names...`."""
    text = _read_text(filename)
    header, _, body = text.partition("\n")
    fields = header.strip().split(",")
    num_rows, num_features, class_names = int(fields[0]), int(fields[1]), fields[2:]
    table = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.float64, ndmin=2)
    if table.shape != (num_rows, num_features + 1):
        raise RuntimeError(
            f"embedded file {filename} is corrupt: header says {num_rows} rows of "
            f"{num_features} features + label, found shape {table.shape}"
        )
    return Dataset(
        x=table[:, :-1].astype(np.float32),
        y=table[:, -1].astype(np.int32),
        kind="classification",
        num_classes=len(class_names),
        name=name,
    )


def _load_digits() -> Dataset:
    table = np.loadtxt(io.StringIO(_read_text("digits.csv.gz")), delimiter=",", ndmin=2)
    return Dataset(
        x=table[:, :-1].astype(np.float32),
        y=table[:, -1].astype(np.int32),
        kind="classification",
        num_classes=10,
        name="digits",
    )


def _load_diabetes() -> Dataset:
    x = np.loadtxt(io.StringIO(_read_text("diabetes_data_raw.csv.gz")), ndmin=2)
    y = np.loadtxt(io.StringIO(_read_text("diabetes_target.csv.gz")), ndmin=1)
    return Dataset(
        x=x.astype(np.float32),
        y=y.astype(np.float32),
        kind="regression",
        num_classes=None,
        name="diabetes",
    )


def make_linear(
    num_samples: int = 256,
    slope: float = 3.0,
    intercept: float = 0.0,
    noise: float = 0.5,
    seed: int = 0,
) -> Dataset:
    """Makes a one-feature linear regression problem, `y = slope * x + intercept + noise * e`.

    `x` is uniform in `[-1, 1]` and `e` standard normal. Data are generated on the host by a
    numpy `Generator` seeded with `seed` (this is data, not training-time randomness, which
    always comes from JAX keys).

    Args:
        num_samples: number of rows, at least 1.
        slope: the true slope.
        intercept: the true intercept.
        noise: standard deviation of the Gaussian noise, at least 0.
        seed: seed of the generator; the same seed gives the same data.

    Returns:
        A regression `Dataset` named ``"linear"`` with `x` float32 `[num_samples, 1]` and `y`
        float32 `[num_samples]`.

    Example:
        >>> ds = make_linear(num_samples=100, slope=-2.0, seed=1)
        >>> ds.x.shape, ds.y.shape
        ((100, 1), (100,))
    """
    num_samples = check_int(num_samples, "num_samples", 1)
    seed = check_int(seed, "seed", 0)
    for field, value in (("slope", slope), ("intercept", intercept), ("noise", noise)):
        if not np.isfinite(value):
            raise ValueError(f"{field} must be finite, got {value!r}")
    if noise < 0:
        raise ValueError(f"noise is a standard deviation and must be >= 0, got {noise!r}")
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(num_samples, 1))
    y = slope * x[:, 0] + intercept + noise * rng.standard_normal(num_samples)
    return Dataset(
        x=x.astype(np.float32),
        y=y.astype(np.float32),
        kind="regression",
        num_classes=None,
        name="linear",
    )


_EMBEDDED = {
    "digits": _load_digits,
    "breast_cancer": lambda: _load_headed_csv("breast_cancer.csv", "breast_cancer"),
    "wine": lambda: _load_headed_csv("wine_data.csv", "wine"),
    "diabetes": _load_diabetes,
}


def load_dataset(name: str, **kwargs: Any) -> Dataset:
    """Loads a dataset by name.

    Args:
        name: one of `DATASETS`: ``"digits"``, ``"breast_cancer"``, ``"wine"`` (classification),
            ``"diabetes"`` (regression, raw unscaled features) from the embedded files, or
            ``"linear"`` (synthetic regression from `make_linear`).
        **kwargs: passed to `make_linear` for ``"linear"``; the embedded datasets take none.

    Returns:
        The `Dataset`, rows in the order of the original file.

    Raises:
        ValueError: an unknown name (the message lists the valid names).
        TypeError: keyword arguments for an embedded dataset.

    Example:
        >>> ds = load_dataset("wine")
        >>> ds.x.shape, ds.num_classes
        ((178, 13), 3)
    """
    if name == "linear":
        return make_linear(**kwargs)
    if not isinstance(name, str) or name not in _EMBEDDED:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    if kwargs:
        raise TypeError(
            f"dataset {name!r} takes no options, got {sorted(kwargs)}; only 'linear' does"
        )
    return _EMBEDDED[name]()


# ---------------------------------------------------------------------------------------------
# Splits and standardization


def _split_size(fraction: float, num_rows: int) -> int:
    if fraction == 0:
        return 0
    return max(1, math.floor(fraction * num_rows + 0.5))


def _stratified_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random row order in which every prefix holds each class in (nearly) its share.

    Rows are shuffled within their class; the row of rank `i` among the `n_c` rows of class `c`
    gets the key `(2i + 1) / (2 n_c)`, its rank's midpoint as a fraction of the class. Sorting by
    key (ties broken at random) interleaves the classes evenly, so cutting the order into
    consecutive pieces of any sizes gives each piece about `size * n_c / num_rows` rows of `c`.
    """
    keys = np.empty(labels.shape[0], dtype=np.float64)
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        keys[members] = (2 * np.arange(members.size) + 1) / (2 * members.size)
    tie_break = rng.permutation(labels.shape[0])
    return np.lexsort((tie_break, keys))


def train_valid_test_split(
    ds: Dataset,
    valid_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    stratify: bool = True,
) -> Split:
    """Splits a dataset at random into training, validation and test rows.

    The validation and test sizes are `round(fraction * num_rows)`, at least one row when the
    fraction is positive; a fraction of 0 gives an empty split (shape `[0, ...]`), e.g. when
    cross-validation replaces the validation split. The training split takes the rest and
    must not be empty. For classification with `stratify`, each split holds every class in
    its share of the data to within a row or two; `stratify` is ignored for regression.
    Rows keep their original order within each split, and every leaf of a dict `x` or `y` is
    split with the same rows. The same data and seed always give the
    same split (numpy `Generator` seeded with `seed`; host-side, not training randomness).

    Args:
        ds: the dataset; validated with `check_arrays` first. A classification dataset with
            `num_classes=None` gets `max(y) + 1`.
        valid_fraction: share of rows for validation, in `[0, 1)`.
        test_fraction: share of rows for testing, in `[0, 1)`; `valid_fraction +
            test_fraction < 1`.
        seed: seed of the random split.
        stratify: keep class proportions in every split (classification only).

    Returns:
        The `Split`.

    Raises:
        ValueError: invalid fractions, or too few rows for a non-empty training split.

    Example:
        >>> split = train_valid_test_split(load_dataset("wine"), 0.2, 0.2, seed=0)
        >>> split.x_train.shape, split.x_valid.shape, split.x_test.shape
        ((106, 13), (36, 13), (36, 13))
    """
    num_classes = _check_dataset(ds)
    seed = check_int(seed, "seed", 0)
    for field, fraction in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not (isinstance(fraction, (int, float, np.number)) and 0 <= fraction < 1):
            raise ValueError(f"{field} must be a number in [0, 1), got {fraction!r}")
    if valid_fraction + test_fraction >= 1:
        raise ValueError(
            f"valid_fraction + test_fraction must be < 1 to leave training rows, got "
            f"{valid_fraction} + {test_fraction}; lower one of them"
        )
    x, y = datatree.to_numpy(ds.x, "x"), datatree.to_numpy(ds.y, "y")
    num_rows = datatree.num_rows(x)
    num_valid = _split_size(valid_fraction, num_rows)
    num_test = _split_size(test_fraction, num_rows)
    if num_rows - num_valid - num_test < 1:
        raise ValueError(
            f"{num_rows} row(s) leave no training rows with valid_fraction={valid_fraction} "
            f"({num_valid} rows) and test_fraction={test_fraction} ({num_test} rows); "
            f"use more data or smaller fractions"
        )
    rng = np.random.default_rng(seed)
    if stratify and ds.kind == "classification":
        order = _stratified_order(y, rng)
    else:
        order = rng.permutation(num_rows)
    test_rows = np.sort(order[:num_test])
    valid_rows = np.sort(order[num_test : num_test + num_valid])
    train_rows = np.sort(order[num_test + num_valid :])
    take = datatree.take_rows
    return Split(
        x_train=take(x, train_rows),
        y_train=take(y, train_rows),
        x_valid=take(x, valid_rows),
        y_valid=take(y, valid_rows),
        x_test=take(x, test_rows),
        y_test=take(y, test_rows),
        kind=ds.kind,
        num_classes=num_classes,
        name=ds.name,
    )


def standardize(split: Split, eps: float = 1e-8, leaves: datatree.Selection = True) -> Split:
    """Standardizes the features with statistics of the training rows only.

    Every feature (every element of the trailing dimensions of `x`, or of each selected leaf
    of a dict `x`) becomes `(x - mean_train) / std_train`, applied alike to the training,
    validation and test rows, so nothing about the held-out rows leaks into the transform. A
    feature whose training standard deviation is at most `eps` (constant) is only centred: its
    std is taken as 1. Targets are left as they are.

    Args:
        split: the split to transform.
        eps: threshold below which a standard deviation counts as zero; > 0.
        leaves: which leaves of a dict `x` to standardize (:func:`jaxtune.datatree.select_leaves`):
            ``True`` (every floating-point leaf), a leaf name such as ``"features"``, a
            sequence of names, or a predicate ``name -> bool``. Integer and boolean leaves
            (masks, lengths) are never standardized. For one array `x`, ``True`` (the default)
            standardizes it.

    Returns:
        A new `Split` with float32 standardized features (a dict's other leaves unchanged);
        labels and targets unchanged.

    Raises:
        ValueError: `eps` not a positive finite number, no training rows, a name that is no
            leaf of `x`, or a NaN or inf in the standardized features of any part (one NaN
            would turn its whole column into NaN), naming the part, the leaf, the column(s)
            and the first row.
        TypeError: `leaves` selects an integer or boolean leaf.

    Example:
        >>> split = standardize(train_valid_test_split(load_dataset("wine")))
        >>> bool(abs(split.x_train.mean(axis=0)).max() < 1e-5)
        True
    """
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive finite number, got {eps!r}")
    parts = ("train", "valid", "test")
    xs = {part: datatree.to_numpy(getattr(split, f"x_{part}"), f"split.x_{part}")
          for part in parts}
    selected = datatree.select_leaves(xs["train"], leaves, "split.x_train")
    if not selected:
        return split
    if datatree.num_rows(xs["train"]) == 0:
        raise ValueError("split has no training rows to fit the standardization on")
    chosen = {""} if selected is True else set(selected)
    stats = {}
    for path, name, leaf in datatree.leaf_items(xs["train"], "split.x_train"):
        if name not in chosen:
            continue
        for part in parts:
            check_finite_columns(_leaf(xs[part], name), path.replace("x_train", f"x_{part}"))
        flat = np.asarray(leaf, dtype=np.float64).reshape(leaf.shape[0], -1)
        std = flat.std(axis=0)
        stats[name] = (flat.mean(axis=0), np.where(std > eps, std, 1.0))

    def transform(x: Any) -> Any:
        if not datatree.is_tree(x):
            return _standardize_rows(x, *stats[""])
        out = dict(x)
        for key, value in x.items():
            out[key] = transform_named(value, key)
        return out

    def transform_named(x: Any, name: str) -> Any:
        if datatree.is_tree(x):
            return {k: transform_named(v, f"{name}/{k}") for k, v in x.items()}
        return _standardize_rows(x, *stats[name]) if name in stats else x

    return split._replace(**{f"x_{part}": transform(xs[part]) for part in parts})


def _leaf(tree: Any, name: str) -> Any:
    for _, leaf_name, leaf in datatree.leaf_items(tree):
        if leaf_name == name:
            return leaf
    raise KeyError(name)


def _standardize_rows(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    flat = np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1)
    return ((flat - mean) / std).astype(np.float32).reshape(x.shape)


# ---------------------------------------------------------------------------------------------
# Minibatch sampling inside compiled code


def _static_batch_size(batch_size: Any) -> int:
    try:
        batch_size = operator.index(batch_size)
    except TypeError:
        raise TypeError(
            f"batch_size sets an array shape and must be a static Python int, got {batch_size!r}"
        ) from None
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return batch_size


def _check_concrete_num_rows(num_rows: Any) -> None:
    if isinstance(num_rows, (int, np.integer)) and num_rows < 1:
        raise ValueError(f"num_rows must be at least 1, got {num_rows}")


def sample_batch_indices(key: jax.Array, num_rows: int | jax.Array, batch_size: int) -> jax.Array:
    """Draws a minibatch of row indices, uniformly and with replacement.

    Meant for the compiled training step of one member (lifted over the population with
    `vmap`): each member draws its own batch from its own key. Sampling with replacement is
    what makes this cheap and independent of the other members: a member needs no state
    beyond its key, whereas a per-epoch permutation would carry `num_rows`-sized state per
    member and tie its batches to an epoch counter.

    Args:
        key: a JAX PRNG key (raw `uint32[2]` or typed).
        num_rows: number of rows to draw from; a Python int or a traced integer scalar (a new
            value does not recompile).
        batch_size: number of indices; a static Python int (it sets the shape).

    Returns:
        int32 indices `[batch_size]` in `[0, num_rows)`.

    Example:
        >>> idx = sample_batch_indices(jax.random.PRNGKey(0), 100, 32)
        >>> idx.shape, idx.dtype
        ((32,), dtype('int32'))
    """
    batch_size = _static_batch_size(batch_size)
    _check_concrete_num_rows(num_rows)
    return jax.random.randint(key, (batch_size,), 0, num_rows, dtype=jnp.int32)


def sample_rows(
    key: jax.Array, rows: jax.Array, num_rows: int | jax.Array, batch_size: int
) -> jax.Array:
    """Draws a minibatch from an allowed set of rows, uniformly and with replacement.

    `rows[:num_rows]` are the allowed row indices; entries beyond are padding and never
    returned. This is how a cross-validation fold restricts a member to its training rows
    without copying the data: the member carries its fold's row table (one row of
    `kfold_rows`' output) and count, and the batch is gathered from the full data.

    Args:
        key: a JAX PRNG key.
        rows: int32 row indices `[max_rows]`, the first `num_rows` valid, the rest arbitrary.
        num_rows: number of valid entries, in `[1, max_rows]`; a Python int or traced scalar.
        batch_size: number of rows to draw; a static Python int.

    Returns:
        int32 row indices `[batch_size]`, each one of `rows[:num_rows]`.

    Example:
        >>> rows = jnp.array([3, 7, 9, 0, 0], dtype=jnp.int32)
        >>> batch = sample_rows(jax.random.PRNGKey(0), rows, 3, 8)
        >>> bool(jnp.isin(batch, jnp.array([3, 7, 9])).all())
        True
    """
    rows = jnp.asarray(rows)
    if rows.ndim != 1:
        raise ValueError(f"rows must have shape [max_rows], got shape {rows.shape}")
    if isinstance(num_rows, (int, np.integer)) and num_rows > rows.shape[0]:
        raise ValueError(f"num_rows={num_rows} is more than the {rows.shape[0]} entries of rows")
    positions = sample_batch_indices(key, num_rows, batch_size)
    return rows[positions].astype(jnp.int32)
