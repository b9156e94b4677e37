"""Modules, layers, losses and initialisers: behaviour and error messages."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
import pytest

import gradbox as gb
from gradbox import Tensor, nn


def mlp(seed=0, dtype=np.float32):
    return nn.Sequential(
        nn.Linear(4, 8, dtype=dtype, rng=seed), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3, dtype=dtype, rng=seed + 1)
    )


def test_parameters_have_a_fixed_order_and_dotted_names():
    model = mlp()
    names = [n for n, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "3.weight", "3.bias"]
    assert [p.shape for p in model.parameters()] == [(8, 4), (8,), (3, 8), (3,)]
    assert list(model.parameters())[0] is model[0].weight


def test_shared_parameters_are_listed_once():
    lin = nn.Linear(3, 3, rng=0)
    model = nn.Sequential(lin, nn.Tanh(), lin)
    assert len(list(model.parameters())) == 2


def test_layer_used_twice_keeps_two_caches():
    """Per-call contexts: the same Linear twice in one graph gets both gradient terms."""
    lin = nn.Linear(2, 2, dtype=np.float64, rng=0)
    x = Tensor(np.array([[1.0, -2.0]]))
    out = lin(gb.tanh(lin(x))).sum()
    out.backward()
    W = lin.weight.data

    def f():
        with gb.no_grad():
            return lin(gb.tanh(lin(x))).sum().item()

    numeric = np.zeros_like(W)
    for idx in np.ndindex(W.shape):
        orig = W[idx]
        W[idx] = orig + 1e-6
        plus = f()
        W[idx] = orig - 1e-6
        minus = f()
        W[idx] = orig
        numeric[idx] = (plus - minus) / 2e-6
    assert gb.relative_error(lin.weight.grad, numeric) < 1e-8


def test_weight_is_out_by_in_and_bias_starts_at_zero():
    lin = nn.Linear(784, 10, rng=0)
    assert lin.weight.shape == (10, 784) and lin.bias.shape == (10,)
    assert lin.weight.dtype == np.float32
    assert not np.any(lin.bias.data) and np.all(lin.weight.data != 0).mean() > 0.99
    assert nn.Linear(3, 2, bias=False).bias is None
    assert len(list(nn.Linear(3, 2, bias=False).parameters())) == 1


def test_linear_shape_error_names_layer_expected_and_received():
    lin = nn.Linear(784, 10)
    with pytest.raises(ValueError) as info:
        lin(np.zeros((32, 28, 28), dtype=np.float32))
    assert str(info.value) == "Linear(in_features=784): expected input of shape (N, 784) with N >= 1, received (32, 28, 28)"
    with pytest.raises(TypeError, match="expected input of dtype float32, received float64"):
        lin(np.zeros((2, 784)))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(in_features=0, out_features=2), r"Linear\(in_features\): expected a positive int, received 0"),
        (dict(in_features=2.5, out_features=2), r"expected a positive int, received 2.5"),
        (dict(in_features=2, out_features=-1), r"Linear\(out_features\): expected a positive int, received -1"),
        (dict(in_features=2, out_features=2, dtype=np.int32), r"Linear\(dtype\): expected float32 or float64"),
        (dict(in_features=2, out_features=2, init="zeros"), r"Linear\(init\): expected one of"),
    ],
)
def test_linear_validates_arguments(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        nn.Linear(**kwargs)


def test_linear_skips_input_gradient_when_not_needed():
    lin = nn.Linear(3, 2, dtype=np.float64, rng=0)
    x = Tensor(np.ones((4, 3)))
    out = lin(x)
    calls = {}
    original = out._ctx.backward

    def spy(g):
        grads = original(g)
        calls["dx"] = grads[0]
        return grads

    out._ctx.backward = spy
    out.sum().backward()
    assert calls["dx"] is None and lin.weight.grad is not None


def test_linear_backward_uses_the_notes_formulas():
    rng = np.random.default_rng(0)
    lin = nn.Linear(3, 2, dtype=np.float64, rng=0)
    X = Tensor(rng.normal(size=(5, 3)), requires_grad=True)
    dZ = rng.normal(size=(5, 2))
    lin(X).backward(dZ)
    W = lin.weight.data
    np.testing.assert_allclose(X.grad, dZ @ W)  # dA[l-1] = W^T dZ, transposed
    np.testing.assert_allclose(lin.weight.grad, dZ.T @ X.data)  # dW = dZ A^T
    np.testing.assert_allclose(lin.bias.grad, dZ.sum(axis=0))  # db = sum dZ


def test_train_eval_switches_dropout():
    model = mlp()
    x = np.ones((200, 4), dtype=np.float32)
    model.eval()
    assert not any(m.training for m in model.modules())
    np.testing.assert_array_equal(model(x).data, model(x).data)
    model.train()
    assert all(m.training for m in model.modules())


def test_dropout_is_inverted_and_identity_in_eval():
    gb.manual_seed(0)
    drop = nn.Dropout(0.25)
    x = np.ones((1000, 100), dtype=np.float32)
    y = drop(Tensor(x)).data
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    drop.eval()
    assert drop(Tensor(x)).data is x
    with pytest.raises(ValueError, match=r"Dropout\(p\): expected a probability in \[0, 1\), received 1.0"):
        nn.Dropout(1.0)


def test_state_dict_round_trip_and_validation():
    a, b = mlp(0), mlp(5)
    sd = a.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "3.weight", "3.bias"]
    sd["0.weight"][0, 0] = 123.0  # a copy: the model is unchanged
    assert a[0].weight.data[0, 0] != 123.0
    b.load_state_dict(a.state_dict())
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    bad = a.state_dict()
    bad["3.bias"] = np.zeros(4, dtype=np.float32)
    before = b.state_dict()
    with pytest.raises(ValueError, match=r"load_state_dict\['3.bias'\]: expected shape \(3,\), received \(4,\)"):
        b.load_state_dict(bad)
    for k, v in b.state_dict().items():  # nothing changed by the failed load
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(ValueError, match="missing"):
        b.load_state_dict({"0.weight": sd["0.weight"]})
    wrong_dtype = {k: v.astype(np.float64) for k, v in a.state_dict().items()}
    with pytest.raises(TypeError, match="expected dtype float32, received float64"):
        b.load_state_dict(wrong_dtype)


def test_custom_module_registers_in_assignment_order():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden = nn.Linear(2, 3, rng=0)
            self.out = nn.Linear(3, 1, rng=1)

        def forward(self, x):
            return self.out(gb.relu(self.hidden(x)))

    net = Net()
    assert [n for n, _ in net.named_parameters()] == ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]
    assert net(np.ones((5, 2), dtype=np.float32)).shape == (5, 1)

    class Forgot(nn.Module):
        def __init__(self):
            self.x = 1

    with pytest.raises(RuntimeError, match=r"call super\(\).__init__\(\)"):
        Forgot()


def test_sequential_and_activation_modules():
    x = Tensor(np.array([[-1.0, 0.5, 2.0]]))
    np.testing.assert_allclose(nn.ReLU()(x).data, [[0, 0.5, 2.0]])
    np.testing.assert_allclose(nn.LeakyReLU(0.1)(x).data, [[-0.1, 0.5, 2.0]])
    np.testing.assert_allclose(nn.Sigmoid()(x).data, 1 / (1 + np.exp(-x.data)))
    np.testing.assert_allclose(nn.Tanh()(x).data, np.tanh(x.data))
    np.testing.assert_allclose(nn.Softmax(dim=1)(x).data.sum(), 1.0)
    assert nn.Flatten()(Tensor(np.ones((2, 3, 4)))).shape == (2, 12)
    with pytest.raises(TypeError, match="expected Module arguments"):
        nn.Sequential(nn.ReLU(), "relu")
    assert "Linear(in_features=4, out_features=8, bias=True)" in repr(mlp())


def test_cross_entropy_value_and_gradient_are_softmax_minus_one_hot_over_m():
    z = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]])
    y = np.array([0, 2])
    t = Tensor(z, requires_grad=True)
    loss = nn.CrossEntropyLoss()(t, y)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    assert loss.item() == pytest.approx(-np.mean(np.log(p[[0, 1], y])))
    loss.backward()
    np.testing.assert_allclose(t.grad, (p - np.eye(3)[y]) / 2)


@pytest.mark.parametrize(
    "logits,labels,exc,message",
    [
        (np.zeros((2, 3)), np.array([0, 3]), ValueError, r"expected labels in \[0, 3\), received values in \[0, 3\]"),
        (np.zeros((2, 3)), np.array([-1, 0]), ValueError, r"expected labels in \[0, 3\)"),
        (np.zeros((2, 3)), np.array([0, 1, 2]), ValueError, r"expected labels of shape \(2,\) to match logits"),
        (np.zeros((2, 3)), np.array([0.0, 1.0]), TypeError, "expected integer class labels, received dtype float64"),
        (np.zeros(3), np.array([0]), ValueError, r"expected a non-empty logits of shape \(N, C\), received \(3,\)"),
        (np.zeros((0, 3)), np.array([], dtype=int), ValueError, "non-empty"),
    ],
)
def test_cross_entropy_errors(logits, labels, exc, message):
    with pytest.raises(exc, match=message):
        nn.CrossEntropyLoss()(logits, labels)


def test_bce_and_mse_errors():
    with pytest.raises(ValueError, match=r"BCEWithLogitsLoss: expected targets in \[0, 1\]"):
        nn.BCEWithLogitsLoss()(np.zeros(3), np.array([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"BCEWithLogitsLoss: expected target of shape \(3,\) to match input"):
        nn.BCEWithLogitsLoss()(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match=r"MSELoss: expected target of shape \(2, 2\) to match input, received \(4,\)"):
        nn.MSELoss()(np.zeros((2, 2)), np.zeros(4))
    # (N,) labels for (N, 1) logits are accepted, as a user would expect
    assert nn.BCEWithLogitsLoss()(np.zeros((3, 1)), np.array([0, 1, 1])).item() == pytest.approx(np.log(2))


def test_losses_are_finite_for_extreme_logits_without_warnings():
    with np.errstate(all="raise"):
        z = Tensor(np.array([[1e4, -1e4], [-1e30, 1e30]]), requires_grad=True)
        loss = nn.CrossEntropyLoss()(z, np.array([0, 0]))
        loss.backward()
        assert np.isfinite(loss.item()) and np.all(np.isfinite(z.grad))
        b = Tensor(np.array([1e4, -1e4, 1e30]), requires_grad=True)
        bl = nn.BCEWithLogitsLoss()(b, np.array([0.0, 1.0, 1.0]))
        bl.backward()
        assert np.isfinite(bl.item()) and np.all(np.isfinite(b.grad))
        s = gb.sigmoid(Tensor(np.array([-1e4, 1e4])))
        np.testing.assert_array_equal(s.data, [0.0, 1.0])
        ls = gb.log_sigmoid(Tensor(np.array([-1e4, 1e4])))
        np.testing.assert_allclose(ls.data, [-1e4, 0.0])
        sm = gb.softmax(Tensor(np.array([[1e4, 0.0, -1e4]])))
        np.testing.assert_allclose(sm.data, [[1.0, 0.0, 0.0]])


@pytest.mark.parametrize("name", ["he_normal", "he_uniform", "xavier_normal", "xavier_uniform"])
def test_initialisers_are_seeded_never_zero_and_scaled(name):
    init = nn.init.get_initializer(name)
    a = init(nn.Parameter(np.zeros((400, 300))), rng=1)
    b = init(nn.Parameter(np.zeros((400, 300))), rng=np.random.default_rng(1))
    c = init(nn.Parameter(np.zeros((400, 300))), rng=2)
    np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(a.data, c.data)
    assert np.count_nonzero(a.data) == a.size
    fan_in, fan_out = 300, 400
    expected = np.sqrt(2 / fan_in) if name.startswith("he") else np.sqrt(2 / (fan_in + fan_out))
    assert a.data.std() == pytest.approx(expected, rel=0.03)
    # distinct hidden units: no symmetric rows
    assert len(np.unique(a.data.round(6), axis=0)) == 400


def test_manual_seed_makes_construction_reproducible():
    gb.manual_seed(42)
    a = nn.Linear(5, 5)
    gb.manual_seed(42)
    b = nn.Linear(5, 5)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    state = gb.get_rng_state()
    x = gb.random.default_generator().random(3)
    gb.set_rng_state(state)
    np.testing.assert_array_equal(gb.random.default_generator().random(3), x)
    with pytest.raises(ValueError, match="seed: expected a non-negative int"):
        gb.manual_seed(-1)


def test_module_astype_converts_parameters():
    model = mlp().astype(np.float64)
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert model(np.ones((2, 4))).dtype == np.float64


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_grad_inference_path_is_bit_identical_to_the_graph(dtype):
    """Under no_grad a Sequential MLP runs its boxes' forward on bare arrays; same numbers."""
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(6, 9, dtype=dtype, rng=0), nn.ReLU(), nn.Dropout(0.3),
                          nn.Linear(9, 7, dtype=dtype, rng=1), nn.LeakyReLU(0.1), nn.Linear(7, 5, dtype=dtype, rng=2),
                          nn.Tanh(), nn.Linear(5, 4, dtype=dtype, rng=3), nn.Sigmoid(), nn.Linear(4, 3, dtype=dtype),
                          nn.Softmax(dim=1)).eval()
    for n in (1, 13, 400):  # NOTE: 400 x 9 crosses ReLU's switch from a scalar zero to a zero row
        x = rng.normal(size=(n, 6)).astype(dtype)
        graph = model(x).data
        with gb.no_grad():
            out = model(x)
        assert not out.requires_grad and out.dtype == dtype
        np.testing.assert_array_equal(out.data, graph)
    with gb.no_grad(), pytest.raises(ValueError, match=r"Linear\(in_features=6\): expected input of shape \(N, 6\)"):
        model(np.ones((2, 5), dtype=dtype))
    with gb.no_grad(), pytest.raises(gb.NonFiniteError, match="expected finite input"):
        model(np.full((1, 6), np.nan, dtype=dtype))
    bad = nn.Sequential(nn.Linear(6, 4, dtype=dtype), nn.Linear(5, 2, dtype=dtype))
    with gb.no_grad(), pytest.raises(ValueError, match=r"Linear\(in_features=5\): expected input of shape \(N, 5\)"):
        bad(np.ones((2, 6), dtype=dtype))


