"""What the NumPy path's second thread costs: one chunked-convolution part of LeNet at batch 32 (its own 16
images, two chunks of 8, as ``_conv_functional`` cuts them for two threads) run alone, by two threads side by
side, and by two processes side by side; medians in µs.

    python bench/conv_side_by_side.py [--repeats 300]

Each part is the library's own NumPy-path loop (``_forward_chunks_python`` / ``_backward_chunks_python``) on
its own arrays, with NumPy's BLAS on one thread. "threads": both parts start together (a barrier) in two
threads of one process; "processes": the same in two forked processes. Both rows give the time from the
first start to the last end (``time.perf_counter`` is the system's monotonic clock on Linux, one for all
processes), the second part's wake after the barrier included. Were the cores the only thing the two shared, both
would be close to "alone"; the difference between them is what the GIL costs the two threads (each NumPy call
takes it back after its loop; a thread that finds it held sleeps, and on a VM whose idle vCPU halts, the wake
is tens of µs). See BENCHMARKS.md, "Convolutions, tenth session".
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # NOTE: before NumPy loads its BLAS; threadpoolctl too below
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gradbox.nn import _conv_functional as CF

# (name, C, H, W, out, k, pad, first layer): LeNet-5's two convolutions (bench/conv.py), 16 images a part
LAYERS = [("conv1", 1, 28, 28, 6, 5, 2, True), ("conv2", 6, 14, 14, 16, 5, 0, False)]
CHUNKS = [(0, 8), (8, 16)]


def part(layer, direction, seed):
    """A callable running one part (forward or backward) of ``layer`` on arrays of its own."""
    _, c, h, w, o, k, pad, first = layer
    rng = np.random.default_rng(seed)
    K = CF._NumpyKernels
    x = rng.random((16, c, h, w), dtype=np.float32)
    wt = rng.random((o, c * k * k), dtype=np.float32)
    b = rng.random(o, dtype=np.float32)
    oh = ow = h + 2 * pad - k + 1
    width = CF._chunk_width(K, x.shape, (k, k), (1, 1), (pad, pad), ow)
    buf = np.empty(CF._chunk_per_image(x.shape, (k, k), (pad, pad), o, oh, width) * 8, np.float32)
    if direction == "forward":
        out = np.empty((16, o, oh, ow), np.float32)
        return lambda: CF._forward_chunks_python(K, x, wt, b, (k, k), (1, 1), (pad, pad), oh, ow, width, out,
                                                 CHUNKS, buf)
    g = rng.random((16, o, oh, ow), dtype=np.float32)
    gx = np.zeros(x.shape, np.float32)
    need = (not first, True, True)
    return lambda: CF._backward_chunks_python(K, g, x, x.shape, wt, (k, k), (1, 1), (pad, pad), need, width, gx,
                                              CHUNKS, buf)


def alone(fn, repeats):
    for _ in range(20):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e6


def threads(f1, f2, repeats):
    barrier, spans = threading.Barrier(2), {}

    def run(fn, k):
        out = []
        for _ in range(repeats + 20):
            barrier.wait()
            t = time.perf_counter()
            fn()
            out.append((t, time.perf_counter()))
        spans[k] = out[20:]

    other = threading.Thread(target=run, args=(f2, 1))
    other.start()
    run(f1, 0)
    other.join()
    return statistics.median(max(a[1], b[1]) - min(a[0], b[0]) for a, b in zip(spans[0], spans[1])) * 1e6


def _child(layer, direction, seed, barrier, queue, repeats):
    _one_blas_thread()
    fn, spans = part(layer, direction, seed), []
    for _ in range(repeats + 20):
        barrier.wait()
        t = time.perf_counter()
        fn()
        spans.append((t, time.perf_counter()))
    queue.put((seed, spans[20:]))


def processes(layer, direction, repeats):
    ctx = mp.get_context("fork")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    kids = [ctx.Process(target=_child, args=(layer, direction, s, barrier, queue, repeats)) for s in (1, 2)]
    for p in kids:
        p.start()
    spans = dict(queue.get() for _ in kids)
    for p in kids:
        p.join()
    return statistics.median(max(a[1], b[1]) - min(a[0], b[0]) for a, b in zip(spans[1], spans[2])) * 1e6


def _one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # NOTE: then OPENBLAS_NUM_THREADS=1, set at the top, holds
        return
    threadpool_limits(1, user_api="blas")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=300)
    args = ap.parse_args(argv)
    _one_blas_thread()
    print("| part | alone | two threads side by side | two processes side by side |")
    print("|---|---|---|---|")
    for layer in LAYERS:
        for direction in ("forward", "backward"):
            a = alone(part(layer, direction, 1), args.repeats)
            t = threads(part(layer, direction, 1), part(layer, direction, 2), args.repeats)
            p = processes(layer, direction, args.repeats)
            print(f"| {layer[0]} {direction} | {a:.0f} | {t:.0f} ({t / a:.2f}x) | {p:.0f} ({p / a:.2f}x) |")


if __name__ == "__main__":
    main()
