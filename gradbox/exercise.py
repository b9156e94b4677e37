"""Check a learner's own boxes against ``gradbox.course``, output by output, in the notes' notation.

The course has learners write ``linear_forward``, ``linear_backward``,
``relu_backward``, ``L_model_backward``, ``update_parameters`` (and in course 4
``conv_forward``, ``pool_backward``, ...) themselves. ``check_exercise`` finds the
functions in a learner's file that carry those names, runs each on the course's
published test case (seed 1) and on random shapes with edge cases (m = 1, one
unit, a square layer, a deep stack), and compares every output with
``gradbox.course``'s reference: its shape, then its relative error
‖a − b‖ / (‖a‖ + ‖b‖).

When an output is wrong, the checker also computes what the common mistakes would
have given -- a missing 1/m, a missing ``keepdims=True``, W where Wᵀ belongs,
ReLU's derivative taken as 1 at z = 0, dW built from A[l] instead of A[l−1], a
flipped sign -- and names the one that matches::

    linear_backward: dA_prev ok (rel. err 0e+00), dW ok (rel. err 3e-17), db wrong:
    expected shape (n[l], 1) = (3, 1), received (3,) -- did you forget keepdims=True?

>>> import types
>>> from gradbox import course, exercise
>>> learner = types.SimpleNamespace(linear_forward=course.linear_forward)
>>> exercise.check_exercise(learner).ok
True
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import io
import os
import sys
import types
from dataclasses import dataclass, field

import numpy as np

from . import course
from .gradcheck import relative_error

__all__ = ["check_exercise", "ExerciseReport", "FunctionResult", "OutputResult", "FUNCTIONS", "add_arguments",
           "run", "main"]

TOL = 1e-7        # relative error below which an output is right
MATCH_TOL = 1e-6  # relative error below which a wrong output matches a known mistake
COMPACT = 4       # more right outputs than this are summarised in one phrase


def _span(outputs) -> str:
    names = [o.name for o in outputs]
    return ", ".join(names) if len(names) <= 3 else f"{names[0]}, {names[1]}, …, {names[-1]}"

FUNCTIONS = (
    "initialize_parameters_deep", "linear_forward", "relu_backward", "sigmoid_backward",
    "linear_activation_forward", "L_model_forward", "compute_cost", "linear_backward",
    "linear_activation_backward", "L_model_backward", "update_parameters",
    "conv_forward", "conv_backward", "pool_forward", "pool_backward",
)

# The notes' notation for each output's shape.
NOTATION = {
    "Z": "(n[l], m)", "A": "(n[l], m)", "AL": "(1, m)", "cost": "()", "dZ": "(n[l], m)",
    "dA_prev": "(n[l-1], m)", "dW": "(n[l], n[l-1])", "db": "(n[l], 1)",
    "conv Z": "(m, n_H, n_W, n_C)", "conv dA_prev": "(m, n_H_prev, n_W_prev, n_C_prev)",
    "conv dW": "(f, f, n_C_prev, n_C)", "conv db": "(1, 1, 1, n_C)", "pool A": "(m, n_H, n_W, n_C)",
}

MESSAGES = {
    "en": {
        "ok": "{name} ok (rel. err {err})",
        "n_outputs": "{n} outputs {names}",
        "wrong": "{name} wrong",
        "shape": "expected shape {notation} = {expected}, received {received}",
        "relerr": "rel. err {err}",
        "values_ok": "the values are right (rel. err {err})",
        "hint_missing_1_over_m": "did you forget 1/m?",
        "hint_keepdims": "did you forget keepdims=True?",
        "hint_keepdims_1_over_m": "did you forget 1/m and keepdims=True?",
        "hint_transposed_W": "did you use W where Wᵀ belongs (or Wᵀ where W belongs)?",
        "hint_transposed": "the result is transposed: check the order of the product (dW = dZ · A[l-1]ᵀ)",
        "hint_relu_at_zero": "ReLU's derivative at z = 0: the course takes g'(0) = 0 (dZ[Z <= 0] = 0); yours gives 1 there",
        "hint_dW_from_A": "dW built from A[l] instead of A[l-1]: use A_prev from the linear cache",
        "hint_sign": "the sign is flipped",
        "hint_no_lr": "did you forget the learning rate α?",
        "hint_sigmoid_of_cache": "the cache holds Z, not A: compute s = 1 / (1 + exp(-Z)) first",
        "hint_missing_b": "did you forget to add b?",
        "hint_squeeze": "return a number: cost = np.squeeze(cost)",
        "hint_inplace": "your function changed its input {arg} in place: copy it first (np.array({arg}, copy=True))",
        "hint_no_pad": "did you forget to pad A_prev (zero_pad(A_prev, pad))?",
        "hint_stride": "did you forget the stride in the window's corners (vert_start = h * stride)?",
        "hint_pool_mode": "the other pooling mode's result: check mode='max' / 'average'",
        "raised": "raised {exc}",
        "returned": "returned {what}, expected {expected}",
        "missing_key": "missing key {key}",
        "not_found": "no function with the course's names found in {where} (looked for: {names})",
        "skipped": "{fn}: skipped -- gradbox.course has no reference {fn} yet",
        "random_note": "random values: shapes, b = 0 and W ≠ 0 checked",
        "case": "case: {case}",
        "summary_ok": "all {n} functions right",
        "summary_bad": "{bad} of {n} functions wrong",
        "published": "the course's test case (seed 1)",
        "random": "random shapes {shapes}",
        "import_error": "could not import {where}: {exc}",
    },
    "ko": {
        "ok": "{name} 정답 (상대 오차 {err})",
        "n_outputs": "출력 {n}개 {names}",
        "wrong": "{name} 오답",
        "shape": "기대한 형상 {notation} = {expected}, 받은 형상 {received}",
        "relerr": "상대 오차 {err}",
        "values_ok": "값 자체는 맞습니다 (상대 오차 {err})",
        "hint_missing_1_over_m": "1/m을 빠뜨리지 않았나요?",
        "hint_keepdims": "keepdims=True를 빠뜨리지 않았나요?",
        "hint_keepdims_1_over_m": "1/m과 keepdims=True를 빠뜨리지 않았나요?",
        "hint_transposed_W": "Wᵀ를 써야 할 곳에 W를 (또는 그 반대로) 쓰지 않았나요?",
        "hint_transposed": "결과가 전치되어 있습니다: 곱의 순서를 확인하세요 (dW = dZ · A[l-1]ᵀ)",
        "hint_relu_at_zero": "z = 0에서 ReLU의 미분: 강의에서는 g'(0) = 0으로 둡니다 (dZ[Z <= 0] = 0). 여러분의 코드는 그 자리에서 1을 줍니다",
        "hint_dW_from_A": "dW를 A[l-1]이 아니라 A[l]로 계산했습니다: 선형 캐시의 A_prev를 쓰세요",
        "hint_sign": "부호가 반대입니다",
        "hint_no_lr": "학습률 α를 빠뜨리지 않았나요?",
        "hint_sigmoid_of_cache": "캐시에는 A가 아니라 Z가 들어 있습니다: 먼저 s = 1 / (1 + exp(-Z))를 계산하세요",
        "hint_missing_b": "b를 더하는 것을 빠뜨리지 않았나요?",
        "hint_squeeze": "숫자 하나를 반환하세요: cost = np.squeeze(cost)",
        "hint_inplace": "함수가 입력 {arg}을(를) 제자리에서 바꿨습니다. 먼저 복사하세요 (np.array({arg}, copy=True))",
        "hint_no_pad": "A_prev에 패딩을 넣는 것(zero_pad(A_prev, pad))을 빠뜨리지 않았나요?",
        "hint_stride": "창의 시작 위치에 스트라이드를 곱하는 것(vert_start = h * stride)을 빠뜨리지 않았나요?",
        "hint_pool_mode": "다른 풀링 방식의 결과입니다: mode='max' / 'average'를 확인하세요",
        "raised": "예외 발생: {exc}",
        "returned": "{what}을(를) 반환했습니다. 기대한 것: {expected}",
        "missing_key": "키 {key}가 없습니다",
        "not_found": "{where}에서 강의의 함수 이름을 하나도 찾지 못했습니다 (찾은 이름: {names})",
        "skipped": "{fn}: 건너뜀 -- gradbox.course에 아직 참조 구현 {fn}이(가) 없습니다",
        "random_note": "값은 무작위입니다: 형상, b = 0, W ≠ 0만 확인했습니다",
        "case": "사례: {case}",
        "summary_ok": "함수 {n}개 모두 정답",
        "summary_bad": "함수 {n}개 중 {bad}개 오답",
        "published": "강의의 테스트 사례 (seed 1)",
        "random": "무작위 형상 {shapes}",
        "import_error": "{where}을(를) 불러오지 못했습니다: {exc}",
    },
}


def _msg(lang, key, **kw):
    return MESSAGES[lang][key].format(**kw)


def _err(v: float) -> str:
    return f"{v:.0e}" if v < 1e-3 else f"{v:.2g}"


def _shape(s) -> str:
    s = tuple(s)
    return "(" + ", ".join(str(x) for x in s) + ("," if len(s) == 1 else "") + ")"


# --- results ---------------------------------------------------------------------
@dataclass
class OutputResult:
    """One output of one function: ``ok``, the worst ``rel_error``, and on failure the first
    failing ``case``, shapes and a ``hint`` key (a known mistake) with its arguments."""

    name: str
    ok: bool
    rel_error: float | None = None
    expected_shape: tuple | None = None
    received_shape: tuple | None = None
    notation: str | None = None
    hint: str | None = None
    hint_args: dict = field(default_factory=dict)
    case: str | None = None
    problem: str | None = None    # "raised"/"returned"/"missing_key" text already formatted

    def describe(self, lang="en") -> str:
        if self.ok:
            return _msg(lang, "ok", name=self.name, err=_err(self.rel_error or 0.0))
        parts = []
        if self.problem:
            parts.append(self.problem)
        if self.expected_shape is not None and self.received_shape is not None \
                and tuple(self.expected_shape) != tuple(self.received_shape):
            parts.append(_msg(lang, "shape", notation=self.notation or _shape(self.expected_shape),
                              expected=_shape(self.expected_shape), received=_shape(self.received_shape)))
        if self.rel_error is not None:
            values_ok = self.rel_error < TOL and parts and self.problem is None
            parts.append(_msg(lang, "values_ok" if values_ok else "relerr", err=_err(self.rel_error)))
        text = _msg(lang, "wrong", name=self.name) + (": " + "; ".join(parts) if parts else "")
        if self.hint:
            text += " — " + _msg(lang, f"hint_{self.hint}", **self.hint_args)
        if self.case:
            text += f" [{self.case}]"
        return text


@dataclass
class FunctionResult:
    """One function: ``ok``, its ``outputs`` (``OutputResult``), ``cases`` run, ``note``."""

    name: str
    outputs: list
    cases: int = 0
    note: str | None = None
    skipped: bool = False

    @property
    def ok(self) -> bool:
        return self.skipped or (bool(self.outputs) and all(o.ok for o in self.outputs))

    def describe(self, lang="en") -> str:
        if self.skipped:
            return _msg(lang, "skipped", fn=self.name)
        oks = [o for o in self.outputs if o.ok]
        shown = [o for o in self.outputs if not o.ok]
        if len(oks) > COMPACT:
            # NOTE: many outputs (L_model_backward's dA0 ... dbL): the right ones in one phrase.
            worst = max(o.rel_error or 0.0 for o in oks)
            shown.append(OutputResult(_msg(lang, "n_outputs", n=len(oks), names=_span(oks)), True, worst))
        else:
            shown = self.outputs
        text = f"{self.name}: " + ", ".join(o.describe(lang) for o in shown)
        if self.note:
            text += f" ({self.note})"
        return text


@dataclass
class ExerciseReport:
    """What ``check_exercise`` found: ``functions`` ({name: FunctionResult}), ``ok``, ``str()``."""

    functions: dict
    lang: str = "en"
    where: str = ""
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None and bool(self.functions) and all(f.ok for f in self.functions.values())

    def __bool__(self):
        return self.ok

    def __str__(self):
        lines = [] if self.problem is None else [self.problem]
        lines += [f.describe(self.lang) for f in self.functions.values()]
        checked = [f for f in self.functions.values() if not f.skipped]
        bad = sum(not f.ok for f in checked)
        if checked:
            lines.append(_msg(self.lang, "summary_ok", n=len(checked)) if not bad
                         else _msg(self.lang, "summary_bad", bad=bad, n=len(checked)))
        return "\n".join(lines)

    def __getitem__(self, name):
        return self.functions[name]


# --- mistake simulators: what the common mistakes would give ------------------------
def _sig(Z):
    return course.sigmoid(Z)[0]


def _act_back(dA, Z, activation, mistakes=()):
    if activation == "relu":
        return dA * ((Z >= 0) if "relu_at_zero" in mistakes else (Z > 0))
    if "sigmoid_of_cache" in mistakes:
        return dA * Z * (1 - Z)
    s = _sig(Z)
    return dA * s * (1 - s)


def _lin_back(dZ, A_prev, W, mistakes=(), A_cur=None):
    m = A_prev.shape[1]
    k = 1.0 if "missing_1_over_m" in mistakes else 1.0 / m
    src = A_cur if ("dW_from_A" in mistakes and A_cur is not None) else A_prev
    dW = k * dZ @ src.T
    db = k * np.sum(dZ, axis=1, keepdims="keepdims" not in mistakes)
    Wt = W if ("transposed_W" in mistakes and W.shape[0] == W.shape[1]) else W.T
    return Wt @ dZ, dW, db


def _act_lin_back(dA, cache, activation, mistakes=()):
    (A_prev, W, _), Z = cache
    dZ = _act_back(dA, Z, activation, mistakes)
    A_cur = np.maximum(Z, 0) if activation == "relu" else _sig(Z)
    return _lin_back(dZ, A_prev, W, mistakes, A_cur)


def _L_back(AL, Y, caches, mistakes=()):
    grads, L = {}, len(caches)
    Y = Y.reshape(AL.shape)
    dAL = -(Y / AL - (1 - Y) / (1 - AL))
    if "sign" in mistakes:
        dAL = -dAL
    out = _act_lin_back(dAL, caches[-1], "sigmoid", mistakes)
    grads[f"dA{L - 1}"], grads[f"dW{L}"], grads[f"db{L}"] = out
    for l in reversed(range(L - 1)):
        out = _act_lin_back(grads[f"dA{l + 1}"], caches[l], "relu", mistakes)
        grads[f"dA{l}"], grads[f"dW{l + 1}"], grads[f"db{l + 1}"] = out
    return grads


# Mistakes tried on every wrong output (and pairs that often come together).
_MISTAKES = [("missing_1_over_m",), ("keepdims",), ("keepdims", "missing_1_over_m"), ("transposed_W",),
             ("relu_at_zero",), ("dW_from_A",), ("sign",), ("sigmoid_of_cache",)]


def _hint_name(mistakes):
    return "keepdims_1_over_m" if set(mistakes) == {"keepdims", "missing_1_over_m"} else mistakes[0]


# --- cases ---------------------------------------------------------------------------
@dataclass
class Case:
    desc: str
    args: tuple
    expected: dict                     # output name -> array
    variants: list = field(default_factory=list)   # [(hint, {output name -> array})]
    notation: dict = field(default_factory=dict)


def _published(lang):
    return _msg(lang, "published")


def _random(lang, shapes):
    return _msg(lang, "random", shapes=shapes)


def _variants(fn, mistakes_list=_MISTAKES):
    """[(hint, outputs)] for each mistake the simulator ``fn(mistakes)`` can express."""
    out = []
    for mistakes in mistakes_list:
        try:
            out.append((_hint_name(mistakes), fn(mistakes)))
        except (ValueError, IndexError):
            continue
    return out


def _with_zeros(Z, rng):
    Z = Z.copy()
    Z.reshape(-1)[rng.choice(Z.size, size=max(1, Z.size // 4), replace=False)] = 0.0
    return Z


def _dims_cases(rng):
    """(n[l-1], n[l], m): general, square (so a transposed W has the right shape), m = 1, one unit."""
    return [(5, 3, 4), (4, 4, 3), (3, 2, 1), (2, 1, 5)]


def _cases_linear_forward(rng, lang):
    rs = np.random.RandomState(1)
    A, W, b = rs.randn(3, 2), rs.randn(1, 3), rs.randn(1, 1)
    cases = []
    for desc, (A, W, b) in [(_published(lang), (A, W, b))] + [
            (_random(lang, f"n[l-1], n[l], m = {d}"), (rng.normal(size=(d[0], d[2])), rng.normal(size=(d[1], d[0])),
                                                      rng.normal(size=(d[1], 1)))) for d in _dims_cases(rng)]:
        Z, _ = course.linear_forward(A, W, b)
        var = [("missing_b", {"Z": W @ A})]
        if W.shape[0] == W.shape[1]:
            var.append(("transposed_W", {"Z": W.T @ A + b}))
        cases.append(Case(desc, (A, W, b), {"Z": Z, "cache": (A, W, b)}, var))
    return cases


def _cases_act_backward(rng, lang, activation):
    cases = []
    rs = np.random.RandomState(2)
    items = [(_published(lang), rs.randn(1, 2), rs.randn(1, 2))]
    for n, m in [(3, 4), (1, 1), (4, 1)]:
        items.append((_random(lang, f"(n[l], m) = {(n, m)}"), rng.normal(size=(n, m)), _with_zeros(rng.normal(size=(n, m)), rng)))
    for desc, dA, Z in items:
        if activation == "relu":
            Z = _with_zeros(Z, rng)
        ref = course.relu_backward(dA, Z) if activation == "relu" else course.sigmoid_backward(dA, Z)
        var = _variants(lambda mk: {"dZ": _act_back(dA, Z, activation, mk)},
                        [("relu_at_zero",)] if activation == "relu" else [("sigmoid_of_cache",)])
        cases.append(Case(desc, (dA, Z), {"dZ": ref}, var))
    return cases


def _cases_linear_backward(rng, lang):
    rs = np.random.RandomState(1)
    dZ, A, W, b = rs.randn(3, 4), rs.randn(5, 4), rs.randn(3, 5), rs.randn(3, 1)
    items = [(_published(lang), dZ, A, W, b)]
    for d in _dims_cases(rng):
        items.append((_random(lang, f"n[l-1], n[l], m = {d}"), rng.normal(size=(d[1], d[2])),
                      rng.normal(size=(d[0], d[2])), rng.normal(size=(d[1], d[0])), rng.normal(size=(d[1], 1))))
    cases = []
    for desc, dZ, A, W, b in items:
        dA_prev, dW, db = course.linear_backward(dZ, (A, W, b))
        var = _variants(lambda mk: dict(zip(("dA_prev", "dW", "db"), _lin_back(dZ, A, W, mk))))
        cases.append(Case(desc, (dZ, (A, W, b)), {"dA_prev": dA_prev, "dW": dW, "db": db}, var))
    return cases


def _cases_linear_activation_forward(rng, lang):
    cases = []
    for activation in ("sigmoid", "relu"):
        rs = np.random.RandomState(2)
        A, W, b = rs.randn(3, 2), rs.randn(1, 3), rs.randn(1, 1)
        items = [(_published(lang) + f", {activation}", A, W, b)]
        for d in _dims_cases(rng):
            items.append((_random(lang, f"n[l-1], n[l], m = {d}") + f", {activation}", rng.normal(size=(d[0], d[2])),
                          rng.normal(size=(d[1], d[0])), rng.normal(size=(d[1], 1))))
        for desc, A, W, b in items:
            out, cache = course.linear_activation_forward(A, W, b, activation)
            g = course.relu if activation == "relu" else course.sigmoid
            var = [("missing_b", {"A": g(W @ A)[0]})]
            if W.shape[0] == W.shape[1]:
                var.append(("transposed_W", {"A": g(W.T @ A + b)[0]}))
            cases.append(Case(desc, (A, W, b, activation), {"A": out, "cache": cache}, var))
    return cases


def _cases_linear_activation_backward(rng, lang):
    cases = []
    for activation in ("sigmoid", "relu"):
        rs = np.random.RandomState(2)
        items = [(_published(lang) + f", {activation}", rs.randn(1, 2), rs.randn(3, 2), rs.randn(1, 3), rs.randn(1, 1))]
        for d in _dims_cases(rng):
            items.append((_random(lang, f"n[l-1], n[l], m = {d}") + f", {activation}", rng.normal(size=(d[1], d[2])),
                          rng.normal(size=(d[0], d[2])), rng.normal(size=(d[1], d[0])), rng.normal(size=(d[1], 1))))
        for desc, dA, A_prev, W, b in items:
            Z = W @ A_prev + b
            if activation == "relu":
                Z = _with_zeros(Z, rng)
            cache = ((A_prev, W, b), Z)
            dA_prev, dW, db = course.linear_activation_backward(dA, cache, activation)
            var = _variants(lambda mk: dict(zip(("dA_prev", "dW", "db"), _act_lin_back(dA, cache, activation, mk))))
            cases.append(Case(desc, (dA, cache, activation), {"dA_prev": dA_prev, "dW": dW, "db": db}, var))
    return cases


def _deep_params(dims, rng):
    return {k: (v + (0.1 * rng.normal(size=v.shape) if k.startswith("b") else 0))
            for k, v in course.initialize_parameters_deep(dims, seed=int(rng.integers(1000))).items()}


_MODEL_DIMS = [([5, 4, 3, 1], 4), ([4, 1], 1), ([3, 5, 5, 4, 4, 3, 1], 3), ([2, 1, 1], 2)]


def _cases_L_model_forward(rng, lang):
    cases = []
    for dims, m in _MODEL_DIMS:
        params = _deep_params(dims, rng)
        X = rng.normal(size=(dims[0], m))
        AL, caches = course.L_model_forward(X, params)
        cases.append(Case(_random(lang, f"layer_dims = {dims}, m = {m}"), (X, params),
                          {"AL": AL, "caches": caches}))
    return cases


def _cases_L_model_backward(rng, lang):
    cases = []
    for dims, m in _MODEL_DIMS:
        params = _deep_params(dims, rng)
        X = rng.normal(size=(dims[0], m))
        AL, caches = course.L_model_forward(X, params)
        # NOTE: exact zeros in the ReLU layers' Z, so a derivative of 1 at z = 0 shows.
        for (lin, Z) in caches[:-1]:
            Z.reshape(-1)[0] = 0.0
        Y = (rng.random((1, m)) > 0.5).astype(float)
        grads = course.L_model_backward(AL, Y, caches)
        var = _variants(lambda mk: _L_back(AL, Y, caches, mk))
        cases.append(Case(_random(lang, f"layer_dims = {dims}, m = {m}"), (AL, Y, caches), dict(grads), var))
    return cases


def _cases_compute_cost(rng, lang):
    items = [(_published(lang), np.array([[0.8, 0.9, 0.4]]), np.array([[1, 1, 0]]))]
    for m in (5, 1):
        items.append((_random(lang, f"m = {m}"), rng.uniform(0.05, 0.95, size=(1, m)),
                      (rng.random((1, m)) > 0.5).astype(float)))
    cases = []
    for desc, AL, Y in items:
        J = course.compute_cost(AL, Y)
        m = AL.shape[1]
        cases.append(Case(desc, (AL, Y), {"cost": np.asarray(J)},
                          [("missing_1_over_m", {"cost": np.asarray(J * m)}), ("sign", {"cost": np.asarray(-J)})]))
    return cases


def _cases_update_parameters(rng, lang):
    cases = []
    for dims, _ in _MODEL_DIMS[:3]:
        params = _deep_params(dims, rng)
        grads = {f"d{k}": rng.normal(size=v.shape) for k, v in params.items()}
        lr = 0.1
        new = course.update_parameters(params, grads, lr)
        var = [("sign", {k: params[k] + lr * grads[f"d{k}"] for k in params}),
               ("no_lr", {k: params[k] - grads[f"d{k}"] for k in params})]
        cases.append(Case(_random(lang, f"layer_dims = {dims}, α = {lr}"), (params, grads, lr), new, var))
    return cases


def _cases_conv_forward(rng, lang):
    rs = np.random.RandomState(1)
    items = [(_published(lang), rs.randn(2, 5, 7, 4), rs.randn(3, 3, 4, 8), rs.randn(1, 1, 1, 8), {"pad": 1, "stride": 2})]
    for m, h, w, c, f, nc, pad, stride in [(1, 4, 4, 1, 2, 1, 0, 1), (2, 5, 5, 2, 3, 3, 1, 1), (1, 6, 5, 3, 3, 2, 2, 2)]:
        items.append((_random(lang, f"A_prev {(m, h, w, c)}, W {(f, f, c, nc)}, pad {pad}, stride {stride}"),
                      rng.normal(size=(m, h, w, c)), rng.normal(size=(f, f, c, nc)), rng.normal(size=(1, 1, 1, nc)),
                      {"pad": pad, "stride": stride}))
    cases = []
    for desc, A, W, b, hp in items:
        Z, _ = course.conv_forward(A, W, b, hp)
        var = []
        if hp["pad"]:
            try:
                var.append(("no_pad", {"Z": course.conv_forward(A, W, b, {**hp, "pad": 0})[0]}))
            except ValueError:
                pass
        cases.append(Case(desc, (A, W, b, hp), {"Z": Z}, var, {"Z": NOTATION["conv Z"]}))
    return cases


def _cases_conv_backward(rng, lang):
    cases = []
    for c in _cases_conv_forward(rng, lang):
        A, W, b, hp = c.args
        Z, cache = course.conv_forward(A, W, b, hp)
        dZ = rng.normal(size=Z.shape)
        dA_prev, dW, db = course.conv_backward(dZ, cache)
        cases.append(Case(c.desc, (dZ, cache), {"dA_prev": dA_prev, "dW": dW, "db": db}, [],
                          {"dA_prev": NOTATION["conv dA_prev"], "dW": NOTATION["conv dW"], "db": NOTATION["conv db"]}))
    return cases


def _pool_items(rng, lang):
    rs = np.random.RandomState(1)
    items = [(_published(lang), rs.randn(2, 5, 5, 3), {"stride": 1, "f": 3})]
    for m, h, w, c, f, s in [(1, 4, 4, 1, 2, 2), (2, 5, 6, 2, 3, 2)]:
        items.append((_random(lang, f"A_prev {(m, h, w, c)}, f {f}, stride {s}"), rng.normal(size=(m, h, w, c)),
                      {"stride": s, "f": f}))
    return items


def _cases_pool_forward(rng, lang):
    cases = []
    for mode in ("max", "average"):
        for desc, A, hp in _pool_items(rng, lang):
            out, _ = course.pool_forward(A, hp, mode)
            other = course.pool_forward(A, hp, "average" if mode == "max" else "max")[0]
            cases.append(Case(f"{desc}, mode={mode}", (A, hp, mode), {"A": out}, [("pool_mode", {"A": other})],
                              {"A": NOTATION["pool A"]}))
    return cases


def _cases_pool_backward(rng, lang):
    cases = []
    for mode in ("max", "average"):
        for desc, A, hp in _pool_items(rng, lang):
            out, cache = course.pool_forward(A, hp, mode)
            dA = rng.normal(size=out.shape)
            ref = course.pool_backward(dA, cache, mode)
            other = course.pool_backward(dA, cache, "average" if mode == "max" else "max")
            cases.append(Case(f"{desc}, mode={mode}", (dA, cache, mode), {"dA_prev": ref}, [("pool_mode", {"dA_prev": other})],
                              {"dA_prev": NOTATION["conv dA_prev"]}))
    return cases


# How to read each function's return value into named outputs.
def _outputs_pair(names):
    def read(ret):
        if not isinstance(ret, tuple) or len(ret) != len(names):
            raise _Returned(f"{type(ret).__name__}" + (f" of length {len(ret)}" if isinstance(ret, tuple) else ""),
                            "(" + ", ".join(names) + ")")
        return dict(zip(names, ret))
    return read


class _Returned(Exception):
    def __init__(self, what, expected):
        super().__init__(what)
        self.what, self.expected = what, expected


def _single(name):
    return lambda ret: {name: ret}


def _dict(ret):
    if not isinstance(ret, dict):
        raise _Returned(type(ret).__name__, "dict")
    return ret


_SPECS = {
    "linear_forward": (_cases_linear_forward, _outputs_pair(("Z", "cache"))),
    "relu_backward": (lambda r, lang: _cases_act_backward(r, lang, "relu"), _single("dZ")),
    "sigmoid_backward": (lambda r, lang: _cases_act_backward(r, lang, "sigmoid"), _single("dZ")),
    "linear_backward": (_cases_linear_backward, _outputs_pair(("dA_prev", "dW", "db"))),
    "linear_activation_forward": (_cases_linear_activation_forward, _outputs_pair(("A", "cache"))),
    "linear_activation_backward": (_cases_linear_activation_backward, _outputs_pair(("dA_prev", "dW", "db"))),
    "L_model_forward": (_cases_L_model_forward, _outputs_pair(("AL", "caches"))),
    "L_model_backward": (_cases_L_model_backward, _dict),
    "compute_cost": (_cases_compute_cost, _single("cost")),
    "update_parameters": (_cases_update_parameters, _dict),
    "conv_forward": (_cases_conv_forward, _outputs_pair(("Z", "cache"))),
    "conv_backward": (_cases_conv_backward, _outputs_pair(("dA_prev", "dW", "db"))),
    "pool_forward": (_cases_pool_forward, _outputs_pair(("A", "cache"))),
    "pool_backward": (_cases_pool_backward, _single("dA_prev")),
}


def _notation(fn_name, out_name, case):
    if out_name in case.notation:
        return case.notation[out_name]
    if out_name in NOTATION:
        return NOTATION[out_name]
    head = out_name.rstrip("0123456789")
    idx = out_name[len(head):]
    if head in ("dW", "W"):
        return f"(n[{idx}], n[{int(idx) - 1}])"
    if head in ("db", "b"):
        return f"(n[{idx}], 1)"
    if head == "dA":
        return f"(n[{idx}], m)"
    return None


def _flatten_cache(c):
    """Arrays of a nested cache, in order (to compare a learner's cache with the reference's)."""
    if isinstance(c, (tuple, list)):
        out = []
        for x in c:
            out.extend(_flatten_cache(x))
        return out
    if isinstance(c, dict):
        return []
    return [np.asarray(c)]


def _compare(name, received, expected, case, fn_name, lang):
    """OutputResult for one output of one case."""
    notation = _notation(fn_name, name, case)
    if name in ("cache", "caches"):
        exp, rec = _flatten_cache(expected), _flatten_cache(received)
        if len(exp) != len(rec) or any(a.shape != b.shape for a, b in zip(exp, rec)):
            return OutputResult(name, False, None, None, None, notation, case=case.desc,
                                problem=_msg(lang, "returned", what=f"{len(rec)} arrays "
                                             + ", ".join(_shape(a.shape) for a in rec),
                                             expected=f"{len(exp)}: " + ", ".join(_shape(a.shape) for a in exp)))
        err = max((relative_error(np.asarray(a, float), np.asarray(b, float)) for a, b in zip(exp, rec)), default=0.0)
        return OutputResult(name, err < TOL, err, case=None if err < TOL else case.desc)
    try:
        rec = np.asarray(received, dtype=np.float64)
    except (TypeError, ValueError):
        return OutputResult(name, False, notation=notation, case=case.desc,
                            problem=_msg(lang, "returned", what=type(received).__name__, expected="array"))
    exp = np.asarray(expected, dtype=np.float64)
    hint, hint_args = None, {}
    if name == "cost" and rec.shape != () and rec.size == 1:
        hint = "squeeze"
    same_shape = rec.shape == exp.shape
    if rec.size == exp.size:
        err = relative_error(rec.reshape(-1), exp.reshape(-1))
    elif rec.T.shape == exp.shape:
        err = relative_error(rec.T, exp)
    else:
        err = None
    if same_shape and err is not None and err < TOL:
        return OutputResult(name, True, err, exp.shape, rec.shape, notation)
    for key, outs in case.variants:
        cand = outs.get(name)
        if cand is None:
            continue
        cand = np.asarray(cand, dtype=np.float64)
        if cand.shape == rec.shape and relative_error(rec, cand) < MATCH_TOL:
            hint = key
            break
    else:
        if hint is None and rec.shape == exp.T.shape and rec.ndim == 2 and relative_error(rec, exp.T) < MATCH_TOL:
            hint = "transposed"
        elif hint is None and rec.size == exp.size and not same_shape and err is not None and err < MATCH_TOL \
                and name.startswith("db"):
            hint = "keepdims"
    if name == "cost" and hint == "squeeze" and err is not None and err < TOL:
        return OutputResult(name, False, err, exp.shape, rec.shape, notation, hint, hint_args, case.desc)
    return OutputResult(name, False, err, exp.shape, rec.shape, notation, hint, hint_args, case.desc)


def _run_function(fn_name, fn, lang, rng):
    make_cases, read = _SPECS[fn_name]
    cases = make_cases(rng, lang)
    results = {}        # output name -> OutputResult (first failure, else the worst ok)
    for case in cases:
        args = copy.deepcopy(case.args)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                ret = fn(*args)
            outs = read(ret)
        except _Returned as exc:
            results.setdefault("(return)", OutputResult("return", False, case=case.desc,
                                                        problem=_msg(lang, "returned", what=exc.what, expected=exc.expected)))
            break
        except Exception as exc:  # noqa: BLE001 - the learner's code may raise anything; report it
            # NOTE: go on with the other cases: a square layer may show which mistake raised here.
            results.setdefault("(raised)", OutputResult(fn_name, False, case=case.desc,
                                                        problem=_msg(lang, "raised", exc=f"{type(exc).__name__}: {exc}")))
            continue
        for name, expected in case.expected.items():
            if name not in outs:
                if name not in results or results[name].ok:
                    results[name] = OutputResult(name, False, case=case.desc,
                                                 problem=_msg(lang, "missing_key", key=name))
                continue
            r = _compare(name, outs[name], expected, case, fn_name, lang)
            old = results.get(name)
            if old is None or (old.ok and (not r.ok or (r.rel_error or 0) > (old.rel_error or 0))):
                results[name] = r
        changed = _changed_input(case.args, args)
        if changed is not None:
            names = _ARG_NAMES.get(fn_name, ())
            arg = names[changed] if changed < len(names) else f"argument {changed + 1}"
            results.setdefault("(inplace)", OutputResult(arg, False, case=case.desc, hint="inplace",
                                                         hint_args={"arg": arg}))
    raised = results.get("(raised)")
    if raised is not None and raised.hint is None:
        hinted = next((r for r in results.values() if r.hint), None)
        if hinted is not None:
            raised.hint, raised.hint_args = hinted.hint, hinted.hint_args
    return FunctionResult(fn_name, list(results.values()), cases=len(cases))


_ARG_NAMES = {
    "relu_backward": ("dA", "cache"), "sigmoid_backward": ("dA", "cache"), "linear_backward": ("dZ", "cache"),
    "linear_activation_backward": ("dA", "cache", "activation"), "L_model_backward": ("AL", "Y", "caches"),
    "update_parameters": ("parameters", "grads", "learning_rate"), "linear_forward": ("A", "W", "b"),
    "linear_activation_forward": ("A_prev", "W", "b", "activation"), "L_model_forward": ("X", "parameters"),
    "compute_cost": ("AL", "Y"), "conv_forward": ("A_prev", "W", "b", "hparameters"),
    "conv_backward": ("dZ", "cache"), "pool_forward": ("A_prev", "hparameters", "mode"),
    "pool_backward": ("dA", "cache", "mode"),
}


def _changed_input(original, passed):
    """The index of the first argument whose arrays the learner's function modified, else None."""
    for i, (a, b) in enumerate(zip(original, passed)):
        fa, fb = _flatten_cache(a), _flatten_cache(b)
        if isinstance(a, dict):
            fa = [np.asarray(a[k]) for k in sorted(a)]
            fb = [np.asarray(b.get(k)) for k in sorted(a)]
        if any(x.shape != y.shape or not np.array_equal(x, y) for x, y in zip(fa, fb)):
            return i
    return None


