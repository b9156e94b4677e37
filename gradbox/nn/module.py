"""``Module`` and ``Parameter``: containers that keep parameters in a fixed order."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..tensor import _FLOATS, Tensor


class Parameter(Tensor):
    """A tensor that a ``Module`` owns and an optimizer updates (``requires_grad`` is always True).

    >>> import gradbox as gb
    >>> p = gb.nn.Parameter([1.0, 2.0])
    >>> p.requires_grad, p.dtype.name
    (True, 'float32')
    """

    __slots__ = ()

    def __init__(self, data, dtype=None):
        super().__init__(data, requires_grad=True, dtype=dtype)

    def __repr__(self):
        return "Parameter" + super().__repr__()[len("Tensor"):]


# NOTE: one registry of layer types, filled by ``Module.__init_subclass__``. Model files,
# ``gradbox info``, ``explain``, the graph pictures and ONNX export find layers here by
# name and rebuild them with ``from_config(get_config())`` (Keras's names), so adding a
# layer type means adding one class (and its tests), nothing else.
LAYERS: "dict[str, type]" = {}


def register_layer(cls, name: str | None = None):
    """Register ``cls`` under ``name`` (default: the class name for gradbox's own layers,
    ``module.qualname`` for a user's), so model files can rebuild it. Returns ``cls``."""
    if name is None:
        name = cls.__name__ if cls.__module__.startswith("gradbox.") else f"{cls.__module__}.{cls.__qualname__}"
    cls._layer_name = name
    LAYERS[name] = cls
    return cls


def get_layer_class(name: str) -> type:
    """The Module class registered as ``name``; ``TypeError`` naming the known ones otherwise."""
    cls = LAYERS.get(name) if isinstance(name, str) else None
    if cls is None:
        known = sorted(k for k in LAYERS if "." not in k)
        raise TypeError(f"layer type: expected one of {known}, received {name!r}")
    return cls


def layer_name(module) -> str:
    """The registry name of ``module``'s exact type."""
    return type(module).__dict__.get("_layer_name") or register_layer(type(module))._layer_name


class Module:
    """Base class of layers and models, as in PyTorch.

    Attributes that are ``Parameter`` or ``Module`` are registered in the order
    they are assigned, so ``parameters()`` always yields the same order (an
    optimizer's state and a saved file depend on it).

    Examples
    --------
    >>> import gradbox as gb
    >>> class Scale(gb.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.w = gb.nn.Parameter([2.0])
    ...     def forward(self, x):
    ...         return x * self.w
    >>> m = Scale()
    >>> m(gb.Tensor([3.0])).data, [name for name, _ in m.named_parameters()]
    (array([6.], dtype=float32), ['w'])
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            register_layer(cls)

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)

    # --- configuration (Keras's names) --------------------------------------
    def get_config(self) -> dict:
        """The constructor arguments that rebuild this layer, JSON-friendly (``from_config``'s input).

        Layers with constructor arguments override this; a module without any returns ``{}``.
        """
        return {}

    @classmethod
    def from_config(cls, config: dict) -> "Module":
        """Build an (untrained) layer from ``get_config()``'s output."""
        if not isinstance(config, dict):
            raise TypeError(f"{cls.__name__}.from_config(config): expected a dict, received {type(config).__name__}")
        return cls(**config)

    # --- buffers (PyTorch's semantics) ---------------------------------------
    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        """Register a non-trainable array (e.g. BatchNorm's ``running_mean``).

        Buffers are in ``state_dict()`` and model files (when ``persistent``), follow
        ``astype`` and are never handed to an optimizer. ``None`` registers an empty slot.
        """
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"register_buffer(name): expected a non-empty name without '.', received {name!r}")
        if name in self._parameters or name in self._modules:
            raise KeyError(f"register_buffer(name): {name!r} is already a parameter or submodule")
        if tensor is not None:
            tensor = tensor.data if isinstance(tensor, Tensor) else np.asarray(tensor)
        self._buffers[name] = tensor
        if not persistent:
            self.__dict__.setdefault("_non_persistent", set()).add(name)
        object.__setattr__(self, name, tensor)

    def named_buffers(self, prefix: str = ""):
        """Yield ``(name, array)`` for every buffer, in registration order."""
        for mod_name, module in self.named_modules(prefix):
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{mod_name}.{name}" if mod_name else name), b

    def buffers(self):
        return (b for _, b in self.named_buffers())

    def _persistent_buffers(self):
        for mod_name, module in self.named_modules():
            skip = module.__dict__.get("_non_persistent", ())
            for name, b in module._buffers.items():
                if b is not None and name not in skip:
                    yield (f"{mod_name}.{name}" if mod_name else name), module, name

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        # NOTE: replacing a parameter or module keeps its place in the order (as in PyTorch)
        if name in self._buffers and not isinstance(value, (Parameter, Module)):
            # NOTE: assigning to a buffer's name updates the buffer (``self.running_mean = ...``)
            value = value.data if isinstance(value, Tensor) else (None if value is None else np.asarray(value))
            self._buffers[name] = value
        elif isinstance(value, Parameter):
            self._modules.pop(name, None)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._parameters.pop(name, None)
            self._modules[name] = value
        else:
            self._parameters.pop(name, None)
            self._modules.pop(name, None)
        object.__setattr__(self, name, value)

    def forward(self, *args, **kwargs):  # pragma: no cover - interface
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # --- traversal ---------------------------------------------------------
    def named_modules(self, prefix: str = ""):
        stack = [(prefix, self)]
        seen = set()
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{k}" if name else k, m) for k, m in module._modules.items()]
            stack.extend(reversed(children))

    def modules(self):
        return (m for _, m in self.named_modules())

    def children(self):
        return iter(self._modules.values())

    def named_parameters(self, prefix: str = ""):
        """Yield ``(name, Parameter)`` in registration order; a shared one once."""
        seen = set()
        for mod_name, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                if id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self):
        return (p for _, p in self.named_parameters())

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> "Module":
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def astype(self, dtype) -> "Module":
        """Convert every parameter to ``dtype`` in place (float32 or float64)."""
        dtype = np.dtype(dtype)
        if dtype not in _FLOATS:
            raise TypeError(f"astype: expected a float dtype, received {dtype}")
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = None
        for _, module, name in list(self._persistent_buffers()):
            b = module._buffers[name]
            if b.dtype.kind == "f":
                setattr(module, name, b.astype(dtype))
        return self

    # --- state ----------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Copies of every parameter, then every persistent buffer, by dotted name, in registration order."""
        sd = OrderedDict((name, p.data.copy()) for name, p in self.named_parameters())
        for name, module, key in self._persistent_buffers():
            sd[name] = module._buffers[key].copy()
        return sd

    def _state_targets(self) -> "OrderedDict[str, np.ndarray]":
        """The live arrays that ``load_state_dict`` writes into, by ``state_dict`` name."""
        own = OrderedDict((name, p.data) for name, p in self.named_parameters())
        for name, module, key in self._persistent_buffers():
            own[name] = module._buffers[key]
        return own

    def load_state_dict(self, state_dict, strict: bool = True) -> None:
        if not hasattr(state_dict, "items"):
            raise TypeError(f"state_dict: expected a mapping of name to array, received {type(state_dict).__name__}")
        own = self._state_targets()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise ValueError(
                f"load_state_dict: expected keys {list(own)}, received {list(state_dict)} "
                f"(missing {missing}, unexpected {unexpected})"
            )
        checked = []
        for name, p in own.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            value = value.data if isinstance(value, Tensor) else np.asarray(value)
            if value.shape != p.shape:
                raise ValueError(f"load_state_dict[{name!r}]: expected shape {p.shape}, received {value.shape}")
            if value.dtype != p.dtype:
                raise TypeError(f"load_state_dict[{name!r}]: expected dtype {p.dtype}, received {value.dtype}")
            checked.append((p, value))
        # NOTE: copy only after every entry is validated, so a bad dict changes nothing.
        for p, value in checked:
            np.copyto(p, value)

    # --- printing ---------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"  ({k}): " + repr(m).replace("\n", "\n  ") for k, m in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + ("\n" + "\n".join(lines) + "\n)" if lines else ")")
