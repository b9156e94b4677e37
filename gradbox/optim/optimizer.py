"""The base ``Optimizer``: the parameter list, per-parameter state, step hooks and ``state_dict``.

A new optimizer is one subclass in its own file beside this one (``sgd.py``, ``adam.py``): it
validates its hyperparameters, passes them to ``Optimizer.__init__`` as ``defaults``, names its
per-parameter buffers in ``_state_keys``, and implements ``_update(w, g, state)``, the update of one
parameter array in place. Everything else (hooks, skipping parameters without a gradient, saving
and loading the state, the optional compiled kernels) lives here, once.
"""
from __future__ import annotations

import itertools
import numbers

import numpy as np

from .._validation import check, finite_real
from ..tensor import Tensor


NON_NEGATIVE = finite_real()  # lr, weight_decay
POSITIVE = finite_real(low_open=True)  # eps
FRACTION = finite_real(high=1.0)  # momentum, alpha, betas


# --------------------------------------------------------------------------------------
# The optional compiled kernels (numba), loaded on first use of fused=True
# --------------------------------------------------------------------------------------
def _fused_kernels():
    """The compiled kernels (``gradbox.optim._kernels``), or None when numba is missing or unusable."""
    global _KERNELS, _KERNELS_ERROR
    if _KERNELS is None:
        try:
            kernels = _load_kernels()
        except Exception as exc:  # noqa: BLE001
            # NOTE: not only ImportError: an installed numba may refuse this NumPy, or find no
            # writable cache folder (RuntimeError at decoration). The NumPy path is always there.
            kernels, _KERNELS_ERROR = False, f"{type(exc).__name__}: {exc}"
        _KERNELS = kernels
    return _KERNELS or None


def _load_kernels():
    import numba

    if numba.config.DISABLE_JIT:  # NOTE: uncompiled, the kernels would be pure-Python loops
        raise RuntimeError("NUMBA_DISABLE_JIT is set")
    from . import _kernels

    return _kernels


_KERNELS = None
_KERNELS_ERROR = "numba is not installed"
_FUSED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _fusable(w, g, *buffers) -> bool:
    """The kernels take C-contiguous float32/float64 arrays of one shape and dtype (flattened as views,
    so they write through); anything else goes to the NumPy path."""
    return (w.dtype in _FUSED_DTYPES and g.dtype == w.dtype and g.shape == w.shape and w.flags.c_contiguous
            and w.flags.writeable and g.flags.c_contiguous
            and all(b.dtype == w.dtype and b.shape == w.shape and b.flags.c_contiguous for b in buffers))


# --------------------------------------------------------------------------------------
# Hooks
# --------------------------------------------------------------------------------------
class RemovableHandle:
    """What ``register_step_pre_hook`` / ``register_step_post_hook`` return (PyTorch's name).

    ``handle.remove()`` unregisters the hook (a second call does nothing); as a context manager the
    hook is removed on leaving the block.
    """

    _ids = itertools.count()

    def __init__(self, hooks: dict):
        self._hooks = hooks
        self.id = next(RemovableHandle._ids)

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def _check_hook(hook, who):
    if not callable(hook):
        raise TypeError(f"{who}(hook): expected a callable hook(optimizer, args, kwargs), received {hook!r:.60}")


