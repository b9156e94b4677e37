"""Data validation, scaling and splitting: ``check_array``, ``check_X_y``, ``Standardizer``,
``train_val_test_split``.

Every error names the argument, what was expected and what was received, e.g.
``X: expected finite values, received nan at index (3, 1) (1 non-finite in all)``.

Examples
--------
>>> import numpy as np
>>> from gradbox.data import Standardizer, train_val_test_split
>>> X = np.arange(20.0).reshape(10, 2); y = np.array([0, 1] * 5)
>>> parts = train_val_test_split(X, y, val_fraction=0.2, test_fraction=0.2, seed=0)
>>> [len(a) for a in parts]
[6, 6, 2, 2, 2, 2]
>>> Z = Standardizer().fit(parts.X_train).transform(parts.X_train)
>>> bool(np.allclose(Z.mean(axis=0), 0) and np.allclose(Z.std(axis=0), 1))
True
"""
from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from .errors import NonFiniteError, all_finite, first_nonfinite
from .tensor import Tensor

__all__ = ["check_array", "check_X_y", "Standardizer", "train_val_test_split", "Split", "NonFiniteError"]

_NDIM_WORDS = {1: "a 1-D array of shape (n_samples,)", 2: "a 2-D array of shape (n_samples, n_features)"}


def check_array(X, name: str = "X", ndim: int | tuple | None = 2, dtype=None, allow_empty: bool = False):
    """Validate array-like data and return it as an ndarray; never modifies ``X``.

    Parameters
    ----------
    X : array_like or Tensor
    name : str
        The argument's name, used in error messages.
    ndim : int, tuple of int or None
        The accepted number of dimensions (``None``: any).
    dtype : numpy dtype, optional
        Convert to this dtype (a copy only when the dtype differs).
    allow_empty : bool
        Accept zero samples.

    Returns
    -------
    ndarray
        ``X`` itself when it already is a valid ndarray of the right dtype (read-only, Fortran
        and strided arrays are accepted as they are), otherwise a converted copy.

    Raises
    ------
    TypeError
        Object, string, complex or other non-numeric data.
    ValueError
        Ragged sequences, the wrong number of dimensions, no samples or no features.
    NonFiniteError (a ValueError)
        NaN or inf; the message gives the first bad entry's index.

    Examples
    --------
    >>> check_array([[1, 2], [3, 4]]).shape
    (2, 2)
    >>> check_array([[1.0, float("nan")]])
    Traceback (most recent call last):
    ...
    gradbox.errors.NonFiniteError: X: expected finite values, received nan at index (0, 1) (1 non-finite in all)
    """
    if isinstance(X, Tensor):
        X = X.data
    if not isinstance(X, np.ndarray):
        if isinstance(X, (str, bytes)):
            raise TypeError(f"{name}: expected numeric array data, received {type(X).__name__} {X[:40]!r}")
        try:
            X = np.asarray(X)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{name}: expected a rectangular array, received a ragged or mixed sequence "
                             f"({type(exc).__name__})") from None
    kind = X.dtype.kind
    if kind not in "fiub":
        what = {"O": "object (mixed or ragged data?)", "U": "strings", "S": "bytes", "c": "complex numbers"}
        raise TypeError(f"{name}: expected numeric (float, int or bool) data, received dtype {X.dtype} "
                        f"({what.get(kind, 'non-numeric')})")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, numbers.Integral) else tuple(ndim)
        if X.ndim not in allowed:
            expected = _NDIM_WORDS.get(allowed[0], f"a {allowed[0]}-D array") if len(allowed) == 1 else \
                f"an array with {' or '.join(map(str, allowed))} dimensions"
            hint = " (reshape a single sample with X.reshape(1, -1), a single feature with X.reshape(-1, 1))" \
                if allowed == (2,) and X.ndim == 1 else ""
            raise ValueError(f"{name}: expected {expected}, received shape {X.shape}{hint}")
    if X.ndim >= 1 and X.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name}: expected at least 1 sample, received shape {X.shape}")
    if X.ndim >= 2 and X.size == 0 and X.shape[0] != 0:
        raise ValueError(f"{name}: expected at least 1 feature, received shape {X.shape}")
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype.kind not in "fiub":
            raise TypeError(f"dtype: expected a float, int or bool dtype, received {dtype}")
        if X.dtype != dtype:
            if dtype.kind in "iub" and kind == "f":
                if not all_finite(X) or not np.array_equal(X, np.round(X)):
                    raise ValueError(f"{name}: expected whole numbers to convert to {dtype}, received fractional "
                                     "or non-finite values")
            if dtype.kind == "f":
                # NOTE: a value beyond the target's range (1e39 -> float32) would become inf with a
                # RuntimeWarning; say so instead, naming the value as given.
                with np.errstate(over="ignore", invalid="ignore"):
                    converted = X.astype(dtype)
                if not all_finite(converted) and (kind != "f" or all_finite(X)):
                    idx = tuple(int(i) for i in np.argwhere(~np.isfinite(converted))[0])
                    raise ValueError(f"{name}: expected values within the range of {dtype} (|x| <= "
                                     f"{np.finfo(dtype).max:.4g}), received {X[idx].item()!r} at index "
                                     f"{idx[0] if len(idx) == 1 else idx}")
                X = converted
            else:
                X = X.astype(dtype)
    if X.dtype.kind == "f" and not all_finite(X):
        raise NonFiniteError(f"{name}: expected finite values, received {first_nonfinite(X)}")
    return X


