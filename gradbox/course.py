"""The notes' column layout, function for function (pure NumPy, no ``Tensor``).

Everything here follows the course's deep-learning assignments exactly:
``X`` is ``(n_x, m)`` with one example per *column*, ``W[l]`` is ``(n[l], n[l-1])``
and ``b[l]`` is ``(n[l], 1)``. Each layer is a pair of boxes:

forward
    ``Z[l] = W[l] A[l-1] + b[l]``, ``A[l] = g(Z[l])``, cache ``((A[l-1], W[l], b[l]), Z[l])``
backward
    ``dZ = dA * g'(Z)``, ``dW = 1/m dZ A[l-1]ᵀ``, ``db = 1/m Σ dZ`` (axis 1, keepdims),
    ``dA[l-1] = W[l]ᵀ dZ``

The engine (``gradbox.nn``) computes the same numbers in the batch-first layout
``(m, n)``; ``to_module``/``from_module`` convert between the two, and
``tests/course/test_course.py`` checks that both give the same gradients.

>>> import numpy as np
>>> from gradbox import course
>>> params = course.initialize_parameters_deep([3, 4, 1])
>>> AL, caches = course.L_model_forward(np.ones((3, 5)), params)
>>> AL.shape
(1, 5)
"""
from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "initialize_parameters", "initialize_parameters_deep", "linear_forward", "sigmoid", "relu",
    "sigmoid_backward", "relu_backward", "linear_activation_forward", "L_model_forward", "compute_cost",
    "linear_backward", "linear_activation_backward", "L_model_backward", "update_parameters", "predict",
    "accuracy", "two_layer_model", "L_layer_model", "to_module", "from_module",
    # course 4 week 1: convolutional networks, step by step (layout (m, n_H, n_W, n_C))
    "zero_pad", "conv_single_step", "conv_forward", "conv_backward", "pool_forward", "pool_backward",
    "create_mask_from_window", "distribute_value",
    "check_exercise",
]

_ACTIVATIONS = ("relu", "sigmoid", "tanh")


