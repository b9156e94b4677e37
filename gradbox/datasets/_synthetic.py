"""Synthetic 2-D classification problems: spirals, moons, xor, blobs (deterministic for a seed)."""
from __future__ import annotations

import numbers

import numpy as np


def _int(value, name, who, minimum=1):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{who}({name}): expected an int >= {minimum}, received {value!r}")
    return int(value)


def _noise(value, who, name="noise"):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not np.isfinite(value) or value < 0:
        raise ValueError(f"{who}({name}): expected a finite number >= 0, received {value!r}")
    return float(value)


def _rng(seed, who):
    if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0):
        raise ValueError(f"{who}(seed): expected a non-negative int or None, received {seed!r}")
    return np.random.default_rng(seed)


def _per_class(n_samples, k):
    """Split n_samples as evenly as possible over k classes (the first ones get the remainder)."""
    base, extra = divmod(n_samples, k)
    return [base + (c < extra) for c in range(k)]


def _shuffle(X, y, rng):
    order = rng.permutation(len(y))
    return X[order], y[order]


def spirals(n_samples=300, noise=0.2, n_classes=3, seed=0):
    """Interleaved spiral arms, one per class (CS231n's toy problem)."""
    who = "spirals"
    n_classes = _int(n_classes, "n_classes", who, 2)
    n_samples = _int(n_samples, "n_samples", who, n_classes)
    noise, rng = _noise(noise, who), _rng(seed, who)
    Xs, ys = [], []
    for c, m in enumerate(_per_class(n_samples, n_classes)):
        r = np.linspace(0.0, 1.0, m)
        t = np.linspace(c * 4.0, (c + 1) * 4.0, m) + rng.standard_normal(m) * noise
        Xs.append(np.column_stack([r * np.sin(t), r * np.cos(t)]))
        ys.append(np.full(m, c))
    return _shuffle(np.concatenate(Xs), np.concatenate(ys), rng)


def moons(n_samples=200, noise=0.1, seed=0):
    """Two interleaving half circles (as scikit-learn's ``make_moons``)."""
    who = "moons"
    n_samples = _int(n_samples, "n_samples", who, 2)
    noise, rng = _noise(noise, who), _rng(seed, who)
    n0, n1 = _per_class(n_samples, 2)
    t0, t1 = np.linspace(0, np.pi, n0), np.linspace(0, np.pi, n1)
    X = np.concatenate([np.column_stack([np.cos(t0), np.sin(t0)]),
                        np.column_stack([1 - np.cos(t1), 0.5 - np.sin(t1)])])
    X = X + rng.standard_normal(X.shape) * noise
    y = np.repeat([0, 1], [n0, n1])
    return _shuffle(X, y, rng)


def xor(n_samples=200, noise=0.1, seed=0):
    """Points in [-1, 1]^2 labelled 1 when exactly one coordinate is positive; ``noise`` jitters them."""
    who = "xor"
    n_samples = _int(n_samples, "n_samples", who, 2)
    noise, rng = _noise(noise, who), _rng(seed, who)
    X = rng.uniform(-1.0, 1.0, size=(n_samples, 2))
    y = ((X[:, 0] > 0) ^ (X[:, 1] > 0)).astype(np.int64)
    return X + rng.standard_normal(X.shape) * noise, y


def blobs(n_samples=300, centers=3, noise=1.0, n_features=2, seed=0, center_box=(-10.0, 10.0)):
    """Gaussian clusters, one per class; ``noise`` is each cluster's standard deviation.

    ``centers`` is a number of clusters (placed uniformly in ``center_box``) or an array of
    shape (n_classes, n_features) of their positions.
    """
    who = "blobs"
    rng = _rng(seed, who)
    noise = _noise(noise, who)
    if isinstance(centers, numbers.Integral) and not isinstance(centers, bool):
        k = _int(centers, "centers", who, 1)
        n_features = _int(n_features, "n_features", who)
        lo, hi = center_box
        positions = rng.uniform(lo, hi, size=(k, n_features))
    else:
        try:
            positions = np.asarray(centers, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{who}(centers): expected an int or an array of shape (n_classes, n_features), "
                             f"received {centers!r}") from None
        if positions.ndim != 2 or positions.size == 0 or not np.all(np.isfinite(positions)):
            raise ValueError(f"{who}(centers): expected a finite array of shape (n_classes, n_features), "
                             f"received shape {positions.shape}")
        k = len(positions)
    n_samples = _int(n_samples, "n_samples", who, k)
    Xs, ys = [], []
    for c, m in enumerate(_per_class(n_samples, k)):
        Xs.append(positions[c] + rng.standard_normal((m, positions.shape[1])) * noise)
        ys.append(np.full(m, c))
    return _shuffle(np.concatenate(Xs), np.concatenate(ys), rng)
