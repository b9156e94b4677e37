"""Hundreds of malformed inputs into the core's public API (hypothesis).

Each must raise ValueError/TypeError (IndexError for indexing) whose message says
what was expected and what was received -- never return output silently, never
produce NaN, never leak a raw NumPy message.
"""
import re
import warnings

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradbox as gb
from gradbox import nn

EXAMPLES = 120  # per test; the suite's total is printed by test_count_is_at_least_500
RAW_NUMPY = re.compile(r"operands could not be broadcast|index \d+ is out of bounds for axis|cannot reshape array|"
                       r"could not convert string|setting an array element with a sequence|ufunc")
TRIED = {"n": 0}


def expect_clear_error(call, *exc_types):
    TRIED["n"] += 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning counts as silent garbage
        with pytest.raises(exc_types or (ValueError, TypeError)) as info:
            out = call()
            if isinstance(out, gb.Tensor) and out.dtype.kind == "f":
                assert np.isfinite(out.data).all(), "returned NaN silently"
            raise AssertionError(f"no error for a malformed input; returned {out!r:.80}")
    msg = str(info.value)
    assert "expected" in msg and "received" in msg, msg
    assert not RAW_NUMPY.search(msg), msg
    return msg


finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)
nonfinite = st.sampled_from([np.nan, np.inf, -np.inf])


@st.composite
def malformed_batch(draw, features=5):
    """Anything that is not a finite float32 (N, features) batch with N >= 1."""
    kind = draw(st.sampled_from(["ndim", "features", "empty", "nonfinite", "dtype", "object", "string",
                                 "complex", "ragged"]))
    if kind == "ndim":
        ndim = draw(st.sampled_from([0, 1, 3, 4]))
        return draw(hnp.arrays(np.float32, hnp.array_shapes(min_dims=ndim, max_dims=ndim, min_side=1, max_side=4)
                               if ndim else (), elements=finite))
    if kind == "features":
        f = draw(st.integers(0, 9).filter(lambda k: k != features))
        return np.ones((draw(st.integers(1, 4)), f), dtype=np.float32)
    if kind == "empty":
        return np.ones((0, features), dtype=np.float32)
    if kind == "nonfinite":
        x = draw(hnp.arrays(np.float32, (draw(st.integers(1, 4)), features), elements=finite))
        x[draw(st.integers(0, x.shape[0] - 1)), draw(st.integers(0, features - 1))] = draw(nonfinite)
        return x
    if kind == "dtype":
        return np.ones((2, features), dtype=draw(st.sampled_from([np.float64, np.int64, np.float16, np.bool_])))
    if kind == "object":
        return np.array([[object()] * features], dtype=object)
    if kind == "string":
        return np.array([[draw(st.text(min_size=1, max_size=3))] * features])
    if kind == "complex":
        return np.ones((2, features), dtype=np.complex128)
    return [[1.0] * features, [1.0] * draw(st.integers(0, features - 1))]


@settings(max_examples=EXAMPLES)
@given(malformed_batch())
def test_linear_refuses_malformed_batches(x):
    msg = expect_clear_error(lambda: nn.Linear(5, 3, rng=0)(x))
    assert "Linear(in_features=5)" in msg or "data:" in msg


@settings(max_examples=EXAMPLES)
@given(
    in_features=st.one_of(st.integers(max_value=0), st.floats(0.5, 9.5).filter(lambda v: v != int(v)),
                          st.booleans(), st.text(max_size=2), st.none()),
)
def test_linear_refuses_bad_sizes(in_features):
    expect_clear_error(lambda: nn.Linear(in_features, 3))


@st.composite
def malformed_classification(draw):
    n, c = draw(st.integers(1, 5)), draw(st.integers(2, 4))
    logits = draw(hnp.arrays(np.float64, (n, c), elements=st.floats(-50, 50)))
    labels = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    kind = draw(st.sampled_from(["range", "dtype", "count", "nonfinite", "ndim", "empty"]))
    if kind == "range":
        labels[draw(st.integers(0, n - 1))] = draw(st.one_of(st.integers(c, 100), st.integers(-100, -1)))
    elif kind == "dtype":
        labels = labels.astype(draw(st.sampled_from([np.float64, np.float32, np.bool_, np.complex64])))
    elif kind == "count":
        labels = np.resize(labels, n + draw(st.integers(1, 3)))
    elif kind == "nonfinite":
        logits[draw(st.integers(0, n - 1)), draw(st.integers(0, c - 1))] = draw(nonfinite)
    elif kind == "ndim":
        logits = logits.reshape(-1)
    else:
        logits, labels = logits[:0], labels[:0]
    return logits, labels


@settings(max_examples=EXAMPLES)
@given(malformed_classification())
def test_cross_entropy_refuses_malformed_inputs(case):
    logits, labels = case
    msg = expect_clear_error(lambda: nn.CrossEntropyLoss()(logits, labels))
    assert msg.startswith("CrossEntropyLoss") or msg.startswith("data")


@st.composite
def malformed_regression(draw):
    n = draw(st.integers(1, 5))
    pred = draw(hnp.arrays(np.float64, (n, 1), elements=st.floats(-50, 50)))
    target = draw(hnp.arrays(np.float64, (n, 1), elements=st.floats(0, 1)))
    kind = draw(st.sampled_from(["shape", "nonfinite_pred", "nonfinite_target", "range"]))
    if kind == "shape":
        target = np.zeros((n + draw(st.integers(1, 3)), 1))
    elif kind == "nonfinite_pred":
        pred[draw(st.integers(0, n - 1)), 0] = draw(nonfinite)
    elif kind == "nonfinite_target":
        target[draw(st.integers(0, n - 1)), 0] = draw(st.sampled_from([np.inf, -np.inf]))
    else:
        target[draw(st.integers(0, n - 1)), 0] = draw(st.floats(1.01, 10))
    return kind, pred, target


