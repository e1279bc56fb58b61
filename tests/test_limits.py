"""Bad input that used to crash, hang or pass silently: refused quickly, naming the field.

Space files (duplicate keys, deep nesting, YAML alias bombs), huge Choices and Int bounds,
seeds, step counts and populations beyond what JAX or the host can hold, and values built as
integers that are not integers (issue 11).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import jaxtune as jt
from jaxtune import engine, limits
from jaxtune.space import Choice, Fixed, Float, Int, Space

# --------------------------------------------------------------------------- space files


def test_duplicate_keys_in_a_json_space_file_are_named(tmp_path):
    path = tmp_path / "space.json"
    path.write_text('{"width": {"type": "choice", "values": [8, 16]}, "optimizer": "adam",'
                    ' "width": 32}')
    with pytest.raises(ValueError, match=r"space\.json.*'width' is given twice"):
        Space.from_file(path)
    # Inside a parameter's spec too.
    path.write_text('{"lr": {"type": "float", "low": 0.1, "high": 1.0, "low": 0.5}}')
    with pytest.raises(ValueError, match="'low' is given twice"):
        Space.from_file(path)


def test_duplicate_keys_in_a_yaml_space_file_are_named(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "space.yaml"
    path.write_text("width: 8\noptimizer: adam\nwidth: 16\n")
    with pytest.raises(ValueError, match=r"(?s)space\.yaml.*'width' is given twice.*line 3"):
        Space.from_file(path)
    # A merge key may still be overridden explicitly, as YAML intends.
    path.write_text(
        "base: &base {type: float, low: 0.001, high: 0.1}\n"
        "learning_rate: {<<: *base, log: true}\n"
        "weight_decay: {<<: *base, low: 0.0001}\n"
    )
    space = Space.from_file(path)
    assert space["learning_rate"] == Float(0.001, 0.1, log=True)
    assert space["weight_decay"] == Float(0.0001, 0.1)


def _alias_bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    lines.append(f"values: {{type: choice, values: *a{levels - 1}}}")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_quickly(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb())
    assert len(path.read_text()) < 700  # 9**9 values once expanded
    started = time.perf_counter()
    with pytest.raises(ValueError, match=r"aliases expand to .* more than 100000"):
        Space.from_file(path)
    assert time.perf_counter() - started < 1.0
    # A few aliases are fine.
    path.write_text("lr: &lr {type: float, low: 0.001, high: 0.1}\nwd: *lr\n")
    assert Space.from_file(path)["wd"] == Float(0.001, 0.1)


def test_too_deep_nesting_is_a_value_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text('{"x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ValueError, match="nested too deeply"):
        Space.from_file(path)


# --------------------------------------------------------------------------- space values


def test_a_huge_choice_is_checked_in_linear_time():
    started = time.perf_counter()
    choice = Choice(list(range(100_000)))
    space = Space({"x": choice})
    configs = [{"x": v} for v in range(0, 100_000, 7)]
    space.encode(configs)  # one lookup per config, not a scan
    assert time.perf_counter() - started < 3.0
    with pytest.raises(ValueError, match="duplicate value 5"):
        Choice([*range(100_000), 5])
    # The equality of duplicates is unchanged: 1 == 1.0, but True is not 1.
    with pytest.raises(ValueError, match="duplicate"):
        Choice([1, 1.0])
    assert Choice([1, True, 0, False]).values == (1, True, 0, False)
    assert Choice([(1, 2), [1, 2.5]]).index([1, 2.5]) == 1
    with pytest.raises(ValueError, match="duplicate"):
        Choice([{"a": 1}, {"a": 1}])  # unhashable values are still compared


def test_int_bounds_beyond_the_exact_float_range_are_named():
    with pytest.raises(ValueError, match=r"Int.low = 10{29} is outside the supported integer "
                                         r"range \[-2\*\*53, 2\*\*53\]"):
        Int(10**29, 10**30)
    with pytest.raises(ValueError, match=r"Int.high .* supported integer range"):
        Int(0, 2**53 + 1)
    assert Int(-(2**53), 2**53).high == 2**53
    with pytest.raises(ValueError, match="not an integer"):
        Int(0.5, 3)


# --------------------------------------------------------------------------- limits


def test_check_seed_and_int32():
    limits.check_seed("--seed", 0)
    limits.check_seed("--seed", 2**32 - 1)
    for bad in (2**32, 2**70, -1):
        with pytest.raises(ValueError, match=r"--seed = .* is outside \[0, 4294967295\]"):
            limits.check_seed("--seed", bad)
    with pytest.raises(ValueError, match=r"seeds = 2147483648 is outside \[0, 2147483647\]"):
        limits.check_seed("seeds", 2**31, limits.MAX_MEMBER_SEED)
    limits.check_int32("num_steps", 2**31 - 1)
    with pytest.raises(ValueError, match="num_steps = 2147483652 is above 2147483647"):
        limits.check_int32("num_steps", 2147483652)


def test_check_population():
    limits.check_population("num_configs", 1000, 5)
    with pytest.raises(ValueError, match=r"num_configs: 1000000000000 members .* more than "
                                         "2147483647"):
        limits.check_population("num_configs", 10**12, 5)
    with pytest.raises(ValueError, match=r"num_configs: 1000000 members .* need at least "
                                         r"1\.\d GiB of host memory"):
        limits.check_population("num_configs", 10**6, 2, memory_bytes=2**29)


# --------------------------------------------------------------------------- python API


@pytest.fixture(scope="module")
def split():
    return jt.standardize(jt.train_valid_test_split(jt.load_dataset("wine"), seed=0))


@pytest.fixture(scope="module")
def task(split):
    return jt.classification_task("mlp", num_classes=3, input_shape=split.x_train.shape[1:])


@pytest.fixture
def no_compile(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("compiled before refusing the input")

    monkeypatch.setattr(engine.memory, "member_memory_bytes", refuse)


@pytest.mark.parametrize("name, value", [
    ("width", 8.5), ("width", 8.0), ("depth", True), ("hidden_sizes", (8, 4.5)),
    ("num_steps", 10.5),
])
def test_values_built_as_integers_must_be_integers(task, split, no_compile, name, value):
    config = {"learning_rate": 0.01, "optimizer": "adam", "width": 8, name: value}
    with pytest.raises(ValueError, match=rf"configs\[0\]\['{name}'\] = .* is built as an "
                                         "integer"):
        jt.train(task, [config], split, num_steps=10)


def test_a_fixed_float_width_is_refused_through_tune(task, split, no_compile):
    space = Space({"learning_rate": Float(1e-3, 1e-1), "width": Fixed(8.5),
                   "optimizer": Fixed("adam")})
    with pytest.raises(ValueError, match=r"\['width'\] = 8\.5 is built as an integer"):
        jt.tune(task, split, space, num_configs=2, num_steps=10)
    space = Space({"learning_rate": Float(1e-3, 1e-1), "width": Choice([8, 16.5]),
                   "optimizer": Fixed("adam")})
    with pytest.raises(ValueError, match="built as an integer"):
        jt.tune(task, split, space, jt.grid_search(2), num_configs=4, num_steps=10)


def test_counts_beyond_int32_and_huge_populations_are_refused(task, split, no_compile):
    space = Space({"learning_rate": Float(1e-3, 1e-1), "optimizer": Fixed("adam")})
    with pytest.raises(ValueError, match="num_steps = 2147483652 is above 2147483647"):
        jt.train(task, [{"learning_rate": 0.1, "optimizer": "adam"}], split,
                 num_steps=2147483652)
    with pytest.raises(ValueError, match=r"num_configs: .* members .* host memory"):
        jt.tune(task, split, space, num_configs=2 * 10**9 // 4, seeds=(0, 1, 2, 3),
                num_steps=10)


def test_integers_and_a_full_batch_pass_the_check(task, split, no_compile):
    # Validation passes (the fixture stops the run where memory sizing starts).
    # (hidden_sizes replaces width/depth, so each is given in its own config: a name nothing
    # reads would be refused.)
    common = {"learning_rate": 0.01, "optimizer": "adam", "batch_size": None}
    configs = [{**common, "width": np.int64(8), "depth": 1}, {**common, "hidden_sizes": [8, 4]}]
    with pytest.raises(AssertionError, match="compiled before refusing"):
        jt.train(task, configs, split, num_steps=10)
