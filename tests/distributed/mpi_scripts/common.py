"""Shared by the scripts that tests/distributed/test_distributed.py launches under mpiexec (and by the test itself)."""
import os

import numpy as np

import gradbox as gb


def shared_memory_expected() -> bool:
    """Whether DistributedOptimizer's automatic choice here must be the shared-memory window: every
    rank runs on this machine, and its /dev/shm has ample room (with little, as in a container's
    default 64 MB, the library falls back to Allreduce, and a test must not demand the window)."""
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return False
    return st.f_bavail * st.f_frsize >= 1 << 30


def dataset(n=103, d=5, classes=3, seed=0):
    """A small float64 classification set; 103 samples so that no batch size used divides it."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1).astype(np.int64)
    return X, y % classes


def model(d=5, classes=3):
    gb.manual_seed(1)
    return gb.nn.Sequential(gb.nn.Linear(d, 8, dtype=np.float64), gb.nn.Tanh(),
                            gb.nn.Linear(8, classes, dtype=np.float64))


def model_with_batch_norm(kind, d=5, classes=3):
    """``bn1d``: an MLP with BatchNorm1d; ``bn2d``: a small CNN with BatchNorm2d (inputs (N, 1, 4, 4)).

    NOTE: no bias before BatchNorm (as usual): its true gradient is zero, and Adam turns the rounding
    noise of that zero into steps of ~1e-11 (noise / eps), which differ with the summation order.
    """
    gb.manual_seed(1)
    f64 = np.float64
    if kind == "bn1d":
        return gb.nn.Sequential(gb.nn.Linear(d, 8, bias=False, dtype=f64), gb.nn.BatchNorm1d(8, dtype=f64), gb.nn.Tanh(),
                                gb.nn.Linear(8, classes, dtype=f64))
    return gb.nn.Sequential(gb.nn.Conv2d(1, 2, 3, padding=1, bias=False, dtype=f64), gb.nn.BatchNorm2d(2, dtype=f64),
                            gb.nn.ReLU(), gb.nn.Flatten(), gb.nn.Linear(32, classes, dtype=f64))


def setup(kind):
    """(X, y, model) of a test run: ``mlp``, ``bn1d`` or ``bn2d``."""
    if kind == "mlp":
        return (*dataset(), model())
    if kind == "bn1d":
        return (*dataset(), model_with_batch_norm("bn1d"))
    X, y = dataset(d=16)
    return X.reshape(-1, 1, 4, 4), y, model_with_batch_norm("bn2d")


def optimizer(name, params):
    if name == "sgd":
        return gb.optim.SGD(params, lr=0.1, momentum=0.9)
    if name == "adam":
        return gb.optim.Adam(params, lr=0.01)
    raise ValueError(name)
