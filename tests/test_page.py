"""gradbox.page: the explain and graph pages, without a browser (see test_page_browser.py for Chromium)."""
import doctest
from html import unescape
import importlib
import json
import re

import numpy as np
import pytest

import gradbox as gb
from gradbox import nn
from gradbox.page import build_explain_page, build_graph_page, explain_page, graph_page, write_explain_page
from gradbox.train import build_mlp

NETWORK = re.compile(r"https?://|(?:src|href|action)\s*=\s*[\"']?\s*//|url\(\s*[\"']?\s*(?:https?:)?//|@import", re.I)


def page_data(html):
    m = re.search(r'<script type="application/json" id="gb-data">(.*?)</script>', html, re.S)
    assert m, "no data block"
    return json.loads(m.group(1).replace("<\\/", "</"))


def small_digits_model():
    """gradbox's default digits MLP (64-256-128-10), trained for two epochs on the real digits."""
    ds = gb.datasets.load("digits")
    X = ds.X.astype(np.float32)
    X = (X - X.mean(0)) / (X.std(0) + 1e-6)
    y = ds.y
    model = build_mlp(64, [256, 128], 10, rng=0)
    history = gb.fit(model, X[:600], y[:600], epochs=2, batch_size=64, seed=0, verbose=0,
                     optimizer=gb.optim.SGD(model.parameters(), lr=0.05))
    return model, X, y, history


@pytest.fixture(scope="module")
def digits():
    return small_digits_model()


def engine_grads(model, X, y, loss_fn=None):
    """The engine's own gradients for the batch, computed independently of the page."""
    model.zero_grad() if hasattr(model, "zero_grad") else None
    for p in model.parameters():
        p.grad = None
    model.eval()
    loss = (loss_fn or nn.CrossEntropyLoss())(model(gb.Tensor(X)), y)
    loss.backward()
    grads = [np.array(p.grad) for p in model.parameters()]
    for p in model.parameters():
        p.grad = None
    return float(loss.data), grads


def test_default_digits_page_numbers_equal_the_engine(digits):
    model, X, y, history = digits
    Xb, yb = X[:64], y[:64]
    before = [np.array(p.data) for p in model.parameters()]
    page = build_explain_page(model, Xb, yb, lr=0.05, history=history)
    assert page.size_bytes < 10 * 2 ** 20
    data = page_data(page.html)
    loss, grads = engine_grads(model, Xb, yb)
    assert data["loss"] == pytest.approx(loss, rel=1e-6)
    params = [pj for layer in data["layers"] for pj in layer["params"].values()]
    assert [pj["symbol"] for pj in params] == ["W1", "b1", "W2", "b2", "W3", "b3"]
    for pj, g, p in zip(params, grads, model.parameters()):
        got = np.asarray(pj["grad"], dtype=np.float64).astype(p.dtype).reshape(pj["shape"])
        np.testing.assert_array_equal(got, g)      # dW on the page = layer.weight.grad, bit for bit
        assert pj["norm"] == pytest.approx(np.linalg.norm(p.data.astype(np.float64)))
        assert pj["rel_error"] < 1e-7               # analytic vs numerical, float64
        assert pj["update_ratio"] == pytest.approx(0.05 * np.linalg.norm(g.astype(float)) / np.linalg.norm(p.data.astype(float)), rel=1e-6)
    # the page left the model as it was
    for p, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.data, b)
        assert p.grad is None
    assert data["loss_after_step"] < data["loss"]


def test_page_shows_the_boxes_in_the_notes_notation(digits):
    model, X, y, history = digits
    page = build_explain_page(model, X[:32], y[:32], history=history)
    html = unescape(page.html)
    for text in ["Z[l] = W[l]A[l−1] + b[l]", "A[l] = g(Z[l])", "dZ[l] = dA[l] * g'(Z[l])",
                 "dW[l] = (1/m) dZ[l] A[l−1]ᵀ", "W[l] := W[l] − α·dW[l]", "‖α·dW‖ / ‖W‖",
                 "(256, 64)", "(32, 256)", "(256, 32)", "(256,)", "(256, 1)"]:
        assert text in html, text
    assert re.search(r'<div class="gc">W1: \d\.\de-\d+ ', html)          # the notes' "W1: 2.6e-13"
    for frag in ["layer=1&phase=forward", "layer=3&phase=backward", "phase=cost", "phase=update", "phase=history"]:
        assert f'data-frag="{frag}"' in html
    assert html.count("<polyline") >= 1                                   # the loss curve
    assert "gb-units" in html                                             # dead/saturated units checked
    assert not NETWORK.search(html)


