"""Property-based tests (hypothesis) for jaxtune.space: random space definitions in the file schema.

* Valid definitions (docs/index.md, "The search-space file") are accepted by ``Space.from_dict``,
  survive ``to_dict`` / ``from_dict`` and JSON, and the unit-cube encoding round-trips:
  ``decode(encode(configs)) == configs`` (ints, choices and fixed values exactly, floats to
  1e-9 of the range), and ``encode(decode(u))`` gives back ``u`` for floats and a point of the
  same bin for ints and choices.
* Invalid definitions (empty or inverted ranges, log with ``low <= 0``, unknown or missing keys,
  wrong types, huge or non-finite numbers) raise ``ValueError`` or ``TypeError`` whose message
  names the parameter and the field, never another exception.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxtune.space import Choice, Fixed, Float, Int, Space

# derandomize: every run (CI included) tries the same examples, so a result is reproducible and
# CI cannot fail at random; drop it (or raise max_examples) locally to search further.
SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)

NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
FINITE = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
POSITIVE = st.floats(min_value=1e-12, max_value=1e12, allow_nan=False, allow_infinity=False)
INTS = st.integers(min_value=-(10**6), max_value=10**6)


def _same(a, b) -> bool:
    """Equality as the space defines it: bools never equal numbers."""
    return (type(a) is bool) == (type(b) is bool) and a == b


def _unique(values: list) -> list:
    out: list = []
    for value in values:
        if not any(_same(value, seen) for seen in out):
            out.append(value)
    return out


# --------------------------------------------------------------------------------------------
# Valid definitions


@st.composite
def float_spec(draw):
    log = draw(st.booleans())
    low, high = sorted(draw(st.lists(POSITIVE if log else FINITE, min_size=2, max_size=2,
                                     unique=True)))
    if not low < high:
        high = low + 1.0
    spec = {"type": "float", "low": low, "high": high}
    if log or draw(st.booleans()):
        spec["log"] = log
    if draw(st.booleans()):
        spec["static"] = draw(st.booleans())
    return spec


@st.composite
def int_spec(draw):
    log = draw(st.booleans())
    values = st.integers(1, 10**6) if log else INTS
    low, high = sorted(draw(st.lists(values, min_size=2, max_size=2, unique=True)))
    spec = {"type": "int", "low": low, "high": high}
    if log or draw(st.booleans()):
        spec["log"] = log
    if draw(st.booleans()):
        spec["static"] = draw(st.booleans())
    return spec


SCALARS = st.one_of(
    st.none(), st.booleans(), INTS, FINITE, st.text(max_size=6),
    st.lists(st.integers(1, 512), min_size=1, max_size=3),
)


@st.composite
def choice_spec(draw):
    static = draw(st.booleans())
    pool = st.one_of(INTS, FINITE) if not static else SCALARS
    values = _unique(draw(st.lists(pool, min_size=1, max_size=6)))
    spec = {"type": "choice", "values": values}
    if not static or draw(st.booleans()):
        spec["static"] = static
    return spec


@st.composite
def fixed_spec(draw):
    value = draw(SCALARS)
    if isinstance(value, list) or draw(st.booleans()):
        return {"type": "fixed", "value": value}
    return value  # a bare scalar means Fixed


PARAM_SPEC = st.one_of(float_spec(), int_spec(), choice_spec(), fixed_spec())
SPACE_SPEC = st.dictionaries(NAMES, PARAM_SPEC, min_size=1, max_size=6)


def assert_configs_equal(space: Space, got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert list(a) == list(b) == list(space.names)
        for name, param in space.items():
            if isinstance(param, Float):
                scale = max(abs(param.low), abs(param.high))
                assert math.isclose(a[name], b[name], rel_tol=1e-9, abs_tol=1e-9 * scale), name
                assert type(a[name]) is float
            else:  # ints, choices and fixed values come back exactly, with their type
                assert _same(a[name], b[name]) and type(a[name]) is type(b[name]), name


@SETTINGS
@given(spec=SPACE_SPEC, u=st.lists(st.floats(0.0, 1.0), min_size=6 * 5, max_size=6 * 5))
def test_valid_definitions_are_accepted_and_round_trip(spec, u):
    space = Space.from_dict(spec)
    assert space.names == tuple(sorted(spec))  # canonical order, whatever the spec's
    # the schema round-trips, through JSON too
    assert Space.from_dict(space.to_dict()) == space
    assert Space.from_dict(json.loads(json.dumps(space.to_dict()))) == space

    points = np.asarray(u[: 5 * space.dim], np.float64).reshape(5, space.dim)
    configs = space.decode(points)
    for config in configs:
        space.validate_config(config)
    encoded = space.encode(configs)
    assert encoded.shape == (5, space.dim)
    assert np.all((encoded >= 0.0) & (encoded <= 1.0))
    assert_configs_equal(space, space.decode(encoded), configs)

    for column, name in enumerate(space.searchable_names):
        param = space[name]
        if isinstance(param, Float):  # a float coordinate comes back where it was
            np.testing.assert_allclose(encoded[:, column], points[:, column], atol=1e-6)
        elif isinstance(param, Choice):  # the centre of the chosen value's bin
            k = len(param.values)
            bins = np.minimum(np.floor(points[:, column] * k), k - 1)
            np.testing.assert_allclose(encoded[:, column], (bins + 0.5) / k, rtol=1e-12)


@SETTINGS
@given(spec=SPACE_SPEC)
def test_static_and_dynamic_names_follow_the_schema(spec):
    space = Space.from_dict(spec)
    for name, param_spec in spec.items():
        param = space[name]
        if isinstance(param_spec, dict) and param_spec["type"] != "fixed":
            default = param_spec["type"] != "float"
            assert param.static == param_spec.get("static", default)
        else:
            assert isinstance(param, Fixed)
        assert (name in space.static_names) == param.static
        assert (name in space.dynamic_names) == (not param.static)
    assert space.dim == sum(not isinstance(p, Fixed) for p in space.values())


@SETTINGS
@given(spec=float_spec(), u=st.floats(0.0, 1.0))
def test_float_decode_stays_in_range_and_is_monotone(spec, u):
    param = Space.from_dict({"x": spec})["x"]
    space = Space({"x": param})
    low_config, value, high_config = (
        space.decode(np.array([[0.0], [u], [1.0]]))
    )
    assert low_config["x"] == param.low and high_config["x"] == param.high
    assert param.low <= value["x"] <= param.high


@SETTINGS
@given(spec=int_spec())
def test_every_int_owns_a_bin(spec):
    param = Space.from_dict({"n": spec})["n"]
    space = Space({"n": param})
    values = sorted({param.low, param.high, (param.low + param.high) // 2})
    configs = [{"n": v} for v in values]
    assert [c["n"] for c in space.decode(space.encode(configs))] == values


# --------------------------------------------------------------------------------------------
# Invalid definitions: (spec, words the message must contain)


@st.composite
def inverted_range(draw):
    kind = draw(st.sampled_from(["float", "int"]))
    a = draw(INTS if kind == "int" else FINITE)
    b = draw(st.sampled_from([a, a - 1 if kind == "int" else a - abs(a) - 1.0]))
    return {"type": kind, "low": a, "high": b}, ["low", "high"]


@st.composite
def log_not_positive(draw):
    kind = draw(st.sampled_from(["float", "int"]))
    low = draw(st.integers(-100, 0)) if kind == "int" else draw(st.floats(-1e6, 0.0))
    return {"type": kind, "low": low, "high": draw(st.integers(1, 100)), "log": True}, ["low"]


@st.composite
def unknown_key(draw):
    spec, _ = draw(st.one_of(st.just(({"type": "float", "low": 0.0, "high": 1.0}, None)),
                             st.just(({"type": "int", "low": 0, "high": 3}, None)),
                             st.just(({"type": "choice", "values": [1, 2]}, None)),
                             st.just(({"type": "fixed", "value": 1}, None))))
    key = draw(st.sampled_from(["lo", "hi", "step", "value", "values", "default", "log",
                                "static", "choices"]))
    allowed = {"float": {"low", "high", "log", "static"}, "int": {"low", "high", "log", "static"},
               "choice": {"values", "static"}, "fixed": {"value"}}[spec["type"]]
    if key in allowed:
        key = "q" + key
    return {**spec, key: 1}, [key]


@st.composite
def missing_key(draw):
    kind = draw(st.sampled_from(["float", "int", "choice", "fixed"]))
    required = {"float": ["low", "high"], "int": ["low", "high"], "choice": ["values"],
                "fixed": ["value"]}[kind]
    full = {"float": {"low": 0.0, "high": 1.0}, "int": {"low": 0, "high": 3},
            "choice": {"values": [1]}, "fixed": {"value": 1}}[kind]
    drop = draw(st.sampled_from(required))
    return {"type": kind, **{k: v for k, v in full.items() if k != drop}}, [drop]


WRONG_TYPES = st.one_of(st.text(max_size=3), st.lists(st.integers(), max_size=2),
                        st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
                        st.booleans(), st.none())


@st.composite
def wrong_bound_type(draw):
    kind = draw(st.sampled_from(["float", "int"]))
    field = draw(st.sampled_from(["low", "high"]))
    spec = {"type": kind, "low": 0, "high": 5, field: draw(WRONG_TYPES)}
    return spec, [field]


@st.composite
def bad_number(draw):
    kind = draw(st.sampled_from(["float", "int"]))
    field = draw(st.sampled_from(["low", "high"]))
    value = draw(st.sampled_from([math.inf, -math.inf, math.nan, 10**400, -(10**400)]))
    if kind == "int":
        value = draw(st.sampled_from([value, 0.5, 2.25]))
    return {"type": kind, "low": 0, "high": 5, field: value}, [field]


@st.composite
def wrong_flag(draw):
    kind = draw(st.sampled_from(["float", "int", "choice"]))
    field = "static" if kind == "choice" else draw(st.sampled_from(["log", "static"]))
    base = {"float": {"low": 1.0, "high": 2.0}, "int": {"low": 1, "high": 2},
            "choice": {"values": [1, 2]}}[kind]
    flag = draw(st.one_of(st.sampled_from(["true", "yes", 1, 0, None]), st.lists(st.booleans())))
    return {"type": kind, **base, field: flag}, [field]


@st.composite
def bad_choice(draw):
    values = draw(st.one_of(
        st.just([]),
        st.text(max_size=4),
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
        st.integers(),
        st.just([1, 2, 1]),
        st.just([0.5, math.nan]),
        st.just([[1, 2], [1, 2]]),
    ))
    return {"type": "choice", "values": values}, ["values"]


@st.composite
def bad_dynamic_choice(draw):
    values = draw(st.lists(st.one_of(st.text(min_size=1, max_size=3), st.none(),
                                     st.just(math.inf), st.booleans()), min_size=1, max_size=3))
    values = _unique([1.0, *values])
    if len(values) == 1:
        values.append("x")
    return {"type": "choice", "values": values, "static": False}, ["values"]


@st.composite
def bad_type(draw):
    kind = draw(st.one_of(st.sampled_from(["floats", "integer", "categorical", "", "log"]),
                          st.integers(), st.none(), st.lists(st.integers(), max_size=1)))
    return {"type": kind, "low": 0, "high": 1}, ["type"]


@st.composite
def not_a_spec(draw):
    spec = draw(st.one_of(st.lists(st.integers(), max_size=3),
                          st.dictionaries(st.sampled_from(["low", "high", "values"]),
                                          st.integers(), max_size=2)))
    return spec, ["type"] if isinstance(spec, dict) else []


INVALID = st.one_of(
    inverted_range(), log_not_positive(), unknown_key(), missing_key(), wrong_bound_type(),
    bad_number(), wrong_flag(), bad_choice(), bad_dynamic_choice(), bad_type(), not_a_spec(),
)


@SETTINGS
@given(case=INVALID, name=NAMES, others=st.dictionaries(NAMES, PARAM_SPEC, max_size=3))
def test_invalid_definitions_raise_value_or_type_error_naming_the_field(case, name, others):
    bad, fields = case
    spec = {**{k: v for k, v in others.items() if k != name}, name: bad}
    try:
        Space.from_dict(spec)
    except (ValueError, TypeError) as error:
        message = str(error)
    else:
        pytest.fail(f"accepted an invalid spec: {spec!r}")
    assert repr(name) in message, message
    for field in fields:
        assert field in message, (field, message)


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ([("a", 1)], TypeError),
        ({"": 1.0}, ValueError),
        ({1: 1.0}, ValueError),
        ({}, ValueError),
    ],
)
def test_invalid_top_level(spec, error):
    with pytest.raises(error):
        Space.from_dict(spec)


def _docs_space_example() -> dict:
    """The ```json block under "## The search-space file" of docs/index.md, read from the page."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "index.md").read_text(encoding="utf-8")
    section = text.split("## The search-space file", 1)[1]
    block = re.search(r"^```json\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)
    assert block is not None, "docs/index.md: no ```json block under 'The search-space file'"
    return json.loads(block.group(1))


