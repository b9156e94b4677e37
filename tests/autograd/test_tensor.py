"""Tensor semantics: data, grad accumulation, graph walking, no_grad, dtypes."""
import numpy as np
import pytest

import gradbox as gb
from gradbox import Tensor


def test_data_is_shared_and_in_place_writes_update_the_tensor():
    arr = np.arange(3, dtype=np.float32)
    t = Tensor(arr)
    assert t.data is arr and t.numpy() is arr
    t.data[0] = 5.0
    assert t.numpy()[0] == 5.0
    assert t.shape == (3,) and t.dtype == np.float32


def test_grad_accumulates_across_backward_calls_and_zero_grad_clears():
    x = Tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad, [6.0, 6.0])
    assert x.grad.shape == x.shape and x.grad.dtype == x.dtype
    x.zero_grad()
    assert x.grad is None


def test_non_scalar_backward_needs_grad():
    x = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match=r"scalar output; received shape \(2,\)"):
        (x * 2).backward()
    y = x * 2
    y.backward(np.array([1.0, 10.0]))
    np.testing.assert_array_equal(x.grad, [2.0, 20.0])
    with pytest.raises(ValueError, match=r"expected shape \(2,\), received \(3,\)"):
        (x * 2).backward(np.ones(3))


def test_backward_without_graph_is_a_clear_error():
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor([1.0]).sum().backward()


def test_ten_thousand_deep_chain_walks_iteratively():
    x = Tensor(np.array(1.0), requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward()
    np.testing.assert_allclose(x.grad, 1.0001**10_000, rtol=1e-3)


def test_node_reused_many_times_accumulates():
    x = Tensor(np.array(2.0, dtype=np.float64), requires_grad=True)
    y = x * 1.0
    total = y
    for _ in range(99):
        total = total + y  # y feeds 100 uses
    (total * x).backward()  # d/dx (100 x * x) = 200 x
    np.testing.assert_allclose(x.grad, 400.0)


def test_diamond_graph():
    a = Tensor(np.array(3.0), requires_grad=True)
    b = a * a
    c = a * b + b  # a^3 + a^2
    c.backward()
    assert a.grad == pytest.approx(3 * 9 + 2 * 3)


def test_no_grad_builds_no_graph():
    w = Tensor([1.0], requires_grad=True)
    with gb.no_grad():
        y = w * 2 + 1
    assert not y.requires_grad and y._ctx is None
    assert gb.is_grad_enabled()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved_through_ops_and_grads(dtype):
    x = Tensor(np.ones((2, 3), dtype=dtype), requires_grad=True)
    ops = [x + 1, 2 * x, x / 3, 10 / (x + 1), x**2, -x, x.exp(), gb.sigmoid(x), gb.tanh(x), gb.relu(x),
           gb.softmax(x), gb.log_softmax(x), x.mean(), x.sum(axis=0), x.max(axis=1), x.T @ x, x[0]]
    for out in ops:
        assert out.dtype == dtype, out
        out.sum().backward()
    assert x.grad.dtype == dtype


def test_mixed_float_dtypes_are_refused_not_upcast():
    a = Tensor(np.ones(2, dtype=np.float32))
    b = Tensor(np.ones(2, dtype=np.float64))
    with pytest.raises(TypeError, match="expected operands of one dtype, received float32 and float64"):
        a + b


def test_python_floats_default_to_float32_and_numpy_keeps_its_dtype():
    assert Tensor([1.0]).dtype == np.float32
    assert Tensor(np.array([1.0])).dtype == np.float64
    assert Tensor([1, 2]).dtype.kind == "i"


@pytest.mark.parametrize("bad", [["a", "b"], np.array([1 + 2j]), np.array([object()], dtype=object)])
def test_non_numeric_data_is_refused(bad):
    with pytest.raises(TypeError, match="expected numeric"):
        Tensor(bad)


def test_ragged_data_is_refused():
    with pytest.raises(ValueError, match="ragged"):
        Tensor([[1.0, 2.0], [3.0]])


def test_requires_grad_needs_float():
    with pytest.raises(TypeError, match="floating-point"):
        Tensor([1, 2], requires_grad=True)


def test_detach_shares_data_but_not_graph():
    x = Tensor([1.0], requires_grad=True)
    d = (x * 2).detach()
    assert not d.requires_grad and d._ctx is None


def test_graph_is_freed_after_backward_unless_retained():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(x.grad, [4.0, 8.0])
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_retain_grad_keeps_intermediate_gradients():
    x = Tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    h.retain_grad()
    (h * h).sum().backward()
    np.testing.assert_array_equal(h.grad, [6.0, 12.0])


def test_broadcast_error_is_clear():
    with pytest.raises(ValueError, match=r"add: expected shapes that broadcast together, received \(2, 3\) and \(4,\)"):
        Tensor(np.ones((2, 3))) + Tensor(np.ones(4))


def test_matmul_error_is_clear():
    with pytest.raises(ValueError, match=r"matmul: expected inner dimensions to agree, received \(2, 3\) @ \(4, 5\)"):
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((4, 5)))


def test_index_error_is_clear():
    with pytest.raises(IndexError, match=r"expected an index valid for shape \(3,\)"):
        Tensor(np.ones(3))[5]


def test_reshape_and_axis_errors_are_clear():
    t = Tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match="reshape: expected a shape with 6 elements"):
        t.reshape(4, 2)
    with pytest.raises(ValueError, match=r"sum\(axis=2\): expected axes in \[-2, 2\)"):
        t.sum(axis=2)