def test_korean_labels(digits):
    model, X, y, _ = digits
    html = explain_page(model, X[:16], y[:16], lang="ko")
    for word in ["순전파", "역전파", "캐시", "기울기", "학습률", "비용", "국소적 미분", "연쇄 법칙"]:
        assert word in html, word
    assert '<html lang="ko">' in html


def test_dead_units_are_marked():
    model = nn.Sequential(nn.Linear(3, 4, rng=0), nn.ReLU(), nn.Linear(4, 2, rng=1))
    model[0].weight.data[1] = 0.0
    model[0].bias.data[1] = -1.0      # unit 2 never fires
    X = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    page = build_explain_page(model, X, np.arange(8) % 2)
    assert page.data["layers"][0]["marked_units"] == [1]
    assert page.data["heat"]["L1.A"]["marked"] == [1]
    assert "dead units (never positive on this batch): 1 of 4" in page.html


def test_binary_output_sigmoid_and_custom_loss(rng):
    model = nn.Sequential(nn.Linear(4, 3, rng=0, dtype=np.float64), nn.Sigmoid(), nn.Linear(3, 1, rng=1, dtype=np.float64))
    X = rng.normal(size=(6, 4))
    page = build_explain_page(model, X, (np.arange(6) % 2).astype(float))
    assert page.data["loss_name"] == "BCEWithLogitsLoss"
    assert "dZ[l] = dA[l] * σ(Z[l]) (1 − σ(Z[l]))" in unescape(page.html)
    page = build_explain_page(model, X, rng.normal(size=(6, 1)), loss_fn=nn.MSELoss())
    assert page.data["loss_name"] == "MSELoss"
    assert all(pj["rel_error"] < 1e-7 for layer in page.data["layers"] for pj in layer["params"].values())


def test_write_is_atomic_and_repr_html(tmp_path, rng):
    model = nn.Sequential(nn.Linear(3, 2, rng=0))
    path = tmp_path / "page.html"
    page = write_explain_page(path, model, rng.normal(size=(4, 3)).astype(np.float32), np.array([0, 1, 1, 0]))
    assert path.read_text(encoding="utf-8") == page.html
    assert page._repr_html_().startswith("<iframe srcdoc=")
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]


def test_bad_arguments(rng):
    model = nn.Sequential(nn.Linear(3, 2, rng=0))
    X = rng.normal(size=(4, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"explain_page\(lang\)"):
        explain_page(model, X, np.zeros(4, int), lang="fr")
    with pytest.raises(TypeError, match=r"explain_page\(model\)"):
        explain_page(nn.Linear(3, 2), X, np.zeros(4, int))
    with pytest.raises(ValueError, match=r"explain_page\(lr\)"):
        explain_page(model, X, np.zeros(4, int), lr=-1)
    with pytest.raises(ValueError, match=r"explain_page\(y\)"):
        explain_page(model, X, np.zeros(3, int))
    with pytest.raises(ValueError, match=r"graph_page\(example\)"):
        graph_page("nope")


def _fmt_appears(value, html):
    return f">{value}<" in html or f" {value} " in html or f"{value}</" in html


def test_purchase_graph_shows_the_notes_values():
    page = build_graph_page("purchase")
    nodes = {n["name"]: n for n in page.data["nodes"] if n["name"]}
    assert nodes["total"]["value"] == pytest.approx(715)
    grads = {k: nodes[k]["grad"] for k in ("apple", "num_apple", "orange", "num_orange", "tax")}
    assert grads == pytest.approx({"apple": 2.2, "num_apple": 110, "orange": 3.3, "num_orange": 165, "tax": 650})
    html = unescape(page.html)
    for shown in ["715", "2.2", "110", "3.3", "165", "650"]:
        assert re.search(rf"(?<![\d.]){re.escape(shown)}(?![\d.])", html), shown
    # each gate: upstream × local = downstream, with the numbers
    assert "1 × 650 = 650" in html and "1.1 × 100 = 110" in html
    assert len(page.data["steps"]) == 4
    assert not NETWORK.search(html)


@pytest.mark.parametrize("example", ["purchase-simple", "gates", "mlp"])
@pytest.mark.parametrize("lang", ["en", "ko"])
def test_other_graphs_build(example, lang):
    page = build_graph_page(example, lang)
    assert page.data["steps"] and not NETWORK.search(page.html)
    assert ("역전파" in page.html) == (lang == "ko")


@pytest.mark.parametrize("name", ["gradbox.page.explain_page", "gradbox.page.graph_page", "gradbox.page.i18n", "gradbox.page.history",
                                  "gradbox.exercise"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def test_labels_tables_match():
    from gradbox.page.i18n import LABELS
    from gradbox.exercise import MESSAGES
    assert LABELS["en"].keys() == LABELS["ko"].keys()
    assert MESSAGES["en"].keys() == MESSAGES["ko"].keys()


@pytest.mark.skipif(not hasattr(nn, "Conv2d"), reason="nn.Conv2d not merged yet")
def test_conv_layers_show_filters_and_feature_maps():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, rng=0), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(64, 10, rng=1))
    X = np.random.default_rng(0).normal(size=(6, 1, 8, 8)).astype(np.float32)
    y = np.arange(6) % 10
    page = build_explain_page(model, X, y)
    conv = page.data["layers"][0]
    assert conv["type"] == "Conv2d" and conv["config"]["in_channels"] == 1
    assert conv["params"]["W"]["shape"] == [4, 1, 3, 3] and conv["params"]["W"]["rel_error"] < 1e-7
    assert [f"L1.W.f{f}" in page.data["heat"] for f in range(4)] == [True] * 4
    assert "L1.map0" in page.data["heat"] and "L1.dmap0" in page.data["heat"]
    html = unescape(page.html)
    assert "Z[l] = W[l] ∗ A[l−1] + b[l]" in html and "(3, 3, 1, 4)" in html and "(6, 8, 8, 4)" in html
    _, grads = engine_grads(model, X, y)
    np.testing.assert_array_equal(np.asarray(conv["params"]["W"]["grad"], np.float64).astype(np.float32).reshape(4, 1, 3, 3),
                                  grads[0])


def test_history_with_gradient_norms_per_layer():
    from gradbox.page import GradNormHistory
    model = build_mlp(8, [6], 3, rng=0)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 8)).astype(np.float32), rng.integers(0, 3, size=40)
    rec = GradNormHistory()
    h = gb.fit(model, X, y, epochs=3, batch_size=10, callbacks=[rec], verbose=0, validation_data=(X[:10], y[:10]))
    assert set(rec.history) == {f"grad_norm.{n}" for n, _ in model.named_parameters()}
    assert all(len(v) == 3 and all(x > 0 for x in v) for v in rec.history.values())
    page = build_explain_page(model, X[:10], y[:10], history={**h.as_dict(), **rec.history})
    assert page.data["history"]["loss"] == h.history["loss"]
    html = page.html
    assert html.count("<polyline") == 2 + 4 + 2     # loss, val_loss; W1, b1, W2, b2; accuracy, val_accuracy
    assert ">W1</text>" in html and ">val_loss</text>" in html


