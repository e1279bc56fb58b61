"""Tests of the Task record: declared data fields, their validation, and the data check."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import jaxtune as jt
from jaxtune import task as task_lib


def _functions():
    def init(key, hp):
        return {"w": jnp.zeros((4, 3))}

    def loss(params, batch, key, hp):
        return jnp.mean(batch["x"] @ params["w"]), {}

    def evaluate(params, data, hp):
        return {"loss": loss(params, data, None, hp)[0]}

    return init, loss, evaluate


def _split(num_classes=3, num_features=4, kind="classification"):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, num_features)).astype(np.float32)
    y = np.arange(12) % 3 if kind == "classification" else rng.normal(size=12)
    return jt.Split(x[:6], y[:6], x[6:9], y[6:9], x[9:], y[9:], kind,
                    num_classes if kind == "classification" else None, "toy")


def test_fields_default_to_undeclared_and_are_normalized():
    init, loss, evaluate = _functions()
    plain = jt.Task(init, loss, evaluate)
    assert (plain.input_shape, plain.num_classes, plain.kind) == (None, None, None)
    declared = jt.Task(init, loss, evaluate, input_shape=[4], num_classes=3, kind="classification")
    assert declared.input_shape == (4,)
    # The declared fields do not change identity: equal functions, equal tasks.
    assert declared == plain


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(kind="ranking"), ValueError, r"Task\.kind='ranking'"),
        (dict(input_shape=(4, 0)), ValueError, r"Task\.input_shape"),
        (dict(input_shape=4), TypeError, r"Task\.input_shape.*tuple"),
        (dict(num_classes=1), ValueError, r"Task\.num_classes=1.*>= 2"),
        (dict(num_classes=True), TypeError, r"Task\.num_classes"),
        (dict(num_classes=3, kind="regression"), ValueError, r"num_classes must be None"),
    ],
)
def test_bad_fields_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        jt.Task(*_functions(), **kwargs)


def test_functions_must_be_callable():
    init, loss, _ = _functions()
    with pytest.raises(TypeError, match=r"Task\.evaluate must be a function"):
        jt.Task(init, loss, {"loss": 0.0})


def test_check_task_data_accepts_matching_data():
    task = jt.Task(*_functions(), input_shape=(4,), num_classes=3, kind="classification")
    task_lib.check_task_data(task, _split())
    task_lib.check_task_data(jt.Task(*_functions()), _split(num_features=7))  # undeclared


@pytest.mark.parametrize(
    ("task_kwargs", "split", "error", "match"),
    [
        (dict(input_shape=(5,)), _split(), ValueError,
         r"split\.x_train.*\(4,\).*input_shape=\(5,\)"),
        (dict(num_classes=4, kind="classification"), _split(), ValueError,
         r"task\.num_classes=4.*num_classes=3"),
        (dict(kind="regression"), _split(), ValueError, "regression task.*classification data"),
        (dict(kind="classification"), _split(kind="regression"), ValueError, "regression data"),
        (dict(num_classes=2, kind="classification"), _split(num_classes=None), ValueError,
         r"y_train.*num_classes=2"),
    ],
)
def test_check_task_data_names_the_mismatch(task_kwargs, split, error, match):
    with pytest.raises(error, match=match):
        task_lib.check_task_data(jt.Task(*_functions(), **task_kwargs), split)


def test_check_task_data_checks_each_part_and_skips_test_when_asked():
    split = _split()
    bad_test = split._replace(x_test=np.full_like(split.x_test, np.nan))
    with pytest.raises(ValueError, match=r"split\.x_test/y_test.*NaN"):
        task_lib.check_task_data(jt.Task(*_functions()), bad_test)
    task_lib.check_task_data(jt.Task(*_functions()), bad_test, include_test=False)
    float_labels = split._replace(y_valid=split.y_valid.astype(np.float32))
    task_lib.check_task_data(jt.Task(*_functions()), float_labels)  # integral floats: fine
    with pytest.raises(TypeError, match=r"split\.y_valid.*integer.*astype"):
        task_lib.check_task_data(jt.Task(*_functions(), kind="classification"), float_labels)


def test_value_ranges_of_the_task_names():
    from jaxtune import optim

    optim.check_value_ranges({"dropout": 0.999, "l1": 0.0, "l2": 5.0, "width": "wide"},
                             task_lib.VALUE_RANGES)
    for name, value in (("dropout", 1.0), ("dropout", -0.1), ("l1", -1e-9), ("l2", -1.0)):
        with pytest.raises(ValueError, match=rf"member\['{name}'\] = .* is outside"):
            optim.check_value_ranges({name: value}, task_lib.VALUE_RANGES, where="member")
