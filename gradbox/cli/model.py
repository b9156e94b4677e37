"""``gradbox evaluate``, ``predict``, ``gradcheck`` and ``info``: commands that read a model file.

The model file's own preprocessing (stored standardisation, input shape, classes) is applied by
``ModelFile.preprocess`` / ``.evaluate`` / ``.predict_proba``, the same code Python users call.
"""
from __future__ import annotations

import json
import math
import os
import sys

import numpy as np

from ..train import run
from ..train.inference import evaluate_model_inputs, model_input_shape
from .main import CLIError, add_common, usage_error

__all__ = ["cmd_evaluate", "cmd_gradcheck", "cmd_info", "cmd_predict", "load_model_file", "register"]


def _add_dataset_flags(p, dataset_help):
    p.add_argument("--dataset", metavar="NAME|PATH", help=dataset_help)
    p.add_argument("--target", metavar="COL", help="label column of a CSV file")
    p.add_argument("--n-samples", type=int, help="samples of a synthetic dataset")
    p.add_argument("--noise", type=float, help="noise of a synthetic dataset")


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="loss, accuracy and confusion matrix of a model",
                       description="Evaluate MODEL on the test part of the dataset it was trained on (same split "
                                   "and seed), or on all of --dataset.")
    p.add_argument("model", metavar="MODEL")
    _add_dataset_flags(p, "evaluate on all of this dataset instead (its own test set if it has one)")
    add_common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="predict classes of new samples",
                       description="Write one row per sample: the predicted class and each class's probability. "
                                   "The stored normalisation is applied.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--input", required=True, metavar="FILE", help=".csv (header optional) or .npz (array X)")
    p.add_argument("--output", metavar="FILE.csv", help="write here (atomically) instead of stdout")
    add_common(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("gradcheck", help="compare backprop gradients with numerical ones",
                       description="Run gradbox.check_gradients (float64 central differences) on a small batch. "
                                   "A parameter passes when its relative error is below 1e-7, or when its "
                                   "disagreement is within the measured numerical error of the differences "
                                   "(rounding, shown as 'ok (rounding)'); exit 1 only for a real disagreement "
                                   "(FAIL: a wrong gradient).")
    p.add_argument("model", metavar="MODEL", nargs="?", help="a model file (default: a fresh MLP)")
    _add_dataset_flags(p, "data for the batch (default: the model's dataset, or digits)")
    p.add_argument("--hidden", default="32,16", metavar="N,N", help="hidden sizes of a fresh MLP (default 32,16)")
    p.add_argument("--activation", default="tanh", help="activation of a fresh MLP (default tanh: no kinks)")
    p.add_argument("--batch", type=int, default=8, help="samples in the batch (default 8)")
    p.add_argument("--max-entries", type=int, default=200, help="check at most N entries per parameter "
                                                               "(default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fresh model and of the sampled entries")
    add_common(p)
    p.set_defaults(func=cmd_gradcheck)

    p = sub.add_parser("info", help="layers, shapes and parameter counts of a model file")
    p.add_argument("model", metavar="MODEL")
    add_common(p)
    p.set_defaults(func=cmd_info)


def load_model_file(path):
    from ..io import load_model

    if not os.path.exists(path):
        raise CLIError(f"MODEL: no such file {path!r}")
    if os.path.isdir(path):
        candidate = os.path.join(path, "model.gbx")
        if os.path.isfile(candidate):
            path = candidate
        else:
            raise CLIError(f"MODEL: expected a model file, received the folder {path!r} (no model.gbx in it)")
    mf = load_model(path)
    _check_metadata(mf.metadata, path)
    return mf


def _check_metadata(meta, path):
    """Type-check the metadata fields the commands read.

    NOTE: save_model takes any JSON metadata, so a hand-made model file may hold e.g. ``classes: 5``;
    without this check the commands failed with raw Python messages ("object of type 'int' has no len()").
    """
    if not isinstance(meta, dict):
        return

    def check(key, value, ok, expected):
        if value is not None and not ok(value):
            raise CLIError(f"MODEL {path}: expected metadata {key!r} to be {expected}, received "
                           f"{type(value).__name__} {json.dumps(value, default=str)[:60]}")

    scalar = (str, int, float)
    check("classes", meta.get("classes"), lambda v: isinstance(v, list) and all(isinstance(c, scalar) for c in v),
          "a list of class names")
    check("feature_names", meta.get("feature_names"),
          lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v), "a list of column names")
    check("hyperparameters", meta.get("hyperparameters"), lambda v: isinstance(v, dict), "a table")
    check("test_accuracy", meta.get("test_accuracy"), run._is_num, "a number")
    # NOTE: sizes the metadata declares are checked against the documented limits before anything of
    # that size exists (a recorded n_samples of 1e10 would otherwise allocate 37 GiB in evaluate).
    check("classes", meta.get("classes"), lambda v: len(v) <= run.MAX_CLASSES,
          f"at most {run.MAX_CLASSES:,} classes")
    check("input_shape", meta.get("input_shape"),
          lambda v: isinstance(v, list) and 0 < len(v) <= 4 and all(run._is_int(d) and 0 < d <= 1 << 20 for d in v)
          and int(np.prod(v)) <= 1 << 24, "a list of up to 4 positive sizes (at most 2**24 values)")
    ds = meta.get("dataset")
    check("dataset", ds, lambda v: isinstance(v, dict), "a table")
    if isinstance(ds, dict):
        check("dataset.source", ds.get("source"), lambda v: isinstance(v, str) and v != "" and len(v) < 4096,
              "a dataset name or path")
        check("dataset.target", ds.get("target"), lambda v: isinstance(v, str), "a column name")
        check("dataset.options", ds.get("options"), lambda v: isinstance(v, dict) and set(v) <= set(run.DATASET_OPTIONS),
              f"a table of loader options ({', '.join(run.DATASET_OPTIONS)})")
        opts = ds.get("options") if isinstance(ds.get("options"), dict) else {}
        check("dataset.options.n_samples", opts.get("n_samples"),
              lambda v: run._is_int(v) and 0 < v <= run.MAX_SYNTHETIC_SAMPLES,
              f"a positive int up to {run.MAX_SYNTHETIC_SAMPLES:,}")
        check("dataset.options.noise", opts.get("noise"), lambda v: run._is_num(v) and 0 <= v <= 1e6,
              "a non-negative number")
        for key in ("val_split", "test_split"):
            check(f"dataset.{key}", ds.get(key), lambda v: run._is_num(v) and 0 <= v < 1, "a fraction in [0, 1)")
        check("dataset.seed", ds.get("seed"), lambda v: run._is_int(v) and 0 <= v < 2 ** 63, "a non-negative int")


