"""docs/CONTRIBUTING.md's worked example (adding a layer type), run as written, so the page stays true."""
import os
import re
import sys
import types

import numpy as np
import pytest

import gradbox as gb
from gradbox import Tensor, gradcheck, nn, ops
from gradbox._validation import check, positive_float
from gradbox.nn.module import LAYERS, Module, get_layer_class, layer_name

DOC = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "CONTRIBUTING.md")


def _block(name):
    text = open(DOC, encoding="utf-8").read()
    found = re.search(rf"<!-- contributing-example: {name} -->\s*```python\n(.*?)```", text, re.S)
    assert found, f"docs/CONTRIBUTING.md lost its {name!r} example"
    return found.group(1)


@pytest.fixture(scope="module")
def swish_module():
    # NOTE: the class runs in a module of its own, with the names gradbox/nn/layers.py gives it; it
    # registers as "<module>.Swish" (as a user's layer does), so it never shadows a real gradbox layer.
    mod = types.ModuleType("gradbox_contributing_example")
    mod.__dict__.update(Module=Module, Tensor=Tensor, ops=ops, check=check, positive_float=positive_float)
    sys.modules[mod.__name__] = mod
    exec(compile(_block("layer"), DOC, "exec"), mod.__dict__)
    yield mod
    LAYERS.pop(layer_name(mod.Swish()), None)
    del sys.modules[mod.__name__]


def _tests(swish_module, name):
    namespace = dict(np=np, pytest=pytest, gb=gb, nn=nn, Tensor=Tensor, gradcheck=gradcheck,
                     Swish=swish_module.Swish)
    exec(compile(_block(name), DOC, "exec"), namespace)
    return [f for key, f in namespace.items() if key.startswith("test_")]


def test_the_example_layer_registers_itself(swish_module):
    swish = swish_module.Swish(beta=0.5)
    assert get_layer_class(layer_name(swish)) is swish_module.Swish
    assert swish.get_config() == {"beta": 0.5}
    with pytest.raises(ValueError, match=r"Swish\(beta\): expected a positive finite number, received 0"):
        swish_module.Swish(beta=0)


def test_the_examples_gradient_and_pytorch_tests_pass(swish_module):
    (test,) = _tests(swish_module, "test")
    test()


def test_the_example_saves_and_loads(swish_module, tmp_path):
    (test,) = _tests(swish_module, "save")
    test(tmp_path)


def test_explain_treats_the_example_as_an_activation(swish_module):
    model = nn.Sequential(nn.Linear(3, 4, rng=0), swish_module.Swish(), nn.Linear(4, 2, rng=1))
    report = gb.explain(model, np.ones((5, 3), np.float32), np.array([0, 1, 0, 1, 1]))
    assert report.rows[0]["activation"] == "Swish" and len(report.rows) == 2
