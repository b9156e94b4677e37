"""``History``: the per-epoch metrics of a training run."""
from __future__ import annotations

from collections.abc import Mapping

__all__ = ["History"]


class History:
    """Per-epoch metrics of a training run.

    Attributes
    ----------
    history : dict of str -> list
        ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy`` (when validation
        data is given) and ``time`` (seconds per epoch), one entry per epoch.
    epoch : list of int
        1-based epoch numbers.

    >>> h = History(); h.append(1, {"loss": 0.5, "accuracy": 0.75})
    >>> h.history["loss"], h.epoch
    ([0.5], [1])
    """

    def __init__(self, history: Mapping | None = None, epoch=None):
        self.history = {k: list(v) for k, v in (history or {}).items()}
        self.epoch = list(epoch or [])

    def append(self, epoch: int, logs: Mapping) -> None:
        n = len(self.epoch)
        for key, value in logs.items():
            # NOTE: a metric that appears late is padded so every column has one entry per epoch.
            column = self.history.setdefault(key, [None] * n)
            column.append(None if value is None else float(value))
        for key, column in self.history.items():
            if len(column) < n + 1:
                column.append(None)
        self.epoch.append(int(epoch))

    def as_dict(self) -> dict:
        """JSON-friendly copy: ``{"epoch": [...], "loss": [...], ...}``."""
        return {"epoch": list(self.epoch), **{k: list(v) for k, v in self.history.items()}}

    @classmethod
    def from_dict(cls, d: Mapping) -> History:
        d = dict(d)
        epoch = d.pop("epoch", [])
        return cls(d, epoch)

    def best(self, monitor: str = "val_loss", mode: str = "min"):
        """(epoch, value) of the best entry of ``monitor``."""
        values = [(v, e) for v, e in zip(self.history.get(monitor, []), self.epoch) if v is not None]
        if not values:
            raise ValueError(f"History.best(monitor): expected one of {sorted(self.history)}, received {monitor!r}")
        v, e = (min if mode == "min" else max)(values)
        return e, v

    def to_csv(self, path) -> None:
        """Write ``epoch,<metrics...>`` atomically."""
        from ..io import atomic_write_bytes

        keys = list(self.history)
        lines = [",".join(["epoch", *keys])]
        for i, e in enumerate(self.epoch):
            cells = [str(e)]
            for k in keys:
                v = self.history[k][i]
                cells.append("" if v is None else repr(float(v)))
            lines.append(",".join(cells))
        atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())

    def __len__(self):
        return len(self.epoch)

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"
