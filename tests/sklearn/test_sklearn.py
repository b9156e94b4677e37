"""gradbox.sklearn: scikit-learn's estimator checks, pipelines and grid searches, pickling, save_model."""
import io
import pickle
import time
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", minversion="1.6")  # validate_data, __sklearn_tags__

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits, make_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import gradbox as gb  # noqa: E402
from gradbox import nn  # noqa: E402
from gradbox.sklearn import EXPECTED_FAILED_CHECKS, MLPClassifier, MLPRegressor  # noqa: E402

from .._paths import README  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """NOTE: these networks' matrices are tiny; on a busy machine OpenBLAS's waiting threads make
    them up to ten times slower (measured: 11 s against 1 s for the same fit), for both libraries."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(1):
        yield


def _expected_failures(estimator):
    return EXPECTED_FAILED_CHECKS.get(type(estimator).__name__, {})


_ESTIMATORS = [MLPClassifier(), MLPRegressor()]
if getattr(nn, "BatchNorm1d", None) is not None:
    # gradbox's extras pass too (in float64: float32 predictions of a subset differ from the whole
    # batch's in the 7th digit, beyond check_methods_subset_invariance's 1e-7)
    _ESTIMATORS += [MLPClassifier(dropout=0.1, batch_norm=True), MLPRegressor(dropout=0.1, batch_norm=True)]


# NOTE: the estimators' real defaults (max_iter=200, as scikit-learn's): no test-only settings.
@parametrize_with_checks(_ESTIMATORS, expected_failed_checks=_expected_failures)
def test_sklearn_check_estimator(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


def _blobs(n=120, d=5, classes=3, seed=0):
    X, y = make_classification(n_samples=n, n_features=d, n_informative=d, n_redundant=0, n_classes=classes,
                               n_clusters_per_class=1, class_sep=2.0, random_state=seed)
    return X, y


def test_grid_search_over_hidden_layer_sizes_in_a_pipeline(digits):
    Xtr, Xte, ytr, yte = digits
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=25, random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(16,), (64,), (32, 32)]}, cv=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(Xtr, ytr)
    assert grid.best_params_["mlpclassifier__hidden_layer_sizes"] in [(16,), (64,), (32, 32)]
    assert len(grid.cv_results_["mean_test_score"]) == 3
    assert grid.score(Xte, yte) > 0.9
    assert isinstance(grid.best_estimator_[-1].model_, nn.Sequential)


def test_cross_val_score(digits):
    Xtr, _, ytr, _ = digits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(make_pipeline(StandardScaler(), MLPClassifier((32,), max_iter=40, random_state=0)),
                                 Xtr, ytr, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.85


def test_against_sklearns_own_mlp_on_the_digits(digits, capsys):
    """Same data, same parameters: accuracy within a few points of scikit-learn's MLPClassifier.

    The fit times (one BLAS thread) are printed for the record; no timed assertion.
    bench/sklearn_mlp.py repeats the comparison over seeds."""
    from sklearn.neural_network import MLPClassifier as SkMLP

    Xtr, Xte, ytr, yte = digits
    scaler = StandardScaler().fit(Xtr)
    Xtr, Xte = scaler.transform(Xtr), scaler.transform(Xte)
    results = {}
    for name, cls in [("gradbox", MLPClassifier), ("sklearn", SkMLP)]:
        est = cls(hidden_layer_sizes=(64,), max_iter=50, random_state=0)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(Xtr, ytr)
        results[name] = (est.score(Xte, yte), time.perf_counter() - t0, est.n_iter_)
    with capsys.disabled():
        for name, (acc, seconds, n_iter) in results.items():
            print(f"\n{name} MLPClassifier (64,) on the digits: accuracy {acc:.4f}, fit {seconds:.2f} s, {n_iter} epochs")
    assert results["gradbox"][0] > 0.95
    assert abs(results["gradbox"][0] - results["sklearn"][0]) < 0.03


def test_not_fitted_error():
    for est in (MLPClassifier(), MLPRegressor()):
        for method in ("predict", "score"):
            with pytest.raises(NotFittedError):
                getattr(est, method)(np.zeros((2, 3))) if method == "predict" else est.score(np.zeros((2, 3)), [0, 1])
    with pytest.raises(NotFittedError):
        MLPClassifier().predict_proba(np.zeros((2, 3)))


@pytest.mark.parametrize("X_dtype", [np.float64, np.float32, np.int64, np.int32, np.uint8, bool])
def test_any_numeric_dtype_of_X(X_dtype):
    X, y = _blobs()
    Xc = (X > 0) if X_dtype is bool else (X * 10).astype(X_dtype) if np.dtype(X_dtype).kind in "iu" else X.astype(X_dtype)
    if X_dtype is np.uint8:
        Xc = (X * 10 + 60).astype(np.uint8)
    clf = MLPClassifier((8,), max_iter=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(Xc, y)
    assert clf.predict_proba(Xc).dtype == np.float64
    assert np.allclose(clf.predict_proba(Xc).sum(axis=1), 1.0)


@pytest.mark.parametrize("labels", [["cat", "dog", "emu"], [-5, 0, 7], [1.0, 2.0, 3.0], [True, False, True]])
def test_any_label_type(labels):
    X, y = _blobs()
    labels = np.asarray(labels, dtype=object if isinstance(labels[0], str) else None)
    y_lab = labels[y % len(labels)] if len(set(labels.tolist())) == 3 else np.asarray([True, False])[y % 2]
    clf = MLPClassifier((16,), learning_rate_init=0.01, max_iter=80, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y_lab)
    assert set(clf.classes_.tolist()) == set(np.unique(y_lab).tolist())
    pred = clf.predict(X)
    assert pred.dtype == clf.classes_.dtype
    assert np.mean(pred == y_lab) > 0.8


def test_deterministic_with_random_state_including_dropout():
    X, y = _blobs()
    kw = dict(hidden_layer_sizes=(16,), dropout=0.2, max_iter=20, random_state=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a, b, c = MLPClassifier(**kw).fit(X, y), MLPClassifier(**kw).fit(X, y), MLPClassifier(**{**kw, "random_state": 4}).fit(X, y)
    assert a.loss_curve_ == b.loss_curve_
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.loss_curve_ != c.loss_curve_
    assert any(type(m).__name__ == "Dropout" for m in a.model_)


def test_learned_attributes_and_stopping_rule():
    X, y = _blobs()
    clf = MLPClassifier((16,), learning_rate_init=0.01, max_iter=500, tol=1e-3, n_iter_no_change=5, random_state=0)
    clf.fit(X, y)
    assert clf.n_features_in_ == 5 and clf.classes_.tolist() == [0, 1, 2]
    assert 6 <= clf.n_iter_ < 500 and len(clf.loss_curve_) == clf.n_iter_
    assert clf.best_loss_ == min(clf.loss_curve_)
    # scikit-learn's rule, replayed on the recorded curve: it fires first at the last epoch
    best, count, fired = np.inf, 0, []
    for loss in clf.loss_curve_:
        count = count + 1 if loss > best - 1e-3 else 0
        best = min(best, loss)
        fired.append(count > 5)
    assert fired[-1] and not any(fired[:-1])
    assert clf.loss_curve_[0] > clf.loss_curve_[-1]


def test_max_iter_reached_warns():
    X, y = _blobs()
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(3\\)"):
        MLPClassifier((8,), max_iter=3, random_state=0).fit(X, y)


def test_early_stopping_keeps_the_best_validation_weights():
    X, y = _blobs(n=300)
    clf = MLPClassifier((16,), early_stopping=True, validation_fraction=0.2, n_iter_no_change=3, max_iter=300,
                        learning_rate_init=0.01, random_state=0).fit(X, y)
    assert clf.n_iter_ < 300
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.best_loss_ is None


def test_partial_fit():
    X, y = _blobs()
    clf = MLPClassifier((16,), learning_rate_init=0.01, random_state=0)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y)
    clf = MLPClassifier((16,), learning_rate_init=0.01, random_state=0)
    clf.partial_fit(X[:40], y[:40], classes=[0, 1, 2, 3])
    assert clf.classes_.tolist() == [0, 1, 2, 3] and clf.n_iter_ == 1
    for _ in range(30):
        clf.partial_fit(X, y)
    assert clf.n_iter_ == 31 and clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.predict_proba(X).shape == (len(X), 4)
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X[:, :-1], y)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y, classes=[0, 1])
    reg = MLPRegressor((8,), random_state=0)
    reg.partial_fit(X, X[:, 0])
    reg.partial_fit(X, X[:, 0])
    assert reg.n_iter_ == 2


def test_one_class_is_refused_with_a_message():
    X, _ = _blobs()
    with pytest.raises(ValueError, match="at least 2 classes"):
        MLPClassifier().fit(X, np.zeros(len(X)))


@pytest.mark.parametrize("params, match", [
    ({"activation": "softplus"}, "activation"),
    ({"solver": "lbfgs"}, "solver"),
    ({"alpha": -1.0}, "alpha"),
    ({"batch_size": 0}, "batch_size"),
    ({"hidden_layer_sizes": (8, 0)}, "hidden_layer_sizes"),
    ({"dtype": "float16"}, "dtype"),
    ({"dropout": 1.0}, "dropout"),
    ({"validation_fraction": 1.0}, "validation_fraction"),
])
def test_bad_parameters_are_named(params, match):
    X, y = _blobs()
    with pytest.raises(ValueError, match=match):
        MLPClassifier(**params).fit(X, y)


def test_solvers_activations_and_dtype():
    X, y = _blobs()
    for params in [dict(solver="sgd", learning_rate_init=0.05), dict(solver="sgd", momentum=0.0, learning_rate_init=0.1),
                   dict(solver="sgd", nesterovs_momentum=False, learning_rate_init=0.05),
                   dict(activation="tanh"), dict(activation="logistic", learning_rate_init=0.03),
                   dict(activation="identity"), dict(dtype="float32"), dict(dtype=np.float32, batch_size=16)]:
        clf = MLPClassifier((16,), max_iter=60, random_state=0, **{"learning_rate_init": 0.01, **params})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X, y)
        assert clf.score(X, y) > 0.8, params
        want = np.float32 if params.get("dtype") in ("float32", np.float32) else np.float64
        assert all(p.dtype == want for p in clf.model_.parameters())
    clf = MLPClassifier((16,), activation="identity", max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    assert [type(m).__name__ for m in clf.model_] == ["Linear", "Linear"]


def test_alpha_is_scikit_learns_l2_penalty():
    X, y = _blobs()
    n = len(X)
    # a vanishing learning rate keeps the weights at their (seeded, identical) initial values
    kw = dict(hidden_layer_sizes=(16,), solver="sgd", momentum=0.0, learning_rate_init=1e-12, max_iter=1,
              batch_size=n, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        plain = MLPClassifier(alpha=0.0, **kw).fit(X, y)
        penalised = MLPClassifier(alpha=3.0, **kw).fit(X, y)
    sq = sum(float((m.weight.data ** 2).sum()) for m in plain.model_ if isinstance(m, nn.Linear))
    assert penalised.loss_curve_[0] - plain.loss_curve_[0] == pytest.approx(3.0 / 2 * sq / n, rel=1e-6)
    # and it shrinks the weights in training
    kw = dict(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=100, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        small, large = MLPClassifier(alpha=0.0, **kw).fit(X, y), MLPClassifier(alpha=5.0, **kw).fit(X, y)
    norm = lambda est: sum(float((m.weight.data ** 2).sum()) for m in est.model_ if isinstance(m, nn.Linear))  # noqa: E731
    assert norm(large) < 0.5 * norm(small)


def test_batch_size_larger_than_n_is_clipped_with_a_warning():
    X, y = _blobs(n=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.warns(UserWarning, match="clipped"):
            MLPClassifier((8,), batch_size=500, max_iter=2, random_state=0).fit(X, y)


def test_verbose_prints_the_loss(capsys):
    X, y = _blobs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier((8,), max_iter=2, verbose=True, random_state=0).fit(X, y)
    out = capsys.readouterr().out
    assert "Iteration 1, loss = " in out and "Iteration 2, loss = " in out


def test_pickle_and_joblib_round_trip():
    joblib = pytest.importorskip("joblib")
    X, y = _blobs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier((8,), max_iter=5, random_state=0).fit(X, y)
    clone_p = pickle.loads(pickle.dumps(clf))
    buf = io.BytesIO()
    joblib.dump(clf, buf)
    buf.seek(0)
    clone_j = joblib.load(buf)
    for other in (clone_p, clone_j):
        np.testing.assert_array_equal(other.predict_proba(X), clf.predict_proba(X))
        # training continues from the pickled optimizer state as from the original
        other.partial_fit(X, y)
    np.testing.assert_array_equal(clone_p.predict_proba(X), clone_j.predict_proba(X))


@pytest.mark.parametrize("extras", [{}, {"dropout": 0.2, "dtype": "float32"}, {"batch_norm": True}])
def test_save_model_of_the_fitted_network(tmp_path, extras):
    if extras.get("batch_norm") and getattr(nn, "BatchNorm1d", None) is None:
        pytest.skip("gradbox without nn.BatchNorm1d")
    X, y = _blobs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier((8, 8), max_iter=5, random_state=0, **extras).fit(X, y)
    path = tmp_path / "clf.gbx"
    gb.io.save_model(path, clf.model_, metadata={"classes": clf.classes_.tolist()})
    mf = gb.io.load_model(path)
    logits = gb.train.predict_logits(mf.model, X.astype(clf.model_[0].weight.dtype))
    np.testing.assert_array_equal(clf.classes_[logits.argmax(axis=1)], clf.predict(X))
    np.testing.assert_allclose(logits, gb.train.predict_logits(clf.model_, X.astype(logits.dtype)), rtol=0, atol=0)
    assert mf.metadata["classes"] == [0, 1, 2]


def test_feature_names_in():
    pd = pytest.importorskip("pandas")
    X, y = _blobs()
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier((8,), max_iter=3, random_state=0).fit(df, y)
    assert clf.feature_names_in_.tolist() == list(df.columns)
    with pytest.warns(UserWarning, match="feature names"):
        clf.predict(X)


def test_regressor_fits_a_smooth_function():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(300, 2))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2
    reg = MLPRegressor((32,), learning_rate_init=0.01, random_state=0, max_iter=300).fit(X, y)
    assert reg.score(X, y) > 0.95
    assert reg.predict(X).shape == (300,)
    with pytest.raises(ValueError):
        reg.fit(X, np.c_[y, y])  # one target only (see docs/sklearn.md)


def test_clone_keeps_parameters_and_drops_the_fit():
    X, y = _blobs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier((8,), dropout=0.1, dtype="float32", max_iter=2, random_state=0).fit(X, y)
    other = clone(clf)
    assert other.get_params() == clf.get_params() and not hasattr(other, "model_")


def test_conv_and_batch_norm_need_the_layers_or_say_so():
    X, y = _blobs()
    if getattr(nn, "BatchNorm1d", None) is None:
        with pytest.raises(ValueError, match="batch_norm: expected a gradbox with nn.BatchNorm1d"):
            MLPClassifier((8,), batch_norm=True).fit(X, y)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = MLPClassifier((16,), batch_norm=True, learning_rate_init=0.01, max_iter=30, random_state=0).fit(X, y)
        assert any(type(m).__name__ == "BatchNorm1d" for m in clf.model_)
        assert clf.score(X, y) > 0.8
    if getattr(nn, "BatchNorm1d", None) is not None:
        # a last batch of one sample would stop BatchNorm: the batches grow until it holds two
        X2 = np.r_[X, X[:81]]  # 201 samples, batch_size 'auto' = 200
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            MLPClassifier((8,), batch_norm=True, max_iter=2, random_state=0).fit(X2, np.r_[y, y[:81]])
        with pytest.raises(ValueError, match="n_samples=1"):
            MLPClassifier((8,), batch_norm=True).partial_fit(X[:1], y[:1], classes=[0, 1, 2])
    if getattr(nn, "Conv2d", None) is None:
        with pytest.raises(ValueError, match="conv: expected a gradbox with nn.Conv2d"):
            MLPClassifier((8,), conv=[(4, 3)]).fit(np.zeros((20, 1, 8, 8)), np.arange(20) % 2)


@pytest.mark.skipif(getattr(nn, "Conv2d", None) is None, reason="gradbox without nn.Conv2d")
def test_conv_blocks_on_digit_images():
    X, y = load_digits(return_X_y=True)
    X = X.reshape(-1, 1, 8, 8) / 16.0
    clf = MLPClassifier((32,), conv=[(8, 3)], batch_norm=True, learning_rate_init=0.01, max_iter=8, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X[:1200], y[:1200])
    kinds = [type(m).__name__ for m in clf.model_]
    assert kinds[:5] == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Flatten"]
    assert clf.n_features_in_ == 1 and clf.score(X[1200:], y[1200:]) > 0.85


def test_docstring_examples():
    import doctest

    import gradbox.sklearn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = doctest.testmod(gradbox.sklearn, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def test_readme_grid_search_example_runs(capsys):
    """The README's scikit-learn example (a ```py block: tests/test_readme.py runs only the examples that
    need nothing beyond NumPy) runs as written and prints the search's result."""
    import os
    import re

    readme = open(README, encoding="utf-8").read()
    section = readme[readme.index("## scikit-learn and ONNX"):]
    block = re.search(r"```py\n(.*?)```", section, flags=re.S).group(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        exec(compile(block, "README.md[scikit-learn example]", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert "mlpclassifier__hidden_layer_sizes" in out and float(out.split()[-1]) > 0.85
