"""Data as pytrees: features and targets that are one array or a dict of arrays.

``x`` and ``y`` of a :class:`~jaxtune.data.Dataset` or :class:`~jaxtune.data.Split` may each be
one array or a dict (nested dicts allowed, string keys) whose leaves are arrays sharing one row
count, the first axis: features, masks, sequence lengths, per-row weights. Everything that
touches rows goes through this module, on the host (numpy) and in traced code alike: the row
count, taking rows, joining parts, sizes, abstract shapes for tracing, a leaf's path for
messages (``x['mask']``) and its name for selections (``"mask"``, ``"enc/tokens"`` for
``x['enc']['tokens']``), and the standardization of the floating-point leaves a caller names.

It imports nothing of jaxtune, so every data module (checks, splits, folds, the engine's
sampling and memory estimate) can use it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Selection",
    "abstract",
    "apply_standardizer",
    "concat_rows",
    "describe",
    "describe_rows",
    "fit_standardizer",
    "is_tree",
    "leaf_items",
    "nbytes",
    "num_rows",
    "row_nbytes",
    "row_shapes",
    "select_leaves",
    "signature",
    "take_rows",
    "to_numpy",
]

#: What to standardize: ``True``/``False``, a leaf name, names, or ``name -> bool``.
Selection = bool | str | Sequence[str] | Callable[[str], bool] | None

#: A standard deviation at most this is taken as 1 (a constant feature is only centred).
_EPS = 1e-8


def is_tree(value: Any) -> bool:
    """True for a dict of arrays (a pytree of data), False for one array."""
    return isinstance(value, Mapping)


def to_numpy(value: Any, root: str = "x") -> Any:
    """One array, or a dict of arrays, as numpy (nested dicts kept, keys checked).

    Args:
      value: an array-like, or a mapping (nested mappings allowed) of array-likes.
      root: the name in messages (``"x"``, ``"y"``).

    Returns:
      ``np.asarray(value)``, or a plain ``dict`` of the same keys whose leaves are numpy arrays.

    Raises:
      TypeError: a key that is not a string.
      ValueError: an empty dict, or a key holding ``/`` (it joins the names of nested leaves).
    """
    if not is_tree(value):
        return np.asarray(value)
    if not value:
        raise ValueError(f"{root} is an empty dict; give at least one array")
    out = {}
    for key, leaf in value.items():
        if not isinstance(key, str):
            raise TypeError(f"{root} has key {key!r}; the keys of a data dict must be strings")
        if "/" in key:
            raise ValueError(f"{root} has key {key!r}; '/' joins nested names "
                             f"({root}/a/b is {root}['a']['b']), rename the key")
        out[key] = to_numpy(leaf, f"{root}[{key!r}]")
    return out


def _key_name(entry: Any) -> str:
    return str(getattr(entry, "key", getattr(entry, "idx", getattr(entry, "name", entry))))


def leaf_items(tree: Any, root: str = "x") -> list[tuple[str, str, Any]]:
    """Every leaf as ``(path, name, leaf)`` in flattening order.

    ``path`` is what messages show (``"x['mask']"``, or ``"x"`` for one array); ``name`` is what
    a selection names (``"mask"``, ``"enc/tokens"``, ``""`` for one array).

    Example:
      >>> [(p, n) for p, n, _ in leaf_items({"a": np.zeros(2), "b": {"c": np.ones(2)}})]
      [("x['a']", 'a'), ("x['b']['c']", 'b/c')]
    """
    if not is_tree(tree):
        return [(root, "", tree)]
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(root + jax.tree_util.keystr(path), "/".join(_key_name(e) for e in path), leaf)
            for path, leaf in flat]


def _shape_dtype(leaf: Any) -> tuple[tuple[int, ...], np.dtype]:
    if not hasattr(leaf, "dtype"):  # a Python scalar or list
        leaf = np.asarray(leaf)
    return tuple(leaf.shape), np.dtype(leaf.dtype)


def describe(tree: Any) -> str:
    """Dtypes and shapes, e.g. ``float32[4, 3]`` or ``{'f': float32[4, 3], 'm': bool[4, 7]}``."""
    if not is_tree(tree):
        shape, dtype = _shape_dtype(tree)
        return f"{dtype}{list(shape)}"
    return "{" + ", ".join(f"{k!r}: {describe(v)}" for k, v in tree.items()) + "}"


def row_shapes(tree: Any) -> Any:
    """One row's shape: ``tuple`` for one array, a dict of tuples shaped like a dict."""
    if is_tree(tree):
        return {k: row_shapes(v) for k, v in tree.items()}
    return _shape_dtype(tree)[0][1:]


