"""Render the README's screenshots of both pages in both languages with headless Chromium.

    python docs/img/make_screenshots.py        # writes docs/img/*.png (and the pages in /tmp)

Trains gradbox's default digits MLP (64-256-128-10) for a few epochs, then writes the
explain page for one batch and the purchase graph page, en and ko.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

import gradbox as gb
from gradbox.page import GradNormHistory, write_explain_page, write_graph_page
from gradbox.train import build_mlp

HERE = os.path.dirname(os.path.abspath(__file__))
SHOTS = [  # (page, fragment, file, window)
    ("explain_en", "#layer=1&phase=forward", "explain_forward_en.png", "1280,1000"),
    ("explain_ko", "#layer=2&phase=backward", "explain_backward_ko.png", "1280,1000"),
    ("explain_en", "#phase=update", "explain_update_en.png", "1280,800"),
    ("explain_ko", "#phase=history", "explain_history_ko.png", "1280,640"),
    ("cnn_en", "#layer=1&phase=forward", "explain_conv_en.png", "1280,900"),
    ("graph_en", "#step=3", "graph_purchase_en.png", "1280,760"),
    ("graph_ko", "#step=5", "graph_purchase_ko.png", "1280,760"),
]


def main():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        sys.exit("make_screenshots: no chromium binary (apt-get install -y chromium fonts-noto-cjk)")
    ds = gb.datasets.load("digits")
    X = ds.X.astype(np.float32)
    X = (X - X.mean(0)) / (X.std(0) + 1e-6)
    model = build_mlp(64, [256, 128], 10, rng=0)
    norms = GradNormHistory()
    history = gb.fit(model, X[:1400], ds.y[:1400], epochs=8, batch_size=64, seed=0, verbose=0, callbacks=[norms],
                     validation_data=(X[1400:], ds.y[1400:]), optimizer=gb.optim.SGD(model.parameters(), lr=0.05))
    tmp = tempfile.mkdtemp()
    pages = {}
    for lang in ("en", "ko"):
        pages[f"explain_{lang}"] = os.path.join(tmp, f"explain_{lang}.html")
        page = write_explain_page(pages[f"explain_{lang}"], model, X[1400:1464], ds.y[1400:1464], lr=0.05,
                                  lang=lang, history={**history.as_dict(), **norms.history})
        print(f"explain page ({lang}): {page.size_bytes / 1e6:.2f} MB -> {pages[f'explain_{lang}']}")
        pages[f"graph_{lang}"] = os.path.join(tmp, f"graph_{lang}.html")
        write_graph_page(pages[f"graph_{lang}"], "purchase", lang)
    # A small CNN on the digits as 8x8 images: conv filters and feature maps.
    from gradbox import nn
    images = X.reshape(-1, 1, 8, 8)
    cnn = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, rng=0), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(8 * 4 * 4, 10, rng=1))
    h_cnn = gb.fit(cnn, images[:1400], ds.y[:1400], epochs=4, batch_size=64, seed=0, verbose=0,
                   optimizer=gb.optim.SGD(cnn.parameters(), lr=0.05))
    pages["cnn_en"] = os.path.join(tmp, "cnn_en.html")
    page = write_explain_page(pages["cnn_en"], cnn, images[1400:1432], ds.y[1400:1432], lr=0.05, history=h_cnn)
    print(f"CNN explain page: {page.size_bytes / 1e6:.2f} MB -> {pages['cnn_en']}")
    for key, frag, name, size in SHOTS:
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            "--virtual-time-budget=3000", f"--user-data-dir={profile}", f"--window-size={size}",
                            f"--screenshot={os.path.join(HERE, name)}", f"file://{pages[key]}{frag}"],
                           check=True, capture_output=True)
        print("wrote", os.path.join(HERE, name))


if __name__ == "__main__":
    main()
