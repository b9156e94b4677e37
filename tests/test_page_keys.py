"""The pages driven like a user: arrow keys and the next/previous buttons, in headless Chromium.

Real input events (``Input.dispatchKeyEvent``, ``Input.dispatchMouseEvent``) go through the
DevTools protocol over ``--remote-debugging-pipe`` (tests/_cdp.py, standard library only); the
page's state is read back with ``Runtime.evaluate``. Skipped cleanly without Chromium.
"""
import shutil

import numpy as np
import pytest

from gradbox import nn
from gradbox.page import write_explain_page, write_graph_page

from ._cdp import Browser

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install -y chromium)")

READY = "document.getElementById('gb-status').textContent === 'ready'"
STATE = """(function () {
  var active = Array.prototype.filter.call(document.querySelectorAll('.gb-step'),
      function (s) { return s.classList.contains('active'); });
  var shown = Array.prototype.filter.call(document.querySelectorAll('.gb-step'),
      function (s) { return getComputedStyle(s).display !== 'none'; });
  var chip = document.querySelector('.gb-chip.active');
  return {hash: location.hash, active: active.map(function (s) { return s.getAttribute('data-frag'); }),
          shown: shown.map(function (s) { return s.getAttribute('data-frag'); }),
          main: document.querySelector('main').getAttribute('data-active'),
          chip: chip ? chip.getAttribute('data-frag') : null,
          pos: document.getElementById('gb-pos').textContent,
          revealed: document.querySelectorAll('[data-reveal].shown').length};
})()"""
RIGHT, LEFT = ("ArrowRight", "ArrowRight", 39), ("ArrowLeft", "ArrowLeft", 37)


def _mlp():
    model = nn.Sequential(nn.Linear(4, 6, rng=0), nn.ReLU(), nn.Linear(6, 5, rng=1), nn.Tanh(),
                          nn.Linear(5, 3, rng=2))
    X = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    return model, X, np.arange(8) % 3


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    model, X, y = _mlp()
    out = {}
    for lang in ("en", "ko"):
        out["explain", lang] = str(folder / f"explain_{lang}.html")
        write_explain_page(out["explain", lang], model, X, y, lang=lang)
        out["graph", lang] = str(folder / f"graph_{lang}.html")
        write_graph_page(out["graph", lang], "purchase", lang)
    return out


# the explain page of a 3-layer MLP: forward 1..3, the cost, backward 3..1, the update
EXPLAIN_ORDER = (["layer=1&phase=forward", "layer=2&phase=forward", "layer=3&phase=forward", "phase=cost"]
                 + [f"layer={l}&phase=backward" for l in (3, 2, 1)] + ["phase=update"])


def _open(path, fragment=""):
    b = Browser(CHROMIUM, f"file://{path}{fragment}")
    b.wait_for(READY)
    return b


def _check(state, frag, n):
    """One box is active and visible, and the address, the chips and the counter all name it."""
    assert state["active"] == [frag] and state["shown"] == [frag], state
    assert state["hash"] == "#" + frag and state["main"] == frag, state
    assert state["pos"].replace(" ", "").split("/")[1] == str(n)


def _walk(b, action, count):
    seen = []
    for _ in range(count):
        action()
        seen.append(b.eval(STATE))
    return seen


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_arrow_keys_walk_the_explain_page_box_by_box(pages, lang):
    with _open(pages["explain", lang]) as b:
        first = b.eval(STATE)
        assert first["active"] == [EXPLAIN_ORDER[0]] and first["shown"] == [EXPLAIN_ORDER[0]]
        n = len(EXPLAIN_ORDER)
        forward = _walk(b, lambda: b.press(*RIGHT), n - 1)
        for state, frag in zip(forward, EXPLAIN_ORDER[1:]):
            _check(state, frag, n)
            assert state["chip"] == frag
        assert forward[-1]["pos"].replace(" ", "") == f"{n}/{n}"
        b.press(*RIGHT)                                   # past the last box: it stays
        _check(b.eval(STATE), EXPLAIN_ORDER[-1], n)
        back = _walk(b, lambda: b.press(*LEFT), n - 1)
        for state, frag in zip(back, EXPLAIN_ORDER[-2::-1]):
            _check(state, frag, n)
        b.press(*LEFT)                                    # before the first: it stays
        _check(b.eval(STATE), EXPLAIN_ORDER[0], n)
        assert b.exceptions() == []
        assert b.eval("document.getElementById('gb-errors').hidden") is True


