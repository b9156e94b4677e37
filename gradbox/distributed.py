"""Data-parallel training on MPI (mpi4py), with Horovod's names.

``pip install "gradbox[mpi]"`` (mpi4py and the ``mpich`` wheel, which brings ``mpiexec``), then
``mpiexec -n K python script.py``. mpi4py is imported on first use only: ``import gradbox`` and
single-process runs never load it.

Semantics (PyTorch DDP's and Horovod's): the batch size is the *global* batch. Every rank draws
the same shuffled order from the seed (``ShardedSampler``) and takes its shard of each global
batch; before each update the gradients are averaged with weights proportional to shard size, in
one buffer-based ``Allreduce`` (``DistributedOptimizer``). The result equals one process with the
same batch size, up to float rounding, whatever K is.

>>> import gradbox as gb
>>> from gradbox import distributed as dist
>>> model = gb.nn.Sequential(gb.nn.Linear(4, 3))
>>> dist.init()                                # doctest: +SKIP
>>> dist.broadcast_parameters(model, root=0)   # doctest: +SKIP
>>> opt = dist.DistributedOptimizer(gb.optim.SGD(model.parameters(), lr=0.1), sampler=sampler)  # doctest: +SKIP
>>> dist.ShardedSampler(10, batch_size=4, rank=1, size=2).shard(range(4))
array([2, 3])
"""
from __future__ import annotations

import hashlib
import mmap
import numbers
import os
import sys
import time

import numpy as np

from ._validation import check, non_negative_int, positive_int

_INSTALL_HINT = "pip install 'gradbox[mpi]'"

# Environment variables by which launchers announce the world size (MPICH/Hydra and other PMI
# launchers, Open MPI, Slurm's srun): read without importing mpi4py, so that a single-process
# run never pays for (or depends on) MPI.
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")

_comm = None           # the communicator once init() ran
_batch_stats_sync = None  # a BatchStatsSync while a DataParallel set-up is open
_prev_excepthook = None
_node_comms = (None, None)  # (a communicator, its ranks that share memory): one pair, reused
_spare_sum = None  # the shared-memory window of a removed DistributedOptimizer, for the next one of its size


def _mpi():
    """``mpi4py.MPI``, or an ImportError that says how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(f"gradbox.distributed: expected mpi4py ({_INSTALL_HINT}), received {exc}") from None
    return MPI


def active_batch_stats_sync():
    """The ``BatchStatsSync`` that batch normalisation uses while data-parallel training runs, else None."""
    return _batch_stats_sync


def launched_size() -> int:
    """The world size a launcher (``mpiexec``, ``srun``) announced in the environment; 1 when none.

    Cheap: reads environment variables only and never imports mpi4py.
    """
    for var in _SIZE_VARS:
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def available() -> bool:
    """True when mpi4py can be imported (the ``mpi`` extra is installed)."""
    try:
        _mpi()
    except ImportError:
        return False
    return True


def init(comm=None, *, require_parallel=False):
    """Start (or join) the MPI world and return its communicator.

    Parameters
    ----------
    comm : mpi4py communicator or None
        Default ``MPI.COMM_WORLD``.
    require_parallel : bool
        Raise ``RuntimeError`` when the world has one process: distributed training was asked
        for explicitly, and a forgotten ``mpiexec -n K`` would otherwise train alone unnoticed.

    In a world of more than one process, an uncaught exception on any rank prints
    ``gradbox: rank R failed: ...`` and aborts every rank (``MPI_Abort``), so that a failing rank
    ends the job within seconds instead of leaving the others blocked in a collective.
    Calling ``init`` again is harmless.
    """
    global _comm, _prev_excepthook
    MPI = _mpi()
    if comm is None:
        comm = MPI.COMM_WORLD
    _comm = comm
    k = comm.Get_size()
    if require_parallel and k == 1:
        raise RuntimeError(
            "distributed: expected an MPI world of more than one process (launch with "
            f"`mpiexec -n K ...`), received a world of size 1 (launcher announced {launched_size()})")
    if k > 1 and _prev_excepthook is None:
        _prev_excepthook = sys.excepthook
        sys.excepthook = _abort_on_exception
    return comm


def _abort_on_exception(exc_type, exc, tb):
    # NOTE: without this, a rank that raises runs MPI_Finalize at exit while the others wait in
    # the next Allreduce for ever (measured: mpiexec still running after 60 s). The traceback
    # first (Python's own hook), then one line naming the rank, then the abort.
    if _prev_excepthook is not None and not issubclass(exc_type, KeyboardInterrupt):
        _prev_excepthook(exc_type, exc, tb)
    abort(f"{exc_type.__name__}: {exc}", code=1)


def abort(message, code: int = 1):
    """Print ``gradbox: rank R failed: <message>`` on stderr (unless ``message`` is None) and end
    every rank of the job with exit status ``code``.

    For error handlers that exit non-zero (``sys.exit`` bypasses the exception hook): on one rank
    of many, a plain exit would leave the other ranks blocked in a collective.
    """
    if message is not None:
        print(f"gradbox: rank {rank()} failed: {message}", file=sys.stderr, flush=True)
    sys.stderr.flush()
    sys.stdout.flush()
    if _comm is not None and _comm.Get_size() > 1:
        # NOTE: MPI_Abort makes the launcher kill every process at once, and the line above,
        # still in the pipe to mpiexec's forwarder, can be lost with them (1 run in 4 on a
        # loaded machine). A short pause lets it be forwarded first; this is the failure path.
        time.sleep(0.3)
        _comm.Abort(int(code) or 1)
    raise SystemExit(int(code) or 1)


def comm():
    """The communicator: ``init()``'s, or the world's when launched under ``mpiexec -n K>1``, else None."""
    if _comm is None and launched_size() > 1:
        init()
    return _comm


def rank() -> int:
    """This process's rank (0 when not running under MPI)."""
    c = comm()
    return 0 if c is None else c.Get_rank()


def size() -> int:
    """The number of processes (1 when not running under MPI)."""
    c = comm()
    return 1 if c is None else c.Get_size()


def is_main() -> bool:
    """True on the one process that prints and writes files (rank 0)."""
    return rank() == 0


def _require_comm(who):
    c = comm()
    if c is None:
        c = init()
    return c


def allreduce(array, average=False):
    """Sum (or average) a NumPy array over all ranks; returns a new array (``Allreduce``, no pickling)."""
    c = _require_comm("allreduce")
    a = np.ascontiguousarray(array)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"allreduce(array): expected a numeric array, received dtype {a.dtype}")
    out = np.empty_like(a)
    c.Allreduce(a, out)
    if average:
        out = out / c.Get_size()
    return out


