"""gradbox.viz: DOT text of computational graphs, local gradients, saving and rendering."""
import os
import re
import shutil

import numpy as np
import pytest

import gradbox as gb
from gradbox import viz


def _s(v, name):
    return gb.Tensor(v, requires_grad=True, dtype="float64", name=name)


def _purchase():
    apple, num, tax = _s(100.0, "apple"), _s(2.0, "num"), _s(1.1, "tax")
    total = apple * num * tax
    total.name = "total"
    return total, apple, num, tax


def _edge_labels(source):
    return re.findall(r"(t\d+) -> (t\d+(?:_out)?) \[label=<(.*?)>\];", source)


def test_purchase_graph_values_and_gradients_on_edges():
    total, *_ = _purchase()
    viz.retain_grads(total)
    total.backward(retain_graph=True)
    g = viz.draw_graph(total)
    src = g.source
    assert src.startswith("digraph") and src.rstrip().endswith("}")
    labels = [lab for _, _, lab in _edge_labels(src)]
    # forward values, as in the notes
    for v in ("<b>100</b>", "<b>2</b>", "<b>200</b>", "<b>1.1</b>", "<b>220</b>"):
        assert any(lab.startswith(v) for lab in labels), v
    # backward: upstream x local = gradient
    for text in ("1.1 × 2 = 2.2", "1.1 × 100 = 110", "1 × 1.1 = 1.1", "1 × 200 = 200", "← 1<"):
        assert any(text in lab for lab in labels), text
    assert src.count("shape=circle") == 2 and src.count('label="×"') == 2
    # local gradients ∂out/∂in from the boxes themselves
    assert sorted(g.local_grads.values()) == pytest.approx([1.1, 2.0, 100.0, 200.0])


def test_local_gradients_before_backward_and_omitted_after_release():
    total, *_ = _purchase()
    before = viz.draw_graph(total)
    assert "∂/∂in = 2" in before.source and "∂/∂in = 200" in before.source
    assert "←" not in before.source  # no gradient yet
    total.backward()  # releases the caches
    after = viz.draw_graph(total)
    assert after.local_grads == {}
    assert "∂/∂in" not in after.source
    # leaves still show their gradient on their (single) arrow
    assert "← 2.2" in after.source and "← 110" in after.source


def test_local_grads_off_and_show_grad_off():
    total, *_ = _purchase()
    viz.retain_grads(total)
    total.backward(retain_graph=True)
    src = viz.draw_graph(total, local_grads=False, show_grad=False).source
    assert "←" not in src and "∂" not in src


def test_retain_grads_marks_every_intermediate():
    total, apple, num, tax = _purchase()
    viz.retain_grads(total)
    total.backward()
    inner = total._ctx.parents[0]
    assert inner.grad == pytest.approx(1.1)
    assert total.grad == pytest.approx(1.0)
    assert apple.grad == pytest.approx(2.2) and num.grad == pytest.approx(110.0) and tax.grad == pytest.approx(200.0)


def test_array_graph_shows_shapes_stats_and_grads():
    model = gb.nn.Sequential(gb.nn.Linear(3, 4, rng=0), gb.nn.ReLU(), gb.nn.Linear(4, 2, rng=1))
    X = gb.Tensor(np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32), name="X")
    loss = gb.nn.CrossEntropyLoss()(model(X), np.array([0, 1, 1, 0, 1]))
    before = viz.draw_graph(loss).source
    assert "grad μ" not in before
    viz.retain_grads(loss)
    loss.backward()
    src = viz.draw_graph(loss).source
    assert "<b>Linear</b>" in src and "<b>ReLU</b>" in src and "<b>CrossEntropy</b>" in src
    assert "(5, 4)" in src and "(4, 3)" in src and "μ" in src and "σ" in src
    assert src.count("grad μ") >= 6  # 4 parameters and 3 retained intermediates, minus none
    # one edge per parent: X, W, b -> Linear; Linear -> ReLU; ReLU, W, b -> Linear; Linear, y -> loss
    assert len(re.findall(r"t\d+ -> t\d+;", src)) == 9


def test_gates_example_routes_upstream_gradient():
    roots, _ = viz.build_example("gates")
    grads = {r.name: [p.grad.item() for p in r._ctx.parents] for r in roots}
    assert grads["add gate"] == [2.0, 2.0]
    assert grads["multiply gate"] == [-8.0, 6.0]
    assert grads["max gate"] == [2.0, 0.0]
    s = 1 / (1 + np.exp(-1.0))
    assert grads["sigmoid gate"][0] == pytest.approx(2 * s * (1 - s))
    src = viz.draw_graph(roots).source
    assert src.count("subgraph cluster_") == 4
    assert "2 × -4 = -8" in src and "2 × 0 = 0" in src


