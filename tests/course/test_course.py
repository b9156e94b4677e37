"""gradbox.course: the notes' column-layout functions against the engine and finite differences."""
import numpy as np
import pytest

import gradbox as gb
from gradbox import course, nn


def _data(n_x=5, m=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_x, m))
    Y = (rng.random((1, m)) > 0.5).astype(np.float64)
    return X, Y


@pytest.mark.parametrize("dims", [[5, 4, 1], [5, 6, 4, 3, 1]])
def test_L_model_backward_equals_engine_gradients(dims):
    X, Y = _data(dims[0])
    params = course.initialize_parameters_deep(dims, seed=3)
    AL, caches = course.L_model_forward(X, params)
    grads = course.L_model_backward(AL, Y, caches)

    # the engine: same weights, batch-first, BCE on the final logit, mean over the batch
    model = course.to_module(params)
    x = gb.Tensor(X.T, requires_grad=True)
    logits = model(x)
    np.testing.assert_allclose(gb.sigmoid(logits).data.T, AL, rtol=1e-12, atol=1e-15)
    loss = nn.BCEWithLogitsLoss()(logits, Y.T)
    assert loss.item() == pytest.approx(course.compute_cost(AL, Y), rel=1e-12)
    loss.backward()

    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert len(linears) == len(dims) - 1
    for l, lin in enumerate(linears, start=1):
        assert grads[f"dW{l}"].shape == lin.weight.shape
        np.testing.assert_allclose(grads[f"dW{l}"], lin.weight.grad, rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(grads[f"db{l}"].ravel(), lin.bias.grad, rtol=1e-10, atol=1e-15)
    # dA0 is the course's dX without the 1/m; the engine's dX has it (the loss is a mean)
    m = X.shape[1]
    np.testing.assert_allclose(grads["dA0"] / m, x.grad.T, rtol=1e-10, atol=1e-15)


def test_L_model_backward_matches_finite_differences():
    X, Y = _data(4, 6, seed=1)
    params = course.initialize_parameters_deep([4, 5, 3, 1], seed=2)
    AL, caches = course.L_model_forward(X, params)
    grads = course.L_model_backward(AL, Y, caches)
    eps = 1e-6
    for key, value in params.items():
        numeric = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            orig = value[idx]
            value[idx] = orig + eps
            plus = course.compute_cost(course.L_model_forward(X, params)[0], Y)
            value[idx] = orig - eps
            minus = course.compute_cost(course.L_model_forward(X, params)[0], Y)
            value[idx] = orig
            numeric[idx] = (plus - minus) / (2 * eps)
        assert gb.relative_error(grads["d" + key], numeric) < 1e-7, key


def test_two_layer_functions_gradcheck_via_module():
    # the same network through check_gradients: the converter preserves the function
    params = course.initialize_parameters(4, 3, 1, seed=5)
    params = {k: v * 100 for k, v in params.items()}  # leave the near-zero regime
    X, Y = _data(4, 7, seed=2)
    model = course.to_module(params)
    report = gb.check_gradients(model, nn.BCEWithLogitsLoss(), X.T, Y.T)
    assert report.passed, str(report)


@pytest.fixture
def global_numpy_seed():
    # NOTE: the course seeds NumPy's global generator; restore it so other tests are unaffected.
    state = np.random.get_state()
    yield np.random.seed
    np.random.set_state(state)


def test_initialisation_reproduces_course_numbers(global_numpy_seed):
    before = np.random.get_state()[1].copy()
    p = course.initialize_parameters(3, 2, 1)
    deep = course.initialize_parameters_deep([5, 4, 3])
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # course leaves global state alone
    global_numpy_seed(1)
    W1 = np.random.randn(2, 3) * 0.01
    W2 = np.random.randn(1, 2) * 0.01
    np.testing.assert_array_equal(p["W1"], W1)
    np.testing.assert_array_equal(p["W2"], W2)
    assert not p["b1"].any() and p["b1"].shape == (2, 1)
    global_numpy_seed(1)
    np.testing.assert_array_equal(deep["W1"], np.random.randn(4, 5) / np.sqrt(5))
    np.testing.assert_array_equal(deep["W2"], np.random.randn(3, 4) / np.sqrt(4))
    # the course's published first value of the deep assignment's test case
    assert deep["W1"][0, 0] == pytest.approx(1.62434536 / np.sqrt(5))


def test_forward_boxes_and_caches():
    A = np.arange(6.0).reshape(3, 2)
    W = np.ones((2, 3))
    b = np.array([[1.0], [-100.0]])
    Z, cache = course.linear_forward(A, W, b)
    np.testing.assert_array_equal(Z, W @ A + b)
    assert cache[0] is A and cache[1] is W and cache[2] is b
    A1, (lin_cache, Zc) = course.linear_activation_forward(A, W, b, "relu")
    np.testing.assert_array_equal(A1, np.maximum(Z, 0))
    np.testing.assert_array_equal(Zc, Z)
    A2, _ = course.linear_activation_forward(A, W, b, "sigmoid")
    assert np.all((A2 >= 0) & (A2 <= 1))
    s, _ = course.sigmoid(np.array([[-1000.0, 0.0, 1000.0]]))
    np.testing.assert_array_equal(s, [[0.0, 0.5, 1.0]])


def test_linear_backward_formulas():
    rng = np.random.default_rng(4)
    A, W, b, dZ = rng.normal(size=(3, 5)), rng.normal(size=(2, 3)), rng.normal(size=(2, 1)), rng.normal(size=(2, 5))
    dA, dW, db = course.linear_backward(dZ, (A, W, b))
    np.testing.assert_allclose(dW, dZ @ A.T / 5)
    np.testing.assert_allclose(db, dZ.sum(axis=1, keepdims=True) / 5)
    np.testing.assert_allclose(dA, W.T @ dZ)
    assert dW.shape == W.shape and db.shape == b.shape and dA.shape == A.shape


def test_compute_cost_and_predict():
    assert course.compute_cost(np.array([[0.8, 0.9, 0.4]]), np.array([[1, 1, 0]])) == pytest.approx(
        -(np.log(0.8) + np.log(0.9) + np.log(0.6)) / 3)
    assert isinstance(course.compute_cost(np.array([[0.5]]), np.array([[1]])), float)
    params = {"W1": np.array([[1.0, -1.0]]), "b1": np.zeros((1, 1))}
    p = course.predict(np.array([[2.0, 0.0], [0.0, 2.0]]), params)
    np.testing.assert_array_equal(p, [[1.0, 0.0]])
    assert p.shape == (1, 2)


def test_models_learn_and_update():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2, 40))
    Y = (X[0:1] + X[1:2] > 0).astype(float)
    params, costs = course.L_layer_model(X, Y, [2, 5, 1], learning_rate=0.5, num_iterations=300)
    assert costs[-1] < costs[0] * 0.5
    assert course.accuracy(X, Y, params) > 0.9
    params2, costs2 = course.two_layer_model(X, Y, (2, 5, 1), learning_rate=0.5, num_iterations=300)
    assert costs2[-1] < costs2[0]
    grads = {"dW1": np.ones((5, 2)), "db1": np.ones((5, 1)), "dW2": np.ones((1, 5)), "db2": np.ones((1, 1))}
    new = course.update_parameters(params2, grads, 0.1)
    np.testing.assert_allclose(new["W1"], params2["W1"] - 0.1)


