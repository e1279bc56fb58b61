"""A user's own data from a file: ``.npz`` arrays or a ``.csv`` table, checked on the host.

:func:`load_data_file` reads the file into a :class:`DataFile` (a :class:`~jaxtune.data.Dataset`
and the validation/test rows the file gives itself); :func:`split_data_file` makes the
:class:`~jaxtune.data.Split` a sweep trains on (the usual random split of the rows, except the
parts the file gives). ``jaxtune sweep --data FILE`` uses both (docs/cli.md).

File layouts:

* ``.npz`` (``numpy.savez``): arrays ``x`` (features ``[rows, ...]``) and ``y`` (labels or
  targets ``[rows]``, or ``[rows, outputs]`` for regression); optionally ``x_valid``/``y_valid``
  and ``x_test``/``y_test`` (both of a pair). A part may instead be a dict of arrays, one key
  per leaf joined by ``/``: ``x/feat`` and ``x/mask`` are ``x = {"feat": ..., "mask": ...}``
  (``x/enc/tokens`` is ``x["enc"]["tokens"]``), all sharing the row count; every part then
  holds the same leaves. No other names (a typo such as ``x_val`` is refused rather than
  ignored). Object arrays are refused (the file is read with ``allow_pickle=False``).
* ``.csv``: a header line of column names, then one row per example, every value a number. The
  target is the column ``target`` (default: the last one), the other columns are the features.

The kind is ``kind`` when given, else inferred from the targets: integer values (an integer
dtype, or a CSV column of whole numbers, none negative) are classification labels
``0..num_classes-1``, anything else regression targets. Every message names the file, the
array or column, and the rows.
"""

from __future__ import annotations

import csv
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jaxtune import data, datatree
from jaxtune.arraychecks import KINDS, check_arrays, check_numeric

__all__ = ["DATA_SUFFIXES", "NPZ_KEYS", "DataFile", "load_data_file", "split_data_file"]

#: File name endings :func:`load_data_file` reads.
DATA_SUFFIXES = (".npz", ".csv")
#: The array names of an ``.npz`` file (``x`` and ``y`` required; the others in pairs).
NPZ_KEYS = ("x", "y", "x_valid", "y_valid", "x_test", "y_test")
#: Row numbers shown in a message before ``...``.
_SHOWN_ROWS = 10


class DataFile(NamedTuple):
    """A data file as read: the rows to split, and the parts the file gives itself.

    Attributes:
      dataset: ``x``/``y`` (the CSV's rows), with its kind and number of classes.
      valid: ``(x_valid, y_valid)`` from the file, or ``None`` (split off ``dataset``).
      test: ``(x_test, y_test)`` from the file, or ``None`` (split off ``dataset``).
    """

    dataset: data.Dataset
    valid: tuple[Any, Any] | None
    test: tuple[Any, Any] | None


def load_data_file(path: str | Path, *, target: str | None = None, kind: str | None = None,
                   num_classes: int | None = None) -> DataFile:
    """Reads and checks a ``.npz`` or ``.csv`` data file (layouts: the module's docstring).

    Args:
      path: the file.
      target: the CSV's target column (default: the last); not for ``.npz``.
      kind: ``"classification"`` or ``"regression"``; default inferred from the targets.
      num_classes: for classification, the number of classes (default ``max(label) + 1``,
        at least 2, over every part).

    Returns:
      The :class:`DataFile`.

    Raises:
      FileNotFoundError: no such file.
      ValueError: a wrong suffix, missing or unknown arrays, a missing target column, a value
        that is not a number (naming the column and row), NaN or inf (naming the rows), parts
        whose example shapes differ, labels outside ``[0, num_classes)``.
      TypeError: an array of a non-numeric dtype.
    """
    file = Path(path)
    if file.suffix.lower() not in DATA_SUFFIXES:
        raise ValueError(f"{str(file)!r} must be a .npz or .csv file (got {file.suffix or 'no'} "
                         "suffix)")
    if not file.is_file():
        raise FileNotFoundError(f"no such file {str(file)!r}" if not file.exists()
                                else f"{str(file)!r} is not a file")
    if file.suffix.lower() == ".csv":
        parts = {"": _read_csv(file, target)}
    else:
        if target is not None:
            raise ValueError(f"{str(file)!r}: a target column is for .csv files; an .npz file "
                             "holds the targets in its array y")
        parts = _read_npz(file)
    for name, (x, y) in parts.items():
        _check_rows(file, name, x, y)
        _check_same_leaves(file, name, x, parts[""][0], "x")
        _check_same_leaves(file, name, y, parts[""][1], "y")
    kind = kind if kind is not None else _infer_kind(y for _, y in parts.values())
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "classification" and not datatree.is_tree(parts[""][1]):
        if num_classes is None:
            num_classes = max(2, *(int(np.max(y)) + 1 for _, y in parts.values()))
        parts = {name: (x, _labels(file, name, y)) for name, (x, y) in parts.items()}
    elif kind == "regression":
        num_classes = None
        parts = {name: (x, _as_float32(y)) for name, (x, y) in parts.items()}
    for name, (part_x, part_y) in parts.items():
        try:
            check_arrays(part_x, part_y, kind, num_classes)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{str(file)!r}: {_names(name)}: {error}") from error
    x, y = parts[""]
    dataset = data.Dataset(_features(x), y, kind, num_classes, file.stem)
    return DataFile(dataset, parts.get("_valid"), parts.get("_test"))


