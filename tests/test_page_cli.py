"""The command line's doors to the pages and the checker: explain --html, graph --html, train --report, exercise."""
import json
import re

import pytest

from gradbox.cli import main

from .test_exercise import README_LEARNER


def data_of(path):
    html = open(path, encoding="utf-8").read()
    return json.loads(re.search(r'id="gb-data">(.*?)</script>', html, re.S).group(1).replace("<\\/", "</"))


def test_train_report_and_explain_html(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--epochs", "2", "--hidden", "16", "--out", str(run), "--report", "--lang", "ko"]) == 0
    out = capsys.readouterr().out
    assert "explain.html" in out
    data = data_of(run / "explain.html")
    assert data["lang"] == "ko" and data["m"] == 64 and len(data["history"]["loss"]) == 2
    assert [layer["desc"] for layer in data["layers"]] == ["Linear+ReLU", "Linear"]
    page = tmp_path / "page.html"
    assert main(["explain", str(run / "model.gbx"), "--html", str(page), "--batch", "32"]) == 0
    data = data_of(page)
    assert data["lang"] == "en" and data["m"] == 32 and data["history"]["loss"]      # the run's history.csv
    assert data["lr"] == pytest.approx(0.001)                                       # the model's own lr


def test_graph_html(tmp_path, capsys):
    page = tmp_path / "g.html"
    assert main(["graph", "--example", "purchase", "--html", str(page), "--lang", "ko"]) == 0
    data = data_of(page)
    assert data["example"] == "purchase" and data["lang"] == "ko"
    assert main(["graph", "--html", str(page)]) == 2
    assert "expected MODEL or --example" in capsys.readouterr().err


def test_exercise_subcommand(tmp_path, capsys):
    learner = tmp_path / "mine.py"
    learner.write_text(README_LEARNER, encoding="utf-8")
    assert main(["exercise", str(learner), "--lang", "ko"]) == 1
    assert "keepdims=True를 빠뜨리지 않았나요?" in capsys.readouterr().out
    assert main(["exercise", str(tmp_path / "missing.py")]) != 0
    err = capsys.readouterr().err
    assert err.startswith("gradbox: error:") and err.count("\n") == 1


def test_train_conv_with_batch_norm_report(tmp_path):
    run = tmp_path / "cnn"
    assert main(["train", "--conv", "4", "--batch-norm", "--hidden", "16", "--epochs", "1", "--out", str(run),
                 "--report", "--quiet"]) == 0
    data = data_of(run / "explain.html")
    kinds = [layer["type"] for layer in data["layers"]]
    assert kinds[0] == "Conv2d" and "BatchNorm2d" in kinds
    assert all(pj["rel_error"] < 1e-7 for layer in data["layers"] for pj in layer["params"].values())
    html = open(run / "explain.html", encoding="utf-8").read()
    assert "Z[l] = BatchNorm2d(A[l−1]; W[l], b[l])" in html