def test_to_module_from_module_round_trip():
    params = course.initialize_parameters_deep([4, 3, 2, 1], seed=7)
    model = course.to_module(params, hidden_activation="tanh")
    assert [type(m).__name__ for m in model] == ["Linear", "Tanh", "Linear", "Tanh", "Linear"]
    assert model[0].weight.shape == params["W1"].shape and model[0].bias.shape == (3,)
    back = course.from_module(model)
    assert sorted(back) == sorted(params)
    for k in params:
        np.testing.assert_array_equal(back[k], params[k])


@pytest.mark.parametrize("call, message", [
    (lambda: course.linear_forward(np.ones((7, 3)), np.ones((5, 8)), np.zeros((5, 1))),
     r"linear_forward: expected W of shape \(n\[l\], 7\) to match A of shape \(7, 3\), received \(5, 8\)"),
    (lambda: course.linear_forward(np.ones((7, 3)), np.ones((5, 7)), np.zeros((5,))), "expected b"),
    (lambda: course.linear_forward(np.ones(7), np.ones((5, 7)), np.zeros((5, 1))), "2-D"),
    (lambda: course.linear_activation_forward(np.ones((2, 3)), np.ones((1, 2)), np.zeros((1, 1)), "softplus"),
     "activation"),
    (lambda: course.compute_cost(np.full((1, 3), 0.5), np.ones((1, 4))), r"expected Y of shape \(1, 3\)"),
    (lambda: course.initialize_parameters_deep([5, 0, 1]), r"layer_dims\[1\]"),
    (lambda: course.L_model_forward(np.ones((4, 3)), course.initialize_parameters_deep([3, 2, 1])),
     r"expected X of shape \(3, m\).*X.T"),
    (lambda: course.L_model_forward(np.ones((3, 3)), {"W": 1}), "W1"),
    (lambda: course.linear_backward(np.ones((2, 2)), (np.ones((3, 5)), np.ones((2, 3)), np.ones((2, 1)))),
     r"expected dZ of shape \(2, 5\)"),
    (lambda: course.update_parameters({"W1": np.ones((2, 2)), "b1": np.ones((2, 1))},
                                      {"dW1": np.ones((2, 3)), "db1": np.ones((2, 1))}, 0.1), "dW1"),
    (lambda: course.update_parameters({"W1": np.ones((2, 2)), "b1": np.ones((2, 1))}, {}, -1), "learning_rate"),
    (lambda: course.L_layer_model(np.ones((3, 4)), np.ones((1, 4)), [2, 1]), r"expected X of shape \(2, m\)"),
])
def test_errors_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_from_module_rejects_non_module():
    with pytest.raises(TypeError, match="nn.Module"):
        course.from_module({"W1": 1})


def test_docstring_examples_run():
    import doctest
    import importlib

    module = importlib.import_module("gradbox.course")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