def broadcast_parameters(model, root=0):
    """Copy every parameter and buffer of ``model`` from rank ``root`` to all ranks, in place.

    The ranks first compare the model's structure (names, shapes, dtypes): a mismatch raises
    ``ValueError`` on every rank rather than a truncated broadcast.
    """
    c = _require_comm("broadcast_parameters")
    if not isinstance(root, numbers.Integral) or isinstance(root, bool) or not 0 <= root < c.Get_size():
        raise ValueError(f"broadcast_parameters(root): expected a rank in [0, {c.Get_size()}), received {root!r}")
    arrays = [(n, p.data) for n, p in model.named_parameters()] + list(model.named_buffers())
    signature = repr([(n, a.shape, str(a.dtype)) for n, a in arrays]).encode()
    digests = c.allgather(hashlib.blake2b(signature, digest_size=16).hexdigest())
    if len(set(digests)) != 1:
        bad = [r for r, d in enumerate(digests) if d != digests[root]]
        raise ValueError(f"broadcast_parameters(model): expected the same model structure on every rank, "
                         f"received a different one on rank(s) {bad} than on rank {root}")
    for name, a in arrays:
        if not a.flags.c_contiguous or not a.flags.writeable:
            raise ValueError(f"broadcast_parameters(model): expected writeable contiguous arrays, "
                             f"received {name!r} that is not")
        c.Bcast(a, root=root)


