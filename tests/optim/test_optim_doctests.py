"""The ``>>>`` examples in the optimizer package's modules run and give what they show."""
import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["gradbox.optim", "gradbox.optim.optimizer", "gradbox.optim.sgd",
                                  "gradbox.optim.rmsprop", "gradbox.optim.adam"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0
