"""Pictures of a convolutional network: its first layer's filters and one sample's feature maps.

``plot_filters`` writes the picture ``gradbox train --conv`` leaves in a run folder as
``filters.png`` (matplotlib without pyplot, imported lazily; ``ImportError`` without it).

>>> import os, tempfile
>>> import numpy as np, gradbox as gb
>>> model = gb.nn.Sequential(gb.nn.Conv2d(1, 4, 3, padding=1, rng=0), gb.nn.ReLU(), gb.nn.MaxPool2d(2),
...                          gb.nn.Flatten(), gb.nn.Linear(16, 2, rng=1))
>>> x = np.random.default_rng(0).normal(size=(1, 1, 4, 4)).astype(np.float32)
>>> [(label, maps.shape) for label, maps in feature_maps(model, x)]
[('Conv2d 1 (1→4, 3×3) + ReLU', (4, 4, 4))]
>>> path = plot_filters(model, x, os.path.join(tempfile.mkdtemp(), "filters.png"))
>>> os.path.getsize(path) > 0
True
"""
from __future__ import annotations

import math
import os

import numpy as np

from . import nn
from .function import no_grad
from .page.i18n import t
from .tensor import Tensor

__all__ = ["feature_maps", "plot_filters"]

MAX_IMAGES = 64  # per section: more filters or maps than this are cut (the title says so)
COLUMNS = 16
TITLE_IN = 0.3  # inches above each section's images for its title
GAP_IN = 0.2  # inches below them


def _conv_layers(model):
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def _flatten(model):
    """The layers of a Sequential in order (nested Sequentials expanded)."""
    out = []
    for m in model:
        out.extend(_flatten(m) if isinstance(m, nn.Sequential) else [m])
    return out


def _sample(model, x_sample):
    """``x_sample`` as a (1, C, H, W) array of the first convolution's dtype."""
    conv = _conv_layers(model)[0]
    x = np.asarray(x_sample.data if isinstance(x_sample, Tensor) else x_sample)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1 or x.shape[1] != conv.in_channels:
        raise ValueError(f"plot_filters(x_sample): expected one image of shape ({conv.in_channels}, H, W) or "
                         f"(1, {conv.in_channels}, H, W), received {x.shape}")
    return x.astype(conv.weight.dtype, copy=False)


def feature_maps(model, x_sample):
    """[(label, maps of shape (C, H, W))] of one sample, one entry per ``Conv2d`` of a ``Sequential``.

    The maps are taken after the activation that follows the convolution (through a BatchNorm
    or Dropout between them), or after the convolution when no activation follows. The model
    runs in eval mode, without gradients; its mode is restored.
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"feature_maps(model): expected an nn.Sequential, received {type(model).__name__}")
    if not _conv_layers(model):
        raise ValueError("feature_maps(model): expected a network with a Conv2d layer, received none")
    layers = _flatten(model)
    picks, n_conv = [], 0  # (label, index of the layer whose output is drawn)
    for i, layer in enumerate(layers):
        if not isinstance(layer, nn.Conv2d):
            continue
        n_conv += 1
        k = layer.kernel_size
        label = f"Conv2d {n_conv} ({layer.in_channels}→{layer.out_channels}, {k[0]}×{k[1]})"
        j = i
        while j + 1 < len(layers) and isinstance(layers[j + 1], (nn.BatchNorm2d, nn.Dropout)):
            j += 1
            label += f" + {type(layers[j]).__name__}"
        if j + 1 < len(layers) and getattr(layers[j + 1], "is_activation", False):
            j += 1
            label += f" + {type(layers[j]).__name__}"
        picks.append((label, j))
    x = Tensor(_sample(model, x_sample))
    outputs = []
    with no_grad(), nn.eval_mode(model):
        for layer in layers[:picks[-1][1] + 1]:  # NOTE: the layers after the last drawn one are not needed
            x = layer(x)
            outputs.append(x.data)
    return [(label, np.asarray(outputs[j][0], dtype=np.float64)) for label, j in picks]


def _grid(subfig, images, title, cmap, vlims, cols, height):
    """Images in rows of ``cols`` on ``subfig`` (``height`` inches) without ticks, the title above;
    ``vlims[i]`` = (vmin, vmax), or ``vlims`` None for RGB images."""
    n = len(images)
    rows = math.ceil(n / cols)
    axes = subfig.subplots(rows, cols, squeeze=False)
    # NOTE: subfigures leave no room for their titles by themselves
    subfig.subplots_adjust(top=1 - TITLE_IN / height, bottom=GAP_IN / height, left=0.01, right=0.99,
                           wspace=0.12, hspace=0.12)
    for idx, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if idx >= n:
            ax.set_axis_off()
            continue
        img, lim = images[idx], (vlims[idx] if vlims is not None else None)
        if lim is None:
            ax.imshow(img, interpolation="nearest")
        else:
            ax.imshow(img, cmap=cmap, vmin=lim[0], vmax=lim[1], interpolation="nearest")
    subfig.suptitle(title, fontsize=10)
    return rows


def _filter_images(weight, lang="en"):
    """(images, limits, note) of a first layer's weight (out, in, kh, kw): RGB for 3 inputs, else gray."""
    out_c, in_c = weight.shape[:2]
    w = np.asarray(weight, dtype=np.float64)
    if in_c == 3:
        n = min(out_c, MAX_IMAGES)
        imgs = []
        for f in w[:n]:
            lo, hi = f.min(), f.max()
            imgs.append(np.transpose((f - lo) / (hi - lo) if hi > lo else np.full_like(f, 0.5), (1, 2, 0)))
        return imgs, None, t(lang, "filters_rgb", n=n, total=out_c)
    pairs = [(o, i) for o in range(out_c) for i in range(in_c)][:MAX_IMAGES]
    imgs = [w[o, i] for o, i in pairs]
    lims = []
    for img in imgs:
        a = float(np.abs(img).max()) or 1.0
        lims.append((-a, a))
    key = "filters_gray" if in_c == 1 else "filters_pairs"
    return imgs, lims, t(lang, key, n=len(pairs), total=out_c * in_c)