# --- validation helpers -------------------------------------------------------
def _array(x, who: str, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{who}: expected {name} to be a numeric array, received {type(x).__name__} ({exc})") from None
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{who}: expected {name} to be numeric, received dtype {arr.dtype}")
    return arr


def _matrix(x, who: str, name: str) -> np.ndarray:
    arr = _array(x, who, name)
    if arr.ndim != 2:
        raise ValueError(f"{who}: expected {name} to be a 2-D array (rows, columns), received shape {arr.shape}")
    return arr


def _check_activation(activation, who):
    if activation not in _ACTIVATIONS:
        raise ValueError(f"{who}: expected activation in {_ACTIVATIONS}, received {activation!r}")


def _check_layer_dims(layer_dims, who, min_len=2):
    if not isinstance(layer_dims, (list, tuple)) or len(layer_dims) < min_len:
        raise ValueError(f"{who}: expected layer_dims as a list of at least {min_len} positive ints, received {layer_dims!r}")
    for i, n in enumerate(layer_dims):
        if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n <= 0:
            raise ValueError(f"{who}: expected layer_dims[{i}] to be a positive int, received {n!r}")
    return [int(n) for n in layer_dims]


def _num_layers(parameters, who) -> int:
    if not isinstance(parameters, dict) or "W1" not in parameters:
        got = sorted(parameters) if isinstance(parameters, dict) else type(parameters).__name__
        raise ValueError(f"{who}: expected parameters with keys 'W1', 'b1', ..., received {got}")
    L = 0
    while f"W{L + 1}" in parameters:
        if f"b{L + 1}" not in parameters:
            raise ValueError(f"{who}: expected key 'b{L + 1}' next to 'W{L + 1}', received keys {sorted(parameters)}")
        L += 1
    return L


# --- initialisation -------------------------------------------------------------
def initialize_parameters(n_x, n_h, n_y, seed=1):
    """Two-layer initialisation: ``W = randn(n_out, n_in) * 0.01``, ``b = 0``.

    Uses ``np.random.RandomState(seed)``, which draws the same numbers as the
    course's ``np.random.seed(1); np.random.randn(...)`` without touching NumPy's
    global state.

    Returns
    -------
    dict with ``W1`` (n_h, n_x), ``b1`` (n_h, 1), ``W2`` (n_y, n_h), ``b2`` (n_y, 1)

    >>> p = initialize_parameters(3, 2, 1)
    >>> p["W1"].shape, p["b2"].shape
    ((2, 3), (1, 1))
    """
    n_x, n_h, n_y = _check_layer_dims([n_x, n_h, n_y], "initialize_parameters(n_x, n_h, n_y)", 3)
    rs = np.random.RandomState(seed)
    W1 = rs.randn(n_h, n_x) * 0.01
    b1 = np.zeros((n_h, 1))
    W2 = rs.randn(n_y, n_h) * 0.01
    b2 = np.zeros((n_y, 1))
    return {"W1": W1, "b1": b1, "W2": W2, "b2": b2}


def initialize_parameters_deep(layer_dims, seed=1):
    """L-layer initialisation: ``W[l] = randn(n[l], n[l-1]) / sqrt(n[l-1])``, ``b[l] = 0``.

    This is the scaling of the course's deep-model assignment (it trains the cat
    classifier; ``* 0.01`` would leave a 4-layer network stuck). Same random stream
    as ``np.random.seed(seed)``.

    >>> p = initialize_parameters_deep([5, 4, 1])
    >>> p["W1"].shape, p["b1"].shape, p["W2"].shape
    ((4, 5), (4, 1), (1, 4))
    """
    dims = _check_layer_dims(layer_dims, "initialize_parameters_deep(layer_dims)")
    rs = np.random.RandomState(seed)
    parameters = {}
    for l in range(1, len(dims)):
        parameters[f"W{l}"] = rs.randn(dims[l], dims[l - 1]) / np.sqrt(dims[l - 1])
        parameters[f"b{l}"] = np.zeros((dims[l], 1))
    return parameters


# --- forward boxes ----------------------------------------------------------------
def linear_forward(A, W, b):
    """The linear box: ``Z = W A + b``.

    Parameters
    ----------
    A : (n[l-1], m) activations of the previous layer (or X)
    W : (n[l], n[l-1])
    b : (n[l], 1)

    Returns
    -------
    Z : (n[l], m)
    cache : ``(A, W, b)``, kept for ``linear_backward``

    >>> Z, cache = linear_forward(np.ones((2, 3)), np.ones((4, 2)), np.zeros((4, 1)))
    >>> Z.shape
    (4, 3)
    """
    who = "linear_forward"
    A, W, b = _matrix(A, who, "A"), _matrix(W, who, "W"), _matrix(b, who, "b")
    if W.shape[1] != A.shape[0]:
        raise ValueError(
            f"{who}: expected W of shape (n[l], {A.shape[0]}) to match A of shape {A.shape}, received {W.shape}"
        )
    if b.shape != (W.shape[0], 1):
        raise ValueError(f"{who}: expected b of shape ({W.shape[0]}, 1) to match W of shape {W.shape}, received {b.shape}")
    Z = W @ A + b
    return Z, (A, W, b)


def sigmoid(Z):
    """``A = 1 / (1 + e^-Z)``; returns ``(A, Z)`` where ``Z`` is the activation cache.

    Computed as ``exp(-|Z|)`` so no overflow warning appears for large ``|Z|``.

    >>> sigmoid(np.array([[0.0]]))[0]
    array([[0.5]])
    """
    Z = _array(Z, "sigmoid", "Z")
    e = np.exp(-np.abs(Z))
    A = np.where(Z >= 0, 1 / (1 + e), e / (1 + e))
    return A, Z


def relu(Z):
    """``A = max(0, Z)``; returns ``(A, Z)`` where ``Z`` is the activation cache.

    >>> relu(np.array([[-1.0, 2.0]]))[0]
    array([[0., 2.]])
    """
    Z = _array(Z, "relu", "Z")
    return np.maximum(0, Z), Z


def _tanh(Z):
    Z = _array(Z, "tanh", "Z")
    return np.tanh(Z), Z


def sigmoid_backward(dA, Z):
    """``dZ = dA * s (1 - s)`` with ``s = sigmoid(Z)``."""
    s = sigmoid(Z)[0]
    return dA * s * (1 - s)


def relu_backward(dA, Z):
    """``dZ = dA * 1[Z > 0]`` (the gradient at exactly 0 is taken as 0, as in the course)."""
    dZ = np.array(dA, copy=True)
    dZ[Z <= 0] = 0
    return dZ


def _tanh_backward(dA, Z):
    t = np.tanh(Z)
    return dA * (1 - t * t)


_FORWARD = {"relu": relu, "sigmoid": sigmoid, "tanh": _tanh}
_BACKWARD = {"relu": relu_backward, "sigmoid": sigmoid_backward, "tanh": _tanh_backward}


def linear_activation_forward(A_prev, W, b, activation):
    """One layer: ``Z = W A_prev + b``, ``A = g(Z)``.

    Parameters
    ----------
    activation : "relu", "sigmoid" or "tanh"

    Returns
    -------
    A : (n[l], m)
    cache : ``((A_prev, W, b), Z)`` -- the linear cache and the activation cache

    >>> A, cache = linear_activation_forward(np.ones((2, 3)), np.ones((1, 2)), np.zeros((1, 1)), "relu")
    >>> A
    array([[2., 2., 2.]])
    """
    _check_activation(activation, "linear_activation_forward(activation)")
    Z, linear_cache = linear_forward(A_prev, W, b)
    A, activation_cache = _FORWARD[activation](Z)
    return A, (linear_cache, activation_cache)


def L_model_forward(X, parameters):
    """Forward through [LINEAR -> RELU] * (L-1) -> LINEAR -> SIGMOID.

    Parameters
    ----------
    X : (n_x, m)
    parameters : dict with ``W1, b1, ..., WL, bL``

    Returns
    -------
    AL : (1, m) -- the output probabilities ŷ
    caches : list of L caches from ``linear_activation_forward``

    >>> p = initialize_parameters_deep([2, 3, 1])
    >>> L_model_forward(np.zeros((2, 4)), p)[0]
    array([[0.5, 0.5, 0.5, 0.5]])
    """
    L = _num_layers(parameters, "L_model_forward(parameters)")
    X = _matrix(X, "L_model_forward", "X")
    n_x = parameters["W1"].shape[1] if np.ndim(parameters["W1"]) == 2 else None
    if n_x is not None and X.shape[0] != n_x:
        raise ValueError(
            f"L_model_forward: expected X of shape ({n_x}, m) (one example per column), received {X.shape}"
            + (" -- transpose it: X.T" if X.shape[1] == n_x else "")
        )
    caches, A = [], X
    for l in range(1, L):
        A, cache = linear_activation_forward(A, parameters[f"W{l}"], parameters[f"b{l}"], "relu")
        caches.append(cache)
    AL, cache = linear_activation_forward(A, parameters[f"W{L}"], parameters[f"b{L}"], "sigmoid")
    caches.append(cache)
    return AL, caches


def _check_Y(AL, Y, who):
    AL, Y = _array(AL, who, "AL"), _array(Y, who, "Y")
    if AL.ndim != 2 or AL.shape[0] != 1:
        raise ValueError(f"{who}: expected AL of shape (1, m), received {AL.shape}")
    if Y.shape != AL.shape:
        if Y.size == AL.size:
            Y = Y.reshape(AL.shape)  # labels given as (m,) -- the course's (1, m) is meant
        else:
            raise ValueError(f"{who}: expected Y of shape {AL.shape} to match AL, received {Y.shape}")
    return AL, Y.astype(np.float64)


def compute_cost(AL, Y):
    """Binary cross-entropy: ``J = -1/m Σ [y log a + (1 - y) log(1 - a)]``.

    Returns a Python float.

    >>> round(compute_cost(np.array([[0.8, 0.9, 0.4]]), np.array([[1, 1, 0]])), 4)
    0.2798
    """
    AL, Y = _check_Y(AL, Y, "compute_cost")
    m = Y.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = -(Y @ np.log(AL).T + (1 - Y) @ np.log(1 - AL).T) / m
    return float(np.squeeze(cost))


# --- backward boxes ------------------------------------------------------------
def linear_backward(dZ, cache):
    """Backward of the linear box, from ``cache = (A_prev, W, b)``:

    ``dW = 1/m dZ A_prevᵀ``, ``db = 1/m Σ_columns dZ`` (keepdims), ``dA_prev = Wᵀ dZ``.

    >>> A, W, b = np.ones((2, 4)), np.ones((3, 2)), np.zeros((3, 1))
    >>> dA_prev, dW, db = linear_backward(np.ones((3, 4)), (A, W, b))
    >>> dA_prev.shape, dW.shape, db.shape
    ((2, 4), (3, 2), (3, 1))
    """
    who = "linear_backward"
    if not isinstance(cache, tuple) or len(cache) != 3:
        raise ValueError(f"{who}: expected cache = (A_prev, W, b) from linear_forward, received {type(cache).__name__}")
    A_prev, W, _ = cache
    dZ = _matrix(dZ, who, "dZ")
    expect = (W.shape[0], A_prev.shape[1])
    if dZ.shape != expect:
        raise ValueError(f"{who}: expected dZ of shape {expect} (the shape of Z), received {dZ.shape}")
    m = A_prev.shape[1]
    dW = (dZ @ A_prev.T) / m
    db = np.sum(dZ, axis=1, keepdims=True) / m
    dA_prev = W.T @ dZ
    return dA_prev, dW, db


def linear_activation_backward(dA, cache, activation):
    """Backward of one layer: ``dZ = dA * g'(Z)`` then ``linear_backward``.

    Returns ``dA_prev, dW, db``.
    """
    who = "linear_activation_backward"
    _check_activation(activation, f"{who}(activation)")
    if not isinstance(cache, tuple) or len(cache) != 2:
        raise ValueError(f"{who}: expected cache = ((A_prev, W, b), Z) from linear_activation_forward, received {type(cache).__name__}")
    linear_cache, Z = cache
    dA = _array(dA, who, "dA")
    if dA.shape != Z.shape:
        raise ValueError(f"{who}: expected dA of shape {Z.shape} (the shape of A), received {dA.shape}")
    dZ = _BACKWARD[activation](dA, Z)
    return linear_backward(dZ, linear_cache)


def L_model_backward(AL, Y, caches):
    """Backward through the whole model, starting from the cost's derivative

    ``dAL = -(Y / AL - (1 - Y) / (1 - AL))``, then the sigmoid layer and the
    L-1 ReLU layers in reverse.

    Returns
    -------
    grads : dict with ``dA{l-1}``, ``dW{l}``, ``db{l}`` for l = 1..L (``dA0`` is dX)
    """
    AL, Y = _check_Y(AL, Y, "L_model_backward")
    if not isinstance(caches, (list, tuple)) or not caches:
        raise ValueError("L_model_backward: expected the non-empty caches list from L_model_forward, received "
                         f"{type(caches).__name__}")
    grads = {}
    L = len(caches)
    with np.errstate(divide="ignore", invalid="ignore"):
        dAL = -(np.divide(Y, AL) - np.divide(1 - Y, 1 - AL))
    dA_prev, dW, db = linear_activation_backward(dAL, caches[L - 1], "sigmoid")
    grads[f"dA{L - 1}"], grads[f"dW{L}"], grads[f"db{L}"] = dA_prev, dW, db
    for l in reversed(range(L - 1)):
        dA_prev, dW, db = linear_activation_backward(grads[f"dA{l + 1}"], caches[l], "relu")
        grads[f"dA{l}"], grads[f"dW{l + 1}"], grads[f"db{l + 1}"] = dA_prev, dW, db
    return grads


def update_parameters(parameters, grads, learning_rate):
    """Gradient descent: ``W[l] := W[l] - α dW[l]``, ``b[l] := b[l] - α db[l]``.

    Returns a new dict (the input arrays are not modified).
    """
    L = _num_layers(parameters, "update_parameters(parameters)")
    if not isinstance(learning_rate, numbers.Real) or not np.isfinite(learning_rate) or learning_rate <= 0:
        raise ValueError(f"update_parameters(learning_rate): expected a positive number, received {learning_rate!r}")
    out = {}
    for l in range(1, L + 1):
        for p in ("W", "b"):
            key = f"d{p}{l}"
            if key not in grads:
                raise ValueError(f"update_parameters(grads): expected key {key!r}, received keys {sorted(grads)}")
            if np.shape(grads[key]) != np.shape(parameters[f"{p}{l}"]):
                raise ValueError(
                    f"update_parameters: expected {key} of shape {np.shape(parameters[f'{p}{l}'])} "
                    f"(the shape of {p}{l}), received {np.shape(grads[key])}"
                )
            out[f"{p}{l}"] = parameters[f"{p}{l}"] - learning_rate * grads[key]
    return out


def predict(X, parameters):
    """Labels ``1[AL > 0.5]`` as a (1, m) array of 0/1 (float, like the course)."""
    AL, _ = L_model_forward(X, parameters)
    return (AL > 0.5).astype(np.float64)


def accuracy(X, Y, parameters) -> float:
    """Share of columns where ``predict(X)`` equals ``Y``."""
    p = predict(X, parameters)
    Y = np.asarray(Y).reshape(p.shape)
    return float(np.mean(p == Y))


# --- models ----------------------------------------------------------------------
def _check_iterations(num_iterations, learning_rate, who):
    if not isinstance(num_iterations, numbers.Integral) or isinstance(num_iterations, bool) or num_iterations < 0:
        raise ValueError(f"{who}(num_iterations): expected a non-negative int, received {num_iterations!r}")
    if not isinstance(learning_rate, numbers.Real) or not learning_rate > 0:
        raise ValueError(f"{who}(learning_rate): expected a positive number, received {learning_rate!r}")


def _check_XY(X, Y, n_x, who):
    X = _matrix(X, who, "X").astype(np.float64, copy=False)
    if X.shape[0] != n_x:
        raise ValueError(f"{who}: expected X of shape ({n_x}, m) for layers_dims[0] = {n_x}, received {X.shape}")
    Y = _array(Y, who, "Y")
    if Y.size != X.shape[1]:
        raise ValueError(f"{who}: expected Y of shape (1, {X.shape[1]}), received {Y.shape}")
    return X, Y.reshape(1, -1).astype(np.float64)


def two_layer_model(X, Y, layers_dims, learning_rate=0.0075, num_iterations=3000, print_cost=False, seed=1):
    """LINEAR -> RELU -> LINEAR -> SIGMOID, full-batch gradient descent.

    Initialised by ``initialize_parameters`` (``randn * 0.01``).

    Parameters
    ----------
    X : (n_x, m); Y : (1, m) of 0/1
    layers_dims : (n_x, n_h, n_y)

    Returns
    -------
    parameters : dict; costs : list of the cost every 100 iterations (as in the course)
    """
    who = "two_layer_model"
    n_x, n_h, n_y = _check_layer_dims(list(layers_dims), f"{who}(layers_dims)", 3)
    if len(layers_dims) != 3:
        raise ValueError(f"{who}(layers_dims): expected (n_x, n_h, n_y), received {layers_dims!r}")
    _check_iterations(num_iterations, learning_rate, who)
    X, Y = _check_XY(X, Y, n_x, who)
    parameters = initialize_parameters(n_x, n_h, n_y, seed=seed)
    costs = []
    for i in range(num_iterations + 1):
        A1, cache1 = linear_activation_forward(X, parameters["W1"], parameters["b1"], "relu")
        A2, cache2 = linear_activation_forward(A1, parameters["W2"], parameters["b2"], "sigmoid")
        cost = compute_cost(A2, Y)
        if i % 100 == 0 or i == num_iterations:
            costs.append(cost)
            if print_cost:
                print(f"Cost after iteration {i}: {cost:.6f}")
        if i == num_iterations:
            break  # NOTE: the cost is reported for the final weights, which are not updated again
        with np.errstate(divide="ignore", invalid="ignore"):
            dA2 = -(np.divide(Y, A2) - np.divide(1 - Y, 1 - A2))
        dA1, dW2, db2 = linear_activation_backward(dA2, cache2, "sigmoid")
        _, dW1, db1 = linear_activation_backward(dA1, cache1, "relu")
        parameters = update_parameters(parameters, {"dW1": dW1, "db1": db1, "dW2": dW2, "db2": db2}, learning_rate)
    return parameters, costs


def L_layer_model(X, Y, layers_dims, learning_rate=0.0075, num_iterations=3000, print_cost=False, seed=1):
    """[LINEAR -> RELU] * (L-1) -> LINEAR -> SIGMOID, full-batch gradient descent.

    Initialised by ``initialize_parameters_deep`` (``randn / sqrt(n[l-1])``).

    Returns
    -------
    parameters : dict; costs : list of the cost every 100 iterations

    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(2, 20)); Y = (X[0:1] > 0).astype(float)
    >>> params, costs = L_layer_model(X, Y, [2, 4, 1], learning_rate=0.5, num_iterations=200)
    >>> costs[-1] < costs[0]
    True
    """
    who = "L_layer_model"
    dims = _check_layer_dims(list(layers_dims), f"{who}(layers_dims)")
    _check_iterations(num_iterations, learning_rate, who)
    X, Y = _check_XY(X, Y, dims[0], who)
    parameters = initialize_parameters_deep(dims, seed=seed)
    costs = []
    for i in range(num_iterations + 1):
        AL, caches = L_model_forward(X, parameters)
        cost = compute_cost(AL, Y)
        if i % 100 == 0 or i == num_iterations:
            costs.append(cost)
            if print_cost:
                print(f"Cost after iteration {i}: {cost:.6f}")
        if i == num_iterations:
            break
        grads = L_model_backward(AL, Y, caches)
        parameters = update_parameters(parameters, grads, learning_rate)
    return parameters, costs


# --- conversion to and from the engine ------------------------------------------
def to_module(parameters, hidden_activation="relu", output_activation=None, dtype=np.float64):
    """Build an ``nn.Sequential`` holding the same weights.

    ``Linear.weight`` (out, in) is ``W[l]`` itself and ``Linear.bias`` (out,) is
    ``b[l].ravel()``. The output layer is left as logits unless
    ``output_activation="sigmoid"`` (train with ``BCEWithLogitsLoss`` on logits).
    The module works batch-first: feed it ``X.T``.

    >>> import numpy as np
    >>> model = to_module(initialize_parameters_deep([3, 4, 1]))
    >>> model(np.ones((5, 3))).shape
    (5, 1)
    """
    from . import nn

    L = _num_layers(parameters, "to_module(parameters)")
    _check_activation(hidden_activation, "to_module(hidden_activation)")
    if output_activation not in (None, "sigmoid"):
        raise ValueError(f"to_module(output_activation): expected None or 'sigmoid', received {output_activation!r}")
    acts = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
    layers = []
    for l in range(1, L + 1):
        W, b = _matrix(parameters[f"W{l}"], "to_module", f"W{l}"), np.asarray(parameters[f"b{l}"])
        if b.size != W.shape[0]:
            raise ValueError(f"to_module: expected b{l} of shape ({W.shape[0]}, 1), received {b.shape}")
        if l > 1 and W.shape[1] != layers[-2].out_features:
            raise ValueError(
                f"to_module: expected W{l} of shape ({W.shape[0]}, {layers[-2].out_features}), received {W.shape}"
            )
        lin = nn.Linear(W.shape[1], W.shape[0], dtype=dtype, rng=0)
        lin.weight.data[...] = W
        lin.bias.data[...] = b.ravel()
        layers.append(lin)
        if l < L:
            layers.append(acts[hidden_activation]())
    if output_activation == "sigmoid":
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


def from_module(model):
    """The inverse of ``to_module``: ``{"W1": weight, "b1": bias[:, None], ...}`` (float64 copies)."""
    from . import nn

    if not isinstance(model, nn.Module):
        raise TypeError(f"from_module(model): expected an nn.Module, received {type(model).__name__}")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("from_module(model): expected a model with Linear layers, received none")
    params = {}
    for l, lin in enumerate(linears, start=1):
        params[f"W{l}"] = lin.weight.data.astype(np.float64)
        b = lin.bias.data if lin.bias is not None else np.zeros(lin.out_features)
        params[f"b{l}"] = b.astype(np.float64).reshape(-1, 1)
    return params


# --- course 4 week 1: convolutional networks, step by step ----------------------------------------
# NOTE: the notebook's layout, not the engine's: A is (m, n_H, n_W, n_C) (channels last), W is
# (f, f, n_C_prev, n_C) and b is (1, 1, 1, n_C). The loops over output positions are the
# notebook's; the loop over examples and channels is one tensordot per position (same sums).
# ``gradbox.nn.Conv2d`` and the pooling layers compute the same numbers in NCHW
# (tests/course/test_course_conv.py checks both to 1e-12).
def _hparam(hparameters, key, who, minimum):
    if not isinstance(hparameters, dict) or key not in hparameters:
        raise ValueError(f"{who}: expected hparameters with key {key!r}, received {hparameters!r}")
    v = hparameters[key]
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
        raise ValueError(f"{who}: expected hparameters[{key!r}] an int >= {minimum}, received {v!r}")
    return int(v)


def _images(x, who, name):
    arr = _array(x, who, name)
    if arr.ndim != 4:
        raise ValueError(f"{who}: expected {name} of shape (m, n_H, n_W, n_C), received {arr.shape}")
    return arr


def zero_pad(X, pad):
    """Pad the height and width of every image of X with ``pad`` zeros on each side.

    X is (m, n_H, n_W, n_C); the result is (m, n_H + 2·pad, n_W + 2·pad, n_C).

    >>> import numpy as np
    >>> zero_pad(np.ones((1, 2, 2, 1)), 1)[0, :, :, 0]
    array([[0., 0., 0., 0.],
           [0., 1., 1., 0.],
           [0., 1., 1., 0.],
           [0., 0., 0., 0.]])
    """
    X = _images(X, "zero_pad", "X")
    if isinstance(pad, bool) or not isinstance(pad, numbers.Integral) or pad < 0:
        raise ValueError(f"zero_pad: expected pad a non-negative int, received {pad!r}")
    return np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="constant", constant_values=0)


