"""The NumPy conv path, short runs against the wide grid (stride 1): paired, interleaved, one BLAS thread.

    python bench/conv_unfold.py                 # 15 rounds; medians in ms and the paired ratio wide/short
    python bench/conv_unfold.py --rounds 31 --layers cifar2

Each round times one training step of one layer both ways, in alternating order: im2col, the forward
GEMM, the dW GEMM and (except for a first layer, which needs no dX) the dcols GEMM and col2im, built
from the same pieces ``Conv2dFunction`` uses (``_im2col``/``_col2im`` with runs of OW floats, or
``_im2col_wide``/``_col2im_wide`` below, on the OH × Wp grid). float32, as training runs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gradbox.nn import _conv_functional as CF  # noqa: E402

# NOTE: the experiment lives here, not in the library: measured, it did not pay (BENCHMARKS.md,
# "NumPy path: unfolding by flattened rows").
WIDE_MAX_RATIO = 1.25  # the wide grid costs Wp/OW more GEMM work (the prediction's cut-off)


def _wide_ok(x_shape, kernel, stride, padding) -> bool:
    """Whether a stride-1 convolution unfolds by flattened rows (``_im2col_wide``)."""
    if stride != (1, 1):
        return False
    wp = x_shape[3] + 2 * padding[1]
    return wp <= WIDE_MAX_RATIO * (wp - kernel[1] + 1)


def _im2col_wide(x, kernel, padding):
    """Stride-1 im2col on the wide grid: (C·kh·kw, N·OH·Wp), the last Wp − OW columns of each output
    row garbage (cropped after the GEMM).

    With the padded image flattened per channel (length Hp·Wp, plus kw − 1 zeros so the last
    window stays inside), window offset (i, j) of wide position (y, x) is element i·Wp + j + y·Wp + x:
    row (c, i, j) of the columns is one run of OH·Wp consecutive elements per sample, so the copy
    moves long runs instead of OH runs of OW elements.
    """
    n, c, h, w = x.shape
    (kh, kw), (ph, pw) = kernel, padding
    hp, wp = h + 2 * ph, w + 2 * pw
    oh = hp - kh + 1
    length = hp * wp + kw - 1
    buf = np.zeros((n, c, length), dtype=x.dtype)
    buf[:, :, :hp * wp].reshape(n, c, hp, wp)[:, :, ph:ph + h, pw:pw + w] = x
    s = buf.strides[2]
    view = np.lib.stride_tricks.as_strided(buf, (c, kh, kw, n, oh * wp),
                                           (length * s, wp * s, s, c * length * s, s), writeable=False)
    return np.ascontiguousarray(view).reshape(c * kh * kw, n * oh * wp)


def _col2im_wide(dcols, x_shape, kernel, padding):
    """The adjoint of ``_im2col_wide``: kh·kw adds of runs of OH·Wp elements (garbage columns must be 0)."""
    n, c, h, w = x_shape
    (kh, kw), (ph, pw) = kernel, padding
    hp, wp = h + 2 * ph, w + 2 * pw
    oh = hp - kh + 1
    run = oh * wp
    d = dcols.reshape(c, kh, kw, n, run)
    # NOTE: accumulated in the columns' own (C, N, ...) order and transposed once, as _col2im does
    buf = np.zeros((c, n, hp * wp + kw - 1), dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            buf[:, :, i * wp + j:i * wp + j + run] += d[:, i, j]
    dx = buf[:, :, :hp * wp].reshape(c, n, hp, wp)[:, :, ph:ph + h, pw:pw + w]
    return np.ascontiguousarray(dx.transpose(1, 0, 2, 3))


# name: (x shape, weight shape, padding, first layer)
LAYERS = {
    "cifar1": ((64, 3, 32, 32), (32, 3, 3, 3), (1, 1), True),
    "cifar2": ((64, 32, 16, 16), (64, 32, 3, 3), (1, 1), False),
    "lenet1": ((128, 1, 28, 28), (6, 1, 5, 5), (2, 2), True),
}


def step(x, w, padding, first, wide, times):
    """One forward + backward of the layer; adds each part's seconds to ``times``."""
    o, c, kh, kw = w.shape
    n, _, h, wd = x.shape
    oh, ow = h + 2 * padding[0] - kh + 1, wd + 2 * padding[1] - kw + 1
    cw = wd + 2 * padding[1] if wide else ow
    t0 = time.perf_counter()
    cols = _im2col_wide(x, (kh, kw), padding) if wide else CF._im2col(x, (kh, kw), (1, 1), padding)
    t1 = time.perf_counter()
    z = w.reshape(o, -1).dot(cols)
    out = np.ascontiguousarray(z.reshape(o, n, oh, cw)[:, :, :, :ow].transpose(1, 0, 2, 3))
    t2 = time.perf_counter()
    g = out  # any cotangent of the output's shape
    if wide:
        dz = np.zeros((o, n, oh, cw), dtype=g.dtype)
        dz[:, :, :, :ow] = g.transpose(1, 0, 2, 3)
        dz = dz.reshape(o, -1)
    else:
        dz = np.ascontiguousarray(g.transpose(1, 0, 2, 3)).reshape(o, -1)
    dz.dot(cols.T)
    t3 = time.perf_counter()
    times["im2col"] += t1 - t0
    times["gemm Z"] += t2 - t1
    times["gemm dW"] += t3 - t2
    if not first:
        dcols = w.reshape(o, -1).T.dot(dz)
        t4 = time.perf_counter()
        if wide:
            _col2im_wide(dcols, x.shape, (kh, kw), padding)
        else:
            CF._col2im(dcols, x.shape, (kh, kw), (1, 1), padding)
        t5 = time.perf_counter()
        times["gemm dcols"] += t4 - t3
        times["col2im"] += t5 - t4


