"""Tests for jaxtune.space: validation, unit-cube encoding, sampling, grids, serialization."""

import json
import math
import pickle

import chex
import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxtune.space import Choice, Fixed, Float, Int, Space


def make_space() -> Space:
    return Space(
        {
            "learning_rate": Float(1e-4, 1e-1, log=True),
            "dropout": Float(0.0, 0.5),
            "depth": Int(1, 3),
            "steps": Int(1, 1000, log=True),
            "width": Choice([64, 128]),
            "momentum": Choice([0.8, 0.9, 0.99], static=False),
            "optimizer": Fixed("adamw"),
        }
    )


# ----------------------------------------------------------------------------------------------
# Construction and validation


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Float(1.0, 1.0), "low"),
        (lambda: Float(2.0, 1.0), "low"),
        (lambda: Float(0.0, math.inf), "high"),
        (lambda: Float(math.nan, 1.0), "low"),
        (lambda: Float(0.0, 1.0, log=True), "low"),
        (lambda: Float(-1.0, 1.0, log=True), "log"),
        (lambda: Int(3, 3), "low"),
        (lambda: Int(5, 1), "high"),
        (lambda: Int(0.5, 3), "Int.low"),
        (lambda: Int(1, 3.5), "Int.high"),
        (lambda: Int(0, 8, log=True), "low"),
        (lambda: Int(1, math.inf), "Int.high"),
        (lambda: Choice([]), "values"),
        (lambda: Choice([1, 2, 1]), "duplicate"),
        (lambda: Choice(["a", "b"], static=False), "static=False"),
        (lambda: Choice([0.1, None], static=False), "dynamic"),
        (lambda: Choice([True, False], static=False), "dynamic"),
        (lambda: Choice([1.0, math.inf], static=False), "finite"),
        (lambda: Choice([math.nan]), "NaN"),
        (lambda: Fixed(math.nan), "NaN"),
    ],
)
def test_param_value_errors_name_the_field(build, field):
    with pytest.raises(ValueError, match=field):
        build()


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Float("0.1", 1.0), "Float.low"),
        (lambda: Float(0.0, None), "Float.high"),
        (lambda: Float(True, 2.0), "Float.low"),
        (lambda: Float(0.0, 1.0, log="yes"), "Float.log"),
        (lambda: Float(0.0, 1.0, static=1), "Float.static"),
        (lambda: Int("1", 3), "Int.low"),
        (lambda: Int(1, 3, log=None), "Int.log"),
        (lambda: Choice("abc"), "Choice.values"),
        (lambda: Choice(64), "Choice.values"),
        (lambda: Choice({1, 2}), "Choice.values"),
        (lambda: Choice([1, 2], static="no"), "Choice.static"),
    ],
)
def test_param_type_errors_name_the_field(build, field):
    with pytest.raises(TypeError, match=field):
        build()


def test_params_normalize_values():
    assert Float(0, 1) == Float(0.0, 1.0)
    assert isinstance(Float(0, 1).low, float)
    assert Int(np.int64(1), 4.0) == Int(1, 4)
    assert type(Int(1, 4.0).high) is int
    assert Choice([[64, 64], [128]]).values == ((64, 64), (128,))
    assert Choice((np.int32(1), 2)).values == (1, 2)
    assert type(Choice((np.int32(1), 2)).values[0]) is int
    assert Fixed([1, [2, 3]]).value == (1, (2, 3))
    assert Choice([0, False]).values == (0, False)  # a bool is not a duplicate of 0
    hash(Float(0, 1))
    hash(Choice([[1], [2]]))
    with pytest.raises(AttributeError):
        Float(0, 1).low = 2.0  # frozen


def test_space_errors():
    with pytest.raises(ValueError, match="empty"):
        Space({})
    with pytest.raises(ValueError, match="name 3"):
        Space({3: Float(0, 1)})
    with pytest.raises(ValueError, match="name ''"):
        Space({"": Float(0, 1)})
    with pytest.raises(TypeError, match=r"'lr'.*Fixed"):
        Space({"lr": 0.1})
    with pytest.raises(TypeError, match="mapping"):
        Space([("lr", Float(0, 1))])


