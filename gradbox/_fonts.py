"""A font that draws Hangul, for plots labelled in Korean (matplotlib, imported lazily).

matplotlib's default font (DejaVu Sans) has no Hangul: Korean labels would come out as
empty boxes. ``hangul_font()`` names an installed font that has it (Noto Sans CJK,
NanumGothic, Malgun Gothic, Apple SD Gothic Neo, ...) or returns None.

>>> from gradbox._fonts import hangul_font
>>> name = hangul_font()
>>> name is None or isinstance(name, str)
True
"""
from __future__ import annotations

import os

__all__ = ["HANGUL_FONTS", "NO_HANGUL_FONT", "hangul_font"]

#: Fonts known to draw Hangul, the preferred first (sans-serif Korean faces, then other CJK faces).
HANGUL_FONTS = (
    "Noto Sans CJK KR", "Noto Sans KR", "Source Han Sans KR", "NanumGothic", "NanumBarunGothic",
    "Malgun Gothic", "Apple SD Gothic Neo", "AppleGothic", "Noto Sans CJK JP", "Noto Sans CJK SC",
    "Noto Sans CJK TC", "Noto Serif CJK KR", "NanumMyeongjo", "UnDotum", "Baekmuk Gulim",
)
# parts of font file names that may hold one of them
_FILE_HINTS = ("cjk", "nanum", "sourcehan", "malgun", "applegothic", "applesdgothic", "notosanskr", "undotum",
               "baekmuk")

#: The line printed where Korean labels were asked for and no font above is installed.
NO_HANGUL_FONT = "gradbox: no Hangul font found (install fonts-noto-cjk or fonts-nanum); {what} uses English labels"


def _known(manager):
    names = {f.name for f in manager.ttflist}
    return next((n for n in HANGUL_FONTS if n in names), None)


def hangul_font() -> str | None:
    """The family name of an installed font that draws Hangul, or None.

    Looks in matplotlib's font list first. NOTE: that list is cached on disk the first time
    matplotlib runs, so a font installed later (apt-get install fonts-noto-cjk) is missing from
    it; the system's font folders are then searched for such files, which are added to this
    process's font manager (once each: a file already listed is not added again).
    """
    from matplotlib import font_manager

    manager = font_manager.fontManager
    name = _known(manager)
    if name is not None:
        return name
    listed = {f.fname for f in manager.ttflist}
    for path in font_manager.findSystemFonts():
        base = os.path.basename(path).lower().replace(" ", "").replace("-", "").replace("_", "")
        if path not in listed and any(h in base for h in _FILE_HINTS):
            try:
                manager.addfont(path)
            except (OSError, RuntimeError, ValueError):
                continue  # an unreadable or unsupported font file: try the next
    return _known(manager)