def test_example_schema_of_the_docs_is_valid():
    """The example of docs/index.md, as a regression anchor for the generators above."""
    space = Space.from_dict(_docs_space_example())
    assert space.dynamic_names == ("b2", "dropout", "l2", "learning_rate")
    assert space["b2"] == Fixed(0.99, static=False)
    assert space["optimizer"] == Fixed("adamw")
    assert space["depth"] == Int(1, 3)
    assert space["width"] == Choice([64, 128])
    assert space["learning_rate"] == Float(1e-4, 1e-1, log=True)


ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(),
                                                         max_size=1),
    st.sampled_from([10**400, -(10**400), np.float32(0.5), np.int64(3)]),
)


@SETTINGS
@given(spec=SPACE_SPEC, u=st.floats(0.0, 1.0), value=ANY_VALUE, data=st.data())
def test_validate_config_accepts_in_space_values_and_rejects_the_rest(spec, u, value, data):
    space = Space.from_dict(spec)
    config = space.decode(np.full((1, space.dim), u))[0]
    name = data.draw(st.sampled_from(space.names))
    config[name] = value
    try:
        space.validate_config(config)
    except (ValueError, TypeError) as error:
        assert repr(name) in str(error), str(error)
    else:  # accepted: the value really is in the space, and it encodes inside the cube
        param = space[name]
        if isinstance(param, Float | Int):
            assert param.low <= value <= param.high
        assert np.all((space.encode([config]) >= 0) & (space.encode([config]) <= 1))


