"""``gradbox.explain``: one forward and backward pass, reported layer by layer in the notes' terms.

For each ``Linear`` or ``Conv2d`` layer l (with the BatchNorm and activation that follow it)
the report shows the shapes of W[l], b[l], Z[l], A[l] both batch-first (as the engine stores
them) and in the notes' column notation (n[l], m) -- for images the course's (m, n_H, n_W, n_C),
with a table of every layer's output (pooling too) in both layouts -- the shapes and norms of dZ, dW, db
and dA, the update/weight ratio lr·‖dW‖/‖W‖, the share of dead ReLUs and of
saturated sigmoid/tanh units. It checks the notes' dimension rules
(dW ~ W, db ~ b, dZ ~ Z, dA ~ A) and warns about vanishing and exploding gradients.

>>> import numpy as np, gradbox as gb
>>> model = gb.nn.Sequential(gb.nn.Linear(4, 8, rng=0), gb.nn.ReLU(), gb.nn.Linear(8, 3, rng=1))
>>> X = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
>>> report = gb.explain(model, X, np.arange(16) % 3)
>>> [row["layer"] for row in report.rows]
[1, 2]
>>> report.rows[0]["dW_shape"] == report.rows[0]["W_shape"]
True
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import nn
from ._validation import check, positive_float
from .tensor import Tensor

__all__ = ["explain", "ExplainReport"]

VANISH_RATIO = 1e-5      # ‖dW‖/‖W‖ below this: the layer barely learns
EXPLODE_RATIO = 1e2      # ‖dW‖/‖W‖ above this: one step would swamp the weights
DECAY_FACTOR = 100.0     # gradient norm falling (or growing) by this much from last layer to first
UPDATE_HIGH = 1e-1       # lr·‖dW‖/‖W‖ above this: the learning rate is too large
UPDATE_LOW = 1e-7        # ... below this: too small (or vanishing)
DEAD_SHARE = 0.5         # warn when at least half the ReLUs are dead
SAT_SHARE = 0.5          # warn when at least half the sigmoid/tanh outputs are saturated


def _norm(a):
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64))) if a is not None else float("nan")


def _weighted(module) -> bool:
    """A layer the report gives a row: one with a weight matrix or kernel (Linear, Conv2d).

    NOTE: a BatchNorm's ``weight`` is a vector of per-feature scales (γ); it is reported as part of
    the row of the layer before it, as Dropout is.
    """
    w = module._parameters.get("weight")
    return isinstance(w, nn.Parameter) and w.ndim >= 2


def _is_norm(module) -> bool:
    return type(module).__name__.startswith("BatchNorm")


def _flatten(model):
    """The modules of a Sequential (nested ones expanded), in order."""
    out = []
    for m in model:
        if isinstance(m, nn.Sequential):
            out.extend(_flatten(m))
        else:
            out.append(m)
    return out


def _notes(shape_batch_first):
    """The notes' and courses' layout of an activation: (m, n) -> (n, m), one example per column;
    images (m, C, H, W) -> (m, n_H, n_W, n_C), the layout of the course's convolution notebooks."""
    if len(shape_batch_first) == 2:
        m, n = shape_batch_first
        return (n, m)
    if len(shape_batch_first) == 4:
        m, c, h, w = shape_batch_first
        return (m, h, w, c)
    return tuple(reversed(shape_batch_first))


def _weight_notes(shape):
    """A weight in the notes' layout: Linear (n[l], n[l-1]) as stored; a kernel (C_out, C_in, kh, kw)
    -> (f_h, f_w, n_C_prev, n_C), the course's W."""
    if len(shape) == 4:
        out_c, in_c, kh, kw = shape
        return (kh, kw, in_c, out_c)
    return tuple(shape)


def _fmt_shape(s):
    return "(" + ", ".join(str(x) for x in s) + ("," if len(s) == 1 else "") + ")" if s is not None else "-"


