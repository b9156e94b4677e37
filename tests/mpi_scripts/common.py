"""Shared by the scripts that tests/test_distributed.py launches under mpiexec (and by the test itself)."""
import numpy as np

import gradbox as gb


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


def optimizer(name, params):
    if name == "sgd":
        return gb.optim.SGD(params, lr=0.1, momentum=0.9)
    if name == "adam":
        return gb.optim.Adam(params, lr=0.01)
    raise ValueError(name)
