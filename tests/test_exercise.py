"""gradbox.exercise: a learner's course functions checked output by output, known mistakes named."""
import os
import types

import numpy as np
import pytest

from gradbox import course, exercise

GOOD = '''
import numpy as np

def linear_forward(A, W, b):
    Z = W @ A + b
    return Z, (A, W, b)

def _sigmoid(Z):
    return 1 / (1 + np.exp(-Z)), Z

def _relu(Z):
    return np.maximum(0, Z), Z

def relu_backward(dA, cache):
    Z = cache
    dZ = np.array(dA, copy=True)
    dZ[Z <= 0] = 0
    return dZ

def sigmoid_backward(dA, cache):
    s = 1 / (1 + np.exp(-cache))
    return dA * s * (1 - s)

def linear_backward(dZ, cache):
    A_prev, W, b = cache
    m = A_prev.shape[1]
    dW = 1 / m * np.dot(dZ, A_prev.T)
    db = 1 / m * np.sum(dZ, axis=1, keepdims=True)
    dA_prev = np.dot(W.T, dZ)
    return dA_prev, dW, db

def linear_activation_forward(A_prev, W, b, activation):
    Z, linear_cache = linear_forward(A_prev, W, b)
    A, activation_cache = (_sigmoid if activation == "sigmoid" else _relu)(Z)
    return A, (linear_cache, activation_cache)

def linear_activation_backward(dA, cache, activation):
    linear_cache, activation_cache = cache
    if activation == "relu":
        dZ = relu_backward(dA, activation_cache)
    else:
        dZ = sigmoid_backward(dA, activation_cache)
    return linear_backward(dZ, linear_cache)

def L_model_forward(X, parameters):
    caches, A, L = [], X, len(parameters) // 2
    for l in range(1, L):
        A, cache = linear_activation_forward(A, parameters["W" + str(l)], parameters["b" + str(l)], "relu")
        caches.append(cache)
    AL, cache = linear_activation_forward(A, parameters["W" + str(L)], parameters["b" + str(L)], "sigmoid")
    caches.append(cache)
    return AL, caches

def compute_cost(AL, Y):
    m = Y.shape[1]
    cost = -1 / m * np.sum(Y * np.log(AL) + (1 - Y) * np.log(1 - AL))
    return np.squeeze(cost)

def L_model_backward(AL, Y, caches):
    grads, L = {}, len(caches)
    Y = Y.reshape(AL.shape)
    dAL = -(np.divide(Y, AL) - np.divide(1 - Y, 1 - AL))
    grads["dA" + str(L - 1)], grads["dW" + str(L)], grads["db" + str(L)] = linear_activation_backward(dAL, caches[L - 1], "sigmoid")
    for l in reversed(range(L - 1)):
        out = linear_activation_backward(grads["dA" + str(l + 1)], caches[l], "relu")
        grads["dA" + str(l)], grads["dW" + str(l + 1)], grads["db" + str(l + 1)] = out
    return grads

def update_parameters(parameters, grads, learning_rate):
    parameters = {k: v.copy() for k, v in parameters.items()}
    for l in range(len(parameters) // 2):
        parameters["W" + str(l + 1)] = parameters["W" + str(l + 1)] - learning_rate * grads["dW" + str(l + 1)]
        parameters["b" + str(l + 1)] = parameters["b" + str(l + 1)] - learning_rate * grads["db" + str(l + 1)]
    return parameters

def initialize_parameters_deep(layer_dims):
    np.random.seed(3)
    parameters = {}
    for l in range(1, len(layer_dims)):
        parameters["W" + str(l)] = np.random.randn(layer_dims[l], layer_dims[l - 1]) * 0.01
        parameters["b" + str(l)] = np.zeros((layer_dims[l], 1))
    return parameters

print("the learner's own test output, swallowed by the checker")
'''

