"""Data-parallel training with a hand-written loop; rank 0 saves the final parameters.

usage: mpiexec -n K python train_equal.py OPTIMIZER BATCH EPOCHS OUT.npz [SUM]

SUM: ``sharded`` (the default on one machine: shared memory, each rank updating its slice),
``shared_memory`` (every rank updating everything: ``shard_update=False``) or ``allreduce``
(``shared_memory=False``).
"""
import sys

import numpy as np

import gradbox as gb
from gradbox import distributed as dist

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import common  # noqa: E402

name, batch, epochs, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
how = sys.argv[5] if len(sys.argv) > 5 else "sharded"
dist.init(require_parallel=True)
X, y = common.dataset()
dist.check_same_data(X, y)
model = common.model()
if dist.rank() != 0:  # NOTE: the broadcast must make these equal to rank 0's again
    for p in model.parameters():
        p.data[...] = 123.0
dist.broadcast_parameters(model, root=0)
sampler = dist.ShardedSampler(len(X), batch, seed=7)
opt = dist.DistributedOptimizer(common.optimizer(name, model.parameters()), sampler=sampler,
                                shared_memory={"sharded": None, "shared_memory": None, "allreduce": False}[how],
                                shard_update=False if how == "shared_memory" else None)
loss_fn = gb.nn.CrossEntropyLoss()
shard_sizes = set()
for epoch in range(epochs):
    for idx in sampler:
        opt.zero_grad()
        shard_sizes.add(len(idx))
        if len(idx):  # NOTE: an empty shard has no loss; the rank still joins the Allreduce
            loss_fn(model(gb.Tensor(X[idx])), y[idx]).backward()
        opt.step()
sizes = dist.comm().allgather(sorted(shard_sizes))
if dist.is_main():
    np.savez(out, *[p.data for p in model.parameters()], shard_sizes=np.array(sorted(set().union(*sizes))),
             shared_memory=opt.shared_memory, shard_update=opt.shard_update)
