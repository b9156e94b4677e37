"""Export a gradbox model to ONNX, and run an exported file (onnxruntime, or onnx's reference evaluator).

``pip install "gradbox[onnx]"`` (onnx; onnxruntime to run the file fast). The graph is built with
``onnx.helper``: one exporter function per layer type, found by the layer's registry name
(``gradbox.nn.module.layer_name``) in ``_EXPORTERS``; a layer without one is refused with a message
naming it. The exported graph takes the same raw inputs as ``gradbox predict``: a model file's
stored standardisation becomes ``Sub``/``Div`` nodes in front. Its outputs are ``logits`` (the
network's output) and ``probabilities`` (Softmax over the last axis, or Sigmoid for a single
logit, as ``gradbox.train.predict_proba``). The batch dimension is dynamic. Layers are exported
in inference mode: Dropout is the identity and BatchNorm uses its running statistics.

NOTE: ``import onnx`` below is the top-level onnx package (absolute imports), not this module.
See docs/onnx.md.
"""
from __future__ import annotations

import json
import numbers
import os

import numpy as np

__all__ = ["export", "export_model_file", "run", "DEFAULT_OPSET", "MIN_OPSET"]

DEFAULT_OPSET = 17
# NOTE: Softmax's per-axis semantics (gradbox's) start at opset 13; before it coerced to 2-D.
MIN_OPSET = 13
_DTYPES = {np.dtype(np.float32): "FLOAT", np.dtype(np.float64): "DOUBLE"}


def _import_onnx():
    try:
        import onnx
        import onnx.helper  # noqa: F401
        import onnx.numpy_helper  # noqa: F401
    except ImportError as exc:
        raise ImportError(f'gradbox.onnx: expected the onnx package (pip install "gradbox[onnx]"), received {exc}') \
            from None
    return onnx


class _Graph:
    """The nodes and initializers being built, with unique names."""

    def __init__(self, onnx, dtype, opset):
        self.onnx, self.dtype, self.opset = onnx, np.dtype(dtype), int(opset)
        self.nodes, self.initializers, self._count = [], [], 0
        self.in_rank = None  # the rank of the current layer's input

    def name(self, hint):
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint, array):
        name = self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def param(self, hint, array):
        """A weight as an initializer in the graph's float type."""
        return self.const(hint, np.asarray(array, dtype=self.dtype))

    def node(self, op, inputs, hint=None, output=None, **attrs):
        out = output or self.name(hint or op.lower())
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [out], name=self.name(op), **attrs))
        return out


def _cfg(module, config, key, default=None):
    """A layer setting from ``get_config()``, else the attribute of the same name (PyTorch's names)."""
    if key in config:
        return config[key]
    return getattr(module, key, default)


def _pair(value, who, key):
    if isinstance(value, numbers.Integral):
        return [int(value), int(value)]
    try:
        a, b = value
        return [int(a), int(b)]
    except (TypeError, ValueError):
        raise ValueError(f"{who}: expected an int or a pair for {key}, received {value!r}") from None


def _array(value):
    return None if value is None else np.asarray(getattr(value, "data", value))


# --- one exporter per layer type: (graph, module, config, input name) -> output name ---------
def _linear(g, m, cfg, x):
    inputs = [x, g.param("weight", _array(m.weight))]
    if getattr(m, "bias", None) is not None:
        inputs.append(g.param("bias", _array(m.bias)))
    return g.node("Gemm", inputs, "linear", transB=1)


def _unary(op):
    def export(g, m, cfg, x):
        return g.node(op, [x])
    export.__name__ = f"_{op.lower()}"
    return export


def _leaky_relu(g, m, cfg, x):
    return g.node("LeakyRelu", [x], alpha=float(_cfg(m, cfg, "negative_slope", 0.01)))


def _softmax(g, m, cfg, x):
    return g.node("Softmax", [x], axis=int(_cfg(m, cfg, "dim", -1)))


