"""Training curves and confusion matrices: real PNGs, written atomically."""
import json
import os

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from gradbox.plots import plot_confusion, plot_history
from gradbox.train import History

PNG = b"\x89PNG\r\n\x1a\n"


def _history(n=12, val=True):
    h = History()
    for e in range(1, n + 1):
        logs = {"loss": 1.0 / e, "accuracy": 1 - 0.5 / e}
        if val:
            logs.update(val_loss=1.2 / e + 0.01 * e, val_accuracy=1 - 0.6 / e)
        h.append(e, logs)
    return h


def _image_size(path):
    import matplotlib.image as mpimg

    return mpimg.imread(path).shape


def test_plot_history_writes_a_png(tmp_path):
    path = tmp_path / "curves.png"
    assert plot_history(_history(), path, title="t") == str(path)
    assert path.read_bytes()[:8] == PNG
    h, w, _ = _image_size(path)
    assert w > h > 200  # two panels side by side
    assert [f for f in os.listdir(tmp_path) if f != "curves.png"] == []  # no temp file left


def test_plot_history_accepts_dicts_and_metrics_json(tmp_path):
    h = _history(5)
    plot_history(h.as_dict(), tmp_path / "a.png")
    metrics = json.loads(json.dumps({"test_accuracy": 0.9, "history": h.as_dict()}))
    plot_history(metrics, tmp_path / "b.png")
    plot_history({"loss": [0.5, 0.4, None]}, tmp_path / "c.png")  # loss only, a gap allowed
    assert all((tmp_path / n).read_bytes()[:8] == PNG for n in ("a.png", "b.png", "c.png"))
    assert _image_size(tmp_path / "c.png")[1] < _image_size(tmp_path / "a.png")[1]  # one panel


def test_plot_history_without_validation_and_other_formats(tmp_path):
    plot_history(_history(val=False), tmp_path / "x.svg")
    assert b"<svg" in (tmp_path / "x.svg").read_bytes()[:400]


def test_plot_history_bad_input(tmp_path):
    with pytest.raises(ValueError, match="loss"):
        plot_history({"accuracy": [0.5]}, tmp_path / "x.png")
    with pytest.raises(TypeError, match="History"):
        plot_history([1, 2, 3], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "curves.png"
    path.write_bytes(b"old")
    with pytest.raises(ValueError):
        plot_history({"loss": []}, path)
    assert path.read_bytes() == b"old"


def test_plot_confusion(tmp_path):
    cm = np.array([[5, 1], [0, 4]])
    plot_confusion(cm, tmp_path / "cm.png", classes=["no", "yes"])
    assert (tmp_path / "cm.png").read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="square"):
        plot_confusion(np.zeros((2, 3)), tmp_path / "bad.png")
    with pytest.raises(ValueError, match="classes"):
        plot_confusion(cm, tmp_path / "bad.png", classes=["a"])


def test_plotting_leaves_the_users_matplotlib_state_alone(tmp_path):
    """No pyplot, no backend switch: a notebook's backend and figure list stay as they were."""
    import subprocess
    import sys

    code = (
        "import sys, matplotlib\n"
        "matplotlib.use('svg')\n"
        "from gradbox.plots import plot_confusion, plot_history\n"
        f"plot_history({{'loss': [1.0, 0.5], 'accuracy': [0.5, 0.8]}}, {str(tmp_path / 'c.png')!r})\n"
        f"plot_confusion([[1, 0], [0, 1]], {str(tmp_path / 'm.png')!r})\n"
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["svg", "False"]
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG and (tmp_path / "m.png").read_bytes()[:8] == PNG
