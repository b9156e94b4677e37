"""`gradbox train --conv` trains a CNN on the embedded digits (as (N, 1, 8, 8) images) end to end.

Skipped while the datasets do not yet give the digits their image shape (issue 12's datasets work)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import gradbox as gb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_train_conv_batch_norm_on_digits(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "gradbox", "train", "--conv", "16,32", "--batch-norm", "--out", str(out), "--quiet"],
        capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=ROOT), timeout=900,
    )
    if proc.returncode != 0 and "expected image data of shape (N, C, H, W)" in proc.stderr:
        pytest.skip("the digits dataset has no image shape on this branch yet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.98, metrics
    model = gb.io.load_model(out / "model.gbx").model
    kinds = [type(m).__name__ for m in model.modules()]
    assert kinds.count("Conv2d") == 2 and kinds.count("BatchNorm2d") == 2 and kinds.count("MaxPool2d") == 2
    bn = next(m for m in model.modules() if type(m).__name__ == "BatchNorm2d")
    assert int(bn.num_batches_tracked) > 0 and not np.allclose(bn.running_var, 1.0)  # trained buffers were saved