def test_next_and_previous_buttons_are_clicked(pages):
    with _open(pages["explain", "en"]) as b:
        n = len(EXPLAIN_ORDER)
        for frag in EXPLAIN_ORDER[1:4]:
            b.click("#gb-next")
            _check(b.eval(STATE), frag, n)
        b.click("#gb-prev")
        _check(b.eval(STATE), EXPLAIN_ORDER[2], n)
        b.click("#gb-prev")
        b.click("#gb-prev")
        b.click("#gb-prev")                               # the first box has no previous
        _check(b.eval(STATE), EXPLAIN_ORDER[0], n)
        assert b.exceptions() == []


def test_keys_continue_from_a_linked_box_and_back_follows_the_address(pages):
    """A teacher's link opens one box; the keys go on from there; the browser's Back returns."""
    with _open(pages["explain", "en"], "#layer=2&phase=backward") as b:
        n = len(EXPLAIN_ORDER)
        _check(b.eval(STATE), "layer=2&phase=backward", n)
        b.press(*RIGHT)
        _check(b.eval(STATE), "layer=1&phase=backward", n)
        b.press(*RIGHT)
        _check(b.eval(STATE), "phase=update", n)
        b.eval("history.back()")
        b.wait_for("location.hash === '#layer=1&phase=backward'")
        b.wait_for("document.querySelector('main').getAttribute('data-active') === 'layer=1&phase=backward'")
        _check(b.eval(STATE), "layer=1&phase=backward", n)
        b.click(".gb-chip[data-frag='phase=cost']")      # a chip jumps straight to its box
        _check(b.eval(STATE), "phase=cost", n)
        b.press(*LEFT)
        _check(b.eval(STATE), "layer=3&phase=forward", n)
        assert b.exceptions() == []


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_graph_page_keys_and_buttons_reveal_one_gate_at_a_time(pages, lang):
    with _open(pages["graph", lang]) as b:
        steps = b.eval("Array.prototype.map.call(document.querySelectorAll('.gb-step'), "
                       "function (s) { return s.getAttribute('data-frag'); })")
        assert steps[0] == "step=0" and len(steps) >= 4
        n = len(steps)
        revealed = [b.eval(STATE)["revealed"]]
        for k in range(1, n):
            if k % 2:                                     # the key and the button alternate
                b.press(*RIGHT)
            else:
                b.click("#gb-next")
            state = b.eval(STATE)
            _check(state, f"step={k}", n)
            revealed.append(state["revealed"])
        # every step backward through the graph shows at least one more gradient
        assert all(later > earlier for earlier, later in zip(revealed, revealed[1:])), revealed
        b.press(*LEFT)
        state = b.eval(STATE)
        _check(state, f"step={n - 2}", n)
        assert state["revealed"] == revealed[-2]
        b.click("#gb-prev")
        _check(b.eval(STATE), f"step={n - 3}", n)
        assert b.exceptions() == []


def test_explain_report_in_a_notebook_cell_runs_in_its_sandboxed_frame(tmp_path):
    """What Jupyter does with ``gb.explain(...)``'s report: its _repr_html_ inside a host page."""
    import gradbox as gb

    model, X, y = _mlp()
    report = gb.explain(model, X, y, lang="ko")
    host = tmp_path / "notebook.html"
    host.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"></head><body><div id="cell">'
                    f"{report._repr_html_()}</div></body></html>", encoding="utf-8")
    with Browser(CHROMIUM, f"file://{host}") as b:
        b.wait_for("document.readyState === 'complete'")
        frame = b.frame_session()
        assert frame is not None
        b.wait_for(READY, session=frame)
        assert b.eval("document.documentElement.lang", frame) == "ko"
        assert "역전파" in b.eval("document.body.innerText", frame)
        assert b.eval("document.querySelector('.gb-step.active').getAttribute('data-frag')", frame) == EXPLAIN_ORDER[0]
        active = "document.querySelector('.gb-step.active').getAttribute('data-frag')"
        # focus the frame by a click on an empty corner, as a reader would (NOTE: focus moves to the frame's
        # process asynchronously, and a click on a loaded machine can miss: click_until repeats it)
        b.click_until("iframe", "document.hasFocus()", at=(0.98, 0.02), session=frame)
        b.press(*RIGHT)                                    # the arrow keys work inside the cell
        b.wait_for(f"{active} === '{EXPLAIN_ORDER[1]}'", session=frame, timeout=5)
        b.press(*RIGHT)
        b.wait_for(f"{active} === '{EXPLAIN_ORDER[2]}'", session=frame, timeout=5)
        b.press(*LEFT)
        b.wait_for(f"{active} === '{EXPLAIN_ORDER[1]}'", session=frame, timeout=5)
        assert b.eval("document.getElementById('gb-errors').hidden", frame) is True
        assert b.exceptions() == []
