"""The README's Python examples run as written."""
import os
import re

import pytest

README = os.path.join(os.path.dirname(__file__), "..", "README.md")
BLOCKS = re.findall(r"```python\n(.*?)```", open(README, encoding="utf-8").read(), flags=re.S)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[index], f"README.md[python block {index}]", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert out.strip(), "each example prints its result"
    if "check_gradients" in BLOCKS[index]:
        assert "PASSED" in out
    if "evaluate" in BLOCKS[index]:
        assert float(out.split()[-1]) > 0.9 and (tmp_path / "digits.gbx").exists()
