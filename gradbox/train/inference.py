"""Inference with a trained network: ``predict``, ``predict_proba``, ``predict_logits`` and ``evaluate``.

All run the model in eval mode (``eval_mode``), without recording a graph, on inputs of any
rank: ``X`` of shape (N, ...) — (N, features) for an MLP, (N, C, H, W) for a CNN.
"""
from __future__ import annotations

import contextlib
import numbers

import numpy as np

from .. import nn
from ..errors import NonFiniteError, all_finite, first_nonfinite
from ..function import no_grad
from ..tensor import Tensor

__all__ = ["eval_mode", "evaluate", "predict", "predict_logits", "predict_proba"]

# NOTE: samples may be vectors (N, d), sequences (N, C, L), images (N, C, H, W) or volumes.
_RANKS = (2, 3, 4, 5)


@contextlib.contextmanager
def eval_mode(model):
    """Put every module of ``model`` in eval mode for the block, then restore each one's own mode.

    >>> import gradbox as gb
    >>> m = gb.nn.Sequential(gb.nn.Dropout(0.5))
    >>> with eval_mode(m):
    ...     m.training
    False
    >>> m.training
    True
    """
    # TODO(h1): replace with gradbox.nn.eval_mode once it is on main (the same semantics).
    was = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in was:
            object.__setattr__(m, "training", mode)


def _model_dtype(model):
    for p in model.parameters():
        return p.dtype
    raise ValueError("model: expected a model with parameters, received one with none")


def _is_regression(loss_fn) -> bool:
    return isinstance(loss_fn, nn.MSELoss)


def _validate(X, y, loss_fn, dtype, name="X"):
    """Checked, contiguous X (N, ...) in the model's dtype and y (int labels or float targets)."""
    from ..data import check_array, check_X_y

    shape = None
    if getattr(X, "ndim", 2) > 2:  # NOTE: samples with a shape (images): checked flat, returned as they came
        X = check_array(X, name, ndim=_RANKS)
        shape = X.shape
        X = X.reshape(X.shape[0], -1)
    # NOTE: converting in check_X_y refuses values beyond the model dtype's range (1e39 -> float32 inf).
    X, y = check_X_y(X, y, classification=not _is_regression(loss_fn), dtype=dtype)
    X = np.ascontiguousarray(X if shape is None else X.reshape(shape))
    y = np.ascontiguousarray(y, dtype=dtype if _is_regression(loss_fn) else np.int64)
    return X, y


def _labels_from_logits(out: np.ndarray) -> np.ndarray:
    if out.ndim == 1 or out.shape[1] == 1:
        return (out.reshape(-1) > 0).astype(np.int64)
    return out.argmax(axis=1)


def _resolve_loss(loss):
    if loss is None or loss == "cross_entropy":
        return nn.CrossEntropyLoss()
    if isinstance(loss, str):
        table = {"bce": nn.BCEWithLogitsLoss, "bce_with_logits": nn.BCEWithLogitsLoss, "mse": nn.MSELoss}
        if loss not in table:
            raise ValueError(f"loss: expected 'cross_entropy', 'bce' or 'mse' or a callable, received {loss!r}")
        return table[loss]()
    if not callable(loss):
        raise TypeError(f"loss: expected a callable loss(output, target), received {type(loss).__name__}")
    return loss


def _as_input(model, X, name="X"):
    from ..data import check_array

    X = check_array(X, name=name, ndim=_RANKS, dtype=_model_dtype(model))
    return np.ascontiguousarray(X)


def _check_batch_size(batch_size):
    if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size <= 0:
        raise ValueError(f"batch_size: expected a positive int, received {batch_size!r}")


def predict_logits(model, X, batch_size=1024, _checked=False) -> np.ndarray:
    """Raw outputs of ``model`` in eval mode, without recording a graph.

    Raises ``NonFiniteError`` (a ValueError) when an output is NaN or inf, e.g. for inputs so large
    that the logits overflow.
    """
    if not _checked:
        X = _as_input(model, X)
        _check_batch_size(batch_size)
    outs = []
    # NOTE: an overflow shows up as a non-finite output, refused below with a clear message.
    with eval_mode(model), no_grad(), np.errstate(over="ignore", invalid="ignore"):
        for i in range(0, X.shape[0], batch_size):
            outs.append(model(Tensor(X[i:i + batch_size])).data)
    if not outs:
        raise ValueError("X: expected at least one sample, received 0")
    out = np.concatenate(outs, axis=0)
    if out.dtype.kind == "f" and not all_finite(out):
        raise NonFiniteError(f"model output: expected finite values, received {first_nonfinite(out)} "
                             "(inputs far larger than the training data, or diverged weights?)")
    return out


