"""Matrix products with a BLAS thread count chosen per product: small ones run on one thread.

``dot(a, b, out=None)`` is ``np.dot`` for the layers' GEMMs (``Conv2d``'s Z, dW and dcols, ``Linear``'s
three products and its bias sum). When the product is small (fewer than ``SMALL_FLOPS``) and skinny
(a side of at most ``SKINNY``) but large enough for OpenBLAS to split it, it runs with NumPy's BLAS
limited to one thread, and the limit is put back at once. So a small convolutional network (LeNet at
batch 32) runs on one BLAS thread, and networks with larger products (LeNet at batch 128, the
CIFAR-shaped net, the 784-256-128-10 MLP at batch 128) run as before. The values agree with ``np.dot``'s
to rounding: OpenBLAS blocks a product differently on one thread and on two, so float64 results can
differ in the last bit or two, as any NumPy product does between thread counts (tested against the
k·eps error bound). The choice depends on the shapes, and on whether a convolution ran in chunks on
gradbox's threads within the last ``SERIAL_AFTER_CHUNKS`` products (``hold_serial``; the largest are then
cut into one product per thread on gradbox's threads, ``SPLIT_FLOPS``), never on time, so a run repeats
to the bit.

``run_parts(fn, parts)`` runs parts of one job at once on the calling thread and gradbox's worker
threads (the chunked convolution), with NumPy's BLAS on one thread meanwhile; ``threads()`` is how many.

NOTE: why (BENCHMARKS.md, "Convolutions, third session"): after every product that OpenBLAS splits over
two threads its idle worker spins on the other core for about a tenth of a second, so in a training
step of small products it never sleeps, and on the 2-vCPU machine the single-threaded passes in between
(im2col, pooling, ReLU, the copies) ran up to 2x slower next to it, at the minutes when the host placed
the two vCPUs badly. LeNet at batch 32 then: 5.9 -> 3.2 ms a step, paired; the larger products keep both
threads.

The control needs NumPy only: on Linux gradbox drives NumPy's own OpenBLAS through its C functions
(``_OpenBLAS``); elsewhere it needs ``threadpoolctl``. It does not follow the ``fast`` switch, which is
the compiled kernels' (the NumPy path's chunked convolution needs the control as much). Where no
OpenBLAS of NumPy's can be driven, every product is a plain ``np.dot``. A limit the user set
(``threadpool_limits(1)``) is respected: a library already at one thread is left alone.
"""
from __future__ import annotations

import os
import threading

import numpy as np

from ._fast import FAST as _FAST

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

#: After gradbox has run a convolution in chunks on its own threads, its next this many products run on
#: one BLAS thread whatever their size (``hold_serial``).
#: NOTE: why: a product OpenBLAS splits leaves its worker spinning for a tenth of a second, on the core
#: the chunks' second thread needs; in a CNN's step the dense layers' products come between the
#: convolutions, so they must not split either. Counted in products, not seconds, so that which products
#: run on one thread depends on the sequence of operations only and a run repeats to the bit; 64 covers a
#: step's dense layers (a product each forward, two backward) many times over.
SERIAL_AFTER_CHUNKS = 64
#: ... and those from this many FLOPs up are cut into one product per thread, run at once on gradbox's
#: threads (a CNN's large dense layers: the CIFAR-shaped net's 4096 x 128 at batch 64, 67 MFLOP).
#: NOTE: only while held: in an MLP's step OpenBLAS's own split is cheaper than handing a part to another
#: Python thread (the 784-256-128-10 MLP's step took 1.2-1.6x as long with its products cut this way), and
#: below this size the hand-off (about 0.06 ms) costs more than the second thread saves (LeNet's 12 MFLOP
#: dense products: its step 0.98x); BENCHMARKS.md, "Convolutions, fifth session"
SPLIT_FLOPS = 32e6
_STATE = {"controller": None, "serial_left": 0}


def hold_serial() -> None:
    """Run gradbox's next ``SERIAL_AFTER_CHUNKS`` products on one BLAS thread (see there)."""
    _STATE["serial_left"] = SERIAL_AFTER_CHUNKS


