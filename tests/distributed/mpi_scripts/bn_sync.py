"""BatchStatsSync: batch-norm statistics and backward sums over shards equal one process on the
global batch (float64). usage: mpiexec -n K python bn_sync.py N; rank 0 prints the largest error."""
import sys

import numpy as np

from gradbox import distributed as dist

dist.init()
n = int(sys.argv[1])
rng = np.random.default_rng(0)
x = rng.normal(2.0, 3.0, size=(n, 3, 2, 2))
R = rng.normal(size=x.shape)          # the loss is mean_i sum(R_i * y_i)
gamma = rng.normal(size=3)
axes, eps = (0, 2, 3), 1e-5
pc = lambda v: v.reshape(1, -1, 1, 1)  # noqa: E731


def bn_backward(dxhat, xhat, inv_std, m, s1, s2):
    return pc(inv_std) / m * (m * dxhat - pc(s1) - xhat * pc(s2))


# one process, global batch
mean, var = x.mean(axis=axes), x.var(axis=axes)
inv = 1 / np.sqrt(var + eps)
xhat = (x - pc(mean)) * pc(inv)
dxhat = R / n * pc(gamma)
gx_full = bn_backward(dxhat, xhat, inv, x.size // 3, dxhat.sum(axis=axes), (dxhat * xhat).sum(axis=axes))

# this rank's shard
s = dist.ShardedSampler(n, n, shuffle=False)
idx = s.shard(np.arange(n))
xr, Rr, nr = x[idx], R[idx], len(idx)
sync = dist.BatchStatsSync()
gmean, gvar, M, w = sync.stats(xr, axes)
errs = [np.abs(gmean - mean).max(), np.abs(gvar - var).max(), abs(M - x.size // 3), abs(w - nr / n)]
inv_r = 1 / np.sqrt(gvar + eps)
xhat_r = (xr - pc(gmean)) * pc(inv_r)
dxhat_r = (Rr / nr if nr else Rr) * pc(gamma)     # the gradient of this shard's mean loss
S1, S2 = sync.grad_sums(dxhat_r.sum(axis=axes), (dxhat_r * xhat_r).sum(axis=axes), w)
gx_r = bn_backward(dxhat_r, xhat_r, inv_r, xr.size // 3, S1, S2) if nr else np.zeros_like(xr)
# DistributedOptimizer weighs rank r's gradient by w_r: gradients upstream of BN carry w_r * gx_r
mine = np.zeros_like(x)
mine[idx] = w * gx_r
total = dist.allreduce(mine)
errs.append(np.abs(total - gx_full).max() / np.abs(gx_full).max())
errs = dist.comm().allgather(max(errs))
if dist.is_main():
    print(f"max error {max(errs):.3e}")