def test_dropout_in_training_mode_still_applies_under_no_grad():
    gb.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 50, rng=0), nn.Dropout(0.5))
    with gb.no_grad():
        out = model(np.ones((3, 4), dtype=np.float32)).data
    assert (out == 0).mean() > 0.2  # the training-mode model is not silently in eval


def test_no_grad_path_follows_module_changes_and_mode_switches():
    """The no-graph plan is rebuilt when modules change; Dropout reads train/eval at call time."""
    model = nn.Sequential(nn.Linear(4, 8, rng=0), nn.ReLU())
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    with gb.no_grad():
        assert model(x).shape == (5, 8)
        model.append(nn.Linear(8, 3, rng=2))
        assert model(x).shape == (5, 3)
        model.append(nn.Dropout(0.5))
        model.eval()
        np.testing.assert_array_equal(model(x).data, model[2](model[1](model[0](x))).data)
        model.train()
        gb.manual_seed(3)
        dropped = model(x).data
    gb.manual_seed(3)
    np.testing.assert_array_equal(dropped, model(x).data)  # same draws as the graph path
    assert (dropped == 0).any()
    setattr(model, "1", nn.Tanh())
    with gb.no_grad():
        np.testing.assert_array_equal(model.eval()(x).data, model[2](model[1](model[0](x))).data)