def conv_single_step(a_slice_prev, W, b):
    """One filter at one position: Z = Σ (a_slice_prev * W) + b, a scalar.

    a_slice_prev and W are (f, f, n_C_prev); b is (1, 1, 1).

    >>> import numpy as np
    >>> conv_single_step(np.ones((2, 2, 1)), np.ones((2, 2, 1)), np.ones((1, 1, 1)))
    5.0
    """
    a_slice_prev, W = _array(a_slice_prev, "conv_single_step", "a_slice_prev"), _array(W, "conv_single_step", "W")
    if a_slice_prev.shape != W.shape:
        raise ValueError(f"conv_single_step: expected a_slice_prev of W's shape {W.shape}, "
                         f"received {a_slice_prev.shape}")
    return float(np.sum(a_slice_prev * W) + np.asarray(b).item())


def _conv_geometry(A_prev, W, hparameters, who):
    A_prev = _images(A_prev, who, "A_prev")
    W = _array(W, who, "W")
    if W.ndim != 4 or W.shape[0] != W.shape[1] or W.shape[2] != A_prev.shape[3]:
        raise ValueError(f"{who}: expected W of shape (f, f, {A_prev.shape[3]}, n_C), received {W.shape}")
    stride, pad = _hparam(hparameters, "stride", who, 1), _hparam(hparameters, "pad", who, 0)
    f = W.shape[0]
    m, n_H_prev, n_W_prev, _ = A_prev.shape
    if f > n_H_prev + 2 * pad or f > n_W_prev + 2 * pad:
        raise ValueError(f"{who}: expected f no larger than the padded input "
                         f"({n_H_prev + 2 * pad}, {n_W_prev + 2 * pad}), received f = {f}")
    n_H = (n_H_prev + 2 * pad - f) // stride + 1
    n_W = (n_W_prev + 2 * pad - f) // stride + 1
    return A_prev, W, f, stride, pad, n_H, n_W


