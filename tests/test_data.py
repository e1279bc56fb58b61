"""Tests for jaxtune.data: embedded datasets, validation, splits, k-fold tables, sampling."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import datasets as skdatasets
from sklearn.model_selection import KFold, StratifiedKFold

from jaxtune.data import (
    DATASETS,
    Dataset,
    Split,
    check_arrays,
    kfold_rows,
    load_dataset,
    make_linear,
    sample_batch_indices,
    sample_rows,
    standardize,
    train_valid_test_split,
)

# ------------------------------------------------------------------------------------------------
# Embedded datasets

SKLEARN_LOADERS = {
    "digits": (skdatasets.load_digits, {}, 10),
    "breast_cancer": (skdatasets.load_breast_cancer, {}, 2),
    "wine": (skdatasets.load_wine, {}, 3),
    "diabetes": (skdatasets.load_diabetes, {"scaled": False}, None),
}


@pytest.mark.parametrize("name", sorted(SKLEARN_LOADERS))
def test_embedded_dataset_matches_sklearn(name):
    loader, kwargs, num_classes = SKLEARN_LOADERS[name]
    expected = loader(**kwargs)
    ds = load_dataset(name)
    assert isinstance(ds, Dataset)
    assert ds.name == name
    assert ds.num_classes == num_classes
    assert ds.x.dtype == np.float32
    np.testing.assert_array_equal(ds.x, expected.data.astype(np.float32))
    # float32 is the only loss: the float64 values agree to float32 rounding.
    np.testing.assert_allclose(ds.x, expected.data, rtol=1e-7, atol=0)
    if num_classes is None:
        assert ds.kind == "regression"
        assert ds.y.dtype == np.float32
        np.testing.assert_array_equal(ds.y, expected.target.astype(np.float32))
    else:
        assert ds.kind == "classification"
        assert ds.y.dtype == np.int32
        np.testing.assert_array_equal(ds.y, expected.target)
        assert ds.num_classes == len(expected.target_names)
    assert ds.num_features == expected.data.shape[1]
    assert ds.num_rows == expected.data.shape[0]
    check_arrays(ds.x, ds.y, ds.kind, ds.num_classes)


def test_dataset_names_and_repr():
    assert DATASETS == ("digits", "breast_cancer", "wine", "diabetes", "linear")
    text = repr(load_dataset("wine"))
    assert "float32[178, 13]" in text
    assert "14.23" not in text  # the repr does not dump the arrays


def test_load_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="digits, breast_cancer, wine, diabetes, linear"):
        load_dataset("mnist")


def test_load_dataset_options():
    with pytest.raises(TypeError, match="takes no options"):
        load_dataset("wine", seed=1)
    ds = load_dataset("linear", num_samples=32, slope=-2.0, seed=3)
    chex.assert_trees_all_equal(
        ds._replace(name="x"), make_linear(32, slope=-2.0, seed=3)._replace(name="x")
    )


# ------------------------------------------------------------------------------------------------
# Linear data


def _least_squares(ds):
    design = np.column_stack([ds.x[:, 0].astype(np.float64), np.ones(ds.num_rows)])
    (slope, intercept), *_ = np.linalg.lstsq(design, ds.y.astype(np.float64), rcond=None)
    return slope, intercept


def test_make_linear_defaults_recover_slope():
    ds = make_linear()
    assert (ds.kind, ds.num_classes, ds.name) == ("regression", None, "linear")
    chex.assert_shape(ds.x, (256, 1))
    chex.assert_shape(ds.y, (256,))
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.float32
    assert ds.x.min() >= -1.0 and ds.x.max() <= 1.0
    slope, intercept = _least_squares(ds)
    assert abs(slope - 3.0) < 0.1
    assert abs(intercept) < 0.1


def test_make_linear_parameters_and_determinism():
    ds = make_linear(num_samples=2000, slope=-1.5, intercept=2.0, noise=0.2, seed=7)
    slope, intercept = _least_squares(ds)
    assert abs(slope + 1.5) < 0.05
    assert abs(intercept - 2.0) < 0.05
    chex.assert_trees_all_equal(ds, make_linear(2000, -1.5, 2.0, 0.2, seed=7))
    assert not np.array_equal(ds.y, make_linear(2000, -1.5, 2.0, 0.2, seed=8).y)
    exact = make_linear(num_samples=50, slope=2.0, intercept=1.0, noise=0.0)
    np.testing.assert_allclose(exact.y, 2.0 * exact.x[:, 0] + 1.0, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"num_samples": 0}, "num_samples"), ({"noise": -1.0}, "noise"), ({"slope": np.nan}, "slope")],
)
def test_make_linear_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_linear(**kwargs)


# ------------------------------------------------------------------------------------------------
# check_arrays

X = np.zeros((4, 2), dtype=np.float32)
LABELS = np.array([0, 1, 2, 1])


def test_check_arrays_accepts_valid_data():
    assert check_arrays(X, LABELS, "classification", 3) is None
    check_arrays(X, LABELS, "classification")
    check_arrays(X, LABELS.astype(np.float64), "classification", 3)  # integral floats are fine
    check_arrays(X, np.array([0.5, -1.0, 2.0, 3.0]), "regression")
    check_arrays(X, np.zeros((4, 3)), "regression")  # several outputs
    check_arrays(np.zeros((4, 8, 8, 1)), LABELS, "classification", 3)


@pytest.mark.parametrize(
    ("x", "y", "kind", "num_classes", "match"),
    [
        (np.where(np.eye(4, 2) > 0, np.nan, 0.0), LABELS, "classification", 3, r"^x contains 2"),
        (X, np.array([0.0, np.inf, 1.0, 2.0]), "regression", None, r"^y contains 1 NaN or inf"),
        (X, np.array([0, 1, 2]), "classification", 3, "different numbers of rows"),
        (np.zeros((0, 2)), np.zeros(0), "regression", None, "x is empty"),
        (np.zeros((4, 0)), np.zeros(4), "regression", None, "x is empty"),
        (np.zeros(4), np.zeros(4), "regression", None, r"x\[:, None\]"),
        # Labels are one column; several outputs are regression (2-D targets are fine there).
        (X, np.zeros((4, 2), np.int32), "classification", 3,
         r"must have shape \[num_rows\], got shape \(4, 2\); for one-hot labels pass "
         r"y\.argmax"),
        (X, np.array([0.0, 0.5, 1.0, 1.0]), "classification", 3, r"must be integers; y\[1\]"),
        (X, np.array([0, -1, 1, 1]), "classification", 3, "must be >= 0"),
        (X, np.array([0, 1, 2, 3]), "classification", 3, "must be < num_classes=3"),
        (X, LABELS, "classification", 1, "num_classes must be at least 2"),
        (X, LABELS, "regression", 3, "num_classes must be None for regression"),
        (X, LABELS, "ranking", None, "kind must be one of"),
    ],
)
def test_check_arrays_value_errors(x, y, kind, num_classes, match):
    with pytest.raises(ValueError, match=match):
        check_arrays(x, y, kind, num_classes)


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        (np.array([["a", "b"]] * 4), LABELS, r"^x has dtype <U1.*astype"),
        (X, np.array(["cat", "dog", "cat", "dog"]), r"^y has dtype"),
        (X, np.array([True, False, True, False]), r"^y has dtype bool"),
        (X.astype(object), LABELS, r"^x has dtype object"),
        (X.astype(np.complex64), LABELS, r"^x has dtype complex64"),
    ],
)
def test_check_arrays_type_errors(x, y, match):
    with pytest.raises(TypeError, match=match):
        check_arrays(x, y, "classification")


# ------------------------------------------------------------------------------------------------
# Splits


def _indexed_dataset(labels, kind="classification"):
    """A dataset whose single feature is the row index, so split rows can be traced back."""
    num_rows = len(labels)
    x = np.arange(num_rows, dtype=np.float32)[:, None]
    if kind == "classification":
        return Dataset(x, np.asarray(labels, np.int32), kind, int(max(labels)) + 1, "indexed")
    return Dataset(x, np.asarray(labels, np.float32), kind, None, "indexed")


def _row_ids(split):
    return [s[:, 0].astype(int) for s in (split.x_train, split.x_valid, split.x_test)]


IMBALANCED = np.repeat([0, 1, 2, 3], [120, 50, 20, 11])  # 201 rows, sorted by class


def test_split_sizes_disjoint_and_complete():
    ds = _indexed_dataset(IMBALANCED)
    split = train_valid_test_split(ds, valid_fraction=0.2, test_fraction=0.1, seed=0)
    assert isinstance(split, Split)
    train, valid, test = _row_ids(split)
    assert (len(train), len(valid), len(test)) == (141, 40, 20)
    all_rows = np.concatenate([train, valid, test])
    np.testing.assert_array_equal(np.sort(all_rows), np.arange(len(IMBALANCED)))
    for rows, y in zip(
        (train, valid, test), (split.y_train, split.y_valid, split.y_test), strict=True
    ):
        np.testing.assert_array_equal(y, IMBALANCED[rows])  # x and y stay paired
    assert split.kind == "classification" and split.num_classes == 4 and split.name == "indexed"
    assert split.num_features == 1
    assert set(split.train) == {"x", "y"}
    assert split.valid["x"] is split.x_valid and split.test["y"] is split.y_test


@pytest.mark.parametrize("name", ["digits", "breast_cancer", "wine"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_is_stratified(name, seed):
    ds = load_dataset(name)
    counts = np.bincount(ds.y, minlength=ds.num_classes)
    split = train_valid_test_split(ds, 0.2, 0.2, seed=seed)
    for y in (split.y_train, split.y_valid, split.y_test):
        expected = len(y) * counts / ds.num_rows
        assert np.abs(np.bincount(y, minlength=ds.num_classes) - expected).max() <= 1.0


def test_split_stratification_on_imbalanced_small_classes():
    labels = np.repeat([0, 1, 2, 3, 4], [300, 60, 25, 9, 6])
    counts = np.bincount(labels)
    for seed in range(5):
        split = train_valid_test_split(_indexed_dataset(labels), 0.25, 0.15, seed=seed)
        for y in (split.y_train, split.y_valid, split.y_test):
            deviation = np.bincount(y, minlength=5) - len(y) * counts / len(labels)
            assert np.abs(deviation).max() <= 2.0


def test_unstratified_split_is_a_random_permutation():
    split = train_valid_test_split(_indexed_dataset(IMBALANCED), 0.2, 0.2, seed=0, stratify=False)
    train, valid, test = _row_ids(split)
    assert (len(train), len(valid), len(test)) == (121, 40, 40)
    assert len(np.unique(np.concatenate([train, valid, test]))) == len(IMBALANCED)


def test_split_is_deterministic_in_seed():
    ds = load_dataset("wine")
    chex.assert_trees_all_equal(
        train_valid_test_split(ds, seed=3)[:6], train_valid_test_split(ds, seed=3)[:6]
    )
    assert not np.array_equal(
        train_valid_test_split(ds, seed=3).x_test, train_valid_test_split(ds, seed=4).x_test
    )


def test_regression_split_and_zero_fraction():
    ds = load_dataset("diabetes")
    split = train_valid_test_split(ds, valid_fraction=0.25, test_fraction=0.0, seed=0)
    assert split.kind == "regression" and split.num_classes is None
    chex.assert_shape(split.x_test, (0, 10))
    chex.assert_shape(split.y_test, (0,))
    assert len(split.y_valid) == 111  # 110.5 rounds half up
    assert len(split.y_train) + len(split.y_valid) == 442


def test_tiny_nonzero_fraction_still_gets_a_row():
    split = train_valid_test_split(_indexed_dataset([0, 1] * 5), 0.01, 0.01, seed=0)
    assert (len(split.y_train), len(split.y_valid), len(split.y_test)) == (8, 1, 1)


@pytest.mark.parametrize(
    ("valid_fraction", "test_fraction", "match"),
    [
        (-0.1, 0.2, "valid_fraction"),
        (1.0, 0.0, "valid_fraction"),
        (0.2, 1.5, "test_fraction"),
        (0.2, float("nan"), "test_fraction"),
        (0.5, 0.5, r"valid_fraction \+ test_fraction must be < 1"),
    ],
)
def test_split_rejects_bad_fractions(valid_fraction, test_fraction, match):
    with pytest.raises(ValueError, match=match):
        train_valid_test_split(load_dataset("wine"), valid_fraction, test_fraction)


def test_split_rejects_too_little_data_and_invalid_data():
    with pytest.raises(ValueError, match="leave no training rows"):
        train_valid_test_split(_indexed_dataset([0, 1]), 0.2, 0.2)
    bad = load_dataset("wine")
    bad.x[5, 3] = np.nan
    with pytest.raises(ValueError, match=r"^x contains"):
        train_valid_test_split(bad)


# ------------------------------------------------------------------------------------------------
# Standardization


def test_standardize_uses_training_statistics_only():
    split = train_valid_test_split(load_dataset("breast_cancer"), seed=0)
    scaled = standardize(split)
    assert scaled.x_train.dtype == np.float32
    np.testing.assert_allclose(scaled.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(scaled.x_train.std(axis=0), 1.0, atol=1e-5)
    mean = split.x_train.astype(np.float64).mean(axis=0)
    std = split.x_train.astype(np.float64).std(axis=0)
    np.testing.assert_allclose(scaled.x_valid, (split.x_valid - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scaled.x_test, (split.x_test - mean) / std, rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_equal(
        (scaled.y_train, scaled.y_valid, scaled.y_test),
        (split.y_train, split.y_valid, split.y_test),
    )
    # Held-out rows have no say in the transform: replacing them leaves the training rows alike.
    rng = np.random.default_rng(0)
    other = split._replace(
        x_valid=rng.normal(100.0, 50.0, split.x_valid.shape).astype(np.float32),
        x_test=rng.normal(-100.0, 50.0, split.x_test.shape).astype(np.float32),
    )
    np.testing.assert_array_equal(standardize(other).x_train, scaled.x_train)


def test_standardize_constant_features_and_targets():
    split = train_valid_test_split(load_dataset("digits"), seed=0)
    constant = split.x_train.std(axis=0) == 0
    assert constant.any()  # digits has always-blank border pixels
    scaled = standardize(split)
    for x in (scaled.x_train, scaled.x_valid, scaled.x_test):
        assert np.isfinite(x).all()
    np.testing.assert_array_equal(scaled.x_train[:, constant], 0.0)
    regression = train_valid_test_split(load_dataset("diabetes"), seed=0)
    np.testing.assert_array_equal(standardize(regression).y_train, regression.y_train)
    with pytest.raises(ValueError, match="eps"):
        standardize(split, eps=0.0)


# ------------------------------------------------------------------------------------------------
# Minibatch sampling


def test_sample_batch_indices_range_dtype_and_jit():
    key = jax.random.PRNGKey(0)
    idx = sample_batch_indices(key, 7, 500)
    chex.assert_shape(idx, (500,))
    assert idx.dtype == jnp.int32
    assert int(idx.min()) >= 0 and int(idx.max()) < 7
    assert len(np.unique(np.asarray(idx))) == 7  # every row can be drawn

    @jax.jit
    @chex.assert_max_traces(n=1)
    def draw(key, num_rows):
        return sample_batch_indices(key, num_rows, 500)

    chex.assert_trees_all_equal(draw(key, jnp.int32(7)), idx)
    bigger = draw(key, jnp.int32(1000))  # a new row count is a value: no retrace
    assert int(bigger.max()) < 1000 and int(bigger.max()) >= 7


def test_sample_batch_indices_per_member_under_vmap():
    keys = jax.random.split(jax.random.PRNGKey(1), 4)
    batches = jax.vmap(lambda k: sample_batch_indices(k, 100, 16))(keys)
    chex.assert_shape(batches, (4, 16))
    assert len({tuple(b) for b in np.asarray(batches)}) == 4
    chex.assert_trees_all_equal(batches[2], sample_batch_indices(keys[2], 100, 16))


def test_sample_batch_indices_validation():
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="batch_size"):
        sample_batch_indices(key, 10, 0)
    with pytest.raises(ValueError, match="num_rows"):
        sample_batch_indices(key, 0, 4)
    with pytest.raises(TypeError, match="static Python int"):
        jax.jit(sample_batch_indices)(key, 10, 4)


def test_sample_rows_returns_only_allowed_rows():
    rows = jnp.array([3, 7, 9, 999, -5, 0], dtype=jnp.int32)  # last three are padding
    out = sample_rows(jax.random.PRNGKey(0), rows, 3, 300)
    chex.assert_shape(out, (300,))
    assert out.dtype == jnp.int32
    assert set(np.asarray(out).tolist()) == {3, 7, 9}
    with pytest.raises(ValueError, match="num_rows=7"):
        sample_rows(jax.random.PRNGKey(0), rows, 7, 4)


def test_sample_rows_per_fold_under_jit_and_vmap():
    train_rows, train_counts, _, _ = kfold_rows(23, 4, seed=0)
    keys = jax.random.split(jax.random.PRNGKey(2), 4)
    draw = jax.jit(jax.vmap(lambda k, r, n: sample_rows(k, r, n, 200)))
    batches = np.asarray(draw(keys, jnp.asarray(train_rows), jnp.asarray(train_counts)))
    for fold in range(4):
        allowed = set(train_rows[fold, : train_counts[fold]].tolist())
        assert set(batches[fold].tolist()) <= allowed


# ------------------------------------------------------------------------------------------------
# K-fold tables


def _unpad(table, counts):
    return [table[f, : counts[f]] for f in range(len(counts))]


def _check_tables(num_rows, num_folds, tables):
    train_rows, train_counts, valid_rows, valid_counts = tables
    for array in tables:
        assert array.dtype == np.int32
    chex.assert_shape(train_rows, (num_folds, int(train_counts.max())))
    chex.assert_shape(valid_rows, (num_folds, int(valid_counts.max())))
    # Padding is a valid index of the fold's own rows.
    for table, counts in ((train_rows, train_counts), (valid_rows, valid_counts)):
        for fold in range(num_folds):
            assert set(table[fold].tolist()) == set(table[fold, : counts[fold]].tolist())
    valid = _unpad(valid_rows, valid_counts)
    train = _unpad(train_rows, train_counts)
    np.testing.assert_array_equal(np.sort(np.concatenate(valid)), np.arange(num_rows))
    for fold in range(num_folds):
        np.testing.assert_array_equal(
            np.sort(np.concatenate([train[fold], valid[fold]])), np.arange(num_rows)
        )
    return train, valid


@pytest.mark.parametrize(("num_rows", "num_folds"), [(10, 3), (23, 5), (100, 10), (7, 7)])
def test_kfold_partition_matches_sklearn_kfold(num_rows, num_folds):
    tables = kfold_rows(num_rows, num_folds, seed=0)
    _, valid = _check_tables(num_rows, num_folds, tables)
    sizes = [len(v) for v in valid]
    assert max(sizes) - min(sizes) <= 1
    reference = KFold(num_folds, shuffle=True, random_state=0).split(np.zeros(num_rows))
    assert sizes == [len(test) for _, test in reference]


def test_kfold_stratified_matches_sklearn_allocation():
    labels = np.random.default_rng(0).choice([5, 2, 9], size=97, p=[0.6, 0.3, 0.1])
    num_folds = 5
    tables = kfold_rows(97, num_folds, seed=1, stratify_labels=labels)
    _, valid = _check_tables(97, num_folds, tables)
    classes = np.unique(labels)
    ours = np.array([[np.sum(labels[v] == c) for c in classes] for v in valid])
    splitter = StratifiedKFold(num_folds, shuffle=True, random_state=0)
    theirs = np.array(
        [[np.sum(labels[test] == c) for c in classes] for _, test in splitter.split(labels, labels)]
    )
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(ours.sum(axis=0), [np.sum(labels == c) for c in classes])
    assert (ours.max(axis=0) - ours.min(axis=0)).max() <= 1
    sizes = ours.sum(axis=1)
    assert sizes.max() - sizes.min() <= 1


def test_kfold_is_deterministic_and_validates():
    chex.assert_trees_all_equal(kfold_rows(30, 4, seed=5), kfold_rows(30, 4, seed=5))
    assert not np.array_equal(kfold_rows(30, 4, seed=5)[2], kfold_rows(30, 4, seed=6)[2])
    with pytest.raises(ValueError, match="num_folds"):
        kfold_rows(10, 1)
    with pytest.raises(ValueError, match="num_folds=11"):
        kfold_rows(10, 11)
    with pytest.raises(ValueError, match="stratify_labels"):
        kfold_rows(10, 2, stratify_labels=np.zeros(9))