@dataclass
class ExplainReport:
    """What ``explain`` found: ``rows`` (one dict per layer), ``warnings``, and ``str()`` the table."""

    rows: list
    warnings: list
    loss: float
    loss_name: str
    lr: float
    batch_size: int
    checks_passed: bool = True
    notes: list = field(default_factory=list)
    layers: list = field(default_factory=list)  # one dict per layer (and the input): name, shapes in both layouts

    def __str__(self):
        return self.table()

    def _layer_table(self) -> list:
        """Every layer's output in the engine's NCHW and the course's (m, n_H, n_W, n_C) layout."""
        head = (f"{'#':>2}  {'layer':<30}{'output NCHW (m, C, H, W)':<26}{'course (m, n_H, n_W, n_C)':<27}"
                f"{'W engine':<16}{'W course (f, f, n_C_prev, n_C)'}")
        out = ["layer shapes (forward): the engine's NCHW and the course's (m, n_H, n_W, n_C);",
               "flat activations (m, n) are (n, m) in the notes", head, "-" * len(head)]
        for r in self.layers:
            out.append(f"{r['index']:>2}  {r['name']:<30}{_fmt_shape(r['shape']):<26}{_fmt_shape(r['notes']):<27}"
                       f"{_fmt_shape(r['W_shape']):<16}{_fmt_shape(r['W_notes'])}")
        return out + [""]

    def table(self) -> str:
        out = [f"explain: one forward + backward on a batch of m = {self.batch_size}, "
               f"{self.loss_name} = {self.loss:.6g}, lr = {self.lr:g}", ""]
        conv = any(r.get("kind") == "conv" for r in self.rows)
        # NOTE: with convolutions W[l] is (C_out, C_in, kh, kw) and the notes' column is the course's layout
        head = (f"{'l':>2}  {'layer':<26}{'W[l] engine' if conv else 'W[l] (n[l], n[l-1])':<20}"
                f"{'b[l] notes':<14}{'Z, A batch-first':<18}"
                f"{'Z, A notes/course' if conv else 'Z, A notes (n[l], m)':<21}")
        if any(len(r["shape"]) == 4 for r in self.layers):
            out += self._layer_table()
        out += ["shapes (forward)", head, "-" * len(head)]
        for r in self.rows:
            out.append(
                f"{r['layer']:>2}  {r['description']:<26}{_fmt_shape(r['W_shape']):<20}"
                f"{_fmt_shape(r['b_notes']):<14}{_fmt_shape(r['Z_shape']):<18}{_fmt_shape(r['Z_notes']):<21}"
            )
        head = f"{'l':>2}  {'dZ':<14}{'dW':<14}{'db':<10}{'dA':<14}  each gradient has its variable's shape"
        out += ["", "gradient shapes (batch-first)", head, "-" * len(head)]
        for r in self.rows:
            out.append(f"{r['layer']:>2}  {_fmt_shape(r['dZ_shape']):<14}{_fmt_shape(r['dW_shape']):<14}"
                       f"{_fmt_shape(r['db_shape']):<10}{_fmt_shape(r['dA_shape']):<14}  "
                       + ("ok" if r["dims_ok"] else "FAIL: " + ", ".join(k for k, v in r["dims"].items() if not v)))
        head = (f"{'l':>2}  {'‖dZ‖':>10}{'‖dW‖':>10}{'‖db‖':>10}{'‖dA‖':>10}{'‖dW‖/‖W‖':>11}"
                f"{'lr·‖dW‖/‖W‖':>13}  {'units':<18}{'dims':<5}")
        out += ["", "gradient sizes (backward)", head, "-" * len(head)]
        for r in self.rows:
            units = "-"
            if r["dead_relu"] is not None:
                units = f"dead ReLU {r['dead_relu']:.0%}"
            elif r["saturated"] is not None:
                units = f"saturated {r['saturated']:.0%}"
            out.append(
                f"{r['layer']:>2}  {r['dZ_norm']:>10.3e}{r['dW_norm']:>10.3e}{r['db_norm']:>10.3e}"
                f"{r['dA_norm']:>10.3e}{r['grad_ratio']:>11.2e}{r['update_ratio']:>13.2e}  {units:<18}"
                f"{'ok' if r['dims_ok'] else 'FAIL':<5}"
            )
        out.append("")
        out.append("dimension rules dW ~ W, db ~ b, dZ ~ Z, dA ~ A: "
                   + ("all hold" if self.checks_passed else "VIOLATED (see warnings)"))
        if self.warnings:
            out.append("warnings:")
            out += [f"  - {w}" for w in self.warnings]
        else:
            out.append("no warnings: gradient sizes look healthy")
        return "\n".join(out)


