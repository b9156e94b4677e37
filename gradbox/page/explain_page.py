"""``explain_page``: one iteration of gradient descent as a self-contained HTML page, box by box.

The page runs the model once, forward and backward, on one batch with gradbox's
engine and shows, for every layer l (a layer with parameters and the activation
that follows it):

* the forward box: Z[l] = W[l]A[l−1] + b[l], A[l] = g(Z[l]), shapes batch-first
  and in the notes' (n[l], m), the cache's summary and heatmaps, dead and
  saturated units;
* the cost;
* the backward box, right to left: dA[l] → dZ[l] → dW[l], db[l], dA[l−1], with
  heatmaps and the analytic gradient beside a numerical one ("W1: 2.6e-13");
* the update W := W − α·dW with ‖α·dW‖/‖W‖ per layer;
* with a history, the loss curves and per-layer gradient norms.

Layers are read generically through their parameters and ``get_config()``; a
layer with a 4-D weight (a convolution) also shows its filters and its output
feature maps. Every number is embedded in a ``<script type="application/json"
id="gb-data">`` block: ``dW`` there is ``layer.weight.grad`` for this batch.

>>> import numpy as np, gradbox as gb
>>> from gradbox.page import explain_page
>>> model = gb.nn.Sequential(gb.nn.Linear(4, 5, rng=0), gb.nn.ReLU(), gb.nn.Linear(5, 3, rng=1))
>>> X = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
>>> html = explain_page(model, X, np.arange(8) % 3, lang="ko")
>>> "역전파" in html and "Z[l] = W[l]A[l−1] + b[l]" in html
True
"""
from __future__ import annotations

import copy
import math
import numbers

import numpy as np

from .. import nn
from ..function import no_grad
from ..gradcheck import check_gradients
from ..tensor import Tensor
from . import _html as H
from .i18n import check_lang, t

__all__ = ["ExplainPage", "build_explain_page", "explain_page", "write_explain_page"]

_ACTS = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.Softmax)
MAX_EXAMPLES = 16        # examples shown in the Z/A/dZ heatmaps
MAX_MAPS = 8             # feature maps and filters shown for a conv layer
MAX_FILTERS = 16
GRADCHECK_ENTRIES = 8    # sampled entries per parameter for the numerical gradient


class ExplainPage(H.Page):
    """A built explain page: ``html``, ``data`` (the embedded numbers), ``save(path)``, ``_repr_html_``."""


# --- running the iteration -------------------------------------------------------
def _flatten(model):
    out = []
    for m in model:
        out.extend(_flatten(m) if isinstance(m, nn.Sequential) else [m])
    return out


def _blocks(modules):
    """Group modules into boxes: a module with parameters (or any other non-activation) opens a
    box; the activations and dropouts after it join that box."""
    blocks = []
    for i, mod in enumerate(modules):
        joins = isinstance(mod, (*_ACTS, nn.Dropout)) and blocks and not list(mod.parameters())
        if joins and not (isinstance(mod, _ACTS) and blocks[-1]["act"] is not None):
            blocks[-1]["members"].append(i)
            if isinstance(mod, _ACTS):
                blocks[-1]["act"] = i
        else:
            blocks.append({"main": i, "members": [i], "act": i if isinstance(mod, _ACTS) else None})
    return blocks


def _default_loss(out, y_arr):
    if out.ndim == 2 and out.shape[1] > 1:
        if y_arr.dtype.kind in "iu" or (y_arr.ndim == 1 and np.all(y_arr == np.round(y_arr))):
            return nn.CrossEntropyLoss(), y_arr.astype(np.int64)
        return nn.MSELoss(), y_arr.astype(out.dtype)
    return nn.BCEWithLogitsLoss(), y_arr.astype(out.dtype).reshape(out.shape)


def _check_inputs(model, X, y, lr, lang):
    check_lang(lang, "explain_page")
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"explain_page(model): expected an nn.Sequential, received {type(model).__name__}")
    if not isinstance(lr, numbers.Real) or isinstance(lr, bool) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"explain_page(lr): expected a positive number, received {lr!r}")
    X_arr = X.data if isinstance(X, Tensor) else np.asarray(X)
    if X_arr.dtype.kind not in "fiu":
        raise TypeError(f"explain_page(X): expected numeric data, received dtype {X_arr.dtype}")
    if X_arr.ndim < 2 or X_arr.shape[0] == 0:
        raise ValueError(f"explain_page(X): expected a non-empty batch of shape (m, ...), received {X_arr.shape}")
    y_arr = y.data if isinstance(y, Tensor) else np.asarray(y)
    if y_arr.shape[:1] != X_arr.shape[:1]:
        raise ValueError(f"explain_page(y): expected {X_arr.shape[0]} labels to match X of shape {X_arr.shape}, "
                         f"received shape {y_arr.shape}")
    params = list(model.parameters())
    if not params:
        raise ValueError("explain_page(model): expected a model with parameters, received none")
    return X_arr.astype(params[0].dtype, copy=False), y_arr


