"""bench/conv.py runs end to end on a tiny budget: every contender agrees with PyTorch in float64 first
(the run stops otherwise) and the table comes out. The numbers themselves are not checked."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_conv_benchmark_smoke(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "conv.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "conv.py"), "--rounds", "1", "--slot", "0.05",
         "--workloads", "lenet32", "--contenders", "gradbox,torch,dlfs", "--threads", "1", "--json", str(out)],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| lenet32 | gradbox |" in proc.stdout and "| lenet32 | dlfs |" in proc.stdout
    result = json.loads(out.read_text())
    assert set(result["checks"]) == {"lenet32/gradbox", "lenet32/dlfs"}
    assert max(result["checks"].values()) < 1e-9
    assert {r["contender"] for r in result["rows"]} == {"gradbox", "torch", "dlfs"}
