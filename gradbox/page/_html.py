"""Shared pieces of both pages: escaping, number formatting, the JSON data block and the skeleton."""
from __future__ import annotations

import html
import json
import math
import os

import numpy as np

from .assets import CSS, ERRORS_JS, MAIN_JS
from .i18n import t


def esc(s) -> str:
    return html.escape(str(s), quote=True)


def num(v, digits=4) -> str:
    """A number as the notes print it: 715, 2.2, 3.1e-05."""
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        return f"{v:.{max(digits - 1, 1)}e}".replace("e-0", "e-").replace("e+0", "e+")
    return f"{v:.{digits}g}"


def sci(v) -> str:
    """The notes' style for small errors: 2.6e-13."""
    v = float(v)
    return f"{v:.1e}".replace("e-0", "e-").replace("e+0", "e+") if math.isfinite(v) else str(v)


def shape(s) -> str:
    s = tuple(s)
    return "(" + ", ".join(str(x) for x in s) + ("," if len(s) == 1 else "") + ")"


def exact_list(a) -> list:
    """Every entry of ``a`` as a JSON number that reads back to the same value in ``a``'s dtype.

    float32 entries are written with 9 significant digits (enough to round-trip a
    float32), float64 with Python's shortest repr; NaN and inf become ``null``.
    """
    a = np.asarray(a)
    flat = a.reshape(-1)
    if a.dtype == np.float32:
        out = [float(s) for s in np.char.mod("%.9g", flat.astype(np.float64))]
    else:
        out = flat.astype(np.float64).tolist()
    if not np.all(np.isfinite(flat)):
        out = [v if math.isfinite(v) else None for v in out]
    return out


def short_list(a, digits=4) -> list:
    """Entries rounded for drawing (heatmaps); NaN and inf become ``null``."""
    flat = np.asarray(a, dtype=np.float64).reshape(-1)
    out = [float(s) for s in np.char.mod(f"%.{digits}g", flat)]
    if not np.all(np.isfinite(flat)):
        out = [v if math.isfinite(v) else None for v in out]
    return out


MAX_HEAT = 256   # heatmaps keep at most this many rows and columns (evenly spaced), to keep pages small


def heat_entry(a2d, marked=None) -> dict:
    a2d = np.asarray(a2d, dtype=np.float64)
    full = a2d.shape
    rows = np.unique(np.linspace(0, full[0] - 1, min(full[0], MAX_HEAT)).round().astype(int))
    cols = np.unique(np.linspace(0, full[1] - 1, min(full[1], MAX_HEAT)).round().astype(int))
    if len(rows) < full[0] or len(cols) < full[1]:
        a2d = a2d[np.ix_(rows, cols)]
        if marked:
            marked = [int(np.searchsorted(rows, i)) for i in marked if i in set(rows.tolist())]
    finite = a2d[np.isfinite(a2d)]
    # NOTE: the colour scale ends at the 99th percentile of |value|, so one outlier does not wash out the rest.
    vmax = float(np.percentile(np.abs(finite), 99)) if finite.size else 0.0
    if vmax == 0.0 and finite.size:
        vmax = float(np.abs(finite).max())
    entry = {"rows": int(a2d.shape[0]), "cols": int(a2d.shape[1]), "vmax": vmax, "v": short_list(a2d)}
    if a2d.shape != full:
        entry["subsampled_from"] = [int(full[0]), int(full[1])]
    if marked:
        entry["marked"] = [int(i) for i in marked]
    return entry


def canvas(key, caption, px=360) -> str:
    return (f'<figure><canvas class="gb-heat" data-key="{esc(key)}" data-px="{px}"></canvas>'
            f"<figcaption>{caption}</figcaption></figure>")


def json_block(data) -> str:
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    # NOTE: "</" inside a <script> element would end it early; "<\\/" is the same JSON string.
    return text.replace("</", "<\\/")


def document(lang, title, header_html, body_html, data) -> str:
    """The whole self-contained page."""
    return "".join([
        f'<!DOCTYPE html>\n<html lang="{t(lang, "html_lang")}">\n<head>\n<meta charset="utf-8">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n<script>{ERRORS_JS}</script>\n</head>\n<body>\n",
        f"<header>{header_html}</header>\n",
        f'<main data-active="">{body_html}</main>\n',
        f'<div id="gb-errors" hidden></div>\n<div id="gb-status" hidden>loading</div>\n',
        f'<script type="application/json" id="gb-data">{json_block(data)}</script>\n',
        f"<script>{MAIN_JS}</script>\n</body>\n</html>\n",
    ])


def controls(lang, hint="keys_hint") -> str:
    return (f'<div class="gb-controls"><button id="gb-prev" type="button">{esc(t(lang, "prev"))}</button>'
            f'<button id="gb-next" type="button">{esc(t(lang, "next"))}</button><span id="gb-pos"></span>'
            f'<span>{esc(t(lang, hint))}</span></div>')


def write_text(path, text: str) -> str:
    """Write ``text`` to ``path`` atomically (UTF-8); returns the path."""
    from ..io import atomic_open

    path = os.fspath(path)
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def iframe(html_text: str, height=760) -> str:
    """The page inside an ``<iframe srcdoc>``, so a notebook's own scripts and ids stay apart."""
    return (f'<iframe srcdoc="{html.escape(html_text, quote=True)}" style="width:100%;height:{height}px;'
            'border:1px solid #ddd" sandbox="allow-scripts"></iframe>')


class Page:
    """A built page: ``html`` (str), ``data`` (the embedded numbers), ``save(path)``, ``_repr_html_``."""

    frame_height = 760  # px of the notebook's iframe

    def __init__(self, html_text: str, data: dict):
        self.html = html_text
        self.data = data

    def __str__(self):
        return self.html

    def save(self, path) -> str:
        """Write the page atomically to ``path`` (UTF-8); returns the path."""
        return write_text(path, self.html)

    def _repr_html_(self):
        return iframe(self.html, height=self.frame_height)

    @property
    def size_bytes(self) -> int:
        return len(self.html.encode("utf-8"))