def conv_forward(A_prev, W, b, hparameters):
    """The convolution's forward pass: Z[i, h, w, c] = Σ a_slice · W[..., c] + b[..., c].

    Parameters
    ----------
    A_prev : (m, n_H_prev, n_W_prev, n_C_prev)
    W : (f, f, n_C_prev, n_C)
    b : (1, 1, 1, n_C)
    hparameters : dict with "stride" and "pad"

    Returns
    -------
    Z : (m, n_H, n_W, n_C), n_H = ⌊(n_H_prev + 2·pad - f)/stride⌋ + 1
    cache : (A_prev, W, b, hparameters), for ``conv_backward``

    >>> import numpy as np
    >>> Z, _ = conv_forward(np.ones((1, 3, 3, 1)), np.ones((2, 2, 1, 1)), np.zeros((1, 1, 1, 1)),
    ...                     {"stride": 1, "pad": 0})
    >>> Z[0, :, :, 0]
    array([[4., 4.],
           [4., 4.]])
    """
    who = "conv_forward"
    A_prev, W, f, stride, pad, n_H, n_W = _conv_geometry(A_prev, W, hparameters, who)
    b = _array(b, who, "b")
    if b.size != W.shape[3]:
        raise ValueError(f"{who}: expected b of shape (1, 1, 1, {W.shape[3]}), received {b.shape}")
    m = A_prev.shape[0]
    A_prev_pad = zero_pad(A_prev, pad)
    Z = np.zeros((m, n_H, n_W, W.shape[3]))
    for h in range(n_H):
        vert_start = h * stride
        for w in range(n_W):
            horiz_start = w * stride
            a_slice_prev = A_prev_pad[:, vert_start:vert_start + f, horiz_start:horiz_start + f, :]
            # conv_single_step for every example i and filter c at once
            Z[:, h, w, :] = np.tensordot(a_slice_prev, W, axes=([1, 2, 3], [0, 1, 2])) + b.reshape(-1)
    cache = (A_prev, W, b, hparameters)
    return Z, cache


