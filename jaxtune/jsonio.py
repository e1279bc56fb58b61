"""One JSON encoding for everything jaxtune writes: results, checkpoints, sweep arguments.

Strict JSON has no NaN or infinity, and Python's ``json`` writes them as bare ``NaN`` /
``Infinity`` tokens other readers refuse. jaxtune writes finite floats as they are (``repr``
round-trips every bit) and tags the three non-finite values: ``{"__float__": "nan"}``,
``{"__float__": "inf"}``, ``{"__float__": "-inf"}``. :func:`encode` and :func:`decode` are
inverses (``decode`` returns sequences as lists, or as tuples with ``sequence=tuple``).

:func:`canonical` turns user values (numpy and JAX scalars, arrays, NamedTuples, dataclasses)
into JSON-native Python data first, with an error that names where a value cannot be stored;
:func:`plain` is the lenient form used for hashing configs (it must never change: member keys
derive from it).

This module imports nothing else from jaxtune.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "FLOAT_TAG",
    "NONFINITE_NAMES",
    "canonical",
    "decode",
    "decode_float",
    "encode",
    "encode_float",
    "float_name",
    "plain",
    "to_float",
]

#: The key of a tagged non-finite float.
FLOAT_TAG = "__float__"
#: The names a non-finite float is written as.
NONFINITE_NAMES = ("nan", "inf", "-inf")


def float_name(value: float) -> str:
    """``"nan"``, ``"inf"`` or ``"-inf"`` for a non-finite float."""
    if math.isnan(value):
        return "nan"
    return "inf" if value > 0 else "-inf"


def encode(value: Any) -> Any:
    """Plain data -> strict-JSON data: floats exact, non-finite ones tagged, sequences lists.

    Raises:
      TypeError: for a value that is not plain data (numbers, strings, bools, None, sequences,
        mappings, numpy scalars and arrays).
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {FLOAT_TAG: float_name(value)}
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, np.ndarray):
        return [encode(v) for v in value.tolist()]
    raise TypeError(f"cannot store {type(value).__name__} ({value!r:.60}) as JSON")


def decode(value: Any, sequence: type = list) -> Any:
    """Inverse of :func:`encode`; JSON arrays become ``sequence`` (``list`` or ``tuple``)."""
    if isinstance(value, dict):
        if set(value) == {FLOAT_TAG} and value[FLOAT_TAG] in NONFINITE_NAMES:
            return float(value[FLOAT_TAG])
        return {key: decode(item, sequence) for key, item in value.items()}
    if isinstance(value, list):
        return sequence(decode(item, sequence) for item in value)
    return value


def plain(value: Any) -> Any:
    """Mappings -> dicts with string keys, sequences -> lists, numpy scalars -> Python.

    Lenient (anything else is kept as it is) and frozen: config hashes, hence member keys,
    are computed from ``json.dumps(plain(config), sort_keys=True)``.
    """
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def canonical(value: Any, where: str) -> Any:
    """Returns ``value`` as canonical JSON-native Python data (sequences as tuples).

    Args:
      value: plain data, numpy or JAX values, NamedTuples or dataclasses of those.
      where: names the value in errors, e.g. ``"members[3].config"``.

    Raises:
      TypeError: naming ``where`` for a non-string key or a value that is not data.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, np.generic):
        return canonical(value.item(), where)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return math.nan if math.isnan(value) else float(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"{where}: keys must be strings, got {key!r} ({type(key).__name__}); "
                    "convert the keys with str()"
                )
            out[str(key)] = canonical(item, f"{where}[{key!r}]")
        return out
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return canonical(fields, where)
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return canonical(value._asdict(), where)
    if isinstance(value, list | tuple):
        return tuple(canonical(item, f"{where}[{i}]") for i, item in enumerate(value))
    if hasattr(value, "__array__"):
        return canonical(np.asarray(value).tolist(), where)
    raise TypeError(
        f"{where}: cannot store a value of type {type(value).__name__} ({value!r:.80}); "
        "use plain data (numbers, strings, bools, None, lists, dicts), e.g. space.to_dict()"
    )


def to_float(value: Any, where: str) -> float:
    """Converts a number (Python, numpy or 0-d array) to a Python float; NaN is ``math.nan``."""
    if isinstance(value, str | bytes) or value is None:
        raise TypeError(f"{where}: expected a number, got {value!r}")
    try:
        result = float(value)
    except OverflowError:  # an int of hundreds of digits
        raise ValueError(
            f"{where}: a number of {len(str(abs(value)))} digits, too large for a float64"
        ) from None
    return math.nan if math.isnan(result) else result


def encode_float(value: float) -> float | str:
    """A float for a table cell: finite as is, non-finite as its name."""
    return value if math.isfinite(value) else float_name(value)


def decode_float(value: Any, where: str) -> float:
    """Inverse of :func:`encode_float`, with an error naming ``where`` for anything else."""
    if isinstance(value, str):
        if value not in NONFINITE_NAMES:
            raise ValueError(
                f"{where}: expected a number or one of {NONFINITE_NAMES}, got {value!r}"
            )
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    return to_float(value, where)
