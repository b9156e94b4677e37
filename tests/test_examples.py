"""The worked examples in examples/, run in their fast variants."""
import importlib.util
import os

import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


def _load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("simple", [True, False])
def test_purchase_graph_matches_the_notes(simple, tmp_path):
    ex = _load("purchase_graph")
    out = tmp_path / "purchase.dot"
    results, graph = ex.run(simple=simple, out=str(out), verbose=False)
    notes = ex.NOTES_SIMPLE if simple else ex.NOTES_FULL
    for key, value in notes.items():
        assert results[key] == pytest.approx(value, rel=1e-12), key
    assert out.read_text() == graph.source
    assert "1.1 × 2 = 2.2" in graph.source
    assert ex.main(["--simple"]) == 0


def test_cat_classifier_fast_course_equals_engine(shared_data, capsys):
    pytest.importorskip("h5py")  # NOTE: the course's files are HDF5 (the hdf5 extra)
    ex = _load("cat_classifier")
    res = ex.run(os.path.join(shared_data, "train_catvnoncat.h5"), os.path.join(shared_data, "test_catvnoncat.h5"),
                 iterations=8, verbose=False)
    for name in ("2-layer", "L-layer"):
        r = res[name]
        assert r["max_weight_diff"] < 1e-6
        assert r["course"]["train"] == r["engine"]["train"] and r["course"]["test"] == r["engine"]["test"]
        c, e = r["course"]["costs"], r["engine"]["costs"]
        assert len(c) == len(e) == 2  # iterations 0 and 8
        np.testing.assert_allclose(c, e, rtol=1e-9)
        assert c[-1] < c[0]
    assert ex.main(["--train", "/nonexistent.h5", "--iterations", "1"]) == 1
    assert "no such file" in capsys.readouterr().err


def test_gradcheck_walkthrough_catches_the_broken_box():
    ex = _load("gradcheck_walkthrough")
    r = ex.run(verbose=False)
    assert r["mlp"].passed and r["cube"].passed and r["alone_ok"].passed
    assert not r["broken"].passed and not r["alone_bad"].passed
    failing = [row["name"] for row in r["broken"].rows if row["rel_error"] >= 1e-7]
    assert failing == ["0.weight", "0.bias"]  # only the layer below the broken box
    assert r["alone_bad"].max_rel_error == pytest.approx(0.5, rel=1e-6)


def test_digits_mlp_fast(tmp_path):
    pytest.importorskip("matplotlib")  # NOTE: the example draws its curves (the cli extra)
    ex = _load("digits_mlp")
    curves = tmp_path / "curves.png"
    res = ex.run(epochs=2, curves=str(curves), verbose=False)
    assert res["test_accuracy"] > 0.7
    h = res["history"].history
    assert h["loss"][1] < h["loss"][0]
    assert curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert res["before"].checks_passed and res["after"].checks_passed
    assert res["after"].rows[0]["dW_norm"] < res["before"].rows[0]["dW_norm"]
