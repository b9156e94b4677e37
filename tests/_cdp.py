"""A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (no websocket needed).

Chromium started with ``--remote-debugging-pipe`` reads protocol commands on file descriptor 3
and writes replies and events on file descriptor 4, one JSON message each, ended by a NUL
byte. This is enough to load a page, press keys and click buttons like a user
(``Input.dispatchKeyEvent``, ``Input.dispatchMouseEvent``) and read the page's state back
(``Runtime.evaluate``), with the standard library only.
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import tempfile
import time


def _high(fd):
    import fcntl

    new = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return new


class CDPError(RuntimeError):
    pass


class Browser:
    """Headless Chromium on one page; ``with Browser(chromium, url) as b: b.eval("1 + 1")``."""

    def __init__(self, binary, url, size=(1280, 900), timeout=30.0):
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory()
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # NOTE: the browser's ends, moved above 9 so that putting them on 3 and 4 overwrites neither
        to_child_r, from_child_w = (_high(fd) for fd in (to_child_r, from_child_w))
        args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--hide-scrollbars", f"--window-size={size[0]},{size[1]}", f"--user-data-dir={self._profile.name}",
                "--remote-debugging-pipe", url]
        # NOTE: the protocol's descriptors must be 3 and 4 in the browser. Python's own descriptors are
        # not inherited (PEP 446), so close_fds=False passes on only these two, duplicated in the child.
        def on_3_and_4():
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        # NOTE: stderr to a file, not a pipe nobody reads (a chatty browser would block on a full pipe)
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args, close_fds=False, preexec_fn=on_3_and_4,  # noqa: PLW1509
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._next_id = 0
        self.events = []
        self.session = None
        try:
            self._attach(url)
        except BaseException:
            self.close()
            raise

    # --- the wire ----------------------------------------------------------------
    def _read_message(self, deadline):
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CDPError("no answer from Chromium within the timeout")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if ready:
                chunk = os.read(self._from_child, 1 << 16)
                if not chunk:
                    raise CDPError("Chromium closed the protocol pipe: " + self._stderr())
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method, params=None, session=True):
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if isinstance(session, str):
            msg["sessionId"] = session
        elif session and self.session:
            msg["sessionId"] = self.session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _stderr(self):
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
            self._log.seek(0)
            return self._log.read().decode(errors="replace")[-2000:]
        except (OSError, subprocess.TimeoutExpired):
            return ""

    def _attach(self, url):
        deadline = time.monotonic() + self.timeout
        while True:
            pages = [t for t in self.send("Target.getTargets", session=False)["targetInfos"] if t["type"] == "page"]
            if pages:
                break
            if time.monotonic() > deadline:
                raise CDPError("Chromium opened no page")
            time.sleep(0.05)
        self.session = self.send("Target.attachToTarget", {"targetId": pages[0]["targetId"], "flatten": True},
                                 session=False)["sessionId"]
        self.send("Runtime.enable")
        self.send("Page.enable")

    # --- what a test uses ------------------------------------------------------------
    def eval(self, expression, session=True):
        """The value of a JavaScript expression in the page (or in a frame: ``session`` from
        ``frame_session``); JSON-able values."""
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
        if "exceptionDetails" in res:
            raise CDPError(f"{expression}: {res['exceptionDetails'].get('text')}")
        return res["result"].get("value")

    def frame_session(self):
        """A session on the page's first iframe, or None. NOTE: a sandboxed frame runs in its own
        process (site isolation), so it is a target of its own, not a context of the page's."""
        deadline = time.monotonic() + self.timeout
        while True:  # NOTE: the frame's target appears a little after the page has loaded
            frames = [t for t in self.send("Target.getTargets", session=False)["targetInfos"]
                      if t["type"] == "iframe"]
            if frames:
                break
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)
        session = self.send("Target.attachToTarget", {"targetId": frames[0]["targetId"], "flatten": True},
                            session=False)["sessionId"]
        self.send("Runtime.enable", session=session)
        return session

    def wait_for(self, expression, timeout=None, session=True):
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            try:
                if self.eval(expression, session):
                    return
            except CDPError:
                pass  # the page is still loading
            time.sleep(0.05)
        raise CDPError(f"timed out waiting for {expression}")

    def press(self, key, code, keycode):
        """A real key press (keyDown then keyUp), sent to the focused page as the keyboard would."""
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", {"type": kind, "key": key, "code": code,
                                                 "windowsVirtualKeyCode": keycode, "nativeVirtualKeyCode": keycode})

    def click(self, selector, at=(0.5, 0.5)):
        """A real mouse click on the element ``selector`` (scrolled into view first), at the fractions
        ``at`` of its width and height (the middle by default)."""
        box = self.eval(f"(function () {{ var e = document.querySelector({json.dumps(selector)}); "
                        "e.scrollIntoView({block: 'center'}); var r = e.getBoundingClientRect(); "
                        f"return [r.left + r.width * {at[0]}, r.top + r.height * {at[1]}]; }})()")
        x, y = box
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def click_until(self, selector, expression, at=(0.5, 0.5), session=True):
        """Click ``selector`` (as ``click``) until ``expression`` holds in ``session``; for a click whose only
        effect is that state (focus). NOTE: on a loaded machine a click sent right after ``scrollIntoView``
        can be hit-tested before the page has moved, and land beside the element; it is sent again."""
        deadline = time.monotonic() + self.timeout
        while True:
            self.click(selector, at)
            try:
                return self.wait_for(expression, timeout=2.0, session=session)
            except CDPError:
                if time.monotonic() > deadline:
                    raise

    def exceptions(self):
        """Uncaught script errors and console errors the page reported so far."""
        self.send("Runtime.evaluate", {"expression": "0"})  # NOTE: collects the events sent before it
        out = [e["params"]["exceptionDetails"] for e in self.events if e.get("method") == "Runtime.exceptionThrown"]
        out += [e["params"] for e in self.events if e.get("method") == "Runtime.consoleAPICalled"
                and e["params"].get("type") == "error"]
        return out

    def close(self):
        try:
            if self.session is not None:
                self.send("Browser.close", session=False)
        except (CDPError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self._profile.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