def conv_backward(dZ, cache):
    """The convolution's backward pass, as the notebook writes it.

    For every output position (h, w) and filter c::

        da_prev_pad[window] += W[:, :, :, c] · dZ[i, h, w, c]
        dW[:, :, :, c]      += a_slice · dZ[i, h, w, c]
        db[:, :, :, c]      += dZ[i, h, w, c]

    Returns dA_prev (m, n_H_prev, n_W_prev, n_C_prev), dW (f, f, n_C_prev, n_C), db (1, 1, 1, n_C).
    (No 1/m here: it lives in the cost's derivative.)
    """
    who = "conv_backward"
    A_prev, W, b, hparameters = cache
    A_prev, W, f, stride, pad, n_H, n_W = _conv_geometry(A_prev, W, hparameters, who)
    dZ = _images(dZ, who, "dZ")
    m, n_H_prev, n_W_prev, _ = A_prev.shape
    if dZ.shape != (m, n_H, n_W, W.shape[3]):
        raise ValueError(f"{who}: expected dZ of shape {(m, n_H, n_W, W.shape[3])}, received {dZ.shape}")
    A_prev_pad = zero_pad(A_prev, pad)
    dA_prev_pad = np.zeros(A_prev_pad.shape)
    dW = np.zeros(W.shape)
    db = np.zeros((1, 1, 1, W.shape[3]))
    for h in range(n_H):
        vert_start = h * stride
        for w in range(n_W):
            horiz_start = w * stride
            window = (slice(None), slice(vert_start, vert_start + f), slice(horiz_start, horiz_start + f))
            dz = dZ[:, h, w, :]  # (m, n_C)
            dA_prev_pad[window] += np.tensordot(dz, W, axes=([1], [3]))
            dW += np.tensordot(A_prev_pad[window], dz, axes=([0], [0]))
            db[0, 0, 0, :] += dz.sum(axis=0)
    # NOTE: not the notebook's [pad:-pad], which is empty for pad = 0
    dA_prev = dA_prev_pad[:, pad:pad + n_H_prev, pad:pad + n_W_prev, :]
    return dA_prev, dW, db


