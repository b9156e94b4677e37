"""Samplers: the order in which ``Trainer`` visits the training samples.

A sampler hands the trainer, for each step of an epoch, the indices of the samples of that
step's batch. ``RandomSampler`` is one process's view: a fresh permutation per epoch, drawn
from its own seeded generator (or the plain order with ``shuffle=False``). A distributed
sampler replaces it by yielding only this process's shard of each global batch; the trainer
does not change.

Protocol (what ``Trainer`` calls):

- ``set_epoch(epoch)``: start epoch ``epoch`` (1-based); an epoch already in progress (restored
  from a checkpoint) keeps its order.
- ``batches(n, batch_size, start=0)``: the index arrays of steps ``start, start + 1, ...`` of the
  epoch over ``n`` samples.
- ``end_epoch()``: the epoch is complete.
- ``state_dict()`` / ``load_state_dict(state)``: ``{"rng": <bit generator state>, "order": array or None}``.

>>> s = RandomSampler(seed=0)
>>> s.set_epoch(1)
>>> [b.tolist() for b in s.batches(5, 2)]
[[2, 4], [3, 0], [1]]
"""
from __future__ import annotations

import numbers

import numpy as np

__all__ = ["RandomSampler"]


class RandomSampler:
    """One permutation of ``range(n)`` per epoch from a seeded ``numpy.random.Generator``.

    Parameters
    ----------
    n : int, optional
        Number of samples; otherwise taken from the first ``batches`` call.
    seed : int or None
        Seed of the sampler's own generator (independent of ``gradbox.manual_seed``).
    shuffle : bool
        False visits the samples in order.
    """

    def __init__(self, n=None, seed=None, shuffle=True):
        if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0):
            raise ValueError(f"seed: expected a non-negative int or None, received {seed!r}")
        if n is not None and (not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 0):
            raise ValueError(f"RandomSampler(n): expected a non-negative int, received {n!r}")
        self.n = None if n is None else int(n)
        self.seed, self.shuffle = seed, bool(shuffle)
        self.rng = np.random.default_rng(seed)
        self.epoch = 0
        self.order = None  # this epoch's order, drawn on first use

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def end_epoch(self) -> None:
        self.order = None

    def _draw(self, n):
        if self.order is None:
            self.n = n
            self.order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        elif len(self.order) != n:
            raise ValueError(f"resume: the checkpoint was taken on {len(self.order)} training samples, received {n}")
        return self.order

    def __iter__(self):
        return iter(self._draw(self.n))

    def __len__(self):
        return 0 if self.n is None else self.n

    def batches(self, n, batch_size, start=0):
        """Index arrays of the steps ``start, start + 1, ...`` of the current epoch."""
        order = self._draw(n)
        for s in range(start, -(-n // batch_size)):
            yield order[s * batch_size:(s + 1) * batch_size]

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "order": None if self.order is None else self.order.copy()}

    def load_state_dict(self, state) -> None:
        self.rng.bit_generator.state = state["rng"]
        order = state.get("order")
        self.order = None if order is None else np.asarray(order, dtype=np.int64)
        if self.order is not None:
            self.n = len(self.order)