def _run(model, X_arr, y_arr, loss_fn):
    """Forward module by module (each output keeps its gradient) and backward once.

    Returns the outputs, the loss tensor, the target handed to the loss, the loss function and
    every parameter's gradient (copies). The model's mode and gradients are restored.
    """
    modules = _flatten(model)
    params = list(model.parameters())
    saved = [p.grad for p in params]
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        for p in params:
            p.grad = None
        x = Tensor(X_arr, requires_grad=True)
        inputs, outputs = [], []
        for mod in modules:
            inputs.append(x)
            x = mod(x)
            if x.requires_grad:
                x.retain_grad()
            outputs.append(x)
        if loss_fn is None:
            loss_fn, target = _default_loss(x, y_arr)
        else:
            target = y_arr
        loss = loss_fn(x, target)
        if not isinstance(loss, Tensor) or loss.size != 1:
            raise ValueError("explain_page(loss_fn): expected a scalar Tensor loss, received "
                             f"{type(loss).__name__} of shape {getattr(loss, 'shape', None)}")
        loss.backward()
        grads = {id(p): (None if p.grad is None else np.array(p.grad)) for p in params}
    finally:
        for p, g in zip(params, saved):
            p.grad = g
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
    return modules, inputs, outputs, loss, target, loss_fn, grads


def _gradcheck(model, loss_fn, X_arr, target, entries, seed):
    """Relative error analytic vs numerical per parameter, on a float64 copy of the model."""
    twin = copy.deepcopy(model)
    report = check_gradients(twin, loss_fn, X_arr, target, max_entries=entries, seed=seed)
    return {r["name"]: r["rel_error"] for r in report.rows}, report


def _cost_after_step(model, loss_fn, X_arr, target, grads, lr):
    twin = copy.deepcopy(model)
    for p, q in zip(model.parameters(), twin.parameters()):
        g = grads.get(id(p))
        if g is not None:
            q.data = q.data - np.asarray(lr, dtype=q.dtype) * g
    twin.eval()
    with no_grad():
        return float(loss_fn(twin(Tensor(X_arr)), target).data)


# --- notation helpers --------------------------------------------------------------
def _notes_shape(s):
    """Batch-first (m, n) -> the notes' (n, m); (m, C, H, W) -> course 4's (m, n_H, n_W, n_C)."""
    s = tuple(s)
    if len(s) == 2:
        return (s[1], s[0])
    if len(s) == 4:
        return (s[0], s[2], s[3], s[1])
    return s


def _notes_weight(s):
    s = tuple(s)
    if len(s) == 4:  # (out, in, kh, kw) -> course 4's (f, f, n_C_prev, n_C)
        return (s[2], s[3], s[1], s[0])
    return s


def _notes_bias(s, wdim):
    s = tuple(s)
    if wdim == 4:
        return (1, 1, 1, s[0])
    return (s[0], 1) if len(s) == 1 else s


def _as2d(a):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        return a.reshape(-1, 1)
    return a.reshape(a.shape[0], -1)


def _stats_row(lang, name, a):
    a = np.asarray(a, dtype=np.float64)
    return (f"<tr><td>{H.esc(name)}</td><td>{H.shape(a.shape)}</td><td class=num>{H.num(a.mean())}</td>"
            f"<td class=num>{H.num(a.std())}</td><td class=num>{H.num(a.min())}</td>"
            f"<td class=num>{H.num(a.max())}</td><td class=num>{H.num(np.linalg.norm(a))}</td></tr>")


def _stats_head(lang):
    cols = ["", t(lang, "shape_word"), t(lang, "mean"), t(lang, "std"), t(lang, "min"), t(lang, "max"), t(lang, "norm")]
    return "<tr>" + "".join(f"<th>{H.esc(c)}</th>" for c in cols) + "</tr>"


def _units(act, A):
    """(dead_or_saturated_unit_indices, kind) for an activation output A (m, n, ...)."""
    a = np.asarray(A, dtype=np.float64)
    per_unit = a.reshape(a.shape[0], a.shape[1], -1) if a.ndim > 2 else a[:, :, None]
    if isinstance(act, (nn.ReLU,)):
        return [int(i) for i in np.flatnonzero(per_unit.max(axis=(0, 2)) <= 0)], "dead"
    if isinstance(act, nn.Sigmoid):
        sat = (per_unit < 0.01) | (per_unit > 0.99)
    elif isinstance(act, nn.Tanh):
        sat = np.abs(per_unit) > 0.99
    else:
        return [], None
    return [int(i) for i in np.flatnonzero(sat.mean(axis=(0, 2)) > 0.9)], "saturated"


