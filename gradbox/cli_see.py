"""Moved to :mod:`gradbox.cli.see` (``gradbox graph`` and ``gradbox explain``); kept importable.

``python -m gradbox.cli_see graph --example gates`` still works: it is ``gradbox graph ...``.
"""
import sys

from .cli.main import main
from .cli.see import cmd_explain, cmd_graph, register

__all__ = ["cmd_explain", "cmd_graph", "main", "register"]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
