"""Every differentiable op and layer passes a float64 gradient check on >= 20 random shapes.

Shapes include size-1 and broadcast dimensions. The check is central differences
against a random cotangent; the relative error must be below 1e-7.
"""
import numpy as np
import pytest

import gradbox as gb
from gradbox import Function, Tensor, gradcheck, nn
from gradbox.gradcheck import GradientReport
from gradbox.nn import functional as F

from ..conftest import gradcheck_ok as check

N_SHAPES = 20
TOL = 1e-7


def rand_shape(rng, min_ndim=1, max_ndim=3):
    ndim = int(rng.integers(min_ndim, max_ndim + 1))
    return tuple(int(d) for d in rng.choice([1, 2, 3, 4], size=ndim))


def broadcast_partner(rng, shape):
    """A shape that broadcasts against ``shape``: some dims set to 1, some leading dims dropped."""
    drop = int(rng.integers(0, len(shape) + 1))
    partner = [1 if rng.random() < 0.4 else d for d in shape[drop:]]
    return tuple(partner)


def away_from_zero(rng, shape, low=0.3, high=2.0):
    return rng.uniform(low, high, shape) * rng.choice([-1, 1], shape)


SEEDS = range(N_SHAPES)

UNARY = {
    "neg": (lambda a: -a, "any"),
    "exp": (gb.exp, "any"),
    "log": (gb.log, "positive"),
    "relu": (gb.relu, "nonzero"),
    "leaky_relu": (lambda a: gb.leaky_relu(a, 0.1), "nonzero"),
    "sigmoid": (gb.sigmoid, "any"),
    "log_sigmoid": (gb.log_sigmoid, "any"),
    "tanh": (gb.tanh, "any"),
    "pow2": (lambda a: a**2, "any"),
    "pow3": (lambda a: a**3, "any"),
    "pow_half": (lambda a: a**0.5, "positive"),
    "pow_neg": (lambda a: a**-1, "nonzero"),
    "rsub": (lambda a: 1 - a, "any"),
    "rdiv": (lambda a: 10 / a, "nonzero"),
    "rmul": (lambda a: 2 * a, "any"),
    "radd": (lambda a: 1 + a, "any"),
}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary(name, seed):
    fn, domain = UNARY[name]
    rng = np.random.default_rng(seed)
    shape = rand_shape(rng)
    if domain == "positive":
        x = rng.uniform(0.5, 2.0, shape)
    elif domain == "nonzero":
        x = away_from_zero(rng, shape)
    else:
        x = rng.normal(size=shape)
    check(fn, [x])


BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "maximum": gb.maximum,
}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_with_broadcasting(name, seed):
    rng = np.random.default_rng(100 + seed)
    shape = rand_shape(rng)
    other = broadcast_partner(rng, shape)
    a, b = rng.normal(size=shape), away_from_zero(rng, other)
    if seed % 2:
        a, b = away_from_zero(rng, other), rng.normal(size=shape) + 3.0  # broadcast on the left too
    check(BINARY[name], [a, b])


@pytest.mark.parametrize("seed", SEEDS)
def test_matmul_shapes(seed):
    rng = np.random.default_rng(200 + seed)
    n, k, m = (int(v) for v in rng.integers(1, 5, size=3))
    kind = seed % 5
    if kind == 0:
        sa, sb = (n, k), (k, m)
    elif kind == 1:
        sa, sb = (k,), (k, m)
    elif kind == 2:
        sa, sb = (n, k), (k,)
    elif kind == 3:
        sa, sb = (2, n, k), (k, m)  # batched, broadcast right operand
    else:
        sa, sb = (1, n, k), (3, k, m)
    check(lambda a, b: a @ b, [rng.normal(size=sa), rng.normal(size=sb)])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("op", ["sum", "mean", "max"])
def test_reductions(op, seed):
    rng = np.random.default_rng(300 + seed)
    shape = rand_shape(rng)
    axis = None if seed % 4 == 0 else int(rng.integers(-len(shape), len(shape)))
    keepdims = bool(seed % 2)
    # NOTE: a permutation keeps max's argmax unique, so the check is away from ties.
    x = rng.permutation(np.prod(shape)).reshape(shape) * 0.1 + rng.normal(size=shape) * 0.01
    check(lambda a: getattr(a, op)(axis=axis, keepdims=keepdims), [x])


