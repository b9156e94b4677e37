"""A Trainer-like loop on gradbox.distributed.DataParallel, with a checkpoint and a resume.

usage: mpiexec -n K python fit_like.py OPTIMIZER EPOCHS STOP_AFTER_STEP RESUME_FROM|- OUT_PREFIX
Rank 0 writes OUT_PREFIX.npz (parameters, optimizer state, shuffle state, position, epoch losses);
STOP_AFTER_STEP > 0 stops there (a checkpoint); RESUME_FROM continues one, under any K.
"""
import json
import sys

import numpy as np

import gradbox as gb
from gradbox import distributed as dist

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import common  # noqa: E402

name, epochs, stop_after, resume, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
X, y = common.dataset()
model = common.model()
opt = common.optimizer(name, model.parameters())
rng = np.random.default_rng(7)
epoch = step = global_step = 0
perm, partial, history = None, [0.0, 0, 0], []
if resume != "-":
    ck = np.load(resume + ".npz")
    meta = json.loads(str(ck["meta"]))
    model.load_state_dict({k[6:]: ck[k] for k in ck.files if k.startswith("model.")})
    opt.load_state_dict({**meta["optim"], "state": {k[6:]: ck[k] for k in ck.files if k.startswith("optim.")}})
    rng.bit_generator.state = meta["rng"]
    epoch, step, global_step, partial, history = meta["epoch"], meta["step"], meta["global_step"], meta["partial"], meta["history"]
    perm = ck["perm"] if "perm" in ck.files else None
dp = dist.DataParallel(model, opt, X, y, rng=rng, seed=7, require_parallel=False)
bs, loss_fn = 10, gb.nn.CrossEntropyLoss()


def save(path):
    if not dist.is_main():
        return
    sd = opt.state_dict()
    arrays = {f"model.{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"optim.{k}": v for k, v in sd["state"].items()})
    if perm is not None:
        arrays["perm"] = perm
    meta = {"optim": {"type": sd["type"], "hyper": sd["hyper"], "step_count": sd["step_count"]},
            "rng": rng.bit_generator.state, "epoch": epoch, "step": step, "global_step": global_step,
            "partial": partial, "history": history, "world_size": dist.size()}
    np.savez(path, meta=json.dumps(meta), **arrays)


while epoch < epochs:
    if perm is None:
        perm, partial = dp.sampler.permutation(), [0.0, 0, 0]
    while step * bs < len(perm):
        idx = dp.shard(perm[step * bs:(step + 1) * bs])
        opt.zero_grad()
        loss_sum = correct = 0
        if len(idx):
            out_ = model(gb.Tensor(X[idx]))
            cost = loss_fn(out_, y[idx])
            cost.backward()
            loss_sum = float(cost.data) * len(idx)
            correct = int((out_.data.argmax(1) == y[idx]).sum())
        dp.set_metrics(loss_sum, correct, len(idx))
        opt.step()
        s = dp.step_metrics()
        partial = [partial[0] + s[0], partial[1] + s[1], partial[2] + s[2]]
        step += 1
        global_step += 1
        if global_step == stop_after:
            save(out)
            sys.exit(0)
    history.append(partial[0] / partial[2])
    epoch, step, perm = epoch + 1, 0, None
save(out)
