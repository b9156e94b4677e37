"""Numerical gradient checking: the notes' proof that backprop is right.

Central differences in float64, (f(θ+ε) - f(θ-ε)) / 2ε, contracted with a random
cotangent, against the analytic gradient. The relative error
‖g - g̃‖ / (‖g‖ + ‖g̃‖) should be below 1e-7.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._validation import check, interval, non_negative_float, positive_float
from .function import no_grad
from .nn.module import eval_mode
from .tensor import Tensor


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """‖a - b‖ / (‖a‖ + ‖b‖), and 0 when both are zero.

    >>> import numpy as np, gradbox as gb
    >>> gb.relative_error(np.array([1.0]), np.array([3.0]))
    0.5
    """
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    # NOTE: == 0, not > 0: a NaN or inf anywhere gives NaN, never a reassuring 0
    return 0.0 if denom == 0 else float(np.linalg.norm(a - b) / denom)


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


def _central(f, flat, i, h):
    """f(θ+h) and f(θ-h) for entry ``i`` of ``flat`` (changed in place and restored)."""
    orig = flat[i]
    flat[i] = orig + h
    plus = f()
    flat[i] = orig - h
    minus = f()
    flat[i] = orig
    return plus, minus


def _numeric_grad(f, x: np.ndarray, eps: float, indices=None) -> np.ndarray:
    """Central differences of the scalar ``f()`` with respect to ``x``, changed in place."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(x.size) if indices is None else indices:
        plus, minus = _central(f, flat, i, eps)
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


def _entry(f, f0, flat, i, a_i, eps, min_eps):
    """One entry's central difference, with a measured estimate of its own error (its floor).

    NOTE: the numerics. A central difference n(h) = (f(θ+h) - f(θ-h)) / 2h errs by
    truncation (about f'''(θ)·h²/6) plus rounding (each value of f is rounded; the noise
    scales with everything the loss computes, not only |f|, so it is measured, not
    modelled):
      - n(h) and n(1.001·h) have the same truncation to 0.2 %: their difference is the
        rounding noise of this entry;
      - n(h) and n(2h) differ by 3x the truncation error (plus noise).
    ``floor = |n(h) - n(2h)| + 2·noise`` bounds the error of n(h). A wrong backward stays
    wrong at every step size; numerical error stays within the floor.

    Kinks (ReLU at 0, abs, max). One strictly inside the step makes n(h) and n(2h)
    disagree: the step is shrunk tenfold and the entry redone (truncation falls 100x and a
    kink at a finite distance drops out), down to ``min_eps``. A kink exactly at θ leaves
    n(h) = n(2h) (the mean of the two one-sided slopes), so the one-sided slopes are
    compared too, at steps h, h/10, h/100 and 1.001·h/100: on a smooth function their difference
    (f(θ+h) - 2f(θ) + f(θ-h)) / h shrinks tenfold per step (or grows tenfold where rounding
    dominates); at a kink it stays the jump of the slope. Returns (estimate, floor, kink); ``kink`` entries
    are reported apart, neither a pass nor a failure.
    """
    h = eps
    best = None
    while True:
        plus, minus = _central(f, flat, i, h)
        n1 = (plus - minus) / (2 * h)
        p, m = _central(f, flat, i, 1.001 * h)
        noise = abs(n1 - (p - m) / (2.002 * h))
        p, m = _central(f, flat, i, 2 * h)
        spread = abs(n1 - (p - m) / (4 * h))
        floor = spread + 2 * noise
        if best is None or floor < best[1]:
            best = (n1, floor)
        if spread <= 10 * noise or spread <= 1e-7 * abs(n1):
            # smooth between h and 2h; is θ itself a kink? Asked only where it matters: an
            # entry that agrees with the analytic gradient passes either way (6 evaluations, not 12)
            if abs(a_i - best[0]) <= max(1e-8 * (abs(a_i) + abs(best[0])), best[1]):
                return best[0], best[1], False
            bends = [abs(plus - 2 * f0 + minus) / h]
            for step in (h / 10, h / 100, 1.001 * h / 100):
                p, m = _central(f, flat, i, step)
                bends.append(abs(p - 2 * f0 + m) / step)
            # NOTE: the one-sided slopes' difference shrinks tenfold per step on a smooth
            # function and grows tenfold where rounding dominates; only a kink keeps it (to
            # 10 %), and then also at the nearby step 1.001·h/100 (rounding noise does not)
            at_kink = (min(bends) > 0 and bends[2] > 10 * abs(bends[2] - bends[3])
                       and all(0.9 < b / a < 1.1 for a, b in zip(bends[:2], bends[1:3])))
            return best[0], best[1], at_kink
        if h / 10 < min_eps:
            return best[0], best[1], True
        h /= 10