def _default_loss(out: Tensor, y):
    y_arr = y.data if isinstance(y, Tensor) else np.asarray(y)
    if out.ndim == 2 and out.shape[1] > 1:
        if y_arr.dtype.kind in "iu" or (y_arr.dtype.kind == "f" and y_arr.ndim == 1 and np.all(y_arr == np.round(y_arr))):
            return nn.CrossEntropyLoss(), "CrossEntropyLoss", y_arr.astype(np.int64)
        return nn.MSELoss(), "MSELoss", y_arr
    return nn.BCEWithLogitsLoss(), "BCEWithLogitsLoss", y_arr.astype(out.dtype)


def explain(model, X, y, loss_fn=None, lr=None) -> ExplainReport:
    """Run one forward and backward pass and report every layer in the notes' terms.

    Parameters
    ----------
    model : nn.Sequential
        Every layer with a ``weight`` (``Linear``) gets a row, with the activation that
        follows it (a layer whose class sets ``is_activation``; ``unit_health`` reports dead
        or saturated units). Run in eval mode (dropout off); its mode and gradients are
        restored afterwards.
    X : array (m, n_x) or images (m, C, H, W) -- batch-first, as the engine takes it
    y : labels (m,) of ints, or targets
    loss_fn : callable ``loss_fn(output, y)``, optional
        Default: ``CrossEntropyLoss`` for integer labels and more than one output,
        ``BCEWithLogitsLoss`` for one output.
    lr : float, optional
        Learning rate for the update/weight ratio lr·‖dW‖/‖W‖ (default 0.01).

    Returns
    -------
    ExplainReport

    Shape
    -----
    - X: (m, n_x); W[l]: (n[l], n[l-1]); b[l]: (n[l],) here, (n[l], 1) in the notes;
      Z[l], A[l]: (m, n[l]) here, (n[l], m) in the notes
    - images X: (m, C, H, W) here, (m, n_H, n_W, n_C) in the course; a Conv2d's W[l]:
      (C_out, C_in, f, f) here, (f, f, n_C_prev, n_C) in the course; b[l]: (C_out,) here,
      (1, 1, 1, n_C) in the course
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"explain(model): expected an nn.Sequential, received {type(model).__name__}")
    if lr is None:
        lr = 0.01
    lr = check("explain", "lr", lr, positive_float)
    modules = _flatten(model)
    weighted = [m for m in modules if _weighted(m)]
    if not weighted:
        raise ValueError("explain(model): expected at least one layer with a weight (such as Linear), received none")
    dtype = weighted[0].weight.dtype
    X_arr = X.data if isinstance(X, Tensor) else np.asarray(X)
    if X_arr.dtype.kind not in "fiu":
        raise TypeError(f"explain(X): expected numeric data, received dtype {X_arr.dtype}")
    if X_arr.ndim < 2 or X_arr.shape[0] == 0:
        raise ValueError(f"explain(X): expected a non-empty batch of shape (m, n_x), received {X_arr.shape}")
    m = X_arr.shape[0]
    y_arr = y.data if isinstance(y, Tensor) else np.asarray(y)
    if y_arr.shape[:1] != (m,):
        raise ValueError(f"explain(y): expected {m} labels to match X of shape {X_arr.shape}, received shape {y_arr.shape}")

    params = list(model.parameters())
    saved_grads = [p.grad for p in params]
    try:
        with nn.eval_mode(model):
            loss, loss_name, rows, layers = _one_pass(modules, params, X_arr.astype(dtype, copy=False), y, loss_fn,
                                                      lr)
    finally:
        for p, g in zip(params, saved_grads):
            p.grad = g
    warnings, checks = _diagnose(rows, lr)
    return ExplainReport(rows=rows, warnings=warnings, loss=float(loss.data), loss_name=loss_name, lr=float(lr),
                         batch_size=m, checks_passed=checks, layers=layers)


def _one_pass(modules, params, X_arr, y, loss_fn, lr):
    """The forward and backward pass, layer by layer; returns (loss, loss name, rows)."""
    for p in params:
        p.grad = None
    x = Tensor(X_arr)
    outputs = []
    # NOTE: layer by layer, so that every intermediate Z and A keeps its gradient.
    for mod in modules:
        x = mod(x)
        if x.requires_grad:
            x.retain_grad()
        outputs.append(x)
    if loss_fn is None:
        loss_fn, loss_name, target = _default_loss(x, y.data if isinstance(y, Tensor) else np.asarray(y))
    else:
        loss_name, target = getattr(loss_fn, "__name__", type(loss_fn).__name__), y
    loss = loss_fn(x, target)
    if not isinstance(loss, Tensor) or loss.size != 1:
        raise ValueError("explain(loss_fn): expected a scalar Tensor loss, received "
                         f"{type(loss).__name__} of shape {getattr(loss, 'shape', None)}")
    loss.backward()
    return loss, loss_name, _rows(modules, outputs, lr, X_arr.shape[0]), _layers(modules, X_arr, outputs)


def _course_name(mod) -> str:
    """A layer with its hyperparameters in the course's names (f, stride, pad)."""
    name = type(mod).__name__
    k, st, pad = (getattr(mod, a, None) for a in ("kernel_size", "stride", "padding"))
    if k is None:
        return name
    sq = lambda v: str(v[0]) if isinstance(v, tuple) and len(v) == 2 and v[0] == v[1] else str(v)
    return f"{name} f={sq(k)} stride={sq(st)} pad={sq(pad)}"


