"""``Module`` and ``Parameter``: containers that keep parameters in a fixed order."""
from __future__ import annotations

import contextlib
import inspect
from collections import OrderedDict

import numpy as np

from .._validation import validate

from ..tensor import _FLOATS, Tensor


class Parameter(Tensor):
    """A tensor that a ``Module`` owns and an optimizer updates (``requires_grad`` is always True).

    >>> import gradbox as gb
    >>> p = gb.nn.Parameter([1.0, 2.0])
    >>> p.requires_grad, p.dtype.name
    (True, 'float32')

    ``_grad_out``: None, or an array of the parameter's shape and dtype that the next backward pass
    may compute its gradient into, when ``grad`` is None then (DDP's ``gradient_as_bucket_view``:
    ``gradbox.distributed`` points it into the buffer it exchanges, which saves copying the gradient
    there). A box that uses it sets it back to None, so a parameter used twice in one graph gets its
    second gradient in a new array. ``LinearFunction`` uses it; other boxes ignore it.
    """

    __slots__ = ("_grad_out",)

    def __init__(self, data, dtype=None):
        super().__init__(data, requires_grad=True, dtype=dtype)
        self._grad_out = None

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


def get_layer_class(name: str, where: str = "layer type") -> type:
    """The Module class registered as ``name``; ``TypeError`` naming the known ones otherwise."""
    cls = LAYERS.get(name) if isinstance(name, str) else None
    if cls is None:
        known = sorted(k for k in LAYERS if "." not in k)
        raise TypeError(f"{where}: expected one of {known}, received {str(name)[:80]!r}")
    return cls


def layer_name(module) -> str:
    """The registry name of ``module``'s exact type."""
    return type(module).__dict__.get("_layer_name") or register_layer(type(module))._layer_name


def layer_entry(module) -> dict:
    """``{"type": layer_name(module), **module.get_config()}``: one layer in a model file's spec.

    ``TypeError`` when the layer cannot describe itself: its constructor takes arguments but
    its class does not define ``get_config`` (as Keras, which would otherwise rebuild it with
    the defaults, silently).
    """
    cls = type(module)
    if cls.get_config is Module.get_config and _init_args(cls):
        raise TypeError(f"{cls.__module__}.{cls.__qualname__}: expected a layer that describes itself, but its "
                        f"constructor takes {_init_args(cls)} and it has no get_config() "
                        "(define get_config() returning those arguments)")
    config = module.get_config()
    if not isinstance(config, dict) or "type" in config:
        raise TypeError(f"{cls.__qualname__}.get_config(): expected a dict without a 'type' key, "
                        f"received {str(config)[:80]}")
    return {"type": layer_name(module), **config}


def check_entry(entry, where: str):
    """Validate one spec entry without building anything; return ``(cls, checked config)``."""
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
        raise ValueError(f"{where}: expected a dict with a 'type' string, received {str(entry)[:80]}")
    cls = get_layer_class(entry["type"], f"{where}['type']")
    try:
        config = cls.check_config({k: v for k, v in entry.items() if k != "type"})
    except (TypeError, ValueError) as exc:
        raise _located(exc, f"{where} ({entry['type']})") from None
    return cls, config


def _located(exc, where):
    """``exc`` with ``where: `` in front of its message, of the same type when that type allows."""
    try:
        return type(exc)(f"{where}: {exc}")
    except Exception:  # pragma: no cover - an exception type with another signature
        return (TypeError if isinstance(exc, TypeError) else ValueError)(f"{where}: {exc}")


def entry_state_specs(entry, where: str) -> list:
    """``(name, shape, dtype)`` of the state a spec entry's layer holds, without allocating it when
    the layer declares ``state_specs`` (all of gradbox's do); a user's layer without it is built."""
    cls, config = check_entry(entry, where)
    try:
        specs = cls.state_specs(config)
        if specs is None:
            layer = cls.from_config(config)
            specs = [(name, a.shape, a.dtype) for name, _, _, a in state_slots(layer)]
    except (TypeError, ValueError) as exc:
        raise _located(exc, f"{where} ({entry['type']})") from None
    return specs


def build_entry(entry, where: str = "layer"):
    """The (untrained) layer a spec entry describes."""
    cls, config = check_entry(entry, where)
    try:
        return cls.from_config(config)
    except (TypeError, ValueError) as exc:
        raise _located(exc, f"{where} ({entry['type']})") from None