def _check_init(fn, lang, rng):
    outputs = []
    for dims in ([5, 4, 3], [3, 1], [4, 4, 4, 2, 1]):
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                params = fn(list(dims))
        except Exception as exc:  # noqa: BLE001
            return FunctionResult("initialize_parameters_deep",
                                  [OutputResult("initialize_parameters_deep", False, case=str(dims),
                                                problem=_msg(lang, "raised", exc=f"{type(exc).__name__}: {exc}"))])
        if not isinstance(params, dict):
            return FunctionResult("initialize_parameters_deep",
                                  [OutputResult("return", False, problem=_msg(lang, "returned", what=type(params).__name__,
                                                                              expected="dict"))])
        ref = course.initialize_parameters_deep(dims)
        for key, r in ref.items():
            case = Case(_random(lang, f"layer_dims = {dims}"), (), {})
            if key not in params:
                outputs.append(OutputResult(key, False, case=case.desc, problem=_msg(lang, "missing_key", key=key)))
                continue
            got = np.asarray(params[key], dtype=np.float64)
            ok = got.shape == r.shape and (np.all(got == 0) if key.startswith("b") else np.any(got != 0))
            res = OutputResult(key, ok, 0.0 if ok else None, r.shape, got.shape, _notation("", key, case),
                               case=None if ok else case.desc)
            prev = next((o for o in outputs if o.name == key), None)
            if prev is None:
                outputs.append(res)
            elif prev.ok and not ok:
                outputs[outputs.index(prev)] = res
    return FunctionResult("initialize_parameters_deep", outputs, cases=3, note=_msg(lang, "random_note"))