def describe_rows(tree: Any) -> str:
    """One row's shapes for messages: ``[rows, 64] (float32)``, or a dict of such."""
    if not is_tree(tree):
        shape, dtype = _shape_dtype(tree)
        return f"[{', '.join(['rows', *map(str, shape[1:])])}] ({dtype})"
    return "{" + ", ".join(f"{k!r}: {describe_rows(v)}" for k, v in tree.items()) + "}"


def num_rows(tree: Any, root: str = "x") -> int:
    """The row count every leaf shares (its first axis); works on traced values too.

    Raises:
      ValueError: a leaf without a row axis, or leaves with different row counts, naming them.
    """
    counts = []
    for path, _, leaf in leaf_items(tree, root):
        shape, dtype = _shape_dtype(leaf)
        if not shape:
            raise ValueError(f"{path} is a scalar ({dtype}); every leaf needs a first axis of "
                             f"rows, e.g. {path}[None] or one value per row")
        counts.append((path, shape[0]))
    first_path, first = counts[0]
    for path, count in counts[1:]:
        if count != first:
            raise ValueError(f"{path} has {count} rows but {first_path} has {first}; every leaf "
                             "of x and y needs one entry per row (the first axis)")
    return int(first)


def take_rows(tree: Any, index: Any) -> Any:
    """Rows ``index`` of every leaf (numpy or traced; ``index`` of any shape)."""
    return jax.tree_util.tree_map(lambda leaf: leaf[index], tree)


def concat_rows(trees: Sequence[Any], root: str = "x") -> Any:
    """The rows of ``trees`` one after the other, leaf by leaf (host numpy).

    Raises:
      ValueError: parts whose leaves (keys) or row shapes differ, naming the leaf.
    """
    first = jax.tree_util.tree_structure(trees[0])
    for tree in trees[1:]:
        if jax.tree_util.tree_structure(tree) != first:
            raise ValueError(f"the parts of {root} hold different arrays: "
                             f"{describe(trees[0])} and {describe(tree)}; give every part the "
                             "same keys")
    for items in zip(*(leaf_items(t, root) for t in trees), strict=True):
        shapes = {np.shape(leaf)[1:] for _, _, leaf in items}
        if len(shapes) > 1:
            raise ValueError(f"the parts of {items[0][0]} have rows of different shapes "
                             f"{sorted(shapes)}; every part needs the same shape after the rows")
    return jax.tree_util.tree_map(lambda *parts: np.concatenate(parts, axis=0), *trees)


def nbytes(tree: Any) -> int:
    """Bytes of every leaf together."""
    return sum(math.prod(s) * d.itemsize for s, d in map(_shape_dtype, _leaves(tree)))


def row_nbytes(tree: Any) -> int:
    """Bytes of one row of every leaf together."""
    return sum(math.prod(s[1:]) * d.itemsize for s, d in map(_shape_dtype, _leaves(tree)))


def _leaves(tree: Any) -> list[Any]:
    return [leaf for _, _, leaf in leaf_items(tree)]


def signature(tree: Any) -> tuple[Any, tuple[tuple[tuple[int, ...], str], ...]]:
    """A hashable description of one row: the tree's structure and each leaf's row shape and
    dtype (the row count left out). :func:`abstract` turns it back into shapes."""
    treedef = jax.tree_util.tree_structure(tree)
    rows = tuple((s[1:], d.str) for s, d in map(_shape_dtype, _leaves(tree)))
    return treedef, rows


def abstract(sig: tuple[Any, tuple[Any, ...]], rows: int) -> Any:
    """``jax.ShapeDtypeStruct`` leaves of ``rows`` rows for a :func:`signature`."""
    treedef, leaves = sig
    return jax.tree_util.tree_unflatten(
        treedef, [jax.ShapeDtypeStruct((rows, *shape), np.dtype(dtype)) for shape, dtype in leaves])


# --------------------------------------------------------------------------- standardization


def _is_float(leaf: Any) -> bool:
    return bool(jnp.issubdtype(_shape_dtype(leaf)[1], jnp.floating))