def test_space_is_an_immutable_mapping_in_canonical_order():
    space = make_space()
    # The names sorted, whatever order they were given in (make_space gives another).
    assert space.names == (
        "depth",
        "dropout",
        "learning_rate",
        "momentum",
        "optimizer",
        "steps",
        "width",
    )
    assert list(space) == list(space.names)
    assert len(space) == 7
    assert space["depth"] == Int(1, 3)
    assert "width" in space and "nope" not in space
    with pytest.raises(KeyError, match="nope"):
        space["nope"]
    assert space.static_names == ("depth", "optimizer", "steps", "width")
    assert space.dynamic_names == ("dropout", "learning_rate", "momentum")
    assert space.searchable_names == (
        "depth",
        "dropout",
        "learning_rate",
        "momentum",
        "steps",
        "width",
    )
    assert space.dim == 6
    with pytest.raises(AttributeError):
        space.foo = 1
    with pytest.raises(TypeError):
        space["depth"] = Int(1, 4)
    assert space == make_space() and hash(space) == hash(make_space())
    reordered = Space(dict(reversed(list(space.items()))))
    # Key order is not part of a space: the same columns, draws and grid, so equal.
    assert space == reordered and hash(space) == hash(reordered)
    assert reordered.names == space.names
    assert pickle.loads(pickle.dumps(space)) == space
    assert Space(space) == space
    assert repr(space).startswith("Space({'depth': Int(low=1")


def test_validate_config():
    space = make_space()
    good = {
        "learning_rate": 0.01,
        "dropout": 0.5,
        "depth": 2,
        "steps": 10,
        "width": 64,
        "momentum": 0.9,
        "optimizer": "adamw",
    }
    space.validate_config(good)
    space.validate_config({**good, "depth": np.int64(3), "learning_rate": np.float32(0.01)})
    with pytest.raises(ValueError, match=r"missing.*'width'"):
        space.validate_config({k: v for k, v in good.items() if k != "width"})
    with pytest.raises(ValueError, match="'extra'"):
        space.validate_config({**good, "extra": 1})
    with pytest.raises(ValueError, match=r"'learning_rate'.*outside"):
        space.validate_config({**good, "learning_rate": 0.5})
    with pytest.raises(ValueError, match="'dropout'"):
        space.validate_config({**good, "dropout": math.nan})
    with pytest.raises(ValueError, match=r"'depth'.*outside"):
        space.validate_config({**good, "depth": 4})
    with pytest.raises(TypeError, match="'depth'"):
        space.validate_config({**good, "depth": 2.0})
    with pytest.raises(TypeError, match="'learning_rate'"):
        space.validate_config({**good, "learning_rate": "0.01"})
    with pytest.raises(ValueError, match=r"'width'.*choices"):
        space.validate_config({**good, "width": 32})
    with pytest.raises(ValueError, match=r"'optimizer'.*Fixed"):
        space.validate_config({**good, "optimizer": "sgd"})
    with pytest.raises(TypeError, match="mapping"):
        space.validate_config([1, 2])


def test_validate_config_list_values_match_tuples():
    space = Space({"hidden_sizes": Choice([[64, 64], [128]]), "shape": Fixed([1, 2])})
    space.validate_config({"hidden_sizes": [64, 64], "shape": [1, 2]})
    with pytest.raises(ValueError, match="'hidden_sizes'"):
        space.validate_config({"hidden_sizes": [64], "shape": [1, 2]})


# ----------------------------------------------------------------------------------------------
# Encoding and decoding


def test_decode_edges_and_types():
    space = make_space()
    low, high = space.decode(np.array([[0.0] * 6, [1.0] * 6]))
    assert low == {
        "learning_rate": 1e-4,
        "dropout": 0.0,
        "depth": 1,
        "steps": 1,
        "width": 64,
        "momentum": 0.8,
        "optimizer": "adamw",
    }
    assert high == {
        "learning_rate": 0.1,
        "dropout": 0.5,
        "depth": 3,
        "steps": 1000,
        "width": 128,
        "momentum": 0.99,
        "optimizer": "adamw",
    }
    assert type(low["learning_rate"]) is float and type(low["depth"]) is int
    # Out-of-cube points are clipped.
    assert space.decode(np.full((1, 6), 7.0)) == [high]
    assert space.decode(np.full((1, 6), -7.0)) == [low]
    assert space.decode(np.zeros((0, 6))) == []
    with pytest.raises(ValueError, match=r"\[num, 6\]"):
        space.decode(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="non-finite"):
        space.decode(np.full((1, 6), np.nan))


