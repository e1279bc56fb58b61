"""Pytree data: ``x``/``y`` as dicts of arrays sharing a row count (jaxtune.datatree).

A hand-written task reading ``batch["x"]["feat"]``, ``batch["x"]["mask"]`` and a 2-D ``y``
trains through ``jaxtune.train`` as a plain numpy loop does; standardization touches only the
leaves it names; CV folds, minibatches and chunking index every leaf with the same rows; every
error names the leaf; the memory estimate counts every leaf.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxtune as jt
from jaxtune import checkpoint, cv, datatree, userdata
from jaxtune.engine import memory

NUM_ROWS, NUM_FEATURES, NUM_OUTPUTS = 48, 3, 2
LEARNING_RATE, NUM_STEPS = 0.05, 12


def _data(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Features far from standard (mean 3, std 4), a 0/1 mask, a row id, a float extra, 2-D y."""
    rng = np.random.default_rng(seed)
    feat = (rng.normal(size=(NUM_ROWS, NUM_FEATURES)) * 4 + 3).astype(np.float32)
    x = {"feat": feat,
         "mask": rng.integers(0, 2, (NUM_ROWS, NUM_FEATURES)).astype(np.int32),
         "row": np.arange(NUM_ROWS, dtype=np.int32),
         "extra": (rng.normal(size=(NUM_ROWS, 1)) * 10 + 5).astype(np.float32)}
    y = np.stack([np.arange(NUM_ROWS), (feat * x["mask"]).sum(axis=1)], axis=1).astype(np.float32)
    return x, y


def _split(seed: int = 0) -> jt.Split:
    x, y = _data(seed)
    return jt.train_valid_test_split(jt.Dataset(x, y, "regression", None, "toy"), 0.25, 0.25,
                                     seed=seed)


def _predict(w, x):
    return (x["feat"] * x["mask"]) @ w


def _task() -> jt.Task:
    """Reads every leaf: the masked features, and the row id against y[:, 0] (a minibatch whose
    leaves came from different rows would make ``mismatch`` positive)."""

    def init(key, hp):
        return {"w": jnp.zeros((NUM_FEATURES, NUM_OUTPUTS))}

    def loss(params, batch, key, hp):
        err = _predict(params["w"], batch["x"]) - batch["y"][:, 1:2]
        return jnp.mean(err**2), {}

    def evaluate(params, data, hp):
        x = data["x"]
        mismatch = jnp.max(jnp.abs(x["row"] - data["y"][:, 0]))
        return {"mse": jnp.mean((_predict(params["w"], x) - data["y"][:, 1:2]) ** 2),
                "mismatch": mismatch, "feat0": jnp.mean(x["feat"][:, 0]),
                "extra0": jnp.mean(x["extra"][:, 0]), "mask_sum": jnp.sum(x["mask"])}

    return jt.Task(init, loss, evaluate, name="masked", metric_modes={"mse": "min"})


def _row_task() -> jt.Task:
    """Its training loss is the largest distance between a batch's row ids in x and in y."""

    def init(key, hp):
        return {"w": jnp.zeros(())}

    def loss(params, batch, key, hp):
        gap = jnp.max(jnp.abs(batch["x"]["row"] - batch["y"][:, 0]))
        return gap.astype(jnp.float32) + 0.0 * params["w"], {}

    def evaluate(params, data, hp):
        return {"gap": jnp.max(jnp.abs(data["x"]["row"] - data["y"][:, 0]))}

    return jt.Task(init, loss, evaluate, name="rows", metric_modes={"gap": "min"})


def _standardized(train: np.ndarray, part: np.ndarray) -> np.ndarray:
    train = train.astype(np.float64)
    return (part - train.mean(axis=0)) / train.std(axis=0)


