"""gradbox.explain's report: its text in English and Korean, and its page in Jupyter (_repr_html_)."""
import html as _html
import json
import re
import subprocess
import sys

import numpy as np
import pytest

import gradbox as gb
from gradbox import nn
from gradbox.page.i18n import LABELS

NOTES_TERMS = ["순전파", "역전파", "캐시", "기울기", "국소적 미분", "연쇄 법칙", "학습률"]
HANGUL = re.compile(r"[\uac00-\ud7a3]")


def _model(bias=0.0):
    model = nn.Sequential(nn.Linear(6, 8, rng=0), nn.ReLU(), nn.Linear(8, 3, rng=1))
    model[0].bias.data = model[0].bias.data + np.float32(bias)
    return model


def _batch(m=12):
    rng = np.random.default_rng(0)
    return rng.normal(size=(m, 6)).astype(np.float32), np.arange(m) % 3


def test_korean_text_report_uses_the_notes_terms_and_the_same_numbers():
    X, y = _batch()
    en = gb.explain(_model(), X, y, lr=0.01)
    ko = gb.explain(_model(), X, y, lr=0.01, lang="ko")
    text_en, text_ko = str(en), str(ko)
    for term in NOTES_TERMS:
        assert term in text_ko, term
    assert not HANGUL.search(text_en)
    for word in ["forward", "backward", "cache", "chain rule", "local derivative", "upstream gradient"]:
        assert word in text_en, word
    # the same rows, only the labels differ: every number of the English table is in the Korean one
    assert en.rows == ko.rows and en.loss == ko.loss
    numbers = re.findall(r"\d\.\d{3}e[+-]\d\d", text_en)
    assert numbers and numbers == re.findall(r"\d\.\d{3}e[+-]\d\d", text_ko)
    # the report's own language is the default; another one can be asked for
    assert ko.table() == text_ko and ko.table(lang="en") == text_en


def test_korean_warnings():
    X, y = _batch()
    dead = _model(bias=-100.0)             # every unit of layer 1 is negative: dead ReLUs
    en, ko = gb.explain(dead, X, y), gb.explain(dead, X, y, lang="ko")
    assert any("dead" in w for w in en.warnings)
    assert len(ko.warnings) == len(en.warnings)
    assert any("죽어" in w and w.startswith("1층") for w in ko.warnings), ko.warnings
    assert all(HANGUL.search(w) for w in ko.warnings)
    assert "경고:" in str(ko) and "warnings:" in ko.table(lang="en")
    listed = [line[4:] for line in ko.table(lang="en").splitlines() if line.startswith("  - ")]
    assert listed == en.warnings


def test_korean_columns_line_up():
    """Hangul takes two terminal columns: the rules under the headers are as wide as the headers."""
    from gradbox.report import _width

    X, y = _batch()
    lines = str(gb.explain(_model(), X, y, lang="ko")).splitlines()
    rules = [i for i, line in enumerate(lines) if line and set(line) == {"-"}]
    assert len(rules) == 3
    for i in rules:
        assert len(lines[i]) == _width(lines[i - 1])


def test_text_labels_exist_in_both_languages():
    assert set(LABELS["en"]) == set(LABELS["ko"])
    for key in LABELS["en"]:
        if key.startswith(("report_", "warn_", "plot_")):
            assert sorted(re.findall(r"{(\w+)", LABELS["en"][key])) == sorted(re.findall(r"{(\w+)", LABELS["ko"][key])), key