def test_float_decode_linear_and_log():
    space = Space({"a": Float(2.0, 4.0), "b": Float(1e-4, 1.0, log=True)})
    (config,) = space.decode(np.array([[0.25, 0.5]]))
    np.testing.assert_allclose(config["a"], 2.5, rtol=1e-12)
    np.testing.assert_allclose(config["b"], 1e-2, rtol=1e-12)


def test_int_rounding_and_bounds():
    space = Space({"n": Int(1, 4)})
    # Each integer owns an equal quarter of [0, 1].
    u = np.array([[0.0], [0.24], [0.26], [0.49], [0.51], [0.74], [0.76], [1.0]])
    assert [c["n"] for c in space.decode(u)] == [1, 1, 2, 2, 3, 3, 4, 4]
    chex.assert_trees_all_close(
        space.encode([{"n": v} for v in (1, 2, 3, 4)])[:, 0],
        np.array([0.125, 0.375, 0.625, 0.875]),
        atol=1e-12,
    )
    log_space = Space({"n": Int(1, 1000, log=True)})
    values = [c["n"] for c in log_space.decode(np.linspace(0, 1, 101)[:, None])]
    assert min(values) == 1 and max(values) == 1000
    assert all(isinstance(v, int) for v in values)
    assert values == sorted(values)


def test_choice_bins():
    space = Space({"c": Choice(["a", "b", "c"])})
    u = np.array([[0.0], [0.33], [0.34], [0.66], [0.67], [1.0]])
    assert [c["c"] for c in space.decode(u)] == ["a", "a", "b", "b", "c", "c"]
    chex.assert_trees_all_close(
        space.encode([{"c": "a"}, {"c": "b"}, {"c": "c"}])[:, 0],
        np.array([1 / 6, 0.5, 5 / 6]),
        atol=1e-12,
    )


def assert_configs_match(space, actual, expected):
    """Exact for Int/Choice/Fixed, to float round-off for Float."""
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert got.keys() == want.keys()
        for name, param in space.items():
            if isinstance(param, Float):
                scale = max(abs(param.low), abs(param.high))
                np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=1e-12 * scale)
            else:
                assert got[name] == want[name] and type(got[name]) is type(want[name]), name


def test_round_trip_sampled_configs():
    space = make_space()
    configs = space.sample(jax.random.PRNGKey(0), 64)
    u = space.encode(configs)
    chex.assert_shape(u, (64, space.dim))
    assert u.dtype == np.float64
    assert np.all((u >= 0) & (u <= 1))
    assert_configs_match(space, space.decode(u), configs)


def test_encode_decode_float_columns_close():
    space = Space({"a": Float(-3.0, 5.0), "b": Float(1e-6, 10.0, log=True)})
    u = np.random.default_rng(0).uniform(size=(50, 2))
    chex.assert_trees_all_close(space.encode(space.decode(u)), u, atol=1e-12)


def test_encode_validates():
    space = make_space()
    with pytest.raises(ValueError, match="missing"):
        space.encode([{"learning_rate": 0.1}])
    with pytest.raises(TypeError, match="list of configs"):
        space.encode({"learning_rate": 0.1})
    chex.assert_shape(space.encode([]), (0, 6))


def test_fixed_only_space_has_dim_zero():
    space = Space({"optimizer": Fixed("sgd"), "width": Fixed(32)})
    assert space.dim == 0
    assert space.sample(jax.random.PRNGKey(0), 3) == [{"optimizer": "sgd", "width": 32}] * 3
    assert space.grid() == [{"optimizer": "sgd", "width": 32}]
    chex.assert_shape(space.encode(space.grid()), (1, 0))