def _eval_data(args, mf):
    """(X, y, description) for evaluate/gradcheck: the recorded test part, or a whole given dataset."""
    rec = mf.metadata.get("dataset") if isinstance(mf.metadata, dict) else None
    options = {k: getattr(args, k, None) for k in run.DATASET_OPTIONS}
    if args.dataset is None:
        if not isinstance(rec, dict) or "source" not in rec:
            raise usage_error("--dataset: the model file records no dataset; pass --dataset NAME|PATH")
        opts = {**rec.get("options", {}), **{k: v for k, v in options.items() if v is not None}}
        ds = _load_recorded(rec, opts, getattr(args, "model", "MODEL"), images=_takes_images(mf))
        parts = run.split(ds, rec.get("val_split", 0.15), rec.get("test_split", 0.15), rec.get("seed", 0))
        X, y = parts[4], parts[5]
        if X is None or len(X) == 0:
            X, y, what = parts[2], parts[3], "validation part"
            if X is None or len(X) == 0:
                raise usage_error("--dataset: the model was trained without test or validation data "
                             "(--test-split 0 --val-split 0); pass --dataset NAME|PATH to evaluate on")
        else:
            what = "test set" if ds.test is not None else "test part"
        return X, y, f"the {what} of {ds.name} ({len(y)} samples, seed {rec.get('seed', 0)})", ds
    ds = run.load_dataset(args.dataset, args.target, options, min_classes=1, images=_takes_images(mf))
    if ds.test is not None:
        return ds.test[0], ds.test[1], f"the test set of {ds.name} ({len(ds.test[1])} samples)", ds
    return ds.X, ds.y, f"all of {ds.name} ({len(ds.y)} samples)", ds


