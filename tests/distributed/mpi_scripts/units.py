"""Small checks under mpiexec; each prints "OK <name>" on rank 0. usage: mpiexec -n K python units.py"""
import numpy as np

import gradbox as gb
from gradbox import distributed as dist

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

# flags: a parameter with a gradient on rank 0 only is averaged on all ranks; one without any stays None
a, b, c = (gb.nn.Parameter(np.ones(3)) for _ in range(3))
opt = dist.DistributedOptimizer(gb.optim.SGD([a, b, c], lr=1.0))
(a * (r + 1.0)).sum().backward()
if r == 0:
    (b * 6.0).sum().backward()
opt.synchronize()
assert np.allclose(a.grad, sum(range(1, k + 1)) / k), a.grad
assert np.allclose(b.grad, 6.0 / k), b.grad
assert c.grad is None
if r == 0:
    print("OK flags", flush=True)

# the hook: the wrapped optimizer's own step() averages too
p = gb.nn.Parameter(np.zeros(2))
opt = dist.DistributedOptimizer(gb.optim.SGD([p], lr=1.0))
(p * float(r)).sum().backward()
opt.optimizer.step()
assert np.allclose(p.data, -(k - 1) / 2), p.data
opt.remove()
p.grad = np.full(2, float(r))
opt.optimizer.step()  # no longer averaged
assert np.allclose(p.data, -(k - 1) / 2 - r), p.data
if r == 0:
    print("OK hook", flush=True)

# weights: shard sizes 3 and 1 (and 0 elsewhere) give the weighted mean of the per-rank gradients


class FakeSampler:
    shard_size = [3, 1][r] if r < 2 else 0


w = gb.nn.Parameter(np.zeros(2))
opt = dist.DistributedOptimizer(gb.optim.SGD([w], lr=1.0), sampler=FakeSampler())
if FakeSampler.shard_size:
    (w * float(r + 1)).sum().backward()
opt.synchronize()
assert np.allclose(w.grad, (3 * 1.0 + 1 * 2.0) / 4), w.grad
if r == 0:
    print("OK weights", flush=True)

# a stop requested on one rank is seen by all after the same exchange
assert not opt.stop_requested
if r == k - 1:
    opt.request_stop()
opt.synchronize()
assert opt.stop_requested
if r == 0:
    print("OK stop", flush=True)

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
