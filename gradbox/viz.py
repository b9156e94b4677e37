"""Pictures of the graph behind a tensor, drawn like the notes' computational graphs.

``draw_graph(t)`` walks the boxes that made ``t`` (``t._ctx``, ``ctx.parents``)
and writes Graphviz DOT text; no Python graphviz package is needed, and the
``dot`` program is used only to render SVG/PNG when it is installed.

Two styles, chosen automatically:

* **scalar graphs** (every value is a single number, like the notes' purchase
  example): boxes are circles with their symbol (×, +, max, σ), leaves are plain
  names, and each arrow carries the forward value (black) and, once backward has
  run, the gradient flowing back along it (red), written as
  ``upstream × local = gradient``. The local gradient ∂out/∂in is obtained by
  calling each box's own ``backward`` with an upstream of 1.
* **array graphs** (a network): one node per box and per leaf with its op, shape,
  summary statistics (mean/std/min/max) and the gradient's statistics.

Gradients of intermediate tensors are kept by backward only when asked:
call ``retain_grads(root)`` *before* ``backward()``.

>>> import gradbox as gb
>>> from gradbox import viz
>>> a = gb.Tensor(100.0, requires_grad=True, dtype="float64", name="apple")
>>> n = gb.Tensor(2.0, requires_grad=True, dtype="float64", name="num")
>>> total = a * n
>>> viz.retain_grads(total)
>>> g = viz.draw_graph(total)          # local gradients need the caches: draw first
>>> total.backward()
>>> "digraph" in viz.draw_graph(total).source
True
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import warnings

import numpy as np

from .tensor import Tensor

__all__ = ["draw_graph", "retain_grads", "Graph", "walk"]

_SYMBOLS = {
    "Add": "+", "Sub": "−", "Mul": "×", "Div": "÷", "Neg": "−x", "Pow": "xᵖ", "MatMul": "@",
    "Maximum": "max", "Max": "max", "Sum": "Σ", "Sigmoid": "σ", "Tanh": "tanh", "ReLU": "ReLU",
    "LeakyReLU": "LReLU", "Exp": "exp", "Log": "log", "LogSigmoid": "log σ", "Softmax": "softmax",
    "LogSoftmax": "log softmax", "Reshape": "reshape", "Transpose": "ᵀ", "GetItem": "[ ]", "Cast": "cast",
    "LinearFunction": "Linear", "DropoutFunction": "Dropout", "CrossEntropyFunction": "CrossEntropy",
    "BCEWithLogitsFunction": "BCEWithLogits", "MSEFunction": "MSE",
}
_FORMATS = ("svg", "png", "pdf", "dot")
_GRAD_COLOUR = "#d62728"
_LOCAL_COLOUR = "#555555"


def walk(roots):
    """Every tensor in the graphs under ``roots``, constants included, inputs before outputs.

    A post-order walk with an explicit stack (no recursion, so deep chains are fine).
    """
    order, visited = [], set()
    for root in [roots] if isinstance(roots, Tensor) else roots:
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in visited:
                continue
            visited.add(id(node))
            stack.append((node, True))
            if node._ctx is not None:
                stack.extend((p, False) for p in reversed(node._ctx.parents) if id(p) not in visited)
    return order


def retain_grads(tensor) -> None:
    """Mark every non-leaf tensor under ``tensor`` so that backward keeps its ``.grad``.

    Call it before ``backward()``; leaves keep their gradient anyway.
    """
    for t in walk(_check_roots(tensor)):
        if t._ctx is not None:
            t.retain_grad()


def _check_roots(tensor):
    roots = [tensor] if isinstance(tensor, Tensor) else tensor
    try:
        roots = list(roots)
    except TypeError:
        raise TypeError(f"draw_graph(tensor): expected a Tensor or a list of Tensors, received {type(tensor).__name__}") from None
    if not roots or not all(isinstance(r, Tensor) for r in roots):
        got = type(tensor).__name__ if not roots else ", ".join(type(r).__name__ for r in roots)
        raise TypeError(f"draw_graph(tensor): expected a Tensor or a list of Tensors, received {got}")
    return roots


# --- formatting ---------------------------------------------------------------
def _num(v: float) -> str:
    v = float(v)
    if v == 0:
        return "0"
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        return f"{v:.3g}"
    return f"{v:.4g}"


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _stats(a: np.ndarray) -> str:
    a = np.asarray(a, dtype=np.float64)
    if a.size == 1:
        return _num(a.reshape(-1)[0])
    return f"μ {_num(a.mean())}  σ {_num(a.std())}<br/>[{_num(a.min())}, {_num(a.max())}]"


def _shape(t) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ("," if t.ndim == 1 else "") + ")"


def _local_grads(ctx, out: Tensor):
    """∂out/∂input for each parent of a scalar box, from the box's own backward.

    ``None`` where the box has already released its cache (after a backward
    without ``retain_graph=True``) or where a parent needs no gradient.
    """
    if getattr(ctx, "_released", False):
        return None
    try:
        grads = ctx.backward(np.ones_like(out.data))
    except Exception:  # noqa: BLE001 - a picture must never fail because of one box
        return None
    if not isinstance(grads, tuple):
        grads = (grads,)
    return [None if g is None else float(np.asarray(g).reshape(-1)[0]) for g in grads]


# --- the graph object ------------------------------------------------------------
class Graph:
    """DOT text of a computational graph, with ``save`` to .dot/.svg/.png.

    Attributes
    ----------
    source : str
        The DOT text (feed it to ``dot -Tsvg``).
    format : str
        Default format of ``save`` when the path has no known suffix.
    local_grads : dict
        ``{(op_id, input_index): ∂out/∂in}`` for scalar graphs drawn while their caches existed.
    """

    def __init__(self, source: str, format: str = "svg", local_grads=None):
        self.source = source
        self.format = format
        self.local_grads = local_grads or {}

    def __str__(self):
        return self.source

    def _repr_svg_(self):  # Jupyter shows the picture inline when dot is installed
        exe = shutil.which("dot")
        if not exe:
            return None
        res = subprocess.run([exe, "-Tsvg"], input=self.source.encode(), capture_output=True, timeout=60, check=False)
        return res.stdout.decode() if res.returncode == 0 else None

    def save(self, path, format=None) -> str:
        """Write the DOT file and, for svg/png/pdf, render it with ``dot``.

        ``path`` may end in ``.dot``, ``.svg``, ``.png`` or ``.pdf``; otherwise
        ``format`` (or the graph's) is appended. The DOT text is always written
        next to the picture (``name.dot``), atomically. Without the ``dot``
        program only the DOT file is written and a warning says how to render it.

        Returns
        -------
        str : the path of the rendered picture, or of the DOT file if none was rendered.
        """
        from .io import atomic_open

        path = os.fspath(path)
        stem, ext = os.path.splitext(path)
        ext = ext.lower().lstrip(".")
        if ext in _FORMATS:
            fmt = format or ext
        else:
            fmt = format or self.format
            stem, path = path, f"{path}.{fmt}"
        if fmt not in _FORMATS:
            raise ValueError(f"Graph.save(format): expected one of {_FORMATS}, received {fmt!r}")
        dot_path = stem + ".dot"
        with atomic_open(dot_path, "w") as f:
            f.write(self.source)
        if fmt == "dot":
            return dot_path
        exe = shutil.which("dot")
        if exe is None:
            warnings.warn(
                f"Graphviz 'dot' is not installed, so only {dot_path} was written; "
                f"render it with: dot -T{fmt} {dot_path} -o {stem}.{fmt}",
                stacklevel=2,
            )
            return dot_path
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=f".{fmt}", dir=folder)
        os.close(fd)
        try:
            res = subprocess.run([exe, f"-T{fmt}", dot_path, "-o", tmp], capture_output=True, text=True, timeout=120, check=False)
            if res.returncode != 0:
                raise RuntimeError(f"Graph.save: dot failed to render {dot_path}: {res.stderr.strip()}")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return path


# --- drawing ---------------------------------------------------------------------
def draw_graph(tensor, path=None, format="svg", show_grad=True, local_grads=True, title=None) -> Graph:
    """Draw the graph behind ``tensor`` (or a list of tensors) as Graphviz DOT.

    Parameters
    ----------
    tensor : Tensor or list of Tensor
        The output(s). Tensors' optional ``.name`` labels the picture.
    path : str, optional
        If given, ``Graph.save(path)`` is called (``.dot``, ``.svg``, ``.png``).
    format : {"svg", "png", "pdf", "dot"}
    show_grad : bool
        Show gradients where known: leaves' ``.grad`` and that of tensors marked
        by ``retain_grads`` before backward.
    local_grads : bool
        For scalar graphs, show each box's local gradient ∂out/∂in. These come
        from the box's cache, so draw before ``backward()`` or backpropagate with
        ``retain_graph=True``; a released box is drawn without them.
    title : str, optional
        A caption under the picture.

    Returns
    -------
    Graph
    """
    roots = _check_roots(tensor)
    if format not in _FORMATS:
        raise ValueError(f"draw_graph(format): expected one of {_FORMATS}, received {format!r}")
    nodes = walk(roots)
    scalar = all(t.size == 1 for t in nodes)
    ids = {id(t): f"t{i}" for i, t in enumerate(nodes)}
    consumers = {}
    for t in nodes:
        if t._ctx is not None:
            for i, p in enumerate(t._ctx.parents):
                consumers.setdefault(id(p), []).append((t, i))

    lines = [
        "digraph gradbox {",
        '  graph [rankdir=LR, ordering=in, nodesep=0.5, ranksep=0.9, fontname="Helvetica", bgcolor="white"'
        + (f', label="{_esc(title)}", labelloc=b, fontsize=14' if title else "") + "];",
        '  node [fontname="Helvetica", fontsize=13];',
        '  edge [fontname="Helvetica", fontsize=12, arrowsize=0.8];',
    ]
    locals_ = {}
    if scalar and local_grads:
        for t in nodes:
            if t._ctx is not None:
                lg = _local_grads(t._ctx, t)
                if lg is not None:
                    for i, v in enumerate(lg):
                        if v is not None:
                            locals_[(ids[id(t)], i)] = v

    root_ids = {id(r) for r in roots}
    node_lines, edge_lines = {}, []
    if scalar:
        _draw_scalar(node_lines, edge_lines, nodes, ids, consumers, root_ids, locals_, show_grad)
    else:
        _draw_arrays(node_lines, edge_lines, nodes, ids, show_grad)
    if len(roots) == 1:
        for node in node_lines.values():
            lines.extend(node)
    else:
        # NOTE: several outputs (the gate examples): one framed cluster per output, titled by its name.
        placed, clusters = set(), []
        for k, root in enumerate(roots):
            members = [ids[id(t)] for t in walk(root) if ids[id(t)] not in placed]
            placed.update(members)
            clusters.append((k, root, members))
        # NOTE: with rankdir=LR, dot stacks clusters bottom-up; emitting them reversed reads top-down.
        for k, root, members in reversed(clusters):
            lines.append(f"  subgraph cluster_{k} {{")
            lines.append(f'    graph [label="{_esc(root.name or f"output {k}")}", labelloc=t, style=rounded, '
                         'color="#bbbbbb", fontsize=15];')
            for nid in members:
                lines.extend("  " + line for line in node_lines[nid])
            lines.append("  }")
    lines.extend(edge_lines)
    lines.append("}")
    graph = Graph("\n".join(lines) + "\n", format=format, local_grads=locals_)
    if path is not None:
        graph.save(path, None if os.path.splitext(os.fspath(path))[1] else format)
    return graph


def _grad_of(t, show_grad):
    if not show_grad or t.grad is None:
        return None
    return np.asarray(t.grad)


def _draw_scalar(node_lines, lines, nodes, ids, consumers, root_ids, locals_, show_grad):
    """The notes' style: circles for boxes, values on arrows, gradients in red under them."""
    for t in nodes:
        nid = ids[id(t)]
        node_lines[nid] = out = []
        if t._ctx is None:
            name = t.name or ("const" if not t.requires_grad else "x")
            style = "" if t.requires_grad else ', fontcolor="#777777"'
            label = f'"{_esc(name)}"'
            g = _grad_of(t, show_grad)
            if g is not None and len(consumers.get(id(t), [])) > 1:
                # NOTE: used several times: the arrows carry the parts, the node their sum.
                label = f'<{_esc(name)}<br/><font color="{_GRAD_COLOUR}" point-size="12">Σ ← {_esc(_num(g.reshape(-1)[0]))}</font>>'
            out.append(f"  {nid} [shape=plaintext, label={label}, fontsize=15{style}];")
        else:
            op = t._ctx.name
            sym = _SYMBOLS.get(op, op)
            small = len(sym) <= 2
            size = "width=0.55, height=0.55, fixedsize=true, fontsize=20" if small else "margin=0.05, fontsize=13"
            out.append(f'  {nid} [shape=circle, {size}, label="{_esc(sym)}", tooltip="{_esc(op)}"];')
    for t in nodes:
        nid = ids[id(t)]
        value = float(t.data.reshape(-1)[0])
        targets = [(ids[id(c)], i, c) for c, i in consumers.get(id(t), [])]
        if id(t) in root_ids:
            name = t.name or "out"
            node_lines[nid].append(f'  {nid}_out [shape=plaintext, label="{_esc(name)}", fontsize=15];')
            targets.append((f"{nid}_out", None, None))
        for target, index, consumer in targets:
            parts = [f"<b>{_esc(_num(value))}</b>"]
            grad = None
            detail = local_text = ""
            if consumer is None:  # the arrow out of the root: its upstream gradient
                g = _grad_of(t, show_grad)
                grad = None if g is None else float(g.reshape(-1)[0])
            else:
                local = locals_.get((target, index))
                up = _grad_of(consumer, show_grad)
                if local is not None and up is not None:
                    upv = float(up.reshape(-1)[0])
                    grad = upv * local
                    detail = f"{_num(upv)} × {_num(local)}"
                else:
                    if len(targets) == 1:  # the tensor's own gradient is this arrow's
                        g = _grad_of(t, show_grad)
                        grad = None if g is None else float(g.reshape(-1)[0])
                    if local is not None:
                        local_text = f"∂/∂in = {_num(local)}"
            if grad is not None:
                text = f"{detail} = {_num(grad)}" if detail else _num(grad)
                parts.append(f'<font color="{_GRAD_COLOUR}">← {_esc(text)}</font>')
            if local_text:
                parts.append(f'<font color="{_LOCAL_COLOUR}" point-size="10">{_esc(local_text)}</font>')
            label = "<br/>".join(parts)
            lines.append(f"  {nid} -> {target} [label=<{label}>];")


def _draw_arrays(node_lines, lines, nodes, ids, show_grad):
    """One record per tensor: op or name, shape, value statistics and gradient statistics."""
    for t in nodes:
        nid = ids[id(t)]
        if t._ctx is None:
            default = "parameter" if t.requires_grad else ("labels" if t.dtype.kind in "iub" else "input")
            head = _esc(t.name or default)
            fill = "#eef3fb" if t.requires_grad else "#f4f4f4"
        else:
            op = t._ctx.name
            head = "<b>" + _esc(_SYMBOLS.get(op, op)) + "</b>" + (f" · {_esc(t.name)}" if t.name else "")
            fill = "#fff6e0"
        rows = [head, _shape(t), _stats(t.data)]
        g = _grad_of(t, show_grad)
        if g is not None:
            rows.append(f'<font color="{_GRAD_COLOUR}">grad {_stats(g)}</font>')
        shape = "box" if t._ctx is None else "box, style=\"rounded,filled\""
        style = f', style=filled, fillcolor="{fill}"' if t._ctx is None else f', fillcolor="{fill}"'
        node_lines[nid] = [f'  {nid} [shape={shape}{style}, label=<{"<br/>".join(rows)}>];']
    for t in nodes:
        if t._ctx is not None:
            for p in t._ctx.parents:
                lines.append(f"  {ids[id(p)]} -> {ids[id(t)]};")


# --- ready-made pictures (``gradbox graph --example ...``) --------------------------
EXAMPLES = ("purchase", "purchase-simple", "gates", "mlp")


def _scalar(value, name):
    # NOTE: float64 so that 1.1 prints as 1.1, not 1.100000023841858.
    return Tensor(value, requires_grad=True, dtype="float64", name=name)


def build_example(name: str):
    """Build, run forward and backward (keeping caches) and return ``(roots, title)``.

    ``purchase``: 2 apples at 100, 3 oranges at 150, tax 1.1 (total 715);
    ``purchase-simple``: apples only (220); ``gates``: the add, multiply, max and
    sigmoid gates with an upstream gradient of 2; ``mlp``: Linear-ReLU-Linear with
    cross-entropy on a batch of 5.
    """
    from . import nn, ops

    if name in ("purchase", "purchase-simple"):
        apple, num_apple, tax = _scalar(100.0, "apple"), _scalar(2.0, "num_apple"), _scalar(1.1, "tax")
        price = apple * num_apple
        if name == "purchase":
            orange, num_orange = _scalar(150.0, "orange"), _scalar(3.0, "num_orange")
            price = price + orange * num_orange
        total = price * tax
        total.name = "total"
        retain_grads(total)
        total.backward(retain_graph=True)
        return [total], "forward values in black, gradients (upstream × local) in red"
    if name == "gates":
        roots = []
        for gate in ("add", "multiply", "max"):
            x, y = _scalar(3.0, "x"), _scalar(-4.0, "y")
            out = {"add": ops.add, "multiply": ops.mul, "max": ops.maximum}[gate](x, y)
            out.name = f"{gate} gate"
            roots.append(out)
        z = _scalar(1.0, "x")
        out = ops.sigmoid(z)
        out.name = "sigmoid gate"
        roots.append(out)
        for out in roots:
            retain_grads(out)
            out.backward(np.array(2.0), retain_graph=True)
        return roots, "upstream gradient 2: add distributes it, multiply swaps the inputs, max routes it, σ scales by σ(1−σ)"
    if name == "mlp":
        rng = np.random.default_rng(0)
        model = nn.Sequential(nn.Linear(3, 4, rng=0), nn.ReLU(), nn.Linear(4, 2, rng=1))
        for pname, p in model.named_parameters():
            p.name = pname
        X = Tensor(rng.normal(size=(5, 3)).astype(np.float32), name="X")
        y = Tensor(rng.integers(0, 2, size=5), name="y (labels)")
        loss = nn.CrossEntropyLoss()(model(X), y)
        loss.name = "loss"
        retain_grads(loss)
        loss.backward(retain_graph=True)
        return [loss], "Linear → ReLU → Linear → cross-entropy; gradients in red"
    raise ValueError(f"example: expected one of {EXAMPLES}, received {name!r}")


def example_graph(name: str, path=None, format="svg") -> Graph:
    """``draw_graph`` of one of ``EXAMPLES``; saved to ``path`` if given."""
    roots, title = build_example(name)
    return draw_graph(roots, path=path, format=format, title=title)
