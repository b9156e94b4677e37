"""A linear layer's forward at two layouts: ``X·Wᵀ`` (NumPy's ``x.dot(w.T)``, then the bias) against ``W·Xᵀ``
with the bias added in the copy back to rows (what ``nn.functional.affine`` does for float32 at 2-64 rows into at
least 64 outputs); medians in µs, one process, interleaved.

    python bench/linear_layout.py [--threads 1]

The grid behind ``affine``'s rule (``_WXT_BATCH``, ``_WXT_OUT``): batches 1-1024, the bench MLP's, LeNet's and
the CIFAR-shaped net's dense layers, float32 and float64. BENCHMARKS.md, "Linear layers: W·Xᵀ at small batches".
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conv_side_by_side import alone

SHAPES = [(1, 784, 256), (8, 784, 256), (32, 784, 256), (32, 256, 128), (32, 128, 10), (32, 400, 120),
          (32, 120, 84), (32, 84, 10), (64, 784, 256), (64, 4096, 128), (128, 784, 256), (128, 400, 120),
          (512, 784, 256), (1024, 784, 256)]


def median_us(fn):
    """Median µs of ``fn()``, repeated for about 0.15 s (``conv_side_by_side.alone``)."""
    t = time.perf_counter()
    fn()
    return alone(fn, max(50, min(3000, int(0.15 / max(time.perf_counter() - t, 1e-7)))))


def layouts(x, w, b):
    """The two forwards of one layer, as callables."""
    zt = np.empty((w.shape[0], x.shape[0]), x.dtype)

    def plain():
        out = x.dot(w.T)
        out += b
        return out

    def wxt():
        np.dot(w, x.T, out=zt)
        out = np.empty((x.shape[0], w.shape[0]), x.dtype)
        np.add(zt.T, b, out=out)
        return out

    return plain, wxt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="NumPy's BLAS threads (threadpoolctl)")
    args = ap.parse_args(argv)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads, user_api="blas")
    except ImportError:
        print("threadpoolctl missing: NumPy's default BLAS threads", file=sys.stderr)
    rng = np.random.default_rng(0)
    print("| dtype | batch x in -> out | X·Wᵀ + b (µs) | W·Xᵀ, bias in the copy (µs) | speed-up |")
    print("|---|---|---|---|---|")
    for dtype in (np.float32, np.float64):
        for m, i, o in SHAPES:
            x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((m, i), (o, i), (o,)))
            plain, wxt = layouts(x, w, b)
            a, c = median_us(plain), median_us(wxt)
            print(f"| {np.dtype(dtype).name} | {m} x {i} -> {o} | {a:.1f} | {c:.1f} | {a / c:.2f}x |")


if __name__ == "__main__":
    main()
