"""Keeping the heap that a training step grows, instead of faulting it in again every step.

NOTE: glibc serves a request from 128 KiB up (its first mmap threshold) with a fresh ``mmap`` and
unmaps it when freed, and it gives the top of its heap back to the OS past a trim threshold; a free of
a mapped block raises both thresholds (mallopt(3), "dynamic mmap threshold"). Whether a process's
early history happened to free such a block decided whether each of its steps paid a page fault and
the zeroing of every 4 KiB page of its temporaries: the convolution boxes 777-4,333 minor faults a
step; the 784-256-128-10 MLP at batch 1024 1,716 a step, 17.1 ms against 13.1 ms without them, one
process fast and the next slow (BENCHMARKS.md). ``keep_heap`` raises the thresholds once per larger
size, by freeing one block; under another allocator it costs one allocation per new largest size.
"""
from __future__ import annotations

import numpy as np

_RAISED = {"bytes": 0}  # the largest array keep_heap has been called for
#: glibc's largest dynamic mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX), a little under: the block
#: mapped includes its header
_GLIBC_MMAP_MAX = (32 << 20) - (64 << 10)
#: glibc's first mmap threshold (M_MMAP_THRESHOLD's default): a block from this size up is mapped afresh
#: and unmapped when freed, until a free raises the threshold.
#: NOTE: 128 KiB, not _Scratch.MIN_BYTES: LeNet's step at batch 8 and 12, whose arrays are 150-940 KB,
#: faulted 355 and 549 pages a step (1.49 and 2.36 ms a step against 1.52 ms at batch 16)
_GLIBC_MMAP_MIN = 128 << 10
#: The smallest block ``keep_heap`` frees: glibc then keeps at least twice this much heap between steps.
#: NOTE: with twice the columns only, LeNet's step at batch 8 on the NumPy path (whose other temporaries
#: outgrow its 0.6 MB of columns) still faulted 550 pages a step in a fresh venv, depending on the heap's
#: layout (0 in another venv); from 8 MB up it takes none in both
_KEEP_AT_LEAST = 8 << 20


def keep_heap(nbytes: int) -> None:
    """The first time a size this large comes, allocate and free a block twice ``nbytes`` (the
    module's NOTE): glibc's thresholds then rise, and it keeps the heap that a step's arrays of this
    size grow instead of mapping it afresh every step. One number remembered, not a list."""
    if nbytes > _RAISED["bytes"] and nbytes >= _GLIBC_MMAP_MIN:
        # NOTE: twice the size: the heap's trim threshold then becomes four times it, room for the
        # step's other temporaries of this size (ReLU's output and mask, the pooling's arrays). At most
        # glibc's largest dynamic threshold (32 MB on 64-bit, DEFAULT_MMAP_THRESHOLD_MAX): freeing a larger
        # block raises nothing, and the CIFAR-shaped net's step (whose second conv asked for 38 MB) then
        # had its 47 MB of temporaries trimmed and faulted in again every step (5,360 minor faults a step)
        _RAISED["bytes"] = nbytes
        np.empty(min(max(2 * nbytes, _KEEP_AT_LEAST), _GLIBC_MMAP_MAX), dtype=np.uint8)  # freed at once
