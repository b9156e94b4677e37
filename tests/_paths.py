"""Paths that tests build from the location of the test tree (one place, so a test can move between sub-folders)."""
from pathlib import Path

TESTS = Path(__file__).resolve().parent  # tests/
ROOT = TESTS.parent  # the repository root (what PYTHONPATH needs for `python -m gradbox` / `-m tests._helpers`)
DATA = TESTS / "data"  # small fixture files
README = ROOT / "README.md"