# (name, replace this, with that, function that must be wrong, output, words the report must contain)
MISTAKES = [
    ("missing 1/m", "dW = 1 / m * np.dot(dZ, A_prev.T)", "dW = np.dot(dZ, A_prev.T)",
     "linear_backward", "dW", "did you forget 1/m?"),
    ("missing keepdims", "db = 1 / m * np.sum(dZ, axis=1, keepdims=True)", "db = 1 / m * np.sum(dZ, axis=1)",
     "linear_backward", "db", "did you forget keepdims=True?"),
    ("missing keepdims and 1/m", "db = 1 / m * np.sum(dZ, axis=1, keepdims=True)", "db = np.sum(dZ, axis=1)",
     "linear_backward", "db", "did you forget 1/m and keepdims=True?"),
    ("transposed W", "dA_prev = np.dot(W.T, dZ)", "dA_prev = np.dot(W, dZ)",
     "linear_backward", "dA_prev", "W where Wᵀ belongs"),
    ("transposed W forward", "Z = W @ A + b", "Z = W.T @ A + b", "linear_forward", "Z", "W where Wᵀ belongs"),
    ("ReLU derivative at 0", "dZ[Z <= 0] = 0", "dZ[Z < 0] = 0", "relu_backward", "dZ", "derivative at z = 0"),
    ("dW from A", "    return linear_backward(dZ, linear_cache)",
     "    A = _relu(activation_cache)[0] if activation == 'relu' else _sigmoid(activation_cache)[0]\n"
     "    A_prev, W, b = linear_cache\n"
     "    m = A.shape[1]\n"
     "    return W.T @ dZ, dZ @ A.T / m, np.sum(dZ, axis=1, keepdims=True) / m",
     "linear_activation_backward", "dW", "instead of A[l-1]"),
    ("sign of the update", "parameters[\"W\" + str(l + 1)] - learning_rate", "parameters[\"W\" + str(l + 1)] + learning_rate",
     "update_parameters", "W1", "sign is flipped"),
    ("cost not squeezed", "return np.squeeze(cost)", "return np.array([[cost]])", "compute_cost", "cost", "np.squeeze"),
    ("sigmoid of the cache", "s = 1 / (1 + np.exp(-cache))", "s = cache", "sigmoid_backward", "dZ", "the cache holds Z"),
]


