"""The ``>>>`` examples in the core's docstrings run and give what they show."""
import doctest
import importlib

import pytest

MODULES = ["gradbox", "gradbox.function", "gradbox.tensor", "gradbox.ops", "gradbox.nn.module", "gradbox.nn.layers",
           "gradbox.nn.loss", "gradbox.optim", "gradbox.gradcheck", "gradbox.random", "gradbox.errors"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0