def _flatten(g, m, cfg, x):
    return g.node("Flatten", [x], axis=1)


def _identity(g, m, cfg, x):
    return x  # NOTE: Dropout is the identity at inference; no node needed


def _pool_attrs(m, cfg, who):
    k = _pair(_cfg(m, cfg, "kernel_size"), who, "kernel_size")
    stride = _cfg(m, cfg, "stride", None)
    s = k if stride is None else _pair(stride, who, "stride")
    p = _pair(_cfg(m, cfg, "padding", 0), who, "padding")
    attrs = {"kernel_shape": k, "strides": s, "pads": [p[0], p[1], p[0], p[1]]}
    if _cfg(m, cfg, "ceil_mode", False):
        attrs["ceil_mode"] = 1
    return attrs


def _conv2d(g, m, cfg, x):
    who = "Conv2d"
    w = _array(m.weight)
    attrs = {"kernel_shape": list(w.shape[2:]), "strides": _pair(_cfg(m, cfg, "stride", 1), who, "stride")}
    pad = _cfg(m, cfg, "padding", 0)
    if isinstance(pad, str):
        raise ValueError(f"{who}: expected numeric padding, received {pad!r}")
    p = _pair(pad, who, "padding")
    attrs["pads"] = [p[0], p[1], p[0], p[1]]
    attrs["dilations"] = _pair(_cfg(m, cfg, "dilation", 1), who, "dilation")
    attrs["group"] = int(_cfg(m, cfg, "groups", 1))
    inputs = [x, g.param("weight", w)]
    if getattr(m, "bias", None) is not None:
        inputs.append(g.param("bias", _array(m.bias)))
    return g.node("Conv", inputs, "conv", **attrs)


def _max_pool2d(g, m, cfg, x):
    attrs = _pool_attrs(m, cfg, "MaxPool2d")
    dilation = _cfg(m, cfg, "dilation", 1)
    if _pair(dilation, "MaxPool2d", "dilation") != [1, 1]:
        attrs["dilations"] = _pair(dilation, "MaxPool2d", "dilation")
    return g.node("MaxPool", [x], "maxpool", **attrs)


def _avg_pool2d(g, m, cfg, x):
    attrs = _pool_attrs(m, cfg, "AvgPool2d")
    # NOTE: PyTorch's (and gradbox's) default counts the zero padding in the mean
    attrs["count_include_pad"] = int(bool(_cfg(m, cfg, "count_include_pad", True)))
    return g.node("AveragePool", [x], "avgpool", **attrs)


def _batch_norm(g, m, cfg, x):
    mean, var = _array(m.running_mean), _array(m.running_var)
    if mean is None or var is None:
        raise ValueError("BatchNorm: expected running statistics (track_running_stats=True), received none")
    weight, bias = _array(getattr(m, "weight", None)), _array(getattr(m, "bias", None))
    weight = np.ones_like(mean) if weight is None else weight
    bias = np.zeros_like(mean) if bias is None else bias
    eps = float(_cfg(m, cfg, "eps", 1e-5))
    if g.opset < 14:
        # NOTE: BatchNormalization-9 (opsets 9-13) has a `momentum` attribute with a default, and
        # onnx.reference's implementation then mixes in the batch's statistics (onnxruntime does not).
        # There, the same inference arithmetic as x * a + b, per channel, gives every runtime one answer.
        a = weight.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
        b = bias.astype(np.float64) - mean.astype(np.float64) * a
        shape = (-1,) + (1,) * (g.in_rank - 2)  # channels on axis 1 of (N, C, ...)
        x = g.node("Mul", [x, g.param("bn_scale", a.reshape(shape))], "batchnorm_scaled")
        return g.node("Add", [x, g.param("bn_shift", b.reshape(shape))], "batchnorm")
    inputs = [x, g.param("scale", weight), g.param("shift", bias), g.param("running_mean", mean),
              g.param("running_var", var)]
    return g.node("BatchNormalization", inputs, "batchnorm", epsilon=eps)


