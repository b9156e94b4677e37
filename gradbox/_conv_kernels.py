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

_jit = numba.njit(cache=True, error_model="numpy", boundscheck=False)


@_jit
def _im2col(x, kh, kw, sh, sw, ph, pw, oh, ow, cols):
    n, c, h, w = x.shape
    L = oh * ow
    for ci in range(c):
        for i in range(kh):
            for j in range(kw):
                row = np.uintp((ci * kh + i) * kw + j)
                for ni in range(n):
                    base = np.uintp(ni * L)
                    for oy in range(oh):
                        iy = oy * sh + i - ph
                        dst = base + np.uintp(oy * ow)
                        if iy < 0 or iy >= h:
                            for ox in range(ow):
                                cols[row, dst + np.uintp(ox)] = 0
                            continue
                        for ox in range(ow):
                            ix = ox * sw + j - pw
                            if ix < 0 or ix >= w:
                                cols[row, dst + np.uintp(ox)] = 0
                            else:
                                cols[row, dst + np.uintp(ox)] = x[np.uintp(ni), np.uintp(ci), np.uintp(iy), np.uintp(ix)]


@_jit
def _col2im(cols, kh, kw, sh, sw, ph, pw, oh, ow, dx):
    n, c, h, w = dx.shape
    L = oh * ow
    for ci in range(c):
        for i in range(kh):
            for j in range(kw):
                row = np.uintp((ci * kh + i) * kw + j)
                for ni in range(n):
                    base = np.uintp(ni * L)
                    for oy in range(oh):
                        iy = oy * sh + i - ph
                        if iy < 0 or iy >= h:
                            continue
                        src = base + np.uintp(oy * ow)
                        for ox in range(ow):
                            ix = ox * sw + j - pw
                            if ix >= 0 and ix < w:
                                dx[np.uintp(ni), np.uintp(ci), np.uintp(iy), np.uintp(ix)] += cols[row, src + np.uintp(ox)]


@_jit
def _max_pool(x, kh, kw, sh, sw, ph, pw, out, arg):
    n, c, h, w = x.shape
    oh, ow = out.shape[2], out.shape[3]
    for ni in range(n):
        for ci in range(c):
            for oy in range(oh):
                for ox in range(ow):
                    best = -np.inf
                    where = -1
                    for i in range(kh):
                        iy = oy * sh + i - ph
                        if iy < 0 or iy >= h:
                            continue
                        for j in range(kw):
                            ix = ox * sw + j - pw
                            if ix < 0 or ix >= w:
                                continue
                            v = x[np.uintp(ni), np.uintp(ci), np.uintp(iy), np.uintp(ix)]
                            # NOTE: strictly greater: the first maximum in row-major order wins ties, as PyTorch
                            if v > best or where < 0:
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


def _out(size, k, s, p):
    return (size + 2 * p - k) // s + 1


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