def check_equal(x, w, padding):
    """Both ways give the same columns (cropped) and the same col2im, in float64, before any timing."""
    n, c, h, wd = x.shape
    kernel = w.shape[2:]
    oh, ow, wp = h + 2 * padding[0] - kernel[0] + 1, wd + 2 * padding[1] - kernel[1] + 1, wd + 2 * padding[1]
    short = CF._im2col(x, kernel, (1, 1), padding).reshape(-1, n, oh, ow)
    wide = _im2col_wide(x, kernel, padding).reshape(-1, n, oh, wp)
    assert np.array_equal(wide[..., :ow], short), "im2col differs"
    d = np.random.default_rng(1).normal(size=wide.shape)
    d[..., ow:] = 0
    a = _col2im_wide(d.reshape(len(d), -1), x.shape, kernel, padding)
    b = CF._col2im(np.ascontiguousarray(d[..., :ow]).reshape(len(d), -1), x.shape, kernel, (1, 1), padding)
    assert np.allclose(a, b, rtol=1e-12, atol=1e-12), "col2im differs"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--layers", default=",".join(LAYERS))
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (threadpoolctl; default 1)")
    a = p.parse_args()
    CF.use_fast_kernels(False)
    try:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(limits=a.threads, user_api="blas")
    except ImportError:
        limit = None
        print("threadpoolctl missing: BLAS threads not limited")
    rng = np.random.default_rng(0)
    print(f"| layer | part | short runs (ms) | wide grid (ms) | wide / short (paired median) |")
    print("|---|---|---|---|---|")
    for name in a.layers.split(","):
        xs, ws, padding, first = LAYERS[name]
        assert _wide_ok(xs, ws[2:], (1, 1), padding), name
        x = rng.normal(size=xs).astype(np.float32)
        w = rng.normal(size=ws).astype(np.float32)
        parts = ["im2col", "gemm Z", "gemm dW"] + ([] if first else ["gemm dcols", "col2im"])
        check_equal(x.astype(np.float64), w.astype(np.float64), padding)
        rec = {wide: {k: [] for k in parts + ["total"]} for wide in (False, True)}
        for wide in (False, True):  # warm-up
            step(x, w, padding, first, wide, dict.fromkeys(parts, 0.0))
        for r in range(a.rounds):
            for wide in ((False, True) if r % 2 == 0 else (True, False)):
                t = dict.fromkeys(parts, 0.0)
                step(x, w, padding, first, wide, t)
                for k in parts:
                    rec[wide][k].append(t[k])
                rec[wide]["total"].append(sum(t.values()))
        for k in parts + ["total"]:
            s, wd = rec[False][k], rec[True][k]
            ratio = statistics.median(b / a_ for a_, b in zip(s, wd) if a_ > 0)
            print(f"| {name} | {k} | {1e3 * statistics.median(s):.1f} | {1e3 * statistics.median(wd):.1f} | "
                  f"{ratio:.2f} |")
    if limit is not None:
        limit.restore_original_limits()


if __name__ == "__main__":
    main()