_DZ_KEY = {nn.ReLU: "dZ_relu", nn.Sigmoid: "dZ_sigmoid", nn.Tanh: "dZ_tanh", nn.LeakyReLU: "dZ_leaky"}
_COST_KEY = {nn.CrossEntropyLoss: "cost_formula_ce", nn.BCEWithLogitsLoss: "cost_formula_bce", nn.MSELoss: "cost_formula_mse"}


# --- the page ----------------------------------------------------------------------
def build_explain_page(model, X, y, loss_fn=None, lr=0.01, lang="en", history=None,
                       gradcheck_entries=GRADCHECK_ENTRIES, max_examples=MAX_EXAMPLES, seed=0) -> ExplainPage:
    """Run one iteration on the batch ``(X, y)`` and build the page.

    Parameters
    ----------
    model : nn.Sequential
        Run in eval mode (dropout off); its mode, parameters and gradients are left as they were.
    X : array (m, ...) -- batch-first, with the model's own preprocessing already applied
    y : labels (m,) or targets
    loss_fn : callable ``loss_fn(output, y)``, optional
        Default: cross-entropy on logits for integer labels and several outputs,
        binary cross-entropy on logits for one output.
    lr : float
        The learning rate α of the update shown.
    lang : {"en", "ko"}
    history : dict, History or None
        Per-epoch ``loss`` (and ``val_loss``, ``grad_norm.<parameter>`` if recorded).
    gradcheck_entries : int
        Entries per parameter compared with central differences (float64, on a copy).
    max_examples : int
        Examples shown in the Z, A and dZ heatmaps.

    Returns
    -------
    ExplainPage

    Shape
    -----
    - X: (m, n[0]) for an MLP, (m, C, H, W) for a CNN
    - W[l]: (n[l], n[l-1]); b[l]: (n[l],) here, (n[l], 1) in the notes
    """
    from ..train.run import blas_threads

    X_arr, y_arr = _check_inputs(model, X, y, lr, lang)
    # NOTE: one BLAS thread, as `gradbox train` does: for layers this small threads cost more than
    # they save (the numerical gradient runs the model twice per checked entry).
    with blas_threads(1):
        modules, inputs, outputs, loss, target, loss_fn, grads = _run(model, X_arr, y_arr, loss_fn)
        rel_errors, _ = _gradcheck(model, loss_fn, X_arr, target, gradcheck_entries, seed)
        cost_after = _cost_after_step(model, loss_fn, X_arr, target, grads, lr)
    names = {id(p): name for name, p in model.named_parameters()}
    m = X_arr.shape[0]
    k = min(m, max_examples)
    blocks = _blocks(modules)
    data = {"format": "gradbox-explain-page", "version": 1, "lang": lang, "m": int(m), "lr": float(lr),
            "loss": float(loss.data), "loss_after_step": cost_after, "loss_name": type(loss_fn).__name__,
            "layers": [], "heat": {}, "history": _history_dict(history)}
    fwd, bwd, chips_f, chips_b = [], [], [], []
    for l, blk in enumerate(blocks, start=1):
        info = _layer_info(l, blk, modules, inputs, outputs, grads, names, rel_errors, lr, k, data["heat"])
        data["layers"].append(info["json"])
        fwd.append(_forward_section(lang, l, info, m, k))
        bwd.append(_backward_section(lang, l, info, m, k))
        chips_f.append(_chip(f"layer={l}&phase=forward", f"{t(lang, 'forward')} {l}", "fwd"))
        chips_b.append(_chip(f"layer={l}&phase=backward", f"{t(lang, 'backward')} {l}", "bwd"))
    L = len(blocks)
    steps = fwd + [_cost_section(lang, data, loss_fn, outputs[-1], L)] + bwd[::-1] + [_update_section(lang, data)]
    chips = chips_f + [_chip("phase=cost", t(lang, "cost"), "")] + chips_b[::-1] + [_chip("phase=update", t(lang, "update"), "")]
    if data["history"]:
        symbols = {pj["name"]: pj["symbol"] for layer in data["layers"] for pj in layer["params"].values()}
        steps.append(_history_section(lang, data["history"], symbols))
        chips.append(_chip("phase=history", t(lang, "history"), ""))
    arrow = '<span class="gb-arrow">→</span>'
    desc = " → ".join(i["desc"] for i in data["layers"])
    header = (f"<h1>{H.esc(t(lang, 'title_explain'))}</h1>"
              f"<p class=sub>{H.esc(t(lang, 'subtitle_explain', m=m))}. {H.esc(desc)}</p>"
              f'<nav class="gb-chips"><span class="gb-chip">X</span>{arrow}{arrow.join(chips)}</nav>{H.controls(lang)}')
    html = H.document(lang, t(lang, "title_explain"), header, "\n".join(steps), data)
    return ExplainPage(html, data)


