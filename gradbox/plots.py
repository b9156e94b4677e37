"""Training pictures: loss and accuracy curves, confusion matrices (matplotlib without pyplot, imported lazily).

>>> from gradbox.train import History
>>> from gradbox.plots import plot_history
>>> import tempfile, os
>>> h = History({"loss": [1.0, 0.5], "accuracy": [0.5, 0.8]}, [1, 2])
>>> path = plot_history(h, os.path.join(tempfile.mkdtemp(), "curves.png"))
>>> os.path.getsize(path) > 0
True
"""
from __future__ import annotations

import io as _io
import os
import sys
from collections.abc import Mapping

import numpy as np

__all__ = ["plot_confusion", "plot_history"]


def _label(lang, key, **kw):
    from .page.i18n import t  # NOTE: the labels' one table, shared with the pages and explain

    return t(lang, key, **kw)


def _figure(**kwargs):
    """A bare ``matplotlib.figure.Figure``, drawn by Agg when saved.

    NOTE: not pyplot. pyplot would need a global backend switch (a user's notebook would lose its
    own backend), keeps every figure in a global registry until closed, and costs 0.4 s to import.
    """
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _columns(history):
    """(epochs, {key: list}) from a History, its as_dict(), or a plain dict of lists."""
    if hasattr(history, "history") and hasattr(history, "epoch"):
        return list(history.epoch), dict(history.history)
    if isinstance(history, Mapping):
        d = dict(history)
        if "history" in d and isinstance(d["history"], Mapping):  # a metrics.json
            d = dict(d["history"])
        epochs = d.pop("epoch", None)
        lengths = {len(v) for v in d.values() if isinstance(v, (list, tuple, np.ndarray))}
        n = max(lengths) if lengths else 0
        return list(epochs) if epochs is not None else list(range(1, n + 1)), d
    raise TypeError(f"history: expected a History or a dict of per-epoch lists, received {type(history).__name__}")


def _save_figure(fig, path, dpi):
    """Lay out and write atomically (format from the extension)."""
    from .io import atomic_write_bytes

    ext = os.path.splitext(os.fspath(path))[1].lower().lstrip(".") or "png"
    buf = _io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format=ext, dpi=dpi, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return os.fspath(path)