def _layers(modules, X_arr, outputs):
    rows = [dict(index="X", name="input", shape=tuple(X_arr.shape), notes=_notes(X_arr.shape),
                 W_shape=None, W_notes=None)]
    for i, (mod, out) in enumerate(zip(modules, outputs)):
        w = mod._parameters.get("weight") if _weighted(mod) else None
        rows.append(dict(index=i, name=_course_name(mod), shape=tuple(out.shape), notes=_notes(out.shape),
                         W_shape=None if w is None else tuple(w.shape),
                         W_notes=None if w is None else _weight_notes(w.shape)))
    return rows


def _rows(modules, outputs, lr, m):
    rows = []
    i = 0
    while i < len(modules):
        mod = modules[i]
        if not _weighted(mod):
            i += 1
            continue
        Z = outputs[i]
        act, A = None, Z
        j = i + 1
        between = []
        # NOTE: between a layer and its g: layers that hand their input on unchanged (Dropout in
        # eval) and batch normalisation (Z -> Z̃, whose γ, β belong to this row's layer).
        while j < len(modules) and (outputs[j] is outputs[j - 1] or _is_norm(modules[j])):
            if _is_norm(modules[j]):
                between.append(type(modules[j]).__name__)
            j += 1
        if j < len(modules) and getattr(modules[j], "is_activation", False):
            act, A = modules[j], outputs[j]
        W, b = mod.weight, mod._parameters.get("bias")
        dZ, dA = Z.grad, A.grad
        dW, db = W.grad, (b.grad if b is not None else None)
        act_name = type(act).__name__ if act is not None else None
        # NOTE: each activation says how its units fail (ReLU: dead; sigmoid, tanh: saturated)
        health = act.unit_health(A.data.astype(np.float64)) if hasattr(act, "unit_health") else None
        dead = health[1] if health and health[0] == "dead" else None
        sat = health[1] if health and health[0] == "saturated" else None
        w_norm, dw_norm = _norm(W.data), _norm(dW)
        ratio = dw_norm / w_norm if w_norm > 0 else float("inf")
        dims = {
            "dW ~ W": dW is not None and dW.shape == W.shape,
            "db ~ b": b is None or (db is not None and db.shape == b.shape),
            "dZ ~ Z": dZ is not None and dZ.shape == Z.shape,
            "dA ~ A": dA is not None and dA.shape == A.shape,
        }
        layer = len(rows) + 1
        conv = W.ndim == 4
        desc = f"{'Conv' if conv else type(mod).__name__}({W.shape[1]}→{W.shape[0]}"
        desc += f", {W.shape[2]}×{W.shape[3]})" if conv else ")"
        desc += "".join("+BN" for _ in between) + (f"+{act_name}" if act_name else "")
        rows.append(dict(
            layer=layer, description=desc, activation=act_name, kind="conv" if conv else "dense",
            normalization=between[0] if between else None,
            W_shape=W.shape, W_notes=_weight_notes(W.shape), b_shape=b.shape if b is not None else None,
            b_notes=((1, 1, 1, b.shape[0]) if conv else (b.shape[0], 1)) if b is not None else None,
            Z_shape=Z.shape, A_shape=A.shape, Z_notes=_notes(Z.shape), A_notes=_notes(A.shape),
            dZ_shape=dZ.shape if dZ is not None else None, dW_shape=dW.shape if dW is not None else None,
            db_shape=db.shape if db is not None else None, dA_shape=dA.shape if dA is not None else None,
            W_norm=w_norm, dW_norm=dw_norm, db_norm=_norm(db), dZ_norm=_norm(dZ), dA_norm=_norm(dA),
            grad_ratio=ratio, update_ratio=lr * ratio, dead_relu=dead, saturated=sat,
            dims=dims, dims_ok=all(dims.values()),
        ))
        i = j + 1 if act is not None else max(i + 1, j)
    return rows