def _data_digest(arrays) -> str:
    """A cheap fingerprint of the training data: shapes, dtypes and up to ~4 MB of evenly spaced rows."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.asarray(a)
        h.update(repr((a.shape, str(a.dtype))).encode())
        if a.ndim == 0 or len(a) == 0:
            h.update(np.ascontiguousarray(a).tobytes())
            continue
        row_bytes = max(1, a.nbytes // len(a))
        step = max(1, (len(a) * row_bytes) // (4 << 20))
        h.update(np.ascontiguousarray(a[::step]).tobytes())
        h.update(np.ascontiguousarray(a[-1]).tobytes())
    return h.hexdigest()


def check_same_data(*arrays, name="X, y"):
    """Raise ``ValueError`` on every rank unless all ranks hold the same data (compared by a cheap hash).

    Every rank must load the same dataset: each takes its shard of the global batches by index.
    """
    c = _require_comm("check_same_data")
    digests = c.allgather(_data_digest(arrays))
    if len(set(digests)) != 1:
        bad = [r for r, d in enumerate(digests) if d != digests[0]]
        raise ValueError(f"distributed: expected the same training data ({name}) on every rank, received "
                         f"different data on rank(s) {bad} than on rank 0 (each rank must load the same dataset)")


def seed_rank_stream(seed, step=0):
    """Reseed gradbox's default generator (dropout, initialisers) from ``(seed, rank, step)``.

    Call it after ``broadcast_parameters``: dropout masks then come from independent per-rank
    streams, reproducible from the seed and the rank. ``step`` (the optimizer steps done, for a
    resumed run) starts a stream of its own rather than repeating the first one.
    """
    from .random import set_rng_state

    seed = check("seed_rank_stream", "seed", seed, non_negative_int)
    g = np.random.default_rng(np.random.SeedSequence([seed, rank(), int(step)]))
    set_rng_state(g.bit_generator.state)


def _shard_bounds(n, k, r):
    """[start, stop) of rank r's part when n items are split into k nearly equal contiguous parts
    (the first n % k parts one longer, as ``numpy.array_split``)."""
    base, extra = divmod(n, k)
    start = r * base + min(r, extra)
    return start, start + base + (1 if r < extra else 0)


class ShardedSampler:
    """The order of samples for data-parallel training: global batches, sharded by rank.

    Every rank draws the same permutation of ``range(n)`` per epoch from ``seed`` (as the
    single-process ``Trainer``'s ``RandomSampler``: ``numpy.random.default_rng(seed).permutation(n)``),
    cuts it into global batches of ``batch_size`` (the last may be short), and takes its
    contiguous part of each batch. Parts differ by at most one sample when ``size`` does not
    divide the batch, and may be empty when the batch is smaller than the world.

    It follows the trainer's sampler protocol (``set_epoch``, ``batches(n, batch_size, start)``,
    ``end_epoch``, ``state_dict``, ``load_state_dict``; see ``gradbox.train.sampler``). Its state
    is the global order and the generator, the same on every rank and for every K: a checkpoint
    taken under K ranks resumes under any other.

    Parameters
    ----------
    n : int or None
        Number of training samples (otherwise taken from the first ``batches`` call).
    batch_size : int or None
        The global batch (for iterating the sampler itself; ``batches`` takes its own).
    shuffle : bool
    seed : int, Generator or None
    rank, size : int or None
        Default: this process's (``rank()``, ``size()``).

    Attributes
    ----------
    shard_size, batch_len : int
        Sizes of the last shard taken and of its global batch (``DistributedOptimizer`` weighs
        the gradients by them).

    >>> s = ShardedSampler(10, batch_size=4, shuffle=False, rank=2, size=3)
    >>> [b.tolist() for b in s]
    [[3], [7], []]
    """

    def __init__(self, n=None, batch_size=None, *, shuffle=True, seed=None, rank=None, size=None):
        self.n = None if n is None else check("ShardedSampler", "n", n, positive_int)
        self.batch_size = None if batch_size is None else check("ShardedSampler", "batch_size", batch_size, positive_int)
        self.shuffle = bool(shuffle)
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.size = globals()["size"]() if size is None else int(size)
        self.rank = globals()["rank"]() if rank is None else int(rank)
        if self.size < 1 or not 0 <= self.rank < self.size:
            raise ValueError(f"ShardedSampler(rank, size): expected 0 <= rank < size, "
                             f"received rank={self.rank}, size={self.size}")
        self.epoch = 0
        self.order = None  # this epoch's global order, drawn on first use
        self.shard_size = 0
        self.batch_len = 0

    def __len__(self):
        """Steps per epoch."""
        if self.n is None or self.batch_size is None:
            raise TypeError("len(ShardedSampler): expected n and batch_size to be set")
        return -(-self.n // min(self.batch_size, self.n))

    # --- the trainer's sampler protocol ------------------------------------------------------
    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def end_epoch(self):
        self.order = None

    def _draw(self, n):
        if self.order is None:
            self.n = int(n)
            self.order = self.rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        elif len(self.order) != n:
            raise ValueError(f"resume: the checkpoint was taken on {len(self.order)} training samples, received {n}")
        return self.order

    def batches(self, n, batch_size, start=0):
        """This rank's shards of the global batches ``start, start + 1, ...`` of the current epoch."""
        order = self._draw(n)
        bs = min(int(batch_size), int(n))
        for s in range(start, -(-n // bs)):
            yield self.shard(order[s * bs:(s + 1) * bs])

    def state_dict(self):
        return {"rng": self.rng.bit_generator.state, "order": None if self.order is None else self.order.copy()}

    def load_state_dict(self, state):
        self.rng.bit_generator.state = state["rng"]
        order = state.get("order")
        self.order = None if order is None else np.asarray(order, dtype=np.int64)
        if self.order is not None:
            self.n = len(self.order)

    # --- direct use ----------------------------------------------------------------------------
    def shard(self, batch):
        """This rank's part of one global batch of indices (records ``shard_size`` and ``batch_len``)."""
        batch = np.asarray(batch)
        start, stop = _shard_bounds(len(batch), self.size, self.rank)
        self.shard_size, self.batch_len = stop - start, len(batch)
        return batch[start:stop]

    def permutation(self):
        """Start a new epoch and return its global order (the same on every rank)."""
        self.end_epoch()
        return self._draw(self.n)

    def __iter__(self):
        """One new epoch: this rank's shards of a fresh permutation."""
        if self.n is None or self.batch_size is None:
            raise TypeError("iter(ShardedSampler): expected n and batch_size to be set")
        self.end_epoch()
        return self.batches(self.n, self.batch_size)


def _node_comm(comm):
    """The ranks of ``comm`` that share memory with this one (``MPI_Comm_split_type``, collective)."""
    global _node_comms
    if _node_comms[0] is not comm:
        _node_comms = (comm, comm.Split_type(_mpi().COMM_TYPE_SHARED))
    return _node_comms[1]


def _copies(nbytes) -> int:
    """How many copies of an ``nbytes`` buffer a window keeps, used in turn: 2 to 8, at most 8 MiB of them
    (``_SharedMemorySum``'s NOTE on slots)."""
    return max(2, min(8, (8 << 20) // max(1, nbytes)))


def _line_bounds(n, k, dtype) -> list:
    """[start, stop) of each of k ranks' parts of n elements, cut on 64-byte lines, so that no cache line
    is written by two ranks."""
    per_line = max(1, 64 // np.dtype(dtype).itemsize)
    cuts = [min(n, (r * n // k) // per_line * per_line) for r in range(k)] + [n]
    return list(zip(cuts[:-1], cuts[1:]))


class _SharedMemorySum:
    """The sum over ranks of one flat buffer, through an MPI-3 shared-memory window (one node).

    What ``Allreduce`` computes, without its protocol: each rank writes its buffer into its own
    segment of a window every rank can load from (``MPI_Win_allocate_shared``); after a barrier,
    rank r sums slice r of all segments into its own segment, and after a second barrier every
    rank copies the K summed slices into its result (with 2 ranks, each sums both segments whole,
    after one barrier). Each slice is summed by one rule in a fixed order, so every rank gets the
    same bits.

    NOTE: why not ``Allreduce``: between 2 processes on this machine's 2 cores, MPICH's
    ``Allreduce`` of 0.94 MB (single-copy CMA through the kernel) took 125 µs when the two vCPUs
    shared a cache and 490 µs when they did not (the host moves them; a cache-line round trip
    between them is then 340 ns instead of 70). Plain loads and stores on shared memory cut the
    synchronisation in a training step from 0.73-0.81 ms to 0.2-0.3 ms on the second placement,
    and the MLP's throughput at global batch 256 rose 1.17-1.28x (BENCHMARKS.md, "Data-parallel
    (MPI)"); on the first the two are about even.

    Each segment holds ``depth`` slots, used in turn, one per sum. Two would be enough for
    correctness: a rank writes sum t + 1's slot while another may still read sum t's, and it
    reaches a slot again only after the barrier(s) of a later sum, which no rank passes before
    it has finished reading the earlier one. More are for speed: writing lines that another
    core still holds (it read them for the last sum) waits for that core to give them up, 0.25-
    0.38 ms per step for 0.94 MB when the vCPUs do not share a cache; with up to 8 slots (at
    most 8 MiB a rank), its own traffic has evicted them by the time a slot comes round
    (0.07-0.12 ms).
    """

    def __init__(self, node, n, dtype, n_region=0):
        MPI = _mpi()
        self.comm = node
        k, self.rank = node.Get_size(), node.Get_rank()
        self.n, self.dtype, self.n_region = n, np.dtype(dtype), int(n_region)
        dtype = self.dtype
        self.depth = _copies(n * dtype.itemsize)
        slots_bytes = -(-self.depth * n * dtype.itemsize // 64) * 64
        # NOTE: rank 0's segment also holds ``region``: n_region numbers that every rank loads and
        # stores (the sharded update's parameters, averaged gradients and optimizer state)
        own_bytes = slots_bytes + (self.n_region * dtype.itemsize if self.rank == 0 else 0)
        self.win = MPI.Win.Allocate_shared(own_bytes, dtype.itemsize, comm=node)
        self.win.Lock_all()  # NOTE: one passive epoch for the window's life; Sync orders the loads and stores
        full = [np.frombuffer(self.win.Shared_query(r)[0], dtype, self.depth * n) for r in range(k)]
        self.region = np.frombuffer(self.win.Shared_query(0)[0], dtype, self.n_region, offset=slots_bytes)
        # NOTE: first touch now, not in training: the window's pages are mapped into each process
        # on first access, and a rank touches a slot for the first time at the slot's first sum, so
        # the first `depth` steps took ~1,260 minor page faults per rank (0.94 MB of gradients,
        # 8 slots; BENCHMARKS.md, "the exchange against a free one"). Each rank writes its own
        # segment (which allocates the pages) and, after a barrier, reads one element per page of
        # the others' (which maps them).
        full[self.rank].fill(0)
        if self.rank == 0:
            self.region.fill(0)
        node.Barrier()
        per_page = max(1, mmap.PAGESIZE // dtype.itemsize)
        for r, f in enumerate(full):
            if r != self.rank:
                f[::per_page].sum()
        if self.rank != 0:
            self.region[::per_page].sum()
        self.slots = [[f[h * n:(h + 1) * n] for f in full] for h in range(self.depth)]
        self.bounds = _line_bounds(n, k, dtype)
        self.slot = 0

    def barrier(self):
        """Every rank's loads and stores on the window so far are done and seen by all."""
        self.win.Sync()
        self.comm.Barrier()
        self.win.Sync()

    def next_slot(self):
        """The segments of this sum (one per rank), after a barrier; the next sum takes the next slot."""
        segs = self.slots[self.slot]
        self.slot = (self.slot + 1) % self.depth
        self.barrier()
        return segs

    def send_buffer(self):
        """This rank's segment for the next ``sum_into``: write the buffer to be summed here."""
        return self.slots[self.slot][self.rank]

    def sum_into(self, out):
        """``out[...] =`` the sum over ranks of what each wrote into its ``send_buffer()``."""
        segs = self.next_slot()
        if len(segs) == 2:
            # NOTE: two ranks: each sums both segments whole, in rank order (the same bits on
            # both). As many loads from the other's segment as the sliced sum's two phases, and
            # one barrier less.
            np.add(segs[0], segs[1], out=out)
            return
        a, b = self.bounds[self.rank]
        mine = segs[self.rank][a:b]
        for r, seg in enumerate(segs):
            if r != self.rank:
                mine += seg[a:b]
        self.barrier()
        for seg, (a, b) in zip(segs, self.bounds):
            out[a:b] = seg[a:b]


def _elementwise(optimizer) -> bool:
    """True when the optimizer's ``_update`` comes from a class that declares it elementwise
    (``Optimizer._elementwise``): a subclass that overrides ``_update`` must declare it again."""
    for klass in type(optimizer).__mro__:
        if "_update" in vars(klass):
            return bool(vars(klass).get("_elementwise", False))
    return False


class _ShardedUpdate:
    """Each rank updates its own slice of the parameters (ZeRO stage 1), in one machine's shared memory.

    The parameters, the averaged gradients and the optimizer's buffers exist once, as flat arrays
    in the region of the shared-memory window (rank 0's segment), and every rank's parameters,
    ``.grad`` and optimizer state are views into them. The flat range is cut into K contiguous
    slices (on 64-byte lines), one per rank. A step:

    1. (``DistributedOptimizer.synchronize`` and ``sum_own``) each rank's gradients are in its window
       segment: a linear layer's backward computed them there (``arm``: ``Parameter._grad_out``),
       others are copied in; its weight (share of the global batch) goes with them. A barrier;
       each rank sums its own slice of every segment, weighted, into the shared averaged gradients
       (a barrier more when other pre-step hooks follow, or ``synchronize()`` was called directly,
       so that everyone sees the whole average);
    2. (``update``, in place of the optimizer's loop) each rank copies its slice of the parameters
       into the next shared copy and runs the optimizer's own ``_update`` there, on its slice of
       every parameter, gradient and buffer; a barrier, after which every parameter is a view of
       the new copy.

    NOTE: why: with two processes on two cores, every rank used to sum and update all 235k
    parameters of the benchmark MLP, twice the work of one process; at global batch 256 that
    left two processes 1-4% behind one process with two BLAS threads. Each rank now moves half
    the gradients and updates half the parameters (BENCHMARKS.md, "the sharded update"). The
    copies in turn: updating the parameters in place, where the other rank had just read them,
    made the update twice as slow when the host put the two vCPUs on different caches.
    Only for elementwise optimizers (``Optimizer._elementwise``): SGD, Adam, AdamW, RMSprop.

    Every element is computed by one rank, so the ranks cannot disagree. A parameter or buffer
    given a new array (``load_state_dict`` after a resume) is taken back at the next update: each
    rank copies its slice of it into the shared one, and the view replaces it.
    """

    @staticmethod
    def layout(n, dtype, n_keys):
        """(stride, depth, region size) for n parameters: ``depth`` copies of the parameters, the
        averaged gradients and ``n_keys`` buffers, each flat array starting on a 64-byte line."""
        itemsize = np.dtype(dtype).itemsize
        per_line = max(1, 64 // itemsize)
        stride = -(-n // per_line) * per_line
        depth = _copies(n * itemsize)
        return stride, depth, (depth + 1 + n_keys) * stride

    def __init__(self, shared, optimizer, offsets):
        self.shared, self.optimizer = shared, optimizer
        k, r = shared.comm.Get_size(), shared.rank
        n = self.n = int(offsets[-1])
        keys = self.keys = tuple(type(optimizer)._state_keys)
        stride, self.depth, _ = self.layout(n, shared.dtype, len(keys))
        region = shared.region
        flat_params = [region[h * stride:h * stride + n] for h in range(self.depth)]
        base = self.depth * stride
        self.flat_grads = region[base:base + n]
        flat_states = [region[base + (1 + j) * stride:base + (1 + j) * stride + n] for j in range(len(keys))]
        self.a, self.b = _line_bounds(n, k, shared.dtype)[r]
        self.own_params = [f[self.a:self.b] for f in flat_params]
        self.param_views = [[] for _ in flat_params]   # [copy][parameter]
        self.param_slices = [[] for _ in flat_params]
        self.grad_views, self.state_views = [], []
        self.own, self.grad_slices, self.state_slices = [], [], []
        for i, p in enumerate(optimizer.params):
            o0, o1, shape = int(offsets[i]), int(offsets[i + 1]), p.data.shape
            s0, s1 = max(self.a, o0) - o0, min(self.b, o1) - o0
            lo, hi = (s0, s1) if s1 > s0 else (0, 0)  # this rank's slice of parameter i (may be empty)
            self.own.append((lo, hi))
            for h, f in enumerate(flat_params):
                self.param_views[h].append(f[o0:o1].reshape(shape))
                self.param_slices[h].append(f[o0 + lo:o0 + hi])
            self.grad_views.append(self.flat_grads[o0:o1].reshape(shape))
            self.state_views.append([f[o0:o1].reshape(shape) for f in flat_states])
            self.grad_slices.append(self.flat_grads[o0 + lo:o0 + hi])
            self.state_slices.append([f[o0 + lo:o0 + hi] for f in flat_states])
        # NOTE: the parameters become views of one shared copy: rank 0's values, as after broadcast_parameters
        self.copy = 0
        if r == 0:
            for p, view in zip(optimizer.params, self.param_views[0]):
                view[...] = p.data
        shared.barrier()
        for p, view in zip(optimizer.params, self.param_views[0]):
            p.data = view
        optimizer._sharded_update = self.update

    def sum_own(self, out):
        """Step 1's second half, once every rank wrote its segment (its gradients, zeros where it has
        none, and the tail of ``out``'s layout with its weight): the tail of ``out`` (flags, extras,
        weights, stop requests) summed over ranks, and this rank's slice of the weighted average."""
        segs, n = self.shared.next_slot(), self.n
        tail = out[n:]
        np.copyto(tail, segs[0][n:])
        for seg in segs[1:]:
            tail += seg[n:]
        a, b = self.a, self.b
        mine = self.flat_grads[a:b]
        weights = [seg[-2] for seg in segs]  # NOTE: each rank's own weight, from its own segment
        if all(w == weights[0] for w in weights):  # NOTE: equal shards: one scaling after the sum
            np.add(segs[0][a:b], segs[1][a:b], out=mine)
            for seg in segs[2:]:
                mine += seg[a:b]
            mine *= weights[0]
        else:
            np.multiply(segs[0][a:b], weights[0], out=mine)
            for seg, w in zip(segs[1:], weights[1:]):
                mine += seg[a:b] * w

    def arm(self, views):
        """Point every parameter's ``_grad_out`` at its place in this rank's next segment (``views``)."""
        for p, view in zip(self.optimizer.params, views):
            if hasattr(type(p), "_grad_out"):
                p._grad_out = view

    def update(self):
        """The optimizer's update of this rank's slice of every parameter that has a gradient, into the
        next copy of the parameters; then a barrier, after which every parameter is a view of that copy."""
        opt, keys = self.optimizer, self.keys
        cur, nxt = self.copy, (self.copy + 1) % self.depth
        for i, p in enumerate(opt.params):
            view = self.param_views[cur][i]
            if p._data is not view:  # NOTE: a new array (a load): this rank's slice goes into the shared copy
                lo, hi = self.own[i]
                view.reshape(-1)[lo:hi] = np.asarray(p._data, view.dtype).reshape(-1)[lo:hi]
        # NOTE: the update writes a new copy, not the one every rank read in this step's forward pass:
        # writing lines that the other core holds waits for it to give them up (0.45 ms per MB when the
        # host puts the two vCPUs on different caches); the copies in turn have left its cache by then
        np.copyto(self.own_params[nxt], self.own_params[cur])
        slices = self.param_slices[nxt]
        for i, (p, state) in enumerate(zip(opt.params, opt.state)):
            if p.grad is None:
                continue
            lo, hi = self.own[i]
            fulls, parts = self.state_views[i], self.state_slices[i]
            sliced = {}
            for key, full, part in zip(keys, fulls, parts):
                was = state.get(key)
                if was is None:
                    continue
                if was is not full:  # NOTE: as above, for a buffer (a resumed optimizer's state)
                    part[...] = np.asarray(was, full.dtype).reshape(-1)[lo:hi]
                    state[key] = full
                sliced[key] = part
            if "step" in state:
                sliced["step"] = state["step"]
            g = self.grad_slices[i]
            if p.grad is not self.grad_views[i]:  # NOTE: a later pre-step hook gave it a new gradient (clipping)
                g = np.ascontiguousarray(p.grad, g.dtype).reshape(-1)[lo:hi]
            opt._update(slices[i], g, sliced)
            for key, full, part in zip(keys, fulls, parts):
                made = sliced.get(key)
                if made is not None and made is not part:  # NOTE: created by this first update
                    part[...] = made
                    state[key] = full
            if "step" in sliced:
                state["step"] = sliced["step"]
            p._version += 1
        self.shared.barrier()
        for p, view in zip(opt.params, self.param_views[nxt]):
            p._data = view
        self.copy = nxt

    def release(self):
        """Give every parameter, gradient and buffer a private copy again, and the optimizer its own loop."""
        opt = self.optimizer
        for i, (p, state) in enumerate(zip(opt.params, opt.state)):
            if p._data is self.param_views[self.copy][i]:
                p._data = p._data.copy()
            for key, full in zip(self.keys, self.state_views[i]):
                if state.get(key) is full:
                    state[key] = full.copy()
            if p.grad is not None and p.grad.base is not None:  # NOTE: a view of the window: the average, or a segment
                p.grad = p.grad.copy()
            if hasattr(type(p), "_grad_out"):
                p._grad_out = None
        opt._sharded_update = None


def _shared_memory_sum(comm, n, dtype, wanted, n_region=0, who="shared_memory"):
    """A ``_SharedMemorySum`` over ``comm`` when every rank shares memory (and ``wanted`` allows),
    else None (then ``Allreduce``). Collective: every rank takes the same decision. ``n_region``:
    the size of the region for a sharded update (0: none); every rank must ask for the same."""
    if wanted is False or comm.Get_size() < 2:
        return None
    node = _node_comm(comm)
    # NOTE: the window's size per rank (_SharedMemorySum), and the region once
    nbytes = max(2 * n * np.dtype(dtype).itemsize, 8 << 20) + n_region * np.dtype(dtype).itemsize // node.Get_size()
    try:
        st = os.statvfs("/dev/shm")
        room = st.f_bavail * st.f_frsize > 4 * nbytes * node.Get_size()
    except OSError:
        room = True  # NOTE: no /dev/shm to ask (not Linux): the MPI library knows where it puts windows
    global _spare_sum
    spare = _spare_sum
    fits = (spare is not None and spare.comm is node and spare.n == n and spare.dtype == np.dtype(dtype)
            and spare.n_region == n_region)
    # NOTE: one exchange decides both, the same way on every rank: shared memory at all, and
    # whether every rank can reuse the window a removed optimizer left (windows are never freed:
    # MPI_Win_free is collective, and a rank that raised must not enter a collective on its way out)
    local = np.array([node.Get_size() == comm.Get_size() and room, fits], dtype=np.int64)
    agreed = np.empty_like(local)
    comm.Allreduce(local, agreed, op=_mpi().MIN)
    if not agreed[0]:
        if wanted:
            raise RuntimeError(f"DistributedOptimizer({who}=True): "
                               "expected every rank on one machine "
                               f"with room in /dev/shm for {nbytes * node.Get_size() / 1e6:.1f} MB, received "
                               f"{node.Get_size()} of {comm.Get_size()} ranks sharing memory")
        return None
    if agreed[1]:
        _spare_sum = None
        return spare
    return _SharedMemorySum(node, n, dtype, n_region)


class DistributedOptimizer:
    """Average gradients over all ranks before every update of ``optimizer``.

    One sum over ranks per step of one flat buffer that is allocated once: each rank writes
    ``w * grad`` for every parameter (zeros where it has no gradient), one flag per parameter
    saying it has one, and its weight ``w = shard_size / batch_len`` (its share of the global
    batch), so the sum is the average weighted by shard size: the gradient of the mean loss over
    the global batch. A parameter that has a gradient on any rank gets the averaged one on all
    ranks; one that has none anywhere keeps ``grad = None`` (so ``step`` skips it everywhere,
    consistently). The gradients become views into the flat result buffer.

    The sum is one upper-case (buffer-based, no pickling) ``Allreduce``, except when every rank
    runs on one machine: then the ranks sum through an MPI-3 shared-memory window (barriers and
    plain loads and stores; ``shared_memory``): on the 2-core benchmark machine, 0.4-0.6 ms less
    per step than MPICH's ``Allreduce`` when the host puts the two vCPUs on different caches, and
    about the same otherwise. Both give the same bits on every rank. On shared memory each rank
    also updates only its slice of the parameters by default (``shard_update``).

    Parameters
    ----------
    optimizer : gradbox.optim.Optimizer
    sampler : ShardedSampler or None
        Its ``shard_size`` and ``batch_len`` weigh this rank's gradient (a sampler without
        ``batch_len`` has the shard sizes summed in the exchange). Without a sampler every rank
        weighs ``1 / size`` (Horovod's plain average): right only when the shards are equal.
    comm : mpi4py communicator or None
    n_extras : int
        Numbers of the caller's carried by the same exchange (see below).
    shared_memory : bool or None
        None (default): the shared-memory sum when every rank of ``comm`` shares one machine's
        memory, else ``Allreduce``. True: require it. False: always ``Allreduce``. Unless False,
        constructing the optimizer is collective (every rank of ``comm`` must construct it); the
        window takes, per rank, 2 to 8 times the gradients' size (at most the larger of 8 MiB
        and twice that size), until the process ends.
    shard_update : bool or None
        None (default): with the shared-memory sum and an elementwise optimizer (``SGD``,
        ``Adam``, ``AdamW``, ``RMSprop``) over parameters of one dtype, each rank sums and updates
        only its 1/K slice of the parameters (ZeRO stage 1, in shared memory); else every rank
        sums and updates all of them. True: require it. False: never. The results are the same
        (each element's average and update are the same operations, computed on one rank). While
        it runs, the parameters, their ``.grad`` and the optimizer's buffers are views of shared
        memory on the machine, starting from rank 0's parameters: a rank that writes into them
        writes for every rank. Each step writes the parameters into the next of up to 8 shared
        copies (at most 8 MiB of them, at least 2), so ``p.data`` is a new array after each step:
        read it again rather than keep an old reference. Rank 0's window holds those copies, the
        averaged gradients and the buffers (for the benchmark MLP with SGD: 10 x 0.94 MB).
        ``remove()`` gives each rank private copies again.

    The averaging runs in the optimizer's pre-step hook (``register_step_pre_hook``), so code that
    holds the wrapped optimizer and calls its ``step()`` (a ``Trainer``) averages too; ``step()``
    here is the optimizer's. Other attributes (``lr``, ``zero_grad``, ``state_dict``, ...) are the
    optimizer's too. ``step(closure)`` is refused: the hook runs before the closure computes the
    gradients, so it would average the previous ones.

    The same exchange carries a stop request (``request_stop()``; ``stop_requested``), so that
    all ranks stop after the same step, and ``n_extras`` numbers of the caller's (``extras``, set
    before ``step()``; their sum over ranks in ``extras_sum`` after it, in the gradients' dtype):
    a trainer's running loss and accuracy sums, without a second collective per step.
    """

    def __init__(self, optimizer, sampler=None, comm=None, *, n_extras=0, shared_memory=None, shard_update=None):
        from .optim import Optimizer

        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"DistributedOptimizer(optimizer): expected a gradbox.optim.Optimizer, "
                            f"received {type(optimizer).__name__}")
        if sampler is not None and not hasattr(sampler, "shard_size"):
            raise TypeError(f"DistributedOptimizer(sampler): expected a ShardedSampler, "
                            f"received {type(sampler).__name__}")
        if shared_memory is not None and not isinstance(shared_memory, bool):
            raise TypeError(f"DistributedOptimizer(shared_memory): expected True, False or None (automatic), "
                            f"received {shared_memory!r}")
        if shard_update is not None and not isinstance(shard_update, bool):
            raise TypeError(f"DistributedOptimizer(shard_update): expected True, False or None (automatic), "
                            f"received {shard_update!r}")
        self.optimizer = optimizer
        self.sampler = sampler
        self.comm = comm if comm is not None else _require_comm("DistributedOptimizer")
        self._MPI = _mpi()
        params = optimizer.params
        dtypes = {p.data.dtype for p in params}
        self.dtype = dtypes.pop() if len(dtypes) == 1 else np.dtype(np.float64)
        sizes = [p.data.size for p in params]
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        n_grad = int(self._offsets[-1])
        n_flags, n_extras = len(params), check("DistributedOptimizer", "n_extras", n_extras, non_negative_int)
        # layout: [all gradients | one flag per parameter | extras | this rank's weight | its stop request]
        n = n_grad + n_flags + n_extras + 2
        self._buffer = np.zeros(n, dtype=self.dtype)  # the sum; the gradients are views into it
        self._grads = self._buffer[:n_grad]
        self._flags = self._buffer[n_grad:n_grad + n_flags]
        self._extras = self._buffer[n_grad + n_flags:n_grad + n_flags + n_extras]
        self.extras = np.zeros(n_extras)       # this rank's values, set before step()
        self.extras_sum = np.zeros(n_extras)   # their sum over ranks, after step()
        self._own = self._layout(self._buffer)  # (buffer, views, flags, extras) of the result buffer
        self._views = self._own[1]
        # NOTE: the sharded update needs an elementwise optimizer over contiguous parameters of one dtype
        shardable = (shared_memory is not False and _elementwise(optimizer)
                     and all(p.data.dtype == self.dtype and p.data.flags.c_contiguous for p in params))
        if shard_update and not shardable:
            raise ValueError(f"DistributedOptimizer(shard_update=True): expected SGD, Adam, AdamW or RMSprop over "
                             f"contiguous parameters of one dtype, and shared memory allowed, received "
                             f"{type(optimizer).__name__} over dtypes {sorted({str(p.data.dtype) for p in params})}"
                             f"{' with shared_memory=False' if shared_memory is False else ''}")
        n_region = (_ShardedUpdate.layout(n_grad, self.dtype, len(type(optimizer)._state_keys))[2]
                    if shardable and shard_update is not False else 0)
        self._shared = _shared_memory_sum(self.comm, n, self.dtype, True if shard_update else shared_memory,
                                          n_region, "shard_update" if shard_update else "shared_memory")
        self._zero = None
        if self._shared is not None and self._shared.n_region:
            self._zero = _ShardedUpdate(self._shared, optimizer, self._offsets)
        # what each rank writes: the result buffer itself (Allreduce in place), or, for the
        # shared-memory sum, the slots of its window segment in turn
        if self._shared is None:
            self._send = [self._own]
        else:
            self._send = [self._layout(slot[self._shared.rank]) for slot in self._shared.slots]
        if self._zero is not None:
            self._zero.arm(self._send[self._shared.slot][1])
        self._stop_local = False
        self.stop_requested = False
        self._handle = optimizer.register_step_pre_hook(self._pre_step)

    def _layout(self, flat):
        """(flat, one view per parameter, the flags, the extras) of a buffer laid out as ``_buffer``."""
        params = self.optimizer.params
        n_grad, n_flags, n_extras = int(self._offsets[-1]), len(params), len(self.extras)
        views = [flat[a:b].reshape(p.data.shape) for a, b, p in zip(self._offsets[:-1], self._offsets[1:], params)]
        return flat, views, flat[n_grad:n_grad + n_flags], flat[n_grad + n_flags:n_grad + n_flags + n_extras]

    @property
    def shared_memory(self) -> bool:
        """True when the gradients are summed through shared memory rather than ``Allreduce``."""
        return self._shared is not None

    @property
    def shard_update(self) -> bool:
        """True when each rank updates only its slice of the parameters (see ``shard_update`` above)."""
        return self._zero is not None

    def __getattr__(self, name):
        # NOTE: only reached for names this wrapper lacks: the optimizer's hyperparameters and methods.
        if name == "optimizer":
            raise AttributeError(name)
        return getattr(self.optimizer, name)

    def _pre_step(self, optimizer, args, kwargs):
        if args or kwargs.get("closure") is not None:
            raise ValueError(f"{type(optimizer).__name__}.step(closure): expected no closure under "
                             "DistributedOptimizer (gradients are averaged before the step), received one")
        # NOTE: sharded, the step's own barrier (after the update) completes the gradients for anyone
        # reading them after the step; a hook after this one reads them before it, so it needs one here
        self._synchronize(complete=len(optimizer._step_pre_hooks) > 1)
        return None

    def synchronize(self):
        """Average the gradients across ranks now (the pre-step hook calls this)."""
        self._synchronize(complete=True)

    def _synchronize(self, complete):
        sampler = self.sampler
        if sampler is None:
            weight, folded = 1.0 / self.comm.Get_size(), True
        else:
            batch_len = getattr(sampler, "batch_len", 0)
            folded = batch_len > 0
            # NOTE: the share of the global batch, applied while copying in: the sum is then the
            # average, with no second pass over the buffer (a sampler without batch_len has the
            # shard sizes summed in the exchange and divided afterwards)
            weight = sampler.shard_size / batch_len if folded else float(sampler.shard_size)
        send, views, flags, extras = self._send[self._shared.slot if self._shared is not None else 0]
        zero = self._zero
        for i, (p, view) in enumerate(zip(self.optimizer.params, views)):
            g = p.grad
            if g is None or weight == 0.0:
                view.fill(0)
                flags[i] = 0
                continue
            flags[i] = 1
            if zero is None:
                np.multiply(g, weight, out=view)  # NOTE: in place when g is already this view
            elif g is not view:
                # NOTE: sharded: the gradient as it is, weighed in the sum; usually already here (the
                # backward computed it into this segment: Parameter._grad_out)
                np.copyto(view, g)
        extras[...] = self.extras
        self.extras[...] = 0  # NOTE: a step whose caller set nothing sends zeros, not the last step's values
        send[-2] = weight
        send[-1] = 1.0 if self._stop_local else 0.0
        if zero is not None:
            zero.sum_own(self._buffer)
        elif self._shared is not None:
            self._shared.sum_into(self._buffer)
        else:
            self.comm.Allreduce(self._MPI.IN_PLACE, self._buffer)
        self.stop_requested = bool(self._buffer[-1] > 0)
        self.extras_sum = self._extras.astype(np.float64)
        if not folded:
            total = float(self._buffer[-2])
            if total > 0:
                if zero is not None:
                    zero.flat_grads[zero.a:zero.b] *= 1.0 / total
                else:
                    self._grads *= 1.0 / total
        for p, view, flag in zip(self.optimizer.params, self._views if zero is None else zero.grad_views, self._flags):
            p.grad = view if flag > 0 else None
        if zero is not None:
            if complete:
                self._shared.barrier()  # NOTE: every rank's slice of the average written
            zero.arm(self._send[self._shared.slot][1])

    def request_stop(self):
        """Ask every rank to stop: from the next exchange on, ``stop_requested`` is True on all ranks.

        Safe in a signal handler (it sets a flag). ``mpiexec`` forwards SIGINT and SIGTERM to every
        rank, but each sees it at its own moment; the flag travels in the gradient exchange, so all
        ranks agree on the step after which they stop (and can write one consistent checkpoint).
        """
        self._stop_local = True

    def step(self, *args, **kwargs):
        return self.optimizer.step(*args, **kwargs)

    def remove(self):
        """Stop averaging (removes the pre-step hook).

        A shared-memory window goes to the next ``DistributedOptimizer`` of the same size (a
        ``fit()`` after another); ``synchronize()`` here then uses ``Allreduce``.
        """
        global _spare_sum
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if self._zero is not None:
            self._zero.release()
            self._zero = None
        if self._shared is not None:
            _spare_sum, self._shared = self._shared, None
            self._send = [self._own]


def wanted(distributed=None) -> bool:
    """Whether a training call runs data-parallel, from its ``distributed`` argument.

    ``None`` (automatic): yes when a launcher started more than one process (``launched_size()``),
    which then needs mpi4py (``ImportError`` naming the extra: K lone copies would each train
    alone and write the same files). ``True``: yes, and a world of one process is an error.
    ``False``: no.
    """
    if distributed is None:
        if launched_size() <= 1:
            return False
        _mpi()
        return size() > 1
    if not isinstance(distributed, bool):
        raise TypeError(f"distributed: expected True, False or None (automatic), received {distributed!r}")
    if distributed:
        init(require_parallel=True)
    return distributed


def sync_generator(rng, root=0):
    """Give ``rng`` (a ``numpy.random.Generator``) rank ``root``'s state on every rank, in place.

    A trainer seeded with ``seed=None`` draws its own entropy on each rank; the shuffled order must
    nevertheless be one order.
    """
    c = _require_comm("sync_generator")
    rng.bit_generator.state = c.bcast(rng.bit_generator.state, root=root)
    return rng


def _has_batch_norm(model):
    from .nn.normalization import _BatchNorm

    return any(isinstance(m, _BatchNorm) for m in model.modules())


def _install_world(world):
    """Make ``world`` the answer of ``gradbox._world`` (which process writes files and prints)."""
    try:
        from . import _world
    except ImportError:  # NOTE: a gradbox without the one-writer seam (issue 12) has nothing to tell
        return
    _world.set_world(world)


class DataParallel:
    """What a training loop needs to run data-parallel, set up in one call (``fit()`` uses it).

    On construction: the ranks check that they hold the same data (``check_same_data``), take
    rank 0's parameters and buffers (``broadcast_parameters``), agree on the shuffle generator
    (``sync_generator``), and derive per-rank dropout streams from the seed and the rank
    (``seed_rank_stream``); then ``sampler`` shards the global batches and ``optimizer`` (a
    ``DistributedOptimizer`` hooked onto ``optimizer``) averages the gradients, carrying three
    extras per step: the summed loss, correct count and sample count of the global batch.

    Parameters
    ----------
    model, optimizer : Module, Optimizer
    X, y : arrays
        The training data, the same on every rank.
    shuffle : bool
    rng : numpy.random.Generator or None
        The shuffle generator (a trainer's own, so its checkpointed state is the global order's);
        default one from ``seed``.
    seed : int or None
        For the dropout streams (rank 0 draws one when None).
    step : int
        Optimizer steps already done (a resumed run): the dropout streams start from there.
    sampler_state : dict or None
        A sampler's ``state_dict()`` to continue (a resumed epoch's order).
    require_parallel : bool
        Raise when the world has one process.
    """

    def __init__(self, model, optimizer, X, y, *, shuffle=True, rng=None, seed=None, step=0,
                 sampler_state=None, require_parallel=False, comm=None):
        self.comm = init(comm, require_parallel=require_parallel)
        _install_world(self)  # NOTE: from here on only rank 0 writes files and prints
        r, k = self.comm.Get_rank(), self.comm.Get_size()
        check_same_data(X, y)
        broadcast_parameters(model)
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        self.sampler = ShardedSampler(len(X), shuffle=shuffle, seed=self.rng, rank=r, size=k)
        if sampler_state is not None:
            self.sampler.load_state_dict(sampler_state)
        sync_generator(self.rng)
        if self.sampler.order is not None:
            self.comm.Bcast(self.sampler.order, root=0)
        if seed is None:
            seed = self.comm.bcast(int(np.random.default_rng().integers(2**31)) if r == 0 else None, root=0)
        self.seed = int(seed)
        seed_rank_stream(self.seed, step)
        self.optimizer = DistributedOptimizer(optimizer, sampler=self.sampler, comm=self.comm, n_extras=3)
        global _batch_stats_sync
        _batch_stats_sync = BatchStatsSync(self.comm)  # NOTE: BatchNorm normalises over the global batch

    @classmethod
    def for_trainer(cls, trainer, X, y, *, require_parallel=False):
        """Set up ``trainer`` (a ``gradbox.train.Trainer``) for this world; ``close()`` undoes it.

        Its sampler (a ``RandomSampler``) is replaced by a ``ShardedSampler`` on the same
        generator and epoch order; its optimizer averages through the pre-step hook.
        """
        from .train.sampler import RandomSampler

        original = trainer.sampler
        if not isinstance(original, (RandomSampler, ShardedSampler)):
            raise TypeError(f"distributed: expected the trainer's own RandomSampler to shard, received a "
                            f"{type(original).__name__} (shard it yourself and pass distributed=False)")
        k = init(require_parallel=require_parallel).Get_size()
        n = len(X)
        bs = min(trainer.batch_size or n, n)
        smallest = min(bs, n % bs or bs)
        if smallest < k and _has_batch_norm(trainer.model):
            # NOTE: a rank with an empty shard runs no forward pass, but BatchNorm's statistics
            # exchange needs every rank
            raise ValueError(f"distributed: expected every global batch to hold at least {k} samples (one per "
                             f"rank) with BatchNorm layers, received batch_size={trainer.batch_size} on {n} "
                             f"samples (smallest batch {smallest}); choose a batch size whose last batch is "
                             f"not smaller than {k}")
        dp = cls(trainer.model, trainer.optimizer, X, y, shuffle=original.shuffle, rng=original.rng,
                 seed=trainer.seed, step=trainer.global_step, sampler_state=original.state_dict(),
                 require_parallel=require_parallel)
        dp._trainer, dp._original_sampler = trainer, original
        trainer.sampler = dp.sampler
        return dp

    def rank(self):  # the world protocol of gradbox._world
        return self.comm.Get_rank()

    def size(self):
        return self.comm.Get_size()

    def shard(self, batch):
        """This rank's part of a global batch of indices."""
        return self.sampler.shard(batch)

    def set_metrics(self, loss_sum, correct, seen):
        """This rank's contribution to the step's metrics (sent with the gradients)."""
        self.optimizer.extras[:] = (loss_sum, correct, seen)

    def step_metrics(self):
        """(loss_sum, correct, seen) of the global batch, after the step."""
        s = self.optimizer.extras_sum
        return float(s[0]), int(round(s[1])), int(round(s[2]))

    def close(self):
        """Stop averaging (removes the optimizer's hook); a trainer gets its own sampler back, in step."""
        global _batch_stats_sync
        _batch_stats_sync = None
        self.optimizer.remove()
        trainer = getattr(self, "_trainer", None)
        if trainer is not None:
            self._original_sampler.load_state_dict(self.sampler.state_dict())
            trainer.sampler = self._original_sampler
            self._trainer = None


class BatchStatsSync:
    """Batch statistics over the global batch, for batch normalisation under data parallelism.

    What PyTorch's ``SyncBatchNorm`` exchanges, as two small collectives per layer and step:

    * forward, ``stats(x, axes)``: one ``Allgather`` of each rank's per-channel count, mean and sum
      of squared deviations, merged as Chan et al. (stable in float32): the global mean and
      (biased) variance, the global count M, and this rank's share ``w = m / M``.
    * backward, ``grad_sums(s1, s2, w)``: one ``Allreduce`` of ``w * s1`` and ``w * s2`` (the
      per-channel sums of dx̂ and dx̂·x̂). Each rank's gradient is that of its own shard's mean loss
      L_r, and ``DistributedOptimizer`` weighs rank r by ``w_r``: the objective is ``Σ w_r L_r``,
      whose dx̂ on rank r is ``w_r·dx̂_r``, hence the weighted sums. Used in place of the local sums
      in ``dx = (1/σ)/m · (m·dx̂ - Σdx̂ - x̂·Σ(dx̂·x̂))`` with this rank's own count m (= w_r·M, which
      brings the result back to L_r's scale), they give what one process computes on the global
      batch.

    A rank whose shard is empty must still call both (with zero counts and sums).
    """

    def __init__(self, comm=None):
        self.comm = comm if comm is not None else _require_comm("BatchStatsSync")
        self._MPI = _mpi()

    def stats(self, x, axes):
        """(mean, var, M, w) over every rank's ``x`` along ``axes`` (the channel axis kept)."""
        x = np.asarray(x)
        c = x.shape[1]
        m = x.size // c if c else 0
        local = np.zeros((3, c), np.float64)
        local[0] = m
        if m:
            mean = x.mean(axis=axes, dtype=np.float64)
            d = x - mean.reshape((1, -1) + (1,) * (x.ndim - 2))
            local[1] = mean
            local[2] = (d * d).sum(axis=axes, dtype=np.float64)
        gathered = np.empty((self.comm.Get_size(), 3, c), np.float64)
        self.comm.Allgather(local, gathered)
        counts, means, m2s = gathered[:, 0], gathered[:, 1], gathered[:, 2]
        total = counts.sum(axis=0)
        gmean = (counts * means).sum(axis=0) / total
        gm2 = m2s.sum(axis=0) + (counts * (means - gmean) ** 2).sum(axis=0)
        var = gm2 / total
        return gmean.astype(x.dtype), var.astype(x.dtype), int(total[0]), m / float(total[0])

    def grad_sums(self, s1, s2, weight):
        """The global weighted ``(Σ w·dx̂, Σ w·dx̂·x̂)`` (see the class notes)."""
        buf = np.concatenate([np.ravel(s1), np.ravel(s2)]).astype(np.float64) * weight
        self.comm.Allreduce(self._MPI.IN_PLACE, buf)
        c = np.size(s1)
        return (buf[:c].reshape(np.shape(s1)).astype(np.asarray(s1).dtype),
                buf[c:].reshape(np.shape(s2)).astype(np.asarray(s2).dtype))