def test_bool_of_tensor_is_refused():
    with pytest.raises(TypeError, match="ambiguous"):
        bool(Tensor([1.0]))


def test_purchase_graph_from_the_notes():
    """2 apples at 100, tax 1.1: forward 220; gradients 2.2, 110, 200 (notes, multiply gates)."""
    apple = Tensor(np.array(100.0), requires_grad=True)
    num = Tensor(np.array(2.0), requires_grad=True)
    tax = Tensor(np.array(1.1), requires_grad=True)
    apple_price = apple * num
    apple_price.retain_grad()
    price = apple_price * tax
    assert price.item() == pytest.approx(220.0)
    price.backward()
    assert apple_price.grad == pytest.approx(1.1)
    assert apple.grad == pytest.approx(2.2)
    assert num.grad == pytest.approx(110.0)
    assert tax.grad == pytest.approx(200.0)


def test_purchase_graph_with_oranges_uses_the_add_gate():
    """Apples 2 x 100, oranges 3 x 150, tax 1.1: 715; add distributes, multiply swaps."""
    a, na, o, no, tax = (Tensor(np.array(v), requires_grad=True) for v in (100.0, 2.0, 150.0, 3.0, 1.1))
    total = (a * na + o * no) * tax
    assert total.item() == pytest.approx(715.0)
    total.backward()
    assert [t.grad.item() for t in (a, na, o, no, tax)] == pytest.approx([2.2, 110.0, 3.3, 165.0, 650.0])


def test_gates_route_gradients_as_in_the_notes():
    x = Tensor(np.array(3.0), requires_grad=True)
    y = Tensor(np.array(-4.0), requires_grad=True)
    gb.maximum(x, y).backward()  # max gate: all to the larger input
    assert (x.grad, y.grad) == (1.0, 0.0)
    z = Tensor(np.array(0.0), requires_grad=True)
    gb.sigmoid(z).backward()  # sigmoid gate: sigma (1 - sigma)
    assert z.grad == pytest.approx(0.25)


def test_leaf_gradients_never_share_memory():
    """The engine hands a fresh array to a leaf without copying only when nobody else holds it."""
    a = Tensor(np.ones(3), requires_grad=True)
    c = Tensor(np.ones(3), requires_grad=True)
    (a + c).sum().backward()  # Add returns the same upstream array for both inputs
    assert not np.shares_memory(a.grad, c.grad)
    a.grad += 1.0
    np.testing.assert_array_equal(c.grad, np.ones(3))

    w1, w2 = Tensor(np.ones((2, 2)), requires_grad=True), Tensor(np.ones((2, 2)), requires_grad=True)
    h = gb.relu(Tensor(np.ones((2, 2))) @ w1)  # one op result used by two consumers
    (h * w2 + h).sum().backward()
    assert not np.shares_memory(w1.grad, w2.grad)
    before = w2.grad.copy()
    w1.grad *= 0
    np.testing.assert_array_equal(w2.grad, before)


def test_linear_leaf_gradients_are_independent_arrays():
    lin = gb.nn.Linear(3, 2, dtype=np.float64, rng=0)
    x = Tensor(np.ones((4, 3)), requires_grad=True)
    out = lin(x)
    (out + out).sum().backward()
    grads = [x.grad, lin.weight.grad, lin.bias.grad]
    for i, g in enumerate(grads):
        for other in grads[i + 1:]:
            assert not np.shares_memory(g, other)
    np.testing.assert_allclose(lin.bias.grad, [8.0, 8.0])


@pytest.mark.parametrize("seed", range(25))
def test_backward_on_random_dags_matches_central_differences(seed):
    """Random DAGs with shared nodes, reused leaves and out-of-order creation: the
    newest-first walk must deliver every consumer's gradient before a box runs."""
    rng = np.random.default_rng(seed)
    leaves = [rng.normal(size=3) for _ in range(3)]
    plan = [(int(rng.integers(4)), int(rng.integers(10**6)), int(rng.integers(10**6))) for _ in range(12)]

    def build(values):
        nodes = [Tensor(v, requires_grad=True, dtype=np.float64) for v in values]
        xs = list(nodes)
        for kind, i, j in plan:
            a, b = xs[i % len(xs)], xs[j % len(xs)]
            xs.append([a * b, a + b, gb.ops.tanh(a) - b, gb.ops.sigmoid(a) * 2.0][kind])
        return nodes, xs

    picks = rng.permutation(3 + len(plan))[:4]

    def loss_of(values):
        nodes, xs = build(values)
        total = xs[picks[0]].sum()
        for p in picks[1:]:
            total = total + (xs[p] * xs[p]).sum()
        return nodes, total

    nodes, total = loss_of(leaves)
    total.backward()
    eps = 1e-6
    for k, leaf in enumerate(leaves):
        num = np.zeros(3)
        for i in range(3):
            plus = [v.copy() for v in leaves]
            minus = [v.copy() for v in leaves]
            plus[k][i] += eps
            minus[k][i] -= eps
            num[i] = (loss_of(plus)[1].item() - loss_of(minus)[1].item()) / (2 * eps)
        got = nodes[k].grad if nodes[k].grad is not None else np.zeros(3)
        np.testing.assert_allclose(got, num, rtol=1e-6, atol=1e-7)