def probabilities(z: np.ndarray) -> np.ndarray:
    """Class probabilities from logits: softmax, or sigmoid for one output (as two columns)."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 1 or z.shape[1] == 1:
        with np.errstate(over="ignore"):  # NOTE: exp(-z) overflows to inf for z << 0, giving p = 0 exactly
            p = 1.0 / (1.0 + np.exp(-z.reshape(-1)))
        return np.stack([1 - p, p], axis=1)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict_proba(model, X, batch_size=1024) -> np.ndarray:
    """Class probabilities (softmax of the logits; sigmoid for one output)."""
    return probabilities(predict_logits(model, X, batch_size))


def predict(model, X, batch_size=1024) -> np.ndarray:
    """Predicted class labels (int64), in eval mode."""
    return _labels_from_logits(predict_logits(model, X, batch_size))


def evaluate(model, X, y, loss=None, batch_size=1024, confusion=True, n_classes=None, _checked=False) -> dict:
    """Loss, accuracy and confusion matrix (rows: true class, columns: predicted).

    Returns ``dict(loss=float, accuracy=float, confusion_matrix=ndarray (C, C), n=int)``.
    """
    loss_fn = _resolve_loss(loss)
    if not _checked:
        _check_batch_size(batch_size)
        if n_classes is not None and (not isinstance(n_classes, numbers.Integral) or isinstance(n_classes, bool)
                                      or n_classes < 1):
            raise ValueError(f"n_classes: expected a positive int or None, received {n_classes!r}")
        X, y = _validate(X, y, loss_fn, _model_dtype(model), name="X")
    out = predict_logits(model, X, batch_size, _checked=True)
    total = 0.0
    with no_grad():
        for i in range(0, X.shape[0], batch_size):
            part = out[i:i + batch_size]
            total += float(loss_fn(Tensor(part), y[i:i + batch_size]).data) * part.shape[0]
    result = {"loss": total / X.shape[0], "n": int(X.shape[0])}
    if not _is_regression(loss_fn):
        pred = _labels_from_logits(out)
        result["accuracy"] = float((pred == y).mean())
        if confusion:
            c = n_classes or (2 if out.ndim == 1 or out.shape[1] == 1 else out.shape[1])
            c = max(c, int(y.max()) + 1, int(pred.max()) + 1)
            cm = np.zeros((c, c), dtype=np.int64)
            np.add.at(cm, (y, pred), 1)
            result["confusion_matrix"] = cm
    return result


# --------------------------------------------------------------------------------------
# A model file's own preprocessing (used by ModelFile and the CLI)
# --------------------------------------------------------------------------------------
def _metadata(mf) -> dict:
    return mf.metadata if isinstance(mf.metadata, dict) else {}


def model_n_outputs(mf):
    """Output width of the model's last layer with ``out_features`` (None if unknown)."""
    for m in reversed(list(mf.model.modules())):
        if hasattr(m, "out_features"):
            return int(m.out_features)
    return None


def model_classes(mf) -> list:
    """The recorded class labels, or ``0..C-1`` when the file records none (or a mismatching list)."""
    classes = _metadata(mf).get("classes")
    n_out = model_n_outputs(mf)
    n = 2 if n_out == 1 else n_out
    if isinstance(classes, list) and classes and (n is None or len(classes) == n):
        return list(classes)
    return list(range(n or 0))


def model_input_shape(mf):
    """The per-sample input shape: recorded ``input_shape``, else the first ``Linear``'s width, else None."""
    shape = _metadata(mf).get("input_shape")
    if isinstance(shape, list) and shape and all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                 for v in shape):
        return tuple(shape)
    for m in mf.model.modules():
        if isinstance(m, nn.Linear):
            return (int(m.in_features),)
        if type(m).__name__.startswith("Conv"):
            return None
    return None


def model_normalizer(mf, n_features):
    """The stored ``Standardizer`` (``norm.mean``/``norm.scale``), checked against ``n_features``; or None."""
    from ..data import Standardizer

    mean, scale = mf.arrays.get("norm.mean"), mf.arrays.get("norm.scale")
    if mean is None or scale is None:
        return None
    try:
        norm = Standardizer.from_params(mean, scale)
    except (ValueError, TypeError) as exc:  # "mean: expected finite values, ..." -> "MODEL: norm.mean: ..."
        raise ValueError(f"MODEL: norm.{exc}") from None
    if n_features is not None and norm.n_features_ != n_features:
        # NOTE: otherwise reported as the data's fault ("X: expected 3 features (as in fit)").
        raise ValueError(f"MODEL: expected norm.mean and norm.scale of {n_features} features (the model's input), "
                         f"received {norm.n_features_}")
    return norm


def model_inputs(mf, X, where="X"):
    """Raw samples -> the model's input: the stored standardisation, the input shape and the model's dtype.

    ``X`` is (N, features) or already shaped (N, C, H, W); the features are counted flat.
    """
    from ..data import check_array

    shape = model_input_shape(mf)
    flat = shape is not None and len(shape) == 1
    X = check_array(X, "X", ndim=2 if flat else _RANKS)
    width = None if shape is None else int(np.prod(shape))
    if width is not None:
        got = int(np.prod(X.shape[1:]))
        if got != width:
            raise ValueError(f"{where}: expected {width} features (as the model was trained on), received {got}")
    norm = model_normalizer(mf, width)
    n = X.shape[0]
    if norm is not None:
        X = norm.transform(X.reshape(n, -1).astype(np.float64))
    if shape is not None:
        X = X.reshape((n, *shape))
    # NOTE: check_array's conversion refuses values beyond the model dtype's range instead of making inf.
    return np.ascontiguousarray(check_array(X, where, ndim=None, dtype=_model_dtype(mf.model)))


def evaluate_model_file(mf, X, y, where="X") -> dict:
    """``evaluate`` of a model file on raw samples, with its preprocessing and class count."""
    return evaluate_model_inputs(mf, model_inputs(mf, X, where), y, where)


def evaluate_model_inputs(mf, X, y, where="X") -> dict:
    """``evaluate`` of a model file on inputs already preprocessed by ``model_inputs``."""
    y = np.asarray(y)
    n_out = model_n_outputs(mf)
    if n_out and y.size and y.dtype.kind in "iu" and int(np.max(y)) >= max(n_out, 2):
        raise ValueError(f"{where}: expected labels below {max(n_out, 2)} (the model's classes), "
                         f"received {int(np.max(y))}")
    return evaluate(mf.model, X, y, n_classes=n_out)
