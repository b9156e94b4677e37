"""Declarative argument checks (scikit-learn's ``_parameter_constraints`` idea), one message format.

A class lists what each argument must be; :func:`validate` checks a dict of values against
that list and raises :class:`InvalidParameterError` with the library's standard message
``Who(name): expected <what>, received <value>``. The same declaration serves a constructor
and a model file's layer config, so a file is checked exactly as a call is.

>>> check("Dropout", "p", 0.5, probability)
0.5
>>> check("Linear", "in_features", 0, positive_int)
Traceback (most recent call last):
...
gradbox._validation.InvalidParameterError: Linear(in_features): expected a positive int, received 0
"""
from __future__ import annotations

import math
import numbers


class InvalidParameterError(ValueError, TypeError):
    """A bad argument. Both a ``ValueError`` and a ``TypeError`` (as scikit-learn's), so callers
    that catch either keep working whichever of the two a check used to raise."""


class Constraint:
    """What an argument must be: ``test(value) -> bool`` and a description for the message.

    ``convert`` turns an accepted value into its canonical Python type (``int``, ``float``).
    """

    def __init__(self, description: str, test, convert=None):
        self.description = description
        self.test = test
        self.convert = convert

    def __repr__(self):
        return f"Constraint({self.description!r})"


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def interval(kind: str, low=None, high=None, closed: str = "both") -> Constraint:
    """An ``"int"`` or ``"real"`` in [low, high] (``closed``: "both", "left", "right" or "neither";
    ``None`` is unbounded). NaN is never accepted."""
    is_kind = _is_int if kind == "int" else _is_real
    lo_ok = (lambda v: True) if low is None else (
        (lambda v: v >= low) if closed in ("both", "left") else (lambda v: v > low))
    hi_ok = (lambda v: True) if high is None else (
        (lambda v: v <= high) if closed in ("both", "right") else (lambda v: v < high))
    word = "an int" if kind == "int" else "a number"
    if low is not None and high is not None:
        left = "[" if closed in ("both", "left") else "("
        right = "]" if closed in ("both", "right") else ")"
        what = f"{word} in {left}{low}, {high}{right}"
    elif low is not None:
        what = f"{word} {'>=' if closed in ('both', 'left') else '>'} {low}"
    elif high is not None:
        what = f"{word} {'<=' if closed in ('both', 'right') else '<'} {high}"
    else:
        what = f"{word}" if kind == "int" else "a finite number"
    finite = kind == "int" or (low is None and high is None)
    return Constraint(what, lambda v: is_kind(v) and not (_is_real(v) and math.isnan(v))
                      and (not finite or math.isfinite(v)) and lo_ok(v) and hi_ok(v),
                      int if kind == "int" else float)


def finite_real(low=0.0, high=None, low_open=False) -> Constraint:
    """A finite real number in [low, high) ((low, high) with ``low_open``), converted to float: the
    optimizers' hyperparameters (an infinite learning rate is refused, unlike ``interval``'s
    half-bounded ranges)."""
    what = f"a finite number {'>' if low_open else '>='} {float(low)}" + (
        f" and < {float(high)}" if high is not None else "")

    def test(v):
        return (_is_real(v) and math.isfinite(v) and (v > low if low_open else v >= low)
                and (high is None or v < high))

    return Constraint(what, test, float)


def one_of(*options) -> Constraint:
    """Exactly one of ``options`` (compared with ``==``; bools only match bools)."""
    def test(v):
        return any(v == o and isinstance(v, bool) == isinstance(o, bool) for o in options)
    return Constraint(f"one of {list(options)}", test)


def instance_of(*types, description: str | None = None) -> Constraint:
    return Constraint(description or "an instance of " + " or ".join(t.__name__ for t in types),
                      lambda v: isinstance(v, types))


positive_int = Constraint("a positive int", lambda v: _is_int(v) and v > 0, int)
non_negative_int = Constraint("a non-negative int", lambda v: _is_int(v) and v >= 0, int)
integer = Constraint("an int", _is_int, int)
positive_float = Constraint("a positive finite number", lambda v: _is_real(v) and math.isfinite(v) and v > 0, float)
non_negative_float = Constraint("a non-negative finite number",
                                lambda v: _is_real(v) and math.isfinite(v) and v >= 0, float)
probability = Constraint("a probability in [0, 1)", lambda v: _is_real(v) and 0 <= v < 1, float)
boolean = Constraint("True or False", lambda v: isinstance(v, bool), bool)


def check(who: str, name: str, value, constraint: Constraint):
    """Return ``value`` (converted to its canonical type) or raise the standard message."""
    if not constraint.test(value):
        raise InvalidParameterError(f"{who}({name}): expected {constraint.description}, received {value!r}")
    return constraint.convert(value) if constraint.convert else value


def validate(who: str, values: dict, constraints: dict) -> dict:
    """Check every ``values[name]`` that has a constraint; return the converted values.

    >>> validate("LeakyReLU", {"negative_slope": 0}, {"negative_slope": probability})
    {'negative_slope': 0.0}
    """
    return {name: check(who, name, v, constraints[name]) if name in constraints else v
            for name, v in values.items()}
