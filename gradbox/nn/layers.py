"""Layers: ``Linear``, activations, ``Dropout``, ``Flatten`` and ``Sequential``."""
from __future__ import annotations

import numpy as np

from .. import ops
from .._validation import boolean, check, integer, interval, one_of, positive_int, probability, validate
from ..function import _state
from ..errors import NonFiniteError, all_finite, first_nonfinite
from ..random import resolve_rng
from ..tensor import Tensor
from . import functional as F
from .init import INITIALIZERS, get_initializer
from .module import Module, Parameter, _layer_dtype, _Stateless, build_entry, entry_state_specs, layer_entry

_SPEC_DTYPES = ("float16", "float32", "float64")


def _plain(module) -> bool:
    """Whether calling ``module`` runs its class's own ``forward`` (no ``forward`` set on the instance)."""
    return type(module).__call__ is Module.__call__ and "forward" not in module.__dict__


def _honours_forward(module, fast: str) -> bool:
    """Whether ``module``'s no-graph method ``fast`` computes what its ``forward`` does.

    NOTE: true when the class that defines ``fast`` is the one that defines ``forward`` or a
    subclass of it (and ``__call__`` is Module's). A subclass that overrides ``forward`` but
    inherits ``_infer`` fails this, so Sequential's no-graph path never bypasses a user's
    ``forward`` (issue 12, one forward per layer).
    """
    cls = type(module)
    if cls.__call__ is not Module.__call__ or "forward" in module.__dict__:
        return False
    owner = {name: next((k for k in cls.__mro__ if name in k.__dict__), None) for name in ("forward", fast)}
    return owner[fast] is not None and issubclass(owner[fast], owner["forward"])