@dataclass
class GradientReport:
    """Per-parameter results of ``check_gradients``; ``str()`` prints the table.

    A row has ``rel_error`` (‖g - g̃‖ / (‖g‖ + ‖g̃‖)), ``abs_error`` (‖g - g̃‖), ``floor``
    (the estimated numerical error of the central differences themselves, the norm of
    the per-entry floors) and ``kinks`` (entries skipped: a kink within every step size).
    Its verdict: "ok" (relative error below the threshold), "ok (zero)" (‖g - g̃‖ below
    ``atol``: a truly zero gradient), "ok (rounding)" (‖g - g̃‖ within ``floor_factor``
    x floor: numerical error of the differences, not a wrong gradient), "kink" (every
    entry skipped) or "FAIL".
    """

    rows: list
    threshold: float
    atol: float = 1e-10
    floor_factor: float = 3.0

    def verdict(self, r) -> str:
        if r.get("checked", 1) == 0:
            return "kink"
        if r["rel_error"] < self.threshold:
            return "ok"
        if "floor" in r and r["abs_error"] <= self.floor_factor * r["floor"]:
            return "ok (rounding)"
        # NOTE: a gradient that is truly zero (a bias fed by a balanced batch) has
        # ‖g - g̃‖ ≈ 1e-17 but a relative error near 1 (and a floor of exactly 0 when
        # f(θ+h) = f(θ-h)); the absolute floor accepts it.
        if r["abs_error"] < self.atol:
            return "ok (zero)"
        return "FAIL"

    def row_passed(self, r) -> bool:
        return self.verdict(r) != "FAIL"

    @property
    def passed(self) -> bool:
        return all(self.row_passed(r) for r in self.rows)

    @property
    def failed_rows(self) -> list:
        return [r for r in self.rows if not self.row_passed(r)]

    @property
    def max_rel_error(self) -> float:
        """The worst relative error among the rows that decide the verdict (the failing ones, if any)."""
        rows = self.failed_rows or self.rows
        return max(r["rel_error"] for r in rows)

    def __bool__(self):
        return self.passed

    def table(self) -> str:
        has_floor = any("floor" in r for r in self.rows)
        head = (f"{'parameter':<22}{'shape':<14}{'‖analytic‖':>12}{'‖numeric‖':>12}{'rel. error':>12}"
                + (f"{'‖g - g̃‖':>10}{'floor':>10}" if has_floor else "") + "  result")
        lines = [head, "-" * len(head)]
        for r in self.rows:
            v = self.verdict(r)
            note = f"ok (‖g - g̃‖ < {self.atol:.0e})" if v == "ok (zero)" else v
            if r.get("kinks"):
                note += f", {r['kinks']} entr{'y' if r['kinks'] == 1 else 'ies'} at a kink skipped"
            floor = f"{r['abs_error']:>10.1e}{r.get('floor', float('nan')):>10.1e}" if has_floor else ""
            lines.append(f"{r['name']:<22}{str(r['shape']):<14}{r['analytic_norm']:>12.4e}"
                         f"{r['numeric_norm']:>12.4e}{r['rel_error']:>12.2e}{floor}  {note}")
        failed = self.failed_rows
        if failed:
            # NOTE: the summary quotes a failing row, never an error from a row marked ok
            worst = max(failed, key=lambda r: r["rel_error"])
            lines.append(
                f"FAILED: {len(failed)} of {len(self.rows)} parameters disagree beyond the numerical error "
                f"(worst {worst['name']}: relative error {worst['rel_error']:.2e}, threshold {self.threshold:.0e}; "
                f"‖g - g̃‖ {worst['abs_error']:.1e} > {self.floor_factor:g} x floor {worst.get('floor', 0.0):.1e})"
            )
        else:
            worst = max(self.rows, key=lambda r: r["rel_error"])
            extra = ""
            rounding = [r["name"] for r in self.rows if self.verdict(r) == "ok (rounding)"]
            if rounding:
                extra = (f"; {', '.join(rounding)} above the threshold only by the numerical error of the "
                         f"central differences (within {self.floor_factor:g} x floor)")
            kinks = sum(r.get("kinks", 0) for r in self.rows)
            if kinks:
                extra += (f"; {kinks} entr{'y' if kinks == 1 else 'ies'} skipped: a kink (e.g. a ReLU input at 0) "
                          f"at the point or within every step")
            lines.append(f"PASSED: worst relative error {worst['rel_error']:.2e} in {worst['name']} "
                         f"(threshold {self.threshold:.0e}){extra}")
        return "\n".join(lines)

    __str__ = table