def explain_page(model, X, y, loss_fn=None, lr=0.01, lang="en", history=None, **kw) -> str:
    """The page's HTML text; see ``build_explain_page`` for the arguments."""
    return build_explain_page(model, X, y, loss_fn=loss_fn, lr=lr, lang=lang, history=history, **kw).html


def write_explain_page(path, model, X, y, **kw) -> ExplainPage:
    """Build the page and write it atomically to ``path``; returns the ``ExplainPage``."""
    page = build_explain_page(model, X, y, **kw)
    page.save(path)
    return page


def _chip(frag, label, cls):
    return f'<a class="gb-chip {cls}" href="#{H.esc(frag)}" data-frag="{H.esc(frag)}">{H.esc(label)}</a>'


def _history_dict(history):
    if history is None:
        return None
    d = history.as_dict() if hasattr(history, "as_dict") else dict(history)
    out = {}
    for key, values in d.items():
        if key == "epoch":
            continue
        try:
            vals = [None if v is None or not math.isfinite(float(v)) else float(v) for v in values]
        except (TypeError, ValueError):
            raise ValueError(f"explain_page(history): expected lists of numbers, received {key!r}: {values!r:.80}") from None
        if any(v is not None for v in vals):
            out[key] = vals
    return out or None


def _layer_info(l, blk, modules, inputs, outputs, grads, names, rel_errors, lr, k, heat):
    main = modules[blk["main"]]
    act = modules[blk["act"]] if blk["act"] is not None and blk["act"] != blk["main"] else None
    A_prev, Z = inputs[blk["main"]], outputs[blk["main"]]
    A = outputs[blk["act"]] if act is not None else Z
    own = list(main.named_parameters())
    W = dict(own).get("weight")
    b = dict(own).get("bias")
    try:
        config = main.get_config()
    except Exception:  # noqa: BLE001 - a user's layer without a config is still shown
        config = {}
    act_name = type(act).__name__ if act is not None else None
    desc = type(main).__name__ + (f"+{act_name}" if act_name else "")
    info = {"main": main, "act": act, "A_prev": A_prev, "Z": Z, "A": A, "W": W, "b": b, "own": own,
            "config": config, "desc": desc, "act_name": act_name}
    j = {"l": l, "type": type(main).__name__, "desc": desc, "config": _jsonable(config), "activation": act_name,
         "A_prev_shape": list(A_prev.shape), "Z_shape": list(Z.shape), "A_shape": list(A.shape), "params": {}}
    unit_idx, unit_kind = _units(act, A.data) if act is not None else ([], None)
    info["units"], info["unit_kind"] = unit_idx, unit_kind
    j["marked_units"], j["marked_kind"] = unit_idx, unit_kind
    # Heatmaps in the notes' orientation: units down, examples across.
    if Z.ndim == 2:
        heat[f"L{l}.Z"] = H.heat_entry(Z.data[:k].T, unit_idx if act is None else None)
        heat[f"L{l}.A"] = H.heat_entry(A.data[:k].T, unit_idx)
        if Z.grad is not None:
            heat[f"L{l}.dZ"] = H.heat_entry(Z.grad[:k].T)
    elif Z.ndim == 4:
        for c in range(min(Z.shape[1], MAX_MAPS)):
            heat[f"L{l}.map{c}"] = H.heat_entry(A.data[0, c])
            if Z.grad is not None:
                heat[f"L{l}.dmap{c}"] = H.heat_entry(Z.grad[0, c])
    for pname, p in own:
        sym = "W" if pname == "weight" else "b" if pname == "bias" else pname
        g = grads.get(id(p))
        full = names.get(id(p), pname)
        pj = {"name": full, "symbol": f"{sym}{l}", "shape": list(p.shape), "dtype": str(p.dtype),
              "grad": None if g is None else H.exact_list(g),
              "norm": float(np.linalg.norm(p.data.astype(np.float64))),
              "grad_norm": None if g is None else float(np.linalg.norm(g.astype(np.float64))),
              "rel_error": rel_errors.get(full)}
        if g is not None:
            pn = pj["norm"]
            pj["step_norm"] = float(lr) * pj["grad_norm"]
            pj["update_ratio"] = pj["step_norm"] / pn if pn > 0 else None
        j["params"][sym] = pj
        if p.ndim == 4:
            for f in range(min(p.shape[0], MAX_FILTERS)):
                heat[f"L{l}.{sym}.f{f}"] = H.heat_entry(p.data[f, 0])
        else:
            heat[f"L{l}.{sym}"] = H.heat_entry(_as2d(p.data))
            if g is not None:
                heat[f"L{l}.d{sym}"] = H.heat_entry(_as2d(g))
    info["json"] = j
    return info