def test_bad_lang_names_the_argument():
    X, y = _batch()
    with pytest.raises(ValueError, match=r"explain\(lang\).*'ko'.*received 'kr'"):
        gb.explain(_model(), X, y, lang="kr")
    with pytest.raises(ValueError, match=r"table\(lang\)"):
        gb.explain(_model(), X, y).table(lang="jp")


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_cli_explain_text_report_lang(lang):
    res = subprocess.run([sys.executable, "-m", "gradbox", "explain", "--batch", "16", "--lang", lang],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    if lang == "ko":
        for term in NOTES_TERMS:
            assert term in res.stdout, term
        assert "모델:" in res.stdout
    else:
        assert not HANGUL.search(res.stdout)
        assert "gradient sizes (backward)" in res.stdout


def _srcdoc(fragment):
    m = re.search(r'<iframe srcdoc="([^"]*)"', fragment)
    assert m, fragment[:200]
    return _html.unescape(m.group(1))


def _page_data(page_html):
    m = re.search(r'<script type="application/json" id="gb-data">(.*?)</script>', page_html, re.S)
    return json.loads(m.group(1).replace("<\\/", "</"))


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_repr_html_is_the_explain_page_built_lazily(lang):
    X, y = _batch()
    model = _model()
    report = gb.explain(model, X, y, lr=0.05, lang=lang)
    # kept by reference, not copied; nothing is built until the notebook displays the report
    assert report._source[0] is model and report._source[1] is X
    assert report._page is None
    fragment = report._repr_html_()
    assert fragment.startswith("<iframe") and 'sandbox="allow-scripts"' in fragment
    page = _srcdoc(fragment)
    assert ("역전파" if lang == "ko" else "Backward") in page
    assert f'<html lang="{lang}"' in page
    data = _page_data(page)
    assert data["lr"] == 0.05 and data["m"] == 12
    assert data["loss"] == pytest.approx(report.loss, rel=1e-6)
    # the page's dW is the engine's, and its norm the report's
    for row, layer in zip(report.rows, data["layers"]):
        w = next(pj for pj in layer["params"].values() if pj["symbol"].startswith("W"))
        assert np.linalg.norm(np.asarray(w["grad"], dtype=np.float64)) == pytest.approx(row["dW_norm"], rel=1e-5)
    # built once, then kept
    built = report._page
    assert report._repr_html_() == fragment and report._page is built


def test_repr_html_refuses_a_changed_model():
    X, y = _batch()
    model = _model()
    report = gb.explain(model, X, y)
    opt = gb.optim.SGD(model.parameters(), lr=0.1)
    loss = nn.CrossEntropyLoss()(model(gb.Tensor(X)), y)
    loss.backward()
    opt.step()
    fragment = report._repr_html_()
    assert "<iframe" not in fragment and "call gradbox.explain again" in fragment
    assert report._page is None


def test_report_without_source_has_no_html():
    X, y = _batch()
    report = gb.explain(_model(), X, y)
    bare = gb.report.ExplainReport(rows=report.rows, warnings=report.warnings, loss=report.loss,
                                   loss_name=report.loss_name, lr=report.lr, batch_size=report.batch_size)
    assert bare._repr_html_() is None
    assert str(bare) == str(report)


def test_korean_conv_report_has_the_course_layouts_in_korean():
    from gradbox.report import _width

    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, rng=0), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(64, 3, rng=1))
    X = np.random.default_rng(0).normal(size=(6, 1, 8, 8)).astype(np.float32)
    report = gb.explain(model, X, np.arange(6) % 3, lang="ko")
    text_ko, text_en = str(report), report.table(lang="en")
    for label in ["층별 출력 형상", "강좌 (m, n_H, n_W, n_C)", "W 강좌 (f, f, n_C_prev, n_C)", "Z, A 노트/강좌"]:
        assert label in text_ko, label
    assert "course (m, n_H, n_W, n_C)" in text_en and not HANGUL.search(text_en)
    # the shapes themselves are the same in both languages
    shapes = re.findall(r"\(\d+(?:, \d+)*,?\)", text_en)
    assert "(3, 3, 1, 4)" in shapes and shapes == re.findall(r"\(\d+(?:, \d+)*,?\)", text_ko)
    lines = text_ko.splitlines()
    rules = [i for i, line in enumerate(lines) if line and set(line) == {"-"}]
    assert len(rules) == 4 and all(len(lines[i]) == _width(lines[i - 1]) for i in rules)