def _load(module_or_path):
    if isinstance(module_or_path, (str, os.PathLike)):
        path = os.fspath(module_or_path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"check_exercise(module_or_path): expected a Python file, received {path!r} "
                                    "(no such file)")
        name = f"_gradbox_exercise_{abs(hash(os.path.abspath(path)))}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        with contextlib.redirect_stdout(io.StringIO()):
            spec.loader.exec_module(module)
        return module, path
    if isinstance(module_or_path, (types.ModuleType, types.SimpleNamespace)) or hasattr(module_or_path, "__dict__"):
        return module_or_path, getattr(module_or_path, "__name__", type(module_or_path).__name__)
    raise TypeError(f"check_exercise(module_or_path): expected a module or a path to a .py file, "
                    f"received {type(module_or_path).__name__}")


def check_exercise(module_or_path, lang="en", seed=0) -> ExerciseReport:
    """Check every function in a learner's module that carries one of the course's names.

    Parameters
    ----------
    module_or_path : module, object with attributes, or path to a ``.py`` file
        A file is imported (its prints are swallowed); an error while importing it is
        reported, not raised.
    lang : {"en", "ko"}
    seed : int
        Seed of the random shapes and values.

    Returns
    -------
    ExerciseReport
        ``ok`` is True when at least one function was found and all found ones are right;
        ``report["linear_backward"].outputs`` gives per-output results; ``str(report)`` is
        the text report.

    >>> import types
    >>> from gradbox import course
    >>> def relu_backward(dA, Z):
    ...     return dA * (Z >= 0)          # g'(0) taken as 1
    >>> print(check_exercise(types.SimpleNamespace(relu_backward=relu_backward)))  # doctest: +ELLIPSIS
    relu_backward: dZ wrong: rel. err ... — ReLU's derivative at z = 0: the course takes g'(0) = 0 ...
    ...
    """
    if lang not in MESSAGES:
        raise ValueError(f"check_exercise(lang): expected one of {tuple(MESSAGES)}, received {lang!r}")
    try:
        module, where = _load(module_or_path)
    except (FileNotFoundError, TypeError):
        raise
    except Exception as exc:  # noqa: BLE001 - the learner's file failed to import: report it
        where = os.fspath(module_or_path)
        return ExerciseReport({}, lang, where, _msg(lang, "import_error", where=where, exc=f"{type(exc).__name__}: {exc}"))
    rng = np.random.default_rng(seed)
    functions = {}
    for name in FUNCTIONS:
        fn = getattr(module, name, None)
        if not callable(fn):
            continue
        if name == "initialize_parameters_deep":
            functions[name] = _check_init(fn, lang, rng)
        elif not hasattr(course, name):
            functions[name] = FunctionResult(name, [], skipped=True)
        else:
            functions[name] = _run_function(name, fn, lang, rng)
    problem = None
    if not functions:
        problem = _msg(lang, "not_found", where=where, names=", ".join(FUNCTIONS))
    return ExerciseReport(functions, lang, where, problem)


def add_arguments(parser) -> None:
    """The ``exercise`` subcommand's arguments, for ``gradbox exercise`` and ``python -m gradbox.exercise``."""
    parser.add_argument("file", help="the learner's Python file")
    parser.add_argument("--lang", choices=tuple(MESSAGES), default="en", help="language of the report (en, ko)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random test shapes")


def run(args) -> int:
    """Print the report for ``args.file``; 0 if every function is right, 1 otherwise.

    Bad input (no such file, not a module) raises ``FileNotFoundError``/``TypeError`` for the
    CLI's one error handler.
    """
    report = check_exercise(args.file, lang=args.lang, seed=args.seed)
    print(report)
    return 0 if report.ok else 1


def main(argv=None) -> int:
    """``gradbox exercise FILE.py [--lang ko]``: exit 1 if a function is wrong, 2 on bad input (one line on stderr)."""
    parser = argparse.ArgumentParser(prog="gradbox exercise",
                                     description="check a learner's course functions against gradbox.course")
    add_arguments(parser)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (FileNotFoundError, TypeError, ValueError) as exc:
        if args.debug:
            raise
        print(f"gradbox exercise: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
