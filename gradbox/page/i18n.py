"""The pages' and the exercise report's labels, in English and Korean.

The Korean terms are the notes' own: 순전파 (forward propagation), 역전파
(backpropagation), 캐시 (cache), 기울기 (gradient), 국소적 미분 (local
derivative), 연쇄 법칙 (chain rule), 학습률 (learning rate), 비용 (cost).

>>> from gradbox.page.i18n import t
>>> t("ko", "forward")
'순전파'
>>> t("en", "layer_n", l=2)
'layer 2'
"""
from __future__ import annotations

LANGS = ("en", "ko")

LABELS = {
    "en": {
        "html_lang": "en",
        "title_explain": "Backprop box by box",
        "title_graph": "The computational graph, gate by gate",
        "subtitle_explain": "One iteration of gradient descent on one batch of m = {m} examples, computed by gradbox's engine",
        "forward": "Forward",
        "backward": "Backward",
        "cost": "Cost",
        "update": "Update",
        "history": "Across training",
        "layer_n": "layer {l}",
        "prev": "◀ previous",
        "next": "next ▶",
        "keys_hint": "Arrow keys ← → move between the boxes; the address (#layer=2&phase=backward) links to one box.",
        "keys_hint_graph": "Arrow keys ← → move one gate; the address (#step=3) links to one step.",
        "formula": "Formula",
        "shapes": "Shapes",
        "batch_first": "batch-first (the engine)",
        "notes_layout": "the notes (n[l], m)",
        "notes_layout_conv": "the notes (n[l], m); images (m, n_H, n_W, n_C), filters (f, f, n_C_prev, n_C)",
        "cache": "Cache",
        "cache_note": "kept by the forward box for the backward box",
        "summary": "summary",
        "mean": "mean", "std": "std", "min": "min", "max": "max", "norm": "norm",
        "heatmap_of": "heatmap of {name}",
        "first_examples": "first {k} of {m} examples",
        "dead_units": "dead units (never positive on this batch): {n} of {total}",
        "saturated_units": "saturated units (|g'(z)| < 0.01 for most examples): {n} of {total}",
        "no_dead": "no dead or saturated units",
        "activation": "activation",
        "none_act": "none (logits)",
        "params": "parameters",
        "config": "configuration",
        "no_params": "no parameters: this box pools, drops or reshapes its input",
        "filters": "filters W[l] (output channel × input channel 1)",
        "feature_maps": "feature maps of example 1 (first channels)",
        "cost_value": "cost J = {value}",
        "loss_fn": "loss function",
        "cost_formula_ce": "J = −(1/m) Σᵢ log softmax(Z[L])ᵢ,yᵢ and dZ[L] = (softmax(Z[L]) − Y) / m",
        "cost_formula_bce": "J = −(1/m) Σ [y log a + (1 − y) log(1 − a)], a = σ(Z[L]), and dZ[L] = (a − Y) / m",
        "cost_formula_mse": "J = (1/(m·n)) Σ (A[L] − Y)² and dA[L] = 2 (A[L] − Y) / (m·n)",
        "cost_formula_other": "J = loss(A[L], Y); its gradient starts the backward pass",
        "backward_start": "The backward pass starts here: dJ/dJ = 1, and the loss's box gives dA[L] (dZ[L] for a loss on logits).",
        "chain_rule": "chain rule: downstream = upstream × local derivative",
        "upstream": "upstream gradient",
        "local": "local derivative",
        "downstream": "downstream gradient",
        "gradcheck": "Gradient check (analytic vs numerical, central differences in float64)",
        "gradcheck_note": "relative error ‖g − g̃‖ / (‖g‖ + ‖g̃‖) on {k} sampled entries per parameter; below 1e-7 means backprop is right",
        "gradcheck_ok": "ok", "gradcheck_fail": "FAIL",
        "update_formula": "W[l] := W[l] − α·dW[l],  b[l] := b[l] − α·db[l]",
        "learning_rate": "learning rate α = {lr}",
        "update_ratio": "‖α·dW‖ / ‖W‖",
        "update_ratio_hint": "about 1e-3 is typical; above 1e-1 the step is too large, below 1e-7 the weights barely move",
        "cost_after": "cost before the step {before}, after one step {after}",
        "loss_curve": "loss per epoch",
        "grad_norms": "gradient norm per layer and epoch",
        "other_metrics": "other metrics per epoch",
        "epoch": "epoch",
        "no_history": "no training history given",
        "shape_word": "shape",
        "dZ_relu": "dZ[l] = dA[l] * g'(Z[l]),  g'(z) = 1 if z > 0 else 0 (ReLU)",
        "dZ_sigmoid": "dZ[l] = dA[l] * σ(Z[l]) (1 − σ(Z[l]))",
        "dZ_tanh": "dZ[l] = dA[l] * (1 − tanh²(Z[l]))",
        "dZ_leaky": "dZ[l] = dA[l] * g'(Z[l]),  g'(z) = 1 if z > 0 else negative_slope",
        "dZ_none": "dZ[l] = dA[l]  (no activation: A[l] = Z[l])",
        "dZ_generic": "dZ[l] = dA[l] * g'(Z[l])",
        "linear_back": "dW[l] = (1/m) dZ[l] A[l−1]ᵀ,  db[l] = (1/m) Σ dZ[l],  dA[l−1] = W[l]ᵀ dZ[l]",
        "linear_back_note": "(the 1/m is inside dZ here: the engine's loss averages over the batch)",
        "engine_equal": "These numbers are the engine's own: dW on this page is layer.weight.grad for this batch.",
        "graph_intro": "Forward values in black on the arrows. Press next: the backward pass visits one gate at a time, right to left.",
        "gate_step": "gate {k} of {n}: {op}",
        "seed_step": "start: dL/dL = 1 at the output",
        "forward_step": "forward pass: every value computed left to right",
        "sum_note": "{name} feeds several gates: its gradient is the sum of the branches, {value}",
        "value": "value", "gradient": "gradient",
        "errors_title": "script errors",
        "json_note": "machine-readable numbers",
        "units": "units",
    },
    "ko": {
        "html_lang": "ko",
        "title_explain": "박스 하나씩 따라가는 역전파",
        "title_graph": "게이트 하나씩 따라가는 계산 그래프",
        "subtitle_explain": "미니배치 하나(m = {m})로 경사 하강법을 한 번 반복한 결과입니다. 모든 값은 gradbox 엔진이 계산했습니다",
        "forward": "순전파",
        "backward": "역전파",
        "cost": "비용",
        "update": "갱신",
        "history": "학습 과정",
        "layer_n": "{l}층",
        "prev": "◀ 이전",
        "next": "다음 ▶",
        "keys_hint": "← → 화살표 키로 박스 사이를 이동합니다. 주소(#layer=2&phase=backward)로 특정 박스를 바로 가리킬 수 있습니다.",
        "keys_hint_graph": "← → 화살표 키로 게이트 하나씩 이동합니다. 주소(#step=3)로 특정 단계를 바로 가리킬 수 있습니다.",
        "formula": "수식",
        "shapes": "형상",
        "batch_first": "배치 우선 (엔진)",
        "notes_layout": "강의 노트 (n[l], m)",
        "notes_layout_conv": "강의 노트 (n[l], m); 이미지 (m, n_H, n_W, n_C), 필터 (f, f, n_C_prev, n_C)",
        "cache": "캐시",
        "cache_note": "순전파 박스가 역전파 박스를 위해 저장해 두는 값",
        "summary": "요약",
        "mean": "평균", "std": "표준편차", "min": "최솟값", "max": "최댓값", "norm": "노름",
        "heatmap_of": "{name}의 히트맵",
        "first_examples": "예제 {m}개 중 처음 {k}개",
        "dead_units": "죽은 유닛 (이 배치에서 한 번도 양수가 아님): {total}개 중 {n}개",
        "saturated_units": "포화된 유닛 (대부분의 예제에서 |g'(z)| < 0.01): {total}개 중 {n}개",
        "no_dead": "죽은 유닛이나 포화된 유닛이 없습니다",
        "activation": "활성화 함수",
        "none_act": "없음 (로짓)",
        "params": "매개변수",
        "config": "설정",
        "no_params": "매개변수가 없는 박스입니다: 입력을 풀링하거나, 일부를 끄거나(드롭아웃), 형상만 바꿉니다",
        "filters": "필터 W[l] (출력 채널 × 입력 채널 1)",
        "feature_maps": "첫 번째 예제의 특성 맵 (앞쪽 채널)",
        "cost_value": "비용 J = {value}",
        "loss_fn": "손실 함수",
        "cost_formula_ce": "J = −(1/m) Σᵢ log softmax(Z[L])ᵢ,yᵢ 이고 dZ[L] = (softmax(Z[L]) − Y) / m",
        "cost_formula_bce": "J = −(1/m) Σ [y log a + (1 − y) log(1 − a)], a = σ(Z[L]) 이고 dZ[L] = (a − Y) / m",
        "cost_formula_mse": "J = (1/(m·n)) Σ (A[L] − Y)² 이고 dA[L] = 2 (A[L] − Y) / (m·n)",
        "cost_formula_other": "J = loss(A[L], Y); 이 기울기에서 역전파가 시작됩니다",
        "backward_start": "역전파는 여기서 시작합니다: dJ/dJ = 1 이고, 손실 박스가 dA[L](로짓에 대한 손실이면 dZ[L])을 내줍니다.",
        "chain_rule": "연쇄 법칙: 하류 기울기 = 상류 기울기 × 국소적 미분",
        "upstream": "상류 기울기",
        "local": "국소적 미분",
        "downstream": "하류 기울기",
        "gradcheck": "기울기 확인 (해석적 기울기와 수치 미분으로 구한 기울기 비교, float64 중심 차분)",
        "gradcheck_note": "매개변수마다 표본 {k}개에서 구한 상대 오차 ‖g − g̃‖ / (‖g‖ + ‖g̃‖); 1e-7보다 작으면 역전파가 맞습니다",
        "gradcheck_ok": "통과", "gradcheck_fail": "실패",
        "update_formula": "W[l] := W[l] − α·dW[l],  b[l] := b[l] − α·db[l]",
        "learning_rate": "학습률 α = {lr}",
        "update_ratio": "‖α·dW‖ / ‖W‖",
        "update_ratio_hint": "보통 1e-3 안팎입니다. 1e-1보다 크면 한 걸음이 너무 크고, 1e-7보다 작으면 가중치가 거의 움직이지 않습니다",
        "cost_after": "갱신 전 비용 {before}, 한 번 갱신한 뒤 비용 {after}",
        "loss_curve": "에폭별 손실",
        "grad_norms": "층별·에폭별 기울기 노름",
        "other_metrics": "에폭별 기타 지표",
        "epoch": "에폭",
        "no_history": "학습 기록이 없습니다",
        "shape_word": "형상",
        "dZ_relu": "dZ[l] = dA[l] * g'(Z[l]),  z > 0 이면 g'(z) = 1, 아니면 0 (ReLU)",
        "dZ_sigmoid": "dZ[l] = dA[l] * σ(Z[l]) (1 − σ(Z[l]))",
        "dZ_tanh": "dZ[l] = dA[l] * (1 − tanh²(Z[l]))",
        "dZ_leaky": "dZ[l] = dA[l] * g'(Z[l]),  z > 0 이면 g'(z) = 1, 아니면 negative_slope",
        "dZ_none": "dZ[l] = dA[l]  (활성화 함수 없음: A[l] = Z[l])",
        "dZ_generic": "dZ[l] = dA[l] * g'(Z[l])",
        "linear_back": "dW[l] = (1/m) dZ[l] A[l−1]ᵀ,  db[l] = (1/m) Σ dZ[l],  dA[l−1] = W[l]ᵀ dZ[l]",
        "linear_back_note": "(여기서는 1/m이 dZ 안에 들어 있습니다: 엔진의 손실이 배치 평균이기 때문입니다)",
        "engine_equal": "이 페이지의 숫자는 엔진이 계산한 값 그대로입니다: 여기 나온 dW는 이 배치에 대한 layer.weight.grad입니다.",
        "graph_intro": "화살표 위의 검은 숫자는 순전파 값입니다. '다음'을 누르면 역전파가 오른쪽에서 왼쪽으로 게이트를 하나씩 지나갑니다.",
        "gate_step": "게이트 {n}개 중 {k}번째: {op}",
        "seed_step": "시작: 출력에서 dL/dL = 1",
        "forward_step": "순전파: 왼쪽에서 오른쪽으로 모든 값을 계산합니다",
        "sum_note": "{name}은(는) 여러 게이트로 들어가므로 기울기는 갈래들의 합 {value}입니다",
        "value": "값", "gradient": "기울기",
        "errors_title": "스크립트 오류",
        "json_note": "기계가 읽을 수 있는 숫자",
        "units": "유닛",
    },
}


