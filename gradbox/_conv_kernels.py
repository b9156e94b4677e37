"""Compiled loops for convolution and pooling (numba): im2col, col2im, max and average pooling.

Imported by ``gradbox.nn._conv_functional`` on the first convolution or pooling call, and only when
numba is installed (``pip install "gradbox[fast]"``) and not switched off (``GRADBOX_FAST=0`` or
``gradbox.nn.functional.use_fast_kernels(False)``); ``import gradbox`` never loads it.

Each kernel computes what the NumPy path computes, element by element, without building the
padded copy of the input or the strided views: padding is a bounds test. Sums are taken in the
same order as the NumPy path's loops (window offset by window offset), so results agree to the
last bit in most cases and always to float32 rounding (tested).

NOTE: indices are cast to ``np.uintp`` (unsigned: no negative-index wraparound check, 3-4x faster
loops), and the kernels are serial: ``parallel=True`` threads fought OpenBLAS's for the 2 cores.
"""
import numba
import numpy as np

from .nn._conv_functional import conv_output_size as _out

_jit = numba.njit(cache=True, error_model="numpy", boundscheck=False)


@_jit
def _valid(o_size, k, s, p, size):
    """The output positions [lo, hi) whose input index o·s + k - p lies inside [0, size)."""
    lo = 0
    while lo < o_size and lo * s + k - p < 0:
        lo += 1
    hi = o_size
    while hi > lo and (hi - 1) * s + k - p >= size:
        hi -= 1
    return lo, hi


@_jit
def _im2col(x, kh, kw, sh, sw, ph, pw, oh, ow, cols):
    n, c, h, w = x.shape
    L = oh * ow
    for ci in range(c):
        for i in range(kh):
            ylo, yhi = _valid(oh, i, sh, ph, h)
            for j in range(kw):
                xlo, xhi = _valid(ow, j, sw, pw, w)
                row = cols[(ci * kh + i) * kw + j]
                for ni in range(n):
                    img = x[ni, ci]
                    base = ni * L
                    for oy in range(oh):
                        dst = base + oy * ow
                        if oy < ylo or oy >= yhi:
                            for ox in range(ow):
                                row[np.uintp(dst + ox)] = 0
                            continue
                        src = img[np.uintp(oy * sh + i - ph)]
                        for ox in range(xlo):
                            row[np.uintp(dst + ox)] = 0
                        # NOTE: the interior without bounds tests: a plain strided copy LLVM can vectorise
                        for ox in range(xlo, xhi):
                            row[np.uintp(dst + ox)] = src[np.uintp(ox * sw + j - pw)]
                        for ox in range(xhi, ow):
                            row[np.uintp(dst + ox)] = 0


@_jit
def _col2im(cols, kh, kw, sh, sw, ph, pw, oh, ow, dx):
    n, c, h, w = dx.shape
    L = oh * ow
    for ci in range(c):
        for i in range(kh):
            ylo, yhi = _valid(oh, i, sh, ph, h)
            for j in range(kw):
                xlo, xhi = _valid(ow, j, sw, pw, w)
                row = cols[(ci * kh + i) * kw + j]
                for ni in range(n):
                    img = dx[ni, ci]
                    base = ni * L
                    for oy in range(ylo, yhi):
                        dst = img[np.uintp(oy * sh + i - ph)]
                        src = base + oy * ow
                        for ox in range(xlo, xhi):
                            dst[np.uintp(ox * sw + j - pw)] += row[np.uintp(src + ox)]


@_jit
def _max_pool(x, kh, kw, sh, sw, ph, pw, out, arg):
    n, c, h, w = x.shape
    oh, ow = out.shape[2], out.shape[3]
    # NOTE: plain 4-index element reads (no row views); padding is the clipped window range
    for ni in range(n):
        for ci in range(c):
            for oy in range(oh):
                y0 = oy * sh - ph
                ya, yb = max(y0, 0), min(y0 + kh, h)
                for ox in range(ow):
                    x0 = ox * sw - pw
                    xa, xb = max(x0, 0), min(x0 + kw, w)
                    best = x[ni, ci, np.uintp(ya), np.uintp(xa)]
                    where = ya * w + xa
                    for iy in range(ya, yb):
                        for ix in range(xa, xb):
                            v = x[ni, ci, np.uintp(iy), np.uintp(ix)]
                            # NOTE: strictly greater: the first maximum in row-major order wins ties, as PyTorch
                            if v > best:
                                best = v
                                where = iy * w + ix
                    out[ni, ci, oy, ox] = best
                    arg[ni, ci, oy, ox] = where


