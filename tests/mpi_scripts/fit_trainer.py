"""gradbox's own Trainer under mpiexec (fit() shards by itself); a stop with a checkpoint, and a resume.

usage: mpiexec -n K python fit_trainer.py OPTIMIZER EPOCHS STOP_AFTER_STEP RESUME_FROM|- OUT_PREFIX
Rank 0 writes OUT_PREFIX.gbx (the checkpoint) and, when training ends, OUT_PREFIX.npz.
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
X, y = common.dataset()
model = common.model()
trainer = Trainer(model, None, common.optimizer(name, model.parameters()), batch_size=10, seed=7, verbose=0,
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
                 loss=np.array(trainer.history.as_dict()["loss"]), world=_world.size())
