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


def pytest_terminal_summary(terminalreporter):
    if GRADCHECK_ERRORS:
        terminalreporter.write_line(
            f"gradcheck: {len(GRADCHECK_ERRORS)} float64 checks, worst relative error {max(GRADCHECK_ERRORS):.2e}"
        )