def check_lang(lang, who: str) -> str:
    """``lang`` if it is one of ``LANGS``; ``ValueError`` naming the argument otherwise."""
    if lang not in LANGS:
        raise ValueError(f"{who}(lang): expected one of {LANGS}, received {lang!r}")
    return lang


def t(lang: str, key: str, **kw) -> str:
    """The label ``key`` in ``lang``, formatted with ``kw``."""
    text = LABELS[lang][key]
    return text.format(**kw) if kw else text


# --- explain's text report and the training curves (the same terms as the pages) -------------
_TEXT = {
    "en": {
        "report_head": "explain: one forward + backward on a batch of m = {m}, {loss_name} = {loss:.6g}, lr = {lr:g}",
        "report_source": "model: {source}; data: {what}, batch of {m}",
        "report_shapes": "shapes (forward)",
        "report_layer": "layer",
        "report_b_notes": "b[l] notes",
        "report_za_batch": "Z, A batch-first",
        "report_za_notes": "Z, A notes (n[l], m)",
        "report_layer_shapes": "layer shapes (forward): the engine's NCHW and the course's (m, n_H, n_W, n_C);",
        "report_flat_notes": "flat activations (m, n) are (n, m) in the notes",
        "report_out_nchw": "output NCHW (m, C, H, W)",
        "report_out_course": "course (m, n_H, n_W, n_C)",
        "report_w_engine": "W engine",
        "report_w_course": "W course (f, f, n_C_prev, n_C)",
        "report_w_engine_l": "W[l] engine",
        "report_za_course": "Z, A notes/course",
        "report_grad_shapes": "gradient shapes (batch-first)",
        "report_same_shape": "each gradient has its variable's shape",
        "report_ok": "ok",
        "report_fail": "FAIL",
        "report_grad_sizes": "gradient sizes (backward)",
        "report_units": "units",
        "report_dims": "dims",
        "report_dead": "dead ReLU {share:.0%}",
        "report_saturated": "saturated {share:.0%}",
        "report_how": "backward: dZ[l] = dA[l] * g'(Z[l]) -- upstream gradient × local derivative (chain rule); "
                      "dW[l], db[l], dA[l-1] come from dZ[l] and the cache (A[l-1], Z[l], W[l]) of the forward pass",
        "report_rules": "dimension rules dW ~ W, db ~ b, dZ ~ Z, dA ~ A: ",
        "report_rules_hold": "all hold",
        "report_rules_violated": "VIOLATED (see warnings)",
        "report_warnings": "warnings:",
        "report_no_warnings": "no warnings: gradient sizes look healthy",
        "warn_dims": "layer {l}: dimension rule(s) {bad} do not hold (W {W}, dW {dW}, Z {Z}, dZ {dZ})",
        "warn_not_finite": "layer {l}: exploding gradients -- ‖dW‖ is not finite; lower the learning rate, "
                           "check the inputs are scaled, use a stable loss on logits",
        "warn_vanish": "layer {l}: vanishing gradients -- ‖dW‖/‖W‖ = {ratio:.1e} < {limit:g}; "
                       "try He initialisation with ReLU, fewer sigmoid/tanh layers, or scaled inputs",
        "warn_explode": "layer {l}: exploding gradients -- ‖dW‖/‖W‖ = {ratio:.1e} > {limit:g}; "
                        "try a smaller initialisation scale, a lower learning rate or gradient clipping",
        "warn_update_high": "layer {l}: lr·‖dW‖/‖W‖ = {ratio:.1e} > {limit:g}: one step changes the weights by "
                            "more than 10% -- lower the learning rate (now {lr:g}); ~1e-3 is typical",
        "warn_update_low": "layer {l}: lr·‖dW‖/‖W‖ = {ratio:.1e} < {limit:g}: the weights will barely move -- "
                           "raise the learning rate (now {lr:g})",
        "warn_dead": "layer {l}: {share:.0%} of ReLU units are dead (never positive on this batch); they get no "
                     "gradient -- try He initialisation, a smaller learning rate or LeakyReLU",
        "warn_saturated": "layer {l}: {share:.0%} of {act} outputs are saturated, where g'(z) ≈ 0 -- scale the "
                          "inputs, use Xavier initialisation or ReLU",
        "warn_vanish_across": "vanishing gradients across layers: ‖dW‖ falls {factor:.3g}× from layer {last} to "
                              "layer {first} -- try He/Xavier initialisation, ReLU instead of sigmoid/tanh, or "
                              "fewer layers",
        "warn_explode_across": "exploding gradients across layers: ‖dW‖ grows {factor:.3g}× from layer {last} to "
                               "layer {first} -- try a smaller initialisation scale or a lower learning rate",
        "plot_loss": "loss (cross-entropy)",
        "plot_accuracy": "accuracy",
        "plot_epoch": "epoch",
        "plot_training": "training",
        "plot_validation": "validation",
        "plot_best": "best validation {v:.3f} (epoch {e})",
        "plot_test": "test {v:.3f} (weights of epoch {e})",
        "filters_about": " -- test sample 0 (class {label})",
        "filters_first": "first layer: Conv2d({i}→{o}) {kh}×{kw} filters -- {note}",
        "filters_rgb": "{n} of {total} filters as RGB (each scaled to its own range)",
        "filters_gray": "{n} of {total} filters; gray = 0, white > 0, black < 0",
        "filters_pairs": "{n} of {total} (filter, input channel) pairs, filter by filter; gray = 0, white > 0, "
                         "black < 0",
        "filters_sample": "the sample (standardised, {h}×{w}, 1 channel)",
        "filters_sample_n": "the sample (standardised, {h}×{w}, {c} channels)",
        "filters_maps": "feature maps after {label}: {n} maps of {h}×{w} (one colour scale, {lo:.2g} to {hi:.2g})",
        "filters_maps_cut": "feature maps after {label}: {n} of {total} maps of {h}×{w} (one colour scale, "
                            "{lo:.2g} to {hi:.2g})",
    },
    "ko": {
        "report_head": "explain: 미니배치 하나(m = {m})로 순전파와 역전파를 한 번씩 계산했습니다. "
                       "{loss_name} = {loss:.6g}, 학습률 = {lr:g}",
        "report_source": "모델: {source}; 데이터: {what}, 미니배치 크기 {m}",
        "report_shapes": "형상 (순전파)",
        "report_layer": "층",
        "report_b_notes": "b[l] 노트",
        "report_za_batch": "Z, A 배치 우선",
        "report_za_notes": "Z, A 노트 (n[l], m)",
        "report_layer_shapes": "층별 출력 형상 (순전파): 엔진의 NCHW와 강좌의 (m, n_H, n_W, n_C)",
        "report_flat_notes": "평탄한 활성화 (m, n)은 노트에서 (n, m)입니다",
        "report_out_nchw": "출력 NCHW (m, C, H, W)",
        "report_out_course": "강좌 (m, n_H, n_W, n_C)",
        "report_w_engine": "W 엔진",
        "report_w_course": "W 강좌 (f, f, n_C_prev, n_C)",
        "report_w_engine_l": "W[l] 엔진",
        "report_za_course": "Z, A 노트/강좌",
        "report_grad_shapes": "기울기의 형상 (배치 우선)",
        "report_same_shape": "기울기는 저마다 자기 변수와 형상이 같습니다",
        "report_ok": "통과",
        "report_fail": "실패",
        "report_grad_sizes": "기울기의 크기 (역전파)",
        "report_units": "유닛",
        "report_dims": "차원",
        "report_dead": "죽은 ReLU {share:.0%}",
        "report_saturated": "포화 {share:.0%}",
        "report_how": "역전파: dZ[l] = dA[l] * g'(Z[l]) -- 상류 기울기 × 국소적 미분 (연쇄 법칙). "
                      "dW[l], db[l], dA[l-1]은 dZ[l]과 순전파가 저장해 둔 캐시 (A[l-1], Z[l], W[l])로 구합니다",
        "report_rules": "차원 규칙 dW ~ W, db ~ b, dZ ~ Z, dA ~ A: ",
        "report_rules_hold": "모두 성립합니다",
        "report_rules_violated": "성립하지 않습니다 (경고를 보세요)",
        "report_warnings": "경고:",
        "report_no_warnings": "경고 없음: 기울기 크기가 정상입니다",
        "warn_dims": "{l}층: 차원 규칙 {bad}이(가) 성립하지 않습니다 (W {W}, dW {dW}, Z {Z}, dZ {dZ})",
        "warn_not_finite": "{l}층: 기울기 폭발 -- ‖dW‖가 유한한 값이 아닙니다. 학습률을 낮추고, 입력의 스케일을 "
                           "확인하고, 로짓에 대한 안정적인 손실 함수를 쓰세요",
        "warn_vanish": "{l}층: 기울기 소실 -- ‖dW‖/‖W‖ = {ratio:.1e} < {limit:g}. ReLU와 He 초기화를 쓰거나, "
                       "시그모이드/tanh 층을 줄이거나, 입력의 스케일을 맞춰 보세요",
        "warn_explode": "{l}층: 기울기 폭발 -- ‖dW‖/‖W‖ = {ratio:.1e} > {limit:g}. 초기화 스케일을 줄이거나, "
                        "학습률을 낮추거나, 기울기 클리핑을 써 보세요",
        "warn_update_high": "{l}층: 학습률·‖dW‖/‖W‖ = {ratio:.1e} > {limit:g}: 한 번의 갱신으로 가중치가 10% 넘게 "
                            "바뀝니다 -- 학습률(지금 {lr:g})을 낮추세요. 보통 1e-3 정도입니다",
        "warn_update_low": "{l}층: 학습률·‖dW‖/‖W‖ = {ratio:.1e} < {limit:g}: 가중치가 거의 움직이지 않습니다 -- "
                           "학습률(지금 {lr:g})을 높이세요",
        "warn_dead": "{l}층: ReLU 유닛의 {share:.0%}가 죽어 있습니다 (이 배치에서 한 번도 양수가 아님). 이 유닛들은 "
                     "기울기를 받지 못합니다 -- He 초기화, 더 작은 학습률이나 LeakyReLU를 써 보세요",
        "warn_saturated": "{l}층: {act} 출력의 {share:.0%}가 포화되어 g'(z) ≈ 0 입니다 -- 입력의 스케일을 맞추거나, "
                          "Xavier 초기화나 ReLU를 써 보세요",
        "warn_vanish_across": "층을 거치며 기울기 소실: ‖dW‖가 {last}층에서 {first}층으로 가며 {factor:.3g}배 "
                              "줄어듭니다 -- He/Xavier 초기화, 시그모이드/tanh 대신 ReLU, 또는 더 적은 층을 써 보세요",
        "warn_explode_across": "층을 거치며 기울기 폭발: ‖dW‖가 {last}층에서 {first}층으로 가며 {factor:.3g}배 "
                               "커집니다 -- 초기화 스케일을 줄이거나 학습률을 낮춰 보세요",
        "plot_loss": "손실 (교차 엔트로피)",
        "plot_accuracy": "정확도",
        "plot_epoch": "에폭",
        "plot_training": "훈련",
        "plot_validation": "검증",
        "plot_best": "최고 검증 정확도 {v:.3f} (에폭 {e})",
        "plot_test": "테스트 {v:.3f} (에폭 {e}의 가중치)",
        "filters_about": " -- 테스트 샘플 0 (클래스 {label})",
        "filters_first": "첫 번째 층: Conv2d({i}→{o}) {kh}×{kw} 필터 -- {note}",
        "filters_rgb": "필터 {total}개 중 {n}개, RGB로 (필터마다 자기 범위로 맞춤)",
        "filters_gray": "필터 {total}개 중 {n}개; 회색 = 0, 흰색 > 0, 검은색 < 0",
        "filters_pairs": "(필터, 입력 채널) 쌍 {total}개 중 {n}개, 필터 순서로; 회색 = 0, 흰색 > 0, 검은색 < 0",
        "filters_sample": "샘플 (표준화, {h}×{w}, 채널 1개)",
        "filters_sample_n": "샘플 (표준화, {h}×{w}, 채널 {c}개)",
        "filters_maps": "{label} 다음의 특성 맵: {h}×{w} 맵 {n}개 (하나의 색 척도, {lo:.2g} ~ {hi:.2g})",
        "filters_maps_cut": "{label} 다음의 특성 맵: {h}×{w} 맵 {total}개 중 {n}개 (하나의 색 척도, "
                            "{lo:.2g} ~ {hi:.2g})",
    },
}
for _lang in LANGS:
    LABELS[_lang].update(_TEXT[_lang])
del _lang