def test_dict_x_and_two_output_y_train_as_a_numpy_loop():
    """Full-batch SGD on the standardized 'feat' leaf (and the raw mask) equals numpy's."""
    split = _split()
    configs = [{"learning_rate": LEARNING_RATE}]
    results, params = jt.train(_task(), configs, split, num_steps=NUM_STEPS, batch_size=None,
                               steps_per_segment=NUM_STEPS, standardize=("feat",),
                               return_params=True, evaluate_test=False)
    x, y = split.x_train, split.y_train.astype(np.float64)[:, 1:2]
    feat = _standardized(x["feat"], x["feat"]) * x["mask"]
    w = np.zeros((NUM_FEATURES, NUM_OUTPUTS))
    for _ in range(NUM_STEPS):  # d/dw mean((feat @ w - y)^2) over rows and both outputs
        w -= LEARNING_RATE * 2 * feat.T @ (feat @ w - y) / (feat.shape[0] * NUM_OUTPUTS)
    np.testing.assert_allclose(params[0]["w"], w, rtol=1e-5, atol=1e-6)
    valid = _standardized(x["feat"], split.x_valid["feat"]) * split.x_valid["mask"]
    mse = np.mean((valid @ w - split.y_valid[:, 1:2]) ** 2)
    row = results.rows[0]
    assert row.metrics["valid_mse"] == pytest.approx(mse, rel=1e-5)
    # Only 'feat' was standardized: 'extra' (float, not named) and the int mask are as given.
    assert row.metrics["valid_feat0"] == pytest.approx(valid_feat0 := float(
        _standardized(x["feat"], split.x_valid["feat"])[:, 0].mean()), abs=1e-5), valid_feat0
    assert row.metrics["valid_extra0"] == pytest.approx(split.x_valid["extra"][:, 0].mean(),
                                                         rel=1e-6)
    assert row.metrics["valid_mask_sum"] == split.x_valid["mask"].sum()
    assert row.metrics["valid_mismatch"] == 0


@pytest.mark.parametrize("batch_mode", ["independent", "shared"])
def test_minibatches_and_chunks_take_every_leaf_from_the_same_rows(batch_mode, tmp_path):
    """Two chunks; the independent run also checkpoints with a predicate selecting the
    standardized leaves (stored by their names) and resumes to the same rows; the shared run
    batches its members with vmap (the accelerators' default), broadcasting the dict data."""
    configs = [{"learning_rate": 0.1}, {"learning_rate": 0.2}, {"learning_rate": 0.3}]
    kwargs = dict(num_steps=4, batch_size=8, steps_per_segment=2, batch_mode=batch_mode,
                  max_members_per_chunk=2, evaluate_test=False,
                  standardize=lambda name: name == "extra",
                  member_loop="map" if batch_mode == "independent" else "vmap")
    if batch_mode == "independent":
        kwargs["checkpoint"] = tmp_path / "run"
    results = jt.train(_row_task(), configs, _split(), **kwargs)
    assert [r.metrics["train_loss"] for r in results.rows] == [0.0, 0.0, 0.0]
    assert [r.metrics["valid_gap"] for r in results.rows] == [0.0, 0.0, 0.0]
    if batch_mode == "independent":
        resumed = jt.train(_row_task(), configs, _split(), resume=True, **kwargs)
        assert [r.metrics for r in resumed.rows] == [r.metrics for r in results.rows]


def test_cv_folds_on_a_dict_equal_folds_on_the_flat_array():
    """Folds, per-fold standardization and fold-row weights: the same numbers for {'feat': X}
    as for X (and a dict y as for the array)."""
    x, y = _data()
    flat = jt.Dataset(x["feat"], y[:, 1], "regression", None, "flat")
    tree = jt.Dataset({"feat": x["feat"], "row": x["row"]}, {"target": y[:, 1]}, "regression",
                      None, "tree")

    def task(read_x, read_y):
        def init(key, hp):
            return {"w": jax.random.normal(key, (NUM_FEATURES,))}

        def loss(params, batch, key, hp):
            err = read_x(batch["x"]) @ params["w"] - read_y(batch["y"])
            weight = batch.get("weight", jnp.ones_like(err))
            return jnp.sum(weight * err**2) / jnp.sum(weight), {}

        def evaluate(params, data, hp):
            return {"mse": loss(params, data, None, hp)[0]}

        return jt.Task(init, loss, evaluate, name="lin", metric_modes={"mse": "min"})

    configs = [{"learning_rate": 0.05}]
    # Full batch over each fold's rows (row tables with weights): the cheaper program; fold
    # minibatches index through the same take_rows as the independent minibatches above.
    kwargs = dict(num_steps=4, batch_size=None, num_folds=3, steps_per_segment=4,
                  evaluate_test=False)
    by_flat = cv.cross_validate(task(lambda v: v, lambda v: v), flat, configs, **kwargs)
    by_tree = cv.cross_validate(task(lambda v: v["feat"], lambda v: v["target"]), tree,
                                configs, **kwargs)
    flat_rows = [(r.fold, r.metrics["valid_mse"]) for r in by_flat.rows]
    tree_rows = [(r.fold, r.metrics["valid_mse"]) for r in by_tree.rows]
    assert [f for f, _ in flat_rows] == [f for f, _ in tree_rows]
    np.testing.assert_allclose([m for _, m in tree_rows], [m for _, m in flat_rows], rtol=1e-6)


