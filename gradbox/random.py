"""One seedable source of randomness for initialisers and dropout.

``gradbox.manual_seed(s)`` makes model construction and training reproducible;
``get_rng_state``/``set_rng_state`` let a checkpoint resume exactly.
"""
from __future__ import annotations

import numbers

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed gradbox's default generator and return it.

    >>> import gradbox as gb
    >>> _ = gb.manual_seed(0); w = gb.nn.Linear(3, 2).weight.data
    >>> _ = gb.manual_seed(0); bool((gb.nn.Linear(3, 2).weight.data == w).all())
    True
    """
    global _generator
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, received {seed!r}")
    _generator = np.random.default_rng(int(seed))
    return _generator


def default_generator() -> np.random.Generator:
    return _generator


def get_rng_state() -> dict:
    """The default generator's state as a JSON-friendly dict (for ``set_rng_state``).

    >>> import gradbox as gb
    >>> gb.get_rng_state()["bit_generator"]
    'PCG64'
    """
    return _generator.bit_generator.state


def set_rng_state(state: dict) -> None:
    """Restore the default generator from a ``get_rng_state()`` dict.

    >>> import gradbox as gb
    >>> state = gb.get_rng_state(); w = gb.nn.Linear(3, 2).weight.data
    >>> gb.set_rng_state(state); bool((gb.nn.Linear(3, 2).weight.data == w).all())
    True
    """
    if not isinstance(state, dict) or "bit_generator" not in state:
        raise ValueError(f"state: expected a dict from get_rng_state(), received {type(state).__name__}")
    if state["bit_generator"] != type(_generator.bit_generator).__name__:
        raise ValueError(
            f"state: expected a {type(_generator.bit_generator).__name__} state, "
            f"received {state['bit_generator']!r}"
        )
    _generator.bit_generator.state = state


def resolve_rng(rng=None, name: str = "rng") -> np.random.Generator:
    """Accept None (the default generator), an int seed, or a Generator."""
    if rng is None:
        return _generator
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise TypeError(f"{name}: expected None, a non-negative int seed or numpy.random.Generator, received {rng!r}")