def _write(tmp_path, text, name="learner.py"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_correct_file_passes(tmp_path):
    report = exercise.check_exercise(_write(tmp_path, GOOD))
    assert report.ok, str(report)
    assert set(report.functions) == {n for n in exercise.FUNCTIONS if not n.startswith(("conv", "pool"))}
    for fn in report.functions.values():
        assert fn.ok and fn.outputs
    lb = report["linear_backward"]
    assert [o.name for o in lb.outputs] == ["dA_prev", "dW", "db"]
    assert all(o.rel_error < 1e-12 for o in lb.outputs)
    assert "linear_backward: dA_prev ok (rel. err" in str(report)
    assert "the learner's own test output" not in str(report)


@pytest.mark.parametrize("label,old,new,fn,output,words", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_planted_mistake_is_named(tmp_path, label, old, new, fn, output, words):
    assert old in GOOD
    report = exercise.check_exercise(_write(tmp_path, GOOD.replace(old, new)))
    assert not report.ok
    result = report[fn]
    assert not result.ok
    wrong = [o for o in result.outputs if not o.ok]
    assert wrong, str(report)
    assert any(o.name in (output, fn) for o in wrong), str(report)
    line = next(line for line in str(report).splitlines() if line.startswith(fn + ":"))
    assert words in line, line
    # every other (independent) function stays right
    others = {"linear_backward": {"linear_activation_backward", "L_model_backward"},
              "linear_forward": {"linear_activation_forward", "L_model_forward"},
              "relu_backward": {"linear_activation_backward", "L_model_backward"},
              "sigmoid_backward": {"linear_activation_backward", "L_model_backward"},
              "linear_activation_backward": {"L_model_backward"}}.get(fn, set())
    for name, r in report.functions.items():
        if name != fn and name not in others:
            assert r.ok, f"{name} should be right with only {label} planted:\n{report}"


def test_db_message_in_the_notes_notation(tmp_path):
    bad = GOOD.replace("db = 1 / m * np.sum(dZ, axis=1, keepdims=True)", "db = np.sum(dZ, axis=1)")
    text = str(exercise.check_exercise(_write(tmp_path, bad)))
    line = next(line for line in text.splitlines() if line.startswith("linear_backward:"))
    assert "dW ok (rel. err" in line
    assert "db wrong: expected shape (n[l], 1) = (3, 1), received (3,); rel. err" in line


def test_korean_report(tmp_path):
    bad = GOOD.replace("dW = 1 / m * np.dot(dZ, A_prev.T)", "dW = np.dot(dZ, A_prev.T)")
    text = str(exercise.check_exercise(_write(tmp_path, bad), lang="ko"))
    assert "1/m을 빠뜨리지 않았나요?" in text
    assert "오답" in text and "정답" in text and "상대 오차" in text


def test_cli_exit_codes(tmp_path, capsys):
    assert exercise.main([_write(tmp_path, GOOD)]) == 0
    assert "all 11 functions right" in capsys.readouterr().out
    bad = GOOD.replace("dZ[Z <= 0] = 0", "dZ[Z < 0] = 0")
    assert exercise.main([_write(tmp_path, bad, "bad.py"), "--lang", "ko"]) == 1
    assert "ReLU" in capsys.readouterr().out
    assert exercise.main([str(tmp_path / "missing.py")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.py" in err and "Traceback" not in err


def test_no_functions_and_import_error(tmp_path):
    report = exercise.check_exercise(_write(tmp_path, "x = 1\n", "empty.py"))
    assert not report.ok and "no function with the course's names" in str(report)
    report = exercise.check_exercise(_write(tmp_path, "raise RuntimeError('oops')\n", "broken.py"))
    assert not report.ok and "could not import" in str(report) and "oops" in str(report)


def test_module_object_and_exceptions_reported():
    def linear_forward(A, W, b):
        raise KeyError("boom")

    report = exercise.check_exercise(types.SimpleNamespace(linear_forward=linear_forward))
    assert not report.ok
    assert "raised KeyError" in str(report)


def test_in_place_change_of_an_input_is_reported():
    def relu_backward(dA, Z):
        dA[Z <= 0] = 0    # changes the caller's dA
        return dA

    report = exercise.check_exercise(types.SimpleNamespace(relu_backward=relu_backward))
    assert not report.ok
    assert "dA wrong — your function changed its input dA in place" in str(report)


def test_wrong_return_type():
    report = exercise.check_exercise(types.SimpleNamespace(linear_backward=lambda dZ, cache: dZ))
    assert not report.ok
    assert "returned ndarray, expected (dA_prev, dW, db)" in str(report)


def test_bad_arguments():
    with pytest.raises(ValueError, match="lang"):
        exercise.check_exercise(types.SimpleNamespace(), lang="fr")
    with pytest.raises(TypeError, match="module_or_path"):
        exercise.check_exercise(3)
    with pytest.raises(FileNotFoundError, match="nope.py"):
        exercise.check_exercise("nope.py")


def test_mistake_simulators_without_mistakes_equal_the_reference(rng):
    # The simulators name mistakes by recomputing the boxes; with no mistake they must be the course's boxes.
    dims, m = [4, 3, 3, 1], 5
    params = course.initialize_parameters_deep(dims, seed=2)
    X = rng.normal(size=(4, m))
    Y = (rng.random((1, m)) > 0.5).astype(float)
    AL, caches = course.L_model_forward(X, params)
    ref = course.L_model_backward(AL, Y, caches)
    sim = exercise._L_back(AL, Y, caches)
    assert ref.keys() == sim.keys()
    for k in ref:
        np.testing.assert_allclose(sim[k], ref[k], rtol=1e-12, atol=1e-15)


@pytest.mark.skipif(not hasattr(course, "conv_forward"), reason="gradbox.course has no conv functions yet")
def test_course4_functions_checked():
    learner = types.SimpleNamespace(**{n: getattr(course, n) for n in ("conv_forward", "conv_backward",
                                                                       "pool_forward", "pool_backward")})
    report = exercise.check_exercise(learner)
    assert report.ok, str(report)

    def conv_forward_no_pad(A_prev, W, b, hparameters):
        return course.conv_forward(A_prev, W, b, {**hparameters, "pad": 0})

    report = exercise.check_exercise(types.SimpleNamespace(conv_forward=conv_forward_no_pad))
    assert not report.ok and "pad" in str(report)


README_LEARNER = '''
import numpy as np

def linear_forward(A, W, b):
    Z = np.dot(W, A) + b
    return Z, (A, W, b)

def relu_backward(dA, cache):
    dZ = np.array(dA, copy=True)
    dZ[cache <= 0] = 0
    return dZ

def linear_backward(dZ, cache):
    A_prev, W, b = cache
    m = A_prev.shape[1]
    dW = np.dot(dZ, A_prev.T) / m
    db = np.sum(dZ, axis=1) / m          # planted mistake: keepdims=True forgotten
    dA_prev = np.dot(W.T, dZ)
    return dA_prev, dW, db
'''


def test_readme_shows_the_real_report(tmp_path, capsys):
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8").read()
    shown = readme.split("forgets `keepdims=True` it prints, and exits 1:\n\n```\n", 1)[1].split("```", 1)[0]
    assert exercise.main([_write(tmp_path, README_LEARNER)]) == 1
    assert capsys.readouterr().out == shown


def test_course_check_exercise_is_the_exercise_checker(tmp_path):
    import gradbox.course as course

    path = tmp_path / "learner.py"
    path.write_text("from gradbox.course import linear_forward\n")
    report = course.check_exercise(str(path))
    assert report.ok and "linear_forward" in str(report)