def _jsonable(config):
    out = {}
    for key, v in config.items():
        if isinstance(v, (bool, int, float, str)) or v is None:
            out[key] = v
        elif isinstance(v, (list, tuple)):
            out[key] = [x if isinstance(x, (bool, int, float, str)) else str(x) for x in v]
        else:
            out[key] = str(v)
    return out


def _shape_rows(lang, rows):
    images = any(len(a) == 4 for _, a, _ in rows)
    notes = t(lang, "notes_layout_conv" if images else "notes_layout")
    head = (f"<tr><th></th><th>{H.esc(t(lang, 'batch_first'))}</th><th>{H.esc(notes)}</th></tr>")
    body = "".join(f"<tr><td>{H.esc(n)}</td><td>{H.shape(a)}</td><td>{H.shape(b)}</td></tr>" for n, a, b in rows)
    return f"<table>{head}{body}</table>"


def _kind(main, W):
    """'linear', 'conv' (a 4-D weight), 'other' (parameters, another rule) or 'none'."""
    if isinstance(main, nn.Linear):
        return "linear"
    if W is not None and W.ndim == 4:
        return "conv"
    return "other" if list(main.parameters()) else "none"


def _forward_section(lang, l, info, m, k):
    main, W, b, Z, A, A_prev = info["main"], info["W"], info["b"], info["Z"], info["A"], info["A_prev"]
    prev = "X" if l == 1 else f"A[{l - 1}]"
    g = info["act_name"] or t(lang, "none_act")
    parts = [f'<section class="gb-step fwd" id="forward-{l}" data-frag="layer={l}&amp;phase=forward">',
             f"<h2>{H.esc(t(lang, 'forward'))} · {H.esc(t(lang, 'layer_n', l=l))}: {H.esc(info['desc'])}</h2>"]
    kind = _kind(main, W)
    if kind == "conv":
        formula = f"Z[l] = W[l] ∗ A[l−1] + b[l]   (convolution)\nA[l] = g(Z[l]),  g = {g}"
    elif kind == "linear":
        formula = f"Z[l] = W[l]A[l−1] + b[l]\nA[l] = g(Z[l]),  g = {g}"
    elif kind == "other":   # NOTE: a layer with parameters that is neither (BatchNorm, a user's layer)
        formula = f"Z[l] = {type(main).__name__}(A[l−1]; W[l], b[l])\nA[l] = g(Z[l]),  g = {g}"
    else:
        formula = f"A[l] = {type(main).__name__}(A[l−1])"
    parts.append(f'<div class="formula">{H.esc(formula)}\n(l = {l}, A[l−1] = {prev})</div>')
    rows = [("A[l−1]", A_prev.shape, _notes_shape(A_prev.shape))]
    if W is not None:
        rows.append(("W[l]", W.shape, _notes_weight(W.shape)))
    if b is not None:
        rows.append(("b[l]", b.shape, _notes_bias(b.shape, W.ndim if W is not None else 2)))
    rows += [("Z[l]", Z.shape, _notes_shape(Z.shape)), ("A[l]", A.shape, _notes_shape(A.shape))]
    parts.append(f"<h3>{H.esc(t(lang, 'shapes'))}</h3>{_shape_rows(lang, rows)}")
    if info["config"]:
        cfg = ", ".join(f"{key}={v!r}" for key, v in info["config"].items())
        parts.append(f'<p class="note">{H.esc(t(lang, "config"))}: {H.esc(type(main).__name__)}({H.esc(cfg)})</p>')
    if W is None and b is None:
        parts.append(f'<p class="note">{H.esc(t(lang, "no_params"))}</p>')
    cache = [("A[l−1]", A_prev.data)] + ([("W[l]", W.data)] if W is not None else []) + \
            ([("b[l]", b.data)] if b is not None else []) + [("Z[l]", Z.data)]
    parts.append(f"<h3>{H.esc(t(lang, 'cache'))} <span class=note>({H.esc(t(lang, 'cache_note'))})</span></h3>"
                 f"<table>{_stats_head(lang)}{''.join(_stats_row(lang, n, a) for n, a in cache)}"
                 f"{_stats_row(lang, 'A[l]', A.data)}</table>")
    figs = []
    if W is not None and W.ndim != 4:
        figs.append(H.canvas(f"L{l}.W", H.esc(t(lang, "heatmap_of", name=f"W[{l}] {H.shape(W.shape)}"))))
    if b is not None and (W is None or W.ndim != 4):
        figs.append(H.canvas(f"L{l}.b", H.esc(t(lang, "heatmap_of", name=f"b[{l}]")), px=120))
    if Z.ndim == 2:
        ex = t(lang, "first_examples", k=k, m=m)
        figs.append(H.canvas(f"L{l}.Z", H.esc(t(lang, "heatmap_of", name=f"Z[{l}] (n[l], m)") + ", " + ex)))
        if info["act"] is not None:
            figs.append(H.canvas(f"L{l}.A", H.esc(t(lang, "heatmap_of", name=f"A[{l}] (n[l], m)") + ", " + ex)))
    parts.append(f'<div class="grid">{"".join(figs)}</div>')
    if W is not None and W.ndim == 4:
        filt = "".join(f'<canvas class="gb-heat" data-key="L{l}.W.f{f}" data-px="60" data-square></canvas>'
                       for f in range(min(W.shape[0], MAX_FILTERS)))
        maps = "".join(f'<canvas class="gb-heat" data-key="L{l}.map{c}" data-px="96" data-square></canvas>'
                       for c in range(min(Z.shape[1], MAX_MAPS)))
        parts.append(f'<div class="grid"><figure class="gb-filters"><div class="small-multiples">{filt}</div>'
                     f"<figcaption>{H.esc(t(lang, 'filters'))}</figcaption></figure>"
                     f'<figure class="gb-maps"><div class="small-multiples">{maps}</div>'
                     f"<figcaption>{H.esc(t(lang, 'feature_maps'))}</figcaption></figure></div>")
    if info["unit_kind"] is not None:
        n_units = A.shape[1]
        key = "dead_units" if info["unit_kind"] == "dead" else "saturated_units"
        if info["units"]:
            shown = ", ".join(str(i + 1) for i in info["units"][:20]) + (" …" if len(info["units"]) > 20 else "")
            parts.append(f'<p class="warn gb-units">{H.esc(t(lang, key, n=len(info["units"]), total=n_units))}: '
                         f'{H.esc(shown)}</p>')
        else:
            parts.append(f'<p class="ok gb-units">{H.esc(t(lang, "no_dead"))}</p>')
    parts.append("</section>")
    return "\n".join(parts)


