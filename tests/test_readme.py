"""The README's Python examples, and the Korean quick start's (docs/ko/README.md), run as written."""
import os
import re

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")
#: (file, block) for every Python block of the README and of the Korean quick start
BLOCKS = [(name, block) for name in ("README.md", os.path.join("docs", "ko", "README.md"))
          for block in re.findall(r"```python\n(.*?)```", open(os.path.join(ROOT, name), encoding="utf-8").read(),
                                  flags=re.S)]


def test_readme_has_python_examples():
    assert sum(name == "README.md" for name, _ in BLOCKS) >= 2 and len(BLOCKS) > 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    name, block = BLOCKS[index]
    exec(compile(block, f"{name}[python block {index}]", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert out.strip(), "each example prints its result"
    if "check_gradients" in block:
        assert "PASSED" in out
    if "evaluate" in block:
        assert float(out.split()[-1]) > 0.9 and (tmp_path / "digits.gbx").exists()
