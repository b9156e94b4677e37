"""Test-only helpers (kept out of the library).

``python -m tests._helpers N ARGS...`` runs ``gradbox train ARGS...`` that stops after N optimizer
steps as a Ctrl-C would (a checkpoint, exit 130, one line on stderr).
"""
import sys

from gradbox import io as gio
from gradbox.train import Callback


# a CLI run of a few milliseconds: tiny moons, tiny MLP, 3 epochs
TINY_TRAIN = ["--dataset", "moons", "--n-samples", "120", "--hidden", "8", "--epochs", "3", "--batch-size", "16",
              "--quiet"]


def run_cli(argv, capsys):
    """``gradbox ARGV`` in this process: (exit code, stdout, stderr)."""
    from gradbox.cli import main

    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def serialize(arrays, metadata=None, model=None) -> bytes:
    """A whole gradbox file as bytes, as ``gradbox.io`` would write it."""
    return b"".join(bytes(p) for p in gio._serialize_parts(arrays, metadata, model))


def load_model_bytes(buf):
    """``load_model`` of a file's bytes (no file on disk)."""
    arrays, _, header = gio._parse(buf)
    return gio._model_from_header(arrays, header)


class StopAfterSteps(Callback):
    """Request a stop after ``n`` optimizer steps in this session (simulates Ctrl-C)."""

    def __init__(self, n):
        self.n = int(n)
        self._start = None

    def on_train_begin(self, logs=None):
        self._start = self.trainer.global_step

    def on_batch_end(self, step, logs=None):
        if self.trainer.global_step - self._start >= self.n:
            self.trainer.request_stop(interrupted=True)


def train_until(steps, argv):
    """``gradbox train ARGV`` under the CLI's error handler, stopped after ``steps`` optimizer steps."""
    from gradbox.cli.main import build_parser, guarded
    from gradbox.cli.train import train_config
    from gradbox.train import run

    args = build_parser().parse_args(["train", *argv])
    return guarded(lambda: run.train(train_config(args), callbacks=[StopAfterSteps(steps)], progress=False,
                                     log=None) and 0)


if __name__ == "__main__":
    sys.exit(train_until(int(sys.argv[1]), sys.argv[2:]))
