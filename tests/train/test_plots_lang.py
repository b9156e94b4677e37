"""Curves labelled in Korean: a font that draws Hangul, or one clear line and English labels."""
import html
import os
import re
import subprocess
import sys
import warnings

import pytest

pytest.importorskip("matplotlib")

import gradbox._fonts as fonts  # noqa: E402
from gradbox.plots import plot_history  # noqa: E402

HANGUL = re.compile(r"[\uac00-\ud7a3]")
HISTORY = {"loss": [1.0, 0.6, 0.4], "val_loss": [1.1, 0.7, 0.5],
           "accuracy": [0.5, 0.7, 0.9], "val_accuracy": [0.45, 0.8, 0.85]}


def _svg(tmp_path, lang, name="curves.svg"):
    """The figure as SVG with its text kept as text, so labels and font families can be read."""
    import matplotlib

    path = os.path.join(tmp_path, name)
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        plot_history(HISTORY, path, title="digits", test_accuracy=0.83, test_epoch=2, lang=lang)
    return open(path, encoding="utf-8").read()


def _texts(svg):
    return [re.sub(r"<[^>]+>", "", t) for t in re.findall(r"<text\b[^>]*>(.*?)</text>", svg, re.S)]


@pytest.fixture
def font():
    name = fonts.hangul_font()
    if name is None:
        pytest.skip("no Hangul font installed (apt-get install fonts-noto-cjk)")
    return name


def test_korean_labels_in_a_hangul_font(tmp_path, font):
    svg = _svg(tmp_path, "ko")
    texts = _texts(svg)
    for label in ["손실 (교차 엔트로피)", "정확도", "에폭", "훈련", "검증", "최고 검증 정확도 0.850 (에폭 3)",
                  "테스트 0.830 (에폭 2의 가중치)"]:
        assert label in texts, (label, texts)
    assert not any(word in texts for word in ["epoch", "accuracy", "training", "validation"])
    # every text element, tick labels included, names the Hangul font first
    families = re.findall(r"font(?:-family)?:[^;\"]*?'([^']+)'", svg)
    assert families and set(families) <= {font, "DejaVu Sans"}
    assert all(f"'{font}'" in m for m in re.findall(r"<text\b[^>]*>", svg))


def test_korean_png_has_no_missing_glyphs(tmp_path, font):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plot_history(HISTORY, os.path.join(tmp_path, "curves.png"), lang="ko")
    missing = [str(w.message) for w in caught if "missing from" in str(w.message)]
    assert not missing, missing


def test_without_a_hangul_font_one_line_and_english_labels(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fonts, "hangul_font", lambda: None)
    svg = _svg(tmp_path, "ko", name="curves.svg")
    err = capsys.readouterr().err
    assert err == ("gradbox: no Hangul font found (install fonts-noto-cjk or fonts-nanum); "
                   "curves.svg uses English labels\n")
    texts = _texts(svg)
    assert "epoch" in texts and "accuracy" in texts and "training" in texts
    assert "test 0.830 (weights of epoch 2)" in texts
    assert not any(HANGUL.search(t) for t in texts)


def test_english_needs_no_font_lookup(tmp_path, monkeypatch, capsys):
    def boom():
        raise AssertionError("English labels looked for a Hangul font")

    monkeypatch.setattr(fonts, "hangul_font", boom)
    texts = _texts(_svg(tmp_path, "en"))
    assert "loss (cross-entropy)" in texts and capsys.readouterr().err == ""


def test_bad_lang_names_the_argument(tmp_path):
    with pytest.raises(ValueError, match=r"plot_history\(lang\).*received 'kr'"):
        plot_history(HISTORY, os.path.join(tmp_path, "c.png"), lang="kr")


def test_hangul_font_is_a_known_family(font):
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    assert font in fonts.HANGUL_FONTS
    path = font_manager.findfont(font, fallback_to_default=False)
    assert FT2Font(path).get_char_index(ord("한")) != 0      # the file really has Hangul


def test_cli_train_lang_ko_writes_korean_curves(tmp_path, font):
    out = os.path.join(tmp_path, "run")
    res = subprocess.run([sys.executable, "-m", "gradbox", "train", "--epochs", "2", "--hidden", "16",
                          "--lang", "ko", "--out", out, "--quiet"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "no Hangul font" not in res.stderr
    assert os.path.getsize(os.path.join(out, "curves.png")) > 0


def test_train_lang_ko_draws_the_run_curves_once_in_korean(tmp_path, monkeypatch):
    import gradbox.plots
    from gradbox.cli.main import main

    calls, draw = [], gradbox.plots.plot_history

    def spy(history, path, *args, **kw):
        test = kw.get("test_accuracy", history.get("test_accuracy") if isinstance(history, dict) else None)
        calls.append((os.path.basename(path), kw.get("lang", "en"), kw.get("title"), test, kw.get("test_epoch")))
        return draw(history, path, *args, **kw)

    monkeypatch.setattr(gradbox.plots, "plot_history", spy)
    out = os.path.join(tmp_path, "run")
    assert main(["train", "--epochs", "2", "--hidden", "16", "--lang", "ko", "--out", out, "--quiet"]) == 0
    assert [c[:2] for c in calls] == [("curves.png", "ko")]   # drawn once, in Korean
    assert calls[0][2].startswith("digits: MLP") and calls[0][3] is not None and calls[0][4] is not None
    calls.clear()
    assert main(["train", "--epochs", "2", "--hidden", "16", "--out", out + "-en", "--quiet"]) == 0
    assert [c[:2] for c in calls] == [("curves.png", "en")]


def test_filters_png_in_korean(tmp_path, font):
    """filters.png's section titles in Korean, every text in the Hangul font, no missing glyph."""
    import matplotlib
    import numpy as np

    from gradbox import nn
    from gradbox.plots_conv import plot_filters

    model = nn.Sequential(nn.Conv2d(1, 4, 3, rng=0), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 3 * 3, 2, rng=1))
    x = np.random.default_rng(0).normal(size=(1, 8, 8)).astype(np.float32)
    path = os.path.join(tmp_path, "filters.svg")
    with matplotlib.rc_context({"svg.fonttype": "none"}), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plot_filters(model, x, path, title="digits", lang="ko")
    assert not [str(w.message) for w in caught if "missing from" in str(w.message)]
    svg = open(path, encoding="utf-8").read()
    texts = [html.unescape(t) for t in _texts(svg)]
    assert "첫 번째 층: Conv2d(1→4) 3×3 필터 -- 필터 4개 중 4개; 회색 = 0, 흰색 > 0, 검은색 < 0" in texts, texts
    assert "샘플 (표준화, 8×8, 채널 1개)" in texts
    assert any(t.startswith("Conv2d 1 (1→4, 3×3) + ReLU 다음의 특성 맵: 6×6 맵 4개") for t in texts), texts
    assert not any("feature maps" in t or "first layer" in t for t in texts)
    assert all(f"'{font}'" in m for m in re.findall(r"<text\b[^>]*>", svg))


def test_plot_filters_bad_lang_names_the_argument(tmp_path):
    from gradbox import nn
    from gradbox.plots_conv import plot_filters

    with pytest.raises(ValueError, match=r"plot_filters\(lang\).*received 'kr'"):
        plot_filters(nn.Sequential(nn.Conv2d(1, 2, 3)), None, os.path.join(tmp_path, "f.png"), lang="kr")


def test_run_train_bad_lang_names_the_argument():
    from gradbox.train.run import train

    with pytest.raises(ValueError, match=r"train\(lang\).*received 'kr'"):
        train({"epochs": 1}, lang="kr")
