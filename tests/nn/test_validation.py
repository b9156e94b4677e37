"""The one declarative argument check (issue 12, property 9)."""
import math

import numpy as np
import pytest

from gradbox import _validation as v
from gradbox import nn


@pytest.mark.parametrize("constraint, good, bad", [
    (v.positive_int, [1, np.int64(5)], [0, -1, 2.0, True, "3", None]),
    (v.non_negative_int, [0, 3], [-1, 1.5, False]),
    (v.positive_float, [1e-9, 3, 2.5], [0, -1.0, math.nan, math.inf, True, "1"]),
    (v.non_negative_float, [0, 0.0, 4], [-1e-9, math.nan, math.inf]),
    (v.probability, [0, 0.5, 0.999], [1, 1.0, -0.1, math.nan, "0.5"]),
    (v.one_of("a", "b"), ["a", "b"], ["c", None, 1]),
    (v.one_of(1, 2), [1, 2], [True, "1"]),
    (v.interval("real", 0, 1, closed="left"), [0, 0.5], [1, math.nan]),
    (v.interval("int", 3, None), [3, 10], [2, 3.5]),
    (v.boolean, [True, False], [0, 1, None]),
])
def test_constraints_accept_and_refuse(constraint, good, bad):
    for value in good:
        assert v.check("Who", "name", value, constraint) == value
    for value in bad:
        with pytest.raises(v.InvalidParameterError) as info:
            v.check("Who", "name", value, constraint)
        assert str(info.value) == f"Who(name): expected {constraint.description}, received {value!r}"


def test_the_error_is_both_value_and_type_error_and_values_are_converted():
    assert issubclass(v.InvalidParameterError, ValueError) and issubclass(v.InvalidParameterError, TypeError)
    assert type(v.check("W", "n", np.int64(3), v.positive_int)) is int
    assert v.validate("W", {"p": 0, "other": "x"}, {"p": v.probability}) == {"p": 0.0, "other": "x"}
    assert v.interval("int", 3, None).description == "an int >= 3"
    assert v.interval("real", 0, 1, closed="neither").description == "a number in (0, 1)"


@pytest.mark.parametrize("build, message", [
    (lambda: nn.Dropout(p=1.0), "Dropout(p): expected a probability in [0, 1), received 1.0"),
    (lambda: nn.LeakyReLU(-0.1), "LeakyReLU(negative_slope): expected a number in [0, 1), received -0.1"),
    (lambda: nn.Softmax(dim="1"), "Softmax(dim): expected an int, received '1'"),
    (lambda: nn.Linear(0, 2), "Linear(in_features): expected a positive int, received 0"),
])
def test_layers_use_the_standard_message(build, message):
    with pytest.raises((ValueError, TypeError)) as info:
        build()
    assert str(info.value) == message