def _series(values):
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def plot_history(history, path, title: str | None = None, dpi: int = 120, test_accuracy: float | None = None,
                 test_epoch: int | None = None, lang: str = "en"):
    """Draw loss (left) and accuracy (right), training and validation, against the epoch.

    Parameters
    ----------
    history : History, History.as_dict(), or a metrics.json dict
    path : str or os.PathLike
        Written atomically; the format follows the extension (``.png`` by default).
    title : str, optional
    test_accuracy : float, optional
        The final model's test accuracy, drawn as a dotted line with its value (a metrics.json
        dict supplies its own ``test_accuracy``).
    test_epoch : int, optional
        The epoch whose weights the tested model holds (default: the last), where the marker goes.
    lang : {"en", "ko"}
        Language of the labels. Korean needs a font that draws Hangul (``gradbox._fonts``);
        without one, a line on stderr says so and the labels are English.

    Returns
    -------
    str : the path written.
    """
    if test_accuracy is None and isinstance(history, Mapping) and isinstance(history.get("test_accuracy"), float):
        test_accuracy = history["test_accuracy"]
    epochs, cols = _columns(history)
    lang, family = _plot_lang(lang, path)
    if not epochs or "loss" not in cols:
        raise ValueError(f"history: expected per-epoch 'loss' values, received keys {sorted(cols)}")
    has_acc = "accuracy" in cols or "val_accuracy" in cols or test_accuracy is not None
    fig = _figure(figsize=(10 if has_acc else 5.5, 4))
    axes = fig.subplots(1, 2 if has_acc else 1, squeeze=False)
    panels = [("loss", _label(lang, "plot_loss"))] + ([("accuracy", _label(lang, "plot_accuracy"))] if has_acc else [])
    marker = "o" if len(epochs) <= 30 else None
    for ax, (key, label) in zip(axes[0], panels):
        for name, style, colour in ((key, "-", "C0"), (f"val_{key}", "--", "C1")):
            if name in cols and any(v is not None for v in cols[name]):
                ax.plot(epochs, _series(cols[name]), style, color=colour, marker=marker, markersize=3,
                        label=_label(lang, "plot_validation" if name.startswith("val_") else "plot_training"))
        ax.set_xlabel(_label(lang, "plot_epoch"))
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if key == "loss":
            values = np.concatenate([_series(cols[k]) for k in ("loss", "val_loss") if k in cols])
            values = values[np.isfinite(values)]
            if values.size and values.min() > 0 and values.max() / values.min() > 50:
                ax.set_yscale("log")
        else:
            ax.set_ylim(top=1.005)
            best = [(v, e) for v, e in zip(cols.get("val_accuracy", []), epochs) if v is not None]
            if best:
                v, e = max(best, key=lambda ve: (ve[0], -ve[1]))  # the earliest of equal bests
                ax.plot([e], [v], "*", color="C1", markersize=11, label=_label(lang, "plot_best", v=v, e=e))
            if test_accuracy is not None:
                ax.axhline(test_accuracy, color="C2", linestyle=":", linewidth=1.5)
                e = epochs[-1] if test_epoch is None else test_epoch
                ax.plot([e], [test_accuracy], "D", color="C2", markersize=6,
                        label=_label(lang, "plot_test", v=test_accuracy, e=e))
        # NOTE: below the panel, never over the curves (spirals' curves fill every corner).
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    if family is not None:
        _use_font(fig, family)
    return _save_figure(fig, path, dpi)


def plot_confusion(confusion_matrix, path, classes=None, title: str | None = None, dpi: int = 120):
    """Draw a confusion matrix (rows: true class, columns: predicted) with counts in the cells."""
    cm = np.asarray(confusion_matrix)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ValueError(f"confusion_matrix: expected a square (C, C) array, received shape {cm.shape}")
    c = cm.shape[0]
    classes = [str(k) for k in (classes if classes is not None else range(c))]
    if len(classes) != c:
        raise ValueError(f"classes: expected {c} names, received {len(classes)}")
    size = min(10, 2.5 + 0.45 * c)
    fig = _figure(figsize=(size, size))
    ax = fig.subplots()
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(c), classes, rotation=45 if max(map(len, classes)) > 3 else 0)
    ax.set_yticks(range(c), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    high = cm.max() / 2 if cm.size else 0
    if c <= 30:
        for i in range(c):
            for j in range(c):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if cm[i, j] > high else "black")
    acc = np.trace(cm) / cm.sum() if cm.sum() else float("nan")
    ax.set_title(title or f"confusion matrix (accuracy {acc:.3f})")
    return _save_figure(fig, path, dpi)


def _plot_lang(lang, path, who="plot_history"):
    """(language, font family) for labels in ``lang``: Korean needs a font that draws Hangul.

    Without one, one line on stderr says so and the labels fall back to English.
    """
    from .page.i18n import check_lang

    if check_lang(lang, who) == "en":
        return "en", None
    from . import _fonts

    family = _fonts.hangul_font()
    if family is None:
        print(_fonts.NO_HANGUL_FONT.format(what=os.path.basename(os.fspath(path))), file=sys.stderr)
        return "en", None
    return lang, family


def _use_font(fig, family):
    """Every text of ``fig`` (titles, labels, legends, tick labels) in ``family``."""
    from matplotlib.text import Text

    for ax in fig.axes:
        ax.tick_params(labelfontfamily=family)
    for text in fig.findobj(Text):
        text.set_fontfamily([family, "DejaVu Sans"])  # NOTE: DejaVu Sans for a symbol the font lacks