def _diagnose(rows, lr):
    warnings = []
    checks = True
    for r in rows:
        l = r["layer"]
        bad = [k for k, ok in r["dims"].items() if not ok]
        if bad:
            checks = False
            warnings.append(f"layer {l}: dimension rule(s) {', '.join(bad)} do not hold "
                            f"(W {r['W_shape']}, dW {r['dW_shape']}, Z {r['Z_shape']}, dZ {r['dZ_shape']})")
        ratio = r["grad_ratio"]
        if not math.isfinite(r["dW_norm"]):
            warnings.append(f"layer {l}: exploding gradients -- ‖dW‖ is not finite; lower the learning rate, "
                            "check the inputs are scaled, use a stable loss on logits")
        elif ratio < VANISH_RATIO:
            warnings.append(f"layer {l}: vanishing gradients -- ‖dW‖/‖W‖ = {ratio:.1e} < {VANISH_RATIO:g}; "
                            "try He initialisation with ReLU, fewer sigmoid/tanh layers, or scaled inputs")
        elif ratio > EXPLODE_RATIO:
            warnings.append(f"layer {l}: exploding gradients -- ‖dW‖/‖W‖ = {ratio:.1e} > {EXPLODE_RATIO:g}; "
                            "try a smaller initialisation scale, a lower learning rate or gradient clipping")
        elif r["update_ratio"] > UPDATE_HIGH:
            warnings.append(f"layer {l}: lr·‖dW‖/‖W‖ = {r['update_ratio']:.1e} > {UPDATE_HIGH:g}: one step changes "
                            f"the weights by more than 10% -- lower the learning rate (now {lr:g}); ~1e-3 is typical")
        elif r["update_ratio"] < UPDATE_LOW:
            warnings.append(f"layer {l}: lr·‖dW‖/‖W‖ = {r['update_ratio']:.1e} < {UPDATE_LOW:g}: the weights will "
                            f"barely move -- raise the learning rate (now {lr:g})")
        if r["dead_relu"] is not None and r["dead_relu"] >= DEAD_SHARE:
            warnings.append(f"layer {l}: {r['dead_relu']:.0%} of ReLU units are dead (never positive on this batch); "
                            "they get no gradient -- try He initialisation, a smaller learning rate or LeakyReLU")
        if r["saturated"] is not None and r["saturated"] >= SAT_SHARE:
            warnings.append(f"layer {l}: {r['saturated']:.0%} of {r['activation']} outputs are saturated, where "
                            "g'(z) ≈ 0 -- scale the inputs, use Xavier initialisation or ReLU")
    finite = [r for r in rows if math.isfinite(r["dW_norm"]) and r["dW_norm"] > 0]
    if len(finite) >= 2:
        first, last = finite[0]["dW_norm"], finite[-1]["dW_norm"]
        if last / first > DECAY_FACTOR:
            warnings.append(f"vanishing gradients across layers: ‖dW‖ falls {last / first:.3g}× from layer "
                            f"{finite[-1]['layer']} to layer {finite[0]['layer']} -- try He/Xavier initialisation, "
                            "ReLU instead of sigmoid/tanh, or fewer layers")
        elif first / last > DECAY_FACTOR:
            warnings.append(f"exploding gradients across layers: ‖dW‖ grows {first / last:.3g}× from layer "
                            f"{finite[-1]['layer']} to layer {finite[0]['layer']} -- try a smaller initialisation "
                            "scale or a lower learning rate")
    return warnings, checks