@pytest.mark.parametrize("seed", SEEDS)
def test_reshape_transpose_getitem(seed):
    rng = np.random.default_rng(400 + seed)
    shape = rand_shape(rng, 2, 3)
    x = rng.normal(size=shape)
    check(lambda a: a.reshape(-1), [x])
    check(lambda a: a.T, [x])
    perm = tuple(int(p) for p in rng.permutation(len(shape)))
    check(lambda a: a.transpose(perm), [x])
    check(lambda a: a[0], [x])
    check(lambda a: a[..., :1], [x])
    idx = rng.integers(0, shape[0], size=4)  # repeated indices accumulate
    check(lambda a: a[idx], [x])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmaxes(op, seed):
    rng = np.random.default_rng(500 + seed)
    shape = rand_shape(rng)
    axis = int(rng.integers(-len(shape), len(shape)))
    check(lambda a: getattr(gb, op)(a, axis=axis), [rng.normal(size=shape) * 3])


def rand_batch(rng):
    return int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(1, 5))


@pytest.mark.parametrize("seed", SEEDS)
def test_linear_box(seed):
    rng = np.random.default_rng(600 + seed)
    n, fin, fout = rand_batch(rng)
    x, w, b = rng.normal(size=(n, fin)), rng.normal(size=(fout, fin)), rng.normal(size=fout)
    check(F.linear, [x, w, b])
    check(F.linear, [x, w])
    # input that needs no gradient: dX is skipped, dW and db still right
    check(lambda w_, b_: F.linear(Tensor(x), w_, b_), [w, b])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("act", ["ReLU", "Sigmoid", "Tanh", "LeakyReLU", "Softmax", "Identity"])
def test_layers_against_parameters(act, seed):
    """Linear + activation as modules: check d/dX and d/dW, d/db through the module."""
    rng = np.random.default_rng(700 + seed)
    n, fin, fout = rand_batch(rng)
    layer = nn.Linear(fin, fout, dtype=np.float64, rng=seed)
    layer.bias.data[:] = rng.normal(size=fout)
    acts = {"ReLU": nn.ReLU(), "Sigmoid": nn.Sigmoid(), "Tanh": nn.Tanh(), "LeakyReLU": nn.LeakyReLU(0.2),
            "Softmax": nn.Softmax(dim=1), "Identity": nn.Sequential()}
    x = rng.normal(size=(n, fin))

    def fn(x_, w_, b_):
        return acts[act](F.linear(x_, w_, b_))

    check(fn, [x, layer.weight.data.copy(), layer.bias.data.copy()])


@pytest.mark.parametrize("seed", SEEDS)
def test_dropout_box(seed):
    rng = np.random.default_rng(800 + seed)
    shape = rand_shape(rng)
    # a fixed seed per call keeps the mask identical across the check's evaluations
    check(lambda a: F.dropout(a, 0.4, True, np.random.default_rng(seed)), [rng.normal(size=shape)])


@pytest.mark.parametrize("seed", SEEDS)
def test_cross_entropy_box(seed):
    rng = np.random.default_rng(900 + seed)
    n, c = int(rng.integers(1, 7)), int(rng.integers(1, 6))
    labels = rng.integers(0, c, size=n)
    check(lambda z: nn.CrossEntropyLoss()(z, labels), [rng.normal(size=(n, c)) * 2])


@pytest.mark.parametrize("seed", SEEDS)
def test_bce_with_logits_box(seed):
    rng = np.random.default_rng(1000 + seed)
    shape = (int(rng.integers(1, 7)),) + ((1,) if seed % 2 else ())
    z, y = rng.normal(size=shape) * 3, rng.uniform(0, 1, shape)
    check(lambda z_, y_: nn.BCEWithLogitsLoss()(z_, y_), [z, y])


@pytest.mark.parametrize("seed", SEEDS)
def test_mse_box(seed):
    rng = np.random.default_rng(1100 + seed)
    shape = rand_shape(rng)
    check(lambda p, t: nn.MSELoss()(p, t), [rng.normal(size=shape), rng.normal(size=shape)])