_STEP = interval("real", 0, 1, closed="neither")  # a finite-difference step


def check_gradients(model, loss_fn, X, y, eps=1e-5, threshold=1e-7, atol=1e-10, max_entries=None,
                    seed=0, min_eps=1e-9, floor_factor=3.0) -> GradientReport:
    """Compare every parameter's backprop gradient with central differences, telling rounding from bugs.

    The model is checked in float64 and in eval mode (dropout off); its own
    parameters, gradients and mode are restored afterwards.

    Each entry is differenced with steps h, 1.001·h and 2h; from their disagreements the
    numerical error of the difference itself (rounding and truncation), its *floor*, is measured.
    A parameter passes when its relative error is below ``threshold`` (the notes' 1e-7);
    or when ‖g - g̃‖ is within ``floor_factor`` x its floor, i.e. the disagreement is the
    rounding or truncation error of the numerical derivative (a trained model's gradients
    are small, so its relative errors are dominated by it); or when ‖g - g̃‖ < ``atol``
    (a zero gradient). A wrong backward disagrees at every step size and fails. Entries
    with a kink within every step size (down to ``min_eps``) are skipped and counted.

    Parameters
    ----------
    model : Module
    loss_fn : callable ``loss_fn(model(X), y) -> scalar Tensor``
    X, y : arrays (a small batch is enough)
    eps : float
        The first step, 1e-5: in float64, with derivatives of order 1, it balances
        truncation (≈ h²) against rounding (≈ 2.2e-16 / h). Shrunk per entry near a kink.
    threshold, atol, floor_factor : float
    max_entries : int, optional
        Check at most this many randomly chosen entries per parameter (large layers).
    seed : int
        Seed of the sampled entries.
    min_eps : float
        The smallest step tried near a kink.

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
    eps, min_eps = (check("check_gradients", arg, value, _STEP) for arg, value in (("eps", eps), ("min_eps", min_eps)))
    floor_factor = check("check_gradients", "floor_factor", floor_factor, non_negative_float)
    threshold = check("check_gradients", "threshold", threshold, positive_float)
    atol = check("check_gradients", "atol", atol, non_negative_float)
    saved = [(p, p.data, p.grad) for _, p in named]
    X64 = np.asarray(X.data if isinstance(X, Tensor) else X, dtype=np.float64)
    y = y.data if isinstance(y, Tensor) else np.asarray(y)
    if y.dtype.kind == "f":
        y = y.astype(np.float64)
    rng = np.random.default_rng(seed)
    try:
        with eval_mode(model):
            return _check_rows(model, loss_fn, named, X64, y, rng, eps, min_eps, max_entries, threshold, atol,
                               floor_factor)
    finally:
        for p, data, grad in saved:
            p.data, p.grad = data, grad


def _check_rows(model, loss_fn, named, X64, y, rng, eps, min_eps, max_entries, threshold, atol, floor_factor):
    """``check_gradients``'s body, run in eval mode on float64 copies of the parameters."""
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

    f0 = f()
    rows = []
    for name, p in named:
        idx = range(p.size)
        if max_entries is not None and p.size > max_entries:
            idx = np.sort(rng.choice(p.size, size=max_entries, replace=False))
        a_all = (p.grad if p.grad is not None else np.zeros_like(p.data)).reshape(-1)
        flat = p.data.reshape(-1)  # NOTE: a view of the float64 copy: entries change in place, restored
        a, n, floor, kink = [], [], [], []
        for i in idx:
            n_i, floor_i, kink_i = _entry(f, f0, flat, int(i), float(a_all[i]), eps, min_eps)
            a.append(a_all[i]), n.append(n_i), floor.append(floor_i), kink.append(kink_i)
        a, n, floor, kink = (np.asarray(v, dtype=dt) for v, dt in
                             ((a, np.float64), (n, np.float64), (floor, np.float64), (kink, bool)))
        keep = ~kink
        ak, nk = a[keep], n[keep]
        rows.append(dict(name=name, shape=p.shape, analytic_norm=float(np.linalg.norm(ak)),
                         numeric_norm=float(np.linalg.norm(nk)), rel_error=relative_error(ak, nk),
                         abs_error=float(np.linalg.norm(ak - nk)), floor=float(np.linalg.norm(floor[keep])),
                         kinks=int(kink.sum()), checked=int(keep.sum())))
    return GradientReport(rows, threshold, atol, floor_factor)