def test_host_standardize_touches_only_the_named_leaves():
    split = _split()
    for part in ("train", "valid", "test"):  # every leaf split with the same rows
        np.testing.assert_array_equal(getattr(split, f"x_{part}")["row"],
                                      getattr(split, f"y_{part}")[:, 0])
    out = jt.standardize(split, leaves=("feat",))
    for part in ("train", "valid", "test"):
        x, new = getattr(split, f"x_{part}"), getattr(out, f"x_{part}")
        np.testing.assert_allclose(new["feat"], _standardized(split.x_train["feat"], x["feat"]),
                                   rtol=1e-5, atol=1e-5)
        for name in ("mask", "row", "extra"):
            np.testing.assert_array_equal(new[name], x[name])
            assert new[name].dtype == x[name].dtype
    everything = jt.standardize(split)  # True: every float leaf, never the int ones
    np.testing.assert_allclose(everything.x_train["extra"].mean(), 0.0, atol=1e-5)
    np.testing.assert_array_equal(everything.x_train["mask"], split.x_train["mask"])
    assert datatree.select_leaves(split.x_train, lambda name: name.startswith("f")) == ("feat",)


def _train(split, **kwargs):
    return jt.train(_task(), [{"learning_rate": 0.1}], split, num_steps=2, batch_size=4,
                    **kwargs)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda s: s._replace(x_train={**s.x_train, "extra": np.where(
            np.arange(s.x_train["extra"].shape[0])[:, None] == 3, np.nan,
            s.x_train["extra"])}), ValueError,
         r"split.x_train/y_train: x\['extra'\] contains 1 NaN or inf value\(s\) in 1 row\(s\) "
         r"\(first at row 3\)"),
        (lambda s: s._replace(x_valid={**s.x_valid, "mask": s.x_valid["mask"][:-1]}),
         ValueError, r"split.x_valid/y_valid: x\['mask'\] has 11 rows but x\['extra'\] has 12; "
                     r"every leaf of x and y needs one entry per row"),
        (lambda s: s._replace(x_train={**s.x_train, "mask": s.x_train["mask"].astype(object)}),
         TypeError, r"x\['mask'\] has dtype object.*x\['mask'\]\.astype"),
    ],
)
def test_data_errors_name_the_leaf(change, error, match):
    with pytest.raises(error, match=match):
        _train(change(_split()))


def test_standardize_refuses_integer_leaves_and_unknown_names():
    split = _split()
    with pytest.raises(TypeError, match=r"standardize selects x\['mask'\], which has dtype "
                                        r"int32; integer and boolean leaves"):
        _train(split, standardize=("feat", "mask"))
    with pytest.raises(ValueError, match=r"standardize names \['fet'\], which are not leaves of "
                                         r"x; its leaves are \['extra', 'feat', 'mask', 'row'\]"):
        _train(split, standardize="fet")
    with pytest.raises(TypeError, match=r"split.x_train\['mask'\], which has dtype int32"):
        jt.standardize(split, leaves=lambda name: True)
    with pytest.raises(ValueError, match=r"y is a dict .* classification labels are one array"):
        jt.data.check_arrays(split.x_train, {"label": np.zeros(24, np.int32)}, "classification")