def _pool_geometry(A_prev, hparameters, mode, who):
    A_prev = _images(A_prev, who, "A_prev")
    if mode not in ("max", "average"):
        raise ValueError(f"{who}: expected mode \"max\" or \"average\", received {mode!r}")
    f, stride = _hparam(hparameters, "f", who, 1), _hparam(hparameters, "stride", who, 1)
    _, n_H_prev, n_W_prev, _ = A_prev.shape
    if f > n_H_prev or f > n_W_prev:
        raise ValueError(f"{who}: expected f no larger than the input ({n_H_prev}, {n_W_prev}), received f = {f}")
    return A_prev, f, stride, (n_H_prev - f) // stride + 1, (n_W_prev - f) // stride + 1


def pool_forward(A_prev, hparameters, mode="max"):
    """Max or average pooling over f x f windows (no padding), per example and channel.

    Returns A (m, n_H, n_W, n_C) with n_H = ⌊(n_H_prev - f)/stride⌋ + 1, and the cache (A_prev, hparameters).

    >>> import numpy as np
    >>> A, _ = pool_forward(np.arange(16.0).reshape(1, 4, 4, 1), {"f": 2, "stride": 2})
    >>> A[0, :, :, 0]
    array([[ 5.,  7.],
           [13., 15.]])
    """
    A_prev, f, stride, n_H, n_W = _pool_geometry(A_prev, hparameters, mode, "pool_forward")
    m, _, _, n_C = A_prev.shape
    A = np.zeros((m, n_H, n_W, n_C))
    reduce = np.max if mode == "max" else np.mean
    for h in range(n_H):
        vert_start = h * stride
        for w in range(n_W):
            horiz_start = w * stride
            a_prev_slice = A_prev[:, vert_start:vert_start + f, horiz_start:horiz_start + f, :]
            A[:, h, w, :] = reduce(a_prev_slice, axis=(1, 2))
    return A, (A_prev, hparameters)