# NOTE: the one place that knows how each layer type becomes ONNX, keyed by registry name.
_EXPORTERS = {
    "Linear": _linear,
    "ReLU": _unary("Relu"),
    "Sigmoid": _unary("Sigmoid"),
    "Tanh": _unary("Tanh"),
    "LeakyReLU": _leaky_relu,
    "Softmax": _softmax,
    "Flatten": _flatten,
    "Dropout": _identity,
    "Conv2d": _conv2d,
    "MaxPool2d": _max_pool2d,
    "AvgPool2d": _avg_pool2d,
    "BatchNorm1d": _batch_norm,
    "BatchNorm2d": _batch_norm,
}


# --- inputs -----------------------------------------------------------------------------------
def _layers(model, where="model"):
    """``(where, layer)`` of every layer in order; gradbox's own Sequential, nested or not, is
    unrolled (``model[2][1]``), any other module is one layer."""
    from .nn import Module
    from .nn.module import layer_name

    if not isinstance(model, Module):
        raise TypeError(f"model: expected a gradbox.nn.Module or a ModelFile, received {type(model).__name__}")
    if layer_name(model) != "Sequential":
        return [(where, model)]
    return [leaf for i, m in enumerate(model) for leaf in _layers(m, f"{where}[{i}]")]


def _model_dtype(model):
    for p in model.parameters():
        dtype = np.dtype(p.dtype)
        if dtype not in _DTYPES:
            raise TypeError(f"model: expected float32 or float64 parameters, received {dtype}")
        return dtype
    return np.dtype(np.float32)


def _stored_preprocessing(model_file):
    """(mean, scale) of a ModelFile's stored standardisation, or None (as ``gradbox predict`` reads it)."""
    arrays = getattr(model_file, "arrays", None) or {}
    mean, scale = arrays.get("norm.mean"), arrays.get("norm.scale")
    if mean is None or scale is None:
        return None
    return mean, scale


def _check_preprocessing(preprocessing, sample_shape):
    """(mean, scale) as float64 arrays of one sample's shape: standardisation is per feature, counted
    flat, as ``gradbox predict`` applies it before shaping images (N, C, H, W)."""
    if preprocessing is None:
        return None
    mean, scale = (preprocessing.mean_, preprocessing.scale_) if hasattr(preprocessing, "scale_") else preprocessing
    mean, scale = np.asarray(mean, dtype=np.float64).reshape(-1), np.asarray(scale, dtype=np.float64).reshape(-1)
    n_features = int(np.prod(sample_shape))
    if mean.shape != scale.shape or mean.shape[0] != n_features:
        raise ValueError(f"preprocessing: expected mean and scale of {n_features} features (the input's), "
                         f"received shapes {mean.shape} and {scale.shape}")
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
        raise ValueError("preprocessing: expected finite mean and positive finite scale")
    return mean.reshape(sample_shape), scale.reshape(sample_shape)


def _input_shape(layers, input_shape):
    if input_shape is None:
        first = layers[0]
        if hasattr(first, "in_features"):
            return (None, int(first.in_features))
        raise ValueError(f"input_shape: expected (None, ...) for a model starting with {type(first).__name__} "
                         "(only a first Linear defines its input width), received None")
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) < 2 or input_shape[0] is not None:
        raise ValueError(f"input_shape: expected (None, d1, ...) with None for the batch, received {input_shape!r}")
    if not all(isinstance(d, numbers.Integral) and d > 0 for d in input_shape[1:]):
        raise ValueError(f"input_shape: expected positive sizes after the batch, received {input_shape!r}")
    return (None, *[int(d) for d in input_shape[1:]])