def test_no_grad_path_accepts_huge_finite_input_and_refuses_inf():
    """x·x overflows for huge finite entries; the exact scan then decides, as in the graph path."""
    model = nn.Sequential(nn.Linear(2, 3, rng=0), nn.ReLU()).eval()
    huge = np.array([[1e20, -1e20]], dtype=np.float32)  # x·x = 2e40 overflows float32
    with gb.no_grad():
        np.testing.assert_array_equal(model(huge).data, model[1](model[0](huge)).data)
        with pytest.raises(gb.NonFiniteError, match=r"expected finite input, received inf at index \(0, 1\)"):
            model(np.array([[1.0, np.inf]], dtype=np.float32))


@pytest.mark.parametrize("size", [1, 2047, 2048, 2049, 4096])
def test_relu_is_max_zero_on_both_sides_of_its_small_array_switch(size):
    from gradbox.ops import _relu

    a = np.random.default_rng(size).normal(size=(size // 8 or 1, 8 if size >= 8 else size)).astype(np.float32)
    a.flat[0] = np.nan
    expected = np.where(np.isnan(a), np.nan, np.where(a > 0, a, 0)).astype(np.float32)
    np.testing.assert_array_equal(_relu(a), expected)
    inplace = a.copy()
    assert _relu(inplace, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, expected)


def test_no_grad_path_never_writes_the_callers_input():
    model = nn.Sequential(nn.Linear(3, 3, rng=0), nn.ReLU(), nn.Tanh()).eval()
    x = np.array([[-1.0, 2.0, -3.0]], dtype=np.float32)
    before = x.copy()
    with gb.no_grad():
        model(x)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_all_finite_is_exact_including_overflowing_but_finite_arrays(dtype):
    from gradbox.errors import all_finite

    big = np.finfo(dtype).max
    assert all_finite(np.array([[big, -big, 1.0]], dtype=dtype))  # the dot overflows; the scan decides
    for bad in (np.nan, np.inf, -np.inf):
        a = np.zeros((3, 4), dtype=dtype)
        a[2, 1] = bad
        strided = a[:, ::2]  # not contiguous: the exact scan decides
        assert not all_finite(a) and not all_finite(np.asfortranarray(a)) and not all_finite(strided[:, :1] + a[:, 1:2])
    assert all_finite(np.zeros((0, 3), dtype=dtype)) and all_finite(np.array(1.0, dtype=dtype))
    assert not all_finite(np.array(np.nan, dtype=dtype))


def test_replacing_a_submodule_or_parameter_keeps_its_place():
    model = nn.Sequential(nn.Linear(2, 3, rng=0), nn.ReLU(), nn.Linear(3, 1, rng=1))
    setattr(model, "1", nn.Tanh())
    assert [type(m).__name__ for m in model] == ["Linear", "Tanh", "Linear"]
    layer = model[0]
    layer.weight = nn.Parameter(np.zeros((3, 2), dtype=np.float32))
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]


@pytest.mark.parametrize("dtype", ["<i1", "<i2", ">i4", "<i8", ">i8", "<u1", ">u2", "<u8"])
def test_label_range_check_holds_for_every_integer_dtype_and_byte_order(dtype):
    logits = np.zeros((3, 4), dtype=np.float32)
    ok = np.array([0, 3, 2], dtype=dtype)
    assert np.isclose(nn.CrossEntropyLoss()(logits, ok).item(), np.log(4))
    bad = [np.array([0, 4, 1], dtype=dtype)]
    if np.dtype(dtype).kind == "i":
        bad.append(np.array([0, -1, 1], dtype=dtype))
    for y in bad:
        with pytest.raises(ValueError, match=r"expected labels in \[0, 4\)"):
            nn.CrossEntropyLoss()(logits, y)


@given(hnp.arrays(dtype=st.sampled_from([np.float16, np.float32, np.float64]),
                  shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=7),
                  elements=st.floats(allow_nan=True, allow_infinity=True, width=16)),
       st.sampled_from(["C", "F", "strided"]))