@settings(max_examples=EXAMPLES)
@given(malformed_regression())
def test_bce_and_mse_refuse_malformed_inputs(case):
    kind, pred, target = case
    expect_clear_error(lambda: nn.BCEWithLogitsLoss()(pred, target))
    if kind != "range":  # MSE has no target range
        expect_clear_error(lambda: nn.MSELoss()(pred, target))


bad_numbers = st.one_of(st.floats(max_value=-1e-9), st.sampled_from([np.nan, np.inf, -np.inf]),
                        st.text(max_size=3), st.none(), st.just([0.1]))


@settings(max_examples=EXAMPLES)
@given(lr=bad_numbers, which=st.sampled_from(["SGD", "RMSprop", "Adam", "AdamW"]))
def test_optimizers_refuse_bad_learning_rates(lr, which):
    msg = expect_clear_error(lambda: getattr(gb.optim, which)(nn.Linear(2, 2).parameters(), lr=lr))
    assert msg.startswith(f"{which}(lr)")


@st.composite
def incompatible_shapes(draw):
    a = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=2, max_side=4))
    b = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=2, max_side=4))
    try:
        np.broadcast_shapes(a, b)
        b = b[:-1] + (b[-1] + a[-1],)  # make the last axes disagree (neither is 1)
    except ValueError:
        pass
    return a, b


@settings(max_examples=EXAMPLES)
@given(incompatible_shapes(), st.sampled_from(["add", "sub", "mul", "div", "maximum", "matmul"]))
def test_ops_refuse_incompatible_shapes(shapes, op):
    a, b = shapes
    if op == "matmul" and (a[-1] == (b[0] if len(b) == 1 else b[-2])):
        b = b[:-2] + (b[-2] + 1, b[-1]) if len(b) > 1 else (b[0] + 1,)
    f = {"add": gb.ops.add, "sub": gb.ops.sub, "mul": gb.ops.mul, "div": gb.ops.div,
         "maximum": gb.maximum, "matmul": gb.matmul}[op]
    msg = expect_clear_error(lambda: f(gb.Tensor(np.ones(a)), gb.Tensor(np.ones(b))))
    assert msg.startswith(op)


@settings(max_examples=EXAMPLES)
@given(malformed_batch())
def test_tensor_creation_refuses_non_numeric_data(x):
    if isinstance(x, np.ndarray) and x.dtype.kind in "fiub":
        return  # numeric arrays of any shape are valid tensors (NaN included, as in PyTorch)
    expect_clear_error(lambda: gb.Tensor(x))


@settings(max_examples=60)
@given(hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), st.integers(-6, 6))
def test_reductions_refuse_bad_axes(shape, axis):
    if -len(shape) <= axis < len(shape):
        axis = len(shape) + 2
    expect_clear_error(lambda: gb.Tensor(np.ones(shape)).sum(axis=axis))
    expect_clear_error(lambda: gb.softmax(gb.Tensor(np.ones(shape)), axis=axis))


def test_count_is_at_least_500():
    """Runs last in this file: the hypothesis tests above tried at least 500 malformed inputs."""
    assert TRIED["n"] >= 500, TRIED["n"]


def _layouts(a):
    ro = a.copy()
    ro.setflags(write=False)
    strided = np.repeat(a, 2, axis=1)[:, ::2]
    return {"read-only": ro, "fortran": np.asfortranarray(a), "strided": strided}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_read_only_fortran_and_strided_inputs_match_contiguous_and_are_not_modified(dtype):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 4)).astype(dtype)
    y = rng.integers(0, 3, size=6)
    model = nn.Sequential(nn.Linear(4, 5, dtype=dtype, rng=0), nn.ReLU(), nn.Linear(5, 3, dtype=dtype, rng=1))

    def run(x, labels):
        model.zero_grad()
        loss = nn.CrossEntropyLoss()(model(x), labels)
        loss.backward()
        return loss.item(), [p.grad.copy() for p in model.parameters()]

    ref_loss, ref_grads = run(np.ascontiguousarray(X), y)
    for name, x in _layouts(X).items():
        before = x.copy()
        labels = y.copy()
        labels.setflags(write=False)
        loss, grads = run(x, labels)
        assert loss == ref_loss, name
        for g, r in zip(grads, ref_grads):
            np.testing.assert_array_equal(g, r, err_msg=name)
        np.testing.assert_array_equal(x, before)  # never modified


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1e3, 1e30])
@pytest.mark.parametrize("op", ["sigmoid", "log_sigmoid", "tanh", "softmax", "log_softmax", "relu", "leaky_relu"])
def test_activations_at_extreme_inputs_are_finite_without_fp_warnings(op, scale, dtype):
    x = np.array([[-scale, -1.0, 0.0, 1.0, scale]], dtype=dtype)
    with np.errstate(all="raise"):
        t = gb.Tensor(x, requires_grad=True)
        out = getattr(gb, op)(t)
        out.backward(np.ones_like(x))
    assert np.isfinite(out.data).all() and np.isfinite(t.grad).all()