# --- export -----------------------------------------------------------------------------------
def export(model, path, input_shape=None, opset=None, preprocessing=None, metadata=None):
    """Write ``model`` to ``path`` as an ONNX file; returns the ``onnx.ModelProto``.

    Parameters
    ----------
    model : gradbox.nn.Sequential (or one Module), or a ModelFile from ``gradbox.io.load_model``
        A ModelFile brings its stored standardisation (``norm.mean``/``norm.scale``) and classes.
    path : str or os.PathLike
        Written atomically.
    input_shape : tuple (None, d1, ...), optional
        None marks the dynamic batch dimension. Default ``(None, in_features)`` of a first Linear;
        required otherwise, e.g. ``(None, 1, 8, 8)`` for a model starting with Conv2d.
    opset : int, optional
        ONNX opset, 13 to the installed onnx's newest (default 17).
    preprocessing : (mean, scale) or a fitted Standardizer, optional
        Standardisation ``(x - mean) / scale`` put in front of the network (overrides a ModelFile's).
    metadata : dict, optional
        JSON-friendly values stored as the file's ``metadata_props``.

    Raises
    ------
    TypeError
        A layer without an exporter: ``model[3] (MyLayer): cannot be exported to ONNX``.
    ValueError
        A bad ``input_shape``, ``opset`` or ``preprocessing``, or an input the model refuses.

    Examples
    --------
    >>> import gradbox as gb, tempfile, os
    >>> model = gb.nn.Sequential(gb.nn.Linear(4, 8, rng=0), gb.nn.ReLU(), gb.nn.Linear(8, 3, rng=1))
    >>> path = os.path.join(tempfile.mkdtemp(), "m.onnx")
    >>> proto = export(model, path)
    >>> [o.name for o in proto.graph.output]
    ['logits', 'probabilities']
    """
    onnx = _import_onnx()
    from .nn.module import layer_name

    meta = dict(metadata or {})
    if hasattr(model, "model") and hasattr(model, "arrays"):  # a ModelFile
        if preprocessing is None:
            preprocessing = _stored_preprocessing(model)
        file_meta = getattr(model, "metadata", None) or {}
        if "classes" in file_meta:
            meta.setdefault("classes", file_meta["classes"])
        model = model.model
    layers = _layers(model)
    if not layers:
        raise ValueError("model: expected at least one layer, received an empty Sequential")
    opset = DEFAULT_OPSET if opset is None else opset
    newest = onnx.defs.onnx_opset_version()
    if not isinstance(opset, numbers.Integral) or isinstance(opset, bool) or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset: expected an int from {MIN_OPSET} to {newest}, received {opset!r}")
    # refuse an unknown layer before any work, naming it
    names = []
    for where, m in layers:
        name = layer_name(m)
        if name not in _EXPORTERS:
            raise TypeError(f"{where} ({type(m).__name__}): cannot be exported to ONNX "
                            f"(supported layers: {', '.join(_EXPORTERS)})")
        names.append(name)
    layers = [m for _, m in layers]
    shape = _input_shape(layers, input_shape)
    dtype = _model_dtype(model)
    # run gradbox once on a zero batch, layer by layer: refuses an input_shape the model cannot take,
    # gives each layer's input rank and the output width
    from . import no_grad
    from .nn import eval_mode
    from .tensor import Tensor

    ranks = []  # each layer's input rank, for exporters that broadcast per channel
    try:
        with eval_mode(model), no_grad():
            out = Tensor(np.zeros((1, *shape[1:]), dtype=dtype))
            for m in layers:
                ranks.append(out.ndim)
                out = m(out)
            out = out.data
    except (ValueError, TypeError) as exc:
        raise ValueError(f"input_shape {shape}: the model refuses such input: {exc}") from None
    pre = _check_preprocessing(preprocessing, shape[1:])

    g = _Graph(onnx, dtype, opset)
    elem = getattr(onnx.TensorProto, _DTYPES[dtype])
    x = "input"
    if pre is not None:
        mean, scale = pre
        x = g.node("Sub", [x, g.param("norm_mean", mean)], "centred")
        x = g.node("Div", [x, g.param("norm_scale", scale)], "standardised")
    for m, name, rank in zip(layers, names, ranks):
        g.in_rank = rank
        x = _EXPORTERS[name](g, m, m.get_config(), x)
    g.node("Identity", [x], output="logits")
    width = out.shape[-1] if out.ndim >= 2 else 1
    if out.ndim == 2 and width == 1:
        g.node("Sigmoid", ["logits"], output="probabilities")
    else:
        g.node("Softmax", ["logits"], output="probabilities", axis=-1)
    batch = "batch"
    inputs = [onnx.helper.make_tensor_value_info("input", elem, [batch, *shape[1:]])]
    out_dims = [batch, *out.shape[1:]]
    outputs = [onnx.helper.make_tensor_value_info("logits", elem, out_dims),
               onnx.helper.make_tensor_value_info("probabilities", elem, out_dims)]
    graph = onnx.helper.make_graph(g.nodes, "gradbox", inputs, outputs, g.initializers)
    proto = onnx.helper.make_model_gen_version(graph, opset_imports=[onnx.helper.make_opsetid("", int(opset))],
                                               producer_name="gradbox", producer_version=_version())
    meta["gradbox_layers"] = names
    if pre is not None:
        meta["preprocessing"] = "standardize: (input - norm_mean) / norm_scale"
    onnx.helper.set_model_props(proto, {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    onnx.checker.check_model(proto, full_check=True)
    from .io import atomic_write_bytes

    atomic_write_bytes(path, proto.SerializeToString())
    return proto


def _version():
    try:
        from . import __version__
        return str(__version__)
    except ImportError:  # pragma: no cover - version attribute missing
        return "unknown"


def export_model_file(model_path, out_path, opset=None, input_shape=None):
    """``gradbox export MODEL --format onnx --out FILE``: a model file (with its standardisation and
    classes) to an ONNX file. Returns a one-line summary for the CLI to print."""
    from .io import load_model

    mf = load_model(model_path)
    if input_shape is None:
        meta = mf.metadata if isinstance(mf.metadata, dict) else {}
        shape = meta.get("input_shape")
        input_shape = (None, *shape) if isinstance(shape, list) else None
    proto = export(mf, out_path, input_shape=input_shape, opset=opset)
    n = len(proto.graph.node)
    opset_used = proto.opset_import[0].version
    pre = " with its standardisation" if any(p.key == "preprocessing" for p in proto.metadata_props) else ""
    return f"wrote {os.fspath(out_path)}: ONNX opset {opset_used}, {n} nodes{pre}; outputs logits, probabilities"


# --- running an exported file ------------------------------------------------------------------
def run(path, X, backend="auto"):
    """Run an exported file on ``X``: ``{"logits": ..., "probabilities": ...}``.

    ``backend``: "onnxruntime", "reference" (``onnx.reference.ReferenceEvaluator``, slow, pure
    Python) or "auto" (onnxruntime when installed, else the reference evaluator).
    """
    if backend not in ("auto", "onnxruntime", "reference"):
        raise ValueError(f"backend: expected 'auto', 'onnxruntime' or 'reference', received {backend!r}")
    path = os.fspath(path)
    if backend in ("auto", "onnxruntime"):
        try:
            import onnxruntime
        except ImportError:
            if backend == "onnxruntime":
                raise ImportError("backend='onnxruntime': expected the onnxruntime package "
                                  "(pip install onnxruntime)") from None
        else:
            session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
            names = [o.name for o in session.get_outputs()]
            return dict(zip(names, session.run(None, {session.get_inputs()[0].name: X})))
    _import_onnx()
    from onnx.reference import ReferenceEvaluator

    ref = ReferenceEvaluator(path)
    return dict(zip(ref.output_names, ref.run(None, {ref.input_names[0]: X})))