# --------------------------------------------------------------------------------------
# The base class
# --------------------------------------------------------------------------------------
class Optimizer:
    """Base class: keeps an ordered list of parameters and per-parameter state.

    ``fused``: ``True`` runs each parameter update as one compiled pass (numba, ``pip install
    "gradbox[fast]"``) instead of 4-10 NumPy passes; ``None`` (default) or ``False`` use NumPy, as
    PyTorch's optimizers default to their unfused loop on the CPU. Both paths give bit-identical
    results (the same float operations in the same order). Fusing pays off for long runs of large
    layers: loading numba and the kernels costs about 0.8-1.3 s and 125 MB once per process.
    Subclasses implement ``_update(w, g, state)``; use one of them (``SGD``, ``Adam``, ...).

    Attributes
    ----------
    params : list of Parameter
        In the order given; each parameter at most once.
    state : list of dict
        ``state[i]`` holds parameter i's buffers (``"exp_avg"``, ``"momentum_buffer"``, ...) and,
        for optimizers that count steps (Adam, AdamW, RMSprop), ``"step"``: the number of updates
        parameter i received, as PyTorch counts them. A parameter whose ``grad`` is None at a step
        is skipped and its count does not advance.
    step_count : int
        Calls of ``step()`` (every parameter or none).

    >>> import gradbox as gb
    >>> w = gb.nn.Parameter([2.0]); opt = gb.optim.SGD([w], lr=0.25)
    >>> opt.zero_grad(); (w * w).sum().backward(); opt.step(); w.data
    array([1.], dtype=float32)
    """

    # names of the per-parameter buffers a subclass keeps (besides "step"); load_state_dict accepts these
    _state_keys: tuple = ()
    # True when the subclass keeps a per-parameter step count in state["step"]
    _counts_steps: bool = False
    # hyperparameter -> its Constraint (gradbox._validation), checked by __init__ and load_state_dict
    _constraints: dict = {}
    # True when each element's update reads only that element of w, g and the buffers (and scalars):
    # the update can then run on any slice of a parameter, as gradbox.distributed's sharded update does.
    # Declared by the class that defines _update: a subclass that overrides _update must declare it again.
    _elementwise: bool = False
    # NOTE: set by gradbox.distributed.DistributedOptimizer while it shards the update across processes
    # (ZeRO stage 1): a callable that runs in place of the loop in _step (each process updates its slice)
    _sharded_update = None

    def __init__(self, params, defaults: dict, fused=None):
        who = type(self).__name__
        if fused is not None and not isinstance(fused, bool):
            raise TypeError(f"{who}(fused): expected True, False or None, received {fused!r}")
        kernels = _fused_kernels() if fused else None
        if fused and kernels is None:
            raise ImportError(f'{who}(fused=True): expected a working numba (pip install "gradbox[fast]"), '
                              f"received {_KERNELS_ERROR}")
        self._kernels = kernels
        self.fused = kernels is not None
        if isinstance(params, (set, frozenset)):
            raise TypeError(f"{who}(params): expected an ordered iterable of parameters, received a set (order is random)")
        if isinstance(params, Tensor):
            raise TypeError(f"{who}(params): expected an iterable of parameters, received a single Tensor")
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{who}(params): expected at least one parameter, received an empty list")
        first_index = {}
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor) or not p.requires_grad:
                raise TypeError(f"{who}(params[{i}]): expected a Tensor with requires_grad=True, received {p!r:.60}")
            # NOTE: a parameter listed twice would be updated twice per step (and PyTorch warns, then
            # refuses it across groups); model.parameters() already yields a shared one once.
            j = first_index.setdefault(id(p), i)
            if j != i:
                raise ValueError(f"{who}(params): expected each parameter once, received the parameter list with "
                                 f"duplicates (params[{i}] is params[{j}]), which would update it twice per step")
        self.defaults = dict(defaults)
        for k, v in defaults.items():
            setattr(self, k, v)
        self.state = [dict() for _ in self.params]
        self.step_count = 0
        self._step_pre_hooks: dict = {}
        self._step_post_hooks: dict = {}

    # --- hooks ------------------------------------------------------------------------
    def register_step_pre_hook(self, hook) -> RemovableHandle:
        """Call ``hook(optimizer, args, kwargs)`` before every ``step()`` (PyTorch's signature).

        ``args`` and ``kwargs`` are what ``step`` was called with; the hook may return None or a new
        ``(args, kwargs)`` pair for the step. The hook may change the parameters' ``.grad`` (this is
        where a distributed optimizer averages gradients across processes before the update).
        Hooks run in registration order. Returns a handle whose ``.remove()`` unregisters the hook.

        >>> import gradbox as gb
        >>> w = gb.nn.Parameter([1.0]); opt = gb.optim.SGD([w], lr=0.5)
        >>> def halve(optimizer, args, kwargs):
        ...     for p in optimizer.params:
        ...         p.grad = p.grad / 2
        >>> handle = opt.register_step_pre_hook(halve)
        >>> w.grad = w.data * 0 + 1.0; opt.step(); w.data
        array([0.75], dtype=float32)
        >>> handle.remove()
        """
        _check_hook(hook, f"{type(self).__name__}.register_step_pre_hook")
        handle = RemovableHandle(self._step_pre_hooks)
        self._step_pre_hooks[handle.id] = hook
        return handle

    def register_step_post_hook(self, hook) -> RemovableHandle:
        """Call ``hook(optimizer, args, kwargs)`` after every ``step()``; its return value is ignored.

        Returns a handle whose ``.remove()`` unregisters the hook."""
        _check_hook(hook, f"{type(self).__name__}.register_step_post_hook")
        handle = RemovableHandle(self._step_post_hooks)
        self._step_post_hooks[handle.id] = hook
        return handle

    # --- the update -------------------------------------------------------------------
    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self, *args, **kwargs):
        """One update of every parameter that has a ``grad``: ``step(closure=None)``, as PyTorch.

        ``closure``, if given, is called first (it should recompute the loss and the gradients) and
        its value returned. The step pre-hooks run before, the post-hooks after.
        """
        if self._step_pre_hooks:
            for hook in list(self._step_pre_hooks.values()):
                result = hook(self, args, kwargs)
                if result is not None:
                    if not (isinstance(result, tuple) and len(result) == 2):
                        raise RuntimeError(f"{type(self).__name__} step pre-hook {hook!r:.60}: expected None or a "
                                           f"tuple (new_args, new_kwargs), received {result!r:.60}")
                    args, kwargs = result
        loss = self._step(*args, **kwargs)
        if self._step_post_hooks:
            for hook in list(self._step_post_hooks.values()):
                hook(self, args, kwargs)
        return loss

    def _step(self, closure=None):
        loss = None if closure is None else closure()
        self.step_count += 1
        if self._sharded_update is not None:
            self._sharded_update()
            return loss
        for p, state in zip(self.params, self.state):
            if p.grad is not None:
                self._update(p.data, p.grad, state)
                # NOTE: the update writes into the array in place: bump the version counter so a
                # graph built before this step refuses to backpropagate through the old values.
                p._version += 1
        return loss

    def _update(self, w, g, state):  # pragma: no cover - interface
        """Update the array ``w`` in place from the gradient ``g``; ``state`` is this parameter's dict."""
        raise NotImplementedError

    # --- saving and resuming ----------------------------------------------------------
    def state_dict(self) -> dict:
        """Hyperparameters, step count and per-parameter buffers (copies).

        ``{"type": class name, "hyper": {name: value}, "step_count": int, "state": {"<i>.<buffer>":
        array}}``: parameter i's buffers under ``"<i>.exp_avg"`` and so on, and its own step count,
        for optimizers that keep one, as a 0-d int64 array under ``"<i>.step"``.
        """
        hyper = {k: getattr(self, k) for k in self.defaults}
        state = {}
        for i, s in enumerate(self.state):
            for k, v in s.items():
                state[f"{i}.{k}"] = np.array(v, dtype=np.int64) if k == "step" else np.array(v, copy=True)
        return {"type": type(self).__name__, "hyper": hyper, "step_count": self.step_count, "state": state}

    def load_state_dict(self, sd: dict) -> None:
        """Restore what ``state_dict`` returned; everything is checked before anything changes.

        A state written by gradbox 0.1 (one global step count, no ``"<i>.step"`` entries) is
        converted: each parameter that has buffers takes ``step_count`` as its own count, which is
        exact when every parameter received a gradient at every step (as in 0.1's training runs).
        """
        who = f"{type(self).__name__}.load_state_dict"
        if not isinstance(sd, dict) or sd.get("type") != type(self).__name__:
            got = sd.get("type") if isinstance(sd, dict) else type(sd).__name__
            raise ValueError(f"{who}: expected state of a {type(self).__name__}, received {got!r}")
        try:
            step_count, hyper, items = sd["step_count"], sd["hyper"], sd["state"].items()
        except (KeyError, AttributeError, TypeError) as exc:
            raise ValueError(f"{who}: expected a dict with 'step_count', 'hyper' and 'state', received one "
                             f"without {exc}") from None
        if isinstance(step_count, (bool, np.bool_)) or not isinstance(step_count, (numbers.Integral, np.integer)) \
                or step_count < 0:
            raise ValueError(f"{who}['step_count']: expected an integer >= 0, received {step_count!r:.60}")
        known = set(self._state_keys) | ({"step"} if self._counts_steps else set())
        new_state = [dict() for _ in self.params]
        for key, value in items:
            index, _, name = key.partition(".")
            if not index.isdigit() or int(index) >= len(self.params) or name not in known:
                raise ValueError(f"{who}: expected keys '<param index < {len(self.params)}>.<one of "
                                 f"{sorted(known)}>', received {key!r}")
            p = self.params[int(index)]
            value = np.asarray(value)
            if name == "step":
                if value.shape != () or value.dtype.kind not in "iu" or value < 1:
                    raise ValueError(f"{who}[{key!r}]: expected an integer step count >= 1, received "
                                     f"{value.dtype} {value!r:.60}")
                new_state[int(index)][name] = int(value)
                continue
            if value.shape != p.shape or value.dtype != p.dtype:
                raise ValueError(
                    f"{who}[{key!r}]: expected {p.dtype} array of shape {p.shape}, received {value.dtype} {value.shape}"
                )
            new_state[int(index)][name] = value.copy()
        has_steps = any("step" in s for s in new_state)
        for i, s in enumerate(new_state):
            buffers = [k for k in self._state_keys if k in s]
            if buffers and len(buffers) != len(self._state_keys):
                missing = sorted(set(self._state_keys) - set(buffers))
                raise ValueError(f"{who}: expected parameter {i}'s buffers {list(self._state_keys)} together, "
                                 f"received it without {missing}")
            if self._counts_steps and buffers and "step" not in s:
                if has_steps:
                    raise ValueError(f"{who}: expected a step count '{i}.step' for parameter {i}, which has buffers")
                if step_count < 1:
                    raise ValueError(f"{who}: expected step_count >= 1 for a state with buffers, received {step_count}")
                s["step"] = int(step_count)  # NOTE: 0.1's format: one global count, see the docstring
            if "step" in s and not buffers:
                raise ValueError(f"{who}: expected parameter {i}'s buffers with its step count, received none")
        if not isinstance(hyper, dict):
            raise ValueError(f"{who}['hyper']: expected a dict, received {type(hyper).__name__}")
        checked = {}
        for k in self.defaults:
            if k not in hyper:
                continue
            v = hyper[k]
            if k in self._constraints:
                checked[k] = check(who, k, v, self._constraints[k])
            elif isinstance(v, type(self.defaults[k])):
                checked[k] = v
            else:
                raise ValueError(f"{who}: expected hyperparameter {k!r} of type {type(self.defaults[k]).__name__}, "
                                 f"received {v!r:.60}")
        for k, v in checked.items():
            setattr(self, k, v)
        self.state = new_state
        self.step_count = int(step_count)
