"""The ``gradbox`` command's parser, its one error handler and its exit codes.

Every subcommand is ``handler(args) -> int``, registered by its module's ``register(subparsers)``
(``train.py``; ``model.py``: evaluate, predict, gradcheck, info; ``see.py``: graph, explain;
``export.py``: export).

Exit codes, the same for every subcommand: 0 success; 1 bad data, a bad file or a failed check;
2 a bad command line or configuration; 130 interrupted (Ctrl-C, or SIGTERM, handled the same way:
``gradbox train`` saves its checkpoint first); 141 a closed pipe. Every error
is one line on stderr (``gradbox: error: ...``); ``--debug`` also prints the traceback.
"""
from __future__ import annotations

import argparse
import os
import sys

from .. import _world
from ..train.run import ConfigError, RunError

__all__ = ["CLIError", "USAGE_EXIT", "build_parser", "guarded", "main", "usage_error"]

USAGE_EXIT = 2

# NOTE: one error type for the library's runs and the command line: ``code`` is the exit status.
CLIError = RunError


def usage_error(message) -> ConfigError:
    """A bad command line (exit 2)."""
    return ConfigError(message)


class _Parser(argparse.ArgumentParser):
    """argparse, but errors become one-line errors (exit 2) instead of usage dumps."""

    def error(self, message):
        raise usage_error(f"{message} (see {self.prog} --help)")


def add_common(p):
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    # NOTE: SUPPRESS keeps a --debug given before the subcommand from being reset to False.
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")


def version():
    from .. import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    from . import export, model, see, train

    parser = _Parser(prog="gradbox", description="Train, check and use small neural networks (NumPy only).")
    parser.add_argument("--version", action="version", version=f"gradbox {version()}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    train.register(sub)
    model.register(sub)
    see.register(sub)
    export.register(sub)
    return parser


def _one_line(exc) -> str:
    if isinstance(exc, OSError) and exc.filename and exc.strerror and not str(exc).startswith(("could", "name")):
        msg = f"{exc.strerror}: {exc.filename}"
    else:
        msg = str(exc) or type(exc).__name__
    if getattr(exc, "code", None) != 130 and _world.size() > 1:  # under mpiexec: which rank failed
        msg = f"rank {_world.rank()}: {msg}"
    return " ".join(msg.split())


def _traceback(debug):
    if debug:
        import traceback

        traceback.print_exc()


def main(argv=None) -> int:
    """Run the command line; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    state = {"debug": "--debug" in argv}

    def dispatch():
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:
            # NOTE: argparse reports a subcommand's unknown flag from the top parser ("see gradbox
            # --help"); the help that lists the flags is the subcommand's.
            where = f"gradbox {args.command}" if getattr(args, "command", None) else "gradbox"
            raise usage_error(f"unrecognized arguments: {' '.join(extra)} (see {where} --help)")
        state["debug"] = state["debug"] or getattr(args, "debug", False)
        if not getattr(args, "func", None):
            parser.print_help()
            return USAGE_EXIT
        if not getattr(args, "data_parallel", False) and not _world.is_main():
            # NOTE: under `mpiexec -n K` only `train` shares work between the ranks; any other command
            # (evaluate, predict, info, ...) runs on rank 0 alone, so it prints and writes once
            return 0
        return args.func(args)

    return guarded(dispatch, lambda: state["debug"])


def guarded(command, debug=False) -> int:
    """Run ``command()`` under the one error handler: its exit code, or one line on stderr and a code.

    ``debug`` (a bool, or a callable asked when an error happens) also prints the traceback.
    Under ``mpiexec -n K`` (K > 1) a failure ends every rank (``MPI_Abort``): a rank that merely
    exited would leave the others waiting in the next gradient exchange. An interruption (130)
    stops all ranks at one step by itself and exits normally.
    """
    code = _guarded(command, debug)
    if code not in (0, 130, 141) and _world.size() > 1:
        from .. import distributed

        distributed.abort(None, code)
    return code


def _guarded(command, debug=False) -> int:
    is_debug = debug if callable(debug) else (lambda: debug)
    try:
        return int(command() or 0)
    except RunError as exc:
        if exc.code == 130 and not _world.is_main():
            return exc.code  # NOTE: under mpiexec every rank stops at the same step; rank 0 says so
        _traceback(is_debug() and exc.code != 130)
        print(f"gradbox: error: {_one_line(exc)}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:
        # NOTE: `gradbox predict ... | head` closed the pipe: stop quietly, as Unix tools do.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    except KeyboardInterrupt:
        _traceback(is_debug())
        print("gradbox: error: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # --help / --version
        return exc.code if isinstance(exc.code, int) else 0
    except Exception as exc:  # noqa: BLE001 - the CLI shows one line unless --debug
        _traceback(is_debug())
        from ..train import TrainingDiverged

        prefix = "" if isinstance(exc, (ValueError, TypeError, OSError, ImportError, TrainingDiverged)) else \
            f"unexpected {type(exc).__name__}: "
        hint = "" if is_debug() or not prefix else " (run with --debug for the traceback)"
        print(f"gradbox: error: {prefix}{_one_line(exc)}{hint}", file=sys.stderr)
        return 1