# ----------------------------------------------------------------------------------------------
# Sampling


def test_sample_is_deterministic_given_key():
    space = make_space()
    a = space.sample(jax.random.PRNGKey(3), 10)
    assert a == space.sample(jax.random.PRNGKey(3), 10)
    assert a != space.sample(jax.random.PRNGKey(4), 10)
    assert a == space.sample(jax.random.key(3), 10)  # typed keys work too
    assert space.sample(jax.random.PRNGKey(3), 0) == []
    for config in a:
        space.validate_config(config)
    with pytest.raises(ValueError, match="num"):
        space.sample(jax.random.PRNGKey(3), -1)


def test_log_sampling_is_uniform_in_log_space():
    space = Space({"lr": Float(1e-6, 1.0, log=True), "x": Float(0.0, 10.0)})
    configs = space.sample(jax.random.PRNGKey(0), 4000)
    log_lr = np.log10([c["lr"] for c in configs])
    x = np.array([c["x"] for c in configs])
    # Log-uniform on [1e-6, 1]: median of log10 is -3, quartiles -4.5 and -1.5.
    np.testing.assert_allclose(np.median(log_lr), -3.0, atol=0.15)
    np.testing.assert_allclose(np.quantile(log_lr, [0.25, 0.75]), [-4.5, -1.5], atol=0.15)
    np.testing.assert_allclose(np.median(x), 5.0, atol=0.3)
    assert log_lr.min() >= -6.0 and log_lr.max() <= 0.0


def test_int_sampling_covers_every_value_evenly():
    space = Space({"n": Int(1, 4)})
    values = np.array([c["n"] for c in space.sample(jax.random.PRNGKey(1), 4000)])
    counts = np.bincount(values, minlength=5)[1:]
    np.testing.assert_allclose(counts / len(values), np.full(4, 0.25), atol=0.03)


# ----------------------------------------------------------------------------------------------
# Grids


def test_grid_sizes_and_values():
    space = Space(
        {
            "lr": Float(1e-4, 1e-0, log=True),
            "dropout": Float(0.0, 0.4),
            "width": Choice([64, 128]),
            "optimizer": Fixed("adam"),
        }
    )
    grid = space.grid(num_float_points=5)
    assert len(grid) == 5 * 5 * 2
    np.testing.assert_allclose(
        sorted({c["lr"] for c in grid}), [1e-4, 1e-3, 1e-2, 1e-1, 1.0], rtol=1e-12
    )
    np.testing.assert_allclose(
        sorted({c["dropout"] for c in grid}), [0.0, 0.1, 0.2, 0.3, 0.4], atol=1e-12
    )
    assert {c["optimizer"] for c in grid} == {"adam"}
    # Cartesian product in the order of names: the last name varies fastest.
    assert [c["width"] for c in grid[:4]] == [64, 128, 64, 128]
    assert grid[0]["lr"] == 1e-4 and grid[-1]["lr"] == 1.0
    for config in grid:
        space.validate_config(config)
    assert len(space.grid(num_float_points=2)) == 2 * 2 * 2
    assert len(space.grid(num_float_points=1)) == 2


def test_grid_single_point_is_the_centre():
    space = Space({"lr": Float(1e-4, 1e-2, log=True), "x": Float(0.0, 1.0), "n": Int(1, 5)})
    (config,) = space.grid(num_float_points=1)
    np.testing.assert_allclose(config["lr"], 1e-3, rtol=1e-12)
    np.testing.assert_allclose(config["x"], 0.5, rtol=1e-12)
    assert config["n"] == 3


def test_grid_int_axes_are_rounded_and_deduplicated():
    assert [c["n"] for c in Space({"n": Int(1, 3)}).grid(5)] == [1, 2, 3]
    assert [c["n"] for c in Space({"n": Int(0, 8)}).grid(5)] == [0, 2, 4, 6, 8]
    assert [c["n"] for c in Space({"n": Int(1, 1000, log=True)}).grid(4)] == [1, 10, 100, 1000]
    assert [c["n"] for c in Space({"n": Int(1, 4, log=True)}).grid(10)] == [1, 2, 3, 4]


