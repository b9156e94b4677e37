"""Under `mpiexec -n 2`, the commands that are not data-parallel run on rank 0 alone: their output appears once."""
import os
import subprocess
import sys

from .test_distributed import TIMEOUT, _env, _mpi_problem, _mpiexec

import pytest


def test_evaluate_info_and_gradcheck_print_once_under_mpiexec(tmp_path):
    problem = _mpi_problem()
    if problem:
        pytest.skip(problem)
    run = os.path.join(tmp_path, "run")
    r = subprocess.run([sys.executable, "-m", "gradbox", "train", "--epochs", "1", "--hidden", "8", "--quiet",
                        "--out", run], capture_output=True, text=True, timeout=TIMEOUT, env=_env())
    assert r.returncode == 0, r.stderr
    model = os.path.join(run, "model.gbx")
    for args, marker in ((["evaluate", model], "accuracy "), (["info", model], "total parameters"),
                         (["gradcheck", model], "gradient check of")):
        r = subprocess.run([_mpiexec(), "-n", "2", sys.executable, "-m", "gradbox", *args], capture_output=True,
                           text=True, timeout=TIMEOUT, env=_env())
        assert r.returncode == 0, (args, r.stderr)
        assert r.stdout.count(marker) == 1, (args, r.stdout)