class _OpenBLAS:
    """NumPy's own OpenBLAS, its thread count read and set through the library's C functions (ctypes).

    NOTE: why not threadpoolctl alone: the thread choice is part of gradbox's speed with NumPy only
    (``import gradbox`` needs nothing else), and on Linux it takes no more than threadpoolctl does there:
    find the loaded library among the process's mappings and call its ``openblas_get_num_threads`` and
    ``openblas_set_num_threads`` (named with NumPy's wheel's prefix and suffix). Both drive the same
    process-wide setting, so a user's ``threadpool_limits`` is seen here (tested)."""

    #: (prefix, suffix) of the C names: NumPy's wheels (scipy-openblas, 64-bit ints), then a plain build
    NAMES = (("scipy_openblas", "64_"), ("scipy_openblas", ""), ("openblas", "64_"), ("openblas", ""))

    def __init__(self, filepath: str):
        import ctypes

        # NOTE: RTLD_NOLOAD: the library NumPy has loaded, never a second copy
        lib = ctypes.CDLL(filepath, mode=os.RTLD_NOLOAD | os.RTLD_NOW)
        for prefix, suffix in self.NAMES:
            get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                break
        else:
            raise OSError(f"{filepath}: no openblas_get_num_threads / openblas_set_num_threads")
        get.argtypes, get.restype = [], ctypes.c_int
        put.argtypes, put.restype = [ctypes.c_int], None
        self.filepath, self._get, self._put = filepath, get, put
        # NOTE: the C GEMMs, for compiled code that calls them itself (gradbox._conv_kernels): only with
        # 64-bit integers (the "64_" builds NumPy's wheels ship), the one signature that code declares
        self.gemm = {}
        if suffix == "64_":
            for letter, dtype in (("s", np.float32), ("d", np.float64)):
                fn = getattr(lib, f"{prefix[:-len('openblas')]}cblas_{letter}gemm{suffix}", None)
                if fn is not None:
                    self.gemm[np.dtype(dtype)] = ctypes.cast(fn, ctypes.c_void_p).value

    def get_num_threads(self) -> int:
        return self._get()

    def set_num_threads(self, n: int) -> None:
        self._put(n)


def _numpy_dirs() -> tuple:
    numpy_dir = os.path.dirname(os.path.abspath(np.__file__))
    return numpy_dir, numpy_dir + ".libs"


def _loaded_openblas() -> list | None:
    """The OpenBLAS libraries mapped into this process that came with NumPy (its package folder or
    ``numpy.libs``), else all the mapped ones; None where the mappings cannot be read (not Linux)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split(None, 5)[-1].strip() for line in f if "openblas" in line}
    except OSError:
        return None
    paths = sorted(p for p in paths if "openblas" in os.path.basename(p) and os.path.isfile(p))
    own = [p for p in paths if os.path.dirname(os.path.abspath(p)) in _numpy_dirs()]
    return own or paths


def _numpy_blas():
    """A controller of the OpenBLAS NumPy calls (``get_num_threads``, ``set_num_threads``), or False:
    another BLAS, or no way to tell which of several OpenBLAS libraries is NumPy's.

    On Linux it drives the library directly (``_OpenBLAS``); elsewhere it needs threadpoolctl."""
    loaded = _loaded_openblas()
    if loaded:  # NOTE: none found by name (a system BLAS whose file is libblas.so): threadpoolctl tells
        if len(loaded) != 1:
            return False
        try:
            return _OpenBLAS(loaded[0])
        except OSError:
            return False
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # NOTE: an optional extra
        return False
    libs = [c for c in ThreadpoolController().lib_controllers if c.internal_api == "openblas"]
    # NOTE: SciPy (which numba imports) brings an OpenBLAS of its own; NumPy's wheel keeps its copy in
    # numpy.libs (or inside the package), and a NumPy linked to a system BLAS is the only one loaded
    own = [c for c in libs if os.path.dirname(os.path.abspath(c.filepath)) in _numpy_dirs()]
    libs = own or libs
    return libs[0] if len(libs) == 1 else False


def _controller():
    ctl = _STATE["controller"]
    if ctl is None:
        ctl = _STATE["controller"] = _numpy_blas()
    return ctl or None


def gemm_address(dtype) -> int:
    """The address of ``cblas_sgemm`` / ``cblas_dgemm`` (row-major, 64-bit integers) of the OpenBLAS NumPy
    uses, for compiled code to call (the chunked convolution's parts); 0 where it is not known (another
    BLAS, a 32-bit-integer build, not Linux)."""
    ctl = _controller()
    return getattr(ctl, "gemm", {}).get(np.dtype(dtype), 0) if ctl is not None else 0


def dot(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.dot(a, b, out=out)``; on one BLAS thread when ``a`` (1-D or 2-D) times the 2-D ``b`` is small."""
    work = a.size * b.shape[-1]  # m·k·n (k·n for a vector)
    serial = _OPENBLAS_SERIAL.get(a.ndim) if b.ndim == 2 else None  # None: not a GEMM or GEMV
    held = _STATE["serial_left"]
    if held:
        _STATE["serial_left"] = held - 1
    if serial is not None and serial < work and (held or 2.0 * work < SMALL_FLOPS and min(a.shape + b.shape) <= SKINNY):
        ctl = _controller()
        if ctl is not None:
            threads = ctl.get_num_threads()
            if threads > 1:
                ctl.set_num_threads(1)
                try:
                    if held and 2.0 * work >= SPLIT_FLOPS and a.ndim == 2:
                        return _split_on_threads(a, b, out, threads)
                    return a.dot(b) if out is None else np.dot(a, b, out=out)
                finally:
                    ctl.set_num_threads(threads)
    # NOTE: ndarray.dot without out: the same BLAS call as np.dot with less dispatch (about 1 µs)
    return a.dot(b) if out is None else np.dot(a, b, out=out)


