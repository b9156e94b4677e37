"""Smoke test of the benchmark suite: ``python bench/run.py --quick`` runs and reports sane numbers.

No timing assertions (the machine's load decides those); only that every expected row
and key is there and every number is positive and finite.
"""
import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(ROOT, "bench", "run.py")


def _positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    md, js = out / "BENCH.md", out / "bench.json"
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, RUN, "--quick", "--json", str(js), "--out", str(md),
         "--libs", "gradbox,gradbox.fused,torch,torch.fused,sklearn,numpy"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(js.read_text()), md.read_text(), proc.stdout


def _peers():
    peers = ["gradbox", "numpy"]
    peers += [p for p in ("torch", "sklearn") if importlib.util.find_spec(p) is not None]
    peers += [p for p, needs in (("gradbox.fused", "numba"), ("torch.fused", "torch"))
              if importlib.util.find_spec(needs) is not None]
    return peers


def test_training_rows_for_every_library_and_batch(quick):
    res, _, _ = quick
    for lib in _peers():
        assert lib in res["train"], lib
        for batch in ("32", "128", "512"):
            row = res["train"][lib][batch]
            for key in ("samples_per_s", "gflops", "share_of_square_peak", "share_of_workload_peak",
                        "peak_rss_over_imports", "floor_bytes", "memory_vs_floor"):
                assert _positive(row[key]), (lib, batch, key, row[key])
            assert math.isfinite(row["final_loss"]) and 0 < row["final_loss"] < 10


def test_inference_import_and_peak(quick):
    res, _, _ = quick
    for lib in set(_peers()) - {"gradbox.fused", "torch.fused"}:  # the same inference code as their libraries
        assert _positive(res["infer"][lib]["latency_s"]) and _positive(res["infer"][lib]["throughput"])
    assert _positive(res["import"]["gradbox"]["seconds"])
    if importlib.util.find_spec("torch") is not None:
        assert _positive(res["import"]["torch"]["seconds"])
    assert _positive(res["peak"]["square_gflops"])
    assert all(_positive(v) for v in res["peak"]["workload_gflops"].values())
    assert res["machine"]["cpu_count"] >= 1 and res["machine"]["blas"]


def test_targets_have_values_and_markdown_has_the_tables(quick):
    res, md, stdout = quick
    targets = res["targets"]
    # the six of the issue, the peak share by two FLOP counts, fused vs fused, fused peak share, import time
    assert len(targets) == 10
    six_pb = next(t for n, t in targets.items() if "6·params·batch" in n)
    exact = next(t for n, t in targets.items() if "exact GEMM" in n)
    assert six_pb["value"] == pytest.approx(exact["value"] / 0.7138, rel=0.01)  # same speed, two counts
    for name, t in targets.items():
        if "torch" in name and importlib.util.find_spec("torch") is None:
            continue
        if "sklearn" in name and importlib.util.find_spec("sklearn") is None:
            continue
        if "fused" in name and importlib.util.find_spec("numba") is None:
            continue
        assert _positive(t["value"]), name
        assert t["met"] in (True, False)
        assert t["ci"] is None or t["ci"][0] <= t["value"] <= t["ci"][1], (name, t)
    for heading in ("### Targets", "### Training throughput", "### Memory while training", "### Inference",
                    "### Import time"):
        assert heading in md and heading in stdout
    assert "python bench/run.py --quick" in md
    assert "| gradbox | 128 |" in md


@pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="gradbox.fused needs numba")
def test_fused_rows_match_the_default_ones(quick):
    res, md, _ = quick
    assert res["fused"]["load_s"] > 0 and "| gradbox.fused | 128 |" in md and "`fused=True`" in md
    # the fused update is bit-identical, so gradbox's two rows end on the same loss
    for batch in ("32", "128", "512"):
        assert res["train"]["gradbox"][batch]["final_loss"] == res["train"]["gradbox.fused"][batch]["final_loss"]


def test_bad_libs_argument_is_refused():
    proc = subprocess.run([sys.executable, RUN, "--quick", "--no-write", "--libs", "gradbox,tensorflow"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode != 0
    assert "--libs" in proc.stderr and "tensorflow" in proc.stderr


def _bench_run_module():
    spec = importlib.util.spec_from_file_location("bench_run", RUN)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.dirname(RUN))  # run.py imports worker.py from its folder
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(os.path.dirname(RUN))
    return module


def test_median_interval_is_the_tightest_pair_of_order_statistics_with_95_percent_coverage():
    median_ci = _bench_run_module().median_ci

    def below(n, k):  # P(Binomial(n, 1/2) <= k)
        return sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n

    assert median_ci(range(5)) is None  # even (min, max) covers only 1 - 2/32 < 95%
    assert median_ci(range(30)) == (9, 20)  # the textbook ranks 10 and 21 of 30
    for n in range(6, 121):
        values = [float(v) ** 1.5 for v in range(n, 0, -1)]  # unsorted input, distinct values
        lo, hi = median_ci(values)
        k = sorted(values).index(lo) + 1
        assert hi == sorted(values)[n - k]
        assert 1 - 2 * below(n, k - 1) >= 0.95 > 1 - 2 * below(n, k)  # covers, and k + 1 would not
        assert lo <= sorted(values)[(n - 1) // 2] <= sorted(values)[n // 2] <= hi