def test_save_dot_and_render(tmp_path):
    total, *_ = _purchase()
    g = viz.draw_graph(total)
    dot_path = g.save(tmp_path / "p.dot")
    with open(dot_path) as f:
        assert dot_path.endswith("p.dot") and f.read() == g.source
    if shutil.which("dot") is None:
        pytest.skip("graphviz dot not installed")
    svg = g.save(tmp_path / "p.svg")
    with open(svg) as f:
        assert f.read().lstrip().startswith("<?xml") and os.path.exists(tmp_path / "p.dot")
    viz.draw_graph(total, path=str(tmp_path / "q.png"))
    assert (tmp_path / "q.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]


def test_save_without_dot_binary_writes_dot_and_says_how(tmp_path, monkeypatch):
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)
    total, *_ = _purchase()
    with pytest.warns(UserWarning, match=r"dot -Tsvg .*p\.dot -o .*p\.svg"):
        out = viz.draw_graph(total).save(tmp_path / "p.svg")
    assert out.endswith("p.dot") and os.path.exists(out) and not os.path.exists(tmp_path / "p.svg")


def test_errors():
    with pytest.raises(TypeError, match="draw_graph"):
        viz.draw_graph(np.ones(3))
    total, *_ = _purchase()
    with pytest.raises(ValueError, match="format"):
        viz.draw_graph(total, format="jpeg")
    with pytest.raises(ValueError, match="example"):
        viz.build_example("nope")


def test_leaf_only_and_constant_inputs():
    x = _s(3.0, "x")
    src = viz.draw_graph(x).source
    assert "x" in src and "<b>3</b>" in src
    y = x * 2.0  # the constant 2 becomes a leaf that needs no gradient
    y.backward(retain_graph=True)
    src = viz.draw_graph(y).source
    assert "const" in src and "← 2" in src


def _cli(argv):
    from gradbox import cli_see

    return cli_see.main(argv)


def test_cli_graph_example_to_stdout_and_file(tmp_path, capsys):
    assert _cli(["graph", "--example", "purchase"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("digraph") and "1 × 650 = 650" in out
    target = tmp_path / "gates.dot"
    assert _cli(["graph", "--example", "gates", "--out", str(target)]) == 0
    assert "subgraph cluster_" in target.read_text()


def test_cli_graph_of_a_saved_model(tmp_path, capsys):
    model = gb.nn.Sequential(gb.nn.Linear(5, 4, rng=0), gb.nn.ReLU(), gb.nn.Linear(4, 3, rng=1))
    path = tmp_path / "m.gbx"
    gb.save_model(path, model)
    assert _cli(["graph", str(path), "--batch", "3"]) == 0
    src = capsys.readouterr().out
    assert "0.weight" in src and "(3, 4)" in src and "grad μ" in src


def test_cli_graph_errors_are_one_line(tmp_path, capsys):
    # NOTE: gradbox's one exit-code convention: 2 for a bad command line, 1 for a bad file
    assert _cli(["graph"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected MODEL or --example" in err
    assert _cli(["graph", str(tmp_path / "missing.gbx")]) == 1
    assert "no such file" in capsys.readouterr().err
    assert _cli(["--debug", "graph", str(tmp_path / "missing.gbx")]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_docstring_examples_run():
    import doctest
    import importlib

    module = importlib.import_module("gradbox.viz")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def test_tensor_used_twice_shows_parts_on_arrows_and_sum_on_node():
    x = _s(3.0, "x")
    f = x * x + x
    viz.retain_grads(f)
    f.backward(retain_graph=True)
    assert x.grad == pytest.approx(7.0)
    src = viz.draw_graph(f).source
    labels = [lab for a, _, lab in _edge_labels(src) if a == "t0"]
    assert len(labels) == 3  # x -> ×, x -> ×, x -> +
    assert sorted(lab.split("= ")[-1].split("<")[0] for lab in labels) == ["1", "3", "3"]
    assert "Σ ← 7" in src


def test_main_cli_runs_graph_subcommand(capsys):
    cli = pytest.importorskip("gradbox.cli")
    assert cli.main(["graph", "--example", "purchase-simple"]) == 0
    assert "1 × 200 = 200" in capsys.readouterr().out
    assert cli.main(["graph", "--debug", "--example", "mlp"]) == 0