def test_memory_estimate_counts_every_leaf():
    split = _split()
    leaves = [split.x_train, split.y_train, split.x_valid, split.y_valid]
    assert memory.replicated_data_bytes(split, False) == sum(
        a.nbytes for part in leaves for a in jax.tree_util.tree_leaves(part))
    spec = jt.engine.GroupSpec(step=jt.step.from_task(_task()), static_hp=(),
                               dynamic_names=("learning_rate",), num_steps=1, batch_size=None,
                               steps_per_segment=1)

    def estimate(x):
        return memory.member_memory_bytes(spec, {"learning_rate": 0.1}, data={
            "x": x, "y": split.y_train}, train_rows=512, eval_rows=0)

    big = np.zeros((24, 1000), np.float32)  # read by nothing, but it is in every batch
    assert estimate({**split.x_train, "big": big}) - estimate(split.x_train) >= 512 * 1000 * 4


def test_npz_keys_with_a_slash_make_dict_parts(tmp_path):
    x, y = _data()
    path = tmp_path / "tree.npz"
    np.savez(path, **{"x/feat": x["feat"], "x/mask": x["mask"], "y": y,
                      "x_test/feat": x["feat"][:5], "x_test/mask": x["mask"][:5],
                      "y_test": y[:5]})
    file = userdata.load_data_file(path)
    assert file.dataset.kind == "regression" and set(file.dataset.x) == {"feat", "mask"}
    assert file.dataset.x["mask"].dtype == np.int32  # masks stay integers
    split = userdata.split_data_file(file, seed=0)
    np.testing.assert_array_equal(split.x_test["mask"], x["mask"][:5])
    assert datatree.num_rows(split.x_train) + datatree.num_rows(split.x_valid) == NUM_ROWS
    np.savez(path, **{"x/feat": x["feat"], "x": x["feat"], "y": y})
    with pytest.raises(ValueError, match="holds both x and x/feat"):
        userdata.load_data_file(path)
    np.savez(path, **{"x/feat": x["feat"], "x/mask": x["mask"][:-1], "y": y})
    with pytest.raises(ValueError, match=r"x\['mask'\] has 47 rows but x\['feat'\] has 48"):
        userdata.load_data_file(path)


def test_checkpoint_digest_covers_every_leaf():
    split = _split()
    digest = checkpoint.split_digest(split)
    assert checkpoint.split_digest(_split()) == digest  # deterministic (not object pointers)
    changed = {**split.x_test, "mask": 1 - split.x_test["mask"]}
    assert checkpoint.split_digest(split._replace(x_test=changed)) != digest


def test_regression_task_with_several_outputs():
    """The ready-made regression task with num_outputs=2: its loss and mse are numpy's over
    rows and outputs (the engine path of 2-D targets is the numpy-loop test's); a one-output
    task refuses 2-D targets before compiling."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 4)).astype(np.float32)
    y = rng.normal(size=(16, 2)).astype(np.float32)
    task = jt.regression_task("linear", input_shape=(4,), num_outputs=2)
    params = task.init(jax.random.PRNGKey(0), {})
    dense = jax.tree_util.tree_map(np.asarray, params["Dense_0"])
    mse = np.mean((x @ dense["kernel"] + dense["bias"] - y) ** 2)
    loss, _ = task.loss(params, {"x": x, "y": y}, jax.random.PRNGKey(1), {})
    assert float(loss) == pytest.approx(mse, rel=1e-5)
    weight = np.repeat([1.0, 0.0], 8)  # fold padding: rows of weight 0 do not count
    metrics = task.evaluate(params, {"x": x, "y": y, "weight": weight}, {})
    half = np.mean((x[:8] @ dense["kernel"] + dense["bias"] - y[:8]) ** 2)
    assert float(metrics["mse"]) == pytest.approx(half, rel=1e-5)
    split = jt.train_valid_test_split(jt.Dataset(x, y, "regression", None, "two"), seed=0)
    with pytest.raises(ValueError, match=r"num_outputs=None\) needs targets y of shape \[rows\], "
                                         r"got \[rows, 2\]; build it with num_outputs=2"):
        jt.train(jt.regression_task("linear", input_shape=(4,)), [{"learning_rate": 0.1}],
                 split, num_steps=2, batch_size=4)