def _cost_section(lang, data, loss_fn, out, L):
    key = _COST_KEY.get(type(loss_fn), "cost_formula_other")
    grad_shape = out.grad.shape if out.grad is not None else out.shape
    return (f'<section class="gb-step" id="cost" data-frag="phase=cost"><h2>{H.esc(t(lang, "cost"))}</h2>'
            f'<div class="formula">{H.esc(t(lang, key))}</div>'
            f'<p class="eq">{H.esc(t(lang, "cost_value", value=H.num(data["loss"], 6)))}</p>'
            f'<p>{H.esc(t(lang, "loss_fn"))}: {H.esc(data["loss_name"])}, m = {data["m"]}</p>'
            f'<p>{H.esc(t(lang, "backward_start"))} dA[{L}] {H.shape(grad_shape)} → '
            f'{H.shape(_notes_shape(grad_shape))}</p></section>')


def _gc_line(lang, pj):
    err = pj.get("rel_error")
    if err is None:
        return ""
    ok = err < 1e-7
    cls, word = ("ok", t(lang, "gradcheck_ok")) if ok else ("fail", t(lang, "gradcheck_fail"))
    return f'<div class="gc">{H.esc(pj["symbol"])}: {H.sci(err)} <span class="{cls}">{H.esc(word)}</span></div>'