@settings(max_examples=300, deadline=None)
def test_all_finite_agrees_with_numpy_on_any_array(a, layout):
    from gradbox.errors import all_finite

    if layout == "F":
        a = np.asfortranarray(a)
    elif layout == "strided" and a.ndim:
        a = a[::2]
    assert all_finite(a) == bool(np.isfinite(a).all())


@given(st.lists(st.integers(1, 9), min_size=2, max_size=5), st.integers(1, 20),
       st.lists(st.sampled_from(["relu", "tanh", "sigmoid", "leaky", "none"]), min_size=4, max_size=4),
       st.sampled_from([np.float32, np.float64]), st.integers(0, 2**16))
@settings(max_examples=60, deadline=None)
def test_no_graph_path_equals_the_graph_for_random_mlps(widths, batch, acts, dtype, seed):
    makers = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "leaky": lambda: nn.LeakyReLU(0.2)}
    layers = []
    for i, (n_in, n_out) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(n_in, n_out, dtype=dtype, rng=seed + i))
        if acts[i] != "none":
            layers.append(makers[acts[i]]())
    model = nn.Sequential(*layers).eval()
    x = np.random.default_rng(seed).normal(scale=3.0, size=(batch, widths[0])).astype(dtype)
    before = x.copy()
    graph = model(x).data
    with gb.no_grad():
        fast = model(x).data
    np.testing.assert_array_equal(fast, graph)
    np.testing.assert_array_equal(x, before)