def _split_on_threads(a, b, out, parts):
    """``a·b`` as ``parts`` products run at once on gradbox's threads (one BLAS thread each, set by the
    caller), cut along the larger operand: columns of ``b`` or rows of ``a``.

    NOTE: each part packs the whole of the operand that is not cut, so cutting the smaller one packs the
    larger twice: the CIFAR-shaped net's 64 x 4096 by 4096 x 128 took 1.36 ms cut by rows of ``a`` and
    0.58 ms by columns of ``b`` (one thread: 0.95, OpenBLAS's own split: 0.52)."""
    m, n = a.shape[0], b.shape[1]
    if out is None:
        out = np.empty((m, n), dtype=np.result_type(a, b))
    if b.size >= a.size:
        # NOTE: matmul, not dot: np.dot needs a C-contiguous out, and a block of columns is not
        run_split(lambda i, j: np.matmul(a, b[:, i:j], out=out[:, i:j]), n, parts)
    else:
        run_split(lambda i, j: np.dot(a[i:j], b, out=out[i:j]), m, parts)
    return out


#: Memory-bound passes (ReLU, max pooling) over at least this many bytes are shared among gradbox's threads
#: while held (``pass_threads``).
#: NOTE: measured alone, two threads against one: a 2.4 MB ReLU (LeNet's first conv at batch 128) 0.186 ->
#: 0.162 ms and its max pooling 0.109 -> 0.145 ms (the hand-off eats it); an 8.4 MB ReLU (the CIFAR-shaped
#: net's) 0.78 -> 0.39 ms
PASS_BYTES = 4 << 20
#: The same floor where gradbox's hand-offs spin (``_waiter``: the compiled kernels loaded and switched on).
#: NOTE: a spinning hand-off costs a few µs, not a vCPU's wake. Fresh processes alternating, 10 rounds, the
#: compiled path: LeNet b128 1.07x (its first conv's 2.4 MB ReLU and pooling shared), the CIFAR-shaped net
#: 1.01x, LeNet b32 unchanged (its passes are 0.6 MB; a 400 KB floor made it 0.93x). The NumPy path keeps
#: 4 MB: 1 MB there gave LeNet b128 1.05x but the CIFAR-shaped net 0.98x (BENCHMARKS.md, "Convolutions,
#: ninth session")
PASS_BYTES_SPINNING = 1 << 20


def pass_threads(nbytes: int) -> int:
    """How many of gradbox's threads a memory-bound pass over ``nbytes`` should be shared among: all of them
    while gradbox's products are held on one BLAS thread (after a chunked convolution, when no OpenBLAS
    worker spins on the other cores) and the pass is large (``PASS_BYTES``, or ``PASS_BYTES_SPINNING`` where
    the hand-offs spin); else 1."""
    if not _STATE["serial_left"]:
        return 1
    floor = PASS_BYTES_SPINNING if _spinning() else PASS_BYTES
    return threads() if nbytes >= floor else 1