def test_grid_errors():
    space = Space({f"x{i}": Float(0.0, 1.0) for i in range(10)})
    with pytest.raises(ValueError, match="num_float_points"):
        space.grid(num_float_points=0)
    with pytest.raises(ValueError, match="max_size"):
        space.grid(num_float_points=5)  # 5**10 configs
    assert len(space.grid(num_float_points=2)) == 2**10


# ----------------------------------------------------------------------------------------------
# Static groups


def test_static_key_groups_configs():
    space = Space(
        {
            "learning_rate": Float(1e-4, 1e-1, log=True),
            "width": Choice([64, 128]),
            "hidden_sizes": Choice([[32], [32, 32]]),
            "optimizer": Fixed("adam"),
        }
    )
    configs = space.sample(jax.random.PRNGKey(0), 64)
    groups: dict[tuple, list[int]] = {}
    for i, config in enumerate(configs):
        groups.setdefault(space.static_key(config), []).append(i)
    assert len(groups) == 4
    for key, indices in groups.items():
        assert [name for name, _ in key] == ["hidden_sizes", "optimizer", "width"]
        for i in indices:
            assert all(configs[i][name] == value for name, value in key)
    hash(tuple(groups))
    # The learning rate is dynamic: it never splits a group.
    config = configs[0]
    assert space.static_key(config) == space.static_key({**config, "learning_rate": 0.05})
    assert space.static_key({**config, "hidden_sizes": [32]}) == space.static_key(
        {**config, "hidden_sizes": (32,)}
    )
    with pytest.raises(ValueError, match="'width'"):
        space.static_key({"learning_rate": 0.1})


# ----------------------------------------------------------------------------------------------
# Serialization


SPEC = {
    "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "width": {"type": "choice", "values": [64, 128]},
    "momentum": {"type": "choice", "values": [0.8, 0.9], "static": False},
    "depth": {"type": "int", "low": 1, "high": 3},
    "hidden_sizes": {"type": "fixed", "value": [64, 64]},
    "optimizer": "adamw",
    "use_bias": True,
}


def test_from_dict():
    space = Space.from_dict(SPEC)
    assert space["learning_rate"] == Float(1e-4, 1e-1, log=True)
    assert space["width"] == Choice([64, 128])
    assert space["momentum"] == Choice([0.8, 0.9], static=False)
    assert space["depth"] == Int(1, 3)
    assert space["hidden_sizes"] == Fixed((64, 64))
    assert space["optimizer"] == Fixed("adamw")
    assert space["use_bias"] == Fixed(True)
    assert space.names == tuple(sorted(SPEC))  # canonical order, not the spec's
    assert Space.from_dict(space.to_dict()) == space
    assert Space.from_dict({"lr": Float(0, 1)})["lr"] == Float(0, 1)


def test_to_dict_is_json_ready():
    space = Space.from_dict(SPEC)
    data = space.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["optimizer"] == "adamw"
    assert data["hidden_sizes"] == {"type": "fixed", "value": [64, 64]}
    assert data["depth"] == {"type": "int", "low": 1, "high": 3, "log": False, "static": True}


@pytest.mark.parametrize(
    ("spec", "exc", "match"),
    [
        (
            {"lr": {"type": "float", "low": 0.1, "hgh": 1.0}},
            ValueError,
            r"'lr'.*'hgh'.*allowed keys: type, low, high, log, static",
        ),
        (
            {"lr": {"type": "floaty", "low": 0.1, "high": 1.0}},
            ValueError,
            r"'lr'.*'floaty'.*'float', 'int', 'choice', 'fixed'",
        ),
        ({"lr": {"low": 0.1, "high": 1.0}}, ValueError, r"'lr'.*no 'type'"),
        ({"lr": {"type": "float", "low": 0.1}}, ValueError, r"'lr'.*'high'"),
        ({"w": {"type": "choice"}}, ValueError, r"'w'.*'values'"),
        (
            {"w": {"type": "fixed", "value": 1, "log": False}},
            ValueError,
            r"'w'.*'log'.*allowed keys: type, value, static",
        ),
        ({"lr": {"type": "float", "low": 1.0, "high": 0.1}}, ValueError, r"'lr'.*low"),
        ({"lr": {"type": "float", "low": "a", "high": 0.1}}, TypeError, r"'lr'.*Float.low"),
        ({"w": {"type": "choice", "values": []}}, ValueError, r"'w'.*empty"),
        ({"w": [64, 128]}, ValueError, r"'w'.*choice"),
        ({}, ValueError, "empty"),
        ({1: "x"}, ValueError, "name 1"),
    ],
)
def test_from_dict_errors(spec, exc, match):
    with pytest.raises(exc, match=match):
        Space.from_dict(spec)


