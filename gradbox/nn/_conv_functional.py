"""Boxes for convolutional networks: ``conv2d``, ``max_pool2d``, ``avg_pool2d``, ``batch_norm``.

Images are NCHW (batch, channels, height, width); conv weights are (out, in, kh, kw), as in
PyTorch. Each op is one ``Function`` whose forward keeps the notes' cache and whose backward
returns one gradient per input.

The convolution is three matrix products around an unfolding (DLfS ch. 7's im2col):

- ``cols = im2col(x)`` stacks every kh x kw window of the padded input as one column:
  shape (C·kh·kw, N·OH·OW), built from a strided *view* of the input and one copy;
- forward ``Z = W·cols + b`` with W reshaped to (out, C·kh·kw): one GEMM;
- backward ``dW = dZ·colsᵀ``, ``db = Σ dZ``, ``dcols = Wᵀ·dZ`` and ``dX = col2im(dcols)``:
  one GEMM each, col2im being a kh·kw loop of strided adds (each input pixel receives the
  gradient of every window it was part of).

Compiled kernels (``gradbox._conv_kernels``, numba) replace the unfolding, col2im and the
pooling loops when numba is importable; they are loaded on the first call, never at
``import gradbox``. ``GRADBOX_FAST=0`` or ``use_fast_kernels(False)`` keeps the NumPy path.

A batch whose columns exceed about 1 MB is convolved chunk by chunk of images, the chunks shared among as
many threads as NumPy's BLAS may use (``_conv_forward_chunks``), with the compiled kernels or NumPy's own
unfolding (``_NumpyKernels``, which unfolds a stride-1 chunk over wide rows, ``_im2col_wide``): the same
products on smaller column blocks, summed over chunks in a fixed order, so the results equal the
whole-batch products to rounding and a run repeats to the bit (tested).
"""
from __future__ import annotations

import math
import numbers
import threading

import numpy as np

from .. import _blas
from .._blas import dot as _dot
from .._fast import FAST as _FAST
from .._heap import keep_heap as _keep_heap
from .._validation import Constraint, check
from ..function import Function, is_grad_enabled
from ..ops import relu_backward, relu_forward
from ..tensor import _FLOATS, Tensor

__all__ = [
    "conv2d", "max_pool2d", "avg_pool2d", "batch_norm", "im2col", "col2im", "conv_output_size",
    "use_fast_kernels",
]

# --- the optional compiled kernels ---------------------------------------------------------


def use_fast_kernels(enabled: bool = True) -> bool:
    """Turn the ``fast`` extra's compiled kernels on or off; returns the previous setting.

    They are the numba kernels for convolution and pooling (and ReLU's backward once loaded). The default
    is on when numba is installed, unless the environment variable ``GRADBOX_FAST=0``. Both paths give the
    same results to float32 rounding. The BLAS thread choice (``gradbox._blas``) and the chunked
    convolution do not depend on it.

    >>> from gradbox.nn import functional as F
    >>> previous = F.use_fast_kernels(False)
    >>> _ = F.use_fast_kernels(previous)
    """
    previous = _FAST["wanted"]
    _FAST["wanted"] = bool(enabled)
    return previous


_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _kernels(dtype):
    """The numba kernel module for arrays of ``dtype``, or None (switched off, numba missing, or a dtype
    the kernels are not compiled for, such as float16). Imported on first use."""
    if not _FAST["wanted"] or dtype not in _KERNEL_DTYPES:
        return None
    mod = _FAST["mod"]
    if mod is None:
        try:
            from .. import _conv_kernels as mod
        except ImportError:  # NOTE: numba is an optional extra; the NumPy path is complete
            mod = False
        _FAST["mod"] = mod
    return mod or None


