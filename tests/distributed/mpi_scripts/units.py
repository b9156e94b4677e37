"""Small checks under mpiexec; each prints "OK <name>" on rank 0. usage: mpiexec -n K python units.py"""
import numpy as np

import gradbox as gb
from gradbox import distributed as dist
from common import shared_memory_expected

dist.init()
r, k = dist.rank(), dist.size()


class WithBuffer(gb.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = gb.nn.Linear(3, 2, dtype=np.float64)
        self.register_buffer("stats", np.full(4, float(dist.rank())))


# broadcast: parameters and buffers take rank 0's values
m = WithBuffer()
m.lin.weight.data[...] = r + 1.0
dist.broadcast_parameters(m, root=0)
assert np.all(m.lin.weight.data == 1.0) and np.all(m.stats == 0.0), (m.lin.weight.data, m.stats)
if r == 0:
    print("OK broadcast", flush=True)

# the same checks for both ways of summing: the shared-memory window (the default on one machine) and Allreduce
for shared in (None, False):
    # flags: a parameter with a gradient on rank 0 only is averaged on all ranks; one without any stays None
    a, b, c = (gb.nn.Parameter(np.ones(3)) for _ in range(3))
    opt = dist.DistributedOptimizer(gb.optim.SGD([a, b, c], lr=1.0), shared_memory=shared)
    if shared_memory_expected():  # NOTE: every rank runs on this machine, with room in /dev/shm
        assert opt.shared_memory is (shared is None), (shared, opt.shared_memory)
    for _ in range(10):  # NOTE: more sums than the window's slots (at most 8), so that they come round again
        opt.zero_grad()
        (a * (r + 1.0)).sum().backward()
        if r == 0:
            (b * 6.0).sum().backward()
        opt.synchronize()
        assert np.allclose(a.grad, sum(range(1, k + 1)) / k), a.grad
        assert np.allclose(b.grad, 6.0 / k), b.grad
        assert c.grad is None

    # the hook: the wrapped optimizer's own step() averages too
    p = gb.nn.Parameter(np.zeros(2))
    opt = dist.DistributedOptimizer(gb.optim.SGD([p], lr=1.0), shared_memory=shared)
    (p * float(r)).sum().backward()
    opt.optimizer.step()
    assert np.allclose(p.data, -(k - 1) / 2), p.data
    opt.remove()
    p.grad = np.full(2, float(r))
    opt.optimizer.step()  # no longer averaged
    assert np.allclose(p.data, -(k - 1) / 2 - r), p.data

    # weights: shard sizes 3 and 1 (and 0 elsewhere) give the weighted mean of the per-rank gradients,
    # from a sampler that gives only shard_size (the sizes summed in the exchange) and from one that
    # also gives the global batch's length (each rank's share applied before the sum)
    class FakeSampler:
        shard_size = [3, 1][r] if r < 2 else 0

    class FakeShardedSampler(FakeSampler):
        batch_len = 4

    for sampler in (FakeSampler(), FakeShardedSampler()):
        w = gb.nn.Parameter(np.zeros(2))
        opt = dist.DistributedOptimizer(gb.optim.SGD([w], lr=1.0), sampler=sampler, shared_memory=shared)
        if sampler.shard_size:
            (w * float(r + 1)).sum().backward()
        opt.synchronize()
        assert np.allclose(w.grad, (3 * 1.0 + 1 * 2.0) / 4), (type(sampler).__name__, w.grad)

    # a stop requested on one rank is seen by all after the same exchange
    assert not opt.stop_requested
    if r == k - 1:
        opt.request_stop()
    opt.synchronize()
    assert opt.stop_requested

    # every rank gets the same bits (float32 random gradients over several steps, extras too)
    rng = np.random.default_rng(r)
    ps = [gb.nn.Parameter(np.zeros(s, np.float32)) for s in (1000, 37, 3)]
    opt = dist.DistributedOptimizer(gb.optim.SGD(ps, lr=1.0), shared_memory=shared, n_extras=2)
    for _ in range(10):
        for q in ps:
            q.grad = rng.normal(size=q.data.shape).astype(np.float32)
        inputs = dist.comm().allgather(np.concatenate([q.grad.ravel() for q in ps]))
        opt.extras[:] = (r, 1.0)
        opt.synchronize()
        got = np.concatenate([q.grad.ravel() for q in ps])
        assert len(set(dist.comm().allgather(got.tobytes()))) == 1  # the same bits on every rank
        np.testing.assert_allclose(got, np.mean(inputs, axis=0), rtol=1e-6, atol=1e-6)
        assert np.allclose(opt.extras_sum, [k * (k - 1) / 2, k]), opt.extras_sum
    if r == 0:
        print("OK", "sum_shared_memory" if shared is None else "sum_allreduce", flush=True)
if r == 0:
    for name in ("flags", "hook", "weights", "stop", "bits"):
        print("OK", name, flush=True)

# a removed optimizer's window goes to the next one of the same size (a fit() after another), and
# the removed one still averages, through Allreduce (checked where the window is the automatic choice)
if shared_memory_expected():
    p = gb.nn.Parameter(np.zeros(4))
    first = dist.DistributedOptimizer(gb.optim.SGD([p], lr=1.0))
    window = first._shared
    first.remove()
    second = dist.DistributedOptimizer(gb.optim.SGD([gb.nn.Parameter(np.zeros(4))], lr=1.0))
    assert window is not None and second._shared is window and not first.shared_memory
    third = dist.DistributedOptimizer(gb.optim.SGD([gb.nn.Parameter(np.zeros(4))], lr=1.0))
    assert third.shared_memory and third._shared is not window  # the window is in use: a new one
    for opt in (first, second, third):
        q = opt.optimizer.params[0]
        q.grad = np.full(4, float(r))
        opt.synchronize()
        assert np.allclose(q.grad, (k - 1) / 2), q.grad
    if r == 0:
        print("OK reuse", flush=True)

    # the window's pages are mapped when it is created, not during the first sums (each slot's first
    # use cost a page fault per 4 KiB page of every rank's segment: ~3,700 for the benchmark's MLP)
    import mmap
    import resource

    q = gb.nn.Parameter(np.zeros(100_000, np.float32))
    opt = dist.DistributedOptimizer(gb.optim.SGD([q], lr=1.0))
    depth, pages = opt._shared.depth, q.data.nbytes // mmap.PAGESIZE
    grad = np.full(q.data.shape, float(r), np.float32)
    q.grad = grad
    opt.synchronize()  # NOTE: the first sum writes the private result buffer (np.zeros maps it lazily)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(depth):
        q.grad = grad
        opt.synchronize()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert depth == 8 and faults < pages, (depth, faults, pages)  # without: about (depth - 1) * k * pages
    assert np.allclose(q.grad, (k - 1) / 2), q.grad
    if r == 0:
        print("OK prefault", flush=True)

try:
    dist.DistributedOptimizer(gb.optim.SGD([gb.nn.Parameter(np.zeros(1))], lr=1.0), shared_memory="yes")
except TypeError as exc:
    assert "DistributedOptimizer(shared_memory): expected True, False or None (automatic), received 'yes'" in str(exc)
    if r == 0:
        print("OK bad_shared_memory", flush=True)

# metrics helper
s = dist.allreduce(np.array([1.0, r]))
assert np.allclose(s, [k, k * (k - 1) / 2]) and np.allclose(dist.allreduce(np.ones(2), average=True), 1.0)
if r == 0:
    print("OK allreduce", flush=True)

# seed_rank_stream: different dropout streams on different ranks, reproducible
dist.seed_rank_stream(5)
draw = gb.random.default_generator().random(4)
allg = dist.comm().allgather(draw)
dist.seed_rank_stream(5)
assert np.array_equal(draw, gb.random.default_generator().random(4))
assert len({a.tobytes() for a in allg}) == k
if r == 0:
    print("OK streams", flush=True)

# a different model structure on one rank is an error on every rank, not a truncated broadcast
other = gb.nn.Linear(3, 2 if r == 0 else 4)
try:
    dist.broadcast_parameters(other)
except ValueError as exc:
    msg = dist.comm().allgather(str(exc))
    if r == 0:
        assert all("expected the same model structure on every rank" in m for m in msg), msg
        print("OK structure", flush=True)