def check_X_y(X, y, classification: bool = True, dtype=None):
    """Validate features and targets together; return ``(X, y)``.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features)
    y : array_like of shape (n_samples,) or (n_samples, 1)
    classification : bool
        Require non-negative integer class labels (returned as int64). Otherwise ``y`` is a
        finite float target (returned as float64 unless already float).
    dtype : numpy dtype, optional
        Convert ``X`` to this dtype.

    Examples
    --------
    >>> X, y = check_X_y([[0.0, 1.0], [1.0, 0.0]], [1.0, 0.0]); y
    array([1, 0])
    """
    X = check_array(X, "X", ndim=2, dtype=dtype)
    y = check_array(y, "y", ndim=(1, 2))
    if y.ndim == 2:
        if y.shape[1] != 1:
            raise ValueError(f"y: expected a 1-D array of shape (n_samples,), received shape {y.shape}")
        y = y.reshape(-1)
    if len(y) != len(X):
        raise ValueError(f"y: expected {len(X)} labels (one per row of X), received {len(y)}")
    if not classification:
        return X, (y if y.dtype.kind == "f" else y.astype(np.float64))
    if y.dtype.kind == "f":
        frac = np.flatnonzero(y != np.round(y))
        if len(frac):
            raise ValueError(f"y: expected integer class labels, received {y[frac[0]]} at index {int(frac[0])} "
                             "(pass classification=False for a regression target)")
    if y.dtype.kind in "iuf" and y.size and y.min() < 0:
        i = int(np.argmin(y))
        raise ValueError(f"y: expected non-negative class labels 0..n_classes-1, received {y[i]} at index {i}")
    return X, y.astype(np.int64)


class Standardizer:
    """Scale each feature to zero mean and unit variance: ``(X - mean_) / scale_``.

    Learned attributes (after :meth:`fit`): ``mean_`` and ``scale_`` (float64, shape
    (n_features,)), ``n_features_``. Columns with zero variance get ``scale_ = 1`` so they
    map to 0 instead of NaN. ``transform`` keeps a float input's dtype (float32 stays float32).

    Examples
    --------
    >>> s = Standardizer().fit([[1.0, 5.0], [3.0, 5.0]])
    >>> s.mean_, s.scale_
    (array([2., 5.]), array([1., 1.]))
    >>> s.transform([[3.0, 5.0]])
    array([[1., 0.]])
    >>> s.inverse_transform(s.transform([[3.0, 5.0]]))
    array([[3., 5.]])
    """

    def __init__(self):
        self.mean_ = None
        self.scale_ = None
        self.n_features_ = None

    @classmethod
    def from_params(cls, mean, scale) -> "Standardizer":
        """Rebuild a fitted standardizer from saved ``mean_`` and ``scale_`` arrays."""
        mean = check_array(mean, "mean", ndim=1, dtype=np.float64)
        scale = check_array(scale, "scale", ndim=1, dtype=np.float64)
        if mean.shape != scale.shape:
            raise ValueError(f"scale: expected shape {mean.shape} (as mean), received {scale.shape}")
        if np.any(scale <= 0):
            raise ValueError(f"scale: expected positive values, received {scale[scale <= 0][0]}")
        s = cls()
        s.mean_, s.scale_, s.n_features_ = mean.copy(), scale.copy(), len(mean)
        return s

    def fit(self, X) -> "Standardizer":
        X = check_array(X, "X", ndim=2)
        mean = X.mean(axis=0, dtype=np.float64)
        scale = X.std(axis=0, dtype=np.float64)
        # NOTE: a constant column's std is 0, or rounding noise far below its magnitude.
        tiny = scale <= 1e-12 * np.maximum(np.abs(mean), 1.0)
        scale[tiny] = 1.0
        self.mean_, self.scale_, self.n_features_ = mean, scale, X.shape[1]
        return self

    def _checked(self, X, who):
        if self.mean_ is None:
            raise ValueError(f"Standardizer.{who}: expected a fitted Standardizer, received an unfitted one "
                             "(call fit(X) first)")
        X = check_array(X, "X", ndim=2)
        if X.shape[1] != self.n_features_:
            raise ValueError(f"X: expected {self.n_features_} features (as in fit), received shape {X.shape}")
        return X

    def transform(self, X) -> np.ndarray:
        X = self._checked(X, "transform")
        out_dtype = X.dtype if X.dtype.kind == "f" else np.float64
        return ((X - self.mean_) / self.scale_).astype(out_dtype, copy=False)

    def fit_transform(self, X) -> np.ndarray:
        return self.fit(X).transform(X)

    def inverse_transform(self, X) -> np.ndarray:
        X = self._checked(X, "inverse_transform")
        out_dtype = X.dtype if X.dtype.kind == "f" else np.float64
        return (X * self.scale_ + self.mean_).astype(out_dtype, copy=False)

    def __repr__(self):
        return f"Standardizer(n_features_={self.n_features_})" if self.mean_ is not None else "Standardizer()"


