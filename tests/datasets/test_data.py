"""gradbox.data: validation, standardisation and splitting."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import gradbox as gb
from gradbox.data import NonFiniteError, Split, Standardizer, check_array, check_X_y, train_val_test_split


# --------------------------------------------------------------------------- check_array
def test_check_array_accepts_and_does_not_copy_valid_arrays():
    X = np.arange(6.0).reshape(2, 3)
    assert check_array(X) is X
    out = check_array([[1, 2], [3, 4]])
    assert out.dtype.kind == "i" and out.shape == (2, 2)
    t = gb.Tensor(np.ones((2, 2), np.float32))
    assert check_array(t) is t.data


def test_check_array_handles_readonly_fortran_strided():
    base = np.arange(24.0).reshape(4, 6)
    ro = base.copy()
    ro.flags.writeable = False
    fortran = np.asfortranarray(base)
    strided = base[::2, ::-3]
    for X in (ro, fortran, strided):
        before = X.copy()
        out = check_array(X, dtype=np.float32)
        np.testing.assert_array_equal(out, before.astype(np.float32))
        np.testing.assert_array_equal(X, before)
    assert check_array(ro) is ro and not ro.flags.writeable


@pytest.mark.parametrize("bad, exc, words", [
    (np.array([[1, None]], dtype=object), TypeError, ["X: expected numeric", "object"]),
    (np.array([["a", "b"]]), TypeError, ["X: expected numeric", "strings"]),
    (np.array([[1 + 1j]]), TypeError, ["X: expected numeric", "complex"]),
    (np.array([[b"a"]]), TypeError, ["bytes"]),
    ("abc", TypeError, ["X: expected numeric array data, received str"]),
    ([[1, 2], [3]], ValueError, ["X: expected a rectangular array", "ragged"]),
    (np.ones(3), ValueError, ["X: expected a 2-D array of shape (n_samples, n_features), received shape (3,)",
                              "reshape"]),
    (np.ones((2, 2, 2)), ValueError, ["received shape (2, 2, 2)"]),
    (np.ones((0, 3)), ValueError, ["X: expected at least 1 sample, received shape (0, 3)"]),
    (np.ones((3, 0)), ValueError, ["X: expected at least 1 feature, received shape (3, 0)"]),
    (np.array([[1.0, np.nan], [0, 0]]), NonFiniteError, ["X: expected finite values, received nan at index (0, 1)"]),
    (np.array([[0.0, 0], [np.inf, 0]]), NonFiniteError, ["inf at index (1, 0)", "1 non-finite in all"]),
    (np.array([[-np.inf, np.nan]], np.float32), NonFiniteError, ["-inf at index (0, 0)", "2 non-finite in all"]),
])
def test_check_array_errors(bad, exc, words):
    with pytest.raises(exc) as info:
        check_array(bad)
    for w in words:
        assert w in str(info.value)


def test_check_array_nonfinite_is_a_value_error_and_overflowing_sum_is_fine():
    assert issubclass(NonFiniteError, ValueError)
    big = np.full((4, 2), np.finfo(np.float64).max)  # the sum overflows, every entry is finite
    assert check_array(big) is big
    half = np.full((100, 1), 60000, np.float16)
    assert check_array(half) is half


def test_check_array_options():
    assert check_array(np.ones(3), "y", ndim=1).shape == (3,)
    with pytest.raises(ValueError, match=r"y: expected a 1-D array of shape \(n_samples,\), received shape \(3, 1\)"):
        check_array(np.ones((3, 1)), "y", ndim=1)
    with pytest.raises(ValueError, match="an array with 1 or 2 dimensions"):
        check_array(np.ones((1, 1, 1)), "y", ndim=(1, 2))
    assert check_array(np.ones((0, 2)), allow_empty=True).shape == (0, 2)
    assert check_array(np.ones((2, 2)), ndim=None).shape == (2, 2)
    with pytest.raises(TypeError, match="dtype: expected a float, int or bool dtype, received <U1"):
        check_array(np.ones((2, 2)), dtype="U1")
    with pytest.raises(ValueError, match="X: expected whole numbers to convert to int64"):
        check_array(np.array([[0.5]]), dtype=np.int64)
    assert check_array(np.array([[2.0]]), dtype=np.int64).dtype == np.int64


_shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)


@settings(max_examples=300)
@given(hnp.arrays(dtype=st.sampled_from([np.float16, np.float32, np.float64, np.int32, np.uint8, np.bool_,
                                         np.complex64, np.dtype("U3"), np.dtype(object)]),
                  shape=_shapes, elements=None, fill=None),
       st.sampled_from([1, 2, None, (1, 2)]))
def test_check_array_never_leaks_numpy_errors(X, ndim):
    """Any array: either a valid ndarray back, or TypeError/ValueError naming X; input unchanged."""
    before = X.copy()
    try:
        out = check_array(X, ndim=ndim)
    except (TypeError, ValueError) as exc:
        assert str(exc).startswith("X: expected")
    else:
        assert isinstance(out, np.ndarray) and out.dtype.kind in "fiub"
        if out.dtype.kind == "f":
            assert np.isfinite(out).all()
        assert out.shape[0] > 0 if out.ndim else True
    if X.dtype.kind == "f":
        np.testing.assert_array_equal(X, before)  # NaN-aware, and nothing was modified


_leaf = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5), st.text(max_size=2),
                  st.none(), st.booleans(), st.complex_numbers(max_magnitude=3))


@settings(max_examples=300)
@given(st.recursive(_leaf, lambda kids: st.lists(kids, max_size=4), max_leaves=12))
def test_check_array_on_malformed_nested_lists(data):
    try:
        out = check_array(data, ndim=None)
    except (TypeError, ValueError) as exc:
        assert str(exc).startswith("X: expected")
    else:
        assert out.dtype.kind in "fiub"


# --------------------------------------------------------------------------- check_X_y
def test_check_X_y():
    X, y = check_X_y([[1.0], [2.0], [3.0]], [2.0, 0.0, 1.0])
    assert y.dtype == np.int64 and list(y) == [2, 0, 1]
    X, y = check_X_y(np.ones((3, 1)), np.array([[1], [0], [1]]))
    assert y.shape == (3,)
    X, y = check_X_y(np.ones((2, 1)), [True, False])
    assert list(y) == [1, 0]
    X, y = check_X_y(np.ones((2, 1)), [0.5, -1.5], classification=False)
    assert y.dtype == np.float64 and list(y) == [0.5, -1.5]


@pytest.mark.parametrize("y, words", [
    ([0, 1], "y: expected 3 labels (one per row of X), received 2"),
    ([0, 1.5, 1], "y: expected integer class labels, received 1.5 at index 1"),
    ([0, -1, 1], "y: expected non-negative class labels 0..n_classes-1, received -1 at index 1"),
    ([0, np.nan, 1], "y: expected finite values, received nan at index 1"),
    (np.ones((3, 2)), "y: expected a 1-D array of shape (n_samples,), received shape (3, 2)"),
    (["a", "b", "c"], "y: expected numeric"),
])
def test_check_X_y_errors(y, words):
    with pytest.raises((ValueError, TypeError)) as info:
        check_X_y(np.ones((3, 2)), y)
    assert words in str(info.value)


# --------------------------------------------------------------------------- Standardizer
def test_standardizer_fit_transform_inverse(rng):
    X = rng.standard_normal((50, 4)) * [1, 10, 100, 0] + [5, -3, 0, 7]
    s = Standardizer().fit(X)
    assert s.mean_.shape == (4,) and s.scale_.shape == (4,) and s.n_features_ == 4
    assert s.scale_[3] == 1.0  # zero variance
    Z = s.transform(X)
    np.testing.assert_allclose(Z[:, :3].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z[:, :3].std(axis=0), 1, rtol=1e-12)
    np.testing.assert_array_equal(Z[:, 3], 0)
    np.testing.assert_allclose(s.inverse_transform(Z), X, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Standardizer().fit_transform(X), Z)


def test_standardizer_keeps_float32_and_does_not_modify_input(rng):
    X = rng.standard_normal((20, 3)).astype(np.float32)
    before = X.copy()
    Z = Standardizer().fit_transform(X)
    assert Z.dtype == np.float32
    np.testing.assert_array_equal(X, before)
    assert Standardizer().fit_transform(np.arange(6).reshape(3, 2)).dtype == np.float64


def test_standardizer_near_constant_column():
    X = np.full((10, 1), 0.1) + np.array([0, 1e-17] * 5).reshape(10, 1)
    assert Standardizer().fit(X).scale_[0] == 1.0


def test_standardizer_from_params_round_trip(tmp_path, rng):
    X = rng.standard_normal((10, 3))
    s = Standardizer().fit(X)
    gb.save({"mean": s.mean_, "scale": s.scale_}, tmp_path / "s.gbx")
    a = gb.load(tmp_path / "s.gbx")
    np.testing.assert_array_equal(Standardizer.from_params(a["mean"], a["scale"]).transform(X), s.transform(X))
    with pytest.raises(ValueError, match=r"scale: expected shape \(3,\) \(as mean\), received \(2,\)"):
        Standardizer.from_params(np.zeros(3), np.ones(2))
    with pytest.raises(ValueError, match="scale: expected positive values, received 0.0"):
        Standardizer.from_params(np.zeros(2), np.array([1.0, 0.0]))


def test_standardizer_errors():
    with pytest.raises(ValueError, match=r"Standardizer.transform: expected a fitted Standardizer.*fit\(X\)"):
        Standardizer().transform(np.ones((2, 2)))
    s = Standardizer().fit(np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"X: expected 2 features \(as in fit\), received shape \(3, 3\)"):
        s.transform(np.ones((3, 3)))
    with pytest.raises(NonFiniteError, match="X: expected finite values"):
        s.inverse_transform(np.array([[np.nan, 1.0]]))
    with pytest.raises(NonFiniteError, match=r"nan at index \(1, 0\)"):
        Standardizer().fit(np.array([[1.0], [np.nan]]))
    assert repr(s) == "Standardizer(n_features_=2)" and repr(Standardizer()) == "Standardizer()"


# --------------------------------------------------------------------------- splitting
def test_split_sizes_stratification_and_determinism():
    y = np.repeat([0, 1, 2], [500, 300, 200])
    X = np.arange(len(y) * 2, dtype=np.float64).reshape(-1, 2)
    s = train_val_test_split(X, y, val_fraction=0.1, test_fraction=0.2, seed=7)
    assert isinstance(s, Split) and len(s) == 6
    assert (len(s.y_train), len(s.y_val), len(s.y_test)) == (700, 100, 200)
    assert list(np.bincount(s.y_test)) == [100, 60, 40]
    assert list(np.bincount(s.y_val)) == [50, 30, 20]
    # a partition of the rows, rows and labels kept together
    rows = np.concatenate([s.X_train[:, 0], s.X_val[:, 0], s.X_test[:, 0]]) // 2
    assert sorted(rows.astype(int)) == list(range(len(y)))
    np.testing.assert_array_equal(y[(s.X_test[:, 0] // 2).astype(int)], s.y_test)
    again = train_val_test_split(X, y, val_fraction=0.1, test_fraction=0.2, seed=7)
    for a, b in zip(s, again):
        np.testing.assert_array_equal(a, b)
    other = train_val_test_split(X, y, val_fraction=0.1, test_fraction=0.2, seed=8)
    assert not np.array_equal(other.X_test, s.X_test)


def test_split_small_and_rare_classes():
    y = np.array([0] * 18 + [1] * 2)
    s = train_val_test_split(np.zeros((20, 1)), y, 0.1, 0.1, seed=0)
    assert (len(s.y_train), len(s.y_val), len(s.y_test)) == (16, 2, 2)
    assert s.y_train.sum() >= 1  # the rare class is not pushed entirely out of training
    s = train_val_test_split(np.zeros((3, 1)), [0, 1, 0], 0.01, 0.01, seed=0)
    assert (len(s.y_train), len(s.y_val), len(s.y_test)) == (1, 1, 1)
    s = train_val_test_split(np.zeros((10, 1)), np.arange(10) * 0.5, 0.0, 0.3, seed=0, stratify=False)
    assert len(s.y_val) == 0 and s.X_val.shape == (0, 1) and len(s.y_test) == 3
    imgs = train_val_test_split(np.zeros((10, 4, 4)), np.arange(10) % 2, 0.2, 0.2)
    assert imgs.X_train.shape == (6, 4, 4)


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(val_fraction=-0.1), ValueError, "val_fraction: expected a fraction in [0, 1), received -0.1"),
    (dict(test_fraction=1.0), ValueError, "test_fraction: expected a fraction in [0, 1), received 1.0"),
    (dict(test_fraction="0.2"), ValueError, "test_fraction: expected a fraction"),
    (dict(val_fraction=0.5, test_fraction=0.5), ValueError, "expected a sum below 1"),
    (dict(seed=-1), ValueError, "seed: expected a non-negative int or None, received -1"),
    (dict(seed=1.5), ValueError, "seed: expected a non-negative int"),
    (dict(y=np.arange(9)), ValueError, "y: expected 10 labels (one per row of X), received 9"),
    (dict(y=np.arange(10) * 0.5), ValueError, "y: expected integer class labels"),
    (dict(X=np.zeros((2, 1)), y=[0, 1], val_fraction=0.4, test_fraction=0.4), ValueError,
     "expected enough samples for a training set, received 2"),
    (dict(X=np.array([[np.inf]] * 10)), NonFiniteError, "X: expected finite values"),
])
def test_split_errors(kwargs, exc, words):
    args = dict(X=np.zeros((10, 2)), y=np.arange(10) % 2)
    args.update(kwargs)
    with pytest.raises(exc) as info:
        train_val_test_split(**args)
    assert words in str(info.value)


@settings(max_examples=60)
@given(st.lists(st.integers(0, 4), min_size=5, max_size=80), st.floats(0, 0.4), st.floats(0, 0.4),
       st.integers(0, 2 ** 32))
def test_split_is_always_a_partition(labels, val, test, seed):
    y = np.array(labels)
    X = np.arange(len(y), dtype=np.float64).reshape(-1, 1)
    try:
        s = train_val_test_split(X, y, val, test, seed=seed)
    except ValueError as exc:
        assert "training set" in str(exc)
        return
    rows = np.concatenate([s.X_train, s.X_val, s.X_test]).ravel().astype(int)
    assert sorted(rows) == list(range(len(y)))
    assert len(s.y_train) >= 1
    for X_part, y_part in ((s.X_train, s.y_train), (s.X_val, s.y_val), (s.X_test, s.y_test)):
        np.testing.assert_array_equal(y[X_part.ravel().astype(int)], y_part)
