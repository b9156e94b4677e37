"""The pages in a real browser: headless Chromium loads them, runs their script and draws them.

Skipped cleanly where no Chromium is installed (``.ci/run`` installs it with apt).
"""
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from html import unescape

import numpy as np
import pytest

import gradbox as gb
from gradbox import nn
from gradbox.page import write_explain_page, write_graph_page

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install -y chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=3000", "--hide-scrollbars"]


def chromium(url, *extra, timeout=60):
    with tempfile.TemporaryDirectory() as profile:
        res = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, url],
                             capture_output=True, text=True, timeout=timeout, check=False)
    return res


def dump_dom(path, fragment=""):
    res = chromium(f"file://{path}{fragment}", "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def screenshot(path, out, fragment="", size="1280,900"):
    res = chromium(f"file://{path}{fragment}", f"--screenshot={out}", f"--window-size={size}")
    assert res.returncode == 0 and os.path.exists(out), res.stderr[-2000:]
    return out


def read_png(path):
    """A tiny PNG decoder (8-bit RGB/RGBA, non-interlaced: what Chromium writes) -> (h, w, c) uint8."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    c = 3 if colour == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + w * c)
    out = np.zeros((h, w * c), np.int32)
    prev = np.zeros(w * c, np.int32)
    for y in range(h):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        cur = np.zeros(w * c, np.int32)
        if f == 0:
            cur = line
        elif f == 2:
            cur = (line + prev) & 255
        else:
            for x in range(w * c):
                a = cur[x - c] if x >= c else 0
                b, d = prev[x], (prev[x - c] if x >= c else 0)
                if f == 1:
                    p = a
                elif f == 3:
                    p = (a + b) // 2
                else:
                    pa, pb, pc = abs(b - d), abs(a - d), abs(a + b - 2 * d)
                    p = a if pa <= pb and pa <= pc else (b if pb <= pc else d)
                cur[x] = (line[x] + p) & 255
        out[y], prev = cur, cur
    return out.reshape(h, w, c).astype(np.uint8)


def errors_and_status(dom):
    err = re.search(r'<div id="gb-errors"[^>]*>(.*?)</div>', dom, re.S).group(1)
    status = re.search(r'<div id="gb-status"[^>]*>(.*?)</div>', dom, re.S).group(1)
    return unescape(err).strip(), status


def active(dom):
    return unescape(re.search(r'<main data-active="([^"]*)"', dom).group(1))


def data_block(dom):
    return json.loads(re.search(r'<script type="application/json" id="gb-data">(.*?)</script>', dom, re.S)
                      .group(1).replace("<\\/", "</"))


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pages")
    model = nn.Sequential(nn.Linear(64, 32, rng=0), nn.ReLU(), nn.Linear(32, 16, rng=1), nn.Tanh(),
                          nn.Linear(16, 10, rng=2))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 64)).astype(np.float32)
    y = rng.integers(0, 10, size=24)
    history = {"loss": [2.3, 1.1, 0.6, 0.4], "val_loss": [2.3, 1.3, 0.8, 0.7]}
    out = {"model": model, "X": X, "y": y}
    for lang in ("en", "ko"):
        out[f"explain_{lang}"] = str(folder / f"explain_{lang}.html")
        write_explain_page(out[f"explain_{lang}"], model, X, y, lang=lang, history=history)
        out[f"graph_{lang}"] = str(folder / f"graph_{lang}.html")
        write_graph_page(out[f"graph_{lang}"], "purchase", lang)
    out["folder"] = folder
    return out


def test_explain_page_loads_without_errors_and_fragments_select_boxes(pages):
    dom1 = dump_dom(pages["explain_en"], "#layer=1&phase=backward")
    dom2 = dump_dom(pages["explain_en"], "#layer=2&phase=forward")
    for dom in (dom1, dom2):
        err, status = errors_and_status(dom)
        assert err == "" and status == "ready"
    assert active(dom1) == "layer=1&phase=backward"
    assert active(dom2) == "layer=2&phase=forward"
    act1 = re.search(r'<section class="gb-step[^"]*\bactive\b[^"]*"[^>]*id="([^"]+)"', dom1).group(1)
    act2 = re.search(r'<section class="gb-step[^"]*\bactive\b[^"]*"[^>]*id="([^"]+)"', dom2).group(1)
    assert (act1, act2) == ("backward-1", "forward-2")
    text = unescape(dom1)
    assert "Z[l] = W[l]A[l−1] + b[l]" in text and "dZ[l] = dA[l] * g'(Z[l])" in text
    # the script drew every heatmap: each canvas got its size from the data
    canvases = re.findall(r"<canvas[^>]*>", dom1)
    assert canvases and all('style="width' in c for c in canvases)


def test_numbers_on_the_rendered_page_equal_the_engine(pages):
    dom = dump_dom(pages["explain_en"], "#layer=3&phase=backward")
    data = data_block(dom)
    model, X, y = pages["model"], pages["X"], pages["y"]
    model.eval()
    loss = nn.CrossEntropyLoss()(model(gb.Tensor(X)), y)
    loss.backward()
    try:
        params = [pj for layer in data["layers"] for pj in layer["params"].values()]
        for pj, p in zip(params, model.parameters()):
            np.testing.assert_array_equal(np.asarray(pj["grad"], dtype=np.float64).astype(p.dtype).reshape(p.shape), p.grad)
    finally:
        for p in model.parameters():
            p.grad = None
    # the norms printed in the rendered table come from the same gradient
    dW3 = np.asarray(data["layers"][2]["params"]["W"]["grad"], dtype=np.float64)
    assert f"{np.linalg.norm(dW3):.4g}" in dom


def test_graph_page_steps_one_gate_at_a_time(pages):
    dom0 = dump_dom(pages["graph_en"], "#step=0")
    dom3 = dump_dom(pages["graph_en"], "#step=3")
    for dom in (dom0, dom3):
        assert errors_and_status(dom) == ("", "ready")
    assert active(dom0) == "step=0" and active(dom3) == "step=3"
    shown = lambda dom: len(re.findall(r'class="gb-g shown"', dom))  # noqa: E731
    assert shown(dom0) == 0 < shown(dom3)
    text = unescape(dom3)
    for value in ["715", "650", "1 × 650 = 650"]:
        assert value in text
    assert 'class="gb-node cur"' in dom3


def test_korean_pages_render(pages):
    for key in ("explain_ko", "graph_ko"):
        dom = dump_dom(pages[key])
        assert errors_and_status(dom) == ("", "ready")
        assert ("순전파" in dom) and ("역전파" in dom)


def test_screenshots_are_not_blank(pages):
    out = str(pages["folder"] / "shot.png")
    screenshot(pages["explain_ko"], out, "#layer=1&phase=forward", size="800,600")
    img = read_png(out).astype(float)
    assert img.shape[:2] == (600, 800)
    assert img[..., :3].std() > 10          # text, tables and heatmaps, not a uniform page
    assert len(np.unique(img[..., :3].reshape(-1, 3), axis=0)) > 50


def test_pages_make_no_network_requests(pages):
    # After the script has run, no element points anywhere but into the page itself.
    for key in ("explain_en", "graph_en"):
        dom = dump_dom(pages[key])
        links = re.findall(r"\b(?:src|href|action|data)\s*=\s*\"([^\"]*)\"", dom)
        assert all(link.startswith("#") for link in links), links
        assert not re.search(r"https?://", dom)
        assert "<link" not in dom and "<img" not in dom and "<iframe" not in dom