def _backward_section(lang, l, info, m, k):
    W, b, Z, A, A_prev, act = info["W"], info["b"], info["Z"], info["A"], info["A_prev"], info["act"]
    j = info["json"]
    parts = [f'<section class="gb-step bwd" id="backward-{l}" data-frag="layer={l}&amp;phase=backward">',
             f"<h2>{H.esc(t(lang, 'backward'))} · {H.esc(t(lang, 'layer_n', l=l))}: {H.esc(info['desc'])}</h2>"]
    dz_key = _DZ_KEY.get(type(act), "dZ_generic") if act is not None else "dZ_none"
    prev = "dX" if l == 1 else f"dA[{l - 1}]"
    kind = _kind(info["main"], W)
    if kind in ("linear", "conv"):
        formula = f"{t(lang, dz_key)}\n{t(lang, 'linear_back')}"
        if kind == "conv":
            formula = f"{t(lang, dz_key)}\ndW[l] = Σ dZ[l] ∗ A[l−1],  db[l] = Σ dZ[l],  dA[l−1] = dZ[l] ∗ W[l] (full convolution)"
        formula += f"\n{t(lang, 'linear_back_note')}"
    elif kind == "other":
        formula = f"{t(lang, dz_key)}\ndW[l], db[l], dA[l−1] = {type(info['main']).__name__}.backward(dZ[l])"
    else:
        formula = f"dA[l−1] = {type(info['main']).__name__}'(dA[l])"
    parts.append(f'<div class="formula">dA[{l}] → dZ[{l}] → dW[{l}], db[{l}], {prev}\n{H.esc(formula)}</div>')
    parts.append(f'<p class="note">{H.esc(t(lang, "chain_rule"))}</p>')
    rows = [("dA[l]", A.shape, _notes_shape(A.shape)), ("dZ[l]", Z.shape, _notes_shape(Z.shape))]
    if W is not None:
        rows.append(("dW[l]", W.shape, _notes_weight(W.shape)))
    if b is not None:
        rows.append(("db[l]", b.shape, _notes_bias(b.shape, W.ndim if W is not None else 2)))
    rows.append(("dA[l−1]", A_prev.shape, _notes_shape(A_prev.shape)))
    parts.append(f"<h3>{H.esc(t(lang, 'shapes'))}</h3>{_shape_rows(lang, rows)}")
    grads = [("dA[l]", A.grad), ("dZ[l]", Z.grad)]
    grads += [(f"d{pj['symbol'][0]}[l]", np.asarray(pj["grad"], dtype=np.float64).reshape(pj["shape"]))
              for pj in j["params"].values() if pj["grad"] is not None]
    grads.append(("dA[l−1]", A_prev.grad))
    parts.append(f"<table>{_stats_head(lang)}"
                 + "".join(_stats_row(lang, n, g) for n, g in grads if g is not None) + "</table>")
    figs = []
    if W is not None and W.ndim != 4 and f"W" in j["params"] and j["params"]["W"]["grad"] is not None:
        figs.append(H.canvas(f"L{l}.dW", H.esc(t(lang, "heatmap_of", name=f"dW[{l}] {H.shape(W.shape)}"))))
    if b is not None and (W is None or W.ndim != 4) and j["params"].get("b", {}).get("grad") is not None:
        figs.append(H.canvas(f"L{l}.db", H.esc(t(lang, "heatmap_of", name=f"db[{l}]")), px=120))
    if Z.ndim == 2 and Z.grad is not None:
        figs.append(H.canvas(f"L{l}.dZ", H.esc(t(lang, "heatmap_of", name=f"dZ[{l}] (n[l], m)") + ", "
                                               + t(lang, "first_examples", k=k, m=m))))
    if Z.ndim == 4 and Z.grad is not None:
        maps = "".join(f'<canvas class="gb-heat" data-key="L{l}.dmap{c}" data-px="96" data-square></canvas>'
                       for c in range(min(Z.shape[1], MAX_MAPS)))
        figs.append(f'<figure><div class="small-multiples">{maps}</div><figcaption>dZ[{l}]: '
                    f'{H.esc(t(lang, "feature_maps"))}</figcaption></figure>')
    parts.append(f'<div class="grid">{"".join(figs)}</div>')
    gcs = "".join(_gc_line(lang, pj) for pj in j["params"].values())
    if gcs:
        parts.append(f"<h3>{H.esc(t(lang, 'gradcheck'))}</h3>{gcs}"
                     f'<p class="note">{H.esc(t(lang, "gradcheck_note", k=GRADCHECK_ENTRIES))}</p>')
    parts.append(f'<p class="note">{H.esc(t(lang, "engine_equal"))}</p></section>')
    return "\n".join(parts)