def _load_recorded(rec, opts, model_path, images=False):
    """The dataset a model file's metadata names, with errors that never quote the file's content.

    NOTE: the recorded ``source`` is chosen by whoever wrote the model file and may name any local
    file; a loader's message can quote its content (a bad CSV cell), so only the path and the kind of
    problem are reported.
    """
    source = rec["source"]
    try:
        return run.load_dataset(source, rec.get("target"), opts, images=images)
    except MemoryError:
        raise CLIError(f"MODEL {model_path}: its recorded dataset {source!r} is too large to load; pass "
                       "--dataset NAME|PATH") from None
    except (ValueError, TypeError, OSError, KeyError, IndexError) as exc:
        if isinstance(exc, FileNotFoundError) or (isinstance(exc, run.RunError) and "no such file" in str(exc)):
            problem = "no such file"
        elif isinstance(exc, OSError):
            problem = exc.strerror or type(exc).__name__
        else:
            problem = f"not a dataset gradbox can train on ({type(exc).__name__})"
        raise CLIError(f"MODEL {model_path}: its recorded dataset {source!r} could not be loaded: {problem}; pass "
                       "--dataset NAME|PATH to evaluate on") from None


def _takes_images(mf):
    """Whether the model takes (C, H, W) images, so that data is loaded as NCHW images (issue 13)."""
    shape = model_input_shape(mf)
    return shape is not None and len(shape) == 3


def _align_labels(ds, model_classes, y, where="--dataset"):
    """Re-encode ``y`` so that class names mean what they meant in training.

    NOTE: a CSV's string labels are numbered in sorted order of the labels *present*, so a file
    holding only some classes would otherwise shift them.
    """
    if ds.classes is None or not model_classes:
        return y
    mine, theirs = [str(c) for c in ds.classes], [str(c) for c in model_classes]
    if mine == theirs:
        return y
    unknown = [c for c in mine if c not in theirs]
    if unknown:
        raise CLIError(f"{where}: class {unknown[0]!r} is not one of the model's classes {theirs[:10]}")
    table = np.array([theirs.index(c) for c in mine], dtype=np.int64)
    return table[np.asarray(y, dtype=np.int64)]


def _format_confusion(cm, classes):
    names = [str(c) for c in classes] if classes and len(classes) == len(cm) else [str(i) for i in range(len(cm))]
    w = max(4, max(len(n) for n in names), len(str(int(cm.max()))) + 1)
    lines = ["confusion matrix (rows: true, columns: predicted)",
             " " * (w + 2) + "".join(f"{n:>{w + 1}}" for n in names)]
    for n, row in zip(names, cm):
        lines.append(f"{n:>{w}}  " + "".join(f"{int(v):>{w + 1}}" for v in row))
    return "\n".join(lines)