class Linear(Module):
    """Fully connected layer: ``Z = X Wᵀ + b``, one fused box.

    Parameters
    ----------
    in_features, out_features : int
        Sizes n[l-1] and n[l] in the notes.
    bias : bool
        Learn an additive bias ``b`` (initialised to zero; the weights break symmetry).
    dtype : float32 or float64
    init : str
        ``"he_uniform"`` (default), ``"he_normal"``, ``"xavier_uniform"``, ``"xavier_normal"`` or ``"normal"``.
    rng : None, int or numpy.random.Generator
        Source of the initial weights; ``None`` uses ``gradbox.manual_seed``'s generator.

    Attributes
    ----------
    weight : Parameter of shape (out_features, in_features) -- the notes' W[l]
    bias : Parameter of shape (out_features,) or None -- the notes' b[l], flattened

    Shape
    -----
    - Input: (N, in_features)
    - Output: (N, out_features)

    Examples
    --------
    >>> import gradbox as gb
    >>> layer = gb.nn.Linear(3, 2, rng=0)
    >>> layer(gb.Tensor([[1.0, 2.0, 3.0]])).shape
    (1, 2)
    """

    _parameter_constraints = {"in_features": positive_int, "out_features": positive_int, "bias": boolean,
                              "dtype": one_of(*_SPEC_DTYPES), "init": one_of(*sorted(INITIALIZERS))}

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, init="he_uniform", rng=None):
        super().__init__()
        args = validate("Linear", {"in_features": in_features, "out_features": out_features, "init": init},
                        self._parameter_constraints)
        self.in_features, self.out_features = args["in_features"], args["out_features"]
        dtype = _layer_dtype(dtype, "Linear")
        self.weight = Parameter(np.empty((self.out_features, self.in_features), dtype=dtype))
        get_initializer(init)(self.weight, rng=resolve_rng(rng))
        self.init = init
        self.bias = Parameter(np.zeros(self.out_features, dtype=dtype)) if bias else None

    def get_config(self):
        config = {"in_features": self.in_features, "out_features": self.out_features,
                  "bias": self.bias is not None, "dtype": str(self.weight.dtype)}
        if self.init != "he_uniform":
            config["init"] = self.init  # NOTE: only when not the default, so 0.1 can read the file
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(cls.check_config(config))
        # NOTE: float16 is a storage type (``astype``), not one Linear computes in; build, then convert.
        half = config.get("dtype") == "float16"
        if half:
            config["dtype"] = "float32"
        layer = cls(**config)
        return layer.astype(np.float16) if half else layer

    @classmethod
    def state_specs(cls, config):
        config = cls.check_config(config)
        dtype = np.dtype(config.get("dtype", "float32"))
        n_in, n_out = config["in_features"], config["out_features"]
        return [("weight", (n_out, n_in), dtype)] + ([("bias", (n_out,), dtype)] if config.get("bias", True) else [])

    def _check(self, x) -> Tensor:
        """Validate an input batch; raw data is also checked for NaN/inf and made contiguous."""
        if not isinstance(x, Tensor) or not (x.requires_grad or x.data.flags.c_contiguous):
            # NOTE: raw arrays are user data entering the graph: check them once here.
            # A C-contiguous copy of Fortran-ordered or strided data makes BLAS take the
            # same path, so results are bit-identical to those of a contiguous array.
            x = x if isinstance(x, Tensor) else Tensor(x)
            if not x.data.flags.c_contiguous:
                x = Tensor(np.ascontiguousarray(x.data))
            if x.dtype.kind == "f" and not all_finite(x.data):
                raise NonFiniteError(
                    f"Linear(in_features={self.in_features}): expected finite input, "
                    f"received {first_nonfinite(x.data)}"
                )
        w = self.weight
        shape = x.data.shape  # NOTE: the array's attributes directly; Tensor properties cost a call each
        if len(shape) != 2 or shape[1] != self.in_features or shape[0] == 0:
            raise ValueError(
                f"Linear(in_features={self.in_features}): expected input of shape (N, {self.in_features}) "
                f"with N >= 1, received {x.shape}"
            )
        if x.data.dtype != w.data.dtype:
            raise TypeError(
                f"Linear(in_features={self.in_features}): expected input of dtype {w.dtype}, "
                f"received {x.dtype} (convert with .astype(np.{w.dtype}))"
            )
        return x

    def forward(self, x):
        return F.linear(self._check(x), self.weight, self.bias)

    def _infer_input(self, x) -> np.ndarray:
        """This layer's output for a user's input batch on the no-graph path (``_check``'s checks).

        NOTE: ``._data``, not the ``.data`` property: a property call per array is 4% of a
        single-sample prediction, and reading needs no version bump.
        """
        w = self.weight._data
        # NOTE: the common case, a C-contiguous float array of the right shape and dtype, is
        # checked on the array itself, without building a Tensor.
        if not (type(x) is np.ndarray and x.ndim == 2 and x.shape[1] == self.in_features and x.shape[0]
                and x.dtype == w.dtype and x.flags.c_contiguous and all_finite(x)):
            x = self._check(x).data
        return F.affine(x, w, None if self.bias is None else self.bias._data)

    def _infer(self, a: np.ndarray) -> np.ndarray:
        # NOTE: the same arithmetic as the box's forward on bare arrays: no graph, bit-identical.
        w = self.weight._data
        if a.ndim != 2 or a.shape[1] != self.in_features or a.dtype != w.dtype:
            self._check(Tensor._from_op(a, False))  # raises the layer's usual error
        return F.affine(a, w, None if self.bias is None else self.bias._data)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class _Activation(_Stateless):
    fn = None
    box = None  # the ops Function whose forward computes g(z)
    is_activation = True  # gradbox.explain reports it as the g of the layer before it

    def forward(self, x):
        return type(self).fn(x)

    def _infer(self, a):
        # NOTE: Sequential's no-graph path hands ``_infer`` arrays it owns, so an
        # activation may overwrite ``a`` (ReLU and Tanh do: one allocation less).
        return self.box().forward(a)


class ReLU(_Activation):
    """g(z) = max(0, z); g'(z) = 1 if z > 0 else 0.

    Shape
    -----
    Any; the output has the input's shape.

    >>> import gradbox as gb
    >>> gb.nn.ReLU()(gb.Tensor([-1.0, 2.0])).data
    array([0., 2.], dtype=float32)
    """

    fn = staticmethod(ops.relu)
    box = ops.ReLU

    def unit_health(self, a):
        """("dead", share of units never positive over the batch): they get no gradient."""
        return "dead", float(np.mean(a.max(axis=0) <= 0))

    def _infer(self, a):
        return ops._relu(a, out=a)


class Sigmoid(_Activation):
    """g(z) = 1 / (1 + e^-z); g'(z) = g(z)(1 - g(z)). Stable for any z.

    Shape
    -----
    Any; the output has the input's shape.

    >>> import gradbox as gb
    >>> gb.nn.Sigmoid()(gb.Tensor([0.0])).data
    array([0.5], dtype=float32)
    """

    fn = staticmethod(ops.sigmoid)
    box = ops.Sigmoid

    def unit_health(self, a):
        """("saturated", share of outputs within 0.01 of 0 or 1, where g'(z) ≈ 0)."""
        return "saturated", float(np.mean((a < 0.01) | (a > 0.99)))