def create_mask_from_window(x):
    """True where x holds its maximum: the only entry that max pooling passes a gradient to.

    >>> import numpy as np
    >>> create_mask_from_window(np.array([[1, 3], [4, 2]]))
    array([[False, False],
           [ True, False]])
    """
    x = _array(x, "create_mask_from_window", "x")
    return x == np.max(x)


def distribute_value(dz, shape):
    """Spread dz evenly over a matrix of ``shape`` (n_H, n_W): average pooling's backward.

    >>> distribute_value(2, (2, 2))
    array([[0.5, 0.5],
           [0.5, 0.5]])
    """
    ok = isinstance(shape, (tuple, list)) and len(shape) == 2 and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in shape)
    if not ok:
        raise ValueError(f"distribute_value: expected shape a pair of positive ints (n_H, n_W), received {shape!r}")
    (n_H, n_W) = shape
    return np.full((n_H, n_W), dz / (n_H * n_W))


def pool_backward(dA, cache, mode="max"):
    """Pooling's backward pass: route each dA entry to its window's maximum (mask) or spread it evenly.

    Returns dA_prev with A_prev's shape. Where windows overlap the contributions add up.
    """
    who = "pool_backward"
    A_prev, hparameters = cache
    A_prev, f, stride, n_H, n_W = _pool_geometry(A_prev, hparameters, mode, who)
    dA = _images(dA, who, "dA")
    m, _, _, n_C = A_prev.shape
    if dA.shape != (m, n_H, n_W, n_C):
        raise ValueError(f"{who}: expected dA of shape {(m, n_H, n_W, n_C)}, received {dA.shape}")
    dA_prev = np.zeros(A_prev.shape)
    for i in range(m):
        a_prev = A_prev[i]
        for h in range(n_H):
            vert_start = h * stride
            for w in range(n_W):
                horiz_start = w * stride
                for c in range(n_C):
                    window = (i, slice(vert_start, vert_start + f), slice(horiz_start, horiz_start + f), c)
                    if mode == "max":
                        a_prev_slice = a_prev[window[1:3] + (c,)]
                        mask = create_mask_from_window(a_prev_slice)
                        dA_prev[window] += mask * dA[i, h, w, c]
                    else:
                        dA_prev[window] += distribute_value(dA[i, h, w, c], (f, f))
    return dA_prev


def check_exercise(module_or_path, lang="en", seed=0):
    """Check a learner's own course functions against this module's references.

    ``module_or_path`` is a module or a ``.py`` file; see :func:`gradbox.exercise.check_exercise`
    (also ``gradbox exercise FILE.py``). Returns the report; ``report.ok`` is False if any function is wrong.
    """
    # NOTE: imported here: gradbox.exercise imports this module for the references.
    from .exercise import check_exercise as _check

    return _check(module_or_path, lang=lang, seed=seed)