def cmd_evaluate(args) -> int:
    mf = load_model_file(args.model)
    X, y, what, ds = _eval_data(args, mf)
    try:
        X = mf.preprocess(X, "--dataset")
        y = _align_labels(ds, mf.metadata.get("classes") if isinstance(mf.metadata, dict) else None, y)
        res = evaluate_model_inputs(mf, X, y, where="--dataset")
    except ValueError as exc:
        if args.dataset is not None:
            raise
        # NOTE: data from the path the model file records: name the problem, never quote the content.
        source = mf.metadata["dataset"]["source"]
        raise CLIError(f"MODEL {args.model}: its recorded dataset {source!r} does not fit the model "
                       f"({type(exc).__name__}); pass --dataset NAME|PATH to evaluate on") from None
    correct = int(round(res["accuracy"] * res["n"]))
    print(f"evaluated {args.model} on {what}")
    print(f"loss      {res['loss']:.4f}")
    print(f"accuracy  {res['accuracy']:.4f} ({correct}/{res['n']})")
    print(_format_confusion(res["confusion_matrix"], mf.classes))
    return 0


def _read_input(path, feature_names, n_features):
    """Features from a .csv (header optional) or .npz (array X) file, as float64."""
    if not os.path.exists(path):
        raise CLIError(f"--input: no such file {path!r}")
    low = path.lower()
    if low.endswith(".npz"):
        return _read_npz(path)
    return _read_csv(path, feature_names, n_features)


def _npz_array(path):
    from ..datasets._files import open_npz

    with open_npz(path) as z:
        if not isinstance(z, np.lib.npyio.NpzFile):  # NOTE: an .npy file, whatever its name
            raise CLIError(f"--input {path}: expected an .npz file with an array X, received a single .npy array")
        keys = list(z.keys())
        key = "X" if "X" in keys else (keys[0] if len(keys) == 1 else None)
        if key is None:
            raise CLIError(f"--input {path}: expected an array named 'X', received arrays {keys}")
        return z[key]


def _read_npz(path):
    import zipfile

    try:
        X = _npz_array(path)
    except CLIError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        # NOTE: an empty file raises EOFError, a damaged zip BadZipFile (neither is a ValueError/OSError).
        first = (str(exc) or type(exc).__name__).splitlines()[0]
        raise CLIError(f"--input {path}: expected an .npz file with an array X, received unreadable data "
                       f"({first})") from None
    if X.dtype.kind not in "fiub":
        raise CLIError(f"--input {path}: expected numeric features, received dtype {X.dtype}")
    return X.astype(np.float64)


def _read_csv(path, feature_names, n_features):
    low = path.lower()
    if not low.endswith((".csv", ".txt")):
        raise CLIError(f"--input: expected a .csv or .npz file, received {os.path.basename(path)!r}")
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if any(cell.strip() for cell in r)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CLIError(f"--input {path}: expected a UTF-8 CSV file ({exc})") from None
    if not rows:
        raise CLIError(f"--input {path}: expected rows of features, received an empty file")

    def numeric(cell):
        try:
            float(cell)
            return True
        except ValueError:
            return False

    header = None if all(numeric(c) for c in rows[0]) else [c.strip() for c in rows[0]]
    data = rows[1:] if header else rows
    if not data:
        raise CLIError(f"--input {path}: expected data rows after the header, received none")
    columns = None
    if header is not None and feature_names:
        missing = [n for n in feature_names if n not in header]
        if missing:
            raise CLIError(f"--input {path}: missing column(s) {missing[:5]}"
                           f"{' ...' if len(missing) > 5 else ''}; expected the model's {n_features} features")
        columns = [header.index(n) for n in feature_names]
    width = len(header) if header else len(data[0])
    if columns is None and width != n_features:
        raise CLIError(f"--input {path}: expected {n_features} feature columns, received {width}")
    X = np.empty((len(data), n_features))
    for i, r in enumerate(data):
        if len(r) != width:
            raise CLIError(f"--input {path}: expected {width} fields in every row, received {len(r)} in row "
                           f"{i + 1 + bool(header)}")
        cells = [r[j] for j in columns] if columns is not None else r
        for j, cell in enumerate(cells):
            try:
                X[i, j] = float(cell)
            except ValueError:
                col = feature_names[j] if columns is not None else f"column {j + 1}"
                raise CLIError(f"--input {path}: expected a number in {col}, row {i + 1 + bool(header)}, "
                               f"received {cell.strip()!r}") from None
    return X


