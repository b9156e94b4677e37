"""Matrix products with a BLAS thread count chosen per product: small ones run on one thread.

``dot(a, b, out=None)`` is ``np.dot`` for the layers' GEMMs (``Conv2d``'s Z, dW and dcols, ``Linear``'s
three products and its bias sum). When the product is small (fewer than ``SMALL_FLOPS``) and skinny
(a side of at most ``SKINNY``) but large enough for OpenBLAS to split it, it runs with NumPy's BLAS
limited to one thread, and the limit is put back at once. So a small convolutional network (LeNet at
batch 32) runs on one BLAS thread, and networks with larger products (LeNet at batch 128, the
CIFAR-shaped net, the 784-256-128-10 MLP at batch 128) run as before. The values agree with ``np.dot``'s
to rounding: OpenBLAS blocks a product differently on one thread and on two, so float64 results can
differ in the last bit or two, as any NumPy product does between thread counts (tested against the
k·eps error bound). The choice depends on the shapes only, so a run repeats to the bit.

NOTE: why (BENCHMARKS.md, "Convolutions, third session"): after every product that OpenBLAS splits over
two threads its idle worker spins on the other core for about a tenth of a second, so in a training
step of small products it never sleeps, and on the 2-vCPU machine the single-threaded passes in between
(im2col, pooling, ReLU, the copies) ran up to 2x slower next to it, at the minutes when the host placed
the two vCPUs badly. LeNet at batch 32 then: 5.9 -> 3.2 ms a step, paired; the larger products keep both
threads.

The control needs ``threadpoolctl`` (part of the ``fast`` extra) and follows the ``fast`` switch
(``GRADBOX_FAST=0`` or ``gradbox.nn.functional.use_fast_kernels(False)`` turn it off with the compiled
kernels). Without it every product is a plain ``np.dot``. A limit the user set (``threadpool_limits(1)``)
is respected: a library already at one thread is left alone, and a product from a Python thread that
does not control OpenBLAS (threadpoolctl's rule) runs with whatever is set.
"""
from __future__ import annotations

import os

import numpy as np

from ._fast import FAST

#: Products below this many FLOPs (2·m·k·n) run on one BLAS thread.
#: NOTE: chosen by measurement (paired whole steps of bench/conv.py's networks against the previous code):
#: LeNet at batch 32 (every product 3-15 MFLOP) 1.0x on a good minute and 1.8x on a bad one; with the limit
#: at 64 MFLOP LeNet at batch 128 (conv products 30-61 MFLOP) lost 13% on a good minute, at 24 it keeps
#: both threads for those; the CIFAR-shaped net's conv products are 113-604 MFLOP
SMALL_FLOPS = 24e6
#: OpenBLAS runs a GEMM with m·k·n at most this on one thread anyway (interface/gemm.c: 65536 x
#: GEMM_MULTITHREAD_THRESHOLD 4), and a GEMV with k·n at most 2304 x 4 (interface/gemv.c): no switch needed,
#: which keeps single-sample inference free of the two calls
SERIAL_GEMM = 65536 * 4
_OPENBLAS_SERIAL = {2: SERIAL_GEMM, 1: 2304 * 4}

#: ... and with a side of at most this many rows or columns: a skinny product (an unfolded convolution's).
#: NOTE: a square-ish one such as the 784-256-128-10 MLP's 128 x 256 by 256 x 128 keeps both threads: next
#: to a large product in the same step (its first layer's), whose split keeps OpenBLAS's worker spinning
#: anyway, one thread only lost the second (that step 1.11x as long with every product under 24 MFLOP
#: on one thread)
SKINNY = 32
_STATE = {"controller": None}


def _numpy_blas():
    """threadpoolctl's controller of the OpenBLAS NumPy calls, or False (no threadpoolctl, another BLAS,
    or no way to tell which of several OpenBLAS libraries is NumPy's)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # NOTE: an optional extra
        return False
    libs = [c for c in ThreadpoolController().lib_controllers if c.internal_api == "openblas"]
    # NOTE: SciPy (which numba imports) brings an OpenBLAS of its own; NumPy's wheel keeps its copy in
    # numpy.libs (or inside the package), and a NumPy linked to a system BLAS is the only one loaded
    numpy_dir = os.path.dirname(os.path.abspath(np.__file__))
    own = [c for c in libs if os.path.dirname(os.path.abspath(c.filepath)) in (numpy_dir, numpy_dir + ".libs")]
    libs = own or libs
    return libs[0] if len(libs) == 1 else False


def _controller():
    if not FAST["wanted"]:
        return None
    ctl = _STATE["controller"]
    if ctl is None:
        ctl = _STATE["controller"] = _numpy_blas()
    return ctl or None


def dot(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.dot(a, b, out=out)``; on one BLAS thread when ``a`` (1-D or 2-D) times the 2-D ``b`` is small."""
    work = a.size * b.shape[-1]  # m·k·n (k·n for a vector)
    serial = _OPENBLAS_SERIAL.get(a.ndim) if b.ndim == 2 else None  # None: not a GEMM or GEMV
    if serial is not None and serial < work and 2.0 * work < SMALL_FLOPS and min(a.shape + b.shape) <= SKINNY:
        ctl = _controller()
        if ctl is not None:
            threads = ctl.get_num_threads()
            if threads > 1:
                ctl.set_num_threads(1)
                try:
                    return a.dot(b) if out is None else np.dot(a, b, out=out)
                finally:
                    ctl.set_num_threads(threads)
    # NOTE: ndarray.dot without out: the same BLAS call as np.dot with less dispatch (about 1 µs)
    return a.dot(b) if out is None else np.dot(a, b, out=out)
