"""Gradient checking, the notes' way: compare backprop with (J(θ+ε) - J(θ-ε)) / 2ε.

1. ``gb.check_gradients`` on a small MLP: every W[l] and b[l] agrees to < 1e-7.
2. A box with a deliberately wrong backward (a "cube" whose derivative forgets the
   factor 3) inside the same MLP: the check catches it, and ``gb.gradcheck`` on the
   box alone points at the culprit.

Run::

    python examples/gradcheck_walkthrough.py
"""
from __future__ import annotations

import sys

import numpy as np

import gradbox as gb
from gradbox import nn


class Cube(gb.Function):
    """y = x³, with the correct derivative dy/dx = 3x²."""

    def forward(self, x):
        self.x = x
        return x**3

    def backward(self, g):
        return g * 3 * self.x**2


class BrokenCube(Cube):
    """The same forward, but backward forgets the 3: dy/dx = x² (a typical slip)."""

    def backward(self, g):
        return g * self.x**2


class CubeLayer(nn.Module):
    """An activation layer that applies a ``Cube``-like box."""

    def __init__(self, box):
        super().__init__()
        self.box = box

    def forward(self, x):
        return self.box.apply(x)


def make_model(box=None):
    layers = [nn.Linear(4, 5, rng=0), nn.Tanh()]
    if box is not None:
        layers.append(CubeLayer(box))
    layers += [nn.Linear(5, 3, rng=1)]
    return nn.Sequential(*layers)


def run(verbose=True):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(6, 4)), rng.integers(0, 3, size=6)
    loss = nn.CrossEntropyLoss()
    results = {}

    good = gb.check_gradients(make_model(), loss, X, y)
    results["mlp"] = good
    if verbose:
        print("1. check_gradients on Linear(4,5) -> Tanh -> Linear(5,3), cross-entropy, float64:\n")
        print(good, "\n")

    correct = gb.check_gradients(make_model(Cube), loss, X, y)
    broken = gb.check_gradients(make_model(BrokenCube), loss, X, y)
    results["cube"], results["broken"] = correct, broken
    if verbose:
        print("2a. the same MLP with a correct Cube box (y = x^3, dy/dx = 3x^2) after the Tanh:\n")
        print(correct, "\n")
        print("2b. ... and with BrokenCube (backward returns x^2, forgetting the 3):\n")
        print(broken, "\n")
        print("   Only the parameters *below* the broken box are wrong: the gradient of the last")
        print("   layer never passes through it. That locates the bug between the two layers.\n")

    x = rng.normal(size=(3, 2))
    alone_ok = gb.gradcheck(lambda t: Cube.apply(t), [x])
    alone_bad = gb.gradcheck(lambda t: BrokenCube.apply(t), [x])
    results["alone_ok"], results["alone_bad"] = alone_ok, alone_bad
    if verbose:
        print("3. gradcheck on each box alone:")
        print(f"   Cube:       passed={alone_ok.passed}  relative error {alone_ok.max_rel_error:.2e}")
        print(f"   BrokenCube: passed={alone_bad.passed}  relative error {alone_bad.max_rel_error:.2e}"
              "   (analytic = numeric / 3, so ‖g - g̃‖/(‖g‖ + ‖g̃‖) = (2/3)/(4/3) = 0.5)")
    return results


def main():
    r = run()
    ok = r["mlp"].passed and r["cube"].passed and not r["broken"].passed and not r["alone_bad"].passed
    print("\nthe check separates the correct boxes from the broken one" if ok else "\nUNEXPECTED RESULT")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
