"""The ``gradbox`` command (entry point ``gradbox.cli:main``).

- ``main.py``: the parser, the one error handler and the exit codes
- ``train.py``: ``gradbox train`` (flags -> :mod:`gradbox.train.run`)
- ``model.py``: ``evaluate``, ``predict``, ``gradcheck``, ``info`` (commands that read a model file)
- ``see.py``: ``graph``, ``explain``
"""
from ..train.run import DEFAULTS, new_run_dir as _new_run_dir, resolve_config
from .main import CLIError, build_parser, main

__all__ = ["DEFAULTS", "CLIError", "build_parser", "main", "resolve_config"]
