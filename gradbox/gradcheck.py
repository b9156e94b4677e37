"""Numerical gradient checking: the notes' proof that backprop is right.

Central differences in float64, (f(θ+ε) - f(θ-ε)) / 2ε, contracted with a random
cotangent, against the analytic gradient. The relative error
‖g - g̃‖ / (‖g‖ + ‖g̃‖) should be below 1e-7.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .function import no_grad
from .tensor import Tensor


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """‖a - b‖ / (‖a‖ + ‖b‖), and 0 when both are zero.

    >>> import numpy as np, gradbox as gb
    >>> gb.relative_error(np.array([1.0]), np.array([3.0]))
    0.5
    """
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / denom) if denom > 0 else 0.0


@dataclass
class GradcheckResult:
    """Outcome of ``gradcheck``: ``passed`` and the worst relative error, per input too."""

    passed: bool
    max_rel_error: float
    rel_errors: list = field(default_factory=list)
    analytic: list = field(default_factory=list, repr=False)
    numeric: list = field(default_factory=list, repr=False)

    def __bool__(self):
        return self.passed


def _numeric_grad(f, x: np.ndarray, eps: float, indices=None) -> np.ndarray:
    """Central differences of the scalar ``f()`` with respect to ``x``, changed in place."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(x.size) if indices is None else indices:
        orig = flat[i]
        flat[i] = orig + eps
        plus = f()
        flat[i] = orig - eps
        minus = f()
        flat[i] = orig
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0) -> GradcheckResult:
    """Check ``fn``'s backward against central differences, in float64.

    Parameters
    ----------
    fn : callable
        Takes tensors and returns a tensor of any shape.
    inputs : sequence of Tensor or array
        Copied to float64. Arrays and tensors with ``requires_grad`` are checked;
        tensors without it are held constant.
    eps, atol, rtol : float
        Step, and the elementwise tolerance ``|g - g̃| <= atol + rtol·|g̃|``.
    seed : int
        Seed of the random cotangent ``v``; the checked scalar is ``Σ v·fn(x)``.

    Examples
    --------
    >>> import gradbox as gb, numpy as np
    >>> gb.gradcheck(lambda a, b: a * b + a, [np.random.rand(3), np.random.rand(3)]).passed
    True
    """
    if isinstance(inputs, (Tensor, np.ndarray)):
        inputs = [inputs]
    xs = []
    for i, x in enumerate(inputs):
        wants = x.requires_grad if isinstance(x, Tensor) else True
        data = x.data if isinstance(x, Tensor) else np.asarray(x)
        if data.dtype.kind != "f":
            raise TypeError(f"gradcheck(inputs[{i}]): expected floating-point data, received dtype {data.dtype}")
        xs.append(Tensor(data.astype(np.float64), requires_grad=wants))
    if not any(x.requires_grad for x in xs):
        raise ValueError("gradcheck(inputs): expected at least one input that requires grad, received none")

    out = fn(*xs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck(fn): expected fn to return a Tensor, received {type(out).__name__}")
    v = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(v)

    def f():
        with no_grad():
            return float((fn(*xs).data * v).sum())

    analytic, numeric, errors, passed = [], [], [], True
    for x in xs:
        if not x.requires_grad:
            continue
        a = x.grad if x.grad is not None else np.zeros_like(x.data)
        n = _numeric_grad(f, x.data, eps)
        analytic.append(a)
        numeric.append(n)
        errors.append(relative_error(a, n))
        passed = passed and bool(np.allclose(a, n, atol=atol, rtol=rtol))
    return GradcheckResult(passed, max(errors), errors, analytic, numeric)


@dataclass
class GradientReport:
    """Per-parameter results of ``check_gradients``; ``str()`` prints the table."""

    rows: list
    threshold: float
    atol: float = 1e-10

    def row_passed(self, r) -> bool:
        # NOTE: a gradient that is truly zero (a bias fed by a balanced batch) has
        # ‖g - g̃‖ ≈ 1e-17 but a relative error near 1; the absolute floor accepts it.
        return r["rel_error"] < self.threshold or r["abs_error"] < self.atol

    @property
    def passed(self) -> bool:
        return all(self.row_passed(r) for r in self.rows)

    @property
    def max_rel_error(self) -> float:
        return max(r["rel_error"] for r in self.rows)

    def __bool__(self):
        return self.passed

    def table(self) -> str:
        head = f"{'parameter':<22}{'shape':<14}{'‖analytic‖':>12}{'‖numeric‖':>12}{'rel. error':>12}  result"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            ok = "ok" if r["rel_error"] < self.threshold else f"ok (‖g - g̃‖ < {self.atol:.0e})" \
                if self.row_passed(r) else "FAIL"
            lines.append(
                f"{r['name']:<22}{str(r['shape']):<14}{r['analytic_norm']:>12.4e}"
                f"{r['numeric_norm']:>12.4e}{r['rel_error']:>12.2e}  {ok}"
            )
        verdict = "PASSED" if self.passed else "FAILED"
        lines.append(f"{verdict}: worst relative error {self.max_rel_error:.2e} (threshold {self.threshold:.0e})")
        return "\n".join(lines)

    __str__ = table


def check_gradients(model, loss_fn, X, y, eps=1e-6, threshold=1e-7, atol=1e-10, max_entries=None,
                    seed=0) -> GradientReport:
    """Compare every parameter's backprop gradient with central differences.

    The model is checked in float64 and in eval mode (dropout off); its own
    parameters, gradients and mode are restored afterwards.

    Parameters
    ----------
    model : Module
    loss_fn : callable ``loss_fn(model(X), y) -> scalar Tensor``
    X, y : arrays (a small batch is enough)
    threshold, atol : float
        A parameter passes when its relative error is below ``threshold`` (the notes'
        1e-7), or when ‖g - g̃‖ itself is below ``atol`` (a gradient that is truly zero).
    max_entries : int, optional
        Check at most this many randomly chosen entries per parameter (large layers).

    Examples
    --------
    >>> import gradbox as gb, numpy as np
    >>> net = gb.nn.Sequential(gb.nn.Linear(3, 4, rng=0), gb.nn.Tanh(), gb.nn.Linear(4, 2, rng=1))
    >>> X, y = np.random.default_rng(0).normal(size=(5, 3)), np.array([0, 1, 1, 0, 1])
    >>> gb.check_gradients(net, gb.nn.CrossEntropyLoss(), X, y).passed
    True
    """
    named = list(model.named_parameters())
    if not named:
        raise ValueError("check_gradients(model): expected a model with parameters, received none")
    saved = [(p, p.data, p.grad) for _, p in named]
    modes = [(m, m.training) for m in model.modules()]
    X64 = np.asarray(X.data if isinstance(X, Tensor) else X, dtype=np.float64)
    y = y.data if isinstance(y, Tensor) else np.asarray(y)
    if y.dtype.kind == "f":
        y = y.astype(np.float64)
    rng = np.random.default_rng(seed)
    try:
        model.eval()
        for _, p in named:
            p.data = p.data.astype(np.float64)
            p.grad = None
        loss = loss_fn(model(Tensor(X64)), y)
        if loss.size != 1:
            raise ValueError(f"check_gradients(loss_fn): expected a scalar loss, received shape {loss.shape}")
        loss.backward()

        def f():
            with no_grad():
                return float(loss_fn(model(Tensor(X64)), y).data)

        rows = []
        for name, p in named:
            idx = None
            if max_entries is not None and p.size > max_entries:
                idx = np.sort(rng.choice(p.size, size=max_entries, replace=False))
            a = p.grad if p.grad is not None else np.zeros_like(p.data)
            n = _numeric_grad(f, p.data, eps, idx)
            if idx is not None:
                a, n = a.reshape(-1)[idx], n.reshape(-1)[idx]
            rows.append(dict(name=name, shape=p.shape, analytic_norm=float(np.linalg.norm(a)),
                             numeric_norm=float(np.linalg.norm(n)), rel_error=relative_error(a, n),
                             abs_error=float(np.linalg.norm(a - n))))
    finally:
        for p, data, grad in saved:
            p.data, p.grad = data, grad
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
    return GradientReport(rows, threshold, atol)
