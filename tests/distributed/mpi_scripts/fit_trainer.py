"""gradbox's own Trainer under mpiexec (fit() shards by itself); a stop with a checkpoint, and a resume.

usage: mpiexec -n K python fit_trainer.py OPTIMIZER EPOCHS STOP_AFTER_STEP RESUME_FROM|- OUT_PREFIX [MODEL]
MODEL: mlp (default), bn1d or bn2d (common.setup). Rank 0 writes OUT_PREFIX.gbx (the checkpoint)
and, when training ends, OUT_PREFIX.npz (the state_dict: parameters and BatchNorm's running statistics).
"""
import sys

import numpy as np

import gradbox as gb
from gradbox.train import Callback, Trainer

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import common  # noqa: E402


class StopAt(Callback):
    def __init__(self, n):
        self.n = n

    def on_batch_end(self, step, logs=None):
        if self.n and self.trainer.global_step == self.n:
            self.trainer.request_stop()


name, epochs, stop_after, resume, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
kind = sys.argv[6] if len(sys.argv) > 6 else "mlp"
batch = 10
if kind.endswith("_batch2"):  # 103 samples in batches of 2: the last batch has 1 sample, fewer than K
    kind, batch = kind[:-len("_batch2")], 2
X, y, model = common.setup(kind)
trainer = Trainer(model, None, common.optimizer(name, model.parameters()), batch_size=batch, seed=7, verbose=0,
                  callbacks=[StopAt(stop_after)])
if resume != "-":
    trainer.load_checkpoint(resume + ".gbx")
trainer.fit(X, y, epochs=epochs)
if trainer.stop_training:
    trainer.save_checkpoint(out + ".gbx")  # every rank calls it; rank 0 writes
else:
    from gradbox import _world

    if _world.is_main():
        np.savez(out + ".npz", *[p.data for p in model.parameters()],
                 loss=np.array(trainer.history.as_dict()["loss"]), world=_world.size(),
                 **{f"sd.{k}": v for k, v in model.state_dict().items()})