def test_from_dict_rejects_non_mapping():
    with pytest.raises(TypeError, match="mapping"):
        Space.from_dict([1, 2])


def test_from_file_json(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps(SPEC))
    space = Space.from_file(path)
    assert space == Space.from_dict(SPEC)
    out = tmp_path / "out.json"
    out.write_text(json.dumps(space.to_dict()))
    assert Space.from_file(str(out)) == space


def test_from_file_yaml(tmp_path):
    yaml = pytest.importorskip("yaml")
    path = tmp_path / "space.yaml"
    path.write_text(
        "learning_rate: {type: float, low: 1e-4, high: 1e-1, log: true}\n"
        "dropout: {type: float, low: 0.0, high: 0.5}\n"
        "width: {type: choice, values: [64, 128]}\n"
        "momentum: {type: choice, values: [0.8, 0.9], static: false}\n"
        "depth: {type: int, low: 1, high: 3}\n"
        "hidden_sizes: {type: fixed, value: [64, 64]}\n"
        "optimizer: adamw\n"
        "use_bias: true\n"
    )
    space = Space.from_file(path)
    assert space == Space.from_dict(SPEC)  # 1e-4 read as a float, not a string
    out = tmp_path / "out.yml"
    out.write_text(yaml.safe_dump(space.to_dict(), sort_keys=False))
    assert Space.from_file(out) == space
    assert yaml.safe_load("x: 1e-4") == {"x": "1e-4"}  # PyYAML's own loader is untouched


def test_from_file_errors(tmp_path):
    bad_suffix = tmp_path / "space.txt"
    bad_suffix.write_text("{}")
    with pytest.raises(ValueError, match=r"\.json, \.yaml or \.yml"):
        Space.from_file(bad_suffix)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Space.from_file(bad_json)
    not_mapping = tmp_path / "list.json"
    not_mapping.write_text("[1, 2]")
    with pytest.raises(ValueError, match="mapping"):
        Space.from_file(not_mapping)
    bad_param = tmp_path / "param.json"
    bad_param.write_text(json.dumps({"lr": {"type": "float", "low": 0, "high": 1, "lg": True}}))
    with pytest.raises(ValueError, match=r"param\.json.*'lr'.*'lg'"):
        Space.from_file(bad_param)
    with pytest.raises(FileNotFoundError):
        Space.from_file(tmp_path / "missing.json")


