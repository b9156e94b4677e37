"""A job in which rank 1 fails: usage: mpiexec -n K python fault.py raise|kill|exit"""
import os
import signal
import sys

import numpy as np

from gradbox import distributed as dist

mode = sys.argv[1]
dist.init()
a = np.ones(4)
dist.comm().Allreduce(dist._mpi().IN_PLACE, a)
if dist.rank() == 1:
    if mode == "raise":
        raise ValueError("a deliberate failure")
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "exit":
        dist.abort("exit requested", code=3)
for _ in range(100):  # the other ranks block here until the job is ended
    dist.allreduce(a)
print("unreachable: rank", dist.rank(), "finished")
