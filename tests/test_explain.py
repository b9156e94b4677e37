"""gradbox.explain: the per-layer backprop report."""
import numpy as np
import pytest

import gradbox as gb
from gradbox import nn
from gradbox.report import ExplainReport


def _mlp(act=nn.ReLU, init="he_uniform"):
    return nn.Sequential(nn.Linear(6, 5, rng=0, init=init), act(), nn.Linear(5, 4, rng=1, init=init), act(),
                         nn.Linear(4, 3, rng=2, init=init))


def _batch(m=12, n=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(m, n)).astype(np.float32), rng.integers(0, classes, size=m)


def test_rows_shapes_in_both_notations_and_dimension_rules():
    model = _mlp()
    X, y = _batch()
    report = gb.explain(model, X, y)
    assert isinstance(report, ExplainReport)
    assert [r["layer"] for r in report.rows] == [1, 2, 3]
    r1 = report.rows[0]
    assert r1["W_shape"] == (5, 6) and r1["b_shape"] == (5,) and r1["b_notes"] == (5, 1)
    assert r1["Z_shape"] == (12, 5) and r1["Z_notes"] == (5, 12) and r1["A_notes"] == (5, 12)
    assert r1["dW_shape"] == r1["W_shape"] and r1["db_shape"] == r1["b_shape"]
    assert r1["dZ_shape"] == r1["Z_shape"] and r1["dA_shape"] == r1["A_shape"]
    assert all(r["dims_ok"] for r in report.rows) and report.checks_passed
    assert report.rows[-1]["activation"] is None and report.rows[0]["activation"] == "ReLU"
    assert report.loss_name == "CrossEntropyLoss" and report.batch_size == 12
    text = str(report)
    assert "(n[l], m)" in text and "(5, 12)" in text and "dead ReLU" in text and "all hold" in text


def test_norms_equal_a_manual_backward_and_model_is_left_untouched():
    model = _mlp()
    X, y = _batch()
    model.train()
    report = gb.explain(model, X, y, lr=0.1)
    assert all(p.grad is None for p in model.parameters())
    assert model.training and model[0].training
    loss = nn.CrossEntropyLoss()(model(X), y)
    loss.backward()
    for row, lin in zip(report.rows, [model[0], model[2], model[4]]):
        assert row["dW_norm"] == pytest.approx(np.linalg.norm(lin.weight.grad.astype(np.float64)), rel=1e-6)
        assert row["db_norm"] == pytest.approx(np.linalg.norm(lin.bias.grad.astype(np.float64)), rel=1e-6)
        ratio = row["dW_norm"] / np.linalg.norm(lin.weight.data.astype(np.float64))
        assert row["update_ratio"] == pytest.approx(0.1 * ratio)
    assert report.loss == pytest.approx(loss.item(), rel=1e-6)


def test_dead_relus_are_counted_and_flagged():
    model = _mlp()
    model[0].bias.data[:3] = -100.0  # three of five units can never fire
    X, y = _batch()
    report = gb.explain(model, X, y)
    assert report.rows[0]["dead_relu"] == pytest.approx(0.6)
    assert any("dead" in w and "layer 1" in w for w in report.warnings)


def test_vanishing_gradients_in_a_deep_sigmoid_net():
    layers = []
    for i in range(8):
        layers += [nn.Linear(10, 10, rng=i, init="normal"), nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(10, 1, rng=99))
    X, _ = _batch(n=10)
    y = np.arange(12) % 2
    report = gb.explain(model, X, y)
    assert report.loss_name == "BCEWithLogitsLoss"
    assert report.rows[0]["grad_ratio"] < 1e-5
    assert any("vanishing gradients across layers" in w for w in report.warnings)
    assert any("layer 1: vanishing" in w and "He" in w for w in report.warnings)


def test_saturated_tanh_and_large_learning_rate_flagged():
    model = _mlp(act=nn.Tanh)
    model[0].weight.data *= 200  # pushes tanh into its flat tails
    X, y = _batch()
    report = gb.explain(model, X, y)
    assert report.rows[0]["saturated"] > 0.5
    assert any("saturated" in w for w in report.warnings)
    fresh = _mlp()
    report = gb.explain(fresh, X, y, lr=10.0)
    assert any("lower the learning rate" in w for w in report.warnings)


def test_exploding_gradients_flagged():
    model = nn.Sequential(nn.Linear(6, 5, rng=0), nn.ReLU(), nn.Linear(5, 1, rng=1))
    model[2].weight.data[...] = 1e4
    model[0].weight.data *= 1e-3
    X, _ = _batch()
    report = gb.explain(model, X, np.arange(12) % 2)
    assert any("exploding" in w for w in report.warnings)