def test_from_file_yaml_without_pyyaml(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "yaml":
            raise ImportError("no yaml")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    path = tmp_path / "space.yaml"
    path.write_text("optimizer: adam\n")
    with pytest.raises(ImportError, match="pip install pyyaml"):
        Space.from_file(path)


# ----------------------------------------------------------------------------------------------
# Property test


@st.composite
def param_specs(draw):
    kind = draw(st.sampled_from(["float", "float_log", "int", "int_log", "choice", "fixed"]))
    if kind in ("float", "float_log"):
        low = draw(st.floats(1e-6 if kind == "float_log" else -1e6, 1e6, allow_nan=False))
        width = draw(st.floats(1e-3, 1e6, allow_nan=False))
        return Float(low, low + width, log=kind == "float_log", static=draw(st.booleans()))
    if kind in ("int", "int_log"):
        low = draw(st.integers(1 if kind == "int_log" else -1000, 1000))
        return Int(low, low + draw(st.integers(1, 10_000)), log=kind == "int_log")
    if kind == "choice":
        values = draw(
            st.lists(
                st.one_of(st.integers(-100, 100), st.text(max_size=3)),
                min_size=1,
                max_size=6,
                unique=True,
            )
        )
        return Choice(values)
    return Fixed(draw(st.one_of(st.integers(), st.text(max_size=5))))


@settings(max_examples=60, deadline=None)
@given(
    specs=st.dictionaries(st.text(min_size=1, max_size=8), param_specs(), min_size=1, max_size=5),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_round_trip(specs, seed):
    space = Space(specs)
    assert Space.from_dict(json.loads(json.dumps(space.to_dict()))) == space
    # Uniform points in the cube (numpy here keeps the test free of per-shape JAX compiles).
    u = np.random.default_rng(seed).uniform(size=(8, space.dim))
    configs = space.decode(u)
    for config in configs:
        space.validate_config(config)
    encoded = space.encode(configs)
    assert np.all((encoded >= 0) & (encoded <= 1))
    assert_configs_match(space, space.decode(encoded), configs)
    assert_configs_match(space, space.decode(space.encode(space.decode(encoded))), configs)


# ----------------------------------------------------------------------------------------------
# Dynamic Fixed and int seeds


def test_fixed_can_be_dynamic():
    space = Space({"learning_rate": Fixed(0.01, static=False), "b1": Fixed(1, static=False),
                   "optimizer": Fixed("adam"), "width": Choice([8, 16])})
    assert space.dynamic_names == ("b1", "learning_rate")
    assert space.static_names == ("optimizer", "width")
    assert space.searchable_names == ("width",)  # a Fixed is never searched, dynamic or not
    configs = space.decode(np.array([[0.2], [0.9]]))
    assert [c["learning_rate"] for c in configs] == [0.01, 0.01]
    assert space.static_key(configs[0]) == (("optimizer", "adam"), ("width", 8))
    assert Fixed(0.5) == Fixed(0.5, static=True) != Fixed(0.5, static=False)
    assert Fixed("adam").static


@pytest.mark.parametrize("value", ["adam", True, None, [1, 2], math.inf])
def test_dynamic_fixed_needs_a_finite_number(value):
    with pytest.raises(ValueError, match=r"Fixed\.value.*static=True"):
        Fixed(value, static=False)


def test_fixed_static_must_be_a_bool():
    with pytest.raises(TypeError, match=r"Fixed\.static must be a bool"):
        Fixed(0.1, static="no")


def test_dynamic_fixed_in_the_file_schema(tmp_path):
    spec = {"learning_rate": {"type": "fixed", "value": 0.01, "static": False},
            "optimizer": "sgd", "width": {"type": "fixed", "value": 8, "static": True}}
    space = Space.from_dict(spec)
    assert space["learning_rate"] == Fixed(0.01, static=False)
    assert space["width"] == Fixed(8)
    assert space.to_dict()["learning_rate"] == {"type": "fixed", "value": 0.01, "static": False}
    assert space.to_dict()["width"] == 8  # static constants keep their short form
    path = tmp_path / "space.json"
    path.write_text(json.dumps(space.to_dict()))
    assert Space.from_file(path) == space
    yaml = pytest.importorskip("yaml")
    path = tmp_path / "space.yaml"
    path.write_text("learning_rate: {type: fixed, value: 1e-2, static: false}\noptimizer: sgd\n")
    assert Space.from_file(path)["learning_rate"] == Fixed(0.01, static=False)
    assert yaml  # imported only to skip without PyYAML
    with pytest.raises(ValueError, match=r"'optimizer'.*static=True"):
        Space.from_dict({"optimizer": {"type": "fixed", "value": "sgd", "static": False}})


def test_sample_accepts_an_int_seed():
    space = Space({"learning_rate": Float(1e-4, 1e-1, log=True), "width": Choice([64, 128])})
    assert space.sample(3, 5) == space.sample(jax.random.PRNGKey(3), 5)
    assert space.sample(np.int64(3), 5) == space.sample(3, 5)
    assert space.sample(3, 5) != space.sample(4, 5)
    for bad in (True, 0.5, "0"):
        with pytest.raises(TypeError, match="PRNG key or an int seed"):
            space.sample(bad, 2)