def plot_filters(model, x_sample, path, title: str | None = None, dpi: int = 120, lang: str = "en"):
    """Draw the first convolution's filters and, for ``x_sample``, every convolution's feature maps.

    Parameters
    ----------
    model : nn.Module
        A network with at least one ``Conv2d``; feature maps need an ``nn.Sequential``.
    x_sample : array of shape (C, H, W) or (1, C, H, W), or None
        One input as the model takes it (standardised); None draws the filters only.
    path : str or os.PathLike
        Written atomically; the format follows the extension (``.png`` by default).
    title : str, optional
    lang : {"en", "ko"}
        Language of the labels. Korean needs a font that draws Hangul (``gradbox._fonts``);
        without one, a line on stderr says so and the labels are English.

    Returns
    -------
    str : the path written.

    Shape
    -----
    - first layer weight: (out_channels, in_channels, kh, kw), drawn as out_channels kh×kw
      images (RGB when in_channels is 3, else one gray image per input channel)
    - feature maps of layer l: (C[l], H[l], W[l]), drawn as C[l] images
    """
    from matplotlib.figure import Figure

    from .io import atomic_open
    from .plots import _plot_lang, _use_font

    convs = _conv_layers(model)
    if not convs:
        raise ValueError("plot_filters(model): expected a network with a Conv2d layer, received none")
    lang, family = _plot_lang(lang, path, "plot_filters")
    first = convs[0]
    sections = []  # (images, limits, cmap, title)
    f_imgs, f_lims, note = _filter_images(first.weight.data, lang)
    k = first.kernel_size
    sections.append((f_imgs, f_lims, "gray", t(lang, "filters_first", i=first.in_channels, o=first.out_channels,
                                               kh=k[0], kw=k[1], note=note)))
    if x_sample is not None:
        x = _sample(model, x_sample)[0].astype(np.float64)
        if x.shape[0] == 3:
            lo, hi = x.min(), x.max()
            sample = [np.transpose((x - lo) / (hi - lo) if hi > lo else np.full_like(x, 0.5), (1, 2, 0))]
            s_lims = None
        else:
            sample = list(x[:MAX_IMAGES])
            s_lims = [(float(c.min()), float(c.max()) if c.max() > c.min() else float(c.min()) + 1) for c in sample]
        sections.append((sample, s_lims, "gray", t(lang, "filters_sample" if x.shape[0] == 1 else "filters_sample_n",
                                                   h=x.shape[1], w=x.shape[2], c=x.shape[0])))
        if isinstance(model, nn.Sequential):
            for label, maps in feature_maps(model, x[None]):
                shown = maps[:MAX_IMAGES]
                lo, hi = float(shown.min()), float(shown.max())
                lims = [(lo, hi if hi > lo else lo + 1)] * len(shown)
                key = "filters_maps_cut" if len(maps) > len(shown) else "filters_maps"
                sections.append((list(shown), lims, "magma",
                                 t(lang, key, label=label, n=len(shown), total=len(maps), h=maps.shape[1],
                                   w=maps.shape[2], lo=lo, hi=hi)))
    cols = max(8, min(COLUMNS, max(len(s[0]) for s in sections)))  # one cell size for every section
    cell = 0.62
    heights = [math.ceil(len(s[0]) / cols) * cell + TITLE_IN + GAP_IN for s in sections]
    fig = Figure(figsize=(cols * cell, sum(heights)))
    subfigs = fig.subfigures(len(sections), 1, height_ratios=heights, squeeze=False)[:, 0]
    for sub, h, (imgs, lims, cmap, text) in zip(subfigs, heights, sections):
        _grid(sub, imgs, text, cmap, lims, cols, h)
    if title:
        fig.suptitle(title, fontsize=11, y=1.0 + 0.3 / fig.get_figheight())
    if family is not None:
        _use_font(fig, family)
    ext = os.path.splitext(os.fspath(path))[1].lower().lstrip(".") or "png"
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format=ext, dpi=dpi, bbox_inches="tight")
    return os.fspath(path)