def run_pass(fn, n: int, nbytes: int) -> None:
    """``fn(0, n)``: a memory-bound pass over ``nbytes``, split into ranges of ``range(n)`` shared among
    gradbox's threads when ``pass_threads`` says so."""
    parts = min(pass_threads(nbytes), n)
    if parts > 1:
        run_split(fn, n, parts)
    else:
        fn(0, n)


def run_split(fn, n: int, parts: int) -> None:
    """``fn(a, b)`` for ``parts`` consecutive ranges ``[a, b)`` of ``range(n)``, at once (``run_parts``)."""
    cuts = [i * n // parts for i in range(parts + 1)]
    run_parts(lambda r: fn(*r), list(zip(cuts[:-1], cuts[1:])), serial_blas=False)


def threads() -> int:
    """NumPy's BLAS thread count when gradbox controls it (the fast switch on, threadpoolctl present), else 1.

    The number of threads gradbox runs the parts of its work on (``run_parts``): the cores the user lets
    BLAS use (a ``threadpool_limits(1)`` of theirs means one)."""
    ctl = _controller()
    return ctl.get_num_threads() if ctl is not None else 1


class serial:
    """``with serial():`` NumPy's BLAS on one thread for the block (when gradbox controls it), then put back."""

    def __enter__(self):
        ctl = self.ctl = _controller()
        self.previous = ctl.get_num_threads() if ctl is not None else 1
        if self.previous > 1:
            ctl.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        if self.previous > 1:
            self.ctl.set_num_threads(self.previous)
        return False


class _Worker:
    """One of gradbox's worker threads: handed one part at a time through two locks.

    NOTE: why not ``concurrent.futures.ThreadPoolExecutor``: a part handed to it and waited for took 87 µs
    (a Future, a work queue and a condition per part), with two plain locks 15.5 µs (trivial parts after
    0.3 ms idle, the benchmark machine); LeNet at batch 32, whose step hands over four parts, went from
    2.39-2.48 to 2.18-2.27 ms a step (BENCHMARKS.md, "Convolutions, fifth session")."""

    def __init__(self, i):
        self.go, self.done = threading.Lock(), threading.Lock()
        self.go.acquire()
        self.done.acquire()
        self.task = self.result = self.error = None
        # NOTE: the parts handed over (flags[0]) and done (flags[8]), on cache lines of their own, counted
        # alike on both sides (``sent`` here, the loop's own count there): what the spinning waits look at
        self.flags, self.sent = np.zeros(16, dtype=np.int64), 0
        threading.Thread(target=self._loop, name=f"gradbox-worker-{i}", daemon=True).start()

    def _loop(self):
        count, wait = 0, None
        while True:
            if wait is not None:
                # NOTE: say done (the store inside the compiled call, after this thread let go of the GIL),
                # then look for the next part for a while before sleeping on the lock
                wait(self.flags, 8, count, 0, count + 1, SPIN_CYCLES)
            count += 1
            self.go.acquire()
            fn, arg, wait = self.task
            try:
                self.result, self.error = fn(arg), None
            except BaseException as exc:  # NOTE: handed back to the caller, which raises it
                self.result, self.error = None, exc
            # NOTE: let go of the part before saying done, while the caller still holds it: else the worker
            # kept the part's closure (a conv box's gradient and input) until its next part, and the last
            # reference and the free could fall to this thread
            self.task = fn = arg = None
            self.done.release()

    def hand(self, fn, arg, wait, post=True) -> None:
        """Give the worker ``fn(arg)``; ``post=False``: the caller's part posts the counter (``run_parts``)."""
        self.sent += 1
        self.task = (fn, arg, wait)
        self.go.release()
        if post:
            self.flags[0] = self.sent  # NOTE: after the release: a worker that sees it takes the lock at once

    def wait_done(self, wait) -> None:
        if wait is not None:
            wait(self.flags, -1, 0, 8, self.sent, SPIN_CYCLES)
        self.done.acquire()


_WORKERS = {"pid": None, "threads": [], "busy": None}

#: How long a spinning wait looks before it sleeps on its lock, in ticks of the CPU's cycle counter (1.2 ms
#: at the benchmark machine's 2.6 GHz).
#: NOTE: why spin: a lock's wait sleeps, and waking a halted vCPU takes 20-30 µs on the benchmark VM, twice
#: per hand-off. Why this long: it bridges LeNet's step from its last forward convolution to its first
#: backward one at batch 32 (about 0.5 ms); 10^6 ticks did not, and that step took 1.75 against 1.66 ms
#: (BENCHMARKS.md, "Convolutions, seventh session"). OpenBLAS's own workers spin far longer.
SPIN_CYCLES = 3_000_000


def _sched_yield() -> int:
    """The address of libc's ``sched_yield`` (0 where there is none to find: the spin then pauses only)."""
    if "yield" not in _STATE:
        try:
            import ctypes

            _STATE["yield"] = ctypes.cast(ctypes.CDLL(None).sched_yield, ctypes.c_void_p).value or 0
        except (OSError, AttributeError, TypeError):
            _STATE["yield"] = 0
    return _STATE["yield"]


def _spinning() -> bool:
    """Whether gradbox's hand-offs spin (``_waiter``): the compiled kernels loaded and switched on."""
    return bool(_FAST["mod"] and _FAST["wanted"])


def _waiter():
    """The spinning wait, ``wait(flags, post_at, post_value, wait_at, wait_value, cycles)``: the compiled
    ``_conv_kernels._post_and_wait``, yielding the core between looks (``sched_yield``), once the compiled
    kernels are loaded and switched on; else None, and the hand-offs sleep on their locks only.

    NOTE: why yield: a wait that only spins took the core from every other thread that wanted it (two
    workers and the caller on two cores, or two processes): the conv tests ran 22 -> 50 s"""
    if not _spinning():
        return None
    fn, address = _FAST["mod"]._post_and_wait, _sched_yield()
    return lambda *args: fn(*args, address)


def _workers(k: int) -> list:
    """``k`` worker threads, made on first use; a forked child makes its own."""
    if _WORKERS["pid"] != os.getpid():
        _WORKERS.update(pid=os.getpid(), threads=[], busy=threading.Lock())
    threads = _WORKERS["threads"]
    while len(threads) < k:
        threads.append(_Worker(len(threads)))
    return threads[:k]


def run_parts(fn, parts, serial_blas=True, posting=False) -> list:
    """``[fn(part) for part in parts]``, the first on this thread and the others on gradbox's worker threads
    at once (with NumPy's BLAS on one thread meanwhile, unless the caller already set it). While another
    thread of the caller's uses the workers, the parts run here, one after another.

    ``posting``: ``fn(part, flags, post)`` instead, for compiled parts that store ``flags[0] = post`` as
    they start (``post`` > 0). With one worker and spinning hand-offs (``_waiter``) the caller's own part
    then hands the worker its part, from code that holds no GIL: the worker, seeing it, takes the GIL
    without waiting for the caller to let go of it (one vCPU wake less, BENCHMARKS.md, "Convolutions,
    seventh session"). Otherwise ``post`` is 0 and the hand-off is as without."""
    call = (lambda p: fn(p, _NO_FLAGS, 0)) if posting else fn
    if len(parts) == 1:
        return [call(parts[0])]
    workers = _workers(len(parts) - 1)
    busy = _WORKERS["busy"]
    with serial() if serial_blas else _NULL:
        if not busy.acquire(blocking=False):
            return [call(p) for p in parts]
        wait = _waiter()
        try:
            inside = posting and wait is not None and len(workers) == 1
            for w, p in zip(workers, parts[1:]):
                w.hand(call, p, wait, post=not inside)
            try:
                first = fn(parts[0], workers[0].flags, workers[0].sent) if inside else call(parts[0])
            finally:
                # NOTE: wait for every worker even when this thread's part raised or a signal arrives:
                # never leave a worker writing into arrays the caller is about to drop
                interrupted = None
                for w in workers:
                    while True:
                        try:
                            w.wait_done(wait)
                            break
                        except BaseException as exc:  # a KeyboardInterrupt while waiting
                            interrupted = exc
                            wait = None
                if interrupted is not None:
                    raise interrupted
            results = [first]
            for w in workers:
                error, result, w.error, w.result = w.error, w.result, None, None
                if error is not None:
                    raise error
                results.append(result)
            return results
        finally:
            busy.release()


_NO_FLAGS = np.zeros(1, dtype=np.int64)


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_NULL = _Null()
