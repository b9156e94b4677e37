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


def _current():
    if _WORLD is None:
        from . import distributed

        # NOTE: launched by `mpiexec -n K` (K > 1), the MPI world answers even before a training
        # call installs it: a run folder is created by rank 0 only. Reads environment variables;
        # mpi4py loads only under such a launcher.
        if distributed.launched_size() > 1:
            return distributed
    return _WORLD


def rank() -> int:
    """This process's index in the world (0 without one)."""
    w = _current()
    return 0 if w is None else int(w.rank())


def size() -> int:
    """Number of processes in the world (1 without one)."""
    w = _current()
    return 1 if w is None else int(w.size())


def is_main() -> bool:
    """True in the one process that writes files and prints progress."""
    return rank() == 0