@_jit
def _max_pool_backward(g, arg, dx):
    n, c, oh, ow = g.shape
    w = dx.shape[3]
    for ni in range(n):
        for ci in range(c):
            for oy in range(oh):
                for ox in range(ow):
                    k = arg[ni, ci, oy, ox]
                    dx[np.uintp(ni), np.uintp(ci), np.uintp(k // w), np.uintp(k % w)] += g[ni, ci, oy, ox]


@_jit
def _avg_pool(x, kh, kw, sh, sw, ph, pw, scale, out):
    n, c, h, w = x.shape
    oh, ow = out.shape[2], out.shape[3]
    for ni in range(n):
        for ci in range(c):
            for oy in range(oh):
                for ox in range(ow):
                    s = scale * 0  # NOTE: a zero of the array's dtype
                    for i in range(kh):
                        iy = oy * sh + i - ph
                        if iy < 0 or iy >= h:
                            continue
                        for j in range(kw):
                            ix = ox * sw + j - pw
                            if ix >= 0 and ix < w:
                                s += x[np.uintp(ni), np.uintp(ci), np.uintp(iy), np.uintp(ix)]
                    out[ni, ci, oy, ox] = s * scale


@_jit
def _avg_pool_backward(g, kh, kw, sh, sw, ph, pw, scale, dx):
    n, c, oh, ow = g.shape
    h, w = dx.shape[2], dx.shape[3]
    for ni in range(n):
        for ci in range(c):
            for oy in range(oh):
                for ox in range(ow):
                    share = g[ni, ci, oy, ox] * scale
                    for i in range(kh):
                        iy = oy * sh + i - ph
                        if iy < 0 or iy >= h:
                            continue
                        for j in range(kw):
                            ix = ox * sw + j - pw
                            if ix >= 0 and ix < w:
                                dx[np.uintp(ni), np.uintp(ci), np.uintp(iy), np.uintp(ix)] += share


def im2col(x, kernel, stride, padding):
    x = np.ascontiguousarray(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = _out(h, kh, sh, ph), _out(w, kw, sw, pw)
    cols = np.empty((c * kh * kw, n * oh * ow), dtype=x.dtype)
    _im2col(x, kh, kw, sh, sw, ph, pw, oh, ow, cols)
    return cols


def col2im(cols, x_shape, kernel, stride, padding):
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = _out(h, kh, sh, ph), _out(w, kw, sw, pw)
    dx = np.zeros((n, c, h, w), dtype=cols.dtype)
    _col2im(np.ascontiguousarray(cols), kh, kw, sh, sw, ph, pw, oh, ow, dx)
    return dx


def max_pool(x, kernel, stride, padding):
    x = np.ascontiguousarray(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    out = np.empty((n, c, _out(h, kh, sh, ph), _out(w, kw, sw, pw)), dtype=x.dtype)
    arg = np.empty(out.shape, dtype=np.int64)
    _max_pool(x, kh, kw, sh, sw, ph, pw, out, arg)
    return out, arg


def max_pool_backward(g, arg, x_shape, kernel, stride, padding):
    dx = np.zeros(x_shape, dtype=g.dtype)
    _max_pool_backward(np.ascontiguousarray(g), arg, dx)
    return dx


def avg_pool(x, kernel, stride, padding):
    x = np.ascontiguousarray(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    out = np.empty((n, c, _out(h, kh, sh, ph), _out(w, kw, sw, pw)), dtype=x.dtype)
    _avg_pool(x, kh, kw, sh, sw, ph, pw, x.dtype.type(1.0 / (kh * kw)), out)
    return out


def avg_pool_backward(g, x_shape, kernel, stride, padding):
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    dx = np.zeros(x_shape, dtype=g.dtype)
    _avg_pool_backward(np.ascontiguousarray(g), kh, kw, sh, sw, ph, pw, g.dtype.type(1.0 / (kh * kw)), dx)
    return dx