# --- scratch arrays kept between steps --------------------------------------------------------
class _Scratch(threading.local):
    """A short free list of large scratch arrays (the unfolded columns, dZ, dcols), per thread.

    NOTE: a fresh 20 MB array is paid for on first touch: a page fault and the kernel zeroing every
    page. glibc hands the memory of a training step back to the OS when the step frees it, so every
    step paid it again for every unfolding (measured: the CIFAR net's step 1.24-1.28x faster with
    glibc's trimming switched off). Arrays nobody references any more (a box's columns after its
    backward, dcols after col2im) come back here and serve the next step. At most ``SLOTS`` arrays
    are kept, the newest; smaller ones than ``MIN_BYTES`` are left to the allocator.
    """

    SLOTS = 6
    MIN_BYTES = 1 << 20

    def __init__(self):
        self.free = []

    def take(self, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        for i, a in enumerate(self.free):
            if a.shape == shape and a.dtype == dtype:
                return self.free.pop(i)
        a = np.empty(shape, dtype=dtype)
        if a.nbytes >= self.MIN_BYTES:
            # NOTE: allocate, free, allocate again. glibc serves a request this large with a fresh mmap
            # and, when such a block is freed, raises its mmap threshold to the block's size and the heap's
            # trim threshold to twice that (mallopt(3), "dynamic mmap threshold"). Arrays kept here are
            # never freed, so without this the thresholds stayed near their 128 KB start and glibc gave
            # back to the OS, at the end of every step, the heap the step's other temporaries had grown
            # (the outputs, ReLU masks, pooling arrays): 777-4,333 minor page faults per step in a fresh
            # process (LeNet at batch 32 and 128, the CIFAR-shaped net), 0 with the free. The array kept
            # then comes from the heap. Elsewhere (another allocator) it costs one allocation per shape.
            del a
            a = np.empty(shape, dtype=dtype)
        return a

    def take_flat(self, n, dtype) -> np.ndarray:
        """A 1-D array of at least ``n`` elements (up to twice that): one kept array serves chunks of
        several shapes (the chunked convolution's buffers), so that a step's few fill no more slots."""
        dtype = np.dtype(dtype)
        for i, a in enumerate(self.free):
            if a.ndim == 1 and a.dtype == dtype and n <= a.size <= 2 * n:
                return self.free.pop(i)
        return self.take((n,), dtype)

    def give(self, a) -> None:
        """Keep ``a`` for a later ``take``: only for an array nothing else references."""
        if a is not None and a.nbytes >= self.MIN_BYTES and a.base is None:
            self.free.append(a)
            del self.free[:-self.SLOTS]


_SCRATCH = _Scratch()
def _new_array(shape, dtype, zero=False) -> np.ndarray:
    """``np.empty`` (or ``np.zeros``) for a box's output, after ``_keep_heap`` for its size."""
    dtype = np.dtype(dtype)
    # NOTE: math.prod, not np.prod: NumPy's reduction of a tuple took 9-12 µs here inside a training step
    # (3 µs alone; the step's kernels leave its code paths cold), three times a LeNet step
    _keep_heap(math.prod(shape) * dtype.itemsize)
    a = np.empty(shape, dtype=dtype)
    if zero:
        a.fill(0)
    return a


# --- arguments ------------------------------------------------------------------------------
def _int_or_pair(minimum: int) -> Constraint:
    """A ``_validation`` constraint: an int >= minimum, or a pair (tuple or JSON list) of them."""
    def test(v):
        items = tuple(v) if isinstance(v, (tuple, list)) else (v,)
        return len(items) in ((1,) if not isinstance(v, (tuple, list)) else (2,)) and all(
            isinstance(i, numbers.Integral) and not isinstance(i, bool) and i >= minimum for i in items)
    kind = "positive" if minimum > 0 else "non-negative"
    return Constraint(f"a {kind} int or a pair of them", test)


_INT_OR_PAIR = {1: _int_or_pair(1), 0: _int_or_pair(0)}


def _pair(value, name: str, who: str, minimum: int) -> tuple:
    """An int or a pair of ints, each >= minimum, as a pair (the check layers' configs use too)."""
    check(who, name, value, _INT_OR_PAIR[minimum])
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    return int(items[0]), int(items[1])


#: ``padding`` of a convolution: an int, a pair, or one of PyTorch's names
_CONV_PADDING = Constraint("a non-negative int, a pair of them, 'same' or 'valid'",
                           lambda v: v in ("same", "valid") if isinstance(v, str) else _INT_OR_PAIR[0].test(v))


def _conv_padding(padding, kernel, stride, who: str) -> tuple:
    """A convolution's padding as a pair: ints as given; ``"valid"`` none; ``"same"`` as much as keeps the
    output the input's size, as PyTorch's (stride 1 only; odd kernel sizes only: an even one would need
    more padding on one side than the other, which gradbox's convolution does not take)."""
    check(who, "padding", padding, _CONV_PADDING)
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0)
        if tuple(stride) != (1, 1):
            raise ValueError(f"{who}(padding='same'): expected stride 1 (the output of a strided convolution "
                             f"cannot keep the input's size), received stride {tuple(stride)}")
        if kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
            raise ValueError(f"{who}(padding='same'): expected odd kernel sizes (an even one needs uneven "
                             f"padding, which gradbox does not support), received kernel_size {tuple(kernel)}")
        return ((kernel[0] - 1) // 2, (kernel[1] - 1) // 2)
    return _pair(padding, "padding", who, 0)


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """⌊(n + 2p - f)/s⌋ + 1: the notes' output size of a convolution or pooling window."""
    return (size + 2 * padding - kernel) // stride + 1


def _check_image(x, who: str, channels: int | None = None) -> Tensor:
    if not isinstance(x, Tensor):
        x = Tensor(x)
    c = "C" if channels is None else str(channels)
    if x.ndim != 4 or x.shape[0] == 0 or (channels is not None and x.shape[1] != channels):
        raise ValueError(f"{who}: expected input of shape (N, {c}, H, W), received {x.shape}")
    if x.data.dtype not in _FLOATS:
        raise TypeError(f"{who}: expected a floating-point input, received dtype {x.dtype}")
    return x


def _check_window(x_shape, kernel, padding, who):
    h, w = x_shape[2] + 2 * padding[0], x_shape[3] + 2 * padding[1]
    if kernel[0] > h or kernel[1] > w:
        raise ValueError(
            f"{who}: expected a kernel no larger than the padded input ({h}, {w}), received kernel {kernel} "
            f"for input {tuple(x_shape)} with padding {padding}"
        )


# --- im2col / col2im ----------------------------------------------------------------------------
def _pad(x: np.ndarray, padding: tuple, value=0) -> np.ndarray:
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    n, c, h, w = x.shape
    out = np.empty((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    _pad_into(out, x, padding, value)
    return out


def _pad_into(out, x, padding, value=0):
    """``x`` into the middle of ``out`` (N, C, H + 2ph, W + 2pw), ``value`` on the border."""
    ph, pw = padding
    h, w = x.shape[2], x.shape[3]
    # NOTE: np.pad is a Python-level function (about 30 µs of overhead). The whole of ``out`` is filled,
    # then the middle copied: two calls, not the border's four and the middle. Each call lets go of the GIL
    # and takes it back, and on the NumPy path the other chunk thread waits for it at every one.
    if ph or pw:
        out.fill(value)
    out[:, :, ph:h + ph, pw:w + pw] = x


def _strided(a: np.ndarray, shape, strides, writeable=False) -> np.ndarray:
    """``as_strided(a, shape, strides)`` (read-only unless ``writeable``), built by the ndarray constructor.

    NOTE: ``np.lib.stride_tricks.as_strided`` is Python-level (3.2 µs a call against 0.4): on the NumPy
    path two threads run the chunk loops and every µs of Python holds the GIL the other waits for."""
    if not a.flags.c_contiguous:
        return np.lib.stride_tricks.as_strided(a, shape, strides, writeable=writeable)
    view = np.ndarray(shape, a.dtype, a, 0, strides)
    if not writeable:
        view.flags.writeable = False
    return view


def _windows(xp: np.ndarray, kernel: tuple, stride: tuple) -> np.ndarray:
    """The strided view (N, C, OH, OW, kh, kw) of every window of a padded input: no copy."""
    n, c, h, w = xp.shape
    kh, kw = kernel
    sh, sw = stride
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    s = xp.strides
    return _strided(xp, (n, c, oh, ow, kh, kw), (s[0], s[1], s[2] * sh, s[3] * sw, s[2], s[3]))


def im2col(x: np.ndarray, kernel, stride=1, padding=0) -> np.ndarray:
    """Unfold an NCHW array into columns (C·kh·kw, N·OH·OW): one column per window position.

    Row ``(c, i, j)`` holds pixel (i, j) of channel c of every window, so ``W.reshape(out, -1) @ cols``
    is the convolution. Built from a strided view of the padded input and one copy.

    >>> import numpy as np
    >>> im2col(np.arange(16.0).reshape(1, 1, 4, 4), 2, stride=2)[:, 0]
    array([0., 1., 4., 5.])
    """
    kernel, stride, padding = _pair(kernel, "kernel", "im2col", 1), _pair(stride, "stride", "im2col", 1), \
        _pair(padding, "padding", "im2col", 0)
    return _im2col(np.asarray(x), kernel, stride, padding)


def _im2col(x, kernel, stride, padding):
    return (_kernels(x.dtype) or _NumpyKernels).im2col(x, kernel, stride, padding)


def col2im(cols: np.ndarray, x_shape, kernel, stride=1, padding=0) -> np.ndarray:
    """The adjoint of ``im2col``: add every column back onto the window it came from.

    A pixel that lies in several windows receives the sum of their entries (the gradient of
    every window it was part of); padding is cut off at the end.

    >>> import numpy as np
    >>> col2im(np.ones((4, 4)), (1, 1, 3, 3), 2)[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    kernel, stride, padding = _pair(kernel, "kernel", "col2im", 1), _pair(stride, "stride", "col2im", 1), \
        _pair(padding, "padding", "col2im", 0)
    return _col2im(np.asarray(cols), tuple(x_shape), kernel, stride, padding)


def _col2im(cols, x_shape, kernel, stride, padding):
    return (_kernels(cols.dtype) or _NumpyKernels).col2im(cols, x_shape, kernel, stride, padding)


class _NumpyKernels:
    """The NumPy path's unfolding and its adjoint, with the compiled kernels' signatures (the chunked
    convolution calls either). Safe on any thread, and they run in parallel there: NumPy releases the
    GIL for its copies and adds."""

    @staticmethod
    def im2col(x, kernel, stride, padding, cols=None, work=None):
        """cols (C·kh·kw, N·OH·OW) of ``x``, into ``cols`` when given; the padded input into ``work``
        when given (at least N·C·Hp·Wp elements)."""
        n, c, h, w = x.shape
        (ph, pw) = padding
        if work is not None and (ph or pw):
            xp = work[:n * c * (h + 2 * ph) * (w + 2 * pw)].reshape(n, c, h + 2 * ph, w + 2 * pw)
            _pad_into(xp, x, padding)
        else:
            xp = _pad(x, padding)
        win = _windows(xp, kernel, stride)
        _, _, oh, ow, kh, kw = win.shape
        if cols is None:
            cols = _SCRATCH.take((c * kh * kw, n * oh * ow), x.dtype)
        # NOTE: one copy, in the order the GEMM reads: (c, i, j) rows, (n, y, x) columns
        np.copyto(cols.reshape(c, kh, kw, n, oh, ow), win.transpose(1, 4, 5, 0, 2, 3))
        return cols

    @staticmethod
    def col2im(cols, x_shape, kernel, stride, padding, dx=None, work=None):
        """A new (N, C, H, W) array, or added into ``dx`` when given; the sums kept in ``work`` when
        given (at least N·C·Hp·Wp elements)."""
        n, c, h, w = x_shape
        (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
        oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
        d = cols.reshape(c, kh, kw, n, oh, ow)
        # NOTE: accumulate in (C, N, H, W), the columns' own order, and transpose once at the end:
        # adding the transposed (N, C, ...) views directly was 8-35 ms at LeNet/CIFAR sizes, this 2-4x less.
        shape = (c, n, h + 2 * ph, w + 2 * pw)
        if work is not None:
            dxp = work[:c * n * shape[2] * shape[3]].reshape(shape)
            dxp.fill(0)
        else:
            dxp = np.zeros(shape, dtype=cols.dtype)
        # NOTE: a kh·kw loop of strided adds, each over the whole batch: window offset (i, j)
        # touches pixels i, i+s, i+2s, ... of every window at once.
        for i in range(kh):
            for j in range(kw):
                dxp[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += d[:, i, j]
        sums = dxp[:, :, ph:ph + h, pw:pw + w].transpose(1, 0, 2, 3)
        if dx is None:
            return np.ascontiguousarray(sums)
        dx += sums
        return dx


# --- the wide unfolding (stride 1) ---------------------------------------------------------------
# NOTE: with stride 1, window offset (i, j) of output pixel (y, x) is padded pixel (y + i, x + j), at
# flat position y·Wp + x + (i·Wp + j) of its image. Computing every output row at the full padded
# width Wp (OW real columns and kw - 1 "wide" ones at the end) makes each row of cols ONE contiguous
# run of the flat padded image: im2col is kh·kw·C long copies, col2im kh·kw long adds, instead of
# copies and adds over (OH, OW) blocks whose 8-to-28-element inner rows NumPy loops over one by one
# (measured at the CIFAR net's second conv: im2col 2.9 -> 2.0 ms, col2im 4.9 -> 3.1 ms). The price is
# Wp/OW times the GEMM work (18/16 there), so it pays only for larger kernels (``_WIDE_MIN_AREA``).
# The wide columns read the next row's first pixels: their Z is never used (cut before the output),
# and their dZ is set to 0, so they add nothing to dW or dX.
def _wide_view(flat, shape, kernel, padded):
    """The (C, kh, kw, N, OH·Wp) strided view of a flat padded NCHW buffer: row (c, i, j), image n is
    the contiguous run starting at pixel (i, j) of channel c of image n."""
    n, c = shape[0], shape[1]
    hp, wp = padded
    oh = hp - kernel[0] + 1
    it = flat.itemsize
    # NOTE: read-only: the rows overlap (each pixel sits in kh·kw of them), so a write through it would land
    # in several places
    return _strided(flat, (c, kernel[0], kernel[1], n, oh * wp), (hp * wp * it, wp * it, it, c * hp * wp * it, it))


def _padded_flat(x, kernel, padding, flat=None):
    """x zero-padded into a flat buffer (``flat`` when given) with kw - 1 spare zeros at the end (the last
    wide columns read them), and the padded (Hp, Wp)."""
    n, c, h, w = x.shape
    (ph, pw), kw = padding, kernel[1]
    hp, wp = h + 2 * ph, w + 2 * pw
    size = n * c * hp * wp
    flat = np.empty(size + kw - 1, dtype=x.dtype) if flat is None else flat[:size + kw - 1]
    flat[size:] = 0
    _pad_into(flat[:size].reshape(n, c, hp, wp), x, padding)
    return flat, (hp, wp)


def _im2col_wide(x, kernel, padding, cols=None, flat=None):
    """cols (C·kh·kw, N·OH·Wp) of a stride-1 convolution, wide rows; and the padded (Hp, Wp). Into
    ``cols`` when given, the padded input into ``flat`` when given (``_padded_flat``)."""
    flat, padded = _padded_flat(x, kernel, padding, flat)
    view = _wide_view(flat, x.shape, kernel, padded)
    c, kh, kw, n, l = view.shape
    if cols is None:
        cols = _SCRATCH.take((c * kh * kw, n * l), x.dtype)
    np.copyto(cols.reshape(view.shape), view)
    return cols, padded


# --- convolution -------------------------------------------------------------------------------
#: The smallest kernel area kh·kw at which a stride-1 convolution unfolds wide, per kernel set (None: never).
#: NOTE: chosen by measurement (bench/conv_parts.py, the bench networks' layers): on the NumPy path the
#: wide unfolding won for LeNet's second 5x5 layer (25 short-row adds of col2im become long ones) and
#: lost for the 3x3 CIFAR layers (9 of them, against Wp/OW times the GEMM work) and for first layers
#: (no col2im to speed up); the compiled kernels' own im2col/col2im beat it at every layer measured.
_WIDE_MIN_AREA = {"numpy": 16, "fast": None}


def _use_wide(dtype, kernel, stride) -> bool:
    """Whether this convolution unfolds wide (see ``_im2col_wide``); stride 1 only."""
    least = _WIDE_MIN_AREA["fast" if _kernels(dtype) is not None else "numpy"]
    return stride == (1, 1) and least is not None and kernel[0] * kernel[1] >= least


# --- the chunked convolution ------------------------------------------------------------------------------
# NOTE: a convolution over a batch whose columns exceed _CHUNK_BYTES runs chunk
# by chunk of images: each chunk's columns are unfolded, multiplied and (backward) folded back while they
# sit in a core's cache, and the chunks are shared among the threads NumPy's BLAS may use (each product
# then on one BLAS thread). The whole-batch columns (10-19 MB at LeNet b128 / the CIFAR-shaped net's b64)
# went to memory and back two or three times, and between the GEMMs every pass ran on one core. The
# backward unfolds each chunk again instead of keeping the columns: the cache is the input, not columns
# kh·kw times its size. Measured on the bench layers (BENCHMARKS.md, "Convolutions, fourth session").
# The chunks' products run on one BLAS thread each, and so do gradbox's next products (_blas.hold_serial):
# a split product would leave OpenBLAS's worker spinning on the core the second chunk thread needs.
# Training steps, fresh processes, against the whole-batch boxes: LeNet b128 1.30x, the CIFAR-shaped net
# 1.15x, LeNet b32 1.08x (BENCHMARKS.md, "Convolutions, fifth session"), with the compiled kernels; on
# the NumPy path (its copies and adds release the GIL as the kernels do) 1.25x, 1.33x and 1.01x
# ("Convolutions, sixth session").

#: Bytes of columns in one chunk (about a core's L2).
_CHUNK_BYTES = 1 << 20
#: Up to this many bytes of columns a thread, each thread's share of the batch is one chunk (above
#: ``_CHUNK_BYTES`` too), per kernel set.
#: NOTE: LeNet's first conv at batch 32 (2.5 MB of columns, 25 rows) ran as four chunks of 8 images, two a
#: thread; as one of 16 a thread its step is 1.03x faster on the NumPy path (each chunk's NumPy calls take the
#: GIL back from the other thread), but 0.97x with the compiled kernels (their chunks cost no GIL; the larger
#: one leaves the cache); 1.5 MB chunks for every batch cost the CIFAR-shaped net about 1% (BENCHMARKS.md,
#: "Convolutions, twelfth session")
_SHARE_BYTES = {"numpy": 3 << 19, "fast": 0}
#: Up to this many rows of columns (C·kh·kw), dW is summed from one product per image.
#: NOTE: measured on chunks, one BLAS thread: 0.34 -> 0.17 ms at the CIFAR net's first conv (27 rows),
#: 0.130 -> 0.042 ms at LeNet's (25); slower at 150 and 288 rows (0.107 -> 0.204, 0.405 -> 0.539 ms)
_BATCHED_DW_ROWS = 64


def _chunk_groups(n: int, image_bytes: int, share_bytes: int = 0) -> list | None:
    """Chunks of images [a, b), in one group per thread, or None: the batch's columns fit one chunk.

    Equal chunks (to one image), at least one per thread, one per thread where each thread's share takes at
    most ``share_bytes`` (``_SHARE_BYTES``); each group a run of consecutive chunks, so the
    sums over chunks are taken in one order for a given batch shape and thread count: runs repeat.
    When it returns chunks it also prepares the step for them: glibc keeps the heap (``_keep_heap``) and,
    with more than one thread, gradbox's next products are held on one BLAS thread (``_blas.hold_serial``)."""
    if n < 2 or n * image_bytes <= _CHUNK_BYTES:
        return None
    # NOTE: the heap a step grows is kept as if the whole batch's columns had been allocated, as the
    # unchunked path does (without it the chunked LeNet step at batch 32 faulted 459 pages a step in again
    # when a worker thread's free trimmed the heap)
    _keep_heap(n * image_bytes)
    threads = max(1, min(_blas.threads(), n))
    if threads > 1:
        _blas.hold_serial()
    k = min(n, max(threads, -(-n * image_bytes // _CHUNK_BYTES)))
    if n * image_bytes <= threads * share_bytes:
        k = threads
    k = min(n, -(-k // threads) * threads)  # NOTE: a multiple of the threads where it can: equal groups
    cuts = [i * n // k for i in range(k + 1)]
    chunks = list(zip(cuts[:-1], cuts[1:]))
    t = min(threads, k)
    return [chunks[i * k // t:(i + 1) * k // t] for i in range(t)]


def _group_buffers(groups, per_image, dtype) -> list:
    """One scratch array per group of chunks, ``per_image`` elements per image of its largest chunk.

    NOTE: taken here, on the calling thread, and given back there: glibc serves a worker thread from an
    arena of its own, whose large blocks it maps and unmaps anew (2,539 minor page faults per step of the
    CIFAR-shaped net when the workers took their own buffers, 0 like this)."""
    return [_SCRATCH.take_flat(per_image * max(e - a for a, e in chunks), dtype) for chunks in groups]


#: The NumPy path unfolds a stride-1 chunk over wide rows (``_im2col_wide``) from this many rows of
#: columns (C·kh·kw) up.
#: NOTE: measured on chunks, one BLAS thread, ms, forward (unfold + product + output): LeNet's second conv
#: (150 rows, 16 images) 0.204 -> 0.163, the CIFAR-shaped net's (288 rows, 4 images) 0.584 -> 0.521; first
#: layers lose (25 rows: 0.123 -> 0.134, 27 rows: 0.219 -> 0.237): with few rows the copy is cheap and
#: the Wp/OW times larger product is what counts (BENCHMARKS.md, "Convolutions, sixth session")
_WIDE_CHUNK_ROWS = {"numpy": 64, "fast": None}


def _chunk_width(kernels, x_shape, kernel, stride, padding, ow) -> int:
    """Columns per output row of a chunk's columns: Wp when the NumPy path unfolds it wide, else OW."""
    rows = x_shape[1] * kernel[0] * kernel[1]
    least = _WIDE_CHUNK_ROWS["numpy" if kernels is _NumpyKernels else "fast"]
    if stride == (1, 1) and least is not None and rows >= least:
        return x_shape[3] + 2 * padding[1]
    return ow


def _chunk_per_image(x_shape, kernel, padding, o, oh, width) -> int:
    """Buffer elements per image of a chunk: columns and Z (or dZ), then the padded input, kw spare elements
    per channel (the wide rows read kw - 1 past a padded channel); with wide rows (``width`` = Wp) at least
    what ``_fold_wide`` needs for one image (``_fold_work``: at least what it needs per image for more)."""
    c, hp, wp = x_shape[1], x_shape[2] + 2 * padding[0], x_shape[3] + 2 * padding[1]
    rows = c * kernel[0] * kernel[1]
    work = c * (hp * wp + kernel[1])
    if width == wp and kernel[1] > 1:
        work = max(work, _fold_work(1, rows, kernel, oh, hp, wp))
    return (rows + o) * oh * width + work


def _fold_lead(kernel, wp) -> int:
    """Zeros before the first image's rows of dX's product in ``_fold_wide``: the largest window offset,
    (kh - 1)·Wp + kw - 1 (what the offsets read before the product)."""
    return (kernel[0] - 1) * wp + kernel[1] - 1


def _fold_work(nb, rows, kernel, oh, hp, wp) -> int:
    """Elements of ``work`` that ``_fold_wide`` uses for ``nb`` images: dX's product, ``rows`` rows of
    ``_fold_lead`` zeros and then one padded plane per image; then the sums, one padded plane per image and
    channel."""
    plane = hp * wp
    return rows * (_fold_lead(kernel, wp) + nb * plane) + rows // (kernel[0] * kernel[1]) * nb * plane


def _argmax_dtype(kernel) -> type:
    """The dtype of a max pool's argmax, the window offset i·kw + j: uint8 while it fits (8x less to write
    than an int64 index), for every path that keeps one."""
    return np.uint8 if kernel[0] * kernel[1] < 256 else np.intp


def _pool_arrays(n, o, oh, ow, pool, dtype):
    """The pooled output (N, out, POH, POW) of tiling ``pool`` windows over (OH, OW) and its argmax."""
    out = _new_array((n, o, oh // pool[0], ow // pool[1]), dtype)
    return out, np.empty(out.shape, dtype=_argmax_dtype(pool))


def _planes(a):
    """A 4-D array as its planes (N·C, H, W): a view."""
    return a.reshape(a.shape[0] * a.shape[1], a.shape[2], a.shape[3])


def _conv_forward_chunks(kernels, x, w, b, stride, padding, oh, ow, groups, pool=None):
    """``Z = W·cols + b`` chunk by chunk, into a new (N, out, OH, OW) array. ``pool`` (kh, kw), with compiled
    parts only (``Conv2dMaxPoolFunction``): Z max-pooled over tiling windows chunk by chunk as well, on the
    same threads, while each chunk's Z is in cache; then the pooled output and its argmax."""
    n, c, h, wd = x.shape
    o, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    rows, L = c * kh * kw, oh * ow
    w2 = w.reshape(o, rows)
    z = _new_array((n, o, oh, ow), x.dtype)
    if pool is not None:
        pooled, arg = _pool_arrays(n, o, oh, ow, pool, x.dtype)
    width = _chunk_width(kernels, x.shape, (kh, kw), stride, padding, ow)
    gemm = _compiled_parts(kernels, x.dtype)
    if pool is not None and not gemm:
        raise RuntimeError("_conv_forward_chunks(pool=...): only the compiled parts pool")
    if gemm:
        # NOTE: each thread's chunks in one compiled call (kernels._conv_forward_part), the same products
        w2, bias = np.ascontiguousarray(w2), (np.empty(0, x.dtype) if b is None else np.ascontiguousarray(b))
        if pool is None:
            pk, zp, pout, parg = (0, 0), *_NO_POOL(x.dtype)
        else:
            pk, zp, pout, parg = pool, _planes(z), _planes(pooled), _planes(arg)

        def run(part, flags, post):
            chunks, buf = part
            kernels._conv_forward_part(gemm, x, w2, bias, z.reshape(n, o, L), buf, chunks, kh, kw, *stride,
                                       *padding, oh, ow, *pk, zp, pout, parg, flags, post)

    else:
        def run(part):
            chunks, buf = part
            _forward_chunks_python(kernels, x, w2, b, (kh, kw), stride, padding, oh, ow, width, z, chunks, buf)

    _run_groups(run, groups, _chunk_per_image(x.shape, (kh, kw), padding, o, oh, width), x.dtype, gemm)
    return z if pool is None else (pooled, arg)


def _NO_POOL(dtype):
    """The compiled parts' pooling arguments when there is no pooling: empty planes of the right types."""
    return np.empty((0, 0, 0), dtype), np.empty((0, 0, 0), dtype), np.empty((0, 0, 0), np.uint8)


def _run_groups(run, groups, per_image, dtype, compiled) -> list:
    """``run`` for each group of chunks with its scratch buffer (``_group_buffers``), on gradbox's threads
    (``_blas.run_parts``); the buffers go back to the scratch list after. ``compiled``: ``run`` is the
    compiled parts' (``run(part, flags, post)``, the chunks as an int64 (k, 2) array)."""
    bufs = _group_buffers(groups, per_image, dtype)
    parts = list(zip((np.array(chunks, dtype=np.int64) for chunks in groups) if compiled else groups, bufs))
    try:
        return _blas.run_parts(run, parts, posting=bool(compiled))
    finally:
        for buf in bufs:
            _SCRATCH.give(buf)


def _compiled_parts(kernels, dtype) -> int:
    """The BLAS GEMM's address when a chunked convolution's parts run as compiled calls (the compiled
    kernels, and NumPy's OpenBLAS known: ``_blas.gemm_address``), else 0: the chunks loop in Python."""
    return _blas.gemm_address(dtype) if kernels is not _NumpyKernels else 0


def _forward_chunks_python(kernels, x, w2, b, kernel, stride, padding, oh, ow, width, out, chunks, buf):
    """One thread's chunks of ``_conv_forward_chunks`` from Python: the NumPy path (its unfolding, wide rows
    for stride 1), or the compiled kernels where the GEMM's address is unknown."""
    o, rows = w2.shape
    kh, kw = kernel
    L = oh * ow
    for a, e in chunks:
        nb = e - a
        m = nb * oh * width
        cols, work = buf[:rows * m].reshape(rows, m), buf[(rows + o) * m:]
        if width != ow:
            # NOTE: wide rows: Z over OH x Wp positions into the buffer, its OW real columns copied out
            _im2col_wide(x[a:e], (kh, kw), padding, cols, work)
            zw = buf[rows * m:(rows + o) * m].reshape(nb, o, oh, width)
            np.matmul(w2, cols.reshape(rows, nb, oh * width).transpose(1, 0, 2), out=zw.reshape(nb, o, -1))
            if b is None:
                np.copyto(out[a:e], zw[..., :ow])
            else:
                np.add(zw[..., :ow], b[:, None, None], out=out[a:e])
        else:
            kernels.im2col(x[a:e], (kh, kw), stride, padding, cols, work)
            # NOTE: one product per image, each written straight into its (out, OH·OW) block of the NCHW
            # output: no transposing copy, and for a first layer's few rows 2x faster than one product
            # over the chunk's columns (CIFAR conv1 chunk 0.34 -> 0.17 ms, LeNet conv1 0.082 -> 0.039 ms;
            # OpenBLAS packs the long skinny operand badly); the same for the others (BENCHMARKS.md,
            # "Convolutions, fifth session")
            z = out[a:e].reshape(nb, o, L)
            np.matmul(w2, cols.reshape(rows, nb, L).transpose(1, 0, 2), out=z)
            if b is not None:
                z += b[:, None]


def _fold_wide(w2, dz, kernel, padding, dx, work):
    """Add dX of a stride-1 chunk into ``dx`` (nb, C, H, W) from dZ over wide rows (out, nb·OH·Wp).

    ``dcols = Wᵀ·dZ`` image by image, written into ``work`` as ``rows`` rows that hold every image: each
    image's OH·Wp products at the start of a padded plane (Hp·Wp elements; the last (kh - 1)·Wp zeros), the
    planes one after the other, after ``_fold_lead`` zeros. Window offset (i, j) of a flat padded channel is
    the run that starts at i·Wp + j, so pixel t of the channel is the sum over (i, j) of row (c, i, j) at
    t - i·Wp - j; and since the images' planes follow each other in the rows as in a (C, N, Hp, Wp) array,
    that holds for t over the whole chunk: one strided view of the rows (the offsets as two axes, strides
    kw·T - Wp and T - 1 for rows of T elements) and one sum over those two axes, (C, nb·Hp·Wp). What an offset
    reads before an image's products is the previous plane's zero rows (or the lead), or a wide column of the
    row above: zeros, as dZ is 0 there.
    NOTE: the sum's inner loops run over the whole chunk (nb·Hp·Wp elements), not one plane: measured on a
    chunk, one thread, LeNet's second conv (16 images) 240 -> 200 µs, the strided sum alone 126 -> 49 µs
    (BENCHMARKS.md, "Convolutions, twelfth session"); 25 adds of shifted runs took 207 (the seventh)."""
    nb, c, h, w = dx.shape
    (kh, kw), (ph, pw) = kernel, padding
    hp, wp = h + 2 * ph, w + 2 * pw
    oh = hp - kh + 1
    lw, rows, plane = oh * wp, w2.shape[1], hp * wp
    lead = _fold_lead(kernel, wp)
    T = lead + nb * plane
    base = work[:rows * T].reshape(rows, T)
    base[:, :lead] = 0
    body = base[:, lead:].reshape(rows, nb, plane)
    body[:, :, lw:] = 0
    np.matmul(w2.T, dz.reshape(w2.shape[0], nb, lw).transpose(1, 0, 2), out=body[:, :, :lw].transpose(1, 0, 2))
    it = base.itemsize
    # NOTE: built on ``work`` from the first product on (contiguous, so the fast ``_strided``): row r, offset
    # (i, j) of it starts r·T - i·Wp - j past there, inside row r's lead
    view = _strided(work[lead:rows * T], (c, kh, kw, nb * plane),
                    (kh * kw * T * it, (kw * T - wp) * it, (T - 1) * it, it))
    sums = work[rows * T:rows * T + c * nb * plane].reshape(c, nb * plane)
    np.sum(view, axis=(1, 2), out=sums)
    dx += sums.reshape(c, nb, hp, wp)[:, :, ph:ph + h, pw:pw + w].transpose(1, 0, 2, 3)


def _conv_backward_chunks(kernels, g, x, x_shape, w, stride, padding, need, groups, pool=None):
    """dX, dW, db chunk by chunk: each chunk unfolded again; dW and db summed over chunks in order.
    ``pool`` ((kh, kw), argmax, Z's shape), with compiled parts only: the forward pooled Z
    (``_conv_forward_chunks``) and ``g`` is the pooled gradient; each chunk's dZ is made from it first, on
    the chunk's thread."""
    n, c, h, wd = x_shape
    g = np.ascontiguousarray(g)
    if pool is not None:
        pk, arg, z_shape = pool
        gp, g = g, _new_array(z_shape, g.dtype)  # NOTE: dZ, every element written chunk by chunk
    _, o, oh, ow = g.shape
    kh, kw = w.shape[2], w.shape[3]
    rows, L = c * kh * kw, oh * ow
    w2 = w.reshape(o, rows)
    need_x, need_w, need_b = need[0], need[1], len(need) > 2 and need[2]
    gx = _new_array(x_shape, g.dtype, zero=True) if need_x else None
    if len(groups) > 1:
        _blas.hold_serial()
    width = _chunk_width(kernels, x_shape, (kh, kw), stride, padding, ow)
    gemm = _compiled_parts(kernels, g.dtype)
    if pool is not None and not gemm:
        raise RuntimeError("_conv_backward_chunks(pool=...): only the compiled parts pool")
    if gemm:
        # NOTE: each thread's chunks in one compiled call (kernels._conv_backward_part), the same products
        w2 = np.ascontiguousarray(w2)
        none = np.empty(0, g.dtype)
        xs = x if x is not None else none.reshape(0, c, h, wd)  # NOTE: no input kept: no dW to unfold it for

        # NOTE: dW as the Python loop takes it: one product per image for few rows, else one per chunk
        # as (cols·dZᵀ)ᵀ (transposed back below)
        per_image = rows <= _BATCHED_DW_ROWS
        if pool is None:
            pkt, gz, gpp, parg = (0, 0), *_NO_POOL(g.dtype)
        else:
            pkt, gz, gpp, parg = pk, _planes(g), _planes(gp), _planes(arg)

        def run(part, flags, post):
            chunks, buf = part
            gw = np.zeros((o, rows) if per_image else (rows, o), dtype=g.dtype) if need_w else none.reshape(0, 0)
            gb = np.zeros(o, dtype=g.dtype) if need_b else none
            kernels._conv_backward_part(gemm, g.reshape(n, o, L), xs, w2, gw, gb,
                                        gx if need_x else none.reshape(0, 0, 0, 0), buf, chunks, kh, kw,
                                        *stride, *padding, oh, ow, per_image, *pkt, gz, gpp, parg, flags, post)
            return (gw if per_image else gw.T) if need_w else None, gb if need_b else None

    else:
        def run(part):
            chunks, buf = part
            return _backward_chunks_python(kernels, g, x, x_shape, w2, (kh, kw), stride, padding, need, width,
                                           gx, chunks, buf)

    parts = _run_groups(run, groups, _chunk_per_image(x_shape, (kh, kw), padding, o, oh, width), g.dtype, gemm)
    gw = gb = None
    if need_w:
        gw = parts[0][0]
        for part in parts[1:]:
            gw += part[0]
        gw = gw.reshape(w.shape)
    if need_b:
        gb = parts[0][1]
        for part in parts[1:]:
            gb += part[1]
    return gx, gw, gb


def _backward_chunks_python(kernels, g, x, x_shape, w2, kernel, stride, padding, need, width, gx, chunks, buf,
                            unfolded=False):
    """One thread's chunks of ``_conv_backward_chunks`` from Python (as ``_forward_chunks_python``):
    returns its sums of dW and db (None where not needed); dX goes into ``gx``. ``unfolded``: ``buf`` already
    holds the columns of the thread's one chunk (the forward's, kept: ``Conv2dStackFunction``)."""
    _, o, oh, ow = g.shape
    c, h, wd = x_shape[1:]
    rows = w2.shape[1]
    kh, kw = kernel
    L = oh * ow
    need_x, need_w, need_b = need[0], need[1], len(need) > 2 and need[2]
    gw = np.zeros((o, rows), dtype=g.dtype) if need_w else None
    gb = np.zeros(o, dtype=g.dtype) if need_b else None
    for a, e in chunks:
        nb = e - a
        m = nb * oh * width
        g3 = g[a:e].reshape(nb, o, L)
        cols, dz, work = buf[:rows * m].reshape(rows, m), buf[rows * m:(rows + o) * m].reshape(o, m), \
            buf[(rows + o) * m:]
        if width != ow:
            # NOTE: wide rows (as the forward's): dZ (out, nb, OH, Wp) with 0 in the wide columns serves
            # dW (one product over the chunk) and dX (one per image, then _fold_wide)
            dz4 = dz.reshape(o, nb, oh, width)
            dz4[..., :ow] = g[a:e].transpose(1, 0, 2, 3)
            dz4[..., ow:] = 0
            if need_w:
                if not unfolded:
                    _im2col_wide(x[a:e], (kh, kw), padding, cols, work)
                gw += cols.dot(dz.T).T if rows >= o else dz.dot(cols.T)
            if need_b:
                gb += g3.sum(axis=(0, 2))
            if need_x:
                _fold_wide(w2, dz, (kh, kw), padding, gx[a:e], work)
            continue
        if need_w:
            if not unfolded:
                kernels.im2col(x[a:e], (kh, kw), stride, padding, cols, work)
            if rows <= _BATCHED_DW_ROWS:
                gw += np.matmul(g3, cols.reshape(rows, nb, L).transpose(1, 2, 0)).sum(axis=0)
            else:
                np.copyto(dz.reshape(o, nb, L), g3.transpose(1, 0, 2))
                # NOTE: the orientation rule of the unchunked backward (Conv2dFunction.backward)
                gw += cols.dot(dz.T).T if rows >= o else dz.dot(cols.T)
        if need_b:
            gb += g3.sum(axis=(0, 2))
        if need_x:
            # NOTE: one product per image, read straight from the NCHW gradient (as the forward's)
            np.matmul(w2.T, g3, out=cols.reshape(rows, nb, L).transpose(1, 0, 2))
            kernels.col2im(cols, (nb, c, h, wd), (kh, kw), stride, padding, gx[a:e], work)
    return gw, gb


class Conv2dFunction(Function):
    """Z = W * X + b (cross-correlation, as PyTorch), computed as ``Z = W·cols + b``.

    Forward: ``cols = im2col(X)`` (C·kh·kw, N·OH·OW), ``Z = W·cols + b`` reshaped to (N, out, OH, OW).
    The cache is ``cols`` and W.

    Backward, with dZ the upstream gradient reshaped to (out, N·OH·OW):
    ``dW = dZ·colsᵀ``, ``db = Σ dZ`` over batch and positions, ``dcols = Wᵀ·dZ`` and
    ``dX = col2im(dcols)``. dX is skipped when X needs no gradient (the first layer).

    With a batch whose columns exceed about 1 MB, the same products run
    chunk by chunk of images on gradbox's threads (``_conv_forward_chunks``); the cache is then X
    itself, unfolded again chunk by chunk in the backward. ``pool``, ``relu``: see ``Conv2dMaxPoolFunction``.
    """

    returns_fresh_grads = True

    def forward(self, x, w, b=None, stride=(1, 1), padding=(0, 0), pool=None, relu=False):
        out = self._forward(x, w, b, stride, padding, pool)
        self.relu = relu
        if relu:  # NOTE: the ReLU box's own arithmetic, in place on this box's fresh output
            self.out = out = relu_forward(out, out)
        return out

    def _forward(self, x, w, b, stride, padding, pool):
        o, c, kh, kw = w.shape
        n, _, h, wd = x.shape
        self.geometry = (x.shape, (kh, kw), stride, padding)
        oh, ow = conv_output_size(h, kh, stride[0], padding[0]), conv_output_size(wd, kw, stride[1], padding[1])
        self.pool, self.z_shape, self.fused = pool, (n, o, oh, ow), False
        kernels = _kernels(x.dtype) or _NumpyKernels
        image_bytes = c * kh * kw * oh * ow * x.dtype.itemsize  # one image's columns
        self.chunks = _chunk_groups(n, image_bytes, _SHARE_BYTES["numpy" if kernels is _NumpyKernels else "fast"])
        if self.chunks is None:
            _keep_heap(n * image_bytes)  # NOTE: the whole batch's columns, as _chunk_groups does for chunks
        if self.chunks is not None:
            x = np.ascontiguousarray(x)
            self.cols, self.w, self.wide = None, w, False
            # NOTE: the backward unfolds the input again, chunk by chunk: the input is the cache
            self.x = x if len(self.needs_input_grad) > 1 and self.needs_input_grad[1] and is_grad_enabled() else None
            self.fused = pool is not None and bool(_compiled_parts(kernels, x.dtype))
            out = _conv_forward_chunks(kernels, x, w, b, stride, padding, oh, ow, self.chunks,
                                       pool if self.fused else None)
            if self.fused:
                out, self.argmax = out
                return out
            return self._pool_forward(out)
        # NOTE: the wide unfolding for stride 1 (see _im2col_wide), rows Wp wide instead of OW; only
        # where a dX (col2im) will follow, the part it speeds up most (not for the first layer)
        need_dx = bool(self.needs_input_grad) and self.needs_input_grad[0] and is_grad_enabled()
        self.wide = need_dx and _use_wide(x.dtype, (kh, kw), stride)
        if self.wide:
            cols, (_, width) = _im2col_wide(x, (kh, kw), padding)
        else:
            cols, width = _im2col(x, (kh, kw), stride, padding), ow
        self.cols, self.w = cols, w
        z = _dot(w.reshape(o, -1), cols, out=_SCRATCH.take((o, cols.shape[1]), x.dtype))  # one GEMM
        if b is not None:
            z += b[:, None]
        if not (len(self.needs_input_grad) > 1 and self.needs_input_grad[1] and is_grad_enabled()):
            _SCRATCH.give(cols)  # NOTE: no backward will read the columns (inference, or W frozen)
            self.cols = None
        # NOTE: (out, N, OH, OW) -> NCHW, one copy of the output (the wide columns left behind), always
        # into a new array: z goes back to the scratch list
        out = np.empty((n, o, oh, ow), dtype=z.dtype)
        np.copyto(out, z.reshape(o, n, oh, width)[..., :ow].transpose(1, 0, 2, 3))
        _SCRATCH.give(z)
        return self._pool_forward(out)

    def _pool_forward(self, z):
        """``z`` when there is no pooling; else the pooling box's forward of it (``Conv2dMaxPoolFunction``
        where the pooling does not run inside the chunks' parts)."""
        if self.pool is None:
            return z
        self.pooling = MaxPool2dFunction()
        return self.pooling.forward(z, self.pool, self.pool, (0, 0))

    def release(self):
        _SCRATCH.give(self.__dict__.get("cols"))  # NOTE: the backward has used them; nothing else holds them
        super().release()

    def backward(self, g):
        need = self.needs_input_grad
        x_shape, kernel, stride, padding = self.geometry
        if self.relu:
            g = relu_backward(self.out, g)
        if self.pool is not None and not self.fused:
            g = self.pooling.backward(g)[0]
        if self.chunks is not None:
            kernels = _kernels(g.dtype) or _NumpyKernels
            pool = (self.pool, self.argmax, self.z_shape) if self.fused else None
            return _conv_backward_chunks(kernels, g, self.x, x_shape, self.w, stride, padding, need, self.chunks,
                                         pool)
        n, o, oh, ow = g.shape
        width = x_shape[3] + 2 * padding[1] if self.wide else ow
        dz = _SCRATCH.take((o, n * oh * width), g.dtype)  # (out, N·OH·width), always a copy of g
        if self.wide:  # dZ of the wide columns is 0: they add nothing to dW, db or dX
            d4 = dz.reshape(o, n, oh, width)
            d4[..., ow:] = 0
            d4[..., :ow] = g.transpose(1, 0, 2, 3)
        else:
            np.copyto(dz.reshape(o, n, oh, ow), g.transpose(1, 0, 2, 3))
        gw = None
        if need[1]:
            # NOTE: OpenBLAS runs this short-and-wide product 1.3-2x faster as (cols·dZᵀ)ᵀ when cols has
            # more rows than dZ (paired timings of the bench layers; the reverse for the CIFAR net's first
            # conv, 27 rows against 32)
            cols = self.cols
            gw = (_dot(cols, dz.T).T if cols.shape[0] >= o else _dot(dz, cols.T)).reshape(self.w.shape)
        gb = dz.sum(axis=1) if len(need) > 2 and need[2] else None
        gx = None
        if need[0]:
            w2 = self.w.reshape(o, -1)
            if self.wide:
                # NOTE: the chunks' fold (_fold_wide) for the whole batch: dX's product image by image into
                # zero-padded rows, then one strided sum over the window offsets (not kh·kw adds)
                work = _SCRATCH.take_flat(_fold_work(n, w2.shape[1], kernel, oh, x_shape[2] + 2 * padding[0], width),
                                          g.dtype)
                gx = _new_array(x_shape, g.dtype, zero=True)
                _fold_wide(w2, dz, kernel, padding, gx, work)
                _SCRATCH.give(work)
            else:
                dcols = _dot(w2.T, dz, out=_SCRATCH.take((w2.shape[1], dz.shape[1]), dz.dtype))
                gx = _col2im(dcols, x_shape, kernel, stride, padding)
                _SCRATCH.give(dcols)
        _SCRATCH.give(dz)
        return gx, gw, gb


class Conv2dMaxPoolFunction(Conv2dFunction):
    """``Conv2dFunction`` then ``MaxPool2dFunction`` over tiling windows (stride = kernel, no padding), as one
    box: ``A = max over each window of (W * X + b)``, called with ``pool=(kh, kw)``; with ``relu=True`` the
    ReLU after the pooling too, ``A = max(0, ...)`` (its backward first: dA·(A > 0)). ``nn.Sequential`` runs a
    ``Conv2d`` directly followed by such a ``MaxPool2d`` (and a ``ReLU``) this way (its ``fuse_layers``).

    The values and gradients are the two boxes', bit for bit: the same products and the same pooling, in
    the same order. What changes is where the pooling runs: with the compiled kernels and a batch large
    enough to be chunked, on each chunk's Z right after its products, inside the chunk's compiled part, while
    it is in cache, and its backward (dZ from the pooled gradient and the argmax) at the start of each
    chunk's backward; the cache then holds the argmax, not Z. Otherwise: the convolution, then the pooling
    box, one after the other. The ReLU runs in place on the pooled output: no box, no new array.

    NOTE: not on the NumPy path: its pooling's dozen NumPy calls per chunk, run inside the chunks' parts on
    two threads, made LeNet's step at batch 32 0.92x (the threads' GIL; BENCHMARKS.md, "Convolutions,
    eleventh session"); with the compiled parts 1.10x.
    """


def _stack_plan(x_shape, dtype, blocks) -> list | None:
    """Each block's chunk groups and output size (groups, OH, OW) for ``Conv2dStackFunction``, or None where the
    blocks' parts would not merge: the compiled kernels (their parts pool already and their hand-offs spin),
    a block not chunked on two threads or more, or blocks whose threads' image ranges differ.
    ``blocks``: (weight shape, stride, padding, pool kernel) of each block, whose pooling tiles its Z."""
    dtype = np.dtype(dtype)
    if _kernels(dtype) is not None:
        return None
    n, shape, plan, ranges = x_shape[0], x_shape, [], None
    for (o, c, kh, kw), stride, padding, pool in blocks:
        oh = conv_output_size(shape[2], kh, stride[0], padding[0])
        ow = conv_output_size(shape[3], kw, stride[1], padding[1])
        groups = _chunk_groups(n, c * kh * kw * oh * ow * dtype.itemsize, _SHARE_BYTES["numpy"])
        if groups is None or len(groups) < 2:
            return None
        own = [(chunks[0][0], chunks[-1][1]) for chunks in groups]
        if ranges is not None and own != ranges:
            return None
        ranges = own
        plan.append((groups, oh, ow))
        shape = (n, o, oh // pool[0], ow // pool[1])
    return plan


def _give_all(bufs) -> None:
    """Every group buffer of every block back to the scratch list (``_group_buffers``, per block)."""
    for buf in bufs:
        for b in buf:
            _SCRATCH.give(b)


class _StackBlock:
    """One block of a ``Conv2dStackFunction``: its geometry, chunks, weights and cache."""

    __slots__ = ("w", "w2", "b", "stride", "padding", "kernel", "pool", "relu", "groups", "oh", "ow", "width",
                 "per_image", "x", "x_shape", "out", "arg", "need")


class Conv2dStackFunction(Function):
    """Blocks of ``Conv2dMaxPoolFunction`` one after the other (each a convolution, max pooling over tiling
    windows and a ReLU or not) as one box, on the NumPy path with a batch chunked on gradbox's threads:
    ``A[l] = max over each window of (W[l] * A[l-1] + b[l])`` (then ``max(0, ·)``) for l = 1, 2, ...; called
    with ``blocks``, (has bias, stride, padding, pool kernel, relu) for each, and ``plan`` (``_stack_plan``).
    The inputs are A[0] and each block's W (and b).

    Each thread takes its own images through every block, forward and backward, in one part (its chunks of a
    block's products, then the pooling and the ReLU of its images, then the next block): one hand-off to the
    other thread for the forward and one for the backward, instead of one per block each way, and the
    pooling on both threads. The backward of block l (from the last): the ReLU's dA·(A > 0), the pooling's
    scatter of dA to each window's argmax (dZ), then the chunks' dW, db and dX (``_backward_chunks_python``);
    dX is block l-1's dA. dW and db are each thread's sums added in thread order, as the blocks' own boxes
    add them: the values and gradients are theirs, bit for bit (tested).
    The cache: each block's input (the previous block's output), the argmax and the output.

    NOTE: why: a hand-off wakes the other vCPU and the GIL's waiters, 60-110 µs each way in LeNet's step at
    batch 32 on the 2-vCPU benchmark VM (thirteenth session); LeNet's two blocks forward at batch 32, one
    part a thread against a part a block and the pooling after: 1.06-1.52 against 1.20-1.93 ms (in-process)
    (BENCHMARKS.md, "Convolutions, thirteenth session").
    """

    returns_fresh_grads = True

    def forward(self, x, *params, blocks, plan):
        kernels, grad = _NumpyKernels, is_grad_enabled()
        need = self.needs_input_grad
        n, dtype = x.shape[0], x.dtype
        self.ranges = [(chunks[0][0], chunks[-1][1]) for chunks in plan[0][0]]
        layers, k, upstream = [], 0, bool(need and need[0])
        xs = np.ascontiguousarray(x)
        for (has_bias, stride, padding, pool, relu), (groups, oh, ow) in zip(blocks, plan):
            L = _StackBlock()
            L.w, L.b = params[k], params[k + 1] if has_bias else None
            flags = need[1 + k:3 + k] if has_bias else need[1 + k:2 + k]
            k += 2 if has_bias else 1
            o, c, kh, kw = L.w.shape
            L.w2, L.kernel, L.stride, L.padding, L.pool, L.relu = L.w.reshape(o, c * kh * kw), (kh, kw), stride, \
                padding, pool, relu
            L.groups, L.oh, L.ow = groups, oh, ow
            L.width = _chunk_width(kernels, xs.shape, (kh, kw), stride, padding, ow)
            L.per_image = _chunk_per_image(xs.shape, (kh, kw), padding, o, oh, L.width)
            # NOTE: a block's dX is needed where the stack's input or an earlier block's parameter needs a gradient
            L.need = (upstream,) + tuple(bool(f) for f in flags)
            upstream = upstream or any(flags)
            L.x, L.x_shape = xs, xs.shape
            L.out, L.arg = _pool_arrays(n, o, oh, ow, pool, dtype)
            layers.append(L)
            xs = L.out
        zs = [_new_array((n, L.w.shape[0], L.oh, L.ow), dtype) for L in layers]
        bufs = [_group_buffers(L.groups, L.per_image, dtype) for L in layers]

        def run(i):
            a, e = self.ranges[i]
            for L, z, buf in zip(layers, zs, bufs):
                _forward_chunks_python(kernels, L.x, L.w2, L.b, L.kernel, L.stride, L.padding, L.oh, L.ow, L.width,
                                       z, L.groups[i], buf[i])
                _max_pool_planes(_planes(z[a:e])[:, None], L.pool, L.pool, True, _planes(L.out[a:e]),
                                 _planes(L.arg[a:e]))
                if L.relu:
                    relu_forward(L.out[a:e], L.out[a:e])

        keep = False
        try:
            _blas.run_parts(run, list(range(len(self.ranges))))
            keep = grad and True in need and all(len(chunks) == 1 for L in layers for chunks in L.groups)
        finally:
            if not keep:
                _give_all(bufs)
        if grad and True in need:
            for L in layers:
                if not L.need[1]:
                    L.x = None  # NOTE: the input is kept to unfold it again for dW only
            self.layers = layers
            if keep:
                self.bufs = bufs
        return layers[-1].out

    def release(self):
        _give_all(self.__dict__.get("bufs", ()))  # NOTE: the kept columns; nothing else holds them now
        super().release()

    def backward(self, g):
        kernels, layers = _NumpyKernels, self.layers
        dtype = g.dtype
        g = np.ascontiguousarray(g)
        dzs = [_new_array((g.shape[0], L.w.shape[0], L.oh, L.ow), dtype) for L in layers]
        gxs = [_new_array(L.x_shape, dtype) if L.need[0] else None for L in layers]
        _blas.hold_serial()
        kept = self.__dict__.get("bufs")
        bufs = kept or [_group_buffers(L.groups, L.per_image, dtype) for L in layers]
        # NOTE: a block's kept columns serve its dW where this backward leaves them as they are (a second
        # backward reads them again): over wide rows dX's product goes elsewhere, and a first layer has none
        unfolded = [bool(kept) and (L.width != L.ow or not L.need[0]) for L in layers]

        def run(i):
            a, e = self.ranges[i]
            sums, ga = [(None, None)] * len(layers), g[a:e]
            for j in range(len(layers) - 1, -1, -1):
                if ga is None:  # NOTE: nothing before this block needs a gradient
                    break
                L, dz, gx = layers[j], dzs[j], gxs[j]
                if L.relu:
                    ga = relu_backward(L.out[a:e], ga)
                _max_pool_tiles_backward(_planes(ga), _planes(L.arg[a:e]), L.pool, _planes(dz[a:e]))
                if gx is not None:
                    gx[a:e] = 0  # NOTE: the chunks add their dX into it
                # NOTE: L.need is (dX, dW) or (dX, dW, db), as the block has a bias
                sums[j] = _backward_chunks_python(kernels, dz, L.x, L.x_shape, L.w2, L.kernel, L.stride, L.padding,
                                                  L.need, L.width, gx, L.groups[i], bufs[j][i], unfolded[j])
                ga = gx[a:e] if gx is not None else None
            return sums

        try:
            parts = _blas.run_parts(run, list(range(len(self.ranges))))
        finally:
            if not kept:
                _give_all(bufs)
        grads = [gxs[0]]
        for j, L in enumerate(layers):
            gw, gb = parts[0][j]
            for part in parts[1:]:  # NOTE: in thread order, as _conv_backward_chunks adds them
                if gw is not None:
                    gw += part[j][0]
                if gb is not None:
                    gb += part[j][1]
            grads.append(None if gw is None else gw.reshape(L.w.shape))
            if L.b is not None:
                grads.append(gb)
        return tuple(grads)


def conv2d(x, weight, bias=None, stride=1, padding=0) -> Tensor:
    """2-D convolution (cross-correlation) of an NCHW batch, as ``torch.nn.functional.conv2d``.

    ``padding``: an int, a pair, ``"valid"`` (none) or ``"same"`` (stride 1 and odd kernel sizes: the output
    keeps the input's height and width).

    Shape
    -----
    - x: (N, C, H, W); weight: (out, C, kh, kw); bias: (out,)
    - Output: (N, out, OH, OW), OH = ⌊(H + 2p - kh)/s⌋ + 1

    Examples
    --------
    >>> import gradbox as gb, numpy as np
    >>> x = gb.Tensor(np.ones((1, 1, 3, 3)))
    >>> gb.nn.functional.conv2d(x, gb.Tensor(np.ones((1, 1, 2, 2)))).data[0, 0]
    array([[4., 4.],
           [4., 4.]])
    """
    who = "conv2d"
    weight = weight if isinstance(weight, Tensor) else Tensor(weight)
    if weight.ndim != 4:
        raise ValueError(f"{who}: expected weight of shape (out, in, kh, kw), received {weight.shape}")
    x = _check_image(x, who, weight.shape[1])
    stride = _pair(stride, "stride", who, 1)
    padding = _conv_padding(padding, weight.shape[2:], stride, who)
    _check_window(x.shape, weight.shape[2:], padding, who)
    if x.dtype != weight.dtype:
        raise TypeError(f"{who}: expected input of dtype {weight.dtype}, received {x.dtype}")
    inputs = (x, weight)
    if bias is not None:
        bias = bias if isinstance(bias, Tensor) else Tensor(bias, dtype=weight.dtype)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"{who}: expected bias of shape ({weight.shape[0]},), received {bias.shape}")
        inputs = (x, weight, bias)
    return Conv2dFunction.apply(*inputs, stride=stride, padding=padding)


# --- pooling -------------------------------------------------------------------------------------
#: The NumPy path's max pool copies a part's window offsets out as contiguous planes first (tiling windows)
#: up to this many bytes of input a part.
#: NOTE: measured alone, one thread, the 2x2 forward: (32, 6, 28, 28) 178 -> 121 µs, (128, 6, 28, 28)
#: 623 -> 444, (64, 64, 16, 16) 1,331 -> 964, but (64, 32, 32, 32), 8.4 MB, 2.8 -> 4.3 ms
_POOL_COPY_BYTES = 3 << 20


def _tiles(kernel, stride, padding) -> bool:
    """Whether pooling windows tile the input (stride = kernel, no padding): each pixel in at most one."""
    return tuple(stride) == tuple(kernel) and not any(padding)


def _pool_geometry(kernel_size, stride, padding, who):
    """Checked (kernel, stride, padding) pairs of a pooling window; stride defaults to the kernel."""
    kernel = _pair(kernel_size, "kernel_size", who, 1)
    stride = kernel if stride is None else _pair(stride, "stride", who, 1)
    padding = _pair(padding, "padding", who, 0)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{who}(padding): expected at most half the kernel size {kernel}, received {padding}")
    return kernel, stride, padding


def _pool_args(x, kernel_size, stride, padding, who):
    x = _check_image(x, who)
    kernel, stride, padding = _pool_geometry(kernel_size, stride, padding, who)
    _check_window(x.shape, kernel, padding, who)
    return x, kernel, stride, padding


def _max_pool_planes(planes, kernel, stride, copy, o, r):
    """The NumPy path's max pool of ``planes`` (P, 1, Hp, Wp), padded, C-contiguous, into ``o`` and its argmax
    (the window offset i·kw + j) into ``r`` (both (P, OH, OW)); ``copy``: the windows tile the input."""
    kh, kw = kernel
    # NOTE: np.maximum over the kh·kw strided slices, not win.max(axis=(3, 4)): the reduction
    # over two short inner axes of a strided view is about 25x slower.
    win = _windows(planes, kernel, stride)[:, 0]  # (planes, OH, OW, kh, kw)
    copied = copy and win.nbytes <= _POOL_COPY_BYTES
    if copied:
        # NOTE: tiling windows: the kh·kw offsets copied out as contiguous planes first (one copy), so
        # that the loop below runs on contiguous arrays (NumPy's SIMD loops) rather than strided
        # views (about 0.5 ns an element against 0.1); the same values and argmax
        offsets = np.empty((kh, kw) + win.shape[:3], dtype=win.dtype)
        np.copyto(offsets.transpose(2, 3, 4, 0, 1), win)
        win = offsets.transpose(2, 3, 4, 0, 1)
    better, step = np.empty(o.shape, dtype=bool), np.empty(r.shape, dtype=r.dtype)
    if copied and kh * kw > 1 and r.dtype.itemsize == 1:
        # NOTE: offsets 0 and 1 first, straight into o and r (the comparison's booleans are the argmax so
        # far, 0 or 1): four passes fewer than from o = offset 0, r = 0, the same values and argmax. On the
        # copied (contiguous) offsets only: LeNet's pools at b32 120 -> 115 and 71 -> 68 µs; over strided
        # views, where it reads offset 0 twice, 6-9% slower (BENCHMARKS.md, "Convolutions, twelfth session")
        s0 = win[..., 0, 0]
        np.greater(win[..., 1 // kw, 1 % kw], s0, out=r.view(np.bool_))
        np.maximum(s0, win[..., 1 // kw, 1 % kw], out=o)
        first = 2
    else:
        np.copyto(o, win[..., 0, 0])
        r.fill(0)
        first = 1
    for k in range(first, kh * kw):
        s = win[..., k // kw, k % kw]
        np.greater(s, o, out=better)  # NOTE: strictly greater: the first maximum wins ties, as PyTorch
        np.maximum(o, s, out=o)
        # NOTE: arg = max(arg, better·k): k exceeds every earlier offset, so this is "k where better"
        # in two passes, arithmetic rather than np.copyto(arg, k, where=better) or np.where: a masked
        # copy branches on every element, and a ReLU'd input makes the branch a coin toss (measured:
        # 2.3 ms against 0.05 ms per offset for a (64, 32, 16, 16) output); the three passes before
        # (arg += better·(k - arg)) took 2.72 ms for (64, 32, 32, 32), these two 2.10
        np.multiply(better, r.dtype.type(k), out=step)
        np.maximum(r, step, out=r)


def _max_pool_tiles_backward(g, r, kernel, d):
    """The NumPy path's max pool backward for tiling windows: ``d`` (P, H, W), every element written, gets
    each window's gradient (``g``, (P, OH, OW)) at its argmax ``r`` and 0 elsewhere.

    NOTE: g·(arg == k), a multiplication by the mask, not np.where(arg == k, g, 0): the masked select branches
    per element (about 5x slower on a ReLU'd input)."""
    kh, kw = kernel
    p, oh, ow = g.shape
    h, w = d.shape[1], d.shape[2]
    st = d.strides  # NOTE: a view, never reshape: a reshape of the cut (odd-sized) dx would copy
    tiles = _strided(d, (p, oh, kh, ow, kw), (st[0], st[1] * kh, st[1], st[2] * kw, st[2]), writeable=True)
    mask = np.empty(r.shape, dtype=bool)
    for k in range(kh * kw):
        np.equal(r, k, out=mask)
        np.multiply(g, mask, out=tiles[:, :, k // kw, :, k % kw])
    if oh * kh < h or ow * kw < w:  # rows or columns no window reaches (odd sizes)
        d[:, oh * kh:] = 0
        d[:, :, ow * kw:] = 0


class MaxPool2dFunction(Function):
    """A = max over each window. The cache is the argmax: which of the kh·kw offsets won.

    Backward scatters dA to the winning input of each window (the course's mask): every other
    input of the window gets 0; an input that wins several overlapping windows gets their sum.
    Ties go to the first maximum in row-major order, as in PyTorch.
    """

    returns_fresh_grads = True

    def forward(self, x, kernel, stride, padding):
        self.geometry = (x.shape, kernel, stride, padding)
        # NOTE: the backward follows the forward's path: the two store the argmax differently
        self.fast = fast = _kernels(x.dtype)
        if fast is not None:
            out, self.argmax = fast.max_pool(x, kernel, stride, padding)
            return out
        xp = np.ascontiguousarray(_pad(x, padding, -np.inf))
        n, c = xp.shape[0], xp.shape[1]
        (kh, kw), (sh, sw) = kernel, stride
        oh, ow = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
        out = _new_array((n, c, oh, ow), x.dtype)
        arg = np.empty(out.shape, dtype=_argmax_dtype(kernel))
        planes = xp.reshape(n * c, 1, xp.shape[2], xp.shape[3])
        outs, args = out.reshape(n * c, oh, ow), arg.reshape(n * c, oh, ow)

        copy = _tiles(kernel, stride, padding)
        # planes [a, b): a large batch's share among gradbox's threads (_blas.run_pass)
        _blas.run_pass(lambda a, b: _max_pool_planes(planes[a:b], kernel, stride, copy, outs[a:b], args[a:b]),
                       n * c, xp.nbytes)
        if (padding[0] or padding[1]) and np.isneginf(out).any():
            # NOTE: a window whose real pixels are all -inf ties with its padding: the gradient goes
            # to the window's first real pixel, as PyTorch sends it (not into the padding)
            oy, ox = np.arange(oh) * stride[0] - padding[0], np.arange(ow) * stride[1] - padding[1]
            first = (np.maximum(-oy, 0)[:, None] * kw + np.maximum(-ox, 0)[None, :]).astype(arg.dtype)
            arg = np.where(np.isneginf(out), first, arg)
        self.argmax = arg
        return out

    def backward(self, g):
        x_shape, kernel, stride, padding = self.geometry
        fast = self.fast
        if fast is not None:
            return (fast.max_pool_backward(g, self.argmax, x_shape, kernel, stride, padding),)
        n, c, h, w = x_shape
        (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
        oh, ow = g.shape[2], g.shape[3]
        arg = self.argmax
        # NOTE: g·(arg == k), a multiplication by the mask, not np.where(arg == k, g, 0): the masked
        # select branches per element (about 5x slower on a ReLU'd input).
        if _tiles(kernel, stride, padding):
            # The windows tile the input without overlap (the usual 2x2, stride 2): each input pixel
            # belongs to at most one window, so every offset k writes its own strided slice once.
            dx = _new_array(x_shape, g.dtype)
            dxs, gs, args = dx.reshape(n * c, h, w), g.reshape(n * c, oh, ow), arg.reshape(n * c, oh, ow)

            # planes [a, b), as the forward's
            _blas.run_pass(lambda a, b: _max_pool_tiles_backward(gs[a:b], args[a:b], kernel, dxs[a:b]), n * c,
                           dx.nbytes)
            return (dx,)
        dxp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=g.dtype)
        for k in range(kh * kw):
            i, j = divmod(k, kw)
            dxp[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += g * (arg == k)
        dx = dxp[:, :, ph:ph + h, pw:pw + w] if (ph or pw) else dxp
        return (np.ascontiguousarray(dx),)


def max_pool2d(x, kernel_size, stride=None, padding=0) -> Tensor:
    """Max pooling over kh x kw windows of an NCHW batch, as ``torch.nn.functional.max_pool2d``.

    ``stride`` defaults to the kernel size; ``padding`` (at most half the kernel) pads with -inf.

    Shape
    -----
    - x: (N, C, H, W); Output: (N, C, OH, OW), OH = ⌊(H + 2p - kh)/s⌋ + 1

    Examples
    --------
    >>> import gradbox as gb, numpy as np
    >>> gb.nn.functional.max_pool2d(gb.Tensor(np.arange(16.0).reshape(1, 1, 4, 4)), 2).data[0, 0]
    array([[ 5.,  7.],
           [13., 15.]])
    """
    x, kernel, stride, padding = _pool_args(x, kernel_size, stride, padding, "max_pool2d")
    return MaxPool2dFunction.apply(x, kernel=kernel, stride=stride, padding=padding)


class AvgPool2dFunction(Function):
    """A = mean over each kh x kw window, zero padding counted (PyTorch's count_include_pad=True).

    Backward: every input of a window receives dA/(kh·kw) (the course's ``distribute_value``).
    """

    returns_fresh_grads = True

    def forward(self, x, kernel, stride, padding):
        self.geometry = (x.shape, kernel, stride, padding)
        fast = _kernels(x.dtype)
        if fast is not None:
            return fast.avg_pool(x, kernel, stride, padding)
        win = _windows(_pad(x, padding), kernel, stride)
        kh, kw = kernel
        out = win[..., 0, 0].copy()
        for k in range(1, kh * kw):
            out += win[..., k // kw, k % kw]
        out *= x.dtype.type(1.0 / (kh * kw))
        return out

    def backward(self, g):
        x_shape, kernel, stride, padding = self.geometry
        fast = _kernels(g.dtype)
        if fast is not None:
            return (fast.avg_pool_backward(g, x_shape, kernel, stride, padding),)
        n, c, h, w = x_shape
        (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
        oh, ow = g.shape[2], g.shape[3]
        share = g * g.dtype.type(1.0 / (kh * kw))
        dxp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=g.dtype)
        for i in range(kh):
            for j in range(kw):
                dxp[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += share
        dx = dxp[:, :, ph:ph + h, pw:pw + w] if (ph or pw) else dxp
        return (np.ascontiguousarray(dx),)


def avg_pool2d(x, kernel_size, stride=None, padding=0) -> Tensor:
    """Average pooling over kh x kw windows, as ``torch.nn.functional.avg_pool2d`` (count_include_pad=True).

    Shape
    -----
    - x: (N, C, H, W); Output: (N, C, OH, OW), OH = ⌊(H + 2p - kh)/s⌋ + 1

    Examples
    --------
    >>> import gradbox as gb, numpy as np
    >>> gb.nn.functional.avg_pool2d(gb.Tensor(np.arange(16.0).reshape(1, 1, 4, 4)), 2).data[0, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    """
    x, kernel, stride, padding = _pool_args(x, kernel_size, stride, padding, "avg_pool2d")
    return AvgPool2dFunction.apply(x, kernel=kernel, stride=stride, padding=padding)


# --- batch normalisation ---------------------------------------------------------------------------
def _channel_axes(ndim: int) -> tuple:
    return (0,) if ndim == 2 else (0,) + tuple(range(2, ndim))


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """A (C,) vector shaped to broadcast against (N, C, ...)."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


class BatchNormFunction(Function):
    """y = γ·x̂ + β with x̂ = (x - μ)/σ, σ = sqrt(var + eps), per channel.

    Training: μ and var (biased) are the batch's, over every axis but the channel axis.
    The cache is x̂ and 1/σ. With m the number of values per channel and dx̂ = dy·γ::

        dx = (1/σ)/m · (m·dx̂ - Σ dx̂ - x̂·Σ(dx̂·x̂)),   dγ = Σ dy·x̂,   dβ = Σ dy

    Eval: μ and var are the running statistics, constants, so dx = dy·γ/σ.
    The running statistics are updated by ``batch_norm``, outside the box (they are not differentiated).
    """

    returns_fresh_grads = True

    def forward(self, x, weight, bias, mean, var, eps, training, sync=None, share=1.0):
        # NOTE: mean and var arrive as constants: the batch's (training) or the running ones (eval);
        # ``training`` picks the backward formula (in training they are functions of x).
        # ``sync``: under data parallelism (gradbox.distributed.BatchStatsSync) they are the global
        # batch's, and so are the backward sums (this rank's share of the batch weighs them).
        self.sync, self.share = sync, share
        axes = _channel_axes(x.ndim)
        inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype, copy=False)
        xhat = x - _per_channel(mean.astype(x.dtype, copy=False), x.ndim)
        xhat *= _per_channel(inv_std, x.ndim)
        self.xhat, self.inv_std, self.weight, self.training, self.axes = xhat, inv_std, weight, training, axes
        y = xhat * _per_channel(weight, x.ndim)
        y += _per_channel(bias, x.ndim)
        return y

    def backward(self, g):
        need = self.needs_input_grad
        xhat, axes, nd = self.xhat, self.axes, g.ndim
        gw = (g * xhat).sum(axis=axes) if need[1] else None
        gb = g.sum(axis=axes) if need[2] else None
        gx = None
        if need[0]:
            dxhat = g * _per_channel(self.weight, nd)
            if self.training:
                m = g.size // g.shape[1]
                s1, s2 = dxhat.sum(axis=axes), (dxhat * xhat).sum(axis=axes)
                if self.sync is not None:  # the global batch's sums (gradbox.distributed.BatchStatsSync)
                    s1, s2 = self.sync.grad_sums(s1, s2, self.share)
                s1, s2 = _per_channel(s1, nd), _per_channel(s2, nd)
                gx = dxhat * m
                gx -= s1
                gx -= xhat * s2
                gx *= _per_channel(self.inv_std / m, nd)
            else:
                gx = dxhat * _per_channel(self.inv_std, nd)
        return gx, gw, gb


def batch_norm(x, running_mean, running_var, weight, bias, training=False, momentum=0.1, eps=1e-5) -> Tensor:
    """Batch normalisation over the channel axis 1, as ``torch.nn.functional.batch_norm``.

    In training the batch statistics normalise, and ``running_mean``/``running_var`` (arrays,
    updated in place when given) move towards them: ``r ← (1 - momentum)·r + momentum·batch``,
    with the unbiased batch variance (m/(m-1)·var), as PyTorch. In eval the running statistics
    normalise.

    Shape
    -----
    - x: (N, C) or (N, C, L) or (N, C, H, W); running stats, weight, bias: (C,)
    - Output: x's shape

    Examples
    --------
    >>> import gradbox as gb, numpy as np
    >>> x = gb.Tensor([[1.0], [3.0]])
    >>> w, b = gb.Tensor([1.0]), gb.Tensor([0.0])
    >>> gb.nn.functional.batch_norm(x, None, None, w, b, training=True).data.round(3).ravel()
    array([-1.,  1.], dtype=float32)
    """
    who = "batch_norm"
    x = x if isinstance(x, Tensor) else Tensor(x)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"{who}: expected input of shape (N, C, ...), received {x.shape}")
    if x.data.dtype not in _FLOATS:
        raise TypeError(f"{who}: expected a floating-point input, received dtype {x.dtype}")
    c = x.shape[1]
    weight = weight if isinstance(weight, Tensor) else Tensor(np.ones(c) if weight is None else weight, dtype=x.dtype)
    bias = bias if isinstance(bias, Tensor) else Tensor(np.zeros(c) if bias is None else bias, dtype=x.dtype)
    for name, v in (("weight", weight), ("bias", bias)):
        if v.shape != (c,):
            raise ValueError(f"{who}: expected {name} of shape ({c},), received {v.shape}")
        if v.dtype != x.dtype:
            raise TypeError(f"{who}: expected {name} of dtype {x.dtype}, received {v.dtype}")
    m = x.size // c
    if training:
        sync = _batch_stats_sync()
        if m <= 1 and sync is None:  # NOTE: synchronised, the global batch counts
            raise ValueError(f"{who}: expected more than 1 value per channel when training, received input {x.shape}")
        if sync is not None:  # data-parallel training: the global batch's statistics and count
            mean, var, m, share = sync.stats(x.data, _channel_axes(x.ndim))
        else:
            (mean, var), share = _batch_stats(x.data), 1.0
        out = BatchNormFunction.apply(x, weight, bias, mean=mean, var=var, eps=eps, training=True, sync=sync,
                                      share=share)
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean
        if running_var is not None:
            running_var *= 1 - momentum
            running_var += momentum * var * (m / (m - 1))
        return out
    if running_mean is None or running_var is None:
        raise ValueError(f"{who}: expected running_mean and running_var in eval mode, received None")
    return BatchNormFunction.apply(x, weight, bias, mean=np.asarray(running_mean), var=np.asarray(running_var),
                                   eps=eps, training=False)


def _batch_stats_sync():
    """The cross-rank statistics exchange while data-parallel training runs, else None."""
    from .. import distributed  # NOTE: NumPy only at import; MPI is loaded by the training call

    return distributed.active_batch_stats_sync()


def _batch_stats(x):
    """The batch mean and biased variance per channel."""
    axes = _channel_axes(x.ndim)
    mean = x.mean(axis=axes)
    centred = x - _per_channel(mean, x.ndim)
    return mean, np.mean(centred * centred, axis=axes)