def test_healthy_network_has_no_warnings_and_custom_loss():
    model = _mlp()
    X, y = _batch(m=64)
    report = gb.explain(model, X, y, lr=0.01)
    assert report.warnings == [], report.warnings
    assert "no warnings" in str(report)
    mse = gb.explain(model, X, np.zeros((64, 3), dtype=np.float32), loss_fn=nn.MSELoss())
    assert mse.loss_name == "MSELoss" and mse.rows[-1]["dZ_norm"] > 0


def test_gradbox_explain_is_callable_every_time():
    import importlib

    X, y = _batch()
    a = gb.explain(_mlp(), X, y)
    importlib.import_module("gradbox.report")  # importing the module must not shadow the function
    b = gb.explain(_mlp(), X, y)
    assert a.rows[0]["dW_norm"] == pytest.approx(b.rows[0]["dW_norm"])


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(model=nn.Linear(6, 3)), TypeError, "nn.Sequential"),
    (dict(lr=-1.0), ValueError, "lr"),
    (dict(X=np.ones(6, dtype=np.float32)), ValueError, r"explain\(X\)"),
    (dict(y=np.zeros(5, dtype=int)), ValueError, r"explain\(y\)"),
    (dict(model=nn.Sequential(nn.ReLU())), ValueError, "Linear"),
    (dict(X=np.ones((12, 7), dtype=np.float32)), ValueError, "in_features=6"),
])
def test_errors(kwargs, exc, match):
    X, y = _batch()
    args = dict(model=_mlp(), X=X, y=y)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        gb.explain(args.pop("model"), args.pop("X"), args.pop("y"), **args)


def _cli(argv):
    from gradbox.cli import main

    return main(argv)


def test_cli_explain_fresh_model_on_digits(capsys):
    assert _cli(["explain", "--batch", "16"]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "batch of 16" in out and "(64, 16)" in out and "all hold" in out


def test_cli_explain_saved_model_and_errors(tmp_path, capsys):
    model = nn.Sequential(nn.Linear(64, 8, rng=0), nn.Tanh(), nn.Linear(8, 10, rng=1))
    path = tmp_path / "m.gbx"
    gb.save_model(path, model)
    assert _cli(["explain", str(path), "--batch", "20", "--lr", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "Linear(64→8)+Tanh" in out and "lr = 0.1" in out
    # NOTE: one exit-code convention for every subcommand: 2 for a bad command line
    assert _cli(["explain", "--batch", "0"]) == 2
    assert "--batch" in capsys.readouterr().err
    assert _cli(["explain", "--dataset", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    bad = tmp_path / "wide.gbx"
    gb.save_model(bad, nn.Sequential(nn.Linear(7, 2, rng=0)))
    assert _cli(["explain", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_docstring_examples_run():
    import doctest
    import importlib

    module = importlib.import_module("gradbox.report")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


@pytest.fixture(scope="module")
def trained_digits(tmp_path_factory):
    from gradbox.cli import main

    out = str(tmp_path_factory.mktemp("digits") / "run")
    assert main(["train", "--epochs", "20", "--hidden", "64", "--dropout", "0", "--quiet", "--out", out]) == 0
    return out


def _reported_loss(text, pattern):
    import re

    return float(re.search(pattern, text).group(1))


def test_cli_explain_uses_the_model_files_data_scaling_and_lr(trained_digits, capsys):
    """explain on a trained digits model reports the small loss that evaluate reports, at the model's lr.

    It used to min-max scale the inputs (training standardises) and report a loss of 0.55 where the
    stored scaling gives about 0.0004, at lr 0.01 instead of the model's own.
    """
    from gradbox.cli import main

    assert main(["evaluate", trained_digits]) == 0
    evaluated = _reported_loss(capsys.readouterr().out, r"loss\s+([0-9.]+)")
    assert main(["explain", trained_digits, "--batch", "270"]) == 0  # the whole test part
    out = capsys.readouterr().out
    explained = _reported_loss(out, r"CrossEntropyLoss = ([0-9.eE+-]+)")
    assert explained == pytest.approx(evaluated, abs=1e-4)
    assert evaluated < 0.3
    assert "lr = 0.001" in out and "test part of digits" in out


def test_cli_explain_and_graph_work_on_a_csv_trained_model(tmp_path, capsys):
    from gradbox.cli import main

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3)) * [1, 100, 0.01]
    y = (X[:, 0] > 0).astype(int)
    csv = tmp_path / "d.csv"
    csv.write_text("a,b,c,label\n" + "".join(f"{a},{b},{c},{t}\n" for (a, b, c), t in zip(X, y)))
    out = str(tmp_path / "run")
    assert main(["train", "--dataset", str(csv), "--hidden", "8", "--epochs", "30", "--quiet", "--out", out]) == 0
    capsys.readouterr()
    assert main(["explain", out, "--batch", "8"]) == 0
    assert "test part of d" in capsys.readouterr().out
    assert main(["graph", out, "--batch", "3"]) == 0
    src = capsys.readouterr().out
    assert src.startswith("digraph") and "random" not in src