@pytest.mark.parametrize("seed", range(5))
def test_whole_networks_pass_check_gradients(seed):
    rng = np.random.default_rng(1200 + seed)
    dims = [int(d) for d in rng.integers(2, 6, size=4)]
    layers = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b, rng=seed * 10 + i))
        if i < len(dims) - 2:
            layers.append([nn.Tanh(), nn.Sigmoid(), nn.LeakyReLU(0.1)][i % 3])
    model = nn.Sequential(*layers)
    X, y = rng.normal(size=(7, dims[0])), rng.integers(0, dims[-1], size=7)
    report = gb.check_gradients(model, nn.CrossEntropyLoss(), X, y)
    assert report.passed and report.max_rel_error < TOL, report.table()
    assert model[0].weight.dtype == np.float32  # restored after the float64 check
    assert "0.weight" in report.table() and "PASSED" in report.table()


class WrongSquare(Function):
    """A planted bug: d(x^2)/dx written as x instead of 2x."""

    def forward(self, a):
        self.a = a
        return a * a

    def backward(self, g):
        return g * self.a


def test_gradcheck_catches_a_planted_wrong_backward():
    res = gradcheck(lambda a: WrongSquare.apply(a), [np.random.default_rng(0).normal(size=(3, 2))])
    assert not res.passed and res.max_rel_error > 0.1


def test_check_gradients_catches_a_planted_wrong_layer():
    class BrokenSquareLayer(nn.Module):
        def forward(self, x):
            return WrongSquare.apply(x)

    model = nn.Sequential(nn.Linear(3, 4, rng=0), BrokenSquareLayer(), nn.Linear(4, 2, rng=1))
    X, y = np.random.default_rng(0).normal(size=(5, 3)), np.array([0, 1, 1, 0, 1])
    report = gb.check_gradients(model, nn.CrossEntropyLoss(), X, y)
    assert not report.passed and "FAIL" in report.table()
    ok = {r["name"]: r["rel_error"] < 1e-7 for r in report.rows}
    assert ok["2.weight"] and not ok["0.weight"]  # the layer after the bug is still right


def test_gradcheck_validates_its_inputs():
    with pytest.raises(TypeError, match="expected floating-point data"):
        gradcheck(lambda a: a, [np.arange(3)])
    with pytest.raises(ValueError, match="at least one input that requires grad"):
        gradcheck(lambda a: a, [Tensor(np.ones(2))])


def test_check_gradients_accepts_a_truly_zero_gradient():
    """With zero weights and a balanced batch every gradient is exactly zero in theory;
    rounding can give ~1e-17 analytic vs 0 numeric, a relative error near 1 that must not fail."""
    model = nn.Sequential(nn.Linear(2, 2, rng=0))
    model[0].weight.data[:] = 0.0
    X = np.array([[1.0, 2.0], [1.0, 2.0]])
    y = np.array([0, 1])  # p = (0.5, 0.5) for both rows: mean(p - onehot) = 0
    report = gb.check_gradients(model, nn.CrossEntropyLoss(), X, y)
    assert all(r["abs_error"] < 1e-10 for r in report.rows)
    assert report.passed, report.table()
    # the row logic: a relative error of 1 with a tiny absolute error passes, a large one fails
    row = dict(name="b", shape=(2,), analytic_norm=5e-17, numeric_norm=0.0, rel_error=1.0, abs_error=5e-17)
    assert GradientReport([row], 1e-7).passed
    assert not GradientReport([dict(row, abs_error=1e-3)], 1e-7).passed


def test_relative_error_of_nonfinite_values_is_nan_not_zero():
    # A NaN or inf must never read as agreement (exercise and check_gradients compare it with a tolerance).
    assert gb.relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert gb.relative_error(np.array([1.0]), np.array([3.0])) == 0.5
    for bad in (np.nan, np.inf):
        assert np.isnan(gb.relative_error(np.array([bad, 1.0]), np.array([1.0, 1.0])))
        assert np.isnan(gb.relative_error(np.array([1.0]), np.array([bad])))