class Split(NamedTuple):
    """The six arrays of :func:`train_val_test_split`."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def _fraction(value, name):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 <= value < 1:
        raise ValueError(f"{name}: expected a fraction in [0, 1), received {value!r}")
    return float(value)


def train_val_test_split(X, y, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int | None = 0,
                         stratify: bool = True) -> Split:
    """Shuffle and split into train, validation and test sets, stratified by class.

    Parameters
    ----------
    X : array_like of shape (n_samples, ...)
    y : array_like of shape (n_samples,)
    val_fraction, test_fraction : float in [0, 1)
        Their sum must leave at least one training sample. A positive fraction always gets at
        least one sample.
    seed : int or None
        The same seed gives the same split.
    stratify : bool
        Keep each class's proportion in every part (needs integer labels).

    Returns
    -------
    Split
        A named tuple ``(X_train, y_train, X_val, y_val, X_test, y_test)``; each part keeps the
        original order of its rows.

    Examples
    --------
    >>> import numpy as np
    >>> s = train_val_test_split(np.zeros((100, 3)), np.repeat([0, 1], [80, 20]), 0.1, 0.2, seed=1)
    >>> len(s.y_train), len(s.y_val), len(s.y_test), int(s.y_test.sum())
    (70, 10, 20, 4)
    """
    val_fraction = _fraction(val_fraction, "val_fraction")
    test_fraction = _fraction(test_fraction, "test_fraction")
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction + test_fraction: expected a sum below 1, received "
                         f"{val_fraction} + {test_fraction}")
    if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0):
        raise ValueError(f"seed: expected a non-negative int or None, received {seed!r}")
    X = check_array(X, "X", ndim=None)
    if X.ndim == 0:
        raise ValueError(f"X: expected an array of shape (n_samples, ...), received shape {X.shape}")
    y = check_array(y, "y", ndim=1, allow_empty=True)
    if len(y) != len(X):
        raise ValueError(f"y: expected {len(X)} labels (one per row of X), received {len(y)}")
    n = len(X)
    n_test = int(round(n * test_fraction)) or (1 if test_fraction > 0 else 0)
    n_val = int(round(n * val_fraction)) or (1 if val_fraction > 0 else 0)
    if n - n_test - n_val < 1:
        raise ValueError(f"X: expected enough samples for a training set, received {n} "
                         f"({n_val} validation + {n_test} test)")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    if stratify:
        _, labels = check_X_y(np.zeros((n, 1)), y, classification=True)
        # NOTE: rank every sample within its class (in shuffled order) and sort by the
        # fraction of its class seen so far: taking any prefix then keeps class proportions.
        cls = labels[order]
        classes, inverse, counts = np.unique(cls, return_inverse=True, return_counts=True)
        rank = np.empty(n, dtype=np.int64)
        for c in range(len(classes)):
            members = np.flatnonzero(inverse == c)
            rank[members] = np.arange(len(members))
        frac = (rank + 0.5) / counts[inverse]
        order = order[np.argsort(frac, kind="stable")]
    test_idx = np.sort(order[:n_test])
    val_idx = np.sort(order[n_test:n_test + n_val])
    train_idx = np.sort(order[n_test + n_val:])
    return Split(X[train_idx], y[train_idx], X[val_idx], y[val_idx], X[test_idx], y[test_idx])
