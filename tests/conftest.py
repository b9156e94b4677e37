import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# NOTE: CI runs a derandomised profile so that failures are reproducible.
settings.register_profile("ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def shared_data():
    path = os.path.abspath(SHARED_DATA)
    if not os.path.exists(os.path.join(path, "train_catvnoncat.h5")):
        pytest.skip("../shared/data/*_catvnoncat.h5 not present")
    return path


# The worst relative error seen by the float64 gradient checks, printed at the end of the run.
GRADCHECK_ERRORS = []
GRADCHECK_TOL = 1e-7  # the guide's bound on a float64 gradient check's relative error


def gradcheck_ok(fn, inputs):
    """Assert that ``gradbox.gradcheck(fn, inputs)`` passes with relative error < 1e-7; record the error."""
    from gradbox import gradcheck

    res = gradcheck(fn, inputs)
    GRADCHECK_ERRORS.append(res.max_rel_error)
    assert res.passed and res.max_rel_error < GRADCHECK_TOL, res
    return res


def pytest_terminal_summary(terminalreporter):
    if GRADCHECK_ERRORS:
        terminalreporter.write_line(
            f"gradcheck: {len(GRADCHECK_ERRORS)} float64 checks, worst relative error {max(GRADCHECK_ERRORS):.2e}"
        )