def _update_section(lang, data):
    rows = []
    for layer in data["layers"]:
        for pj in layer["params"].values():
            if pj.get("update_ratio") is None:
                continue
            rows.append(f"<tr><td>{H.esc(pj['symbol'])}</td><td>{H.shape(pj['shape'])}</td>"
                        f"<td class=num>{H.num(pj['norm'])}</td><td class=num>{H.num(pj['step_norm'])}</td>"
                        f"<td class=num>{H.sci(pj['update_ratio'])}</td></tr>")
    gcs = "".join(_gc_line(lang, pj) for layer in data["layers"] for pj in layer["params"].values())
    return (f'<section class="gb-step" id="update" data-frag="phase=update"><h2>{H.esc(t(lang, "update"))}</h2>'
            f'<div class="formula">{H.esc(t(lang, "update_formula"))}</div>'
            f'<p class="eq">{H.esc(t(lang, "learning_rate", lr=H.num(data["lr"])))}</p>'
            f"<table><tr><th></th><th>{H.esc(t(lang, 'shape_word'))}</th><th>‖W‖</th><th>‖α·dW‖</th>"
            f"<th>{H.esc(t(lang, 'update_ratio'))}</th></tr>{''.join(rows)}</table>"
            f'<p class="note">{H.esc(t(lang, "update_ratio_hint"))}</p>'
            f'<p>{H.esc(t(lang, "cost_after", before=H.num(data["loss"], 6), after=H.num(data["loss_after_step"], 6)))}</p>'
            f"<h3>{H.esc(t(lang, 'gradcheck'))}</h3>{gcs}</section>")


_COLOURS = ["#2364aa", "#c0392b", "#1b7f3b", "#8e44ad", "#d35400", "#16a085", "#7f8c8d", "#b7950b"]


def svg_lines(series: dict, title: str, xlabel: str, log=False, width=560, height=260) -> str:
    """An inline SVG line chart of ``{name: [values per epoch]}`` (None values are gaps)."""
    pad_l, pad_r, pad_t, pad_b = 56, 150, 24, 36
    vals = [v for s in series.values() for v in s if v is not None and (not log or v > 0)]
    if not vals:
        return ""
    f = (lambda v: math.log10(v)) if log else (lambda v: v)
    lo, hi = min(f(v) for v in vals), max(f(v) for v in vals)
    if hi == lo:
        hi = lo + 1.0
    n = max(len(s) for s in series.values())
    sx = lambda i: pad_l + (width - pad_l - pad_r) * (i / max(n - 1, 1))  # noqa: E731
    sy = lambda v: pad_t + (height - pad_t - pad_b) * (1 - (f(v) - lo) / (hi - lo))  # noqa: E731
    out = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>',
           f'<text x="{pad_l}" y="16" font-size="13">{H.esc(title)}</text>',
           f'<line x1="{pad_l}" y1="{height - pad_b}" x2="{width - pad_r}" y2="{height - pad_b}" stroke="#999"/>',
           f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{height - pad_b}" stroke="#999"/>',
           f'<text x="{(width - pad_r + pad_l) / 2}" y="{height - 6}" font-size="12" text-anchor="middle">{H.esc(xlabel)}</text>']
    for v in (lo, hi):
        label = H.num(10 ** v if log else v, 3)
        out.append(f'<text x="{pad_l - 4}" y="{sy(10 ** v if log else v) + 4:.1f}" font-size="11" text-anchor="end">{label}</text>')
    out.append(f'<text x="{pad_l}" y="{height - pad_b + 14}" font-size="11" text-anchor="middle">1</text>')
    out.append(f'<text x="{width - pad_r}" y="{height - pad_b + 14}" font-size="11" text-anchor="middle">{n}</text>')
    for c, (name, s) in enumerate(series.items()):
        col = _COLOURS[c % len(_COLOURS)]
        pts = [(sx(i), sy(v)) for i, v in enumerate(s) if v is not None and (not log or v > 0)]
        if pts:
            out.append(f'<polyline fill="none" stroke="{col}" stroke-width="2" points="'
                       + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
        out.append(f'<text x="{width - pad_r + 8}" y="{pad_t + 14 * (c + 1)}" font-size="12" fill="{col}">{H.esc(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def _history_section(lang, hist, symbols):
    losses = {k: v for k, v in hist.items() if "loss" in k}
    norms = {}
    for k, v in hist.items():
        if k.startswith("grad_norm"):
            pname = k.split("grad_norm", 1)[1].lstrip("._/") or k
            norms[symbols.get(pname, pname)] = v
    parts = [f'<section class="gb-step" id="history" data-frag="phase=history"><h2>{H.esc(t(lang, "history"))}</h2>',
             '<div class="grid">']
    if losses:
        parts.append(f"<figure>{svg_lines(losses, t(lang, 'loss_curve'), t(lang, 'epoch'))}</figure>")
    if norms:
        parts.append(f"<figure>{svg_lines(norms, t(lang, 'grad_norms'), t(lang, 'epoch'), log=True)}</figure>")
    others = {k: v for k, v in hist.items() if k not in losses and not k.startswith("grad_norm") and k != "time"}
    if others:
        parts.append(f"<figure>{svg_lines(others, t(lang, 'other_metrics'), t(lang, 'epoch'))}</figure>")
    parts.append("</div></section>")
    return "\n".join(parts)