def _init_args(cls, required_only: bool = False) -> list:
    """The names of ``cls.__init__``'s arguments (only those without a default, if asked)."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return [p.name for p in params if (p.default is p.empty or not required_only)
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def state_slots(module, prefix: str = ""):
    """Yield ``(name, owner, attribute, Parameter or array)`` for every parameter, then every persistent buffer.

    Unlike ``named_parameters`` a shared parameter (or module) is listed under every name it has,
    so a model file can record that two names are one array and a loader can tie them again.
    """
    slots = list(_walk(module, prefix, ()))
    for name, owner in slots:
        for key, p in owner._parameters.items():
            if p is not None:
                yield (f"{name}.{key}" if name else key), owner, key, p
    for name, owner in slots:
        skip = owner.__dict__.get("_non_persistent", ())
        for key, b in owner._buffers.items():
            if b is not None and key not in skip:
                yield (f"{name}.{key}" if name else key), owner, key, b


def _walk(module, name, ancestors):
    if id(module) in ancestors:
        raise ValueError(f"model: module {name!r} contains itself")
    yield name, module
    for key, child in module._modules.items():
        yield from _walk(child, f"{name}.{key}" if name else key, ancestors + (id(module),))


def _layer_dtype(dtype, who: str) -> np.dtype:
    """``dtype`` as the NumPy dtype a layer computes in: float32 or float64, else ``TypeError``."""
    dtype = np.dtype(dtype)
    if dtype not in _FLOATS[1:]:
        raise TypeError(f"{who}(dtype): expected float32 or float64, received {dtype}")
    return dtype


@contextlib.contextmanager
def eval_mode(model):
    """Run a block with ``model`` in ``eval()`` mode, then give every submodule back its own mode.

    >>> import gradbox as gb
    >>> model = gb.nn.Sequential(gb.nn.Dropout(0.5), gb.nn.Dropout(0.5).eval())
    >>> with gb.nn.eval_mode(model):
    ...     print([m.training for m in model.modules()])
    [False, False, False]
    >>> [m.training for m in model.modules()]
    [True, True, False]
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            object.__setattr__(m, "training", mode)


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

    #: name -> ``gradbox._validation`` constraint, checked by ``check_config`` (and constructors)
    _parameter_constraints: dict = {}

    @classmethod
    def from_config(cls, config: dict) -> "Module":
        """Build an (untrained) layer from ``get_config()``'s output."""
        return cls(**cls.check_config(config))

    @classmethod
    def check_config(cls, config: dict) -> dict:
        """Validate a config without building the layer: its keys against the constructor's
        arguments, its values against ``_parameter_constraints``. Returns the checked config."""
        if not isinstance(config, dict):
            raise TypeError(f"{cls.__name__}.from_config(config): expected a dict, received {type(config).__name__}")
        params = inspect.signature(cls.__init__).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            extra = sorted(set(config) - set(list(params)[1:]))
            missing = sorted(set(_init_args(cls, required_only=True)) - set(config))
            if extra or missing:
                raise ValueError(f"{cls.__name__}: unexpected keys {extra}, missing keys {missing}")
        return validate(cls.__name__, config, cls._parameter_constraints)

    @classmethod
    def state_specs(cls, config: dict):
        """``[(name, shape, dtype)]`` of the parameters and persistent buffers ``from_config(config)``
        would allocate, computed without allocating (a model file's declared sizes are checked
        against its array table first). ``None``: unknown until built (a user's layer may say so)."""
        return None

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
        """Convert every parameter and floating-point buffer to ``dtype`` in place (float16, float32 or float64)."""
        dtype = np.dtype(dtype)
        if dtype not in _FLOATS:
            raise TypeError(f"astype: expected a float dtype, received {dtype}")
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = None
        # NOTE: every floating-point buffer, persistent or not (as PyTorch's ``.double()``); integer ones stay
        for module in self.modules():
            for name, b in list(module._buffers.items()):
                if b is not None and b.dtype.kind == "f":
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


class _Stateless(Module):
    """A layer without parameters or buffers."""

    @classmethod
    def state_specs(cls, config):
        cls.check_config(config)
        return []
