"""fit/Trainer: the four steps, batching, History, callbacks, divergence, evaluate/predict."""
import io
import os

import numpy as np
import pytest

import gradbox as gb
from gradbox import nn
from gradbox.train import (
    Callback,
    CSVLogger,
    EarlyStopping,
    History,
    ModelCheckpoint,
    ProgressBar,
    Trainer,
    TrainingDiverged,
    build_mlp,
    evaluate,
    fit,
    make_optimizer,
    predict,
    predict_proba,
)


def _blobs(n=120, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[-3.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    y = np.arange(n) % 3
    X = centers[y] + rng.normal(size=(n, 2))
    return X, y


def _model(seed=0, dtype=np.float32, hidden=(8,), dropout=0.0):
    gb.manual_seed(seed)
    return build_mlp(2, list(hidden), 3, dropout=dropout, dtype=dtype)


def test_fit_learns_and_records_history():
    X, y = _blobs()
    model = _model()
    h = fit(model, X, y, optimizer=gb.optim.Adam(model.parameters(), lr=0.05), epochs=15, batch_size=16,
            validation_data=_blobs(60, seed=1), seed=0, verbose=0)
    assert h.epoch == list(range(1, 16))
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "time"):
        assert len(h.history[key]) == 15
    assert h.history["loss"][-1] < h.history["loss"][0] / 3
    assert h.history["val_accuracy"][-1] >= 0.95
    assert evaluate(model, *_blobs(60, seed=2))["accuracy"] >= 0.95
    assert not model.training  # left in eval mode


class _Recorder(Callback):
    def __init__(self):
        self.events, self.batches = [], []

    def on_train_begin(self, logs=None):
        self.events.append("begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(f"epoch{epoch}")
        assert self.trainer.model.training

    def on_batch_end(self, step, logs=None):
        self.batches.append((self.trainer.epoch + 1, step))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(f"end{epoch}")

    def on_train_end(self, logs=None):
        self.events.append("finish")


def test_callback_order_and_partial_last_batch():
    X, y = _blobs(50)
    rec = _Recorder()
    fit(_model(), X, y, epochs=2, batch_size=16, callbacks=[rec], verbose=0)
    assert rec.events == ["begin", "epoch1", "end1", "epoch2", "end2", "finish"]
    assert rec.batches == [(1, 1), (1, 2), (1, 3), (1, 4), (2, 1), (2, 2), (2, 3), (2, 4)]  # 16+16+16+2


def _manual_sgd(model, X, y, lr, order, batch):
    """The notes' loop written out by hand: forward, cost, backward, update."""
    loss_fn = nn.CrossEntropyLoss()
    opt = gb.optim.SGD(model.parameters(), lr=lr)
    for i in range(0, len(order), batch):
        idx = order[i:i + batch]
        opt.zero_grad()
        loss = loss_fn(model(gb.Tensor(X[idx].astype(np.float32))), y[idx])
        loss.backward()
        opt.step()


@pytest.mark.parametrize("batch_size", [None, 7, 16])
def test_fit_equals_the_hand_written_loop(batch_size):
    X, y = _blobs(40)
    a, b = _model(seed=3), _model(seed=3)
    fit(a, X, y, optimizer=gb.optim.SGD(a.parameters(), lr=0.1), epochs=2, batch_size=batch_size, seed=5,
        verbose=0)
    rng = np.random.default_rng(5)  # the trainer owns a Generator seeded the same way
    for _ in range(2):
        _manual_sgd(b, X, y, 0.1, rng.permutation(len(X)), batch_size or len(X))
    for (k, wa), (_, wb) in zip(a.state_dict().items(), b.state_dict().items()):
        np.testing.assert_array_equal(wa, wb, err_msg=k)


def test_no_shuffle_full_batch_uses_rows_in_order():
    X, y = _blobs(30)
    a, b = _model(seed=1), _model(seed=1)
    fit(a, X, y, optimizer=gb.optim.SGD(a.parameters(), lr=0.1), epochs=3, batch_size=None, shuffle=False,
        verbose=0)
    for _ in range(3):
        _manual_sgd(b, X, y, 0.1, np.arange(30), 30)
    assert all(np.array_equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_same_seed_same_run_and_different_seed_differs():
    X, y = _blobs()

    def run(seed):
        m = _model(dropout=0.2)
        fit(m, X, y, epochs=3, batch_size=16, seed=seed, verbose=0)
        return m.state_dict()

    a, b, c = run(1), run(1), run(2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


def test_float64_model_and_input_cast():
    X, y = _blobs(30)
    m = _model(dtype=np.float64)
    fit(m, X.astype(np.float32), y, epochs=1, verbose=0)  # cast to the model's dtype
    assert next(m.parameters()).dtype == np.float64
    m32 = _model()
    fit(m32, X.astype(np.float64), y, epochs=1, verbose=0)
    assert predict(m32, X).dtype == np.int64


def test_divergence_names_epoch_and_step_and_suggests_lower_lr(tmp_path):
    X, y = _blobs()
    X = X * 1e3
    m = _model()
    ckpt = ModelCheckpoint(tmp_path, every=1, unit="step")
    with pytest.raises(TrainingDiverged, match=r"epoch \d+, step \d+.*lower the learning rate") as info:
        fit(m, X, y, optimizer=gb.optim.SGD(m.parameters(), lr=1e4), epochs=5, batch_size=16, callbacks=[ckpt],
            verbose=0)
    assert "try" in str(info.value)
    # whatever was written is finite; the diverged state itself never is
    for p in ckpt.saved:
        arrays, _ = gb.io.load_with_metadata(p)
        assert all(np.isfinite(a).all() for k, a in arrays.items() if k.startswith("model."))


def test_non_finite_model_is_never_checkpointed(tmp_path):
    m = _model()
    t = Trainer(m, verbose=0)
    m[0].weight.data[0, 0] = np.nan
    with pytest.raises(TrainingDiverged, match="NaN"):
        t.save_checkpoint(tmp_path / "c.gbx")
    assert not os.listdir(tmp_path)


def test_early_stopping_restores_best_weights():
    X, y = _blobs(60)
    Xv, yv = _blobs(30, seed=9)
    snapshots = {}

    class Snap(Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots[epoch] = self.trainer.model.state_dict()

    es = EarlyStopping(monitor="val_loss", patience=2)
    m = _model()
    # a learning rate high enough to bounce, so the validation loss gets worse at some point
    h = fit(m, X, y, optimizer=gb.optim.SGD(m.parameters(), lr=2.0), epochs=40, batch_size=8,
            validation_data=(Xv, yv), callbacks=[Snap(), es], seed=0, verbose=0)
    assert es.stopped_epoch is not None and len(h) == es.stopped_epoch < 40
    best_epoch, best = h.best("val_loss")
    assert es.best_epoch == best_epoch and es.best == best
    assert all(np.array_equal(m.state_dict()[k], snapshots[best_epoch][k]) for k in snapshots[best_epoch])


def test_a_stop_requested_before_fit_is_kept_and_a_finished_one_is_cleared():
    """A Ctrl-C handler may fire between its installation and fit(): that stop must not be lost.

    Negative control: a stop left from an earlier fit (here the interruption itself) must not stop
    the next one.
    """
    X, y = _blobs(40)
    m = _model()
    t = Trainer(m, "cross_entropy", gb.optim.SGD(m.parameters(), lr=0.1), batch_size=8, verbose=0)
    before = m.state_dict()
    t.request_stop(interrupted=True)
    t.fit(X, y, epochs=3)
    assert t.interrupted and t.global_step == 0 and len(t.history) == 0
    assert all(np.array_equal(before[k], v) for k, v in m.state_dict().items())
    t.fit(X, y, epochs=3)  # the stop was honoured once; this fit trains
    assert not t.interrupted and t.epoch == 3 and t.global_step == 15


def test_early_stopping_without_validation_monitors_training_loss():
    X, y = _blobs(30)
    es = EarlyStopping(patience=1)
    fit(_model(), X, y, epochs=3, callbacks=[es], verbose=0)
    assert es.best is not None


def test_csv_logger_and_history_round_trip(tmp_path):
    X, y = _blobs(30)
    path = tmp_path / "h.csv"
    h = fit(_model(), X, y, epochs=3, callbacks=[CSVLogger(path)], verbose=0)
    lines = path.read_text().splitlines()
    assert lines[0] == "epoch,loss,accuracy,time" and len(lines) == 4
    assert [float(r.split(",")[1]) for r in lines[1:]] == h.history["loss"]
    again = History.from_dict(h.as_dict())
    assert again.as_dict() == h.as_dict() and again.epoch == [1, 2, 3]
    assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] == []


def test_progress_bar_plain_text_and_tqdm():
    X, y = _blobs(30)
    out = io.StringIO()
    fit(_model(), X, y, epochs=2, callbacks=[ProgressBar(file=out)], verbose=1)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2") and "loss" in lines[0] and "acc" in lines[0]
    assert "time left" in lines[-1]
    pytest.importorskip("tqdm")
    out = io.StringIO()
    fit(_model(), X, y, epochs=2, callbacks=[ProgressBar(file=out, use_tqdm=True)], verbose=1)
    text = out.getvalue()
    assert "epoch 2/2" in text and " left " in text and "loss" in text  # the bar fits 80 columns: "left"


def test_evaluate_and_predict():
    X, y = _blobs(60)
    m = _model()
    fit(m, X, y, optimizer=gb.optim.Adam(m.parameters(), lr=0.05), epochs=10, verbose=0)
    res = evaluate(m, X, y)
    cm = res["confusion_matrix"]
    assert cm.shape == (3, 3) and cm.sum() == 60 and np.trace(cm) == int(round(res["accuracy"] * 60))
    assert np.array_equal(cm.sum(axis=1), np.bincount(y, minlength=3))
    p = predict_proba(m, X)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    assert np.array_equal(p.argmax(axis=1), predict(m, X, batch_size=7))
    m.train()
    predict(m, X)
    assert m.training  # predict restores the mode it found


def test_predict_does_not_build_a_graph():
    m = _model()
    calls = []

    class Spy(nn.Module):
        def forward(self, x):
            calls.append(gb.is_grad_enabled())
            return x

    m.append(Spy())
    predict(m, np.zeros((4, 2)))
    assert calls == [False]


@pytest.mark.parametrize("X, y, match", [
    (np.array([[0.0, np.nan], [1.0, 2.0]]), [0, 1], "(?i)nan"),
    (np.array([[0.0, np.inf], [1.0, 2.0]]), [0, 1], "inf"),
    (np.zeros((3, 2)), [0, 1], "labels"),
    (np.zeros((2, 2)), [0.5, 1], "integer"),
    (np.zeros(4), [0, 1, 0, 1], "2-D|shape"),
])
def test_bad_data_is_refused_with_a_clear_message(X, y, match):
    with pytest.raises(ValueError, match=match):
        fit(_model(), X, y, epochs=1, verbose=0)


def test_bad_arguments():
    X, y = _blobs(20)
    with pytest.raises(ValueError, match="batch_size"):
        fit(_model(), X, y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="epochs"):
        fit(_model(), X, y, epochs=-1, verbose=0)
    with pytest.raises(ValueError, match="Linear\\(in_features=2\\)"):
        fit(_model(), np.zeros((4, 3)), [0, 1, 2, 0], verbose=0)
    with pytest.raises(ValueError, match="labels in \\[0, 3\\)"):
        fit(_model(), np.zeros((2, 2)), [0, 5], verbose=0)
    with pytest.raises(TypeError, match="Module"):
        Trainer("not a model")
    with pytest.raises(ValueError, match="validation_data"):
        fit(_model(), X, y, validation_data=X, verbose=0)
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer("lbfgs", _model().parameters())
    with pytest.raises(ValueError, match="lr"):
        make_optimizer("sgd", _model().parameters(), lr=-1)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"])
def test_every_optimizer_trains(name):
    X, y = _blobs(90)
    m = _model()
    h = fit(m, X, y, optimizer=make_optimizer(name, m.parameters()), epochs=8, batch_size=16, seed=0, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]


def test_bce_and_mse_losses():
    X, y = _blobs(60)
    y2 = (y > 0).astype(np.int64)
    gb.manual_seed(0)
    m = build_mlp(2, [8], 1)
    h = fit(m, X, y2, loss="bce", optimizer=gb.optim.Adam(m.parameters(), lr=0.05), epochs=10, verbose=0)
    assert h.history["accuracy"][-1] > 0.9
    assert evaluate(m, X, y2, loss="bce")["confusion_matrix"].shape == (2, 2)
    gb.manual_seed(0)
    r = build_mlp(2, [8], 1)
    target = X[:, :1].astype(np.float32) * 2
    h = fit(r, X, target.ravel(), loss=nn.MSELoss(), optimizer=gb.optim.Adam(r.parameters(), lr=0.05),
            epochs=10, verbose=0)
    assert "accuracy" not in h.history and h.history["loss"][-1] < h.history["loss"][0]


# --- batches of any rank, the unit of work, the sampler ----------------------------------------
def _images(n=96, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 1, 8, 8)).astype(np.float32)
    y = (X[:, 0, :4].mean(axis=(1, 2)) > X[:, 0, 4:].mean(axis=(1, 2))).astype(np.int64)
    return X, y


def _flatten_model(seed=0):
    gb.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16, rng=seed), nn.ReLU(), nn.Linear(16, 2, rng=seed + 1))


def test_fit_predict_evaluate_take_image_shaped_batches():
    """X of shape (N, 1, 8, 8) trains a Flatten-first model: no forced 2-D X or 2-D batch buffer."""
    X, y = _images()
    model = _flatten_model()
    h = fit(model, X, y, epochs=15, batch_size=16, seed=0, verbose=0, validation_data=_images(32, seed=1))
    assert h.history["loss"][-1] < h.history["loss"][0]
    res = evaluate(model, X, y)
    assert res["n"] == 96 and res["accuracy"] > 0.8
    assert predict(model, X).shape == (96,) and predict_proba(model, X).shape == (96, 2)
    # the same data flattened gives the same training, step for step
    flat = _flatten_model()
    fit(flat, X.reshape(96, -1), y, epochs=15, batch_size=16, seed=0, verbose=0,
        validation_data=tuple(a.reshape(32, -1) if a.ndim > 1 else a for a in _images(32, seed=1)))
    assert all(np.array_equal(a, b) for a, b in zip(model.state_dict().values(), flat.state_dict().values()))


def test_image_batches_resume_exactly(tmp_path):
    from tests._helpers import StopAfterSteps

    X, y = _images()
    ref = Trainer(_flatten_model(), batch_size=16, seed=3, verbose=0)
    ref.fit(X, y, epochs=3)
    t = Trainer(_flatten_model(), batch_size=16, seed=3, verbose=0, callbacks=[StopAfterSteps(8)])
    t.fit(X, y, epochs=3)
    t.save_checkpoint(tmp_path / "c.gbx")
    r = Trainer(_flatten_model(seed=5), batch_size=16, seed=3, verbose=0)
    r.load_checkpoint(tmp_path / "c.gbx")
    r.fit(X, y, epochs=3)
    assert all(np.array_equal(a, b) for a, b in zip(ref.model.state_dict().values(), r.model.state_dict().values()))


def test_validation_data_must_have_the_training_sample_shape():
    X, y = _images(32)
    with pytest.raises(ValueError, match="validation_data"):
        fit(_flatten_model(), X, y, epochs=1, verbose=0, validation_data=(X.reshape(32, 1, 4, 16), y))


def test_train_step_is_the_overridable_unit_of_work():
    X, y = _blobs()
    calls = []

    class Clipped(Trainer):
        def train_step(self, xb, yb):
            calls.append(xb.shape[0])
            logs = super().train_step(xb, yb)
            for p in self.model.parameters():  # e.g. post-step weight clipping
                np.clip(p.data, -0.05, 0.05, out=p.data)
            return logs

    gb.manual_seed(0)
    t = Clipped(build_mlp(2, [8], 3), batch_size=50, seed=0, verbose=0)
    t.fit(X, y, epochs=2)
    assert calls == [50, 50, 20] * 2 and t.global_step == 6
    assert max(float(np.abs(p.data).max()) for p in t.model.parameters()) <= np.float32(0.05)


def test_a_sampler_replaces_the_order_of_samples():
    """A sampler object decides which samples each step sees (a sharded one plugs in the same way)."""
    from gradbox.train import RandomSampler

    X, y = _blobs()
    seen = []

    class Recording(Trainer):
        def train_step(self, xb, yb):
            seen.append(xb.copy())
            return super().train_step(xb, yb)

    class Halves(RandomSampler):
        """Every step takes only the first half of its batch (a 'shard' of rank 0 of 2)."""

        def batches(self, n, batch_size, start=0):
            for idx in super().batches(n, batch_size, start):
                yield idx[: (len(idx) + 1) // 2]

    gb.manual_seed(0)
    t = Recording(build_mlp(2, [8], 3), batch_size=40, verbose=0, sampler=Halves(shuffle=False))
    t.fit(X, y, epochs=1)
    assert [len(b) for b in seen] == [20, 20, 20]
    assert np.array_equal(seen[0], X[:20].astype(np.float32)) and np.array_equal(seen[1], X[40:60].astype(np.float32))
    with pytest.raises(TypeError, match="sampler"):
        Trainer(build_mlp(2, [8], 3), sampler=object(), verbose=0)


def test_random_sampler_is_the_default_order():
    from gradbox.train import RandomSampler

    s = RandomSampler(seed=7)
    s.set_epoch(1)
    first = np.concatenate(list(s.batches(10, 3)))
    assert np.array_equal(first, np.random.default_rng(7).permutation(10))
    s.end_epoch()
    s.set_epoch(2)
    assert not np.array_equal(np.concatenate(list(s.batches(10, 3))), first)
    state = s.state_dict()
    t = RandomSampler(seed=0)
    t.load_state_dict(state)
    assert np.array_equal(np.concatenate(list(t.batches(10, 3))), np.concatenate(list(s.batches(10, 3))))


def test_eval_mode_restores_each_modules_own_mode():
    from gradbox.train import eval_mode

    model = nn.Sequential(nn.Linear(2, 2, rng=0), nn.Dropout(0.5))
    model[1].eval()  # a mixed state
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert model.training and model[0].training and not model[1].training
    with pytest.raises(RuntimeError), eval_mode(model):
        raise RuntimeError("restored even on errors")
    assert model.training and not model[1].training


@pytest.mark.parametrize("name", ["gradbox.train", "gradbox.train.sampler", "gradbox.train.presets",
                                  "gradbox.train.history", "gradbox._world"])
def test_docstring_examples(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