def select_leaves(x: Any, standardize: Selection, root: str = "x") -> bool | tuple[str, ...]:
    """Which leaves of ``x`` to standardize, checked; hashable (a static program key).

    Args:
      x: the features (one array or a dict; numpy, traced or abstract).
      standardize: ``False``/``None`` (none); ``True``: one array ``x`` as a whole (any numeric
        dtype, as always), for a dict every floating-point leaf; a leaf name (``"features"``,
        ``"enc/tokens"``) or a sequence of names; or a predicate ``name -> bool`` over the
        leaves' names. Integer and boolean leaves (masks, lengths, ids) are never standardized.
      root: the name in messages.

    Returns:
      ``False`` (nothing), ``True`` (one array ``x``), or the selected names in leaf order.

    Raises:
      ValueError: a name that is no leaf of ``x`` (the message lists them), or names for a
        single array.
      TypeError: a selected integer or boolean leaf, or a selection of another type.
    """
    if isinstance(standardize, bool | np.bool_):
        standardize = bool(standardize)
    if standardize is None or standardize is False:
        return False
    if not is_tree(x):
        if standardize is True:
            return True
        raise ValueError(f"standardize={standardize!r} names leaves, but {root} is one array "
                         f"({describe(x)}); use standardize=True or False for it")
    items = leaf_items(x, root)
    names = [name for _, name, _ in items]
    if standardize is True:
        chosen = {name for _, name, leaf in items if _is_float(leaf)}
    elif callable(standardize):
        chosen = {name for name in names if standardize(name)}
    else:
        wanted = (standardize,) if isinstance(standardize, str) else standardize
        if not isinstance(wanted, Sequence) or not all(isinstance(n, str) for n in wanted):
            raise TypeError(f"standardize must be a bool, a leaf name, a sequence of names or a "
                            f"predicate name -> bool, got {standardize!r}")
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise ValueError(f"standardize names {unknown}, which are not leaves of {root}; its "
                             f"leaves are {names}")
        chosen = set(wanted)
    for path, name, leaf in items:
        if name in chosen and not _is_float(leaf):
            raise TypeError(
                f"standardize selects {path}, which has dtype {_shape_dtype(leaf)[1]}; integer "
                "and boolean leaves (masks, lengths, ids) are never standardized: drop "
                f"{name!r} from standardize (or store it as float if it is a feature)")
    return tuple(name for name in names if name in chosen) or False


def _moments(leaf: Any, weight: jax.Array, rows: Any) -> tuple[jax.Array, jax.Array]:
    """Weighted per-element mean and inverse standard deviation of ``leaf[rows]``."""
    flat = leaf.reshape(leaf.shape[0], -1)
    if rows is not None:
        flat = flat[rows]
    weight = weight[:, None]
    total = jnp.sum(weight)
    mean = jnp.sum(flat * weight, axis=0) / total
    var = jnp.sum(((flat - mean) ** 2) * weight, axis=0) / total
    std = jnp.sqrt(var)
    scale = jnp.where(std > _EPS, 1.0 / jnp.where(std > _EPS, std, 1.0), 1.0)
    return mean, scale


def fit_standardizer(x: Any, selection: Selection, weight: jax.Array,
                     rows: jax.Array | None = None) -> dict[str, Any]:
    """Standardization statistics of the selected leaves, from the weighted rows ``rows``.

    Per element of a leaf's trailing dimensions: the weighted mean over the rows and the
    inverse of their standard deviation (1 where that is at most ``1e-8``: a constant feature
    is only centred).

    Args:
      x: the features (traced or numpy).
      selection: as :func:`select_leaves` takes it.
      weight: ``[len(rows)]`` (or ``[num_rows]`` without ``rows``) row weights; 0 drops a row.
      rows: row indices into ``x``, or ``None`` for every row.

    Returns:
      ``{}`` when nothing is selected; for one array ``{"mean": [F], "scale": [F]}``; for a
      dict ``{"mean": tree, "scale": tree}`` shaped like ``x`` with ``None`` at the leaves left
      as they are.
    """
    selected = select_leaves(x, selection)
    if not selected:
        return {}
    if selected is True:
        mean, scale = _moments(x, weight, rows)
        return {"mean": mean, "scale": scale}
    chosen = set(selected)
    names = iter([name for _, name, _ in leaf_items(x)])

    def one(leaf):
        name = next(names)
        return _moments(leaf.astype(jnp.float32), weight, rows) if name in chosen else None

    stats = jax.tree_util.tree_map(one, x)
    pair = lambda s: isinstance(s, tuple)  # noqa: E731
    return {"mean": jax.tree_util.tree_map(lambda s: s[0], stats, is_leaf=pair),
            "scale": jax.tree_util.tree_map(lambda s: s[1], stats, is_leaf=pair)}


def _standardize_leaf(leaf: Any, mean: Any, scale: Any) -> Any:
    flat = leaf.reshape(leaf.shape[0], -1)
    return ((flat - mean) * scale).reshape(leaf.shape)


def apply_standardizer(stats: Mapping[str, Any], x: Any) -> Any:
    """``x`` with :func:`fit_standardizer`'s statistics applied to the leaves they cover
    (a dict's standardized leaves keep their dtype; the others are returned as they are)."""
    if not stats:
        return x
    if not is_tree(x):
        return _standardize_leaf(x, stats["mean"], stats["scale"])

    def one(mean, scale, leaf):
        if mean is None:
            return leaf
        return _standardize_leaf(leaf, mean, scale).astype(leaf.dtype)

    return jax.tree_util.tree_map(one, stats["mean"], stats["scale"], x,
                                  is_leaf=lambda v: v is None)
