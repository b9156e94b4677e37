"""Where a convolution step's time goes: each conv layer and pool of the bench/conv.py networks, forward
plus backward, under each unfolding (standard OH·OW rows or wide OH·Wp rows) and each kernel set (NumPy or
numba), interleaved round by round in one process; medians in ms.

    python bench/conv_parts.py [--rounds 15] [--threads 2]

Used to choose ``_conv_functional._WIDE_MIN_AREA`` (which unfolding each kernel set uses for stride 1) and the
weight-gradient GEMM's orientation (a second table), and to check the pooling kernels; the whole-step
comparison with PyTorch is bench/conv.py. Reports minima too: on a shared machine the least disturbed
repetition says more than a median.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gradbox import Tensor  # noqa: E402
from gradbox.nn import _conv_functional as CF  # noqa: E402

# (name, N, C, H, W, out, k, pad): the conv layers of bench/conv.py's workloads
CONVS = [("lenet128 conv1", 128, 1, 28, 28, 6, 5, 2), ("lenet128 conv2", 128, 6, 14, 14, 16, 5, 0),
         ("lenet32 conv2", 32, 6, 14, 14, 16, 5, 0),
         ("cifar64 conv1", 64, 3, 32, 32, 32, 3, 1), ("cifar64 conv2", 64, 32, 16, 16, 64, 3, 1)]
POOLS = [("lenet128 pool1", 128, 6, 28, 28), ("cifar64 pool1", 64, 32, 32, 32), ("cifar64 pool2", 64, 64, 16, 16)]


def conv_step(x, w, b, pad, first):
    X = Tensor(x, requires_grad=not first)
    W, B = Tensor(w, requires_grad=True), Tensor(b, requires_grad=True)
    out = CF.Conv2dFunction.apply(X, W, B, stride=(1, 1), padding=(pad, pad))
    out.backward(np.ones(out.shape, dtype=x.dtype))


def pool_step(x):
    X = Tensor(x, requires_grad=True)
    out = CF.max_pool2d(X, 2)
    out.backward(np.ones(out.shape, dtype=x.dtype))


def timed(fn, reps=3):
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps * 1e3


def dw_orientation(rounds):
    """The weight-gradient GEMM of each bench conv layer both ways round: dZ·colsᵀ against (cols·dZᵀ)ᵀ,
    interleaved; the minimum (least disturbed) and the paired median ratio."""
    rng = np.random.default_rng(0)
    shapes = {}
    for name, n, c, h, w, o, k, p in CONVS:
        oh, ow = h + 2 * p - k + 1, w + 2 * p - k + 1
        shapes[name] = (rng.random((c * k * k, n * oh * ow), dtype=np.float32),
                        rng.random((o, n * oh * ow), dtype=np.float32))
    times = {}
    for _ in range(rounds):
        for name, (cols, dz) in shapes.items():
            for way, fn in (("dZ·colsᵀ", lambda: dz.dot(cols.T)), ("(cols·dZᵀ)ᵀ", lambda: cols.dot(dz.T).T)):
                t0 = time.perf_counter()
                fn()
                times.setdefault((name, way), []).append(time.perf_counter() - t0)
    print("\n| layer: dW GEMM (cols rows × dZ rows) | dZ·colsᵀ (ms, min) | (cols·dZᵀ)ᵀ (ms, min) | paired ratio |")
    print("|---|---|---|---|")
    for name, (cols, dz) in shapes.items():
        a, b = np.array(times[(name, "dZ·colsᵀ")]), np.array(times[(name, "(cols·dZᵀ)ᵀ")])
        print(f"| {name} ({cols.shape[0]} × {dz.shape[0]}) | {a.min() * 1e3:.2f} | {b.min() * 1e3:.2f} | "
              f"{np.median(b / a):.2f} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args(argv)
    dw_orientation(2 * args.rounds)
    rng = np.random.default_rng(0)
    variants = [(fast, wide) for fast in (False, True) for wide in (False, True)]
    results = {}
    cases = []
    for name, n, c, h, w, o, k, p in CONVS:
        x = np.maximum(rng.standard_normal((n, c, h, w), dtype=np.float32), 0)
        wt = rng.standard_normal((o, c, k, k), dtype=np.float32)
        bt = rng.standard_normal(o, dtype=np.float32)
        cases.append((name, lambda x=x, wt=wt, bt=bt, p=p, first=(c in (1, 3)): conv_step(x, wt, bt, p, first)))
    for name, n, c, h, w in POOLS:
        x = np.maximum(rng.standard_normal((n, c, h, w), dtype=np.float32), 0)
        cases.append((name, lambda x=x: pool_step(x)))
    for r in range(args.rounds):
        for name, fn in cases:
            for fast, wide in variants[r % 4:] + variants[:r % 4]:
                if name.split()[1].startswith("pool") and wide:
                    continue
                CF.use_fast_kernels(fast)
                CF._WIDE_MIN_AREA["fast" if fast else "numpy"] = 1 if wide else None
                if r == 0:
                    fn()  # warm-up (compilation)
                results.setdefault((name, fast, wide), []).append(timed(fn))
    print("| layer (forward + backward) | NumPy standard | NumPy wide | numba standard | numba wide |")
    print("|---|---|---|---|---|")
    for name, _ in cases:
        row = [results.get((name, f, wd)) for f, wd in variants]
        print(f"| {name} | " + " | ".join("–" if v is None else f"{statistics.median(v):.2f}" for v in row) + " |")


if __name__ == "__main__":
    main()