def split_data_file(file: DataFile, *, seed: int = 0, valid_fraction: float = 0.2,
                    test_fraction: float = 0.2) -> data.Split:
    """The train/valid/test split of a :class:`DataFile` (not standardized).

    The parts the file gives are used as they are; the others are split off its rows with
    :func:`jaxtune.data.train_valid_test_split` (``valid_fraction``, ``test_fraction``,
    ``seed``; a part the file gives has fraction 0 there).

    Args:
      file: what :func:`load_data_file` read.
      seed: seed of the random split.
      valid_fraction, test_fraction: shares of the rows for the parts the file does not give.

    Returns:
      The :class:`~jaxtune.data.Split`.
    """
    split = data.train_valid_test_split(
        file.dataset,
        valid_fraction=0.0 if file.valid is not None else valid_fraction,
        test_fraction=0.0 if file.test is not None else test_fraction,
        seed=seed,
    )
    for part, given in (("valid", file.valid), ("test", file.test)):
        if given is not None:
            x, y = given
            split = split._replace(**{f"x_{part}": _features(x), f"y_{part}": y})
    return split


def _names(suffix: str) -> str:
    return f"x{suffix}/y{suffix}"


def _read_npz(file: Path) -> dict[str, tuple[Any, Any]]:
    """The ``.npz`` file's parts: ``{"": (x, y), "_valid": ..., "_test": ...}``, each ``x`` and
    ``y`` an array or (keys ``x/feat``, ``x/mask``) a dict of arrays."""
    try:
        with np.load(file, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (ValueError, EOFError, zipfile.BadZipFile) as error:  # object arrays, not an npz
        raise ValueError(f"{str(file)!r} could not be read as numeric .npz arrays "
                         f"({str(error).splitlines()[0]})") from error
    found = ", ".join(sorted(arrays)) or "no arrays"
    unknown = sorted(name for name in arrays if name.split("/")[0] not in NPZ_KEYS
                     or "" in name.split("/")[1:])
    if unknown:
        raise ValueError(f"{str(file)!r} holds array(s) {', '.join(unknown)} that jaxtune does "
                         f"not read (found: {found}); it reads {', '.join(NPZ_KEYS)}, or "
                         "NAME/KEY for a dict part (x/feat, x/mask)")
    trees = {part: _npz_part(file, part, arrays) for part in NPZ_KEYS}
    missing = [name for name in ("x", "y") if trees[name] is None]
    for suffix in ("_valid", "_test"):
        pair = [f"x{suffix}", f"y{suffix}"]
        if any(trees[name] is not None for name in pair):
            missing += [name for name in pair if trees[name] is None]
    if missing:
        raise ValueError(f"{str(file)!r} has no array {', '.join(missing)} (found: {found}); "
                         "it needs x and y, and x_valid/y_valid, x_test/y_test in pairs")
    return {suffix: (trees[f"x{suffix}"], trees[f"y{suffix}"])
            for suffix in ("", "_valid", "_test") if trees[f"x{suffix}"] is not None}


def _npz_part(file: Path, part: str, arrays: dict[str, np.ndarray]) -> Any:
    """One part (``x``, ``y_valid``...) of an ``.npz``: its array, the dict of its ``part/...``
    arrays, or ``None``."""
    keys = sorted(name for name in arrays if name.split("/")[0] == part and name != part)
    if part in arrays and keys:
        raise ValueError(f"{str(file)!r} holds both {part} and {', '.join(keys)}; a part is one "
                         f"array ({part}) or a dict of arrays ({part}/NAME), not both")
    if not keys:
        return arrays.get(part)
    tree: dict[str, Any] = {}
    for name in keys:
        *inner, last = name.split("/")[1:]
        node = tree
        for key in inner:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ValueError(f"{str(file)!r}: {name} nests under an array of the same name")
        if last in node:
            raise ValueError(f"{str(file)!r}: {name} nests under an array of the same name")
        node[last] = arrays[name]
    return tree


def _leaf_names(tree: Any, part: str) -> list[tuple[str, np.ndarray]]:
    """``(npz key, array)`` of each leaf: ``x``, or ``x/feat`` for a dict part."""
    return [(f"{part}/{name}" if name else part, leaf)
            for _, name, leaf in datatree.leaf_items(tree, part)]


def _check_same_leaves(file: Path, suffix: str, tree: Any, main: Any, root: str) -> None:
    """Every part holds the leaves of ``x``/``y`` with the same shapes after the rows."""
    part = f"{root}{suffix}"
    got = {name[len(part):]: leaf.shape[1:] for name, leaf in _leaf_names(tree, part)}
    want = {name[len(root):]: leaf.shape[1:] for name, leaf in _leaf_names(main, root)}
    if got.keys() != want.keys():
        raise ValueError(f"{str(file)!r}: {part} holds {', '.join(part + k for k in got)} but "
                         f"{root} holds {', '.join(root + k for k in want)}; every part needs "
                         "the same arrays")
    for key, shape in got.items():
        if shape != want[key]:
            raise ValueError(f"{str(file)!r}: {part}{key} has examples of shape {shape} but "
                             f"{root}{key} has {want[key]}; every part needs the same features")


def _features(x: Any) -> Any:
    """Features as float32; a dict's integer and bool leaves (masks, lengths) kept as they are."""
    if not datatree.is_tree(x):
        return x.astype(np.float32)
    return {k: _features(v) if datatree.is_tree(v)
            else v.astype(np.float32) if np.issubdtype(v.dtype, np.floating) else v
            for k, v in x.items()}


def _as_float32(y: Any) -> Any:
    return {k: _as_float32(v) for k, v in y.items()} if datatree.is_tree(y) else \
        y.astype(np.float32)


def _read_csv(file: Path, target: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The CSV's features ``[rows, columns - 1]`` and target column ``[rows]`` (float64)."""
    with file.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise ValueError(f"{str(file)!r} is empty; it needs a header line and rows")
    header = [name.strip() for name in rows[0]]
    if all(_is_number(name) for name in header):
        raise ValueError(f"{str(file)!r} has no header line (its first line is numbers); add "
                         "a line of column names")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise ValueError(f"{str(file)!r}: column name(s) {', '.join(duplicates)} appear more "
                         "than once in the header")
    if len(header) < 2:
        raise ValueError(f"{str(file)!r} has {len(header)} column; it needs feature columns "
                         "and a target column")
    target = header[-1] if target is None else target
    if target not in header:
        raise ValueError(f"{str(file)!r} has no column {target!r} (columns: "
                         f"{', '.join(header)})")
    table = np.empty((len(rows) - 1, len(header)), dtype=np.float64)
    for row, fields in enumerate(rows[1:]):
        if len(fields) != len(header):
            raise ValueError(f"{str(file)!r}: row {row} (line {row + 2}) has {len(fields)} "
                             f"values but the header has {len(header)} columns")
        for column, value in enumerate(fields):
            try:
                table[row, column] = float(value)
            except ValueError:
                raise ValueError(
                    f"{str(file)!r}: column {header[column]!r}, row {row} (line {row + 2}): "
                    f"{value!r} is not a number; every value must be numeric (encode "
                    "categories as numbers)") from None
    index = header.index(target)
    features = np.delete(table, index, axis=1)
    _check_finite(file, table, header)
    return features, table[:, index]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _rows(mask: np.ndarray) -> str:
    rows = np.flatnonzero(mask)
    shown = ", ".join(map(str, rows[:_SHOWN_ROWS]))
    return f"row(s) {shown}" + (f" ... ({rows.size} rows)" if rows.size > _SHOWN_ROWS else "")


def _check_finite(file: Path, table: np.ndarray, header: list[str]) -> None:
    """NaN or inf in a CSV: the first column that holds them, and its rows."""
    bad = ~np.isfinite(table)
    if bad.any():
        column = int(np.flatnonzero(bad.any(axis=0))[0])
        raise ValueError(f"{str(file)!r}: column {header[column]!r} holds NaN or inf in "
                         f"{_rows(bad[:, column])}; remove or impute those rows")


def _check_rows(file: Path, suffix: str, x: Any, y: Any) -> None:
    """Numeric dtypes and no NaN or inf in one part, naming its arrays and rows."""
    for part, tree in ((f"x{suffix}", x), (f"y{suffix}", y)):
        for name, array in _leaf_names(tree, part):
            if array.dtype != np.bool_ or name == part:
                try:
                    check_numeric(array, name)
                except TypeError as error:
                    raise TypeError(f"{str(file)!r}: {error}") from error
            if array.ndim == 0 or array.shape[0] == 0:
                raise ValueError(f"{str(file)!r}: {name} has shape {array.shape}; it needs "
                                 "rows")
            bad = ~np.isfinite(array.reshape(array.shape[0], -1)).all(axis=1)
            if bad.any():
                raise ValueError(f"{str(file)!r}: {name} holds NaN or inf in {_rows(bad)}; "
                                 "remove or impute those rows")


def _infer_kind(targets: Iterable[np.ndarray]) -> str:
    """Classification when every target is a whole number >= 0 (or of an integer dtype)."""
    for y in targets:
        if datatree.is_tree(y):
            return "regression"
        if not (np.issubdtype(y.dtype, np.integer) or np.all(y == np.round(y))) or y.min() < 0:
            return "regression"
    return "classification"


def _labels(file: Path, suffix: str, y: np.ndarray) -> np.ndarray:
    """Classification labels as int32 (whole numbers only, naming the first that is not)."""
    if not np.issubdtype(y.dtype, np.integer):
        whole = y == np.round(y)
        if not whole.all():
            first = int(np.flatnonzero(~whole)[0])
            raise ValueError(f"{str(file)!r}: y{suffix}[{first}] = {y[first].item()!r} is not a "
                             "whole number, but classification labels must be 0..num_classes-1 "
                             "(or use regression)")
    return y.astype(np.int32)