class Tanh(_Activation):
    """g(z) = tanh(z); g'(z) = 1 - tanh(z)^2.

    Shape
    -----
    Any; the output has the input's shape.

    >>> import gradbox as gb
    >>> round(gb.nn.Tanh()(gb.Tensor([1.0])).item(), 4)
    0.7616
    """

    fn = staticmethod(ops.tanh)
    box = ops.Tanh

    def unit_health(self, a):
        """("saturated", share of outputs with |g| > 0.99, where g'(z) ≈ 0)."""
        return "saturated", float(np.mean(np.abs(a) > 0.99))

    def _infer(self, a):
        return np.tanh(a, out=a)


class LeakyReLU(_Stateless):
    """g(z) = z if z > 0 else negative_slope·z; g'(z) = 1 if z > 0 else negative_slope.

    Parameters
    ----------
    negative_slope : float in [0, 1), default 0.01

    Shape
    -----
    Any; the output has the input's shape.

    >>> import gradbox as gb
    >>> gb.nn.LeakyReLU(0.5)(gb.Tensor([-1.0, 2.0])).data
    array([-0.5,  2. ], dtype=float32)
    """

    _parameter_constraints = {"negative_slope": interval("real", 0, 1, closed="left")}
    is_activation = True

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = check("LeakyReLU", "negative_slope", negative_slope,
                                    self._parameter_constraints["negative_slope"])

    def get_config(self):
        return {"negative_slope": self.negative_slope}

    def forward(self, x):
        return ops.leaky_relu(x, self.negative_slope)

    def _infer(self, a):
        return ops.LeakyReLU().forward(a, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Softmax(_Stateless):
    """softmax(z)_i = e^{z_i} / Σ_j e^{z_j} along ``dim``, computed stably.

    Parameters
    ----------
    dim : int, default -1
        The axis whose entries become probabilities summing to 1.

    Shape
    -----
    - Input: any, at least 1-D; Output: the same shape

    Examples
    --------
    >>> import gradbox as gb
    >>> round(gb.nn.Softmax(dim=1)(gb.Tensor([[1.0, 1.0]]))[0, 0].item(), 4)
    0.5
    """

    _parameter_constraints = {"dim": integer}
    is_activation = True

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = check("Softmax", "dim", dim, integer)

    def get_config(self):
        return {"dim": self.dim}

    def forward(self, x):
        return ops.softmax(x, axis=self.dim)

    def _infer(self, a):
        if not -a.ndim <= self.dim < a.ndim:
            return ops.softmax(Tensor._from_op(a, False), axis=self.dim).data  # raises the usual error
        return ops.Softmax().forward(a, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class Dropout(_Stateless):
    """Inverted dropout: zero each unit with probability ``p`` and scale the rest by 1/(1-p).

    Identity in ``eval()`` mode.

    Parameters
    ----------
    p : float in [0, 1), default 0.5
    rng : None, int or numpy.random.Generator
        Source of the masks; ``None`` uses ``gradbox.manual_seed``'s generator.

    Shape
    -----
    Any; the output has the input's shape.

    >>> import gradbox as gb
    >>> drop = gb.nn.Dropout(p=0.5, rng=0)
    >>> drop(gb.Tensor([[1.0, 2.0, 3.0]])).shape, drop.eval()(gb.Tensor([1.0, 2.0])).data
    ((1, 3), array([1., 2.], dtype=float32))
    """

    _parameter_constraints = {"p": probability}

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        self.p = check("Dropout", "p", p, probability)
        self.rng = rng  # None follows gradbox.manual_seed, so checkpoints capture it

    def get_config(self):
        return {"p": self.p}  # NOTE: not rng: a Generator is not JSON, and a loaded model draws afresh

    def forward(self, x):
        return F.dropout(x, self.p, self.training, self.rng)

    def _infer(self, a):
        # NOTE: the same draws as the graph path, so no_grad in training mode still drops units
        if not self.training or not self.p:
            return a
        return F.DropoutFunction().forward(a, self.p, resolve_rng(self.rng))

    def extra_repr(self):
        return f"p={self.p}"


class Flatten(_Stateless):
    """Flatten all but the batch dimension: (N, *) -> (N, prod(*)); the gradient is reshaped back.

    Shape
    -----
    - Input: (N, *)
    - Output: (N, prod(*))

    Examples
    --------
    >>> import gradbox as gb
    >>> gb.nn.Flatten()(gb.Tensor([[[1.0, 2.0], [3.0, 4.0]]])).shape
    (1, 4)
    """

    def forward(self, x):
        x = x if isinstance(x, Tensor) else Tensor(x)
        if x.ndim < 1:
            raise ValueError(f"Flatten: expected input of shape (N, ...), received {x.shape}")
        return ops.reshape(x, (x.shape[0], -1) if x.shape[0] else (0, int(np.prod(x.shape[1:]))))


class _ConvMaxPool:
    """A ``Conv2d``, the ``MaxPool2d`` after it and the ``ReLU`` after that (or None), called as one
    (``Sequential``'s fused layers): one box while the pooling's windows tile its input, else the layers one
    after the other."""

    __slots__ = ("conv", "pool", "relu")

    def __init__(self, conv, pool, relu=None):
        self.conv, self.pool, self.relu = conv, pool, relu

    def __call__(self, x):
        return self.conv._forward_max_pool(x, self.pool, self.relu)

    def __repr__(self):
        return f"_ConvMaxPool({self.conv!r}, {self.pool!r}, {self.relu!r})"


class _ConvStack:
    """Fused blocks (``_ConvMaxPool``'s conv, pool, relu) directly after one another, called as one
    (``Conv2d._forward_stack``): one box where their parts merge, else block by block."""

    __slots__ = ("units",)

    def __init__(self, units):
        self.units = tuple((u.conv, u.pool, u.relu) for u in units)

    def __call__(self, x):
        return self.units[0][0]._forward_stack(self.units, x)

    def __repr__(self):
        return f"_ConvStack({self.units!r})"


class Sequential(Module):
    """Apply modules in order: the notes' forward pass through all layers.

    Shape
    -----
    - Input: the first module's input; Output: the last module's output

    Notes
    -----
    ``fuse_layers`` (on by default) runs common runs of layers faster, with the values and
    gradients of the layers as written:

    - A ``ReLU`` directly followed by a ``MaxPool2d`` runs after the pooling, on its output:
      max(relu(z)) = relu(max(z)) for every window, exactly, since ReLU is non-decreasing and keeps
      the order of positive values (the first maximum of a window is the same). A zero may come out
      as -0 where it was +0. The ReLU then touches a quarter of the numbers for 2x2 pooling.
    - A ``Conv2d`` directly followed by a ``MaxPool2d`` whose windows tile its input (stride = kernel
      size, no padding), and by a ``ReLU`` after that if there is one, runs as one box,
      ``Conv2dMaxPoolFunction``: bit for bit the boxes' values and gradients; with the ``fast`` extra its
      pooling runs chunk by chunk next to the convolution's products, on the same threads, and the ReLU
      works in place on the pooled output.
    - Such blocks directly after one another run as one call: on the NumPy path, with a batch large enough
      to be shared among gradbox's threads, as one box, ``Conv2dStackFunction``, in which each thread takes
      its own images through every block, forward and backward (bit for bit the boxes' values and
      gradients); otherwise block by block.

    So ``Conv2d, ReLU, MaxPool2d`` runs as one box: the convolution, the pooling, then the ReLU. The
    recorded graph shows what ran. Set ``fuse_layers = False`` on the model (or on ``Sequential``)
    to run the layers exactly as listed (``gradbox graph`` does, to draw them so).

    Examples
    --------
    >>> import gradbox as gb
    >>> model = gb.nn.Sequential(gb.nn.Linear(4, 8), gb.nn.ReLU(), gb.nn.Linear(8, 3))
    >>> len(model), model(gb.Tensor([[0.0, 1.0, 2.0, 3.0]])).shape
    (3, (1, 3))
    """

    #: Whether adjacent ``ReLU, MaxPool2d`` and ``Conv2d, MaxPool2d(, ReLU)`` run fused (see Notes).
    #: NOTE: measured on training steps of the bench's CNNs (BENCHMARKS.md, "Convolutions, eleventh session")
    fuse_layers = True

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: expected Module arguments, received {type(m).__name__} at position {i}")
            setattr(self, str(i), m)

    def get_config(self):
        return {"layers": [layer_entry(m) for m in self]}

    @classmethod
    def check_config(cls, config):
        if not isinstance(config, dict) or set(config) - {"layers"} or not isinstance(config.get("layers", []), list):
            raise ValueError(f"{cls.__name__}: expected a config {{'layers': [layer dicts]}}, received {str(config)[:80]}")
        return config

    @classmethod
    def from_config(cls, config):
        layers = cls.check_config(config).get("layers", [])
        return cls(*(build_entry(e, f"layers[{i}]") for i, e in enumerate(layers)))

    @classmethod
    def state_specs(cls, config):
        layers = cls.check_config(config).get("layers", [])
        return [(f"{i}.{name}", shape, dtype) for i, e in enumerate(layers)
                for name, shape, dtype in entry_state_specs(e, f"layers[{i}]")]

    def forward(self, x):
        if not getattr(_state, "enabled", True):  # NOTE: is_grad_enabled() inlined: one call less per prediction
            out = self._forward_no_graph(x)
            if out is not None:
                return out
        if self.fuse_layers:
            order = self.__dict__.get("_order")
            if order is None:
                order = self._make_order()
                object.__setattr__(self, "_order", order)  # NOTE: dropped by __setattr__ (module changes)
        else:
            order = self._modules.values()
        for m in order:
            x = m(x)
        return x

    def _make_order(self) -> tuple:
        """What ``forward`` runs, in order, when it fuses (see Notes): the modules, each ``ReLU`` directly
        followed by a ``MaxPool2d`` after it, then each ``Conv2d`` directly followed by a ``MaxPool2d`` (and a
        ``ReLU`` after that) as one call (``_ConvMaxPool``). Only modules of exactly those classes, none with a
        ``forward`` of its own."""
        from .conv import Conv2d
        from .pooling import MaxPool2d

        mods = list(self._modules.values())
        for i in range(len(mods) - 1):
            relu, pool = mods[i], mods[i + 1]
            if type(relu) is ReLU and type(pool) is MaxPool2d and _plain(relu) and _plain(pool):
                mods[i], mods[i + 1] = pool, relu
        order, i = [], 0
        while i < len(mods):
            conv, pool = mods[i], mods[i + 1] if i + 1 < len(mods) else None
            if type(conv) is Conv2d and type(pool) is MaxPool2d and _plain(conv) and _plain(pool):
                relu = mods[i + 2] if i + 2 < len(mods) else None
                relu = relu if type(relu) is ReLU and _plain(relu) else None
                order.append(_ConvMaxPool(conv, pool, relu))
                i += 2 if relu is None else 3
            else:
                order.append(conv)
                i += 1
        # NOTE: blocks directly after one another as one call: on the NumPy path each thread then takes its
        # images through all of them in one part (Conv2dStackFunction)
        merged, run = [], []
        for m in order + [None]:
            if type(m) is _ConvMaxPool:
                run.append(m)
                continue
            merged += [_ConvStack(run)] if len(run) > 1 else run
            run = []
            if m is not None:
                merged.append(m)
        return tuple(merged)

    def _forward_no_graph(self, x):
        """An MLP's forward on bare arrays, or None when a module has no ``_infer``.

        NOTE: under no_grad no graph is recorded, so a Sequential that starts with a
        Linear can run its boxes' arithmetic on bare arrays: bit-identical results
        without a Tensor and a context per layer (single-sample latency: 38 µs via the graph, 21 µs here).
        Every array after the first Linear is one this path allocated, so activations
        may work in place; the caller's input is never written.
        """
        plan = self.__dict__.get("_plan")
        if plan is None:
            plan = self._make_plan()
            object.__setattr__(self, "_plan", plan)  # NOTE: dropped by __setattr__ (module changes)
        if not plan:
            return None
        first, steps = plan
        a = first._infer_input(x)
        for step in steps:
            a = step(a)
        return Tensor._from_op(a, False)

    def _make_plan(self) -> tuple:
        """(first Linear, the other modules' ``_infer``), or () if some module has none or has
        its own ``forward`` (a subclass that overrides ``forward`` is always run through it)."""
        first, *rest = self._modules.values() or (None,)
        if not (isinstance(first, Linear) and _honours_forward(first, "_infer_input")):
            return ()
        steps = tuple(m._infer if _honours_forward(m, "_infer") else None for m in rest)
        return (first, steps) if None not in steps else ()

    def __setattr__(self, name, value):
        self.__dict__.pop("_plan", None)
        self.__dict__.pop("_order", None)
        super().__setattr__(name, value)

    def append(self, module: Module) -> "Sequential":
        if not isinstance(module, Module):
            raise TypeError(f"Sequential.append: expected a Module, received {type(module).__name__}")
        setattr(self, str(len(self._modules)), module)
        return self

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, i):
        return list(self._modules.values())[i]