# --------------------------------------------------------------------------------------------
# The same through the command line: one line on stderr, exit status 2, never a traceback


def run_cli_with_space_file(text: str, suffix: str) -> tuple[int, str]:
    import contextlib
    import io
    import tempfile
    from pathlib import Path

    from jaxtune import cli

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"space{suffix}"
        path.write_text(text, encoding="utf-8")
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = cli.main(["sweep", "--dataset", "wine", "--space", str(path),
                               "--out", str(Path(folder) / "out"), "--quiet", "--no-plot"])
    return status, err.getvalue()


def assert_one_line(status: int, err: str, *words: str) -> None:
    lines = err.splitlines()
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("jaxtune: error: "), lines
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])


@settings(max_examples=60, deadline=None, derandomize=True)
@given(case=INVALID, name=NAMES)
def test_cli_invalid_space_file_is_one_line_exit_2(case, name):
    bad, fields = case
    status, err = run_cli_with_space_file(json.dumps({name: bad}), ".json")
    assert_one_line(status, err, "space file", repr(name), *fields)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(text=st.text(max_size=40), suffix=st.sampled_from([".json", ".yaml", ".yml"]))
def test_cli_garbage_space_file_is_one_line_exit_2(text, suffix):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"space{suffix}"
        path.write_text(text, encoding="utf-8")
        try:
            Space.from_file(path)
        except (ValueError, TypeError):
            pass
        else:
            return  # YAML reads some text as a valid space (``a: 1``); that would start a sweep
    status, err = run_cli_with_space_file(text, suffix)
    assert_one_line(status, err, "space")
