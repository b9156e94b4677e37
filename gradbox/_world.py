"""Which process this is: the one predicate every writer of files and progress asks.

Today gradbox runs in one process, so ``rank() == 0``, ``size() == 1`` and ``is_main()`` is
True. A distributed backend (MPI) installs its world with :func:`set_world`; from then on
only the main process writes run folders, checkpoints and progress.

>>> from gradbox import _world
>>> _world.rank(), _world.size(), _world.is_main()
(0, 1, True)
"""
from __future__ import annotations

__all__ = ["is_main", "rank", "set_world", "size"]

_WORLD = None


def set_world(world) -> None:
    """Install ``world`` (an object with ``rank()`` and ``size()``), or ``None`` for one process."""
    if world is not None and not (callable(getattr(world, "rank", None)) and callable(getattr(world, "size", None))):
        raise TypeError(f"world: expected an object with rank() and size() methods, received {type(world).__name__}")
    global _WORLD
    _WORLD = world


def rank() -> int:
    """This process's index in the world (0 without one)."""
    return 0 if _WORLD is None else int(_WORLD.rank())


def size() -> int:
    """Number of processes in the world (1 without one)."""
    return 1 if _WORLD is None else int(_WORLD.size())


def is_main() -> bool:
    """True in the one process that writes files and prints progress."""
    return rank() == 0