def test_large_layers_keep_the_page_small():
    # 784-512-10: the heatmaps are subsampled to 256 per side, the exact gradients stay whole.
    model = build_mlp(784, [512], 10, rng=0)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(16, 784)).astype(np.float32), rng.integers(0, 10, size=16)
    page = build_explain_page(model, X, y, gradcheck_entries=2)
    heat = page.data["heat"]["L1.W"]
    assert (heat["rows"], heat["cols"]) == (256, 256) and heat["subsampled_from"] == [512, 784]
    assert len(page.data["layers"][0]["params"]["W"]["grad"]) == 512 * 784
    assert page.size_bytes < 10 * 2 ** 20


def test_gradbox_train_default_model_with_dropout_and_leaky_relu(rng):
    # `gradbox train`'s default MLP has dropout after each hidden activation: it joins that layer's box.
    model = build_mlp(64, [32, 16], 10, dropout=0.4, rng=0)
    X, y = rng.normal(size=(12, 64)).astype(np.float32), rng.integers(0, 10, size=12)
    page = build_explain_page(model, X, y)
    assert [layer["desc"] for layer in page.data["layers"]] == ["Linear+ReLU", "Linear+ReLU", "Linear"]
    assert all(model.training for model in model.modules())         # mode restored
    model = nn.Sequential(nn.Linear(4, 3, rng=0), nn.LeakyReLU(), nn.Linear(3, 2, rng=1))
    page = build_explain_page(model, rng.normal(size=(5, 4)).astype(np.float32), np.arange(5) % 2)
    assert "else negative_slope" in unescape(page.html)


@pytest.mark.parametrize("doc", ["docs/ko/backprop_box_by_box.md", "docs/ko/README.md"])
def test_korean_docs_python_blocks_run(doc, tmp_path, monkeypatch, capsys):
    import os
    path = os.path.join(os.path.dirname(__file__), "..", doc)
    blocks = re.findall(r"```python\n(.*?)```", open(path, encoding="utf-8").read(), re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__doc__"}
    from gradbox.train.run import blas_threads
    with blas_threads(1):      # as `gradbox train` does: small layers, a busy test machine
        for block in blocks:
            exec(compile(block, doc, "exec"), namespace)
    if "explain.html" in "".join(blocks):
        assert "역전파" in (tmp_path / "explain.html").read_text(encoding="utf-8")