def _same_file(a, b) -> bool:
    """Whether paths ``a`` and ``b`` name one file (also through a symlink or a hard link)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # NOTE: one of them does not exist (yet): not the same file
        return False


def _check_output(output, *inputs):
    """Refuse an --output that is one of the files being read (it would be replaced by predictions)."""
    for flag, path in inputs:
        model = os.path.join(path, "model.gbx") if os.path.isdir(path) else path
        if _same_file(output, model):
            raise usage_error(f"--output {output}: is the same file as {flag} {path}; choose another file "
                              "(the predictions would replace it)")
    if os.path.isdir(output):
        raise usage_error(f"--output {output}: expected a file path, received a folder")


def cmd_predict(args) -> int:
    if args.output:
        _check_output(args.output, ("MODEL", args.model), ("--input", args.input))
    mf = load_model_file(args.model)
    meta = mf.metadata if isinstance(mf.metadata, dict) else {}
    shape = model_input_shape(mf)
    n_in = int(np.prod(shape)) if shape is not None else None
    X = _read_input(args.input, meta.get("feature_names"), n_in)
    proba = _proba(mf, X, args.input)
    classes = mf.classes
    labels = proba.argmax(axis=1)
    lines = [",".join(["prediction", *[f"p_{_csv_cell(c)}" for c in classes]])]
    for lab, p in zip(labels, proba):
        lines.append(",".join([_csv_cell(classes[lab]), *[f"{v:.6g}" for v in p]]))
    text = "\n".join(lines) + "\n"
    if args.output:
        from ..io import atomic_write_bytes

        atomic_write_bytes(args.output, text.encode())
        print(f"wrote {len(labels)} predictions to {args.output}", file=sys.stdout)
    else:
        sys.stdout.write(text)
    return 0


def _proba(mf, X, path):
    from ..train.inference import predict_proba

    return predict_proba(mf.model, mf.preprocess(X, f"--input {path}"))


def _csv_cell(v):
    s = str(v)
    return f'"{s}"' if any(ch in s for ch in ',"\n') else s


def cmd_gradcheck(args) -> int:
    from .. import check_gradients, nn

    if args.batch <= 0:
        raise usage_error(f"--batch: expected a positive int, received {args.batch}")
    if args.max_entries is not None and args.max_entries <= 0:
        raise usage_error(f"--max-entries: expected a positive int, received {args.max_entries}")
    if args.model:
        mf = load_model_file(args.model)
        X, y, what, _ = _eval_data(args, mf)
        X = mf.preprocess(X, "--dataset").astype(np.float64)
        model, label = mf.model, args.model
    else:
        # NOTE: `is None`, not `or`: an empty --dataset= is an error, not a request for the default.
        c = run.resolve_config({"dataset": "digits" if args.dataset is None else args.dataset, "target": args.target,
                                "hidden": args.hidden, "activation": args.activation, "seed": args.seed,
                                "n_samples": args.n_samples, "noise": args.noise, "dropout": 0.0})
        ds, (Xtr, ytr, *_), _, shape = run.prepare_data(c)
        X, y, what = Xtr, ytr, f"the training part of {ds.name}"
        model, _ = run.build(c, ds.n_features, ds.n_classes, shape)
        label = f"a fresh MLP {run.architecture(model)} ({c['activation']})"
    n = min(args.batch, len(y))
    X, y = np.asarray(X[:n], dtype=np.float64), np.asarray(y[:n])
    print(f"gradient check of {label} on {n} samples of {what} (float64, central differences"
          + (f", at most {args.max_entries} entries per parameter)" if args.max_entries else ")"))
    report = check_gradients(model, nn.CrossEntropyLoss(), X, y, max_entries=args.max_entries, seed=args.seed or 0)
    print(report.table())
    return 0 if report.passed else 1


def _layer_rows(model, shape):
    """(#, layer, detail, output shape, parameter shapes, count) per top-level layer.

    NOTE: output shapes come from running one zero sample through the layers (eval mode, no graph),
    so every layer type reports its own, whatever it is.
    """
    from .. import Tensor, no_grad
    from ..train.inference import _model_dtype, eval_mode

    x = None if shape is None else Tensor(np.zeros((1, *shape), dtype=_model_dtype(model)))
    rows = []
    with eval_mode(model), no_grad():
        for i, m in enumerate(model):
            params = list(m.named_parameters())
            if x is not None:
                try:
                    x = m(x)
                except (ValueError, TypeError):
                    x = None
            out = "(N, ...)" if x is None else "(N, " + ", ".join(map(str, x.shape[1:])) + ")"
            shapes = ", ".join(f"{name.rsplit('.', 1)[-1]} {tuple(p.shape)}" for name, p in params)
            rows.append((str(i), type(m).__name__, m.extra_repr(), out, shapes, sum(p.size for _, p in params)))
    return rows


def _normalisation_line(mean, scale, shape) -> str:
    """What ``info`` says of the stored standardisation: per channel when the model takes images and the
    stored mean and scale (kept per feature) are constant over each channel's pixels, else per feature."""
    n = mean.shape[0]
    if shape is not None and len(shape) == 3 and math.prod(shape) == n:
        per = [a.reshape(shape[0], -1) for a in (mean, scale) if a is not None]
        if all(bool((a == a[:, :1]).all()) for a in per):
            c = shape[0]
            return f"standardise per channel: a stored mean/scale for each of {c} channel{'s' * (c != 1)} ({n} features)"
    return f"standardise with stored mean/scale of {n} features"


def cmd_info(args) -> int:
    mf = load_model_file(args.model)
    model = mf.model
    shape = model_input_shape(mf)
    rows = _layer_rows(model, shape)
    total = sum(r[5] for r in rows)
    rows = [(*r[:5], f"{r[5]:,}") for r in rows]
    head = ("#", "layer", "", "output", "parameters", "count")
    widths = [max(len(r[j]) for r in [head, *rows]) for j in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(w) if j < 5 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths)))
    where = "(N, ...)" if shape is None else "(N, " + ", ".join(map(str, shape)) + ")"
    print(f"{args.model}: Sequential of {len(model)} layers, input {where}, {next(model.parameters()).dtype}")
    print(fmt(head))
    print("-" * len(fmt(head)))
    for r in rows:
        print(fmt(r))
    print(f"total parameters: {total:,}")
    meta = mf.metadata if isinstance(mf.metadata, dict) else {}
    ds = meta.get("dataset")
    if isinstance(ds, dict):
        print(f"dataset: {ds.get('name')} (source {ds.get('source')}, split val {ds.get('val_split')} / "
              f"test {ds.get('test_split')}, seed {ds.get('seed')})")
    if meta.get("classes") is not None:
        cls = meta["classes"]
        print(f"classes: {len(cls)} ({', '.join(map(str, cls[:12]))}{', ...' if len(cls) > 12 else ''})")
    if "norm.mean" in mf.arrays:
        print("normalisation: " + _normalisation_line(mf.arrays["norm.mean"], mf.arrays.get("norm.scale"), shape))
    if meta.get("hyperparameters"):
        hp = meta["hyperparameters"]
        print("hyperparameters: " + ", ".join(f"{k}={v}" for k, v in hp.items()
                                              if v is not None and k != "optimizer_settings"))
    if meta.get("test_accuracy") is not None:
        print(f"test accuracy: {meta['test_accuracy']:.4f}")
    if meta.get("format") == "gradbox-checkpoint":
        print(f"checkpoint: epoch {meta.get('epoch')}, step {meta.get('step')}, optimizer step "
              f"{meta.get('global_step')}")
    return 0
