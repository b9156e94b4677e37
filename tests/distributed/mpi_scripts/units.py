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

for name in ("shared_memory", "shard_update"):
    try:
        dist.DistributedOptimizer(gb.optim.SGD([gb.nn.Parameter(np.zeros(1))], lr=1.0), **{name: "yes"})
    except TypeError as exc:
        assert f"DistributedOptimizer({name}): expected True, False or None (automatic), received 'yes'" in str(exc)
    else:
        raise AssertionError(f"{name}='yes' accepted")
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

# the sharded update (the default on shared memory with SGD, Adam, AdamW, RMSprop): each rank sums and
# updates its slice of the parameters, and the result is the one every rank computing everything gives
if shared_memory_expected():
    def adam_run(shard, start_apart=False):
        rng = np.random.default_rng(0)
        ps = [gb.nn.Parameter(rng.normal(size=s)) for s in ((40, 3), (7,), (1,))]
        if start_apart and r != 0:
            for q in ps:
                q.data[...] = 5.0  # NOTE: sharded, the parameters become one copy holding rank 0's values
        opt = dist.DistributedOptimizer(gb.optim.Adam(ps, lr=0.1), shard_update=shard)
        assert opt.shard_update is (shard is not False), (shard, opt.shard_update)
        seen = []
        def later_hook(o, a, kw):  # NOTE: sees the whole average, and may replace it (clipping, say)
            seen.append([q.grad.copy() for q in ps])
            for q in ps[:2]:
                q.grad = q.grad * 0.5

        hook = opt.optimizer.register_step_pre_hook(later_hook)
        grng = np.random.default_rng(100 + r)
        for step in range(11):  # NOTE: more steps than the shared copies of the parameters (at most 8)
            grads = [grng.normal(size=q.data.shape) for q in ps]
            for q, g in zip(ps, grads):
                q.grad = g
            if step in (3, 9):
                # a resumed run: the optimizer's state and a parameter get new (private) arrays
                opt.load_state_dict(opt.state_dict())
                ps[1].data = ps[1].data.copy()
            opt.step()
            mean = np.mean(dist.comm().allgather(np.concatenate([g.ravel() for g in grads])), axis=0)
            got = np.concatenate([g.ravel() for g in seen[-1]])
            np.testing.assert_allclose(got, mean, rtol=1e-13, atol=1e-15)  # a later hook sees the whole average
        hook.remove()
        if opt.shard_update:
            z = opt._zero
            assert z.depth == 8 and z.copy == 11 % 8, (z.depth, z.copy)
            assert all(q.data is v for q, v in zip(ps, z.param_views[z.copy]))  # taken back after the new arrays
            assert all(s_["exp_avg"] is v[0] for s_, v in zip(opt.optimizer.state, z.state_views))
            views = [v for vs in z.param_views + z.state_views for v in vs] + z.grad_views
        sd = opt.state_dict()
        out = [q.data.copy() for q in ps]
        opt.remove()
        if shard is not False:  # private again
            mine = [q.data for q in ps] + [q.grad for q in ps] + [a for s_ in opt.optimizer.state
                                                                  for k_, a in s_.items() if k_ != "step"]
            assert not any(np.shares_memory(a, v) for a in mine for v in views)
        return out, sd

    for start_apart in (False, True):
        (w1, sd1), (w0, sd0) = adam_run(None, start_apart), adam_run(False)
        for a, b in zip(w1, w0):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
        assert sd1["state"].keys() == sd0["state"].keys()
        for key, a in sd1["state"].items():
            np.testing.assert_allclose(a, sd0["state"][key], rtol=1e-13, atol=1e-15)
        assert len(set(dist.comm().allgather(b"".join(a.tobytes() for a in w1)))) == 1
    # a linear layer's backward computes its gradients straight into this rank's segment of the window
    # (Parameter._grad_out), every step, and the steps equal the unsharded ones (a layer used twice too)
    def linear_run(shard):
        lin = gb.nn.Linear(4, 3, dtype=np.float64, rng=0)
        opt = dist.DistributedOptimizer(gb.optim.SGD(lin.parameters(), lr=0.5, momentum=0.9), shard_update=shard)
        xr = np.random.default_rng(r).normal(size=(5, 4))
        in_place = []
        for step in range(10):
            opt.zero_grad()
            out = lin(gb.Tensor(xr))
            if step % 3 == 2:
                out = out + lin(gb.Tensor(xr[::-1].copy()))
            gb.nn.CrossEntropyLoss()(out, np.arange(5) % 3).backward()
            if opt.shard_update:
                segment = opt._send[opt._shared.slot][1]
                in_place.append(all(p.grad is v for p, v in zip(lin.parameters(), segment)))
            opt.step()
        got = [p.data.copy() for p in lin.parameters()]
        opt.remove()
        return got, in_place

    (w1, in_place), (w0, _) = linear_run(None), linear_run(False)
    assert in_place == [step % 3 != 2 for step in range(10)], in_place
    for a, b in zip(w1, w0):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    if r == 0:
        print("OK sharded", flush=True)

    class Clipped(gb.optim.SGD):  # overrides _update without declaring it elementwise: never sharded
        def _update(self, w, g, state):
            super()._update(w, np.clip(g, -1, 1) / max(1.0, float(np.abs(g).sum())), state)

    opt = dist.DistributedOptimizer(Clipped([gb.nn.Parameter(np.zeros(3))], lr=1.0))
    assert opt.shared_memory and not opt.shard_update
    opt.remove()
    for bad, kwargs in ((Clipped, {}), (gb.optim.SGD, {"shared_memory": False})):
        try:
            dist.DistributedOptimizer(bad([gb.nn.Parameter(np.zeros(3))], lr=1.0), shard_update=True, **kwargs)
        except ValueError as exc:
            assert "DistributedOptimizer(shard_update=True): expected SGD, Adam, AdamW or RMSprop" in str(exc), exc
        else:
            raise AssertionError("shard_update=True accepted " + bad.__name__)
    if r == 0:
        print("OK shard_update_errors", flush=True)
